"""Options several commands share, declared once so they read and validate the same everywhere."""

from __future__ import annotations

import click

from imgtool.chips import CHIPS, FLASH_MODES, FLASH_SIZES


def _flash_size(ctx, param, value):
    """esptool's spelling ("4MB"), whatever case or "4M"/"4MiB" form the user typed."""
    if value is None:
        return None
    from imgtool.chips import normalize_flash_size

    return normalize_flash_size(value)


def chip_option(help: str = "Target chip (detected when omitted)."):
    return click.option("--chip", type=click.Choice(sorted(CHIPS), case_sensitive=False), help=help)


def flash_mode_option(help: str = "SPI flash mode [default: dio]."):
    return click.option("--flash-mode", type=click.Choice(sorted(FLASH_MODES), case_sensitive=False), help=help)


flash_size_option = click.option(
    "--flash-size", callback=_flash_size, metavar=f"[{'|'.join(FLASH_SIZES)}]", help="Flash size [default: 2MB]."
)
flash_freq_option = click.option(
    "--flash-freq", help="Flash frequency, e.g. 40m or 80m [default: the chip's ESP-IDF default]."
)
