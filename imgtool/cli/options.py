"""Options several commands share, declared once so they read and validate the same everywhere."""

from __future__ import annotations

import click

from imgtool.chips.table import (
    CHIPS,
    DEFAULT_FLASH_MODE,
    DEFAULT_FLASH_SIZE,
    FLASH_MODES,
    FLASH_SIZES,
    normalize_flash_size,
    parse_revision,
)
from imgtool.errors import PartitionError, UsageError
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, parse_int

#: The partition table's default offset as the options spell it in their defaults and help.
TABLE_OFFSET_TEXT = f"0x{DEFAULT_TABLE_OFFSET:x}"


def parse_flash_size(ctx, param, value):
    """esptool's spelling ("4MB"), whatever case or "4M"/"4MiB" form the user typed."""
    if value is None:
        return None
    return normalize_flash_size(value)


def parse_offset(ctx, param, value):
    """A flash offset in gen_esp32part's number syntax (``0x8000``, ``32768``, ``32K``), never negative."""
    if value is None:
        return None
    option = max(param.opts, key=len)
    try:
        number = parse_int(str(value), what="offset")
    except PartitionError:
        raise UsageError(f"'{value}' is not an offset; use a number such as 0x8000", field=option) from None
    if number < 0:
        raise UsageError(f"the offset {value} is negative; use a number such as 0x8000", field=option)
    return number


def chip_option(help: str = "Target chip (detected when omitted)."):
    return click.option("--chip", type=click.Choice(sorted(CHIPS), case_sensitive=False), help=help)


def flash_mode_option(help: str = f"SPI flash mode [default: {DEFAULT_FLASH_MODE}]."):
    return click.option("--flash-mode", type=click.Choice(sorted(FLASH_MODES), case_sensitive=False), help=help)


flash_size_option = click.option(
    "--flash-size", callback=parse_flash_size, metavar=f"[{'|'.join(FLASH_SIZES)}]", help=f"Flash size [default: {DEFAULT_FLASH_SIZE}]."
)
def parse_flash_freq(ctx, param, value):
    """esptool's ``80m`` or espflash's ``80MHz``/``80M``, as espflash.toml accepts them, spelled ``80m``."""
    if value is None:
        return None
    from imgtool.pack.project_config import normalize_freq  # 4 ms of start-up that only --flash-freq pays

    return normalize_freq(value)


flash_freq_option = click.option(
    "--flash-freq", callback=parse_flash_freq, help="Flash frequency, e.g. 40m or 80MHz [default: the chip's ESP-IDF default]."
)


def _revision(ctx, param, value):
    """``v3.1``, ``3.1`` or esptool's major*100+minor (``301``) as major*100+minor."""
    if value is None:
        return None
    return parse_revision(value, f"--{param.name.replace('_', '-')}")


def revision_options(func):
    """--min-rev/--max-rev: the chip revisions the app image allows (its extended header)."""
    func = click.option(
        "--max-rev", callback=_revision, help="Highest chip revision the app runs on, e.g. v1.99 [default: any]."
    )(func)
    return click.option(
        "--min-rev",
        callback=_revision,
        help="Lowest chip revision the app runs on, e.g. v0.3 or 3 (major*100+minor) "
        "[default: esp-hal's build_info.MIN_CHIP_REVISION in the ELF, else 0].",
    )(func)
