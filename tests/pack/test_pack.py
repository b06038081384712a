"""pack: every output written together, nothing written on failure, the CLI around it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, corpus_elf_params, corpus_path, make_bootloader, run_cli

from imgtool.bootloader.store import BootloaderStore
from imgtool.errors import LayoutError, OutputError, UsageError
from imgtool.image.format import parse_image
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

EXPECTED = [
    "NAME.bin",
    "bootloader.bin",
    "partitions.csv",
    "partitions.bin",
    "NAME.merged.bin",
    "flash_args",
    "flash_merged_args",
    "flasher_args.json",
    "manifest.json",
    "SHA256SUMS",
]




@pytest.fixture
def elf_c3(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    elf = src / "blinky"
    shutil.copy(FIXTURES / "esp32c3-min.elf", elf)
    return elf


@pytest.fixture
def boot_c3(tmp_path):
    return make_bootloader(tmp_path / "bl-c3.bin", "esp32c3")


def names(outdir: Path) -> set[str]:
    return {p.name for p in outdir.iterdir()}


def test_pack_writes_every_output(tmp_path, elf_c3, boot_c3):
    out = tmp_path / "out"
    res = pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, flash_size="4MB"))
    assert list(res.files) == [n.replace("NAME", "blinky") for n in EXPECTED]
    assert names(out) == set(res.files)
    assert res.chip == "esp32c3" and res.flash.size == "4MB" and res.flash.freq == "80m"
    # the bootloader was placed: header patched to 4MB / dio / 80m, hash recomputed
    boot = parse_image((out / "bootloader.bin").read_bytes())
    assert boot.valid and boot.image.flash_size_code == 2 and boot.image.flash_mode == 2
    # SHA256SUMS agrees with the files
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(" *", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    merged = (out / "blinky.merged.bin").read_bytes()
    assert merged[:len(boot_c3.read_bytes())][:1] == b"\xe9"
    assert merged[0x10000 : 0x10000 + res.app_size] == (out / "blinky.bin").read_bytes()
    assert res.merged_esptool_args[-2:] == ("0x0", str((out / "blinky.merged.bin").resolve()))  # outside the cwd: absolute
    assert res.esptool_args[-2:] == ("0x10000", str((out / "blinky.bin").resolve()))  # the parts, as flash_args
    report = verify(out, elf=elf_c3)
    assert report.ok, report.problems


@pytest.mark.parametrize("requested", ["qio", "qout"])
def test_quad_modes_are_written_as_dio_like_esp_idf(requested, tmp_path, elf_c3, boot_c3):
    """The ROM loads the bootloader before quad I/O is on, so every header and argument says dio."""
    out = tmp_path / "out"
    res = pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, flash_mode=requested))
    assert res.flash.mode == "dio"
    dio = 2
    for name in ("bootloader.bin", "blinky.bin"):
        assert parse_image((out / name).read_bytes()).image.flash_mode == dio
    assert "-fm dio" in (out / "flash_args").read_text()
    assert json.loads((out / "flasher_args.json").read_text())["flash_settings"]["flash_mode"] == "dio"
    assert any(f"flash mode {requested} is written as dio" in n for n in res.notes) and not res.warnings
    assert verify(out, elf=elf_c3).ok


def test_bootloader_file_and_variant_together_are_refused(tmp_path, elf_c3, boot_c3):
    with pytest.raises(UsageError) as err:
        pack(elf_c3, PackOptions(outdir=tmp_path / "out", bootloader=boot_c3, bootloader_variant="default"))
    assert err.value.field == "--bootloader-variant"
    assert not (tmp_path / "out").exists()


def test_dout_is_kept(tmp_path, elf_c3, boot_c3):
    res = pack(elf_c3, PackOptions(outdir=tmp_path / "out", bootloader=boot_c3, flash_mode="dout"))
    assert res.flash.mode == "dout" and not res.warnings
    assert parse_image((tmp_path / "out" / "bootloader.bin").read_bytes()).image.flash_mode == 3


def test_pack_defaults_to_the_elf_folder(elf_c3, boot_c3):
    res = pack(elf_c3, PackOptions(bootloader=boot_c3))
    assert res.outdir == elf_c3.parent
    assert (elf_c3.parent / "blinky.merged.bin").is_file()
    assert res.flash.size == "2MB"
    assert not [p for p in elf_c3.parent.parent.iterdir() if p.name.startswith(".")]  # temp dir cleaned


def test_pack_otadata_and_named_partition(tmp_path, elf_c3, boot_c3):
    out = tmp_path / "out"
    res = pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, flash_size="4MB", partition_table="two_ota", app_partition="ota_1"))
    assert (out / "ota_data_initial.bin").read_bytes() != b"\xff" * 0x2000  # selects ota_1 (tests/partitions/test_ota_slot_selection.py)
    assert res.app_partition == "ota_1"
    report = verify(out)
    assert report.ok and report.boot_partition == "ota_1"
    # repacking without otadata removes the stale otadata file
    pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, flash_size="4MB"))
    assert not (out / "ota_data_initial.bin").exists()


def test_app_too_big_fails_before_writing(tmp_path, elf_c3, boot_c3):
    out = tmp_path / "out"
    out.mkdir()
    (out / "blinky.bin").write_bytes(b"old")
    csv = tmp_path / "tiny.csv"
    csv.write_text("nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, 0x10000, 0x1000\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(LayoutError, match="factory"):
        pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, partition_table=csv))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bl-c3.bin", "out", "src", "tiny.csv"]


def test_failed_move_restores_outdir(tmp_path, elf_c3, boot_c3, monkeypatch):
    out = tmp_path / "out"
    pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        calls["n"] += 1
        if "new" in Path(src).parts and calls["n"] > 14:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OutputError, match="nothing was changed"):
        pack(elf_c3, PackOptions(outdir=out, bootloader=boot_c3, flash_size="4MB"))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outdir_that_is_a_file(tmp_path, elf_c3, boot_c3):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        pack(elf_c3, PackOptions(outdir=target, bootloader=boot_c3))


def test_refuses_to_overwrite_the_elf(tmp_path, boot_c3):
    elf = tmp_path / "flash_args"
    shutil.copy(FIXTURES / "esp32c3-min.elf", elf)
    with pytest.raises(UsageError, match="overwrite the input"):
        pack(elf, PackOptions(bootloader=boot_c3))


def test_espflash_toml_is_used_and_command_line_wins(tmp_path, elf_c3, boot_c3):
    (elf_c3.parent / "espflash.toml").write_text('[flash]\nsize = "8MB"\nmode = "dout"\nfrequency = "40MHz"\n')
    res = pack(elf_c3, PackOptions(outdir=tmp_path / "a", bootloader=boot_c3))
    assert (res.flash.size, res.flash.mode, res.flash.freq) == ("8MB", "dout", "40m")
    res = pack(elf_c3, PackOptions(outdir=tmp_path / "b", bootloader=boot_c3, flash_size="4MB"))
    assert res.flash.size == "4MB" and res.flash.mode == "dout"
    res = pack(elf_c3, PackOptions(outdir=tmp_path / "c", bootloader=boot_c3, project_config=False))
    assert res.flash.size == "2MB"


def test_xtensa_fixture_with_fill(tmp_path):
    elf = FIXTURES / "esp32-min.elf"
    boot = make_bootloader(tmp_path / "bl.bin", "esp32")
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=boot, fill_flash_size=True, flash_size="4MB"))
    merged = tmp_path / "out" / "esp32-min.merged.bin"
    assert merged.stat().st_size == 4 * 1024 * 1024 - 0x1000
    assert res.merged.offset == 0x1000
    assert verify(tmp_path / "out", elf=elf).ok


def test_wrong_chip_bootloader_is_refused(tmp_path, elf_c3):
    from imgtool.errors import BootloaderError

    boot = make_bootloader(tmp_path / "bl.bin", "esp32")
    with pytest.raises(BootloaderError, match="esp32"):
        pack(elf_c3, PackOptions(outdir=tmp_path / "out", bootloader=boot))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_pack_summary(tmp_path, elf_c3, boot_c3):
    out = tmp_path / "o"
    result = run_cli("pack", str(elf_c3), "-o", str(out), "--bootloader", str(boot_c3), "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    assert f"imgtool flash {out} --port PORT" in result.output
    assert "esptool --chip esp32c3 write-flash @flash_args" in result.output
    assert "% used" in result.output and "partition-table" in result.output and "0x8000" in result.output


def test_cli_pack_json(tmp_path, elf_c3, boot_c3):
    result = run_cli(
        "pack", elf_c3, "-o", tmp_path / "o", "--bootloader", boot_c3, "--json",
        "--partition-table", "factory_two_ota", "--partition-table-offset", "0x8000", "--flash-size", "4MB",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["chip"] == "esp32c3"
    assert [p["name"] for p in doc["parts"]] == ["bootloader", "partition-table", "otadata", "app"]
    assert doc["app"]["partition"] == "factory"
    assert doc["esptool_command"].startswith("esptool --chip esp32c3 write-flash")


def test_cli_errors_are_one_line(tmp_path, elf_c3, boot_c3):
    result = run_cli("pack", str(tmp_path / "missing"), "--bootloader", str(boot_c3))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgtool: error:")
    result = run_cli("pack", str(elf_c3), "--bootloader", str(boot_c3), "--target-app-partition", "nope")
    assert result.exit_code != 0 and "nope" in result.stderr and result.stderr.count("\n") == 1


def test_pack_does_not_import_esptool_or_rich_when_quiet(tmp_path, elf_c3, boot_c3):
    code = (
        "import sys\n"
        "from imgtool.cli.main import main\n"
        "try:\n"
        f"    main([ 'pack', {str(elf_c3)!r}, '-o', {str(tmp_path / 'o')!r}, '--bootloader', {str(boot_c3)!r}, '-q'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('esptool', 'rich', 'serial')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("elf", corpus_elf_params())
def test_corpus_elf_packs_and_verifies(elf, tmp_path):
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    out = tmp_path / "out"
    res = pack(elf, PackOptions(outdir=out, flash_size="4MB", store=store))
    assert res.chip == elf.name
    report = verify(out, elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    assert report.boot_partition == "factory"
    # the CLI agrees
    result = run_cli("verify", str(out), "--elf", str(elf))
    assert result.exit_code == 0, result.output


def test_cli_bootloader_variant_picks_the_pinned_build(tmp_path, monkeypatch):
    boots = corpus_path("bootloaders")
    elf = corpus_path("elf", "esp32")
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(boots))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    result = run_cli("pack", str(elf), "-o", str(out), "--bootloader-variant", "26mhz", "-q")
    assert result.exit_code == 0, result.output
    placed = (out / "bootloader.bin").read_bytes()
    pinned = (boots / "esp32_26-bootloader.bin").read_bytes()
    assert placed[8:-32] == pinned[8 : len(placed) - 32]  # same build; only the header and hash are redone
    assert verify(out, elf=elf).ok


def test_app_over_the_chosen_bootloaders_ram_is_refused(tmp_path, monkeypatch):
    """The corpus P4 app (built for v3.x) loads where the pre-v3 bootloader keeps its loader code."""
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(corpus_path("bootloaders")))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    elf, out = corpus_path("elf", "esp32p4"), tmp_path / "out"
    result = run_cli("pack", str(elf), "-o", str(out), "--bootloader-variant", "v0", "-q")
    assert result.exit_code == 1 and not out.exists()
    assert "bootloader for v1.0–v1.99 would not start this app" in result.output
    assert "loader code" in result.output and "verify_load_addresses" in result.output
    assert len(result.output.strip().splitlines()) == 1
    ok = run_cli("pack", str(elf), "-o", str(out), "--min-rev", "v3.0", "-q")
    assert ok.exit_code == 0, ok.output
    assert verify(out, elf=elf).ok


def test_command_line_variant_wins_over_a_project_bootloader_file(tmp_path, elf_c3, boot_c3):
    boots = corpus_path("bootloaders")
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(boots))
    (elf_c3.parent / "espflash.toml").write_text(f'[idf_format_args]\nbootloader = "{boot_c3.as_posix()}"\n')
    out = tmp_path / "out"
    pack(elf_c3, PackOptions(outdir=out, bootloader_variant="default", store=store))
    placed = (out / "bootloader.bin").read_bytes()
    assert placed[8:-32] == (boots / "esp32c3-bootloader.bin").read_bytes()[8 : len(placed) - 32]
    pack(elf_c3, PackOptions(outdir=out))  # without it, the project's file is used
    assert (out / "bootloader.bin").read_bytes()[8:-32] == boot_c3.read_bytes()[8:-32]


def test_pack_options_are_one_immutable_record_the_cli_fills_by_field_name():
    """`pack` and `flash ELF` build PackOptions from their click values: every key names a field."""
    from imgtool.cli.pack import pack_kwargs

    names = dict.fromkeys(("flash_size", "flash_mode", "flash_freq", "min_rev", "max_rev", "partition_table",
                           "partition_table_offset", "bootloader", "bootloader_variant", "offline", "target_app_partition"))
    given = pack_kwargs(**names)
    options = PackOptions(**given)
    assert set(given) <= set(PackOptions._fields) and options.data == ()
    with pytest.raises(AttributeError):
        options.chip = "esp32"  # type: ignore[misc]
    assert options._replace(chip="esp32").chip == "esp32" and options.chip is None
