"""The OTA data partition: which app slot ESP-IDF's bootloader boots.

otadata is two flash sectors, each able to hold one ``esp_ota_select_entry_t``.
The bootloader takes the valid entry with the highest sequence number and boots
OTA slot ``(ota_seq - 1) % number_of_ota_slots``; with no valid entry (all 0xFF,
as erased flash) it boots the factory app, or ota_0 when there is none.
"""

from __future__ import annotations

import binascii
from enum import IntEnum

from construct import Bytes, Int32ul, Struct

from imgtool.errors import UsageError

OTADATA_SECTOR_SIZE = 0x1000
OTADATA_SECTORS = 2
OTADATA_SIZE = OTADATA_SECTOR_SIZE * OTADATA_SECTORS
#: ESP-IDF numbers OTA app slots ota_0 .. ota_15.
MAX_OTA_SLOTS = 16
ERASED_BYTE = b"\xff"
#: A sequence number of all ones means "erased", never a valid entry.
SEQ_ERASED = 0xFFFFFFFF
#: Initial CRC register value ESP-IDF passes to the ROM's crc32_le (UINT32_MAX).
CRC_SEED = 0xFFFFFFFF
SEQ_LABEL_SIZE = 20

#: ``esp_ota_select_entry_t``: 32 bytes at the start of each otadata sector.
OtaSelectEntry = Struct(
    "ota_seq" / Int32ul,
    "seq_label" / Bytes(SEQ_LABEL_SIZE),
    "ota_state" / Int32ul,
    "crc" / Int32ul,
)


class OtaState(IntEnum):
    """``esp_ota_img_states_t``; only consulted when the bootloader has app rollback enabled."""

    NEW = 0x0
    PENDING_VERIFY = 0x1
    VALID = 0x2
    INVALID = 0x3
    ABORTED = 0x4
    UNDEFINED = 0xFFFFFFFF


def ota_select_crc(ota_seq: int) -> int:
    """CRC of an entry as the bootloader checks it: crc32_le(UINT32_MAX, &ota_seq, 4).

    Only the 4-byte sequence number is covered, not the label or state. The ROM's
    crc32_le inverts on entry and exit, which is zlib's CRC-32 started from ~0.
    """
    return binascii.crc32(Int32ul.build(ota_seq), CRC_SEED)


def initial_otadata(select_slot: int | None = None, *, state: OtaState = OtaState.UNDEFINED) -> bytes:
    """Contents for a freshly flashed otadata partition.

    With no slot, both sectors are erased (0xFF), which boots the factory app (or
    ota_0). With a slot, both sectors carry the entry ESP-IDF's ``esp_ota_set_boot_partition``
    writes on blank otadata (``ota_seq = slot + 1``), so either copy selects the slot.
    The state defaults to UNDEFINED, what ESP-IDF writes when rollback is off: a
    bootloader with rollback enabled then treats the app as already confirmed.
    """
    if select_slot is None:
        return ERASED_BYTE * OTADATA_SIZE
    if not 0 <= select_slot < MAX_OTA_SLOTS:
        raise UsageError(f"OTA slot {select_slot} does not exist; use 0 to {MAX_OTA_SLOTS - 1}", field="ota slot")
    seq = select_slot + 1
    entry = OtaSelectEntry.build(
        dict(ota_seq=seq, seq_label=ERASED_BYTE * SEQ_LABEL_SIZE, ota_state=int(state), crc=ota_select_crc(seq))
    )
    sector = entry + ERASED_BYTE * (OTADATA_SECTOR_SIZE - len(entry))
    return sector * OTADATA_SECTORS


def selected_slot(otadata: bytes, ota_slot_count: int) -> int | None:
    """The OTA slot the bootloader would boot from ``otadata``, or None when no entry is valid."""
    best = None
    for sector in range(OTADATA_SECTORS):
        start = sector * OTADATA_SECTOR_SIZE
        chunk = otadata[start : start + OtaSelectEntry.sizeof()]
        if len(chunk) < OtaSelectEntry.sizeof():
            break
        entry = OtaSelectEntry.parse(chunk)
        if entry.ota_seq == SEQ_ERASED or entry.crc != ota_select_crc(entry.ota_seq):
            continue
        if best is None or entry.ota_seq > best:
            best = entry.ota_seq
    if best is None or ota_slot_count <= 0:
        return None
    return (best - 1) % ota_slot_count
