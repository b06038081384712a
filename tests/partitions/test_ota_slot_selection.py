"""OTA slot selection in packs and verify: the slot a pack's initial otadata selects is the one ESP-IDF's bootloader boots.

The bootloader's slot choice is checked against this file's own reading of ESP-IDF v5.5's
``bootloader_utility_get_selected_boot_partition`` (../shared/reference/esp-idf-v5.5/bootloader_utility.c
and bootloader_common_loader.c), written apart from imgtool's model in ``imgtool/partitions/otadata.py``.
"""

from __future__ import annotations

import struct

import pytest
from conftest import bootloader_image, pack_c3
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtool.chips.table import get_chip
from imgtool.errors import LayoutError
from imgtool.flash.layout import FlashSettings, plan_layout
from imgtool.image.format import EspImage, Segment
from imgtool.inspect.verify import verify
from imgtool.partitions.choice import load_preset
from imgtool.partitions.otadata import FACTORY_INDEX, initial_otadata, select_boot_index
from imgtool.partitions.table import PartitionTable

SECTOR = 0x1000
ENTRY = struct.Struct("<I20sII")  # esp_ota_select_entry_t: ota_seq, seq_label, ota_state, crc
STATE_INVALID, STATE_ABORTED = 3, 4
ERASED_SEQ = 0xFFFFFFFF


def rom_crc32_le(crc: int, data: bytes) -> int:
    """The ROM's crc32_le: reflected CRC-32 (poly 0xEDB88320), inverted on entry and exit."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def idf_selected_index(otadata: bytes, app_count: int) -> int:
    """bootloader_utility_get_selected_boot_partition as read from ESP-IDF v5.5 (no rollback options): -1 = factory."""
    entries = [ENTRY.unpack_from(otadata, sector * SECTOR) for sector in (0, 1)]

    def invalid(e):  # bootloader_common_ota_select_invalid
        return e[0] == ERASED_SEQ or e[2] in (STATE_INVALID, STATE_ABORTED)

    def valid(e):  # bootloader_common_ota_select_valid
        return not invalid(e) and e[3] == rom_crc32_le(0xFFFFFFFF, struct.pack("<I", e[0]))

    if (invalid(entries[0]) and invalid(entries[1])) or app_count == 0:
        return -1
    ok = [valid(e) for e in entries]
    if ok[0] and ok[1]:  # bootloader_common_select_otadata(max=true)
        active = 0 if max(entries[0][0], entries[1][0]) == entries[0][0] else 1
    elif ok[0] or ok[1]:
        active = 0 if ok[0] else 1
    else:
        return -1
    return ((entries[active][0] - 1) & 0xFFFFFFFF) % app_count


def otadata_of(*entries) -> bytes:
    out = b""
    for seq, state, crc_ok in entries:
        crc = rom_crc32_le(0xFFFFFFFF, struct.pack("<I", seq)) ^ (0 if crc_ok else 1)
        out += ENTRY.pack(seq, b"\xff" * 20, state, crc).ljust(SECTOR, b"\xff")
    return out


def test_ota_1_pack_makes_the_bootloader_choose_ota_1(tmp_path, boot):
    res = pack_c3(tmp_path / "out", boot, "two_ota", "ota_1")
    otadata = (tmp_path / "out" / "ota_data_initial.bin").read_bytes()
    table = load_preset("two_ota")
    assert idf_selected_index(otadata, len(table.ota_apps)) == 1
    merged = (tmp_path / "out" / res.merged.file).read_bytes()
    at = table.otadata.offset - res.merged.offset
    assert merged[at : at + len(otadata)] == otadata
    # the state is UNDEFINED (what otatool leaves), so a rollback-enabled bootloader does not abort the slot
    assert ENTRY.unpack_from(otadata)[2] == 0xFFFFFFFF
    report = verify(tmp_path / "out")
    assert report.ok and report.boot_partition == "ota_1" and "bootloader_utility_get_selected_boot_partition" in report.boot_reason


@pytest.mark.parametrize(("table", "slot"), [("factory_two_ota", None), ("factory_two_ota", "factory"), ("two_ota", "ota_0"), ("two_ota", None)])
def test_factory_and_ota_0_keep_otadata_blank(tmp_path, boot, table, slot):
    res = pack_c3(tmp_path / "out", boot, table, slot)
    assert (tmp_path / "out" / "ota_data_initial.bin").read_bytes() == b"\xff" * 0x2000
    assert verify(tmp_path / "out").boot_partition == res.app_partition


def test_ota_0_beside_a_factory_app_is_selected(tmp_path, boot):
    pack_c3(tmp_path / "out", boot, "factory_two_ota", "ota_0")
    otadata = (tmp_path / "out" / "ota_data_initial.bin").read_bytes()
    assert idf_selected_index(otadata, 2) == 0
    assert verify(tmp_path / "out").boot_partition == "ota_0"


@settings(max_examples=25, deadline=None)
@given(
    first=st.tuples(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 2, 3, 4, 0xFFFFFFFF]), st.booleans()),
    second=st.tuples(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 2, 3, 4, 0xFFFFFFFF]), st.booleans()),
    app_count=st.integers(0, 16),
)
def test_model_matches_esp_idf_rule_over_sequence_numbers(first, second, app_count):
    data = otadata_of(first, second)
    expected = idf_selected_index(data, app_count)
    assert select_boot_index(data, app_count).index == (FACTORY_INDEX if expected == -1 else expected)


@settings(max_examples=25, deadline=None)
@given(slot=st.integers(0, 15), extra=st.integers(0, 15))
def test_initial_otadata_selects_its_slot_for_any_slot_count(slot, extra):
    assert idf_selected_index(initial_otadata(slot), slot + 1 + extra) == slot


def test_seq_zero_wraps_as_uint32():
    # (0 - 1) as uint32 is 0xFFFFFFFF, which is 0 mod 3 (not -1 mod 3 = 2)
    data = otadata_of((0, 0xFFFFFFFF, True), (ERASED_SEQ, 0xFFFFFFFF, True))
    assert select_boot_index(data, 3).index == idf_selected_index(data, 3) == 0


def _app(chip):
    return EspImage(chip_id=chip.image_chip_id, entry=0x4038_0000, segments=(Segment(0x4038_0000, b"\x01" * 64),)).to_bytes()


def test_verify_fails_when_the_selected_slot_is_empty():
    chip = get_chip("esp32c3")
    lay = plan_layout(chip, name="a", app=_app(chip), bootloader=bootloader_image("esp32c3", 2), table=load_preset("two_ota"),
                      settings=FlashSettings("dio", "80m", "4MB"), app_partition="ota_0", otadata=initial_otadata(1))
    report = verify(bytes(lay.merged_bytes()))
    assert report.boot_partition == "ota_1" and not report.ok
    problem = str(report.problems[0])
    assert "'ota_1'" in problem and "falls back to 'ota_0'" in problem and "bootloader_utility_load_boot_image" in problem


def test_unreachable_slot_is_refused():
    table = PartitionTable.from_csv("otadata, data, ota, , 8K,\na, app, ota_0, , 64K,\nb, app, ota_2, , 64K,")
    chip = get_chip("esp32c3")
    with pytest.raises(LayoutError, match="ota_0 .. ota_1"):
        plan_layout(chip, name="a", app=_app(chip), bootloader=bootloader_image("esp32c3", 2), table=table,
                    settings=FlashSettings("dio", "80m", "4MB"), app_partition="b")
