"""UF2 files (drag-and-drop flashing, e.g. through ESP USB Bridge or TinyUF2), as ``esptool merge-bin --format uf2`` writes them.

A UF2 file is a run of 512-byte blocks, each carrying a piece of flash data and
the address it goes to (Microsoft's UF2 format). esptool's flavour, which this
matches byte for byte:

- every part is cut into pieces of :data:`PAYLOAD_SIZE` (452) bytes, numbered from 0
  *per part* (``block_no``/``num_blocks`` count the part's blocks, not the file's);
- every block carries the chip's family id and the MD5 checksum extension
  (address, length, MD5 of the piece), placed right after the piece, then zeros;
- flags: family id present and MD5 present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from construct import Bytes, Const, If, Int32ul, Padding, Struct, this

BLOCK_SIZE = 512
MAGIC_START0 = 0x0A324655  # "UF2\n"
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY_ID_PRESENT = 0x00002000
FLAG_MD5_PRESENT = 0x00004000
#: Bytes between the 32-byte header and the final magic.
DATA_AREA_SIZE = 476

Md5Extension = Struct(
    "address" / Int32ul,
    "length" / Int32ul,
    "md5" / Bytes(16),
)
MD5_EXTENSION_SIZE = Md5Extension.sizeof()
#: Flash bytes per block: the data area less the MD5 extension (esptool's default chunk size).
PAYLOAD_SIZE = DATA_AREA_SIZE - MD5_EXTENSION_SIZE

Uf2Block = Struct(
    "magic_start0" / Const(MAGIC_START0, Int32ul),
    "magic_start1" / Const(MAGIC_START1, Int32ul),
    "flags" / Int32ul,
    "target_addr" / Int32ul,
    "payload_size" / Int32ul,
    "block_no" / Int32ul,
    "num_blocks" / Int32ul,
    "family_id" / Int32ul,
    "data" / Bytes(this.payload_size),
    "md5" / If(this.flags & FLAG_MD5_PRESENT, Md5Extension),
    Padding(lambda ctx: DATA_AREA_SIZE - ctx.payload_size - (MD5_EXTENSION_SIZE if ctx.flags & FLAG_MD5_PRESENT else 0)),
    "magic_end" / Const(MAGIC_END, Int32ul),
)


def uf2_blocks(offset: int, data: bytes, family_id: int) -> Iterable[bytes]:
    """The blocks writing ``data`` at flash ``offset``, numbered for this part alone."""
    count = -(-len(data) // PAYLOAD_SIZE)
    for number in range(count):
        start = number * PAYLOAD_SIZE
        piece = bytes(data[start : start + PAYLOAD_SIZE])
        address = offset + start
        yield Uf2Block.build(
            dict(
                flags=FLAG_FAMILY_ID_PRESENT | FLAG_MD5_PRESENT,
                target_addr=address,
                payload_size=len(piece),
                block_no=number,
                num_blocks=count,
                family_id=family_id,
                data=piece,
                md5=dict(address=address, length=len(piece), md5=hashlib.md5(piece).digest()),
            )
        )


def uf2_file(parts: Iterable[tuple[int, bytes]], family_id: int) -> bytes:
    """A UF2 file writing each ``(offset, data)`` part, in flash-address order."""
    return b"".join(block for offset, data in sorted(parts, key=lambda p: p[0]) for block in uf2_blocks(offset, data, family_id))


def parse_uf2(data: bytes) -> list:
    """Every block of a UF2 file (construct containers), for checks and ``info``-style reading."""
    return [Uf2Block.parse(data[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE)]


__all__ = ["BLOCK_SIZE", "PAYLOAD_SIZE", "Uf2Block", "parse_uf2", "uf2_blocks", "uf2_file"]
