"""ROM-loaded images: an ELF whose loaded sections are all RAM (a second-stage bootloader, a RAM-only app)
is built as the ROM loads it, which on ESP32 includes the cache RAM banks an app may not use."""

from __future__ import annotations

import pytest
from conftest import CORPUS, corpus_path, esptool, run_cli
from elfbuild import EM_XTENSA, Sec, build_elf, esp_app_sections

from imgtool.chips.table import CHIPS, Region
from imgtool.errors import LayoutError
from imgtool.image.build import build_app_image
from imgtool.inspect.image_info import describe


def test_esp32_bootloader_elf_gives_esptools_elf2image_bytes(tmp_path):
    """esptool's own test ELF (loader code in the APP CPU cache bank at 0x40078000), with imgtool's flash defaults."""
    elf = corpus_path("elf-rom", "esp32-bootloader.elf")
    theirs = tmp_path / "esptool.bin"
    esptool("--chip", "esp32", "elf2image", "--flash-mode", "dio", "--flash-size", "2MB", "--flash-freq", "40m", "-o", theirs, elf)
    ours = tmp_path / "imgtool.bin"
    result = run_cli("image", elf, "--chip", "esp32", "-o", ours)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no app-descriptor or boot-rule warnings for an image the ROM loads
    assert "built as the ROM loads it" in result.stdout
    assert ours.read_bytes() == theirs.read_bytes()
    assert run_cli("image", elf, "-o", tmp_path / "detected.bin").exit_code == 0  # the chip is detected too
    assert (tmp_path / "detected.bin").read_bytes() == theirs.read_bytes()


def _pinned_bootloaders():
    files = sorted(p for d in ("bootloaders", "bootloaders-idf6.1") for p in (CORPUS / d).glob("*.bin"))
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no pinned bootloaders under {CORPUS}"), id="no-corpus")]
    return [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in files]


@pytest.mark.parametrize("path", _pinned_bootloaders())
def test_info_names_a_region_for_every_segment_of_every_pinned_bootloader(path):
    report = describe(path)
    assert report["chip"] is not None
    assert all(seg["memory"] not in ("outside memory", "?", "padding") for seg in report["segments"]), report["segments"]
    assert report["problems"] == []


def test_pinned_esp32_bootloader_loader_code_is_cache_ram():
    report = describe(corpus_path("bootloaders", "esp32-bootloader.bin"))
    assert [seg["memory"] for seg in report["segments"]] == ["DRAM", Region.CACHE_RAM.value, "IRAM"]


def test_an_app_may_not_load_into_rom_only_ram(tmp_path):
    """verify_load_addresses refuses app segments in the ESP32 cache banks; the refusal says why in one line."""
    secs = esp_app_sections("esp32") + [Sec(".iram_loader", 0x4007_8000, b"\x00" * 16, flags="AX")]
    elf = tmp_path / "app"
    elf.write_bytes(build_elf(secs, machine=EM_XTENSA, entry=0x400D_0020, symbols=["esp32.0123456789abcdef-cgu.0"]))
    with pytest.raises(LayoutError, match=r"section \.iram_loader at 0x40078000\.\.0x40078010 is in esp32 RAM that only the ROM loads"):
        build_app_image(elf)


def test_a_ram_only_app_needs_no_descriptor_and_no_flash_mapping(tmp_path):
    """On a chip whose bootloader requires the descriptor (configurable MMU page), the ROM does not."""
    ram = [s for s in esp_app_sections("esp32c6") if s.addr and not CHIPS["esp32c6"].is_flash_mapped(s.addr)]
    elf = tmp_path / "ramapp"
    elf.write_bytes(build_elf(ram, entry=ram[0].addr, symbols=["esp32c6.0123456789abcdef-cgu.0"]))
    result = build_app_image(elf)
    assert result.rom_loaded and result.app_desc is None and result.warnings == []
    assert [seg.addr for seg in result.image.segments] == [0x4080_0000]


@pytest.mark.parametrize("chip", ["esp32", "esp32c3", "esp32c6", "esp32s31", "esp32h4", "esp32h21"])
def test_a_ram_only_elf_loads_what_esptool_elf2image_loads(tmp_path, chip):
    """Segment joins may differ (esptool merges in ELF order), the RAM the ROM fills may not."""
    from elfbuild import EM_RISCV

    from imgtool.image.format import parse_image
    from imgtool.image.memory import LoadedMemory

    ram = [s for s in esp_app_sections(chip) if s.addr and not CHIPS[chip].is_flash_mapped(s.addr)]
    elf = tmp_path / "ramapp"
    elf.write_bytes(build_elf(ram, machine=EM_XTENSA if chip == "esp32" else EM_RISCV, entry=ram[0].addr))
    theirs = tmp_path / "esptool.bin"
    esptool("--chip", chip, "elf2image", "--flash-mode", "dio", "--flash-size", "2MB", "-o", theirs, elf)
    ours = parse_image(build_app_image(elf, chip=chip).data).image
    other = parse_image(theirs.read_bytes()).image
    assert ours.entry == other.entry
    loaded, expected = LoadedMemory(ours.segments), LoadedMemory(other.segments)
    for seg in other.segments:
        assert loaded.read(seg.addr, len(seg.data)) == expected.read(seg.addr, len(seg.data)), hex(seg.addr)
    assert sum(len(s.data) for s in ours.segments) == sum(len(s.data) for s in other.segments)
