"""The MMU as the chip has it: entry ids from ``mmu_ll_get_entry_id``, the table ``set_cache_and_start_app``
leaves (DROM, the last DROM entry, then IROM), what ``verify --elf`` reads through it, and the esp32c2/c3/s3
layouts where a rodata page and a code page share one entry."""

from __future__ import annotations

import pytest
from conftest import bootloader_image, corpus_path, run_cli
from elfbuild import EM_RISCV, Sec, app_descriptor, build_elf
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtool.chips.table import CHIPS, PSRAM_MMU_ID
from imgtool.errors import LayoutError
from imgtool.flash.layout import FlashSettings, plan_layout
from imgtool.image.boot_rules import MMU_RULE, boot_mmu_table, check_app, fatal, image_cpu_view
from imgtool.image.build import build_app_image
from imgtool.image.format import EspImage, Segment, parse_image
from imgtool.image.memory import elf_mismatches
from imgtool.image.segments import classify, shared_entries
from imgtool.inspect.verify import verify
from imgtool.partitions.choice import default_table

PAGE = 0x1_0000
C3 = CHIPS["esp32c3"]
TEXT = b"\x13\x00\x00\x00" * 16
DESC_AT, RODATA_AT, TEXT_AT, DATA_AT = 0x3C00_0020, 0x3C00_0120, 0x4200_0400, 0x3FC9_0000
RODATA = b"R" * 0x60


def entry(chip_name: str, vaddr: int, page: int = PAGE) -> tuple[int, int] | None:
    window = CHIPS[chip_name].boot.mmu_window(vaddr)
    return (window.mmu_id, window.entry(vaddr, page)) if window else None


@pytest.mark.parametrize(
    "chip_name, drom, irom, same",
    [
        ("esp32c2", 0x3C01_0000, 0x4201_0000, True),
        ("esp32c3", 0x3C01_0000, 0x4201_0000, True),
        ("esp32s3", 0x3C01_0000, 0x4201_0000, True),
        ("esp32", 0x3F41_0000, 0x400D_0000, False),
        ("esp32s2", 0x3F01_0000, 0x4009_0000, False),
    ],
)
def test_entry_ids_follow_mmu_ll_get_entry_id(chip_name, drom, irom, same):
    assert (entry(chip_name, drom) == entry(chip_name, irom)) is same


def test_entry_ids_of_the_separate_tables():
    assert entry("esp32", 0x3F40_0000) == (0, 0) and entry("esp32", 0x400D_0000) == (0, 64 + 13)
    assert entry("esp32s2", 0x3F00_0000) == (0, 128) and entry("esp32s2", 0x4008_0000) == (0, 8)
    assert entry("esp32c2", 0x3C00_4000, page=0x4000) == (0, 1)
    assert entry("esp32c3", 0x3C80_0000) is None  # past SOC_DRAM0_CACHE_ADDRESS_HIGH
    p4_psram = CHIPS["esp32p4"].boot.mmu_window(0x4800_0000)
    assert p4_psram.mmu_id == PSRAM_MMU_ID and not p4_psram.boot_mapped


def test_only_esp32c2_c3_s3_share_entries_between_buses():
    def shares(chip) -> bool:
        windows = chip.boot.mmu_windows()
        return any(
            a is not b and a.mmu_id == b.mmu_id and a.first_entry < b.first_entry + b.entries and b.first_entry < a.first_entry + a.entries
            for a in windows
            for b in windows
        )

    assert sorted(name for name, chip in CHIPS.items() if shares(chip)) == ["esp32c2", "esp32c3", "esp32s3"]


def _elf(tmp_path, text_at: int = TEXT_AT):
    sections = [
        Sec(".rodata_desc", DESC_AT, app_descriptor(), flags="A"),
        Sec(".rodata", RODATA_AT, RODATA, flags="A"),
        Sec(".text", text_at, TEXT, flags="AX"),
        Sec(".data", DATA_AT, b"DATA" * 4, flags="WA"),
    ]
    path = tmp_path / "shared.elf"
    path.write_bytes(build_elf(sections, machine=EM_RISCV, entry=text_at, symbols=["esp32c3.x-cgu.0"]))
    return path


def _merged(app: bytes) -> bytes:
    lay = plan_layout(
        C3,
        name="a",
        app=app,
        bootloader=bootloader_image("esp32c3"),
        table=default_table(2 * 1024 * 1024),
        settings=FlashSettings("dio", "80m", "2MB"),
    )
    return bytes(lay.merged_bytes())


def _code_in_another_flash_page() -> bytes:
    """The rodata in flash page 0 of the app, the code it shares MMU entry 0 with in flash page 1."""
    rodata = Segment(DESC_AT, app_descriptor() + RODATA)
    header_end = 0x18 + 8 + len(rodata.data)
    padding = Segment(0, bytes(PAGE + TEXT_AT % PAGE - header_end - 2 * 8))
    segments = (rodata, padding, Segment(TEXT_AT, TEXT), Segment(DATA_AT, b"DATA" * 4))
    return EspImage(chip_id=C3.image_chip_id, entry=TEXT_AT, segments=segments).to_bytes()


def test_code_mapping_wins_a_shared_entry():
    parsed = parse_image(_code_in_another_flash_page())
    table = boot_mmu_table(C3, parsed)
    assert table.flash_addr(DESC_AT) == PAGE + DESC_AT % PAGE  # the rodata reads the code's page
    assert table.flash_addr(TEXT_AT) == PAGE + TEXT_AT % PAGE
    # MMU_LL_END_DROM_ENTRY_ID maps the rodata's first page for the app to find its partition
    assert table.flash_addr(0x3C7F_0000) == 0


def test_rodata_and_code_in_different_flash_pages_of_one_entry_fail_verify(tmp_path):
    app = _code_in_another_flash_page()
    findings = fatal(check_app(C3, parse_image(app)))
    assert [f.rule for f in findings] == [MMU_RULE]
    assert "segment 0 (DROM 0x3c000020" in findings[0].message and "MMU entry 0 (shared by the pages at 0x3c000000 and 0x42000000)" in findings[0].message
    report = verify(_merged(app), elf=_elf(tmp_path))
    problems = [str(p) for p in report.problems]
    assert any(p.startswith("app ('factory' at 0x10000)") and MMU_RULE in p for p in problems)
    assert any(p.startswith("elf: section .rodata_desc differs at 0x3c000020 as the CPU reads it: MMU entry 0") for p in problems)


def test_rodata_and_code_of_one_entry_share_a_flash_page_and_verify(tmp_path):
    elf = _elf(tmp_path)
    result = build_app_image(elf, chip="esp32c3")
    parsed = parse_image(result.data)
    assert not fatal(check_app(C3, parsed))
    mapped = {ps.segment.addr: ps.data_offset for ps in parsed.segments}
    assert mapped[TEXT_AT] - mapped[DESC_AT] == TEXT_AT - DESC_AT - (0x4200_0000 - 0x3C00_0000)
    cpu = image_cpu_view(C3, parsed, result.data)
    assert cpu.read(RODATA_AT, len(RODATA)) == RODATA and cpu.read(TEXT_AT, len(TEXT)) == TEXT
    report = verify(_merged(result.data), elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    assert any(c.part == "elf" and "as the CPU sees them" in c.message for c in report.checks)


def test_colliding_in_page_ranges_are_refused_in_one_line(tmp_path):
    # the code starts 4 bytes after the rodata ends in page 0: no room for a segment header between them
    elf = _elf(tmp_path, text_at=0x4200_0000 + (RODATA_AT + len(RODATA) + 4) % PAGE)
    with pytest.raises(LayoutError) as info:
        build_app_image(elf, chip="esp32c3")
    message = str(info.value)
    assert "\n" not in message and MMU_RULE in message
    assert "MMU entry 0 (DROM page 0x3c000000 and IROM page 0x42000000" in message
    assert ".rodata at 0x3c000120..0x3c000180" in message and ".text at 0x42000184" in message


def test_direct_boot_elf_is_refused_in_one_line(tmp_path):
    elf = corpus_path("elf-history", "esp32c3_hal_blinky_db-da70d19a")
    (tmp_path / "bl.bin").write_bytes(bootloader_image("esp32c3"))
    result = run_cli("pack", elf, "--chip", "esp32c3", "-o", tmp_path / "out", "--bootloader", tmp_path / "bl.bin")
    assert result.exit_code != 0 and not (tmp_path / "out").exists()
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and MMU_RULE in error[0]
    assert "closest sections .rodata at 0x3c005724..0x3c007568 and .text at 0x42000008..0x42005724" in error[0]


def test_code_below_the_descriptor_rodata_in_one_entry_is_refused(tmp_path):
    # the code in IROM page 0 before the rodata's in-page range: the descriptor's segment cannot come first
    elf = tmp_path / "code-first.elf"
    sections = [
        Sec(".rodata_desc", 0x3C00_0400, app_descriptor(), flags="A"),
        Sec(".text", 0x4200_0008, TEXT, flags="AX"),
        Sec(".data", DATA_AT, b"DATA" * 4, flags="WA"),
    ]
    elf.write_bytes(build_elf(sections, machine=EM_RISCV, entry=0x4200_0008, symbols=["esp32c3.x-cgu.0"]))
    with pytest.raises(LayoutError, match="the app descriptor must come first") as info:
        build_app_image(elf, chip="esp32c3")
    assert MMU_RULE in str(info.value)


def test_psram_segments_are_left_to_the_app():
    """ESP32-P4 (SOC_MMU_PER_EXT_MEM_TARGET): the bootloader maps no PSRAM page (s_flash_seg_needs_map); the
    app maps what the image holds there, so the CPU view reads the segment's bytes."""
    p4 = CHIPS["esp32p4"]
    flash = Segment(0x4000_0020, app_descriptor() + RODATA)
    header_end = 0x18 + 8 + len(flash.data)
    psram = Segment(0x4800_0000 + header_end + 8, b"P" * 16)
    app = EspImage(chip_id=p4.image_chip_id, entry=0x4FF0_0000, segments=(flash, psram, Segment(0x4FF0_0000, TEXT))).to_bytes()
    parsed = parse_image(app)
    table = boot_mmu_table(p4, parsed)
    assert table.flash_addr(psram.addr) is None
    assert image_cpu_view(p4, parsed, app).read(psram.addr, 16) == b"P" * 16


def test_esp_hal_keeps_rodata_and_code_in_different_entries():
    """Today's esp-hal ELF (.rotext_dummy pushes .text a page past the rodata) needs no shared entry, so its
    layout is the separate-bus one, unchanged; the CPU reads every section through the MMU."""
    elf = corpus_path("elf", "esp32c3")
    result = build_app_image(elf)
    parsed = parse_image(result.data)
    flash = [ps.segment for ps in parsed.segments if C3.is_flash_mapped(ps.segment.addr)]
    pieces = [classify(C3, f"segment {i}", s.addr, s.data) for i, s in enumerate(flash)]
    assert len(flash) == 2 and not shared_entries(C3, pieces, PAGE)
    cpu = image_cpu_view(C3, parsed, result.data)
    contents = result.elf.read_all()
    desc = result.elf.find_app_descriptor(contents)
    assert not elf_mismatches(flash, result.elf, app_desc_addr=desc.addr, contents=contents, memory=cpu)


def test_without_a_descriptor_code_below_rodata_in_one_entry_goes_first(tmp_path):
    elf = tmp_path / "no-desc.elf"
    sections = [
        Sec(".text", 0x4200_0020, TEXT, flags="AX"),
        Sec(".rodata", 0x3C00_0200, RODATA, flags="A"),
        Sec(".data", DATA_AT, b"DATA" * 4, flags="WA"),
    ]
    elf.write_bytes(build_elf(sections, machine=EM_RISCV, entry=0x4200_0020, symbols=["esp32c3.x-cgu.0"]))
    result = build_app_image(elf, chip="esp32c3")
    parsed = parse_image(result.data)
    assert not fatal(check_app(C3, parsed))
    cpu = image_cpu_view(C3, parsed, result.data)
    assert cpu.read(0x3C00_0200, len(RODATA)) == RODATA and cpu.read(0x4200_0020, len(TEXT)) == TEXT


@settings(max_examples=60, deadline=None)
@given(
    chip_name=st.sampled_from(["esp32c3", "esp32s3", "esp32c6"]),
    ro_page=st.integers(0, 2),
    code_page=st.integers(0, 2),
    ro_len=st.integers(1, 0x100).map(lambda n: n * 4),
    code_at=st.integers(0x200, 0x800).map(lambda n: n & ~3),
    padding=st.integers(0, 3),
)
def test_the_mmu_verdict_matches_what_the_cpu_reads(chip_name, ro_page, code_page, ro_len, code_at, padding):
    """An MMU finding exactly when some mapped segment does not read back its own bytes through the table."""
    chip = CHIPS[chip_name]
    # segment 0's data sits at file offset 0x20: the rodata at 0x20 into its page is congruent
    ro = Segment(chip.boot.drom.start + ro_page * PAGE + 0x20, bytes(i & 0xFF for i in range(ro_len)))
    code_addr = chip.boot.irom.start + code_page * PAGE + code_at + (0x8000 if chip.unified_flash_map else 0)
    header_end = 0x18 + 8 + len(ro.data)
    # place the code segment congruent, `padding` pages after its first possible flash page
    gap = (code_addr - (header_end + 2 * 8)) % PAGE + padding * PAGE
    code = Segment(code_addr, bytes(reversed(range(64))))
    app = EspImage(chip_id=chip.image_chip_id, entry=code_addr, segments=(ro, Segment(0, bytes(gap)), code)).to_bytes()
    parsed = parse_image(app)
    cpu = image_cpu_view(chip, parsed, app)
    reads_right = all(cpu.read(s.addr, len(s.data)) == s.data for s in (ro, code))
    flagged = any(f.rule == MMU_RULE for f in check_app(chip, parsed))
    assert flagged is not reads_right


def _congruent_image(chip, segments: list[Segment], entry: int) -> bytes:
    """Segments in the order given, each flash one at a file offset congruent to its address (the layout
    imgtool wrote before it modelled shared MMU entries), padding segments between."""
    out, pos = [], 0x18
    for seg in segments:
        if chip.is_flash_mapped(seg.addr):
            gap = (seg.addr - (pos + 8)) % PAGE
            if gap:
                gap += PAGE if gap < 8 else 0
                out.append(Segment(0, bytes(gap - 8)))
                pos += gap
        out.append(seg)
        pos += 8 + len(seg.data)
    return EspImage(chip_id=chip.image_chip_id, entry=entry, segments=tuple(out)).to_bytes()


def test_direct_boot_elf_in_the_old_layout_fails_verify():
    """The issue's repro: the pack imgtool wrote for the direct-boot ELF maps .rodata onto code bytes."""
    from imgtool.elf.reader import read_elf

    elf = corpus_path("elf-history", "esp32c3_hal_blinky_db-da70d19a")
    info = read_elf(elf)
    sections = {piece.name: (piece.addr, data) for piece, data in info.read_all().items()}
    rodata, header, text, rwtext = (sections[n] for n in (".rodata", ".header", ".text", ".rwtext"))
    segments = [Segment(*rodata), Segment(header[0], header[1] + text[1]), Segment(*rwtext)]
    report = verify(_merged(_congruent_image(C3, segments, info.entry)), elf=elf)
    problems = [str(p) for p in report.problems]
    assert any(p.startswith("app ('factory' at 0x10000): segment 1 (DROM 0x3c005724") and MMU_RULE in p for p in problems)
    assert any(p.startswith("elf: section .rodata differs at 0x3c005724 as the CPU reads it: MMU entry 0 (shared by the pages at 0x3c000000 and 0x42000000)") for p in problems), problems
