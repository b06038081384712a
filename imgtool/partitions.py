"""ESP-IDF partition tables: the CSV users write, the binary the bootloader reads, and ESP-IDF's rules.

Parsing, offset fill-in, validation and both output forms follow ESP-IDF's
``gen_esp32part.py``, so a table compiled here is byte-identical to one built by
``idf.py``. The model knows nothing about ELFs, images or bootloader files.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace

from construct import (
    Adapter,
    Bytes,
    Const,
    ConstructError,
    FlagsEnum,
    Int8ul,
    Int32ul,
    Padding,
    Struct,
)

from imgtool.chips import KiB, MiB
from imgtool.errors import PartitionError, UsageError

DEFAULT_TABLE_OFFSET = 0x8000
#: The table owns a whole flash sector; the first partition starts after it.
TABLE_SECTOR_SIZE = 0x1000
#: Bytes of entries (including the MD5 entry) the bootloader reads; the rest of the sector is for a signature.
TABLE_MAX_LEN = 0xC00
ENTRY_SIZE = 32
#: One slot goes to the MD5 entry and one must stay 0xFF to end the table.
MAX_PARTITIONS = TABLE_MAX_LEN // ENTRY_SIZE - 2
NAME_MAX_BYTES = 16
FILL_BYTE = b"\xff"
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
MD5_DIGEST_SIZE = 16
END_MARKER = FILL_BYTE * ENTRY_SIZE
#: Offsets and sizes are 32-bit fields.
ADDRESS_SPACE = 1 << 32
#: Subtype of a CSV row with an empty subtype column.
SUBTYPE_UNDEFINED = 0x06

TYPE_APP = 0x00
TYPE_DATA = 0x01
TYPE_BOOTLOADER = 0x02
TYPE_PARTITION_TABLE = 0x03
MAX_TYPE = 0xFE
MAX_SUBTYPE = 0xFF

TYPES: dict[str, int] = {
    "app": TYPE_APP,
    "data": TYPE_DATA,
    "bootloader": TYPE_BOOTLOADER,
    "partition_table": TYPE_PARTITION_TABLE,
}

SUBTYPE_FACTORY = 0x00
SUBTYPE_OTA_FIRST = 0x10
OTA_SLOTS = 16
SUBTYPE_TEST = 0x20
SUBTYPE_TEE_FIRST = 0x30
TEE_SLOTS = 2
SUBTYPE_PRIMARY = 0x00
SUBTYPE_DATA_OTA = 0x00
SUBTYPE_NVS = 0x02
SUBTYPE_COREDUMP = 0x03
SUBTYPE_TEE_OTA = 0x90

SUBTYPES: dict[int, dict[str, int]] = {
    TYPE_APP: {
        "factory": SUBTYPE_FACTORY,
        "test": SUBTYPE_TEST,
        **{f"ota_{i}": SUBTYPE_OTA_FIRST + i for i in range(OTA_SLOTS)},
        **{f"tee_{i}": SUBTYPE_TEE_FIRST + i for i in range(TEE_SLOTS)},
    },
    TYPE_DATA: {
        "ota": SUBTYPE_DATA_OTA,
        "phy": 0x01,
        "nvs": SUBTYPE_NVS,
        "coredump": SUBTYPE_COREDUMP,
        "nvs_keys": 0x04,
        "efuse": 0x05,
        "undefined": SUBTYPE_UNDEFINED,
        "esphttpd": 0x80,
        "fat": 0x81,
        "spiffs": 0x82,
        "littlefs": 0x83,
        "tee_ota": SUBTYPE_TEE_OTA,
    },
    TYPE_BOOTLOADER: {"primary": SUBTYPE_PRIMARY, "ota": 0x01, "recovery": 0x02},
    TYPE_PARTITION_TABLE: {"primary": SUBTYPE_PRIMARY, "ota": 0x01},
}

#: Where a partition of each type may start; other types follow data.
OFFSET_ALIGN = {TYPE_APP: 0x10000, TYPE_DATA: 0x1000, TYPE_BOOTLOADER: 0x1000, TYPE_PARTITION_TABLE: 0x1000}
#: App sizes must be whole flash erase sectors (without secure boot v1).
APP_SIZE_ALIGN = 0x1000
#: Read-write NVS needs at least this much room; smaller NVS must be flagged readonly.
NVS_MIN_RW_SIZE = 0x3000
#: otadata holds two sectors, one ``esp_ota_select_entry_t`` each.
OTADATA_SIZE = 0x2000
#: Data subtypes ESP-IDF always writes to, so they cannot be readonly.
ALWAYS_RW_DATA = (SUBTYPE_DATA_OTA, SUBTYPE_COREDUMP)

FLAG_BITS = {"encrypted": 1 << 0, "readonly": 1 << 1}

_UNKNOWN_VAR = re.compile(r"(?<!\\)\$\{?([A-Za-z_][A-Za-z0-9_]*)")


class _Name(Adapter):
    """A NUL-padded UTF-8 label; like the bootloader, parsing stops at the first NUL."""

    def _decode(self, obj, context, path):
        return obj.split(b"\x00", 1)[0].decode("utf-8")

    def _encode(self, obj, context, path):
        return obj.encode("utf-8").ljust(NAME_MAX_BYTES, b"\x00")


#: ``esp_partition_info_t``: one 32-byte table entry.
PartitionEntry = Struct(
    "magic" / Const(ENTRY_MAGIC),
    "type" / Int8ul,
    "subtype" / Int8ul,
    "offset" / Int32ul,
    "size" / Int32ul,
    "name" / _Name(Bytes(NAME_MAX_BYTES)),
    "flags" / FlagsEnum(Int32ul, **FLAG_BITS),
)

#: The entry after the partitions: magic, 0xFF fill, then the MD5 of all entries before it.
Md5Entry = Struct(
    "magic" / Const(MD5_MAGIC),
    Padding(ENTRY_SIZE - len(MD5_MAGIC) - MD5_DIGEST_SIZE, pattern=FILL_BYTE),
    "digest" / Bytes(MD5_DIGEST_SIZE),
)


@dataclass(frozen=True)
class Partition:
    """One table entry. ``where`` ("partitions.csv:5") only locates it for error messages."""

    name: str
    type: int
    subtype: int
    offset: int
    size: int
    encrypted: bool = False
    readonly: bool = False
    where: str | None = field(default=None, compare=False, repr=False)

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def type_name(self) -> str:
        return _keyword(self.type, TYPES)

    @property
    def subtype_name(self) -> str:
        return _keyword(self.subtype, SUBTYPES.get(self.type, {}))

    @property
    def flags(self) -> list[str]:
        return [name for name in FLAG_BITS if getattr(self, name)]

    @property
    def is_app(self) -> bool:
        return self.type == TYPE_APP

    @property
    def ota_slot(self) -> int | None:
        """N for an ota_N app partition, else None."""
        if self.is_app and SUBTYPE_OTA_FIRST <= self.subtype < SUBTYPE_OTA_FIRST + OTA_SLOTS:
            return self.subtype - SUBTYPE_OTA_FIRST
        return None

    @property
    def is_primary_bootloader(self) -> bool:
        return self.type == TYPE_BOOTLOADER and self.subtype == SUBTYPE_PRIMARY

    @property
    def is_primary_table(self) -> bool:
        return self.type == TYPE_PARTITION_TABLE and self.subtype == SUBTYPE_PRIMARY

    @property
    def is_fixed(self) -> bool:
        """The primary bootloader and table entries describe fixed regions, not space to allocate."""
        return self.is_primary_bootloader or self.is_primary_table

    def describe(self) -> str:
        return f"'{self.name}' (0x{self.offset:x}-0x{self.end:x})"


@dataclass(frozen=True)
class PartitionTable:
    """Partitions in table order plus where the table itself lives in flash.

    ``from_csv``/``from_binary`` validate; call ``validate()`` on a table built by hand.
    """

    partitions: tuple[Partition, ...]
    table_offset: int = DEFAULT_TABLE_OFFSET
    source: str = "partition table"

    def __iter__(self):
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def find(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    @property
    def apps(self) -> list[Partition]:
        return [p for p in self.partitions if p.is_app]

    @property
    def end(self) -> int:
        """The first byte after every partition (and after the table itself)."""
        return max([self.table_offset + TABLE_SECTOR_SIZE] + [p.end for p in self.partitions])

    @property
    def ota_apps(self) -> list[Partition]:
        """The ota_N app partitions ordered by N, the order otadata's slot numbers count in."""
        return sorted((p for p in self.apps if p.ota_slot is not None), key=lambda p: p.ota_slot)

    @property
    def otadata(self) -> Partition | None:
        return next((p for p in self.partitions if p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_OTA), None)

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_csv(
        cls,
        text: str,
        *,
        source: str = "partitions.csv",
        table_offset: int = DEFAULT_TABLE_OFFSET,
        bootloader_offset: int | None = None,
        flash_size: int | None = None,
    ) -> PartitionTable:
        """Parse ESP-IDF CSV, fill in missing offsets as gen_esp32part does, and validate."""
        _check_table_offset(table_offset, bootloader_offset)
        rows: list[Partition] = []
        for line_no, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}:{line_no}"
            rows.append(_parse_row(_expand_vars(line, where), where, table_offset, bootloader_offset))
        table = cls(tuple(_fill_offsets(rows, table_offset, bootloader_offset)), table_offset, source)
        table.validate(flash_size=flash_size, bootloader_offset=bootloader_offset)
        return table

    @classmethod
    def from_binary(
        cls,
        data: bytes,
        *,
        source: str = "partition-table.bin",
        table_offset: int = DEFAULT_TABLE_OFFSET,
        bootloader_offset: int | None = None,
        flash_size: int | None = None,
    ) -> PartitionTable:
        """Decode a binary table, checking its MD5 entry when there is one, and validate."""
        _check_table_offset(table_offset, bootloader_offset)
        parts: list[Partition] = []
        md5 = hashlib.md5()
        for index, start in enumerate(range(0, len(data), ENTRY_SIZE)):
            raw = data[start : start + ENTRY_SIZE]
            where = f"{source}: entry {index}"
            if raw == END_MARKER:
                break
            if len(raw) < ENTRY_SIZE:
                raise PartitionError("table is cut short inside an entry; use the whole 0xC00-byte table", path=where)
            if raw[: len(MD5_MAGIC)] == MD5_MAGIC:
                if Md5Entry.parse(raw).digest != md5.digest():
                    raise PartitionError(
                        "MD5 entry does not match the entries before it; the table is corrupt", path=where
                    )
                continue
            md5.update(raw)
            try:
                entry = PartitionEntry.parse(raw)
            except ConstructError:
                raise PartitionError(
                    f"bad magic {raw[:2].hex()} (expected aa50); this is not an ESP-IDF partition table", path=where
                ) from None
            except UnicodeDecodeError:
                raise PartitionError("partition name is not valid UTF-8", path=where) from None
            parts.append(
                Partition(
                    entry.name, entry.type, entry.subtype, entry.offset, entry.size,
                    entry.flags.encrypted, entry.flags.readonly, where,
                )
            )
        else:
            raise PartitionError("no end-of-table marker (32 bytes of 0xFF); the table is truncated", path=source)
        table = cls(tuple(parts), table_offset, source)
        table.validate(flash_size=flash_size, bootloader_offset=bootloader_offset)
        return table

    # -- writing -----------------------------------------------------------------------------

    def to_binary(self) -> bytes:
        """The 0xC00-byte table: entries, the MD5 entry, then 0xFF fill."""
        entries = b"".join(
            PartitionEntry.build(
                dict(
                    type=p.type, subtype=p.subtype, offset=p.offset, size=p.size, name=p.name,
                    flags=dict(encrypted=p.encrypted, readonly=p.readonly),
                )
            )
            for p in self.partitions
        )
        body = entries + Md5Entry.build(dict(digest=hashlib.md5(entries).digest()))
        if len(body) >= TABLE_MAX_LEN:
            raise PartitionError(
                f"{len(self.partitions)} partitions do not fit the 0x{TABLE_MAX_LEN:X}-byte table; "
                f"keep {MAX_PARTITIONS} or fewer",
                path=self.source,
            )
        return body + FILL_BYTE * (TABLE_MAX_LEN - len(body))

    def to_csv(self) -> str:
        """CSV in gen_esp32part's layout, so that decompiling matches ESP-IDF's output."""
        rows = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
        for p in self.partitions:
            rows.append(
                ",".join([p.name, p.type_name, p.subtype_name, f"0x{p.offset:x}", _csv_size(p.size), ":".join(p.flags)])
            )
        return "\n".join(rows) + "\n"

    # -- rules -------------------------------------------------------------------------------

    def validate(self, *, flash_size: int | None = None, bootloader_offset: int | None = None) -> None:
        """Apply ESP-IDF's rules; raise a PartitionError naming the offending line on the first break."""
        if len(self.partitions) > MAX_PARTITIONS:
            extra = self.partitions[MAX_PARTITIONS]
            raise self._error(
                extra,
                f"too many partitions ({len(self.partitions)}); the 0xC00-byte table holds at most "
                f"{MAX_PARTITIONS} plus its MD5 entry; merge or remove partitions",
            )
        for p in self.partitions:
            self._check_partition(p)
        seen: dict[str, Partition] = {}
        for p in self.partitions:
            if p.name in seen:
                raise self._error(p, f"name '{p.name}' is already used by {_loc(seen[p.name])}; names must be unique")
            seen[p.name] = p
        self._check_layout(bootloader_offset)
        self._check_unique_apps()
        self._check_otadata()
        if flash_size is not None:
            self._check_fits(flash_size)

    def _error(self, p: Partition | None, message: str) -> PartitionError:
        return PartitionError(message, path=(p.where if p is not None and p.where else self.source))

    def _check_partition(self, p: Partition) -> None:
        encoded = p.name.encode("utf-8")
        if not encoded:
            raise self._error(p, "the name is empty; give every partition a name")
        if len(encoded) > NAME_MAX_BYTES:
            raise self._error(p, f"name '{p.name}' is {len(encoded)} bytes; shorten it to {NAME_MAX_BYTES} or fewer")
        if b"\x00" in encoded:
            raise self._error(p, f"name {p.name!r} contains a NUL byte, which ends the name in the binary table; remove it")
        if not 0 <= p.type <= MAX_TYPE:
            raise self._error(p, f"type {p.type} is out of range; use 0 to {MAX_TYPE} (0x{MAX_TYPE:X})")
        if not 0 <= p.subtype <= MAX_SUBTYPE:
            raise self._error(p, f"subtype {p.subtype} is out of range; use 0 to {MAX_SUBTYPE} (0x{MAX_SUBTYPE:X})")
        if p.size <= 0:
            raise self._error(p, f"partition '{p.name}' has size {p.size}; give it a positive size")
        align = OFFSET_ALIGN.get(p.type, OFFSET_ALIGN[TYPE_DATA])
        if p.offset % align:
            kind = "an app" if p.is_app else "a non-app"
            raise self._error(
                p,
                f"offset 0x{p.offset:x} of '{p.name}' is not aligned to 0x{align:x} as {kind} partition must be; "
                f"use 0x{align_up(p.offset, align):x}",
            )
        if p.is_app and p.size % APP_SIZE_ALIGN:
            raise self._error(
                p,
                f"size 0x{p.size:x} of app '{p.name}' is not a multiple of 0x{APP_SIZE_ALIGN:x}; "
                f"use 0x{align_up(p.size, APP_SIZE_ALIGN):x}",
            )
        if p.type == TYPE_DATA and p.subtype in ALWAYS_RW_DATA and p.readonly:
            raise self._error(
                p, f"'{p.name}' ({p.subtype_name}) is always written by ESP-IDF; remove the readonly flag"
            )
        if p.type == TYPE_DATA and p.subtype == SUBTYPE_NVS and p.size < NVS_MIN_RW_SIZE and not p.readonly:
            raise self._error(
                p,
                f"nvs partition '{p.name}' of 0x{p.size:x} bytes is too small to write; "
                f"make it at least 0x{NVS_MIN_RW_SIZE:x} or flag it readonly",
            )
        if p.end > ADDRESS_SPACE:
            raise self._error(p, f"'{p.name}' ends past 4 GiB; check its offset and size")

    def _check_layout(self, bootloader_offset: int | None) -> None:
        table_end = self.table_offset + TABLE_SECTOR_SIZE
        previous: Partition | None = None
        for p in sorted(self.partitions, key=lambda x: x.offset):
            if not p.is_fixed and p.offset < table_end:
                raise self._error(p, _reserved_overlap(p, self.table_offset, bootloader_offset))
            if previous is not None and p.offset < previous.end:
                raise self._error(
                    p, f"{p.describe()} overlaps {previous.describe()} from {_loc(previous)}; move or shrink one"
                )
            previous = p

    def _check_unique_apps(self) -> None:
        seen: dict[int, Partition] = {}
        for p in self.apps:
            if p.subtype == SUBTYPE_FACTORY or p.ota_slot is not None or p.subtype == SUBTYPE_TEST:
                if p.subtype in seen:
                    raise self._error(
                        p,
                        f"a second {p.subtype_name} app '{p.name}' ({_loc(seen[p.subtype])} has one); "
                        "the bootloader only ever uses the first, so give it another subtype",
                    )
                seen[p.subtype] = p

    def _check_otadata(self) -> None:
        for subtype, label in ((SUBTYPE_DATA_OTA, "otadata (data, ota)"), (SUBTYPE_TEE_OTA, "TEE otadata")):
            found = [p for p in self.partitions if p.type == TYPE_DATA and p.subtype == subtype]
            if len(found) > 1:
                raise self._error(found[1], f"a second {label} partition '{found[1].name}'; keep only one")
            if found and found[0].size != OTADATA_SIZE:
                raise self._error(
                    found[0],
                    f"{label} partition '{found[0].name}' is 0x{found[0].size:x} bytes; "
                    f"it must be 0x{OTADATA_SIZE:x} (two sectors)",
                )
        slots = [p for p in self.apps if p.ota_slot is not None]
        if slots and self.otadata is None:
            raise self._error(
                slots[0],
                f"OTA app '{slots[0].name}' needs an otadata partition to select it; "
                f"add 'otadata, data, ota, , 0x{OTADATA_SIZE:x},' before the apps",
            )

    def _check_fits(self, flash_size: int) -> None:
        if self.table_offset + TABLE_SECTOR_SIZE > flash_size:
            raise PartitionError(
                f"the partition table at 0x{self.table_offset:x} lies past the end of the {human_size(flash_size)} flash; "
                "lower --offset or raise --flash-size",
                path=self.source,
            )
        for p in self.partitions:
            if p.end > flash_size:
                raise self._error(
                    p,
                    f"{p.describe()} ends {human_size(p.end - flash_size)} past the end of the "
                    f"{human_size(flash_size)} flash; shrink it or pass a larger --flash-size",
                )


# -- CSV fields --------------------------------------------------------------------------------


def _expand_vars(line: str, where: str) -> str:
    """gen_esp32part expands environment variables in every field; unknown ones are errors."""
    expanded = os.path.expandvars(line)
    unknown = _UNKNOWN_VAR.search(expanded)
    if unknown:
        raise PartitionError(f"unknown environment variable ${unknown.group(1)}; set it or write the value", path=where)
    return expanded


def parse_int(
    text: str, keywords: dict[str, int] | None = None, *, what: str = "value", where: str | None = None
) -> int:
    """An integer in gen_esp32part's syntax: decimal or 0x hex, optional K/M suffix, or a keyword."""
    value = text.strip()
    multiplier = 1
    if value[-1:].lower() == "k":
        value, multiplier = value[:-1], KiB
    elif value[-1:].lower() == "m":
        value, multiplier = value[:-1], MiB
    try:
        return int(value, 0) * multiplier
    except ValueError:
        pass
    if keywords and text.strip().lower() in keywords:
        return keywords[text.strip().lower()]
    hint = f"a number or one of {', '.join(keywords)}" if keywords else "a number such as 0x1000, 4096, 24K or 1M"
    raise PartitionError(f"{what} '{text}' is not valid; use {hint}", path=where)


def _parse_row(line: str, where: str, table_offset: int, bootloader_offset: int | None) -> Partition:
    fields = [f.strip() for f in line.split(",")]
    fields += [""] * (6 - len(fields))
    name, type_s, subtype_s, offset_s, size_s, flags_s = fields[:6]
    if not type_s:
        raise PartitionError("the type column is empty; use app, data or a number", path=where)
    ptype = parse_int(type_s, TYPES, what="type", where=where)
    if subtype_s:
        subtype = parse_int(subtype_s, SUBTYPES.get(ptype, {}), what="subtype", where=where)
    elif ptype == TYPE_APP:
        raise PartitionError("an app partition needs a subtype (factory, ota_0 ... ota_15, test)", path=where)
    else:
        subtype = SUBTYPE_UNDEFINED
    flags = {}
    for flag in (f.strip() for f in flags_s.split(":")):
        if flag in FLAG_BITS:
            flags[flag] = True
        elif flag:
            raise PartitionError(f"unknown flag '{flag}'; use {' or '.join(FLAG_BITS)} (joined with ':')", path=where)

    # The primary bootloader and table sit where the chip and --offset put them; their
    # offset and size columns are ignored (ESP-IDF's examples write N/A there).
    if ptype == TYPE_BOOTLOADER and subtype == SUBTYPE_PRIMARY:
        if bootloader_offset is not None:
            offset = bootloader_offset
        elif offset_s and offset_s.upper() != "N/A":
            offset = parse_int(offset_s, what="offset", where=where)
        else:
            raise PartitionError(
                "a primary bootloader entry needs the chip's bootloader offset; pass --chip or write the offset",
                path=where,
            )
        size = table_offset - offset
    elif ptype == TYPE_PARTITION_TABLE and subtype == SUBTYPE_PRIMARY:
        offset, size = table_offset, TABLE_SECTOR_SIZE
    else:
        offset = parse_int(offset_s, what="offset", where=where) if offset_s else None
        size = parse_int(size_s, what="size", where=where) if size_s else None
    if size is None:
        raise PartitionError("the size column is empty; give a size such as 0x6000, 24K or 1M", path=where)
    # Offsets are filled in later; -1 stands for "not given" until then.
    return Partition(name, ptype, subtype, -1 if offset is None else offset, size, where=where, **flags)


def _fill_offsets(rows: list[Partition], table_offset: int, bootloader_offset: int | None) -> list[Partition]:
    """Give each row without an offset the next aligned address after the previous row, as gen_esp32part does.

    Rows must be in flash order. A negative size means "up to this address".
    """
    result = []
    last_end = table_offset + TABLE_SECTOR_SIZE
    previous: Partition | None = None
    for row in rows:
        if row.is_fixed:
            result.append(row)
            continue
        offset = row.offset
        if offset >= 0 and offset < last_end:
            if previous is None:
                raise PartitionError(_reserved_overlap(row, table_offset, bootloader_offset), path=row.where)
            raise PartitionError(
                f"offset 0x{offset:x} of '{row.name}' is inside '{previous.name}' ({_loc(previous)}), which ends at "
                f"0x{last_end:x}; list partitions in flash order and use 0x{last_end:x} or higher",
                path=row.where,
            )
        if offset < 0:
            offset = align_up(last_end, OFFSET_ALIGN.get(row.type, OFFSET_ALIGN[TYPE_DATA]))
        size = row.size
        if size < 0:
            size = -size - offset
            if size <= 0:
                raise PartitionError(
                    f"negative size {row.size:#x} means 'up to {-row.size:#x}', but '{row.name}' starts at 0x{offset:x}",
                    path=row.where,
                )
        row = replace(row, offset=offset, size=size)
        result.append(row)
        previous = row
        last_end = row.end
    return result


def _reserved_overlap(p: Partition, table_offset: int, bootloader_offset: int | None) -> str:
    table_end = table_offset + TABLE_SECTOR_SIZE
    if p.offset < table_offset:
        start = f"0x{bootloader_offset:x}" if bootloader_offset is not None else "flash start"
        region = f"the bootloader area ({start} up to the partition table at 0x{table_offset:x})"
    else:
        region = f"the partition table (0x{table_offset:x}-0x{table_end:x})"
    return f"'{p.name}' at 0x{p.offset:x} overlaps {region}; start it at 0x{table_end:x} or later"


def _check_table_offset(table_offset: int, bootloader_offset: int | None) -> None:
    if table_offset < 0 or table_offset % TABLE_SECTOR_SIZE:
        raise UsageError(
            f"partition table offset 0x{table_offset:x} must be a multiple of 0x{TABLE_SECTOR_SIZE:x}", field="--offset"
        )
    if bootloader_offset is not None and table_offset <= bootloader_offset:
        raise UsageError(
            f"partition table offset 0x{table_offset:x} is not after the bootloader at 0x{bootloader_offset:x}; "
            f"use 0x{DEFAULT_TABLE_OFFSET:x} or higher",
            field="--offset",
        )


def _keyword(value: int, keywords: dict[str, int]) -> str:
    return next((name for name, v in keywords.items() if v == value), str(value))


def _csv_size(size: int) -> str:
    for unit, suffix in ((MiB, "M"), (KiB, "K")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"0x{size:x}"


def align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _loc(p: Partition) -> str:
    """Short 'line 3' / 'entry 2' reference to another partition."""
    if not p.where:
        return f"'{p.name}'"
    tail = p.where.rsplit(":", 1)[-1].strip()
    return f"entry {tail.split()[-1]}" if tail.startswith("entry") else f"line {tail}"


def human_size(size: int) -> str:
    """Sizes for messages: '1.3 MiB', '24 KiB', '100 bytes'."""
    for unit, suffix in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit:
            text = f"{size / unit:.1f}".removesuffix(".0")
            return f"{text} {suffix}"
    return f"{size} bytes"


def boot_app_partition(table: PartitionTable, name: str | None = None) -> Partition:
    """The partition the app is flashed into: the named one, else what ESP-IDF's bootloader boots
    with erased otadata (factory, else the lowest OTA slot, else the first app, e.g. a test app)."""
    apps = table.apps
    if name is not None:
        chosen = table.find(name)
        if chosen is None or not chosen.is_app:
            listed = ", ".join(p.name for p in apps) or "none"
            what = f"'{name}' is a {chosen.type_name} partition, not an app" if chosen else f"no partition named '{name}'"
            raise PartitionError(f"{what}; app partitions: {listed}", path=table.source, field="--target-app-partition")
        return chosen
    if not apps:
        raise PartitionError("the table has no app partition; add a factory or ota_0 app partition", path=table.source)
    factory = next((p for p in apps if p.subtype == SUBTYPE_FACTORY), None)
    ota = table.ota_apps
    return factory or (ota[0] if ota else apps[0])
