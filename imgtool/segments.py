"""Arrange loadable pieces into image segments the way the 2nd-stage bootloader needs them.

Rules (ESP-IDF's bootloader maps flash in MMU pages and copies RAM segments):
- Flash-mapped pieces that share an MMU page must be one segment, since the
  page is mapped once; gaps between them are filled with zeros. This is what
  lets esp-hal ELFs through where esptool reports "lands in same 64 KB flash
  mapping".
- Each flash segment's data sits at a file offset congruent to its address
  modulo the page size; padding segments (load address 0, which the
  bootloader skips) or whole RAM segments fill the space in between.
- RAM pieces are copied as they are; only pieces that touch once padded to
  4 bytes are joined.
- The flash segment holding the app descriptor comes first, because the
  bootloader reads the descriptor from the first segment.
"""

from __future__ import annotations

from typing import NamedTuple

from imgtool.chips import Chip, Region
from imgtool.errors import LayoutError
from imgtool.image_format import (
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    MAX_SEGMENTS,
    SEGMENT_ALIGN,
    SEGMENT_HEADER_LEN,
    Segment,
    align,
)

#: Load address of padding segments; ESP-IDF's bootloader skips addresses below 0x10000.
PADDING_ADDR = 0


class Piece(NamedTuple):
    """Bytes for an address, with the name of the ELF section(s) they came from."""

    name: str
    addr: int
    data: bytes
    region: Region

    @property
    def end(self) -> int:
        return self.addr + len(self.data)


def classify(chip: Chip, name: str, addr: int, data: bytes, path=None) -> Piece:
    """Tag a piece with the memory it loads into, or refuse one that fits no memory of the chip."""
    rng = chip.region_of(addr, len(data))
    if rng is None:
        raise LayoutError(
            f"section {name} at 0x{addr:08x}..0x{addr + len(data):08x} is outside every memory region of "
            f"{chip.name}; is this ELF built for {chip.name}?",
            path=path,
            field=name,
        )
    return Piece(name, addr, data, rng.region)


def _join(pieces: list[Piece], same_segment, path) -> list[Piece]:
    """Join address-sorted pieces for which ``same_segment(prev, next)`` holds; zero-fill the gaps."""
    out: list[Piece] = []
    for piece in sorted(pieces, key=lambda p: p.addr):
        if out and piece.addr < out[-1].end:
            prev = out[-1]
            raise LayoutError(
                f"sections {prev.name} (0x{prev.addr:08x}..0x{prev.end:08x}) and {piece.name} "
                f"(0x{piece.addr:08x}..0x{piece.end:08x}) overlap; fix the linker script",
                path=path,
                field=piece.name,
            )
        if out and same_segment(out[-1], piece):
            prev = out[-1]
            gap = piece.addr - prev.end
            out[-1] = Piece(f"{prev.name}+{piece.name}", prev.addr, prev.data + b"\x00" * gap + piece.data, prev.region)
        else:
            out.append(piece)
    return out


def join_flash(pieces: list[Piece], page_size: int, path=None) -> list[Piece]:
    return _join(pieces, lambda a, b: b.addr // page_size <= (a.end - 1) // page_size, path)


def join_ram(pieces: list[Piece], path=None) -> list[Piece]:
    return _join(pieces, lambda a, b: b.addr <= align(a.end, SEGMENT_ALIGN), path)


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (align(len(data), SEGMENT_ALIGN) - len(data))


def layout(pieces: list[Piece], page_size: int, *, first_addr: int | None = None, path=None) -> list[Segment]:
    """The image's segments, in file order, padding included.

    ``first_addr``: an address inside the flash piece that must come first (the app descriptor).
    """
    flash = join_flash([p for p in pieces if p.region.flash_mapped], page_size, path)
    ram = join_ram([p for p in pieces if not p.region.flash_mapped], path)
    if first_addr is not None:
        flash.sort(key=lambda p: not (p.addr <= first_addr < p.end))
    ram_left = [Segment(p.addr, _padded(p.data)) for p in ram]
    out: list[Segment] = []
    pos = HEADER_LEN + EXTENDED_HEADER_LEN
    for piece in flash:
        gap = (piece.addr - (pos + SEGMENT_HEADER_LEN)) % page_size
        if gap:
            # Fill with whole RAM segments while what is left can still hold a padding segment.
            for seg in list(ram_left):
                used = SEGMENT_HEADER_LEN + len(seg.data)
                if used == gap or used + SEGMENT_HEADER_LEN <= gap:
                    out.append(seg)
                    ram_left.remove(seg)
                    gap -= used
                    pos += used
                    if not gap:
                        break
        if gap:
            if gap < SEGMENT_HEADER_LEN:
                gap += page_size
            out.append(Segment(PADDING_ADDR, b"\x00" * (gap - SEGMENT_HEADER_LEN)))
            pos += gap
        seg = Segment(piece.addr, _padded(piece.data))
        out.append(seg)
        pos += SEGMENT_HEADER_LEN + len(seg.data)
    out.extend(ram_left)
    if len(out) > MAX_SEGMENTS:
        raise LayoutError(
            f"the image needs {len(out)} segments but the bootloader accepts at most {MAX_SEGMENTS}; "
            "merge output sections in the linker script",
            path=path,
        )
    return out


def flash_data_offsets(segments: list[Segment]) -> list[int]:
    """File offset of each segment's data, in the order given (for congruence checks)."""
    offsets, pos = [], HEADER_LEN + EXTENDED_HEADER_LEN
    for seg in segments:
        offsets.append(pos + SEGMENT_HEADER_LEN)
        pos += SEGMENT_HEADER_LEN + len(seg.data)
    return offsets
