"""Every hint names a step that exists: each test takes the failure, follows the hint and gets further."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import FIXTURES, corpus_path, make_bootloader, run_cli

from imgtool.bootloader.store import BootloaderStore
from imgtool.device.flasher import FlashOptions, flash_folder
from imgtool.device.preflight import FlashCheckError
from imgtool.flash.pack_folder import read_pack_folder
from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
C6 = FIXTURES / "esp32c6-min.elf"
ESP32 = FIXTURES / "esp32-min.elf"


def written(esp) -> bool:
    return any(call[0] == "write" for call in esp.calls)


def test_a_revision_no_pinned_bootloader_starts_on_names_a_bootloader_file(tmp_path, fake_esptool):
    """An ESP32-C3 v0.0 under the pinned v0.3+ bootloader: there is no variant to name, so the hint is --bootloader."""
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    out = tmp_path / "out"
    pack(C3, PackOptions(outdir=out, project_config=False, offline=True, store=store))
    fake_esptool.revision = 0
    with pytest.raises(FlashCheckError) as err:
        flash_folder(out, FlashOptions(port="p"), log=lambda _: None, store=store)
    assert "bootloader list" not in err.value.message and "--bootloader-variant" not in err.value.message
    assert "no pinned bootloader starts on this revision; pack the ELF again with --bootloader FILE" in err.value.message
    result = run_cli("pack", C3, "-o", out, "--bootloader", make_bootloader(tmp_path / "own.bin", "esp32c3"), "-q")
    assert result.exit_code == 0, result.output
    flash_folder(out, FlashOptions(port="p"), log=lambda _: None, store=store)
    assert written(fake_esptool)


def test_a_revision_a_pinned_variant_starts_on_names_that_variant(tmp_path):
    """ESP32-P4 v1.0 under the default v3 bootloader: the pinned v0 build starts on it, and the hint says so."""
    from imgtool.bootloader.pins import load_manifest
    from imgtool.device.flasher import _bootloader_fix
    from imgtool.image.format import parse_image

    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    out = tmp_path / "out"
    pack(corpus_path("elf", "esp32p4"), PackOptions(outdir=out, project_config=False, offline=True, store=store))
    manifest = load_manifest()
    hint = _bootloader_fix(read_pack_folder(out), 100, manifest, store)
    assert hint == "pack the ELF again with --bootloader-variant v0, the pinned build that starts on it"
    v0 = store.fetch("esp32p4", variant="v0", offline=True, quiet=True, manifest=manifest)
    assert parse_image(v0).image.min_chip_rev_full <= 100  # following it: a bootloader that starts on v1.0


def test_a_revision_the_app_excludes_names_min_rev(tmp_path, fake_esptool):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    pack(C3, PackOptions(outdir=out, bootloader=boot, project_config=False, min_rev_full=101))
    with pytest.raises(FlashCheckError, match=r"pack the ELF again with --min-rev/--max-rev including v0\.4"):
        flash_folder(out, FlashOptions(port="p"), log=lambda _: None)
    assert run_cli("pack", C3, "-o", out, "--bootloader", boot, "--min-rev", "0.4", "-q").exit_code == 0
    flash_folder(out, FlashOptions(port="p"), log=lambda _: None)
    assert written(fake_esptool)


def test_a_pack_for_another_chip_names_building_for_the_connected_one(tmp_path, fake_esptool):
    """An esp32 pack on an ESP32-C6: an Xtensa ELF cannot be packed for a RISC-V chip, so the hint is to build for it."""
    out = tmp_path / "out"
    pack(ESP32, PackOptions(outdir=out, bootloader=make_bootloader(tmp_path / "bl32.bin", "esp32"), project_config=False))
    fake_esptool.CHIP_NAME = "ESP32-C6"
    with pytest.raises(FlashCheckError) as err:
        flash_folder(out, FlashOptions(port="p"), log=lambda _: None)
    assert "--chip" not in err.value.message and "build the firmware for esp32c6 and pack that ELF" in err.value.message
    result = run_cli("pack", C6, "-o", out, "--bootloader", make_bootloader(tmp_path / "bl6.bin", "esp32c6"), "-q")
    assert result.exit_code == 0, result.output
    flash_folder(out, FlashOptions(port="p"), log=lambda _: None)
    assert written(fake_esptool)


def test_flashing_an_elf_names_the_elf_not_a_temporary_folder(tmp_path, fake_esptool):
    fake_esptool.CHIP_NAME = "ESP32-C6"
    elf = tmp_path / "blinky"
    shutil.copy(C3, elf)
    result = run_cli("flash", elf, "--port", "p", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"))
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert f"the pack of {elf} is for esp32c3" in line and "imgtool-flash-" not in line, line


@pytest.mark.parametrize("command", [["info"], ["sign", "--key", "k.pem", "-o", "signed.bin"]])
def test_an_elf_given_for_an_image_names_imgtool_image(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(C3, tmp_path / "blinky")
    result = run_cli(command[0], "blinky", *command[1:])
    assert result.exit_code != 0
    suggested = re.search(r"'imgtool (image [^']+)'", result.stderr).group(1).split()
    assert "found 0x7F" not in result.stderr
    assert run_cli(*suggested).exit_code == 0
    info = run_cli("info", "app.bin")
    assert info.exit_code == 0 and "esp32c3" in info.output


def test_a_preset_larger_than_the_flash_names_the_flash_size(tmp_path):
    result = run_cli("pack", C3, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                     "--partition-table", "two_ota")
    assert result.exit_code != 0 and "shrink" not in result.stderr
    size = re.search(r"pass --flash-size (\S+)", result.stderr).group(1)
    followed = run_cli("pack", C3, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                       "--partition-table", "two_ota", "--flash-size", size)
    assert size == "4MB" and followed.exit_code == 0, followed.output


def test_the_p4_note_points_to_a_list_that_says_which_variant_is_for_which_revision(tmp_path):
    env = {"IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders")), "IMGTOOL_CACHE_DIR": str(tmp_path / "cache"),
           "COLUMNS": "200"}
    result = run_cli("pack", corpus_path("elf", "esp32p4"), "-o", tmp_path / "out", env=env)
    assert "before v3.0 do not boot this pack" in result.stdout and "'imgtool bootloader list'" in result.stdout
    listed = run_cli("bootloader", "list", env=env)
    row = next(line for line in listed.stdout.splitlines() if "esp32p4" in line and " v0 " in line)
    assert "chip revisions v1.0-v1.99" in row


def test_verify_given_an_elf_names_pack_then_verify(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(C3, tmp_path / "blinky")
    result = run_cli("verify", "blinky")
    assert result.exit_code != 0 and "--chip" not in result.stderr
    pack_step, verify_step = re.findall(r"'imgtool ([^']+)'", result.stderr)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    assert run_cli(*pack_step.replace("OUTDIR", "out").split(), "--bootloader", boot, "-q").exit_code == 0
    assert run_cli(*verify_step.replace("OUTDIR", "out").split()).exit_code == 0
