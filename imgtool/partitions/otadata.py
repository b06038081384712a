"""The OTA data partition: which app slot ESP-IDF's bootloader boots.

otadata is two flash sectors, each able to hold one ``esp_ota_select_entry_t``.
What the v5.5 bootloader does with them (``bootloader_utility.c``,
``bootloader_common_loader.c`` in ../shared/reference/esp-idf-v5.5) is modelled
here once, rule by rule, for ``pack`` (which slot its otadata selects) and
``verify`` (which slot a merged image boots):

- an entry counts when its sequence number is not all ones, its state is not
  INVALID or ABORTED (``bootloader_common_ota_select_invalid``) and its CRC over
  the sequence number matches (``bootloader_common_ota_select_valid``);
- of two valid entries the higher sequence number wins, the first sector on a tie
  (``bootloader_common_select_otadata``);
- the winner boots OTA slot ``(ota_seq - 1) % number_of_ota_partitions``, counted in
  uint32 (``bootloader_utility_get_selected_boot_partition``);
- no usable entry, or no OTA partition: the factory app, else ota_0;
- a slot without a loadable image: the bootloader walks down to the factory app, then
  up through the higher slots (``bootloader_utility_load_boot_image``).
"""

from __future__ import annotations

import binascii

from construct import Bytes, Int32ul, Struct

from imgtool.chips.table import ERASED, FLASH_SECTOR_SIZE
from imgtool.errors import LayoutError, UsageError
from imgtool.partitions.table import OTA_SLOTS, OTADATA_SIZE, SUBTYPE_FACTORY, SUBTYPE_TEST, Partition, PartitionTable

#: Each of otadata's two copies owns one flash sector.
OTADATA_SECTOR_SIZE = FLASH_SECTOR_SIZE
OTADATA_SECTORS = OTADATA_SIZE // OTADATA_SECTOR_SIZE
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


class OtaState:
    """``esp_ota_img_states_t``; only consulted when the bootloader has app rollback enabled.

    Plain ints, as the entry stores them: every pack defines these, where an IntEnum costs ~0.2 ms.
    """

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


def initial_otadata(select_slot: int | None = None, *, state: int = OtaState.UNDEFINED) -> bytes:
    """Contents for a freshly flashed otadata partition.

    With no slot, both sectors are erased (0xFF), which boots the factory app (or
    ota_0). With a slot, both sectors carry ``ota_seq = slot + 1`` with its CRC, the entry
    ESP-IDF's ``otatool.py switch_ota_partition`` writes on blank otadata (the seq → slot
    rule maps it back to the slot); the second copy only adds redundancy, as equal
    sequence numbers make the bootloader read the first.

    The state stays UNDEFINED (0xFFFFFFFF), as otatool leaves it: every bootloader boots
    it, and one built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE treats the app as already
    confirmed. NEW would make such a bootloader mark the slot PENDING_VERIFY on the first
    boot and ABORTED on the next unless the app confirms itself
    (``esp_ota_mark_app_valid_cancel_rollback``), which an esp-hal app usually never does,
    so the device would fall back to another slot; VALID would make an anti-rollback
    bootloader burn the app's secure version into eFuse on first boot.
    """
    if select_slot is None:
        return ERASED * OTADATA_SIZE
    if not 0 <= select_slot < OTA_SLOTS:
        raise UsageError(f"OTA slot {select_slot} does not exist; use 0 to {OTA_SLOTS - 1}", field="ota slot")
    seq = select_slot + 1
    entry = OtaSelectEntry.build(
        dict(ota_seq=seq, seq_label=ERASED * SEQ_LABEL_SIZE, ota_state=int(state), crc=ota_select_crc(seq))
    )
    sector = entry + ERASED * (OTADATA_SECTOR_SIZE - len(entry))
    return sector * OTADATA_SECTORS


# --------------------------------------------------------------------------- the bootloader's choice

#: ``FACTORY_INDEX`` in bootloader_utility.c: the factory app; OTA slots are 0 .. 15.
FACTORY_INDEX = -1
#: Sequence numbers are uint32_t: ``ota_seq - 1`` wraps for 0.
UINT32_MODULUS = 1 << 32
#: States ``bootloader_common_ota_select_invalid`` refuses.
_REFUSED_STATES = (OtaState.INVALID, OtaState.ABORTED)


class BootChoice:
    """Where ``bootloader_utility_get_selected_boot_partition`` starts, and why (a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up).

    ``index`` is FACTORY_INDEX or an OTA slot number; ``reason`` the rule that decided, naming the ESP-IDF function.
    """

    __slots__ = ("index", "reason")

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason


def read_entries(otadata: bytes) -> list:
    """Both ``esp_ota_select_entry_t`` copies; bytes past the end of ``otadata`` read as erased flash."""
    entries = []
    for sector in range(OTADATA_SECTORS):
        start = sector * OTADATA_SECTOR_SIZE
        chunk = bytes(otadata[start : start + OtaSelectEntry.sizeof()])
        chunk += ERASED * (OtaSelectEntry.sizeof() - len(chunk))
        entries.append(OtaSelectEntry.parse(chunk))
    return entries


def entry_refused(entry) -> bool:
    """``bootloader_common_ota_select_invalid``: erased sequence number, or an INVALID/ABORTED state."""
    return entry.ota_seq == SEQ_ERASED or entry.ota_state in _REFUSED_STATES


def entry_valid(entry) -> bool:
    """``bootloader_common_ota_select_valid``: not refused, and the CRC over ``ota_seq`` matches."""
    return not entry_refused(entry) and entry.crc == ota_select_crc(entry.ota_seq)


def active_entry(entries) -> int | None:
    """``bootloader_common_get_active_otadata``: the valid copy with the higher sequence number (the first on a tie)."""
    valid = [i for i, entry in enumerate(entries) if entry_valid(entry)]
    if not valid:
        return None
    return max(valid, key=lambda i: (entries[i].ota_seq, -i))


def slot_of_seq(ota_seq: int, ota_app_count: int) -> int:
    """OTA slot for a sequence number: ``(ota_seq - 1) % app_count`` in uint32 arithmetic."""
    return ((ota_seq - 1) % UINT32_MODULUS) % ota_app_count


def select_boot_index(otadata: bytes | None, ota_app_count: int) -> BootChoice:
    """``bootloader_utility_get_selected_boot_partition`` (v5.5, without app rollback or anti-rollback).

    ``otadata`` is None when the table has no otadata partition; ``ota_app_count`` is the
    number of OTA app rows (``bs->app_count``). FACTORY_INDEX means the factory app, or with none the first OTA slot holding an app
    (``bootloader_utility_load_boot_image`` walks up from there).
    """
    if otadata is None:
        return BootChoice(FACTORY_INDEX, "no otadata partition: the factory app (bootloader_utility_get_selected_boot_partition)")
    entries = read_entries(otadata)
    if all(entry_refused(e) for e in entries) or ota_app_count == 0:
        why = "no OTA app partition" if ota_app_count == 0 else "otadata is blank (or every entry is INVALID/ABORTED)"
        return BootChoice(FACTORY_INDEX, f"{why}: the factory app, else ota_0 (bootloader_utility_get_selected_boot_partition)")
    active = active_entry(entries)
    if active is None:
        return BootChoice(
            FACTORY_INDEX,
            "no otadata entry has a valid CRC: the factory app, else every slot from ota_0 "
            "(bootloader_common_get_active_otadata)",
        )
    entry = entries[active]
    slot = slot_of_seq(entry.ota_seq, ota_app_count)
    return BootChoice(
        slot,
        f"otadata sector {active} has ota_seq {entry.ota_seq}: slot ({entry.ota_seq} - 1) % {ota_app_count} = {slot} "
        "(bootloader_utility_get_selected_boot_partition)",
    )


def boot_order(start: int, ota_app_count: int) -> list[int]:
    """``bootloader_utility_load_boot_image``: the indexes tried in turn until one holds a loadable app.

    Down from ``start`` to the factory app, then up from ``start + 1`` through the OTA slots
    (the test app, tried last, is left out).
    """
    down = list(range(start, FACTORY_INDEX - 1, -1))
    return down + list(range(start + 1, ota_app_count))


class BootPlan:
    """What the bootloader does with a partition table and otadata contents."""

    __slots__ = ("choice", "order", "ota_app_count")

    def __init__(self, choice: BootChoice, order: tuple[Partition, ...], ota_app_count: int):
        self.choice = choice
        #: Every app partition in the order the bootloader tries them; it starts the first holding a loadable app.
        self.order = order
        #: OTA app rows (``bs->app_count``): slots at or above it are never reached.
        self.ota_app_count = ota_app_count

    @property
    def partition(self) -> Partition | None:
        """The partition tried first: the one otadata (or its absence) selects."""
        return self.order[0] if self.order else None


def boot_plan(table: PartitionTable, otadata: bytes | None) -> BootPlan:
    """The partitions the bootloader tries for ``table`` with ``otadata`` (ignored when the table has none).

    As ``bootloader_utility_load_partition_table`` indexes them: the last factory row, OTA
    rows by slot number (a later row replaces an earlier one, every row counts in
    ``app_count``, a slot at or above ``app_count`` is never reached), the test app last.
    """
    factory = next((p for p in reversed(table.apps) if p.subtype == SUBTYPE_FACTORY), None)
    ota_rows = [p for p in table.apps if p.ota_slot is not None]
    slots = {p.ota_slot: p for p in ota_rows}
    count = len(ota_rows)
    choice = select_boot_index(otadata if table.otadata is not None else None, count)

    def at(index: int) -> Partition | None:
        if index == FACTORY_INDEX:
            return factory
        return slots.get(index) if index < count else None

    order = [p for p in (at(i) for i in boot_order(choice.index, count)) if p is not None and p.size]
    test = next((p for p in reversed(table.apps) if p.subtype == SUBTYPE_TEST), None)
    if test is not None and test.size:
        order.append(test)
    return BootPlan(choice, tuple(order), count)


def otadata_for(table: PartitionTable, target: Partition) -> bytes:
    """Initial otadata that makes the bootloader start ``target``.

    Erased when erased otadata already starts it (the factory app, or ota_0 without one),
    as ESP-IDF ships ``ota_data_initial.bin``; else the entry selecting its OTA slot.
    Raises ``LayoutError`` when no otadata can start ``target``.
    """
    blank = initial_otadata()
    first = boot_plan(table, blank).partition
    if first == target:
        return blank
    if target.ota_slot is None:
        raise LayoutError(
            f"app partition '{target.name}' is a {target.subtype_name} app, which otadata cannot select: the bootloader "
            f"starts '{first.name if first else 'nothing'}'; put the app in the factory or an ota_N partition",
            path=table.source,
            field="--target-app-partition",
        )
    data = initial_otadata(target.ota_slot)
    plan = boot_plan(table, data)
    if plan.partition != target:
        count = plan.ota_app_count
        raise LayoutError(
            f"otadata cannot select '{target.name}': with {count} OTA partitions the bootloader only reaches "
            f"ota_0 .. ota_{count - 1} ({plan.choice.reason}); number the OTA partitions from ota_0 without gaps",
            path=table.source,
            field="--target-app-partition",
        )
    return data

