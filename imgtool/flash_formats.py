"""The pack's parts as UF2 and Intel HEX files, equal to ``esptool merge-bin --format uf2|hex @flash_args``.

Both are built from exactly what ``flash_args`` lists (for an encrypted pack, the
encrypted parts), each at its offset, after the one change esptool itself makes
when it reads ``flash_args``: unless the settings are ``keep``, it writes
``-fm/-ff/-fs`` into the header of an image found at the bootloader offset and
recomputes its appended SHA-256. imgtool's placed bootloaders already carry those
settings, so this only changes a signed bootloader kept as it was (whose header
keeps its own settings): the formats then hold what esptool would flash.
"""

from __future__ import annotations

import hashlib

from imgtool.chips import FLASH_MODES, FLASH_SIZES, Chip
from imgtool.errors import ImageError
from imgtool.flash_layout import FlashLayout, FlashSettings
from imgtool.ihex import intel_hex
from imgtool.image_format import MAX_SEGMENTS, SHA256_LEN, parse_image
from imgtool.uf2 import uf2_file

UF2 = "uf2"
HEX = "hex"
FORMATS = (UF2, HEX)
#: Byte offsets in the image header: flash mode, then size (high nibble) and frequency (low nibble).
HEADER_FLASH_MODE = 2
HEADER_FLASH_SIZE_FREQ = 3


def format_file_name(name: str, fmt: str) -> str:
    return f"{name}.{fmt}"


def esptool_parts(layout: FlashLayout) -> list[tuple[int, bytes]]:
    """``(offset, data)`` for every ``flash_args`` part, as esptool takes them from that file."""
    keep = layout.encrypted  # flash_args says ``keep`` for encrypted packs
    return [
        (p.offset, p.data if keep or p.offset != layout.start else with_flash_settings(p.data, layout.chip, layout.settings))
        for p in layout.parts
    ]


def with_flash_settings(data: bytes, chip: Chip, settings: FlashSettings) -> bytes:
    """``data`` with esptool's bootloader-offset header rewrite applied; unchanged when it is no image."""
    try:
        parsed = parse_image(data, what="bootloader")
    except ImageError:
        return data
    if len(parsed.segments) > MAX_SEGMENTS:
        return data
    size_freq = (FLASH_SIZES[settings.size] << 4) | chip.flash_freq_code(settings.freq)
    out = bytearray(data)
    out[HEADER_FLASH_MODE] = FLASH_MODES[settings.mode]
    out[HEADER_FLASH_SIZE_FREQ] = size_freq
    if parsed.image.hash_appended:
        body = parsed.length - SHA256_LEN
        out[body : parsed.length] = hashlib.sha256(out[:body]).digest()
    return bytes(out)


def format_files(layout: FlashLayout, formats=()) -> dict[str, bytes]:
    """``NAME.uf2`` and/or ``NAME.hex`` for ``layout``, in :data:`FORMATS` order."""
    parts = esptool_parts(layout) if formats else []
    builders = {UF2: lambda: uf2_file(parts, layout.chip.uf2_family_id), HEX: lambda: intel_hex(parts)}
    return {format_file_name(layout.name, fmt): builders[fmt]() for fmt in FORMATS if fmt in formats}


__all__ = ["FORMATS", "HEX", "UF2", "esptool_parts", "format_file_name", "format_files", "with_flash_settings"]
