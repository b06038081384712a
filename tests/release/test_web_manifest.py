"""`imgtool manifest`: one web-flasher manifest for packs of several chips, its paths resolving beside it, and
every pack folder it reads checked field by field."""

from __future__ import annotations

import json
import shutil

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest
from conftest import FIXTURES, pack_c3, run_cli

from imgtool.chips.table import get_chip
from imgtool.pack.job import PackOptions, pack


@pytest.fixture(scope="module")
def packs(tmp_path_factory, boot):
    """An esp32c3 pack (bootloader at 0x0, app in ota_1) and an esp32 pack (bootloader at 0x1000)."""
    root = tmp_path_factory.mktemp("packs")
    pack_c3(root / "c3", boot, "two_ota", "ota_1")
    pack(FIXTURES / "esp32-min.elf", PackOptions(outdir=root / "esp32", bootloader=boot["esp32"], flash_size="4MB", project_config=False))
    return root


def one_line_error(result, *words):
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgtool: error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_two_chip_manifest_paths_resolve_beside_it(tmp_path, packs):
    web = tmp_path / "site" / "web"
    result = run_cli("manifest", packs / "c3", packs / "esp32", "-o", web / "manifest.json", "--launchpad",
                 "--base-url", "https://example.com/fw", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["builds"][0]["chip"] == "esp32c3"
    doc = json.loads((web / "manifest.json").read_text())
    assert (doc["name"], doc["version"]) == ("fixture", "0.1.0")  # the app descriptor's
    assert [b["chipFamily"] for b in doc["builds"]] == ["ESP32-C3", "ESP32"]
    for build, folder in zip(doc["builds"], ("c3", "esp32")):
        flasher = json.loads((packs / folder / "flasher_args.json").read_text())
        expected = {int(off, 16): name for off, name in flasher["flash_files"].items()}
        assert {part["offset"]: part["path"].rsplit("/", 1)[1] for part in build["parts"]} == expected
        for part in build["parts"]:
            path = (web / part["path"]).resolve()
            assert path.is_relative_to(web.resolve()) and not part["path"].startswith("/")
            assert path.read_bytes() == (packs / folder / expected[part["offset"]]).read_bytes()
    # Launchpad: one image per chip family, written at 0x0, i.e. the merged image after 0xFF up to the bootloader
    toml = tomllib.loads((web / "launchpad.toml").read_text())
    assert toml["esp_toml_version"] == 1.0 and toml["firmware_images_url"] == "https://example.com/fw/"
    app = toml[toml["supported_apps"][0]]
    assert app["chipsets"] == ["ESP32-C3", "ESP32"]
    for family, folder, chip in (("esp32-c3", "c3", "esp32c3"), ("esp32", "esp32", "esp32")):
        image = (web / app["image"][family]).read_bytes()
        merged = next((packs / folder).glob("*.merged.bin")).read_bytes()
        offset = get_chip(chip).bootloader_offset
        assert image[:offset] == b"\xff" * offset and image[offset:] == merged


def test_name_and_version_options_win(tmp_path, packs):
    out = tmp_path / "m.json"
    assert run_cli("manifest", packs / "c3", "-o", out, "--name", "Blinky", "--version", "2.0", "-q").exit_code == 0
    doc = json.loads(out.read_text())
    assert (doc["name"], doc["version"]) == ("Blinky", "2.0") and doc["builds"][0]["parts"][0]["path"].startswith("esp32c3/")


def test_packs_that_disagree_need_the_option(packs):
    from dataclasses import replace

    from imgtool.errors import UsageError
    from imgtool.release.web_manifest import _agreed, read_pack

    a, b = read_pack(packs / "c3"), read_pack(packs / "esp32")
    assert _agreed([a, b], "version", "--version") == "0.1.0"
    with pytest.raises(UsageError, match="different versions .*'0.1.0'.*'9.9'.*pass --version"):
        _agreed([a, replace(b, version="9.9")], "version", "--version")


def _broken(tmp_path, packs):
    copy = tmp_path / "broken"
    shutil.copytree(packs / "c3", copy)
    (copy / "partitions.bin").write_bytes(b"\x00" * 16)
    return copy


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("same-chip", ["both esp32c3 packs", "one build per chip family"]),
        ("missing", ["no such pack folder"]),
        ("broken", ["partitions.bin does not match its SHA256SUMS entry"]),
        ("launchpad-without-url", ["--base-url"]),
    ],
)
def test_refusals_write_nothing(tmp_path, packs, case, words):
    if case == "same-chip":
        twin = tmp_path / "twin"
        shutil.copytree(packs / "c3", twin)
        args = [packs / "c3", packs / "esp32", twin]
    elif case == "missing":
        args = [packs / "c3", tmp_path / "nope"]
    elif case == "broken":
        args = [packs / "esp32", _broken(tmp_path, packs)]
    else:
        args = [packs / "c3", "--launchpad"]
    web = tmp_path / "web"
    one_line_error(run_cli("manifest", *args, "-o", web / "manifest.json"), *words)
    assert not web.exists()


# --------------------------------------------------------------------------- hostile flasher_args.json and SHA256SUMS


def _edit_args(folder, change) -> None:
    path = folder / "flasher_args.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _sums_naming_outside(folder):
    secret = folder.parent / "host_secret.txt"
    secret.write_text("not for the web")
    with open(folder / "SHA256SUMS", "a") as fh:
        fh.write(f"{'0' * 64} *../host_secret.txt\n")


HOSTILE_ARGS = {
    "merged-offset-huge": (lambda f: _edit_args(f, lambda d: d["merged"].update(offset="0x10000000")), "merged.offset is '0x10000000'"),
    "merged-offset-not-the-bootloaders": (lambda f: _edit_args(f, lambda d: d["merged"].update(offset="0x100000")),
                                          "esp32c3 merged image starts at 0x0"),
    "merged-offset-max": (lambda f: _edit_args(f, lambda d: d["merged"].update(offset="0x7fffffff")), "not a flash offset"),
    "merged-offset-not-hex": (lambda f: _edit_args(f, lambda d: d["merged"].update(offset=65536)), "merged.offset is 65536"),
    "flash-files-value-not-a-string": (lambda f: _edit_args(f, lambda d: d["flash_files"].update({"0x300000": 7})), "names 7"),
    "flash-files-not-an-object": (lambda f: _edit_args(f, lambda d: d.update(flash_files=["x"])), "flash_files is not an object"),
    "flash-files-backslash": (lambda f: _edit_args(f, lambda d: d["flash_files"].update({"0x300000": "..\\\\x.bin"})), "not a file in the pack"),
    "deep-nesting": (lambda f: (f / "flasher_args.json").write_text("{\"a\":" * 50_000 + "1" + "}" * 50_000), "nested too deeply"),
    "sha256sums-outside": (_sums_naming_outside, "'../host_secret.txt', which is not a file in the pack folder"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARGS))
def test_a_hostile_pack_folder_is_refused_field_by_field(tmp_path, packs, case):
    copy = tmp_path / "c3"
    shutil.copytree(packs / "c3", copy)
    spoil, words = HOSTILE_ARGS[case]
    spoil(copy)
    web = tmp_path / "web"
    one_line_error(run_cli("manifest", copy, "-o", web / "manifest.json"), words)
    assert not web.exists()


def test_a_users_file_in_a_chip_folder_is_refused_unless_force(tmp_path, packs):
    web = tmp_path / "web"
    (web / "esp32c3").mkdir(parents=True)
    mine = web / "esp32c3" / "bootloader.bin"
    mine.write_bytes(b"my own")
    one_line_error(run_cli("manifest", packs / "c3", "-o", web / "manifest.json"), "bootloader.bin: is not a file imgtool wrote", "--force")
    assert mine.read_bytes() == b"my own" and not (web / "manifest.json").exists()
    assert run_cli("manifest", packs / "c3", "-o", web / "manifest.json", "--force", "-q").exit_code == 0
    assert mine.read_bytes() != b"my own"
    assert run_cli("manifest", packs / "c3", "-o", web / "manifest.json", "-q").exit_code == 0  # now the manifest lists it
