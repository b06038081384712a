"""Two pinned bootloader sets (ESP-IDF v5.5, the default, and v6.1): chosen per pack, served by one
mirror (the second set from its sibling folder), both verified on every chip they cover."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import FIXTURES, corpus_elf_params, corpus_path, run_cli

from imgtool.bootloader.pins import BOOTLOADER_SETS, DEFAULT_SET, get_set, load_manifest
from imgtool.bootloader.store import BootloaderStore
from imgtool.errors import BootloaderError, InputError, UsageError
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

V61_COMMIT = "65377a7938c898caf822d00a37907738b7dfc021"


def _corpus_store(tmp_path) -> BootloaderStore:
    """The mirror names the default set's folder; the v6.1 set is read from its '-idf6.1' sibling."""
    return BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))


def test_default_set_is_the_released_v55_one():
    assert DEFAULT_SET == "idf5.5" and [s.name for s in BOOTLOADER_SETS] == ["idf5.5", "idf6.1"]
    assert load_manifest().bootloader_set == "idf5.5"


def test_v61_manifest_pins_espflash_main_builds():
    v55, v61 = load_manifest(), load_manifest(bootloader_set="idf6.1")
    assert v61.bootloader_set == "idf6.1"
    assert all(e.bootloader_set == "idf6.1" and V61_COMMIT in e.url for e in v61.entries)
    # same chips, variants, defaults and file names as the released set, other bytes
    shape = lambda m: [(e.chip, e.variant, e.default, e.file) for e in m.entries]  # noqa: E731
    assert shape(v61) == shape(v55)
    assert not {e.sha256 for e in v61.entries} & {e.sha256 for e in v55.entries}


def test_v61_manifest_matches_the_corpus_files():
    for entry in load_manifest(bootloader_set="idf6.1").entries:
        data = corpus_path("bootloaders-idf6.1", entry.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size, entry.file


def test_unknown_set_is_a_one_line_usage_error():
    with pytest.raises(UsageError, match="unknown bootloader set 'idf9'; use one of idf5.5, idf6.1"):
        get_set("idf9")


def test_mirror_folder_serves_the_second_set_from_its_sibling(tmp_path):
    store = _corpus_store(tmp_path)
    manifest = load_manifest(bootloader_set="idf6.1")
    data = store.fetch("esp32c3", manifest=manifest, offline=True, quiet=True)
    assert data == corpus_path("bootloaders-idf6.1", "esp32c3-bootloader.bin").read_bytes()
    assert store.fetch("esp32c3", offline=True, quiet=True) == corpus_path("bootloaders", "esp32c3-bootloader.bin").read_bytes()


def test_mirror_without_the_sibling_names_it(tmp_path):
    mirror = tmp_path / "bootloaders"
    mirror.mkdir()
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(mirror))
    with pytest.raises(BootloaderError) as err:
        store.fetch("esp32c3", manifest=load_manifest(bootloader_set="idf6.1"), offline=True, quiet=True)
    assert "bootloaders-idf6.1" in str(err.value) and "idf6.1 sibling" in err.value.message


def test_mirror_files_are_hash_checked_for_the_second_set(tmp_path):
    mirror = tmp_path / "m"
    (tmp_path / "m-idf6.1").mkdir(parents=True)
    mirror.mkdir()
    # a v5.5 file put where the v6.1 one belongs is refused: every file is checked against its own set's hash
    (tmp_path / "m-idf6.1" / "esp32c3-bootloader.bin").write_bytes(corpus_path("bootloaders", "esp32c3-bootloader.bin").read_bytes())
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(mirror))
    with pytest.raises(BootloaderError, match="SHA-256"):
        store.fetch("esp32c3", manifest=load_manifest(bootloader_set="idf6.1"), offline=True, quiet=True)
    assert not store.read_cached(load_manifest(bootloader_set="idf6.1").lookup("esp32c3"))


def test_mirror_url_serves_the_second_set_from_the_sibling_url(tmp_path):
    from test_download import LocalServer

    server = LocalServer()
    data = corpus_path("bootloaders-idf6.1", "esp32h2-bootloader.bin").read_bytes()
    server.files["/bootloaders-idf6.1/esp32h2-bootloader.bin"] = data
    server.start()
    try:
        store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=f"{server.url}/bootloaders/")
        assert store.fetch("esp32h2", manifest=load_manifest(bootloader_set="idf6.1"), quiet=True) == data
    finally:
        server.stop()
    assert server.requests == ["/bootloaders-idf6.1/esp32h2-bootloader.bin"]


# --------------------------------------------------------------------------- pack / flash / project files


def test_pack_with_the_v61_set_records_it_and_judges_by_v61(tmp_path):
    out = tmp_path / "o"
    result = pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader_set="idf6.1", store=_corpus_store(tmp_path)))
    assert "v6.1 loader rules" in result.bootloader_build
    meta = json.loads((out / "flasher_args.json").read_text())["imgtool"]["bootloader"]
    assert meta["set"] == "idf6.1" and meta["rules"] == "v6.1" and meta["idf_ver"].startswith("v6.1")
    report = verify(out)
    assert report.ok and report.bootloader_build["rules"] == "v6.1"


def test_cli_bootloader_set_option(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(corpus_path("bootloaders")))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    result = run_cli("pack", str(FIXTURES / "esp32c3-min.elf"), "-o", str(tmp_path / "o"), "--bootloader-set", "idf6.1")
    assert result.exit_code == 0, result.output
    assert "bootloader: ESP-IDF v6.1" in result.output and "(v6.1 loader rules)" in result.output
    checked = run_cli("verify", str(tmp_path / "o"))
    assert checked.exit_code == 0 and "ESP-IDF v6.1-beta1-497-g14f663f003e (v6.1 loader rules)" in checked.output
    app_ok = [line for line in checked.output.splitlines() if line.strip().startswith("ok   app (")]
    assert app_ok and "(v6.1 loader rules)" in app_ok[-1]
    bad = run_cli("pack", str(FIXTURES / "esp32c3-min.elf"), "-o", str(tmp_path / "p"), "--bootloader-set", "v7")
    assert bad.exit_code != 0 and "unknown bootloader set 'v7'" in bad.output and not (tmp_path / "p").exists()


def test_bootloader_file_and_set_together_are_refused(tmp_path):
    with pytest.raises(UsageError, match="drop --bootloader or --bootloader-set"):
        pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=tmp_path / "o", bootloader_set="idf6.1",
             bootloader=corpus_path("bootloaders", "esp32c3-bootloader.bin")))


def _project(tmp_path, espflash_toml: str):
    """A crate folder holding the C3 fixture ELF and ``espflash.toml``; returns the ELF."""
    project = tmp_path / "proj"
    project.mkdir()
    elf = project / "app.elf"
    elf.write_bytes((FIXTURES / "esp32c3-min.elf").read_bytes())
    (project / "Cargo.toml").write_text('[package]\nname = "app"\n')
    (project / "espflash.toml").write_text(espflash_toml)
    return elf


def test_espflash_toml_chooses_the_set(tmp_path):
    elf = _project(tmp_path, '[idf_format_args]\nbootloader_set = "idf6.1"\n')
    result = pack(elf, PackOptions(outdir=tmp_path / "o", store=_corpus_store(tmp_path)))
    assert "v6.1 loader rules" in result.bootloader_build and "bootloader_set" in result.config_settings
    # the command line wins
    again = pack(elf, PackOptions(outdir=tmp_path / "o2", bootloader_set="idf5.5", store=_corpus_store(tmp_path)))
    assert "v5.5 loader rules" in again.bootloader_build


def test_espflash_toml_unknown_set_names_the_file_and_key(tmp_path):
    elf = _project(tmp_path, '[idf_format_args]\nbootloader_set = "6.1"\n')
    with pytest.raises(InputError) as err:
        pack(elf, PackOptions(outdir=tmp_path / "o", store=_corpus_store(tmp_path)))
    assert "bootloader_set" in str(err.value) and "espflash.toml" in str(err.value)


def test_bootloader_list_and_fetch_know_both_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(corpus_path("bootloaders")))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    rows = json.loads(run_cli("bootloader", "list", "--json").output)
    assert {r["bootloader_set"] for r in rows} == {"idf5.5", "idf6.1"}
    fetched = run_cli("bootloader", "fetch", "esp32c6", "--set", "idf6.1", "-o", str(tmp_path / "b.bin"))
    assert fetched.exit_code == 0, fetched.output
    assert "set idf6.1" in fetched.output
    assert (tmp_path / "b.bin").read_bytes() == corpus_path("bootloaders-idf6.1", "esp32c6-bootloader.bin").read_bytes()
    rows = json.loads(run_cli("bootloader", "list", "--json").output)
    cached = {(r["bootloader_set"], r["chip"]) for r in rows if r["cached"]}
    assert ("idf6.1", "esp32c6") in cached and ("idf5.5", "esp32c6") not in cached


# --------------------------------------------------------------------------- both sets on every chip they cover


def _variants(set_name: str):
    return [(set_name, e.chip, e.variant) for e in load_manifest(bootloader_set=set_name).entries]


@pytest.mark.parametrize(
    ("set_name", "chip_name", "variant"),
    [pytest.param(*v, id="-".join(v)) for s in BOOTLOADER_SETS for v in _variants(s.name)],
)
def test_every_pinned_bootloader_boots_a_small_app(tmp_path, set_name, chip_name, variant):
    from synthetic_apps import base_sections, build

    from imgtool.chips.table import CHIPS
    from imgtool.image.loader_generations import loader_build_of

    sections, _ = base_sections(chip_name)
    app = build(tmp_path, chip_name, sections)
    elf = app.elf.path
    boot = load_manifest(bootloader_set=set_name).lookup(chip_name, variant)
    min_rev = 300 if (chip_name, variant) == ("esp32p4", "v3") else 100 if chip_name == "esp32p4" else None
    out = tmp_path / "o"
    pack(elf, PackOptions(outdir=out, chip=chip_name, bootloader_set=set_name, bootloader_variant=variant, min_rev_full=min_rev,
         max_rev_full=199 if (chip_name, variant) == ("esp32p4", "v0") else None, store=_corpus_store(tmp_path)))
    report = verify(out, elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    # the rules are the bootloader's own (espflash v4.5.0's S31 build in the v5.5 set is v6.2-dev)
    folder = "bootloaders-idf6.1" if set_name == "idf6.1" else "bootloaders"
    own = loader_build_of(CHIPS[chip_name], corpus_path(folder, boot.file).read_bytes()).generation.name
    assert report.bootloader_build["rules"] == own
    assert own == "v6.1" or set_name == "idf5.5"


@pytest.mark.parametrize("elf", corpus_elf_params())
def test_corpus_elf_packs_and_verifies_with_each_v61_bootloader(elf, tmp_path):
    """Every corpus ELF with every v6.1 build for its chip, judged by the v6.1 rules: it boots, or pack
    refuses it in one line naming the rule."""
    manifest = load_manifest(bootloader_set="idf6.1")
    for entry in manifest.variants(elf.name):
        out = tmp_path / entry.variant
        try:
            pack(elf, PackOptions(outdir=out, flash_size="4MB", bootloader_set="idf6.1", bootloader_variant=entry.variant, store=_corpus_store(tmp_path)))
        except Exception as exc:  # the one refusal the corpus has: esp32p4's app over the v0 build's loader code
            assert (elf.name, entry.variant) == ("esp32p4", "v0"), exc
            assert "verify_load_addresses" in str(exc) and "v6.1 loader rules" in str(exc) and "\n" not in str(exc)
            continue
        report = verify(out, elf=elf)
        assert report.ok, (entry.variant, [str(p) for p in report.problems])
        assert report.bootloader_build["rules"] == "v6.1"


def test_manifest_naming_an_unknown_set_is_refused():
    from imgtool.bootloader.pins import parse_manifest

    doc = json.loads(json.dumps({"schema": 1, "set": "idf9", "bootloaders": [load_manifest().entries[0]._asdict()]}))
    with pytest.raises(BootloaderError) as err:
        parse_manifest(doc, "m.json")
    assert err.value.field == "set" and "unknown bootloader set 'idf9'" in err.value.message
