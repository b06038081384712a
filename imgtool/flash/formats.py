"""The pack's parts as UF2 and Intel HEX files, equal to ``esptool merge-bin --format uf2|hex @flash_args``.

Both are built from exactly what ``flash_args`` lists (for an encrypted pack, the
encrypted parts), each at its offset. esptool would write ``-fm/-ff/-fs`` into the
header of the image at the bootloader offset, but that never changes a byte here:
a bootloader pack placed carries those settings already, and for encrypted parts or a
signed bootloader kept as it came, ``flash_args`` says ``keep``.
"""

from __future__ import annotations

from imgtool.flash.layout import FlashLayout
from imgtool.output_names import format_file_name

UF2 = "uf2"
HEX = "hex"
FORMATS = (UF2, HEX)


def esptool_parts(layout: FlashLayout) -> list[tuple[int, bytes]]:
    """``(offset, data)`` for every ``flash_args`` part, as esptool takes them from that file."""
    return [(p.offset, p.data) for p in layout.parts]


def format_files(layout: FlashLayout, formats=()) -> dict[str, bytes]:
    """``NAME.uf2`` and/or ``NAME.hex`` for ``layout``, in :data:`FORMATS` order (their modules load only when asked for)."""
    if not formats:
        return {}
    # not at the top: a pack without --uf2/--hex skips them (0.3 ms together, -X importtime)
    from imgtool.flash.ihex import intel_hex
    from imgtool.flash.uf2 import uf2_file

    parts = esptool_parts(layout)
    builders = {UF2: lambda: uf2_file(parts, layout.chip.uf2_family_id), HEX: lambda: intel_hex(parts)}
    return {format_file_name(layout.name, fmt): builders[fmt]() for fmt in FORMATS if fmt in formats}


__all__ = ["FORMATS", "HEX", "UF2", "esptool_parts", "format_files"]
