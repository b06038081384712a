"""Segment layout on a separate-bus chip (esp32c3): every DROM piece becomes one segment and every
IROM piece another, flash data stays MMU-congruent, RAM pieces stay intact, and the app
descriptor's segment comes first. Shared-bus chips and all ten chips: test_boot_layout.py."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from imgtool.chips.table import CHIPS, Region
from imgtool.errors import LayoutError
from imgtool.image.boot_rules import image_cpu_view
from imgtool.image.format import MAX_SEGMENTS, SEGMENT_ALIGN, EspImage, parse_image
from imgtool.image.memory import LoadedMemory
from imgtool.image.segments import PADDING_ADDR, classify, flash_data_offsets, layout

PAGE = 0x10000
C3 = CHIPS["esp32c3"]


def piece(name, addr, size, fill=None):
    data = bytes([fill if fill is not None else (addr + i) & 0xFF for i in range(size)])
    return classify(C3, name, addr, data)


def assert_congruent(segments, page=PAGE):
    for seg, off in zip(segments, flash_data_offsets(segments)):
        if seg.addr != PADDING_ADDR and C3.is_flash_mapped(seg.addr):
            assert off % page == seg.addr % page, seg


def test_pieces_sharing_a_page_become_one_segment_with_zero_fill():
    desc, rodata = piece(".rodata_desc", 0x3C000020, 0x100), piece(".rodata", 0x3C000130, 0x40)
    segs = layout(C3, [rodata, desc], PAGE, first_addr=desc.addr)
    assert segs[0].addr == desc.addr
    assert segs[0].data[0x100:0x110] == b"\x00" * 0x10
    assert LoadedMemory(segs).read(rodata.addr, 0x40) == rodata.data


def test_rodata_in_two_pages_is_one_drom_segment():
    desc, far = piece(".rodata_desc", 0x3C000020, 0x100), piece(".rodata2", 0x3C020000, 0x40)
    segs = layout(C3, [far, desc], PAGE, first_addr=desc.addr)
    flash = [s for s in segs if C3.is_flash_mapped(s.addr)]
    assert len(flash) == 1 and LoadedMemory(segs).read(far.addr, 0x40) == far.data
    assert_congruent(segs)


def test_pieces_in_different_pages_stay_apart_and_congruent():
    desc = piece(".rodata_desc", 0x3C000020, 0x100)
    text = piece(".text", 0x42010020, 0x300)
    iram = piece(".rwtext", 0x40380000, 0x200)
    dram = piece(".data", 0x3FC80000, 0x44)
    segs = layout(C3, [text, iram, desc, dram], PAGE, first_addr=desc.addr)
    assert segs[0].addr == desc.addr
    assert_congruent(segs)
    memory = LoadedMemory(segs)
    for p in (desc, text, iram, dram):
        assert memory.read(p.addr, len(p.data)) == p.data


def test_section_straddling_a_page_boundary_is_one_segment():
    big = piece(".rodata", 0x3C00FF00, 0x300)
    segs = layout(C3, [big], PAGE)
    assert [s.addr for s in segs if s.addr] == [big.addr]
    assert_congruent(segs)


def test_overlapping_sections_are_refused():
    with pytest.raises(LayoutError, match="overlap"):
        layout(C3, [piece("a", 0x3FC80000, 0x20), piece("b", 0x3FC80010, 0x20)], PAGE)



def test_many_pieces_of_a_bus_are_one_segment_holding_each_at_its_address():
    parts = [piece(f".rodata{i}", 0x3C000020 + i * 0x1000, 0x30 + i) for i in range(6)]
    segs = layout(C3, parts[::-1], PAGE, first_addr=parts[0].addr)
    assert segs[0].addr == parts[0].addr and len(segs[0].data) == 5 * 0x1000 + 0x30 + 8
    memory = LoadedMemory(segs)
    assert all(memory.read(p.addr, len(p.data)) == p.data for p in parts)
    assert memory.read(parts[0].end, 0x1000 - 0x30) == b"\x00" * (0x1000 - 0x30)


def test_a_section_overlapping_joined_ones_names_them_and_their_span():
    joined = [piece("a", 0x3C000020, 0x20), piece("b", 0x3C000100, 0x20)]
    with pytest.raises(LayoutError, match=r"sections a\+b \(0x3c000020\.\.0x3c000120\) and c \(0x3c000110\.\.0x3c000130\) overlap"):
        layout(C3, [*joined, piece("c", 0x3C000110, 0x20)], PAGE)

def test_section_outside_memory_is_refused_with_its_name():
    with pytest.raises(LayoutError, match=r"\.weird at 0x10000000.*outside every memory region of esp32c3"):
        classify(C3, ".weird", 0x10000000, b"1234", path="fw.elf")


def test_section_spanning_two_regions_is_refused():
    rng = C3.ranges(Region.DRAM)[0]
    with pytest.raises(LayoutError):
        classify(C3, ".data", rng.end - 4, b"12345678")


def test_too_many_segments_is_a_clear_error():
    ram = [piece(f"r{i}", 0x3FC80000 + i * 0x100, 0x10) for i in range(MAX_SEGMENTS + 1)]
    with pytest.raises(LayoutError, match="at most 16"):
        layout(C3, ram, PAGE)


def test_ram_pieces_that_touch_after_padding_are_joined():
    a, b = piece("a", 0x40380000, 0x446), piece("b", 0x40380448, 0x10)
    segs = layout(C3, [a, b], PAGE)
    assert len(segs) == 1 and LoadedMemory(segs).read(b.addr, 0x10) == b.data


def _flash_region_pieces(draw, region_start, count, label):
    addrs = sorted(draw(st.sets(st.integers(0, 0x3FFFF // 4), min_size=count, max_size=count)))
    out = []
    for i, word in enumerate(addrs):
        addr = region_start + word * 4
        size = draw(st.integers(1, 0x3000))
        out.append((f"{label}{i}", addr, size))
    return out


@st.composite
def piece_sets(draw):
    raw = []
    raw += _flash_region_pieces(draw, 0x3C000020, draw(st.integers(1, 3)), "ro")
    raw += _flash_region_pieces(draw, 0x42000020, draw(st.integers(0, 3)), "tx")
    raw += _flash_region_pieces(draw, 0x3FC80000, draw(st.integers(0, 3)), "d")
    raw.sort(key=lambda r: r[1])
    kept = []
    for name, addr, size in raw:
        if kept and addr < kept[-1][1] + kept[-1][2] + 4:
            continue
        kept.append((name, addr, size))
    return [piece(n, a, s) for n, a, s in kept]


@given(pieces=piece_sets(), page=st.sampled_from([0x4000, 0x8000, 0x10000]))
def test_layout_properties(pieces, page):
    flash = [p for p in pieces if p.region.flash_mapped]
    assume(flash)
    first = flash[-1]
    try:
        segs = layout(C3, pieces, page, first_addr=first.addr)
    except LayoutError as exc:
        assert "at most" in str(exc) or "mmu_ll_get_entry_id" in str(exc)
        return
    assert len(segs) <= MAX_SEGMENTS
    assert all(len(s.data) % SEGMENT_ALIGN == 0 for s in segs)
    first_flash = next(s for s in segs if C3.is_flash_mapped(s.addr))
    assert first_flash.addr <= first.addr < first_flash.addr + len(first_flash.data)
    for seg, off in zip(segs, flash_data_offsets(segs)):
        if seg.addr != PADDING_ADDR and C3.is_flash_mapped(seg.addr):
            assert off % page == seg.addr % page
    memory = LoadedMemory(segs)
    for p in pieces:
        assert memory.read(p.addr, len(p.data)) == p.data
    data = EspImage(C3.image_chip_id, first.addr, tuple(segs)).to_bytes()
    cpu = image_cpu_view(C3, parse_image(data), data, page)
    for p in pieces:
        assert cpu.read(p.addr, len(p.data)) == p.data, cpu.explain(p.addr)
    flash_segs = [s for s in segs if s.addr != PADDING_ADDR and C3.is_flash_mapped(s.addr)]
    for bus in (C3.boot.drom, C3.boot.irom):
        assert sum(bus.contains(s.addr) for s in flash_segs) <= 1, "the bootloader maps one segment per bus"
