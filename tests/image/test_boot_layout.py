"""Every layout imgtool writes passes the bootloader model on all ten chips, or is refused in one line.

Synthetic ELFs in the shapes that matter to ESP-IDF's ``unpack_load_app`` and
``verify_load_addresses``: rodata and text in one MMU page across a NOBITS gap, text in the next
page, three flash groups, one flash group, rodata in two distant pages, an ESP32 segment ending
just past a page boundary, too many segments, RAM over the bootloader's own memory.
"""

from __future__ import annotations

import pytest
from elfbuild import EM_RISCV, EM_XTENSA, Sec, build_elf
from synthetic_apps import TEXT, base_sections, build, flash_bases, ram_base

from imgtool.chips.table import CHIPS
from imgtool.chips.table import EM_XTENSA as XTENSA
from imgtool.errors import LayoutError
from imgtool.image.boot_rules import check_app, fatal, image_cpu_view
from imgtool.image.build import build_app_image
from imgtool.image.format import MAX_SEGMENTS, parse_image
from imgtool.image.memory import elf_mismatches

SHARED = [name for name, chip in CHIPS.items() if chip.unified_flash_map]
SEPARATE = [name for name, chip in CHIPS.items() if not chip.unified_flash_map]


def assert_boots(result):
    """The model accepts the image and the CPU reads every allocated ELF byte at its address (flash through
    the MMU as the bootloader maps it)."""
    parsed = parse_image(result.data)
    assert not fatal(check_app(result.chip, parsed)), check_app(result.chip, parsed)
    contents = result.elf.read_all()
    desc = result.elf.find_app_descriptor(contents)
    cpu = image_cpu_view(result.chip, parsed, result.data)
    assert not elf_mismatches(list(result.image.segments), result.elf, app_desc_addr=desc.addr if desc else None, memory=cpu)
    return parsed


def shares_entries(chip) -> bool:
    """Whether a DROM page and an IROM page of the chip use one MMU entry (esp32c2/c3/s3)."""
    windows = chip.boot.mmu_windows()
    return not chip.unified_flash_map and any(
        a is not b and a.mmu_id == b.mmu_id and a.first_entry < b.first_entry + b.entries and b.first_entry < a.first_entry + a.entries
        for a in windows
        for b in windows
    )


def assert_refused_for_shared_entries(tmp_path, chip_name, sections):
    with pytest.raises(LayoutError, match="mmu_ll_get_entry_id") as info:
        build(tmp_path, chip_name, sections)
    assert "\n" not in str(info.value) and "rodata and code both need" in str(info.value)


@pytest.mark.parametrize("chip_name", SHARED)
def test_shared_bus_rodata_and_text_in_one_page_keep_two_segments(tmp_path, chip_name):
    sections, rodata_end = base_sections(chip_name, text_at=None)
    text_at = rodata_end + 0x24
    sections[2] = Sec(".text", text_at, TEXT, flags="AX")
    sections.append(Sec(".text_gap", rodata_end, size=0x24, flags="A", type="NOBITS", align=1))
    parsed = assert_boots(build(tmp_path, chip_name, sections))
    flash = [ps for ps in parsed.segments if CHIPS[chip_name].is_flash_mapped(ps.segment.addr)]
    assert [ps.segment.addr for ps in flash] == [sections[0].addr, text_at]
    assert flash[0].data_offset - flash[0].segment.addr == flash[1].data_offset - flash[1].segment.addr


@pytest.mark.parametrize("chip_name", sorted(CHIPS))
def test_text_in_the_next_page(tmp_path, chip_name):
    sections, _ = base_sections(chip_name)
    assert_boots(build(tmp_path, chip_name, sections))


@pytest.mark.parametrize("chip_name", sorted(CHIPS))
def test_three_flash_groups(tmp_path, chip_name):
    chip = CHIPS[chip_name]
    ro, tx = flash_bases(chip)
    extra = [Sec(".rodata.far", ro + 0x3_0000, b"F" * 0x40, flags="A"), Sec(".text.far", tx + 0x5_0000, TEXT, flags="AX")]
    sections, _ = base_sections(chip_name, extra=extra)
    if shares_entries(chip):
        # rodata pages 0-3 and code pages 1-5 overlap in the MMU entries both buses use
        return assert_refused_for_shared_entries(tmp_path, chip_name, sections)
    parsed = assert_boots(build(tmp_path, chip_name, sections))
    mapped = [ps for ps in parsed.segments if chip.is_flash_mapped(ps.segment.addr)]
    assert len(mapped) == 2


@pytest.mark.parametrize("chip_name", SHARED)
def test_one_flash_group_gets_a_second_mapping(tmp_path, chip_name):
    sections, rodata_end = base_sections(chip_name)
    sections[2] = Sec(".text", rodata_end, TEXT, flags="AX")
    parsed = assert_boots(build(tmp_path, chip_name, sections))
    mapped = [ps for ps in parsed.segments if CHIPS[chip_name].is_flash_mapped(ps.segment.addr)]
    assert len(mapped) == 2 and len(mapped[1].segment.data) == 4


@pytest.mark.parametrize("chip_name", SEPARATE)
def test_rodata_in_two_distant_pages_is_one_drom_segment(tmp_path, chip_name):
    chip = CHIPS[chip_name]
    ro, _ = flash_bases(chip)
    sections, _ = base_sections(chip_name, extra=[Sec(".rodata.far", ro + 0x2_0000, b"F" * 0x40, flags="A")])
    if shares_entries(chip):
        # the rodata segment's pages 0-2 include entry 1, which the code in IROM page 1 needs
        return assert_refused_for_shared_entries(tmp_path, chip_name, sections)
    parsed = assert_boots(build(tmp_path, chip_name, sections))
    assert sum(chip.boot.drom.contains(ps.segment.addr) for ps in parsed.segments) == 1


def test_esp32_flash_segment_ending_just_into_a_page_is_padded(tmp_path):
    chip = CHIPS["esp32"]
    ro, _ = flash_bases(chip)
    # The DROM segment's data starts at file offset 0x20 and would end 0x08 bytes into the next page.
    rodata_len = 0x1_0000 + 0x08 - 0x20 - 0x100
    sections, _ = base_sections("esp32", rodata_len=rodata_len)
    parsed = assert_boots(build(tmp_path, "esp32", sections))
    drom = next(ps for ps in parsed.segments if chip.boot.drom.contains(ps.segment.addr))
    assert (drom.data_offset + len(drom.segment.data)) % 0x1_0000 >= 0x24
    assert not check_app(chip, parsed)


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3", "esp32c6", "esp32p4"])
def test_seventeen_segments_are_refused_in_one_line(tmp_path, chip_name):
    ram = ram_base(CHIPS[chip_name])
    extra = [Sec(f".data{i}", ram + 0x100 * (i + 1), b"D" * 8, flags="WA") for i in range(MAX_SEGMENTS)]
    sections, _ = base_sections(chip_name, extra=extra)
    with pytest.raises(LayoutError, match="at most 16") as info:
        build(tmp_path, chip_name, sections)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("chip_name", sorted(CHIPS))
def test_ram_over_the_bootloader_is_refused_in_one_line(tmp_path, chip_name):
    chip = CHIPS[chip_name]
    data = chip.boot.bootloader_ram[-1].data
    sections, _ = base_sections(chip_name, extra=[Sec(".data.late", data.start + 0x100, b"X" * 0x40, flags="WA")])
    max_rev = None if len(chip.boot.bootloader_ram) == 1 else 0xFFFF
    with pytest.raises(LayoutError, match=r"bootloader would not start this image: .*overlaps bootloader (data|stack).*verify_load_addresses") as info:
        path = tmp_path / "fw.elf"
        path.write_bytes(
            build_elf(sections, machine=EM_XTENSA if chip.elf_machine == XTENSA else EM_RISCV, entry=sections[2].addr)
        )
        build_app_image(path, chip=chip_name, min_rev_full=chip.boot.bootloader_ram[-1].min_rev, max_rev_full=max_rev)
    assert "\n" not in str(info.value)
