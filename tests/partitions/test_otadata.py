"""Initial otadata: erased, or an ``esp_ota_select_entry_t`` the bootloader accepts, in both sectors."""

from __future__ import annotations

import binascii
import struct

import pytest
from esp_idf_defs import OtaDataSelectEntry, OtaImageState

from imgtool.errors import UsageError
from imgtool.partitions.otadata import (
    FACTORY_INDEX,
    OTADATA_SECTOR_SIZE,
    OTADATA_SIZE,
    OtaState,
    initial_otadata,
    ota_select_crc,
    select_boot_index,
)


def selected_slot(otadata: bytes, ota_slot_count: int) -> int | None:
    """The OTA slot the bootloader's choice lands on, or None when it falls to the factory app."""
    choice = select_boot_index(otadata, ota_slot_count)
    return None if choice.index == FACTORY_INDEX else choice.index


def test_blank_otadata_boots_the_first_app():
    data = initial_otadata()
    assert data == b"\xff" * 0x2000 and OTADATA_SIZE == 0x2000
    assert selected_slot(data, 2) is None


def test_crc_covers_only_ota_seq_like_esp_idf():
    # ESP-IDF: esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4); otatool.py computes it as below.
    for seq in (1, 2, 3, 17, 0xFFFFFFFE):
        assert ota_select_crc(seq) == binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF)
    assert ota_select_crc(1) == 0x4743989A


@pytest.mark.parametrize("slot", [0, 1, 5, 15])
def test_selected_slot_entry_matches_esp_idf_in_both_sectors(slot):
    data = initial_otadata(slot)
    assert len(data) == OTADATA_SIZE
    expected = OtaDataSelectEntry(slot + 1, OtaImageState.UNDEFINED).to_bytes()
    for sector in range(2):
        start = sector * OTADATA_SECTOR_SIZE
        assert data[start : start + 32] == expected
        assert data[start + 32 : start + OTADATA_SECTOR_SIZE] == b"\xff" * (OTADATA_SECTOR_SIZE - 32)
    assert selected_slot(data, 16) == slot


def test_entry_layout():
    entry = initial_otadata(1)[:32]
    seq, label, state, crc = struct.unpack("<I20sII", entry)
    assert (seq, label, state) == (2, b"\xff" * 20, 0xFFFFFFFF)
    assert crc == binascii.crc32(struct.pack("<I", 2), 0xFFFFFFFF)


def test_state_new_matches_esp_idf_defaults():
    assert initial_otadata(3, state=OtaState.NEW)[:32] == OtaDataSelectEntry.from_ota_slot(3).to_bytes()


def test_bootloader_picks_the_highest_valid_sequence():
    first, second = initial_otadata(0), initial_otadata(1)
    mixed = first[:OTADATA_SECTOR_SIZE] + second[OTADATA_SECTOR_SIZE:]
    assert selected_slot(mixed, 2) == 1
    corrupt = bytearray(second)
    corrupt[OTADATA_SECTOR_SIZE + 28] ^= 1
    assert selected_slot(first[:OTADATA_SECTOR_SIZE] + bytes(corrupt[OTADATA_SECTOR_SIZE:]), 2) == 0
    assert selected_slot(initial_otadata(3), 2) == 1  # (seq - 1) % slot count


@pytest.mark.parametrize("slot", [-1, 16])
def test_slot_out_of_range(slot):
    with pytest.raises(UsageError, match="0 to 15"):
        initial_otadata(slot)
