"""What users see: files follow the umask, `-o -` is standard output, user text is never markup,
and the messages once found weak (issue 11) now name the file, field and fix in one line."""

from __future__ import annotations

import os
import shutil
import stat
import sys

import pytest
from conftest import FIXTURES, corpus_path, make_bootloader, run_cli

from imgtool.environment import ENV_MIRROR
from imgtool.image.format import parse_image

C3 = FIXTURES / "esp32c3-min.elf"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="file modes and the umask are POSIX")


run = run_cli


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgtool: error: "), result.output
    return lines[0]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix_only
def test_outputs_follow_the_umask(tmp_path, umask_022):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    app = tmp_path / "app.bin"
    app.write_bytes(b"old")
    os.chmod(app, 0o600)
    assert run("image", C3, "-o", app, "-q").exit_code == 0
    assert mode(app) == 0o644  # replaced through a temp file, which mkstemp would have made 0600
    out = tmp_path / "out"
    assert run("pack", C3, "-o", out, "--bootloader", boot, "-q").exit_code == 0
    assert {mode(p) for p in out.iterdir()} == {0o644}
    table = tmp_path / "table.bin"
    assert run("partitions", "compile", FIXTURES.parent.parent / "partitions" / "two_ota.csv", "-o", table).exit_code == 0
    assert mode(table) == 0o644
    os.umask(0o077)
    assert run("image", C3, "-o", app, "-q").exit_code == 0
    assert mode(app) == 0o600


def test_image_to_standard_output(tmp_path):
    result = run_cli("image", str(C3), "-o", "-")
    assert result.exit_code == 0, result.output
    assert parse_image(result.stdout_bytes).image.segments  # only the image on standard output
    assert "wrote -" in result.stderr and not (tmp_path / "-").exists()


def test_brackets_in_paths_are_printed_not_read_as_markup(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out[/b]"
    result = run("pack", C3, "-o", out, "--bootloader", boot)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    image = tmp_path / "[bold]app[red].bin"
    assert run("image", C3, "-o", image).exit_code == 0
    result = run("info", image, env={"COLUMNS": "400"})  # a long temp path must not wrap inside the name
    assert result.exit_code == 0 and "[bold]app[red].bin" in result.output


def test_pack_summary_names_settings_from_espflash_toml(tmp_path, monkeypatch):
    root = tmp_path / "crate"
    elf_dir = root / "target" / "riscv32imc-unknown-none-elf" / "release"
    elf_dir.mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "blinky"\nversion = "0.1.0"\n')
    (root / "espflash.toml").write_text('[flash]\nsize = "4MB"\n')
    elf = elf_dir / "blinky"
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    monkeypatch.chdir(root)
    result = run("pack", elf, "-o", tmp_path / "out", "--bootloader", boot, "--flash-mode", "dio")
    assert result.exit_code == 0, result.output
    assert "flash 4MB" in result.output and "(flash-size from espflash.toml)" in result.output


def test_bootloader_fetch_takes_the_chip_as_an_argument(tmp_path):
    env = {"IMGTOOL_CACHE_DIR": str(tmp_path / "cache"), ENV_MIRROR: ""}
    line = one_error_line(run("bootloader", "fetch", "esp32s3", "--offline", env=env))
    assert "esp32s3 bootloader (default) is not cached" in line
    line = one_error_line(run("bootloader", "fetch", env=env))
    assert "which chip?" in line and "esp32c3" in line


def test_misaligned_partition_table_offset_blames_the_option(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    line = one_error_line(run("pack", C3, "-o", tmp_path / "o", "--bootloader", boot, "--partition-table-offset", "0x8100"))
    assert line.startswith("imgtool: error: --partition-table-offset: the partition table offset 0x8100 is not a multiple")
    assert "nvs" not in line and "0x9000" in line


def test_app_image_given_as_bootloader(tmp_path):
    app = tmp_path / "app.bin"
    assert run("image", C3, "-o", app, "-q").exit_code == 0
    line = one_error_line(run("pack", C3, "-o", tmp_path / "o", "--bootloader", app))
    assert f"{app}: is an app image" in line and "not a bootloader" in line and "overlaps" not in line


def test_app_too_big_for_the_users_table_does_not_suggest_a_flash_size(tmp_path):
    csv = tmp_path / "tiny.csv"
    csv.write_text("nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, 0x10000, 0x10000\n")
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    line = one_error_line(run("pack", C3, "-o", tmp_path / "o", "--bootloader", boot, "--partition-table", csv))
    assert "--flash-size" not in line and "a table whose 'factory' partition holds at least 0x20000 bytes" in line


def test_bad_mirror_is_named_once(tmp_path):
    env = {"IMGTOOL_CACHE_DIR": str(tmp_path / "cache"), ENV_MIRROR: str(tmp_path / "nowhere")}
    line = one_error_line(run("bootloader", "fetch", "esp32c3", env=env))
    assert line.count(ENV_MIRROR) == 1 and line.startswith(f"imgtool: error: {ENV_MIRROR}: '")


def test_local_mirror_with_the_wrong_file_blames_the_folder(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "esp32c3-bootloader.bin").write_bytes(b"not the pinned build")
    env = {"IMGTOOL_CACHE_DIR": str(tmp_path / "cache"), ENV_MIRROR: str(mirror)}
    line = one_error_line(run("bootloader", "fetch", "esp32c3", env=env))
    assert "mirror folder is not the pinned build" in line and "proxy" not in line


def test_variant_of_a_chip_with_one_build_and_the_article(tmp_path):
    line = one_error_line(run("bootloader", "fetch", "esp32c3", "--variant", "26mhz"))
    assert "which has one build only; drop --variant" in line and "one of default" not in line
    boot = make_bootloader(tmp_path / "bl.bin", "esp32")
    line = one_error_line(run("pack", C3, "-o", tmp_path / "o", "--bootloader", boot))
    assert "use an esp32c3 bootloader" in line


def test_esp8266_elf_is_called_unsupported(tmp_path):
    sys.path.insert(0, str(FIXTURES.parent))
    from elfbuild import EM_XTENSA, Sec, build_elf

    elf = tmp_path / "nodemcu.elf"
    elf.write_bytes(
        build_elf(
            [Sec(".text", 0x4010_0000, b"\x00" * 64, flags="AX"), Sec(".data", 0x3FFE_8000, b"D" * 16, flags="WA")],
            machine=EM_XTENSA,
            entry=0x4010_0004,
        )
    )
    line = one_error_line(run("image", elf))
    assert "ESP8266 firmware is not supported" in line and "could be" not in line


def test_flash_json_and_bootloader_list_json_and_image_json(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    import json

    listed = json.loads(run("bootloader", "list", "--json").output)
    assert {"chip": "esp32", "variant": "26mhz"}.items() <= listed[1].items() and listed[1]["cached"] is False
    result = run_cli("image", str(C3), "-o", str(tmp_path / "a.bin"), "--json")
    doc = json.loads(result.stdout)
    assert doc["chip"] == "esp32c3" and doc["output"] == str(tmp_path / "a.bin") and doc["size"] > 0


def test_corpus_pinned_bootloader_file_records_its_crystal(tmp_path):
    """A pinned build passed with --bootloader keeps its crystal in flasher_args.json, for flash's check."""
    import json

    boot = corpus_path("bootloaders", "esp32_26-bootloader.bin")
    out = tmp_path / "out"
    assert run("pack", FIXTURES / "esp32-min.elf", "-o", out, "--bootloader", boot, "-q").exit_code == 0
    meta = json.loads((out / "flasher_args.json").read_text())
    assert meta["imgtool"]["bootloader"] == {
        "source": "file",
        "chip": "esp32",
        "variant": "26mhz",
        "crystal_mhz": 26,
        "set": "idf5.5",
        "idf_ver": "v5.5.1-838-gd66ebb86d2e",
        "rules": "v5.5",
    }
