"""The chip table agrees with esptool's public target definitions where both state a fact."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import imgtool

from imgtool.chips.table import ANY_REVISION_MAX, CHIPS, FLASH_SIZES, Region, get_chip, parse_revision, revision_range
from imgtool.errors import UsageError

esptool_targets = pytest.importorskip("esptool.targets")


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_chip_facts_match_esptool(name):
    chip = CHIPS[name]
    ref = esptool_targets.CHIP_DEFS[name]
    assert chip.image_chip_id == ref.IMAGE_CHIP_ID
    assert chip.bootloader_offset == ref.BOOTLOADER_FLASH_OFFSET
    assert chip.flash_freqs == ref.FLASH_FREQUENCY
    assert {k: v >> 4 for k, v in ref.FLASH_SIZES.items() if k in FLASH_SIZES} == FLASH_SIZES
    flash = [r for r in chip.memory if r.region.flash_mapped]
    mapped = [(lo, hi) for lo, hi, kind in ref.MEMORY_MAP if kind in ("IROM", "DROM")]
    mapped += [(ref.IROM_MAP_START, ref.IROM_MAP_END), (ref.DROM_MAP_START, ref.DROM_MAP_END)]
    assert flash and all(any(lo <= r.start and r.end <= hi for lo, hi in mapped) for r in flash)
    assert chip.default_flash_freq in chip.flash_freqs


def test_bootloader_offsets_by_family():
    offsets = {name: chip.bootloader_offset for name, chip in CHIPS.items()}
    assert offsets["esp32"] == offsets["esp32s2"] == 0x1000
    assert offsets["esp32c5"] == offsets["esp32p4"] == 0x2000
    assert all(offsets[n] == 0 for n in ("esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2", "esp32c61"))


def test_memory_ranges_do_not_overlap_within_a_chip():
    for chip in CHIPS.values():
        ranges = sorted(chip.memory, key=lambda r: r.start)
        for a, b in zip(ranges, ranges[1:]):
            assert a.end <= b.start, (chip.name, a, b)


def test_lookup_is_forgiving_about_spelling_and_strict_about_names():
    assert get_chip("ESP32-C3") is CHIPS["esp32c3"]
    with pytest.raises(UsageError, match="unknown chip 'esp8266'"):
        get_chip("esp8266")


def test_every_chip_has_ram_and_flash_mapping():
    for chip in CHIPS.values():
        kinds = {r.region for r in chip.memory}
        assert kinds & {Region.IROM, Region.DROM}
        assert kinds & {Region.IRAM, Region.DRAM, Region.SRAM}


def test_bootloader_load_ranges_cover_each_placement_ram_range_once_per_bus():
    """SRAM loads as both DRAM and IRAM; RTC fast memory given once loads on the instruction and data side."""
    for chip in CHIPS.values():
        load = set(chip.boot.load)
        for ram in chip.memory:
            if ram.region is Region.SRAM:
                assert {ram._replace(region=Region.DRAM), ram._replace(region=Region.IRAM)} <= load, chip.name
            elif not ram.region.flash_mapped:
                assert ram in load, (chip.name, ram)
        rtc_i = [r for r in chip.boot.load if r.region is Region.RTC_IRAM]
        assert len(rtc_i) == len([r for r in chip.boot.load if r.region is Region.RTC_DRAM]), chip.name


def test_every_chip_declares_its_mmu_windows_and_bus_kind():
    for chip in CHIPS.values():
        windows = chip.boot.mmu_windows()
        assert windows and all(w.entries > 0 for w in windows), chip.name
        assert chip.unified_flash_map == (chip.boot.drom == chip.boot.irom), chip.name


def test_a_chips_mmu_windows_do_not_overlap():
    """A bus address is in at most one MMU window: the MMU model looks a run of pages up in the window of its first."""
    for chip in CHIPS.values():
        spans = sorted((w.span for w in chip.boot.mmu_windows()), key=lambda s: s.start)
        for a, b in zip(spans, spans[1:]):
            assert a.end <= b.start, (chip.name, a, b)

def test_security_capabilities_are_table_rows():
    assert all(chip.flash_encryption.key_lengths for chip in CHIPS.values())
    assert [n for n, c in CHIPS.items() if not c.flash_encryption.xts] == ["esp32"]
    assert [n for n, c in CHIPS.items() if c.secure_boot is None] == ["esp32h4"]
    assert {n: c.secure_boot.min_rev for n, c in CHIPS.items() if c.secure_boot and c.secure_boot.min_rev} == {
        "esp32": 300,
        "esp32c3": 3,
    }


def test_revision_range_spells_closed_and_open_ranges():
    assert revision_range(100, 199) == "v1.0–v1.99"
    assert revision_range(300, None) == revision_range(300, ANY_REVISION_MAX) == "v3.0–any"
    assert revision_range(300, ANY_REVISION_MAX, "-", later=True) == "v3.0 and later"
    assert revision_range(0, 99, " to ", later=True) == "v0.0 to v0.99"


def test_revision_numbers_outside_the_header_encoding_are_refused():
    assert parse_revision("v3.1", "--min-rev") == 301
    with pytest.raises(UsageError, match="--max-rev must be between 0 and 65535"):
        parse_revision(ANY_REVISION_MAX + 1, "--max-rev")


def test_no_module_outside_chips_branches_on_or_tabulates_chip_names():
    """Chip facts live in the table: a chip name compared with, or used as a dict key, elsewhere is a fact that escaped it."""
    package = Path(imgtool.__file__).parent
    escaped = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "chips":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                literals = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                literals = [k for k in node.keys if k is not None]
            else:
                continue
            for lit in literals:
                items = lit.elts if isinstance(lit, (ast.Tuple, ast.List, ast.Set)) else [lit]
                escaped += [
                    f"{path.relative_to(package)}:{node.lineno}"
                    for item in items
                    if isinstance(item, ast.Constant) and item.value in CHIPS
                ]
    assert escaped == []
