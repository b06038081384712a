"""ESP-IDF partition tables: the CSV users write, the binary the bootloader reads, and ESP-IDF's rules.

Parsing, offset fill-in, the verdict on every input and both output forms follow
``gen_esp32part.py`` of ESP-IDF v5.5, so a table ESP-IDF accepts compiles here
to the same bytes and a table it rejects is rejected here. imgtool's own
opinions (an OTA app without otadata, a name cut to 16 bytes, ...) are warnings,
errors only with ``strict``. The model knows nothing about ELFs, images or
bootloader files.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import NamedTuple

from construct import (
    Adapter,
    Bytes,
    Const,
    ConstructError,
    Int8ul,
    Int32ul,
    Padding,
    Struct,
)

from imgtool.chips.table import ERASED, FLASH_SECTOR_SIZE, FLASH_SIZES, KiB, MiB, flash_size_bytes
from imgtool.chips.units import align_up
from imgtool.errors import PartitionError, UsageError

#: The ESP-IDF release whose gen_esp32part.py this module follows.
ESP_IDF_RELEASE = "v5.5"

DEFAULT_TABLE_OFFSET = 0x8000
#: The table owns a whole flash sector; the first partition starts after it.
TABLE_SECTOR_SIZE = FLASH_SECTOR_SIZE
#: Bytes of entries (including the MD5 entry) the bootloader reads; the rest of the sector is for a signature.
TABLE_MAX_LEN = 0xC00
ENTRY_SIZE = 32
#: One slot goes to the MD5 entry and one must stay 0xFF to end the table.
MAX_PARTITIONS = TABLE_MAX_LEN // ENTRY_SIZE - 2
#: Without the MD5 entry one more partition fits.
MAX_PARTITIONS_NO_MD5 = MAX_PARTITIONS + 1
NAME_MAX_BYTES = 16
NUL = b"\x00"
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
MD5_DIGEST_SIZE = 16
END_MARKER = ERASED * ENTRY_SIZE
#: Offsets, sizes and flags are 32-bit fields; type and subtype are bytes.
ADDRESS_SPACE = 1 << 32
BYTE_LIMIT = 1 << 8
#: Subtype of a CSV row with an empty subtype column.
SUBTYPE_UNDEFINED = 0x06

TYPE_APP = 0x00
TYPE_DATA = 0x01
TYPE_BOOTLOADER = 0x02
TYPE_PARTITION_TABLE = 0x03

#: In gen_esp32part's order, which decides the keyword a number is written back as.
TYPES: dict[str, int] = {
    "bootloader": TYPE_BOOTLOADER,
    "partition_table": TYPE_PARTITION_TABLE,
    "app": TYPE_APP,
    "data": TYPE_DATA,
}

SUBTYPE_FACTORY = 0x00
SUBTYPE_OTA_FIRST = 0x10
OTA_SLOTS = 16
SUBTYPE_TEST = 0x20
SUBTYPE_TEE_FIRST = 0x30
TEE_SLOTS = 2
SUBTYPE_PRIMARY = 0x00
SUBTYPE_RECOVERY = 0x02
SUBTYPE_DATA_OTA = 0x00
SUBTYPE_NVS = 0x02
SUBTYPE_COREDUMP = 0x03
SUBTYPE_TEE_OTA = 0x90

SUBTYPES: dict[int, dict[str, int]] = {
    TYPE_BOOTLOADER: {"primary": SUBTYPE_PRIMARY, "ota": 0x01, "recovery": SUBTYPE_RECOVERY},
    TYPE_PARTITION_TABLE: {"primary": SUBTYPE_PRIMARY, "ota": 0x01},
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
}

#: Where a partition of each type may start; other types follow data.
OFFSET_ALIGN = {
    TYPE_APP: 0x10000,
    TYPE_DATA: FLASH_SECTOR_SIZE,
    TYPE_BOOTLOADER: FLASH_SECTOR_SIZE,
    TYPE_PARTITION_TABLE: FLASH_SECTOR_SIZE,
}
#: App sizes must be whole flash erase sectors ...
APP_SIZE_ALIGN = FLASH_SECTOR_SIZE
#: ... or whole 64 KiB blocks under secure boot v1, whose signature ends a block.
APP_SIZE_ALIGN_SECURE_V1 = 0x10000
SECURE_V1 = "v1"
SECURE_V2 = "v2"
SECURE_MODES = (SECURE_V1, SECURE_V2)
#: Read-write NVS needs at least this much room; smaller NVS must be flagged readonly.
NVS_MIN_RW_SIZE = 0x3000
#: otadata holds two sectors, one ``esp_ota_select_entry_t`` each.
OTADATA_SIZE = 2 * FLASH_SECTOR_SIZE
#: Data subtypes ESP-IDF always writes to, so they cannot be readonly.
ALWAYS_RW_DATA = (SUBTYPE_DATA_OTA, SUBTYPE_COREDUMP)

FLAG_BITS = {"encrypted": 1 << 0, "readonly": 1 << 1}
FLAG_SEPARATOR = ":"
FIELD_SEPARATOR = ","
CSV_COLUMNS = 6
#: gen_esp32part checks for an unset variable only at the very start of a line; a pattern compiled (by
#: ``re``'s cache) only when a CSV is read, which a plain pack does not do (~0.09 ms).
_UNKNOWN_VAR_AT_START = r"(?<!\\)\$([A-Za-z_][A-Za-z0-9_]*)"
_SIZE_SUFFIXES = (("k", KiB), ("m", MiB))


class TableOptions(NamedTuple):
    """gen_esp32part's options, under the same meaning.

    ``bootloader_offset`` is ``--primary-bootloader-offset``. ``verify=False`` is
    ``--no-verify``; ``md5=False`` is ``--disable-md5sum``; ``extra_subtypes``
    holds ``--extra-partition-subtypes`` entries ("type, name, value").
    ``strict`` turns imgtool's warnings into errors.
    """

    table_offset: int = DEFAULT_TABLE_OFFSET
    bootloader_offset: int | None = None
    recovery_bootloader_offset: int | None = None
    flash_size: int | None = None
    secure: str | None = None
    md5: bool = True
    verify: bool = True
    strict: bool = False
    extra_subtypes: tuple[str, ...] = ()

    def keywords(self) -> dict[int, dict[str, int]]:
        return subtype_keywords(self.extra_subtypes)


class _Name(Adapter):
    """A NUL-padded UTF-8 label. Like gen_esp32part, longer names are cut to the field;
    like the bootloader, parsing stops at the first NUL."""

    def _decode(self, obj, context, path):
        return obj.split(NUL, 1)[0].decode("utf-8")

    def _encode(self, obj, context, path):
        return obj.encode("utf-8")[:NAME_MAX_BYTES].ljust(NAME_MAX_BYTES, NUL)


#: ``esp_partition_info_t``: one 32-byte table entry.
PartitionEntry = Struct(
    "magic" / Const(ENTRY_MAGIC),
    "type" / Int8ul,
    "subtype" / Int8ul,
    "offset" / Int32ul,
    "size" / Int32ul,
    "name" / _Name(Bytes(NAME_MAX_BYTES)),
    "flags" / Int32ul,
)

#: The entry after the partitions: magic, 0xFF fill, then the MD5 of all entries before it.
Md5Entry = Struct(
    "magic" / Const(MD5_MAGIC),
    Padding(ENTRY_SIZE - len(MD5_MAGIC) - MD5_DIGEST_SIZE, pattern=ERASED),
    "digest" / Bytes(MD5_DIGEST_SIZE),
)


class Partition:
    """One table entry. ``where`` ("partitions.csv:5") only locates it for error messages: equality ignores it.

    A plain class (``where`` must not count in equality, so no NamedTuple; no dataclass, which costs
    more to define at import than a pack spends on its table). Treat it as immutable.
    """

    __slots__ = ("name", "type", "subtype", "offset", "size", "encrypted", "readonly", "where")

    def __init__(
        self, name: str, type: int, subtype: int, offset: int, size: int,
        encrypted: bool = False, readonly: bool = False, where: str | None = None,
    ):
        self.name, self.type, self.subtype, self.offset, self.size = name, type, subtype, offset, size
        self.encrypted, self.readonly, self.where = encrypted, readonly, where

    def _key(self) -> tuple:
        return (self.name, self.type, self.subtype, self.offset, self.size, self.encrypted, self.readonly)

    def __eq__(self, other) -> bool:
        return self._key() == other._key() if isinstance(other, Partition) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Partition(name={self.name!r}, type={self.type!r}, subtype={self.subtype!r}, offset={self.offset!r}, "
            f"size={self.size!r}, encrypted={self.encrypted!r}, readonly={self.readonly!r})"
        )

    def placed(self, offset: int, size: int) -> Partition:
        """This entry at ``offset`` with ``size``."""
        return Partition(self.name, self.type, self.subtype, offset, size, self.encrypted, self.readonly, self.where)

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
    def flag_bits(self) -> int:
        return sum(bit for name, bit in FLAG_BITS.items() if getattr(self, name))

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


class _Warnings(list):
    """ESP-IDF's warnings and imgtool's opinions, each 'WHERE: message'; under strict the first one raises."""

    def __init__(self, strict: bool):
        super().__init__()
        self.strict = strict

    def add(self, where: str, message: str) -> None:
        if self.strict:
            raise PartitionError(f"{message} (an error because of --strict)", path=where)
        self.append(f"{where}: {message}")


class PartitionTable:
    """Partitions in table order plus where the table itself lives in flash.

    ``from_csv``/``from_binary`` give ESP-IDF's verdict and keep its warnings in
    ``warnings``; call ``validate()`` on a table built by hand. Equality ignores ``warnings`` and
    ``extra_subtypes``. A plain class, as :class:`Partition` is; treat it as immutable.
    """

    __slots__ = ("partitions", "table_offset", "source", "md5", "warnings", "extra_subtypes")

    def __init__(
        self,
        partitions: tuple[Partition, ...],
        table_offset: int = DEFAULT_TABLE_OFFSET,
        source: str = "partition table",
        md5: bool = True,
        warnings: tuple[str, ...] = (),
        extra_subtypes: tuple[str, ...] = (),
    ):
        self.partitions, self.table_offset, self.source, self.md5 = partitions, table_offset, source, md5
        self.warnings, self.extra_subtypes = warnings, extra_subtypes

    def _key(self) -> tuple:
        return (self.partitions, self.table_offset, self.source, self.md5)

    def __eq__(self, other) -> bool:
        return self._key() == other._key() if isinstance(other, PartitionTable) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"PartitionTable(partitions={self.partitions!r}, table_offset={self.table_offset!r}, "
            f"source={self.source!r}, md5={self.md5!r}, warnings={self.warnings!r})"
        )

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
        """The ota_N app partitions ordered by N, the order otadata's slot numbers count in.

        As in ESP-IDF's bootloader, a later row with the same subtype replaces an earlier one.
        """
        slots = {p.ota_slot: p for p in self.apps if p.ota_slot is not None}
        return [slots[slot] for slot in sorted(slots)]

    @property
    def otadata(self) -> Partition | None:
        return next((p for p in self.partitions if p.type == TYPE_DATA and p.subtype == SUBTYPE_DATA_OTA), None)

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_csv(
        cls, text: str, *, source: str = "partitions.csv", options: TableOptions | None = None, **overrides
    ) -> PartitionTable:
        """Parse ESP-IDF CSV, fill in missing offsets as gen_esp32part does, and give its verdict.

        ``overrides`` are :class:`TableOptions` fields (``table_offset=...``).
        """
        opts = _options(options, overrides)
        keywords = opts.keywords()
        rows: list[_Row] = []
        for line_no, raw in enumerate(text.splitlines(), start=1):
            where = f"{source}:{line_no}"
            line = _expand_vars(raw, where).strip()
            if not line or line.startswith("#"):
                continue
            rows.append(_parse_row(line, where, opts, keywords))
        parts = _fill_offsets(rows, opts.table_offset)
        return cls(tuple(parts), opts.table_offset, source, opts.md5, extra_subtypes=opts.extra_subtypes)._checked(opts)

    @classmethod
    def from_binary(
        cls, data: bytes, *, source: str = "partition-table.bin", options: TableOptions | None = None, **overrides
    ) -> PartitionTable:
        """Decode a binary table, checking its MD5 entry (unless md5 is off), and give ESP-IDF's verdict."""
        opts = _options(options, overrides)
        warnings = _Warnings(opts.strict)
        parts: list[Partition] = []
        md5 = hashlib.md5()
        for index, start in enumerate(range(0, len(data), ENTRY_SIZE)):
            raw = data[start : start + ENTRY_SIZE]
            where = f"{source}: entry {index}"
            if raw == END_MARKER:
                break
            if start >= TABLE_MAX_LEN:  # the bootloader reads no further: stop before decoding megabytes
                raise PartitionError(
                    f"no end-of-table marker within the 0x{TABLE_MAX_LEN:X}-byte table ({index} entries and more); "
                    "the table is corrupt or has too many partitions",
                    path=source,
                )
            if len(raw) < ENTRY_SIZE:
                raise PartitionError("table is cut short inside an entry; use the whole 0xC00-byte table", path=where)
            if opts.md5 and raw.startswith(MD5_MAGIC):
                if Md5Entry.parse(raw).digest != md5.digest():
                    raise PartitionError(
                        "MD5 entry does not match the entries before it; the table is corrupt", path=where
                    )
                continue
            md5.update(raw)
            parts.append(_decode_entry(raw, where, warnings))
        else:
            raise PartitionError("no end-of-table marker (32 bytes of 0xFF); the table is truncated", path=source)
        table = cls(tuple(parts), opts.table_offset, source, opts.md5, extra_subtypes=opts.extra_subtypes)
        return table._checked(opts, tuple(warnings))

    # -- writing -----------------------------------------------------------------------------

    def to_binary(self) -> bytes:
        """The 0xC00-byte table: entries, the MD5 entry (unless disabled), then 0xFF fill."""
        entries = b"".join(
            PartitionEntry.build(
                dict(type=p.type, subtype=p.subtype, offset=p.offset, size=p.size, name=p.name, flags=p.flag_bits)
            )
            for p in self.partitions
        )
        body = entries + (Md5Entry.build(dict(digest=hashlib.md5(entries).digest())) if self.md5 else b"")
        if len(body) >= TABLE_MAX_LEN:
            raise PartitionError(
                f"{len(self.partitions)} partitions do not fit the 0x{TABLE_MAX_LEN:X}-byte table; "
                f"keep {self.max_partitions} or fewer",
                path=self.source,
            )
        return body + ERASED * (TABLE_MAX_LEN - len(body))

    def to_csv(self) -> str:
        """CSV exactly as gen_esp32part writes it, so decompiling matches ESP-IDF's output."""
        keywords = subtype_keywords(self.extra_subtypes)
        rows = ["# ESP-IDF Partition Table", "# Name, Type, SubType, Offset, Size, Flags"]
        for p in self.partitions:
            fields = [
                p.name, _keyword(p.type, TYPES), _keyword(p.subtype, keywords.get(p.type, {})),
                f"0x{p.offset:x}", _csv_size(p.size), FLAG_SEPARATOR.join(p.flags),
            ]
            rows.append(FIELD_SEPARATOR.join(fields))
        return "\n".join(rows) + "\n"

    @property
    def max_partitions(self) -> int:
        return MAX_PARTITIONS if self.md5 else MAX_PARTITIONS_NO_MD5

    # -- the verdict -------------------------------------------------------------------------

    def validate(
        self, *, flash_size: int | None = None, bootloader_offset: int | None = None, options: TableOptions | None = None
    ) -> tuple[str, ...]:
        """Apply ESP-IDF's rules to a table built by hand; raise on the first break, return the warnings."""
        opts = options or TableOptions(table_offset=self.table_offset, md5=self.md5, extra_subtypes=self.extra_subtypes)
        opts = opts._replace(flash_size=flash_size, bootloader_offset=bootloader_offset)
        return self._checked(opts).warnings

    def _checked(self, opts: TableOptions, carried: tuple[str, ...] = ()) -> PartitionTable:
        """gen_esp32part's checks in its order: what it cannot encode, verify (unless off), the flash size."""
        warnings = _Warnings(opts.strict)
        warnings.extend(carried)
        self._check_encodable()
        if opts.verify:
            self._verify(opts, warnings)
        if opts.flash_size is not None:
            self._check_fits(opts.flash_size, warnings)
        return PartitionTable(self.partitions, self.table_offset, self.source, self.md5, tuple(warnings), self.extra_subtypes)

    def _error(self, p: Partition | None, message: str) -> PartitionError:
        return PartitionError(message, path=self._where(p))

    def _where(self, p: Partition | None) -> str:
        return p.where if p is not None and p.where else self.source

    def _check_encodable(self) -> None:
        """What gen_esp32part fails to pack: too many entries, values outside their fields."""
        if len(self.partitions) > self.max_partitions:
            extra = self.partitions[self.max_partitions]
            raise self._error(
                extra,
                f"too many partitions ({len(self.partitions)}); the 0xC00-byte table holds at most "
                f"{self.max_partitions} plus {'its MD5 entry' if self.md5 else 'the end marker'}; merge or remove partitions",
            )
        for p in self.partitions:
            for what, value, limit in (
                ("type", p.type, BYTE_LIMIT), ("subtype", p.subtype, BYTE_LIMIT),
                ("offset", p.offset, ADDRESS_SPACE), ("size", p.size, ADDRESS_SPACE),
            ):
                if not 0 <= value < limit:
                    raise self._error(p, f"{what} {value:#x} of '{p.name}' does not fit its field; use 0 to {limit - 1:#x}")

    def _verify(self, opts: TableOptions, warnings: _Warnings) -> None:
        """gen_esp32part's verify step, then imgtool's opinions as warnings."""
        keywords = opts.keywords()
        subtype_names = {name for names in keywords.values() for name in names}
        for p in self.partitions:
            self._check_partition(p, opts.secure)
            self._warn_keyword_names(p, keywords, subtype_names, warnings)
            self._check_data_flags(p)
        seen: dict[str, Partition] = {}
        for p in self.partitions:
            if p.name in seen:
                raise self._error(p, f"name '{p.name}' is already used by {_loc(seen[p.name])}; names must be unique")
            seen[p.name] = p
        self._check_layout(opts.bootloader_offset)
        self._check_otadata()
        for p in self.partitions:
            self._warn_partition(p, warnings)
        self._warn_table(warnings)

    def _check_partition(self, p: Partition, secure: str | None) -> None:
        align = OFFSET_ALIGN.get(p.type, OFFSET_ALIGN[TYPE_DATA])
        if p.offset % align:
            kind = "an app" if p.is_app else "a non-app"
            raise self._error(
                p,
                f"offset 0x{p.offset:x} of '{p.name}' is not aligned to 0x{align:x} as {kind} partition must be; "
                f"use 0x{align_up(p.offset, align):x}",
            )
        size_align = APP_SIZE_ALIGN_SECURE_V1 if secure == SECURE_V1 else APP_SIZE_ALIGN
        if p.is_app and p.size % size_align:
            why = " (secure boot v1)" if secure == SECURE_V1 else ""
            raise self._error(
                p,
                f"size 0x{p.size:x} of app '{p.name}' is not a multiple of 0x{size_align:x}{why}; "
                f"use 0x{align_up(p.size, size_align):x}",
            )

    def _warn_keyword_names(
        self, p: Partition, keywords: dict[int, dict[str, int]], subtype_names: set[str], warnings: _Warnings
    ) -> None:
        """ESP-IDF's two warnings: a name that is a type or subtype keyword of something else."""
        if p.name in TYPES and TYPES[p.name] != p.type:
            warnings.add(
                self._where(p),
                f"partition '{p.name}' is named like the {p.name} type but has type {p.type:#x}; "
                "check the row or rename it",
            )
        if p.name in subtype_names and keywords.get(p.type, {}).get(p.name) != p.subtype:
            warnings.add(
                self._where(p),
                f"partition '{p.name}' is named like the {p.name} subtype but has type {p.type:#x}, "
                f"subtype {p.subtype:#x}; check the row or rename it",
            )

    def _check_data_flags(self, p: Partition) -> None:
        if p.type != TYPE_DATA:
            return
        if p.subtype in ALWAYS_RW_DATA and p.readonly:
            raise self._error(
                p, f"'{p.name}' ({p.subtype_name}) is always written by ESP-IDF; remove the readonly flag"
            )
        if p.subtype == SUBTYPE_NVS and p.size < NVS_MIN_RW_SIZE and not p.readonly:
            raise self._error(
                p,
                f"nvs partition '{p.name}' of 0x{p.size:x} bytes is too small to write; "
                f"make it at least 0x{NVS_MIN_RW_SIZE:x} or flag it readonly",
            )

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

    def _warn_partition(self, p: Partition, warnings: _Warnings) -> None:
        """imgtool's opinions on one entry that ESP-IDF accepts silently."""
        where = self._where(p)
        encoded = p.name.encode("utf-8")
        if not encoded:
            warnings.add(where, "the name is empty; nothing can find this partition by name, so name it")
        elif NUL in encoded:
            warnings.add(where, f"name {p.name!r} contains a NUL byte, which ends the name in the binary table; remove it")
        elif len(encoded) > NAME_MAX_BYTES:
            cut = encoded[:NAME_MAX_BYTES].decode("utf-8", "replace")
            warnings.add(
                where, f"name {p.name!r} is {len(encoded)} bytes; the table keeps the first {NAME_MAX_BYTES} ({cut!r}), "
                f"so shorten it to {NAME_MAX_BYTES}"
            )
        if p.size == 0:
            warnings.add(where, f"partition '{p.name}' has size 0 and holds nothing; give it a size or remove it")
        if p.end > ADDRESS_SPACE:
            warnings.add(where, f"'{p.name}' ends past 4 GiB, beyond any flash; check its offset and size")

    def _warn_table(self, warnings: _Warnings) -> None:
        """imgtool's opinions on the whole table that ESP-IDF accepts silently."""
        if self.table_offset % TABLE_SECTOR_SIZE:
            warnings.add(
                self.source,
                f"the table offset 0x{self.table_offset:x} is not a multiple of 0x{TABLE_SECTOR_SIZE:x}; "
                "erasing its sector would also erase what lies before it",
            )
        apps = self.apps
        if not apps:
            warnings.add(self.source, "no app partition, so the bootloader has nothing to boot; add a factory or ota_0 app partition")
        seen: dict[int, Partition] = {}
        for p in apps:
            if p.subtype in seen:
                warnings.add(
                    self._where(p),
                    f"a second {p.subtype_name} app '{p.name}' ({_loc(seen[p.subtype])} has one); "
                    "the bootloader only uses the last one listed, so give one of them another subtype",
                )
            seen.setdefault(p.subtype, p)
        slots = self.ota_apps
        if slots and self.otadata is None:
            warnings.add(
                self._where(slots[0]),
                f"OTA app '{slots[0].name}' without an otadata partition will never boot an OTA update; "
                f"add 'otadata, data, ota, , 0x{OTADATA_SIZE:x},' before the apps",
            )

    def past_flash_end(self, flash_size: int) -> Partition | None:
        """gen_esp32part's rule: the partition at the highest offset, when it ends past ``flash_size``."""
        if not self.partitions:
            return None
        last = max(self.partitions, key=lambda p: p.offset)
        return last if last.end > flash_size else None

    def _check_fits(self, flash_size: int, warnings: _Warnings) -> None:
        """gen_esp32part's rule: the partition at the highest offset must end within the flash."""
        if self.table_offset + TABLE_SECTOR_SIZE > flash_size:
            warnings.add(
                self.source,
                f"the partition table at 0x{self.table_offset:x} lies past the end of the "
                f"{human_size(flash_size)} flash; lower --offset or raise --flash-size",
            )
        last = self.past_flash_end(flash_size)
        if last is not None:
            needed = next((name for name in FLASH_SIZES if flash_size_bytes(name) >= last.end), None)
            fix = f"pass --flash-size {needed}" if needed else "pass a larger --flash-size"
            if not (self.source or "").startswith("preset "):  # a preset cannot be edited
                fix += " or shrink it"
            raise self._error(
                last,
                f"{last.describe()} ends {human_size(last.end - flash_size)} past the end of the "
                f"{human_size(flash_size)} flash; {fix}",
            )


class _Row:
    """A parsed CSV row before offsets are filled in: ``offset_given`` says whether its offset was written (a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up)."""

    __slots__ = ("part", "offset_given")

    def __init__(self, part: Partition, offset_given: bool):
        self.part = part
        self.offset_given = offset_given


def _options(options: TableOptions | None, overrides: dict) -> TableOptions:
    opts = (options or TableOptions())._replace(**overrides)
    if opts.table_offset < 0:
        raise UsageError(f"partition table offset {opts.table_offset:#x} is negative", field="--offset")
    if opts.bootloader_offset is not None and opts.bootloader_offset >= opts.table_offset:
        raise UsageError(
            f"partition table offset 0x{opts.table_offset:x} is not after the bootloader at "
            f"0x{opts.bootloader_offset:x}; use 0x{DEFAULT_TABLE_OFFSET:x} or higher",
            field="--offset",
        )
    if opts.secure not in (None, *SECURE_MODES):
        raise UsageError(f"unknown secure boot version '{opts.secure}'; use v1 or v2", field="--secure")
    return opts


def subtype_keywords(extra: tuple[str, ...] = ()) -> dict[int, dict[str, int]]:
    """Subtype keywords per type, plus ``--extra-partition-subtypes`` entries ("type, name, hex value")."""
    keywords = {ptype: dict(names) for ptype, names in SUBTYPES.items()}
    for entry in extra:
        fields = [f.strip() for f in entry.split(FIELD_SEPARATOR)]
        hint = "write each as 'TYPE, NAME, HEX VALUE', e.g. 'data, my_store, 0x40'"
        if len(fields) < 3 or fields[0] not in TYPES:
            raise UsageError(f"'{entry}' is not a subtype entry; {hint}", field="--extra-partition-subtypes")
        ptype, name = TYPES[fields[0]], fields[1]
        try:
            value = int(fields[2], 16)
        except ValueError:
            raise UsageError(f"'{entry}': '{fields[2]}' is not a hex value; {hint}", field="--extra-partition-subtypes") from None
        if value in keywords[ptype].values():
            taken = _keyword(value, keywords[ptype])
            raise UsageError(
                f"'{entry}': {fields[0]} subtype {value:#x} is already '{taken}'; pick a free value",
                field="--extra-partition-subtypes",
            )
        keywords[ptype][name] = value
    return keywords


def _decode_entry(raw: bytes, where: str, warnings: _Warnings) -> Partition:
    try:
        entry = PartitionEntry.parse(raw)
    except ConstructError:
        raise PartitionError(
            f"bad magic {raw[:2].hex()} (expected aa50); this is not an ESP-IDF partition table", path=where
        ) from None
    except UnicodeDecodeError:
        raise PartitionError("partition name is not valid UTF-8", path=where) from None
    known = sum(FLAG_BITS.values())
    if entry.flags & ~known:
        warnings.add(where, f"unknown flag bits 0x{entry.flags & ~known:08x} are dropped (a newer table format?)")
    flags = {name: bool(entry.flags & bit) for name, bit in FLAG_BITS.items()}
    return Partition(entry.name, entry.type, entry.subtype, entry.offset, entry.size, where=where, **flags)


# -- CSV fields --------------------------------------------------------------------------------


def _expand_vars(line: str, where: str) -> str:
    """gen_esp32part expands environment variables; a row that starts with an unset one is an error."""
    expanded = os.path.expandvars(line)
    unknown = re.match(_UNKNOWN_VAR_AT_START, expanded)
    if unknown:
        raise PartitionError(f"unknown environment variable ${unknown.group(1)}; set it or write the value", path=where)
    return expanded


def parse_int(
    text: str, keywords: dict[str, int] | None = None, *, what: str = "value", where: str | None = None
) -> int:
    """An integer in gen_esp32part's syntax: Python's int(x, 0), K/M suffixes, or a keyword."""
    value = _number(text.strip(), keywords or {})
    if value is None:
        hint = f"a number or one of {', '.join(keywords)}" if keywords else "a number such as 0x1000, 4096, 24K or 1M"
        unset = " (an unset environment variable?)" if "$" in text else ""
        raise PartitionError(f"{what} '{text}' is not valid{unset}; use {hint}", path=where)
    return value


def _number(text: str, keywords: dict[str, int]) -> int | None:
    """Each trailing K or M multiplies what is left; a keyword is only tried for text without one."""
    for letter, multiplier in _SIZE_SUFFIXES:
        if text.lower().endswith(letter):
            inner = _number(text[:-1], keywords)
            return None if inner is None else inner * multiplier
    try:
        return int(text, 0)
    except ValueError:
        return keywords.get(text.lower())


def _parse_row(line: str, where: str, opts: TableOptions, keywords: dict[int, dict[str, int]]) -> _Row:
    fields = [f.strip() for f in line.split(FIELD_SEPARATOR)]
    fields += [""] * (CSV_COLUMNS - len(fields))
    name, type_s, subtype_s, offset_s, size_s, flags_s = fields[:CSV_COLUMNS]
    if not type_s:
        raise PartitionError("the type column is empty; use app, data or a number", path=where)
    ptype = parse_int(type_s, TYPES, what="type", where=where)
    if subtype_s:
        subtype = parse_int(subtype_s, keywords.get(ptype, {}), what="subtype", where=where)
    elif ptype == TYPE_APP:
        raise PartitionError("an app partition needs a subtype (factory, ota_0 ... ota_15, test)", path=where)
    else:
        subtype = SUBTYPE_UNDEFINED
    offset = _parse_offset(offset_s, ptype, subtype, opts, where)
    size = _parse_size(size_s, ptype, opts, where)
    flags = {}
    for flag in flags_s.split(FLAG_SEPARATOR):
        if flag in FLAG_BITS:
            flags[flag] = True
        elif flag:
            raise PartitionError(f"unknown flag '{flag}'; use {' or '.join(FLAG_BITS)} (joined with ':')", path=where)
    part = Partition(name, ptype, subtype, 0 if offset is None else offset, size, where=where, **flags)
    return _Row(part, offset is not None)


def _parse_offset(text: str, ptype: int, subtype: int, opts: TableOptions, where: str) -> int | None:
    """The bootloader rows and the primary table sit where the options put them; their column is ignored."""
    if ptype == TYPE_BOOTLOADER and subtype == SUBTYPE_PRIMARY:
        return _bootloader_offset(opts.bootloader_offset, "primary", "--chip or --primary-bootloader-offset", where)
    if ptype == TYPE_BOOTLOADER and subtype == SUBTYPE_RECOVERY:
        return _bootloader_offset(opts.recovery_bootloader_offset, "recovery", "--recovery-bootloader-offset", where)
    if ptype == TYPE_PARTITION_TABLE and subtype == SUBTYPE_PRIMARY:
        return opts.table_offset
    return parse_int(text, what="offset", where=where) if text else None


def _parse_size(text: str, ptype: int, opts: TableOptions, where: str) -> int:
    """Every bootloader row spans the primary bootloader's room and every table row one sector, whatever is written."""
    if ptype == TYPE_BOOTLOADER:
        primary = _bootloader_offset(opts.bootloader_offset, "primary", "--chip or --primary-bootloader-offset", where)
        return opts.table_offset - primary
    if ptype == TYPE_PARTITION_TABLE:
        return TABLE_SECTOR_SIZE
    if not text:
        raise PartitionError("the size column is empty; give a size such as 0x6000, 24K or 1M", path=where)
    return parse_int(text, what="size", where=where)


def _bootloader_offset(offset: int | None, which: str, option: str, where: str) -> int:
    if offset is None:
        raise PartitionError(f"a bootloader entry needs the {which} bootloader offset; pass {option}", path=where)
    return offset


def _fill_offsets(rows: list[_Row], table_offset: int) -> list[Partition]:
    """Give each row without an offset the next aligned address after the previous row, as gen_esp32part does.

    Rows must be in flash order; the primary bootloader and table rows take no part. A negative
    size means "up to this address".
    """
    result = []
    last_end = table_offset + TABLE_SECTOR_SIZE
    previous: Partition | None = None
    for row in rows:
        p = row.part
        if p.is_fixed:
            result.append(p)
            continue
        if row.offset_given and p.offset < last_end:
            if previous is None:
                raise PartitionError(_reserved_overlap(p, table_offset, None), path=p.where)
            raise PartitionError(
                f"offset 0x{p.offset:x} of '{p.name}' is inside '{previous.name}' ({_loc(previous)}), which ends at "
                f"0x{last_end:x}; list partitions in flash order and use 0x{last_end:x} or higher",
                path=p.where,
            )
        offset = p.offset if row.offset_given else align_up(last_end, OFFSET_ALIGN.get(p.type, OFFSET_ALIGN[TYPE_DATA]))
        size = p.size if p.size >= 0 else -p.size - offset
        if size < 0:
            raise PartitionError(
                f"negative size {p.size:#x} means 'up to {-p.size:#x}', but '{p.name}' starts at 0x{offset:x}",
                path=p.where,
            )
        p = p.placed(offset, size)
        result.append(p)
        previous = p
        last_end = p.end
    return result


def _reserved_overlap(p: Partition, table_offset: int, bootloader_offset: int | None) -> str:
    table_end = table_offset + TABLE_SECTOR_SIZE
    if p.offset < table_offset:
        start = f"0x{bootloader_offset:x}" if bootloader_offset is not None else "flash start"
        region = f"the bootloader area ({start} up to the partition table at 0x{table_offset:x})"
    else:
        region = f"the partition table (0x{table_offset:x}-0x{table_end:x})"
    return f"'{p.name}' at 0x{p.offset:x} overlaps {region}; start it at 0x{table_end:x} or later"


def _keyword(value: int, keywords: dict[str, int]) -> str:
    return next((name for name, v in keywords.items() if v == value), str(value))


def _csv_size(size: int) -> str:
    for unit, suffix in ((MiB, "M"), (KiB, "K")):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return f"0x{size:x}"


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
    with erased otadata (the last factory row, else the lowest OTA slot, else the first app, e.g. a test app)."""
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
    # The bootloader keeps the last factory row it reads.
    factory = next((p for p in reversed(apps) if p.subtype == SUBTYPE_FACTORY), None)
    ota = table.ota_apps
    return factory or (ota[0] if ota else apps[0])
