"""The device commands' work over an open :class:`imgtool.device.flasher.Connection`: erase all or some
partitions, read flash, and read back just what the bootloader would read (for ``verify --port``)."""

from __future__ import annotations

from imgtool.chips.table import ERASED, FLASH_SECTOR_SIZE, get_chip
from imgtool.errors import ImgtoolError, UsageError
from imgtool.image.format import (
    CHECKSUM_ALIGN,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    IMAGE_MAGIC,
    MAX_SEGMENTS,
    SEGMENT_HEADER_LEN,
)
from imgtool.partitions.table import TYPE_APP, TYPE_DATA, PartitionTable

# Not at the top (imgtool --help loads this module through imgtool.cli.device): esptool (~140 ms) and
# imgtool.security.signature_block (~2 ms, only a read-back that meets a signature needs it).

#: The partition table's flash area (ESP-IDF's ESP_PARTITION_TABLE_MAX_LEN).
TABLE_LEN = 0xC00
#: An appended SHA-256 digest.
DIGEST_LEN = 32
#: A Secure Boot V2 signature sector follows a signed image at the next 4 KiB boundary.
SIGNATURE_SECTOR = FLASH_SECTOR_SIZE


def read_flash(connection, offset: int, size: int) -> bytes:
    from esptool import cmds  # not at the top: imgtool --help loads this module (through cli/device); ~35 ms

    esp = connection.ready()
    return cmds.read_flash(esp, offset, size, None)


def read_table(connection, table_offset: int):
    """The partition table on the device."""
    data = read_flash(connection, table_offset, TABLE_LEN)
    return PartitionTable.from_binary(data, source=f"flash at 0x{table_offset:x}", table_offset=table_offset)


def partitions_named(table, labels: list[str]) -> list[tuple[int, int, str]]:
    """``(offset, size, label)`` of the partitions ``labels`` name in ``table``; an unknown label is refused."""
    chosen = []
    for label in labels:
        part = table.find(label)
        if part is None:
            names = ", ".join(p.name for p in table.partitions)
            raise UsageError(f"no partition is labelled '{label}'; labels: {names}", field="LABEL")
        chosen.append((part.offset, part.size, part.name))
    return chosen


def erase_partitions(connection, table, labels: list[str], *, force: bool = False) -> list[tuple[int, int, str]]:
    """Erase the partitions named ``labels`` in ``table``; ``(offset, size, label)`` of each erased."""
    from esptool import cmds  # not at the top: imgtool --help loads this module (through cli/device); ~35 ms

    chosen = partitions_named(table, labels)
    esp = connection.ready()
    for offset, size, _ in chosen:
        cmds.erase_region(esp, offset, size, force=force)
    return chosen


def read_back(connection, table_offset: int, log=print) -> bytes:
    """A flash dump from 0 holding what the bootloader reads — itself, the table, otadata, each app
    image (with its signature sector when one follows) — with everything else left erased (0xFF):
    far less to read than the whole flash."""
    boot = get_chip(connection.device.chip).bootloader_offset
    boot_len = _image_length(lambda off, n: read_flash(connection, boot + off, n), table_offset - boot)
    table_bytes = read_flash(connection, table_offset, TABLE_LEN)
    pieces = [(table_offset, table_bytes)]
    if boot_len:
        pieces.append((boot, read_flash(connection, boot, boot_len)))
    table = _table_from(table_bytes, 0, table_offset)
    for part in table.partitions if table is not None else []:
        if part.type == TYPE_APP:
            length = _image_length(lambda off, n, base=part.offset: read_flash(connection, base + off, n), part.size)
            if length:
                log(f"imgtool: reading '{part.name}' ({length:,} bytes at 0x{part.offset:x})")
                pieces.append((part.offset, read_flash(connection, part.offset, length)))
        elif part.type == TYPE_DATA and part.subtype_name == "ota":
            pieces.append((part.offset, read_flash(connection, part.offset, part.size)))
    end = max(off + len(data) for off, data in pieces)
    dump = bytearray(ERASED * end)
    for off, data in pieces:
        dump[off : off + len(data)] = data
    return bytes(dump)


def _table_from(data: bytes, start: int, table_offset: int):
    try:
        return PartitionTable.from_binary(data[start:], source="flash", table_offset=table_offset)
    except ImgtoolError:
        return None  # verify reports the table itself


def _image_length(read, limit: int) -> int:
    """How many bytes of the image at the start of a partition to read (0: no image there).

    Walks the segment headers as the bootloader does, then adds the checksum padding, the appended
    digest and a signature sector when one follows; never more than ``limit``.
    """
    head = read(0, HEADER_LEN + EXTENDED_HEADER_LEN)
    if len(head) < HEADER_LEN + EXTENDED_HEADER_LEN or head[0] != IMAGE_MAGIC:
        return 0
    count = head[1]
    hash_appended = head[HEADER_LEN + EXTENDED_HEADER_LEN - 1] == 1
    pos = HEADER_LEN + EXTENDED_HEADER_LEN
    for _ in range(min(count, MAX_SEGMENTS)):
        if pos + SEGMENT_HEADER_LEN > limit:
            return limit
        seg = read(pos, SEGMENT_HEADER_LEN)
        pos += SEGMENT_HEADER_LEN + int.from_bytes(seg[4:8], "little")
    end = (pos // CHECKSUM_ALIGN + 1) * CHECKSUM_ALIGN
    if hash_appended:
        end += DIGEST_LEN
    from imgtool.security.signature_block import SIG_BLOCK_MAGIC  # not at the top: as esptool above (~2 ms)

    signature_at = -(-end // SIGNATURE_SECTOR) * SIGNATURE_SECTOR
    if signature_at < limit and read(signature_at, 1)[:1] == bytes([SIG_BLOCK_MAGIC]):
        end = signature_at + SIGNATURE_SECTOR
    return min(end, limit)


__all__ = ["TABLE_LEN", "erase_partitions", "partitions_named", "read_back", "read_flash", "read_table"]
