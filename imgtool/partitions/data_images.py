"""Data partition images for ``pack --data LABEL=PATH``: built in memory, placed by ``flash_layout``.

ESP-IDF builds these only inside CMake (``nvs_create_partition_image``,
``littlefs_create_partition_image``); here the same tools run in process:

- a ``.csv`` file: an NVS image from Espressif's ``esp-idf-nvs-partition-gen``, sized to the
  partition as its ``generate`` command sizes it (multipage blobs, version 2). ``file`` rows
  name files relative to the CSV's folder;
- a folder: a LittleFS image from ``littlefs-python`` with esp_littlefs's defaults (4096-byte
  blocks, one block per 4 KiB of partition, 128-byte reads and programs, names up to 64 bytes),
  written in on-disk version 2.0, which every littlefs 2.x mounts (esp_littlefs, the Rust crates);
- any other file: written as it is.

The label must name a data partition of the table, other than otadata (pack writes that one);
an image larger than its partition is refused before anything is written. Reading back,
:func:`describe_contents` says what a data partition holds (``verify``).
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from pathlib import Path
from typing import NamedTuple

from construct import Bytes, Int8ul, Int32ul, Struct

from imgtool.atomic import input_kind, read_input
from imgtool.errors import InputError, LayoutError, UsageError
from imgtool.output_names import CORE_PARTS, data_file_name, unusable_name
from imgtool.partitions.table import (
    NVS_MIN_RW_SIZE,
    SUBTYPE_DATA_OTA,
    SUBTYPE_NVS,
    TYPE_DATA,
    Partition,
    PartitionTable,
)

CSV_SUFFIX = ".csv"
#: esp_littlefs formats flash partitions with 4 KiB blocks (the flash erase sector).
LITTLEFS_BLOCK_SIZE = 4096
#: esp_littlefs's Kconfig defaults: CONFIG_LITTLEFS_READ_SIZE, _WRITE_SIZE, _CACHE_SIZE, _LOOKAHEAD_SIZE, _BLOCK_CYCLES.
LITTLEFS_READ_SIZE = 128
LITTLEFS_PROG_SIZE = 128
LITTLEFS_CACHE_SIZE = 512
LITTLEFS_LOOKAHEAD_SIZE = 128
LITTLEFS_BLOCK_CYCLES = 512
#: CONFIG_LITTLEFS_OBJ_NAME_LEN: stored in the superblock; a device built with a smaller limit refuses the image.
LITTLEFS_NAME_MAX = 64
#: On-disk version 2.0: littlefs 2.0-2.5 (older Rust crates) refuse 2.1, and later releases mount 2.0.
LITTLEFS_DISK_VERSION = 0x0002_0000
LITTLEFS_MAGIC = b"littlefs"
#: The superblock's name tag puts the magic 8 bytes into a metadata block (after the revision count and tag).
LITTLEFS_MAGIC_OFFSET = 8

#: NVS pages are flash sectors; ESP-IDF keeps one page free for garbage collection.
NVS_PAGE_SIZE = 0x1000
NVS_KEY_MAX = 15
#: An NVS CSV larger than this describes more than the largest NVS partition (the flash) could hold.
MAX_NVS_CSV_BYTES = 64 * 1024 * 1024
NVS_CSV_COLUMNS = ("key", "type", "encoding", "value")
NVS_ROW_TYPES = ("namespace", "data", "file")
#: nvs::Page::PageState values a page header may hold (ESP-IDF nvs_page.hpp).
NVS_PAGE_STATES = {0xFFFFFFFE: "active", 0xFFFFFFFC: "full", 0xFFFFFFF8: "freeing"}
NVS_PAGE_UNINITIALIZED = 0xFFFFFFFF
NVS_VERSIONS = {0xFF: 1, 0xFE: 2}
#: The header CRC covers the sequence number, version and reserved bytes.
NVS_HEADER_CRC_SPAN = slice(4, 28)

NvsPageHeader = Struct(
    "state" / Int32ul,
    "seq" / Int32ul,
    "version" / Int8ul,
    "reserved" / Bytes(19),
    "crc32" / Int32ul,
)

#: Keys of ``flasher_args.json`` a partition label would shadow (the label names its entry there).
RESERVED_LABELS = frozenset(
    {*CORE_PARTS, "merged", "write_flash_args", "flash_settings", "flash_files", "extra_esptool_args", "imgtool"}
)


class DataImage(NamedTuple):
    """The bytes for one data partition and where they came from."""

    label: str
    partition: Partition
    data: bytes
    kind: str  # nvs, littlefs or raw
    source: str

    @property
    def file(self) -> str:
        return data_file_name(self.label)


def parse_data_option(text: str) -> tuple[str, str]:
    """``LABEL=PATH`` as a pair; a missing ``=``, label or path is refused."""
    label, sep, path = text.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise UsageError(f"'{text}' is not LABEL=PATH (e.g. nvs=settings.csv or storage=www/)", field="--data")
    return label.strip(), path.strip()


def merge_data_specs(from_files: dict[str, str], given) -> dict[str, str]:
    """Project-file declarations with the command line's ``(label, path)`` pairs over them; a label given twice is refused."""
    seen: set[str] = set()
    out = dict(from_files)
    for label, path in given:
        if label in seen:
            raise UsageError(f"partition '{label}' is given twice; pass one --data {label}=PATH", field="--data")
        seen.add(label)
        out[label] = os.fspath(path)
    return out


def build_data_images(specs: dict[str, str], table: PartitionTable) -> tuple[list[DataImage], list[str]]:
    """One image per ``label → path``, checked against the table; returns the images (by offset) and warnings."""
    images: list[DataImage] = []
    warnings: list[str] = []
    for label, path in specs.items():
        part = data_partition(table, label)
        source = Path(path)
        if source.is_dir():
            data, kind = littlefs_image(source, part), "littlefs"
        elif source.suffix.lower() == CSV_SUFFIX:
            data, kind = nvs_image(source, part, warnings), "nvs"
        else:
            data, kind = raw_image(source, part), "raw"
        if len(data) > part.size:
            raise _too_big(source, len(data), part)
        if (kind == "nvs") != (part.subtype == SUBTYPE_NVS) and kind != "raw":
            warnings.append(
                f"{source}: makes a {'LittleFS' if kind == 'littlefs' else 'NVS'} image for partition '{label}', "
                f"whose subtype is {part.subtype_name}; check the label"
            )
        images.append(DataImage(label, part, bytes(data), kind, os.fspath(source)))
    return sorted(images, key=lambda i: i.partition.offset), warnings


def data_partition(table: PartitionTable, label: str) -> Partition:
    """The data partition ``label`` names; app, bootloader and table entries and otadata are refused."""
    part = table.find(label)
    if part is None:
        names = ", ".join(p.name for p in table.partitions if p.type == TYPE_DATA) or "none"
        raise UsageError(f"no partition is labelled '{label}' in {table.source}; data partitions: {names}", field="--data")
    if part.type != TYPE_DATA:
        raise UsageError(
            f"partition '{label}' has type {part.type_name}, not data; "
            "--data fills data partitions (the app goes in with --target-app-partition)",
            field="--data",
        )
    if part.subtype == SUBTYPE_DATA_OTA:
        raise UsageError(f"partition '{label}' is the otadata partition, which pack writes itself", field="--data")
    if label in RESERVED_LABELS or unusable_name(label, also="\\"):
        raise UsageError(f"partition '{label}' cannot name an output file or flasher_args.json entry; rename it", field="--data")
    return part


def raw_image(path: Path, part: Partition) -> bytes:
    """The file as it is; its size is checked before it is read."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_input names the problem
    if size > part.size:
        raise _too_big(path, size, part)
    return read_input(path, "data partition file", limit=part.size)


def _too_big(path: Path, size: int, part: Partition) -> LayoutError:
    return LayoutError(
        f"is {size:,} bytes but partition '{part.name}' holds {part.size:,} (0x{part.size:x}); "
        "make it smaller or the partition larger",
        path=path,
        field="--data",
    )


# --------------------------------------------------------------------------- LittleFS


def littlefs_image(folder: Path, part: Partition) -> bytes:
    """Every file and folder below ``folder`` in a LittleFS filling the partition, in sorted order."""
    # not at the top: every pack loads this module, only --data with a folder needs littlefs (~20 ms)
    import littlefs

    try:
        fs = littlefs.LittleFS(
            block_size=LITTLEFS_BLOCK_SIZE,
            block_count=part.size // LITTLEFS_BLOCK_SIZE,
            read_size=LITTLEFS_READ_SIZE,
            prog_size=LITTLEFS_PROG_SIZE,
            cache_size=LITTLEFS_CACHE_SIZE,
            lookahead_size=LITTLEFS_LOOKAHEAD_SIZE,
            block_cycles=LITTLEFS_BLOCK_CYCLES,
            name_max=LITTLEFS_NAME_MAX,
            disk_version=LITTLEFS_DISK_VERSION,
        )
    except littlefs.LittleFSError as exc:
        raise _littlefs_error(exc, folder, part) from None
    for path, inner, is_dir in _folder_entries(folder, part):
        try:
            if is_dir:
                fs.mkdir(inner)
            else:
                data = _read(path, part)
                with fs.open(inner, "wb") as out:
                    out.write(data)
        except littlefs.LittleFSError as exc:
            raise _littlefs_error(exc, path, part) from None
    return bytes(fs.context.buffer)


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text that prints anywhere: bytes that are not UTF-8 in a name appear as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _folder_entries(folder: Path, part: Partition):
    """``(path, name in the image, is a folder)`` for everything below ``folder``, in sorted order.

    Refused in one line: a folder that cannot be listed (never packed as empty), a name that is not
    UTF-8 or longer than LittleFS allows, a link to a folder or to anything outside ``folder``, and
    anything that is not a regular file or folder (a FIFO, a device).
    """
    root = os.path.realpath(folder)
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: os.fsencode(e.name))
        except OSError as exc:
            raise InputError(
                f"cannot list this folder ({exc.strerror}); fix its permissions or leave it out", path=shown_path(current), field="--data"
            ) from None
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            inner = path.relative_to(folder).as_posix()
            try:
                encoded = entry.name.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    "the name is not UTF-8 (LittleFS names are UTF-8 text); rename it", path=shown_path(path), field="--data"
                ) from None
            if len(encoded) > LITTLEFS_NAME_MAX - 1:
                raise InputError(
                    f"the name is {len(encoded)} bytes, longer than LittleFS's {LITTLEFS_NAME_MAX - 1}; shorten it",
                    path=shown_path(path),
                    field="--data",
                )
            if entry.is_symlink():
                target = os.path.realpath(path)
                if os.path.commonpath([root, target]) != root:
                    raise InputError(
                        f"is a link to {shown_path(target)}, outside the data folder; copy the file in instead",
                        path=shown_path(path),
                        field="--data",
                    )
                if os.path.isdir(target):
                    raise InputError("is a link to a folder; copy the folder in instead", path=shown_path(path), field="--data")
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir:
                    input_kind(path, "file in the data folder", pipes=False)
            except InputError as exc:
                raise InputError(exc.message, path=shown_path(path), field="--data") from None
            yield path, inner, is_dir
            if is_dir:
                subfolders.append(path)
        pending.extend(reversed(subfolders))


def _littlefs_full(path: Path, part: Partition) -> LayoutError:
    return LayoutError(
        f"does not fit in a LittleFS in partition '{part.name}' ({part.size:,} bytes): it is full; make the partition larger",
        path=shown_path(path),
        field="--data",
    )


def _littlefs_error(exc, path: Path, part: Partition):
    import littlefs  # not at the top: as in littlefs_image (~20 ms a pack without a LittleFS skips)

    # every name was checked against the limit first, so a name "too long" here is one that no longer fits: the
    # file system is full (littlefs reports a metadata block with no room for the name that way)
    if exc.code in (littlefs.LittleFSError.Error.LFS_ERR_NOSPC, littlefs.LittleFSError.Error.LFS_ERR_NAMETOOLONG):
        return _littlefs_full(path, part)
    return InputError(f"cannot be added to the LittleFS ({exc})", path=path, field="--data")


def _read(path: Path, part: Partition) -> bytes:
    if path.stat().st_size > part.size:
        raise _littlefs_full(path, part)
    try:
        return read_input(path, "file in the data folder", limit=part.size)
    except InputError as exc:
        raise InputError(exc.message, path=shown_path(path), field="--data") from None


# --------------------------------------------------------------------------- NVS


def nvs_image(csv_path: Path, part: Partition, warnings: list[str]) -> bytes:
    """The NVS image ``esp-idf-nvs-partition-gen generate CSV OUT SIZE`` writes for this partition.

    As its ``generate`` does, one page stays reserved, and a partition under 0x3000 bytes gets a
    read-only image (no reserved page), with a warning.
    """
    if part.size % NVS_PAGE_SIZE or part.size < NVS_PAGE_SIZE:
        raise LayoutError(
            f"partition '{part.name}' is 0x{part.size:x} bytes; an NVS image needs a multiple of 0x{NVS_PAGE_SIZE:x}",
            path=csv_path,
            field="--data",
        )
    usable, read_only = part.size - NVS_PAGE_SIZE, False
    if part.size < NVS_MIN_RW_SIZE:  # the rule partitions applies to the table row: no page left to spare
        usable, read_only = part.size, True
        warnings.append(
            f"{csv_path}: partition '{part.name}' is smaller than 0x{NVS_MIN_RW_SIZE:x} bytes, so its NVS image is "
            "read-only; flag it 'readonly' in the partition table"
        )
    rows = _nvs_rows(csv_path)
    # not at the top: every pack loads this module, only --data with an NVS CSV needs the generator (~28 ms)
    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    out = io.BytesIO()
    line = 0
    # The generator reports bad values with assorted exception types and log lines; each is the row's fault.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            nvs = gen.nvs_open(out, usable, gen.Page.VERSION2, read_only=read_only)
            for line, row in rows:
                gen.write_entry(nvs, row["key"], row["type"], row["encoding"], row["value"])
            line = 0
            gen.nvs_close(nvs)
        except gen.InsufficientSizeError:
            raise LayoutError(
                f"does not fit in partition '{part.name}' (0x{part.size:x} bytes); make the partition larger",
                path=csv_path,
                field="--data",
            ) from None
        except Exception as exc:  # noqa: BLE001 - see above
            text = str(exc).strip() or type(exc).__name__
            where = f"line {line}: " if line else ""
            raise InputError(f"{where}{text.splitlines()[0]}", path=csv_path, field="--data") from None
    return out.getvalue()


def _nvs_rows(csv_path: Path) -> list[tuple[int, dict]]:
    """The CSV rows as the generator reads them (``#`` lines skipped), with their line numbers; ``file`` values made absolute."""
    import csv  # not at the top: every pack loads this module, only an NVS CSV needs csv (~0.5 ms, 2 modules)

    try:
        text = read_input(csv_path, "NVS CSV", limit=MAX_NVS_CSV_BYTES).decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=csv_path, field="--data") from None
    except InputError as exc:
        raise InputError(exc.message, path=csv_path, field="--data") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(keepends=True), 1) if not line.startswith("#")]
    reader = csv.DictReader((line for _, line in numbered), delimiter=",")
    rows = []
    try:
        for row in reader:
            line = numbered[reader.line_num - 1][0]
            missing = [c for c in NVS_CSV_COLUMNS if row.get(c) is None]
            if missing:
                raise InputError(
                    f"line {line}: no {', '.join(missing)} column (the header must be 'key,type,encoding,value')",
                    path=csv_path,
                    field="--data",
                )
            if row["type"] not in NVS_ROW_TYPES:
                raise InputError(
                    f"line {line}: type '{row['type']}' is not one of {', '.join(NVS_ROW_TYPES)}", path=csv_path, field="--data"
                )
            if len(row["key"].encode("utf-8")) > NVS_KEY_MAX:
                raise InputError(
                    f"line {line}: key {row['key']!r} is {len(row['key'].encode('utf-8'))} bytes in UTF-8, longer than NVS's {NVS_KEY_MAX}",
                    path=csv_path,
                    field="--data",
                )
            if row["type"] == "file":
                row["value"] = os.fspath(csv_path.parent / row["value"])
                if os.path.exists(row["value"]):  # the generator names a missing file itself
                    try:
                        input_kind(row["value"], "NVS value file", pipes=False)
                    except InputError as exc:
                        raise InputError(f"line {line}: {row['value']} {exc.message}", path=csv_path, field="--data") from None
            rows.append((line, row))
    except csv.Error as exc:
        raise InputError(f"line {numbered[reader.line_num - 1][0]}: {exc}", path=csv_path, field="--data") from None
    if reader.fieldnames is None:
        raise InputError("is empty; expected a 'key,type,encoding,value' header and rows", path=csv_path, field="--data")
    return rows


# --------------------------------------------------------------------------- reading back


def describe_contents(part: Partition, data: bytes) -> tuple[bool, str] | None:
    """What a data partition holds, as ``(plausible, message)``; None when erased (nothing to say), except
    that an erased NVS is reported as empty (``nvs_flash_init``, components/nvs_flash/src/nvs_api.cpp,
    takes erased pages as free and formats them).

    An NVS partition must start with a page header ESP-IDF's NVS accepts (a known state and a
    valid CRC), or ``nvs_flash_init`` finds no usable page and the data is lost.
    """
    if not data or data.count(0xFF) == len(data):
        return (True, "empty NVS (erased; ESP-IDF's NVS formats it on first use)") if data and part.subtype == SUBTYPE_NVS else None
    if part.subtype == SUBTYPE_NVS:
        return _describe_nvs(data, part.size)
    if data[LITTLEFS_MAGIC_OFFSET : LITTLEFS_MAGIC_OFFSET + len(LITTLEFS_MAGIC)] == LITTLEFS_MAGIC:
        return True, "holds a LittleFS"
    return True, "holds data"


def _describe_nvs(data: bytes, size: int) -> tuple[bool, str]:
    pages = 0
    for start in range(0, min(len(data), size) - NvsPageHeader.sizeof() + 1, NVS_PAGE_SIZE):
        raw = data[start : start + NvsPageHeader.sizeof()]
        header = NvsPageHeader.parse(raw)
        if header.state == NVS_PAGE_UNINITIALIZED:
            continue
        if header.state not in NVS_PAGE_STATES:
            return False, f"NVS page at +0x{start:x} has state 0x{header.state:08x}, which ESP-IDF's NVS treats as corrupt"
        if zlib.crc32(raw[NVS_HEADER_CRC_SPAN], 0xFFFFFFFF) != header.crc32:
            return False, f"NVS page at +0x{start:x} has a bad header CRC; ESP-IDF's NVS would erase it"
        if header.version not in NVS_VERSIONS:
            return False, f"NVS page at +0x{start:x} has unknown format version 0x{header.version:02x}"
        pages += 1
    return True, f"NVS with {pages} used page{'s' if pages != 1 else ''}, headers valid"


__all__ = [
    "DataImage",
    "build_data_images",
    "describe_contents",
    "merge_data_specs",
    "parse_data_option",
]
