"""Arrange loadable pieces into image segments the way the 2nd-stage bootloader needs them.

The rules come from ``boot_rules`` (ESP-IDF's ``unpack_load_app`` and ``verify_segment_header``):
- Chips with separate buses (esp32, -s2, -s3, -c2, -c3) map only the last DROM and the last IROM
  segment, so every DROM piece becomes one segment and every IROM piece another, zero-filled
  across gaps and pages.
- Chips with one shared flash bus (esp32c5, -c6, -c61, -h2, -p4, -s31, -h4, -h21) need exactly two flash segments.
  The flash pieces are split at the widest gap (esp-hal leaves ``.text_gap`` between rodata and
  text for this); when both halves share an MMU page, the second segment's data sits in the same
  flash page at the same distance, so either mapping of that page shows the right bytes. An ELF
  with no gap gets a 4-byte second segment just past its data.
- Each flash segment's data sits at a file offset congruent to its address modulo the page size;
  whole RAM segments or padding segments (load address 0, which the bootloader skips) fill the
  space in between. The segment holding the app descriptor comes first, where the bootloader
  reads it.
- On esp32c2, -c3 and -s3 a DROM page and the IROM page with the same index are one MMU entry
  (``mmu_ll_get_entry_id``), and the code mapping, made last in ``set_cache_and_start_app``, wins.
  When the two segments need a common entry, the code segment's data sits in the same flash page
  as the rodata's, at the same distance, so both buses read the right bytes; where their in-page
  ranges leave no room for that (with a segment header between them) the ELF is refused.
- On ESP32 a flash segment ends at least 0x24 bytes into its last page (ESP-IDF <= v3.1).
- RAM pieces are copied as they are; only pieces that touch once padded to 4 bytes are joined.
- An app without a descriptor can start with a zeroed padding segment (``zeroed_first``): the loader
  reads eFuse-block revision limits at +0xB0 of segment 0 whatever is there
  (``process_segment_data``), and zeros mean "not set".
"""

from __future__ import annotations

from imgtool.chips.table import Chip, Region
from imgtool.chips.units import align_up
from imgtool.errors import LayoutError
from imgtool.image.format import (
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    MAX_SEGMENTS,
    SEGMENT_ALIGN,
    SEGMENT_HEADER_LEN,
    Segment,
)

#: Load address of padding segments; ESP-IDF's bootloader skips addresses below 0x10000.
PADDING_ADDR = 0


class Piece:
    """Bytes for an address, with the name of the ELF section(s) they came from.

    A plain class: every pack defines it, where a NamedTuple costs ~0.2 ms.
    """

    __slots__ = ("name", "addr", "data", "region")

    def __init__(self, name: str, addr: int, data: bytes, region: Region):
        self.name = name
        self.addr = addr
        self.data = data
        self.region = region

    @property
    def end(self) -> int:
        return self.addr + len(self.data)


def classify(chip: Chip, name: str, addr: int, data: bytes, path=None, *, rom_loaded: bool = False) -> Piece:
    """Tag a piece with the memory it loads into, or refuse one that fits no memory of the chip.

    ``rom_loaded``: the image is one the ROM loads (no flash mapping), which may also use the RAM
    only the ROM loads (``Chip.rom_only_ram``).
    """
    rng = chip.region_of(addr, len(data), rom_loaded=rom_loaded)
    if rng is None and chip.region_of(addr, len(data), rom_loaded=True) is not None:
        raise LayoutError(
            f"section {name} at 0x{addr:08x}..0x{addr + len(data):08x} is in {chip.name} RAM that only the ROM "
            "loads (the second-stage bootloader refuses apps there, verify_load_addresses); link it elsewhere, "
            "or keep every section in RAM to build an image the ROM loads",
            path=path,
            field=name,
        )
    if rng is None:
        raise LayoutError(
            f"section {name} at 0x{addr:08x}..0x{addr + len(data):08x} is outside every memory region of "
            f"{chip.name}; is this ELF built for {chip.name}?",
            path=path,
            field=name,
        )
    return Piece(name, addr, data, rng.region)


def _join(pieces: list[Piece], same_segment, path) -> list[Piece]:
    """Join address-sorted pieces for which ``same_segment(end so far, next)`` holds; zero-fill the gaps.

    The pieces of a segment are gathered first and joined once, so each byte is copied once, not once
    per piece that follows it.
    """
    groups: list[list[Piece]] = []
    for piece in sorted(pieces, key=lambda p: p.addr):
        end = groups[-1][-1].end if groups else None
        if groups and piece.addr < end:
            prev = groups[-1]
            raise LayoutError(
                f"sections {'+'.join(p.name for p in prev)} (0x{prev[0].addr:08x}..0x{end:08x}) and {piece.name} "
                f"(0x{piece.addr:08x}..0x{piece.end:08x}) overlap; fix the linker script",
                path=path,
                field=piece.name,
            )
        if groups and same_segment(end, piece):
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return [_joined(group) for group in groups]


def _joined(group: list[Piece]) -> Piece:
    """The address-sorted, non-overlapping ``group`` as one piece, zeros in its gaps."""
    if len(group) == 1:
        return group[0]
    parts, end = [], group[0].addr
    for piece in group:
        parts += (b"\x00" * (piece.addr - end), piece.data)
        end = piece.end
    return Piece("+".join(p.name for p in group), group[0].addr, b"".join(parts), group[0].region)


def join_ram(pieces: list[Piece], path=None) -> list[Piece]:
    return _join(pieces, lambda end, b: b.addr <= align_up(end, SEGMENT_ALIGN), path)


def _join_all(pieces: list[Piece], path) -> Piece:
    return _join(pieces, lambda end, b: True, path)[0]


def _aligned(piece: Piece) -> Piece:
    """Start a flash piece on a word boundary (zero prefix), so 4-byte segment lengths keep it congruent."""
    lead = piece.addr % SEGMENT_ALIGN
    return piece if not lead else Piece(piece.name, piece.addr - lead, b"\x00" * lead + piece.data, piece.region)


def _separate_bus_segments(chip: Chip, pieces: list[Piece], path) -> list[Piece]:
    """One DROM and one IROM segment: ``unpack_load_app`` maps only the last of each."""
    buses = [[p for p in pieces if span.contains(p.addr)] for span in (chip.boot.drom, chip.boot.irom)]
    return [_join_all(bus, path) for bus in buses if bus]


def _shared_bus_segments(chip: Chip, pieces: list[Piece], page: int, first_addr: int | None, path) -> list[Piece]:
    """Exactly two flash segments, the one with the app descriptor first (``unpack_load_app``)."""
    pieces = _join(pieces, lambda end, b: b.addr < align_up(end, SEGMENT_ALIGN) + SEGMENT_HEADER_LEN, path)
    desc = next((i for i, p in enumerate(pieces) if first_addr is not None and p.addr <= first_addr < p.end), 0)

    def same_page(k: int) -> bool:
        return (pieces[k - 1].end - 1) // page == pieces[k].addr // page

    if desc > 0:
        if same_page(desc):
            raise LayoutError(
                f"the app descriptor at 0x{first_addr:08x} follows other flash data in the same MMU page; the "
                f"{chip.name} bootloader needs it at the start of the first flash segment (put .rodata_desc first)",
                path=path,
                field=pieces[desc].name,
            )
        return [_join_all(pieces[desc:], path), _join_all(pieces[:desc], path)]
    if len(pieces) == 1:
        head = pieces[0]
        stub_addr = align_up(head.end, SEGMENT_ALIGN) + SEGMENT_HEADER_LEN
        if not chip.boot.irom.contains(stub_addr, SEGMENT_ALIGN):
            raise LayoutError(
                f"all flash data is one block ending at 0x{head.end:08x}, and the {chip.name} bootloader needs two "
                "flash segments; leave a gap of at least 8 bytes between rodata and text (esp-hal's .text_gap)",
                path=path,
            )
        return [head, Piece("(second flash mapping)", stub_addr, b"\x00" * SEGMENT_ALIGN, head.region)]
    split = max(range(1, len(pieces)), key=lambda k: pieces[k].addr - pieces[k - 1].end)
    return [_join_all(pieces[:split], path), _join_all(pieces[split:], path)]


def flash_segments(chip: Chip, pieces: list[Piece], page: int, *, first_addr: int | None = None, path=None) -> list[Piece]:
    """The flash-mapped segments the bootloader maps, in file order."""
    pieces = [_aligned(p) for p in sorted(pieces, key=lambda p: p.addr)]
    if not pieces:
        return []
    if chip.unified_flash_map:
        return _shared_bus_segments(chip, pieces, page, first_addr, path)
    flash = _separate_bus_segments(chip, pieces, path)
    if first_addr is not None:
        flash.sort(key=lambda p: not (p.addr <= first_addr < p.end))
    if shared_entries(chip, flash, page):
        if first_addr is None:
            flash.sort(key=lambda p: _linear_span(chip, p, page)[0])
        _check_one_page_fits_both(chip, pieces, flash, page, first_addr, path)
    return flash


def _linear_span(chip: Chip, piece: Piece, page: int) -> tuple[int, int]:
    """Where a flash piece sits in the MMU's linear space (``BootFacts.linear``), as ``[start, end)``."""
    start = chip.boot.linear(piece.addr, page)
    return (start[1], start[1] + align_up(len(piece.data), SEGMENT_ALIGN)) if start else (piece.addr, piece.end)


def shared_entries(chip: Chip, flash: list[Piece], page: int) -> set[int]:
    """MMU entries both flash segments need: DROM and IROM pages that ``mmu_ll_get_entry_id`` gives one entry."""
    if len(flash) != 2:
        return set()
    a, b = (_linear_span(chip, p, page) for p in flash)
    return set(range(a[0] // page, (a[1] - 1) // page + 1)) & set(range(b[0] // page, (b[1] - 1) // page + 1))


def _check_one_page_fits_both(chip: Chip, pieces: list[Piece], flash: list[Piece], page: int, first_addr, path) -> None:
    """Both segments are placed at one distance from their linear addresses (:func:`layout`), so a shared
    entry maps a flash page holding both; that needs the second one in file order to start past the first's
    end plus a segment header. Otherwise no layout maps both buses right (``set_cache_and_start_app`` in
    bootloader_utility.c maps the code last, through the entries ``mmu_ll_get_entry_id`` in
    hal/CHIP/include/hal/mmu_ll.h gives): refuse, naming the closest rodata and code sections."""
    first, second = (_linear_span(chip, p, page) for p in flash)
    if second[0] >= first[1] + SEGMENT_HEADER_LEN:
        return
    entry = min(shared_entries(chip, flash, page))
    drom = [p for p in pieces if chip.boot.drom.contains(p.addr)]
    irom = [p for p in pieces if chip.boot.irom.contains(p.addr)]

    def distance(pair) -> int:
        (d0, d1), (i0, i1) = (_linear_span(chip, p, page) for p in pair)
        return max(d0 - i1, i0 - d1, 0) + abs(d0 // page - entry) + abs(i0 // page - entry)

    ro, code = min(((d, i) for d in drom for i in irom), key=distance)
    why = (
        "the app descriptor must come first but its rodata lies after the code there"
        if first_addr is not None and first[0] > second[0]
        else "their in-page ranges leave no room for both segments (and a segment header) in one flash page"
    )
    drom_page, irom_page = (chip.boot.mmu_window(p.addr).page_of(entry, page) for p in (ro, code))
    raise LayoutError(
        f"rodata and code both need {chip.name}'s MMU entry {entry} (DROM page 0x{drom_page:08x} "
        f"and IROM page 0x{irom_page:08x}, closest sections {ro.name} at 0x{ro.addr:08x}..0x{ro.end:08x} "
        f"and {code.name} at 0x{code.addr:08x}..0x{code.end:08x}), and {why}: the code mapping, made last, would replace "
        f"the rodata one (set_cache_and_start_app, mmu_ll_get_entry_id); link rodata and code into different "
        f"{page // 1024} KB page indexes (esp-hal's .rotext_dummy / .text_dummy)",
        path=path,
        field=ro.name,
    )


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (align_up(len(data), SEGMENT_ALIGN) - len(data))


def _with_tail(chip: Chip, data: bytes, addr: int, page: int) -> bytes:
    """A flash segment's data padded to 4 bytes (:func:`_padded`), then on to ``chip.flash_tail_min`` bytes
    into its last page when it would end fewer into it: one copy for both."""
    length = align_up(len(data), SEGMENT_ALIGN)
    into_page = (addr + length) % page
    tail = chip.flash_tail_min - into_page if into_page < chip.flash_tail_min else 0
    return data + b"\x00" * (length - len(data) + tail)


def layout(
    chip: Chip, pieces: list[Piece], page_size: int, *, first_addr: int | None = None, zeroed_first: int = 0, path=None
) -> list[Segment]:
    """The image's segments, in file order, padding included.

    ``first_addr``: an address inside the flash piece that must come first (the app descriptor).
    ``zeroed_first``: when not 0, segment 0 is a padding segment of this many zero bytes.
    """
    flash = flash_segments(
        chip, [p for p in pieces if p.region.flash_mapped], page_size, first_addr=first_addr, path=path
    )
    ram = join_ram([p for p in pieces if not p.region.flash_mapped], path)
    ram_left = [Segment(p.addr, _padded(p.data)) for p in ram]
    out: list[Segment] = [Segment(PADDING_ADDR, b"\x00" * zeroed_first)] if zeroed_first else []
    pos = HEADER_LEN + EXTENDED_HEADER_LEN + (SEGMENT_HEADER_LEN + zeroed_first if zeroed_first else 0)
    # Where the first flash segment's data lands, when the second must keep its distance (a shared MMU entry).
    anchor: tuple[int, int] | None = None
    for piece in flash:
        gap = (piece.addr - (pos + SEGMENT_HEADER_LEN)) % page_size
        if anchor is not None:
            gap = anchor[0] + _linear_span(chip, piece, page_size)[0] - anchor[1] - (pos + SEGMENT_HEADER_LEN)
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
        if gap and gap < SEGMENT_HEADER_LEN and out and chip.is_flash_mapped(out[-1].addr):
            # Too little room for a padding segment: lengthen the flash segment before instead, which
            # keeps this one in the same flash page (a shared MMU page must map one flash page).
            out[-1] = Segment(out[-1].addr, out[-1].data + b"\x00" * gap)
            pos += gap
            gap = 0
        if gap:
            if gap < SEGMENT_HEADER_LEN:
                gap += page_size
            out.append(Segment(PADDING_ADDR, b"\x00" * (gap - SEGMENT_HEADER_LEN)))
            pos += gap
        seg = Segment(piece.addr, _with_tail(chip, piece.data, piece.addr, page_size))
        if anchor is None and not chip.unified_flash_map and shared_entries(chip, flash, page_size):
            anchor = (pos + SEGMENT_HEADER_LEN, _linear_span(chip, piece, page_size)[0])
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
