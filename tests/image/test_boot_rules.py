"""The bootloader model names the ESP-IDF step behind each way an app image fails to boot."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES, corpus_path

from imgtool.bootloader.pins import load_manifest
from imgtool.chips.table import CHIPS
from imgtool.image.boot_rules import BootContext, check_app, load_address_problem
from imgtool.image.build import build_app_image
from imgtool.image.format import EspImage, Segment, parse_image


def good(chip_name: str) -> EspImage:
    elf = {"esp32": "esp32-min.elf", "esp32c3": "esp32c3-min.elf", "esp32c6": "esp32c6-min.elf"}[chip_name]
    return build_app_image(FIXTURES / elf).image


def rules(chip_name: str, image: EspImage, **context) -> list[tuple[str, bool]]:
    return [(f.rule, f.fatal) for f in check_app(CHIPS[chip_name], parse_image(image.to_bytes()), BootContext(**context))]


def replace_segments(image: EspImage, segments) -> EspImage:
    return EspImage(image.chip_id, image.entry, tuple(segments))


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3", "esp32c6"])
def test_fixture_apps_pass(chip_name):
    assert rules(chip_name, good(chip_name)) == []


def test_seventeen_segments():
    img = good("esp32c3")
    extra = [Segment(0x3FCA0000 + 0x100 * i, b"\0" * 4) for i in range(17 - len(img.segments))]
    assert ("verify_image_header", True) in rules("esp32c3", replace_segments(img, [*img.segments, *extra]))


def test_flash_segment_off_its_page_offset():
    img = good("esp32c3")
    segs = list(img.segments)
    segs.insert(1, Segment(0, b"\0" * 4))  # shifts every later segment by 12 bytes
    assert ("verify_segment_header", True) in rules("esp32c3", replace_segments(img, segs))


def test_two_drom_segments_on_a_separate_bus_chip():
    img = good("esp32c3")
    # A second DROM segment whose data lands congruent (offset math is the test's only concern here).
    extra = Segment(0x3C020000 + (len(img.to_bytes()) + 8 - 0x3C020000) % 0x10000, b"\0" * 4)
    found = rules("esp32c3", replace_segments(img, [*img.segments, extra]))
    assert ("unpack_load_app", True) in found, found


def test_ram_over_the_bootloader_data():
    img = good("esp32c3")
    data = CHIPS["esp32c3"].boot.bootloader_ram[0].data
    assert ("verify_load_addresses", True) in rules("esp32c3", replace_segments(img, [*img.segments, Segment(data.start, b"\0" * 8)]))


def test_entry_point_outside_loaded_code():
    img = good("esp32c3")
    moved = EspImage(img.chip_id, 0x4037C000, img.segments)
    assert ("set_cache_and_start_app", True) in rules("esp32c3", moved)


def test_missing_descriptor_on_a_configurable_page_chip():
    img = good("esp32c6")
    first = img.segments[0]
    segs = [Segment(first.addr, b"\0" * 4 + first.data[4:]), *img.segments[1:]]
    assert ("verify_segment_header", True) in rules("esp32c6", replace_segments(img, segs))


def test_revisions_outside_the_bootloader_are_a_warning():
    assert rules("esp32c3", good("esp32c3"), bootloader_revs=(3, 199)) == [
        ("bootloader_common_check_chip_revision_validity", False)
    ]


def test_esp32_flash_segment_just_into_a_page_warns_for_old_bootloaders():
    img = good("esp32")
    segs = list(img.segments)
    irom = next(i for i, s in enumerate(segs) if CHIPS["esp32"].boot.irom.contains(s.addr))
    start = segs[irom].addr
    segs[irom] = Segment(start, b"\0" * ((0x10000 - start % 0x10000) + 8))  # ends 8 bytes into a page
    assert ("set_cache_and_start_app (ESP-IDF <= v3.1)", False) in rules("esp32", replace_segments(img, segs))


def test_esp32_inverted_diram_alias_is_checked():
    chip = CHIPS["esp32"]
    ram = chip.boot.bootloader_ram[0]
    # The IRAM alias of the bootloader's DRAM data (0x3FFF0000..) lies above SOC_IRAM_HIGH: refused.
    assert load_address_problem(chip, ram, 0x400A0000, 0x400A0100) is None
    assert load_address_problem(chip, ram, 0x3FFF0000, 0x3FFF0010) == "overlaps bootloader data"
    assert load_address_problem(chip, ram, 0x400B0000, 0x400B0010) == "bad load address range"


@pytest.mark.parametrize("entry", load_manifest().entries, ids=lambda e: e.file)
def test_pinned_bootloaders_sit_inside_the_modelled_regions(entry):
    """Each pinned build's loaded data and loader code lie in the linker regions the model protects (bytes from the corpus)."""
    name = entry.file
    chip = CHIPS[entry.chip]
    image = parse_image(Path(corpus_path("bootloaders", name)).read_bytes()).image
    ram = chip.boot.ram_for(image.min_chip_rev_full)
    segs = sorted(image.segments, key=lambda s: s.addr)
    assert any(ram.data.contains(s.addr, len(s.data)) for s in segs), name
    assert any(s.addr == ram.loader_text.start and ram.loader_text.contains(s.addr, len(s.data)) for s in segs), name
