"""Which partition table a pack uses, and whether the app fits it.

A table comes from a CSV or binary file, a preset shipped with imgtool, or the
default sized to the flash (nvs, phy_init, one factory app filling the rest).
When the app is too big, the error names the flash size or preset that would
hold it.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

from imgtool.atomic import read_input
from imgtool.chips.table import FLASH_SIZES, flash_size_bytes
from imgtool.chips.units import align_up
from imgtool.errors import LayoutError, PartitionError, UsageError
from imgtool.partitions.table import (
    APP_SIZE_ALIGN,
    DEFAULT_TABLE_OFFSET,
    ENTRY_MAGIC,
    OFFSET_ALIGN,
    SUBTYPE_FACTORY,
    SUBTYPE_NVS,
    SUBTYPES,
    TABLE_SECTOR_SIZE,
    TYPE_APP,
    TYPE_DATA,
    Partition,
    PartitionTable,
    TableOptions,
    boot_app_partition,
    human_size,
)

#: Layout of the default table ``pack`` uses when the user gives none.
DEFAULT_NVS_SIZE = 0x6000
DEFAULT_PHY_SIZE = 0x1000

PRESET_PACKAGE = "imgtool.partition_presets"
#: A preset's name; a pattern compiled (by ``re``'s cache) only when a preset is named (~0.05 ms).
_PRESET_NAME = r"[a-z0-9_]+"
#: In gen_esp32part's order: a UTF-32-LE mark also starts with the UTF-16-LE one, and ESP-IDF reads it as UTF-16.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
)


#: A partition table file (CSV with comments, or the 0xC00-byte binary) is never this large.
MAX_TABLE_INPUT_BYTES = 1 << 20

def preset_names() -> list[str]:
    """The partition-table presets shipped with imgtool."""
    return sorted(entry.name[: -len(".csv")] for entry in _preset_folder().iterdir() if entry.name.endswith(".csv"))


def preset_csv(name: str) -> str | None:
    key = name.strip().lower().replace("-", "_").removesuffix(".csv")
    if not re.fullmatch(_PRESET_NAME, key):
        return None
    entry = _preset_folder().joinpath(f"{key}.csv")
    return entry.read_text(encoding="utf-8") if entry.is_file() else None


def _preset_folder():
    """The presets' package folder."""
    # not at the top: every pack loads this module, only a preset table needs importlib.resources (~3 ms)
    from importlib import resources

    return resources.files(PRESET_PACKAGE)


def load_preset(
    name: str, *, table_offset: int | None = None, flash_size: int | str | None = None,
    bootloader_offset: int | None = None, options: TableOptions | None = None,
) -> PartitionTable:
    text = preset_csv(name)
    if text is None:
        raise UsageError(
            f"no partition-table preset '{name}'; use one of {', '.join(preset_names())}", field="--partition-table"
        )
    opts = _merged(options, table_offset=table_offset, bootloader_offset=bootloader_offset, flash_size=flash_size)
    return PartitionTable.from_csv(text, source=f"preset {name}", options=opts)


def _merged(options: TableOptions | None, *, flash_size: int | str | None, **given) -> TableOptions:
    """``options`` with the keyword arguments that were given (not None) in place of its fields."""
    given["flash_size"] = _flash_bytes(flash_size)
    return (options or TableOptions())._replace(**{k: v for k, v in given.items() if v is not None})


def decode_text(data: bytes) -> str:
    """CSV text, honouring a byte-order mark as gen_esp32part does (UTF-8 otherwise)."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    return data.decode(encoding)


def load_table(
    source: str | os.PathLike,
    *,
    flash_size: int | str | None = None,
    table_offset: int | None = None,
    bootloader_offset: int | None = None,
    options: TableOptions | None = None,
) -> PartitionTable:
    """A table with ESP-IDF's verdict from a CSV file, a binary table file (starts with 0xAA50) or a preset name.

    ``options`` carries gen_esp32part's other options; the keyword arguments override it.
    """
    opts = _merged(options, table_offset=table_offset, bootloader_offset=bootloader_offset, flash_size=flash_size)
    path = Path(source)
    if not path.exists() and preset_csv(str(source)) is not None:
        return load_preset(str(source), options=opts)
    if not path.exists():
        raise PartitionError(
            f"no such file, and not a preset (presets: {', '.join(preset_names())})", path=os.fspath(source)
        )
    data = read_input(path, "partition table", limit=MAX_TABLE_INPUT_BYTES)
    if data.startswith(ENTRY_MAGIC):
        return PartitionTable.from_binary(data, source=os.fspath(source), options=opts)
    try:
        text = decode_text(data)
    except UnicodeDecodeError:
        raise PartitionError("neither a binary partition table (0xAA50) nor UTF-8 CSV text", path=path) from None
    return PartitionTable.from_csv(text, source=os.fspath(source), options=opts)


def _flash_bytes(flash_size: int | str | None) -> int | None:
    return flash_size_bytes(flash_size) if isinstance(flash_size, str) else flash_size


def default_table(flash_size: int, table_offset: int = DEFAULT_TABLE_OFFSET, mmu_page_size: int = 0) -> PartitionTable:
    """nvs and phy_init after the table, then one factory app filling the rest of the flash.

    The app starts on a multiple of ``mmu_page_size`` too (the app's MMU page, when it is larger
    than the 64 KiB app alignment, as ESP32-S31's 128 and 256 KiB pages are).
    """
    nvs_offset = table_offset + TABLE_SECTOR_SIZE
    phy_offset = nvs_offset + DEFAULT_NVS_SIZE
    app_offset = align_up(phy_offset + DEFAULT_PHY_SIZE, max(OFFSET_ALIGN[TYPE_APP], mmu_page_size))
    app_size = (flash_size - app_offset) // APP_SIZE_ALIGN * APP_SIZE_ALIGN
    if app_size <= 0:
        raise LayoutError(
            f"a {human_size(flash_size)} flash leaves no room for an app after the table at 0x{table_offset:x}; "
            "pass a larger --flash-size",
            field="--flash-size",
        )
    table = PartitionTable(
        (
            Partition("nvs", TYPE_DATA, SUBTYPE_NVS, nvs_offset, DEFAULT_NVS_SIZE),
            Partition("phy_init", TYPE_DATA, SUBTYPES[TYPE_DATA]["phy"], phy_offset, DEFAULT_PHY_SIZE),
            Partition("factory", TYPE_APP, SUBTYPE_FACTORY, app_offset, app_size),
        ),
        table_offset,
        source=f"default table for {human_size(flash_size)} flash",
    )
    table.validate(flash_size=flash_size)
    return table


def check_app_fits(
    table: PartitionTable,
    app_size: int,
    app_partition_name: str | None = None,
    *,
    default_table: bool = True,
    mmu_page_size: int = 0,
) -> Partition:
    """Raise, before anything is written, when the app is larger than its partition or its partition
    does not start on the app's MMU page; return the partition.

    ``default_table`` says the table is the one sized to the flash, so a larger --flash-size would help.
    """
    target = boot_app_partition(table, app_partition_name)
    if mmu_page_size and target.offset % mmu_page_size:
        # verify_segment_header: a flash segment's flash and load addresses agree modulo the MMU page,
        # which the image itself keeps only relative to its partition's start.
        raise LayoutError(
            f"the app maps {mmu_page_size // 1024} KiB MMU pages but partition '{target.name}' starts at "
            f"0x{target.offset:x}, not a multiple of 0x{mmu_page_size:x}: the bootloader would refuse its flash "
            f"segments (verify_segment_header); move the partition to a 0x{mmu_page_size:x} boundary or build "
            "the app for 64 KiB pages",
            path=table.source,
        )
    if app_size <= target.size:
        return target
    hints = []
    flash = next(
        (n for n in FLASH_SIZES if _default_app_size(flash_size_bytes(n), table.table_offset) >= app_size), None
    )
    if not default_table:
        hints.append(f"a table whose '{target.name}' partition holds at least 0x{align_up(app_size, OFFSET_ALIGN[TYPE_APP]):x} bytes")
    elif flash is not None:
        hints.append(f"--flash-size {flash} (to size the default table to the flash)")
    presets = [n for n in preset_names() if _preset_app_size(n, table.table_offset) >= app_size]
    hints.append(
        f"--partition-table {' / '.join(presets)}" if presets else "a --partition-table CSV with a larger app partition"
    )
    raise LayoutError(
        f"app is {human_size(app_size)} ({app_size} bytes) but partition '{target.name}' holds "
        f"{human_size(target.size)} ({target.size} bytes); pass {' or '.join(hints)}",
        path=table.source,
    )


def _default_app_size(flash_size: int, table_offset: int) -> int:
    try:
        return boot_app_partition(default_table(flash_size, table_offset)).size
    except LayoutError:
        return 0


def _preset_app_size(name: str, table_offset: int) -> int:
    return boot_app_partition(load_preset(name, table_offset=table_offset)).size
