"""The test ELF builder (tests/elfbuild.py) and the cross-compiled fixture ELFs (tests/fixtures/)."""

from __future__ import annotations

import io
import struct

import pytest
from conftest import FIXTURES
from elfbuild import (
    APP_DESC_MAGIC,
    EM_RISCV,
    EM_XTENSA,
    PT_GNU_STACK,
    PT_LOAD,
    MiB,
    Sec,
    Seg,
    Sym,
    app_descriptor,
    build_elf,
    esp_app_elf,
    espressif_metadata,
)
from elftools.elf.elffile import ELFFile
from hypothesis import given
from hypothesis import strategies as st


def parse(data: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(data))


def sections(elf: ELFFile) -> dict:
    return {s.name: s for s in elf.iter_sections() if s.name}


def loads(elf: ELFFile) -> list:
    return [p for p in elf.iter_segments() if p["p_type"] == "PT_LOAD"]


def file_symbols(elf: ELFFile) -> list[str]:
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        return []
    return [s.name for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FILE"]


# --------------------------------------------------------------------------- app descriptor


def test_app_descriptor_layout():
    desc = app_descriptor(version="1.2.3", project="blinky", mmu_page_size_log2=15, idf_ver="v5.4")
    assert len(desc) == 256
    assert struct.unpack_from("<I", desc, 0)[0] == APP_DESC_MAGIC
    assert desc[:4] == b"\x32\x54\xcd\xab"
    assert desc[16:48].rstrip(b"\0") == b"1.2.3"
    assert desc[48:80].rstrip(b"\0") == b"blinky"
    assert desc[112:144].rstrip(b"\0") == b"v5.4"
    assert desc[144:176] == bytes(32)  # app_elf_sha256: filled in by the image tool
    assert struct.unpack_from("<HH", desc, 176) == (0, 0xFFFF)
    assert desc[180] == 15


def test_app_descriptor_rejects_overlong_fields():
    with pytest.raises(ValueError):
        app_descriptor(version="x" * 33)
    assert app_descriptor(version="x" * 32)[16:48] == b"x" * 32  # exactly full: no NUL, allowed


# --------------------------------------------------------------------------- builder round trips


def test_sections_addresses_data_and_flags_round_trip():
    desc = app_descriptor()
    elf = parse(
        build_elf(
            [
                Sec(".rodata_desc", 0x3C00_0020, desc, flags="A"),
                Sec(".rodata", 0x3C00_0120, b"hello\0\0\0", flags="A"),
                Sec(".text", 0x4201_0020, b"\x13\x00\x00\x00" * 4, flags="AX"),
                Sec(".data", 0x3FC8_0000, b"\x78\x56\x34\x12", flags="WA"),
                Sec(".bss", 0x3FC8_0004, size=0x200, flags="WA", type="NOBITS"),
                Sec(".espressif.metadata", 0, espressif_metadata("esp32c3"), flags="", align=1),
            ],
            entry=0x4201_0020,
        )
    )
    assert elf.elfclass == 32 and elf.little_endian
    assert elf["e_machine"] == "EM_RISCV" and elf["e_type"] == "ET_EXEC"
    assert elf["e_entry"] == 0x4201_0020
    secs = sections(elf)
    assert secs[".rodata_desc"]["sh_addr"] == 0x3C00_0020
    assert secs[".rodata_desc"].data() == desc
    assert secs[".rodata"].data() == b"hello\0\0\0"
    assert secs[".text"]["sh_flags"] == 0x6  # ALLOC | EXECINSTR
    assert secs[".data"]["sh_flags"] == 0x3  # WRITE | ALLOC
    assert secs[".bss"]["sh_type"] == "SHT_NOBITS" and secs[".bss"]["sh_size"] == 0x200
    assert secs[".espressif.metadata"]["sh_flags"] == 0
    assert secs[".espressif.metadata"].data() == b"ESP-IDFesp32c3serial"
    # one PT_LOAD per alloc section of nonzero size, NOBITS with filesz 0
    segs = loads(elf)
    assert [(p["p_vaddr"], p["p_filesz"], p["p_memsz"]) for p in segs] == [
        (0x3C00_0020, 256, 256),
        (0x3C00_0120, 8, 8),
        (0x4201_0020, 16, 16),
        (0x3FC8_0000, 4, 4),
        (0x3FC8_0004, 0, 0x200),
    ]
    for p in segs:
        if p["p_filesz"]:
            sec = next(s for s in elf.iter_sections() if s["sh_addr"] == p["p_vaddr"] and s.name)
            assert p.data() == sec.data()


def test_file_symbols_for_crate_name_detection():
    elf = parse(build_elf([Sec(".text", 0x4200_0020, b"\0" * 4, flags="AX")], symbols=["esp32c6.abc-cgu.0", "core.x-cgu.1"]))
    assert file_symbols(elf) == ["esp32c6.abc-cgu.0", "core.x-cgu.1"]
    sym = next(elf.get_section_by_name(".symtab").iter_symbols())
    assert sym.name == ""  # index 0 is the null symbol


def test_typed_symbols_locals_first():
    elf = parse(
        build_elf(
            [Sec(".text", 0x4200_0020, b"\0" * 8, flags="AX")],
            symbols=[Sym("main", 0x4200_0020, 8, "FUNC", "GLOBAL", ".text"), "esp32h2.x-cgu.0"],
        )
    )
    symtab = elf.get_section_by_name(".symtab")
    syms = list(symtab.iter_symbols())
    assert [s.name for s in syms] == ["", "esp32h2.x-cgu.0", "main"]
    assert symtab["sh_info"] == 2  # first non-local
    main = syms[2]
    assert main["st_value"] == 0x4200_0020 and main["st_info"]["type"] == "STT_FUNC"
    assert main["st_shndx"] == 1


def test_no_symbols_means_no_symtab():
    elf = parse(build_elf([Sec(".text", 0x4200_0020, b"\0" * 4, flags="AX")]))
    assert elf.get_section_by_name(".symtab") is None
    assert elf.get_section_by_name(".shstrtab") is not None


def test_empty_sections_get_no_program_header():
    elf = parse(build_elf([Sec(".rodata", 0x3C00_0020, flags="A"), Sec(".text", 0x4200_0020, flags="AX")]))
    assert sections(elf)[".rodata"]["sh_size"] == 0
    assert loads(elf) == []


def test_explicit_program_headers_merge_sections():
    """Like the corpus esp32 ELF: one PT_LOAD covering .rodata_desc + .rodata, and .data + .bss."""
    elf = parse(
        build_elf(
            [
                Sec(".rodata_desc", 0x3F40_0020, app_descriptor(), flags="A"),
                Sec(".rodata", 0x3F40_0120, b"r" * 0x58, flags="A"),
                Sec(".data", 0x3FFB_0000, b"d" * 8, flags="WA"),
                Sec(".bss", 0x3FFB_0008, size=0x100, flags="WA", type="NOBITS"),
            ],
            machine=EM_XTENSA,
            program_headers=[
                Seg(sections=(".rodata_desc", ".rodata")),
                Seg(sections=(".data", ".bss")),
                Seg(type=PT_GNU_STACK, flags="RW", align=16),
            ],
        )
    )
    assert elf["e_machine"] == "EM_XTENSA"
    segs = list(elf.iter_segments())
    assert (segs[0]["p_vaddr"], segs[0]["p_filesz"], segs[0]["p_memsz"], segs[0]["p_flags"]) == (0x3F40_0020, 0x158, 0x158, 4)
    assert segs[0].data() == app_descriptor() + b"r" * 0x58
    assert (segs[1]["p_vaddr"], segs[1]["p_filesz"], segs[1]["p_memsz"], segs[1]["p_flags"]) == (0x3FFB_0000, 8, 0x108, 6)
    assert segs[2]["p_type"] == "PT_GNU_STACK"
    assert elf.get_section_by_name(".rodata").data() == b"r" * 0x58


def test_raw_program_header_fields_override():
    elf = parse(
        build_elf(
            [Sec(".text", 0x4200_0020, b"\x01" * 16, flags="AX")],
            program_headers=[Seg(sections=(".text",), paddr=0x1234, align=0x1000), Seg(type=PT_LOAD, vaddr=0x5000_0000, memsz=64)],
        )
    )
    a, b = elf.iter_segments()
    assert a["p_paddr"] == 0x1234 and a["p_vaddr"] == 0x4200_0020 and a["p_align"] == 0x1000
    assert b["p_vaddr"] == 0x5000_0000 and b["p_filesz"] == 0 and b["p_memsz"] == 64


def test_no_program_headers():
    elf = parse(build_elf([Sec(".text", 0x4200_0020, b"\x01" * 4, flags="AX")], program_headers=False))
    assert elf.num_segments() == 0
    assert elf["e_phoff"] == 0


def test_no_section_headers():
    elf = parse(build_elf([Sec(".text", 0x4200_0020, b"\x01" * 4, flags="AX")], section_headers=False))
    assert elf.num_sections() == 0
    (seg,) = loads(elf)
    assert seg.data() == b"\x01" * 4


def test_sections_sharing_and_straddling_64k_pages():
    elf = parse(
        build_elf(
            [
                Sec(".rodata_desc", 0x4200_0020, app_descriptor(), flags="A"),
                Sec(".text", 0x4200_0200, b"\x13\0\0\0" * 4, flags="AX"),  # same 64 KiB page as the descriptor
                Sec(".rodata", 0x4200_FF00, bytes(range(256)) * 2, flags="A"),  # crosses 0x42010000
            ]
        )
    )
    secs = sections(elf)
    assert secs[".rodata_desc"]["sh_addr"] >> 16 == secs[".text"]["sh_addr"] >> 16
    ro = secs[".rodata"]
    assert ro["sh_addr"] >> 16 != (ro["sh_addr"] + ro["sh_size"] - 1) >> 16
    assert ro.data() == bytes(range(256)) * 2


def test_file_offsets_congruent_to_addresses():
    elf = parse(build_elf([Sec(".trap", 0x4038_0000, b"\0" * 8, flags="AX", align=256), Sec(".x", 0x3C00_0022, b"ab", flags="A", align=16)]))
    for s in elf.iter_sections():
        if s["sh_flags"] & 2 and s["sh_addralign"] > 1:
            assert s["sh_offset"] % s["sh_addralign"] == s["sh_addr"] % s["sh_addralign"]


def test_huge_section():
    data = build_elf([Sec(".text", 0x4200_0020, size=3 * MiB, flags="AX")])
    elf = parse(data)
    text = sections(elf)[".text"]
    assert text["sh_size"] == 3 * MiB
    assert len(data) > 3 * MiB
    assert loads(elf)[0]["p_filesz"] == 3 * MiB


def test_no_app_descriptor():
    elf = parse(build_elf([Sec(".text", 0x4200_0020, b"\x13\0\0\0", flags="AX")]))
    assert elf.get_section_by_name(".rodata_desc") is None
    assert elf.get_section_by_name(".flash.appdesc") is None


def test_elf64_and_big_endian_variants():
    e64 = parse(build_elf([Sec(".text", 0x4200_0020, b"\x13\0\0\0", flags="AX")], ei_class=2, symbols=["a-cgu.0"]))
    assert e64.elfclass == 64 and e64.little_endian
    assert sections(e64)[".text"].data() == b"\x13\0\0\0"
    assert file_symbols(e64) == ["a-cgu.0"]
    be = parse(build_elf([Sec(".text", 0x400D_0020, b"\x01\x02", flags="AX")], machine=EM_XTENSA, ei_data=2, symbols=["b"]))
    assert be.elfclass == 32 and not be.little_endian
    assert be["e_machine"] == "EM_XTENSA"
    assert sections(be)[".text"]["sh_addr"] == 0x400D_0020
    assert file_symbols(be) == ["b"]


def test_header_bytes_can_be_patched_and_truncated():
    data = bytearray(build_elf([Sec(".text", 0x4200_0020, b"\x13\0\0\0", flags="AX")]))
    assert data[:4] == b"\x7fELF" and data[4] == 1 and data[5] == 1
    assert struct.unpack_from("<HH", data, 16) == (2, EM_RISCV)
    data[4] = 2  # claims ELFCLASS64 over a 32-bit body
    assert bytes(data[:5]) == b"\x7fELF\x02"
    assert len(bytes(data)[:30]) == 30


@pytest.mark.parametrize("chip,machine", [("esp32c3", "EM_RISCV"), ("esp32c6", "EM_RISCV"), ("esp32", "EM_XTENSA")])
def test_presets(chip, machine):
    elf = parse(esp_app_elf(chip))
    assert elf["e_machine"] == machine
    secs = sections(elf)
    assert secs[".rodata_desc"].data()[:4] == b"\x32\x54\xcd\xab"
    assert elf["e_entry"] == secs[".text"]["sh_addr"]
    assert secs[".espressif.metadata"].data() == espressif_metadata(chip)
    assert file_symbols(elf)[0].startswith(chip + ".")


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12)


@given(
    st.lists(
        st.tuples(
            _names,
            st.integers(0, 0xFFFF_FF00),
            st.binary(max_size=64),
            st.sampled_from(["A", "AX", "WA", ""]),
            st.booleans(),
            st.sampled_from([1, 2, 4, 16, 256]),
        ),
        max_size=8,
        unique_by=lambda t: t[0],
    ),
    st.lists(_names, max_size=3),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2]),
)
def test_round_trip_property(specs, files, ei_class, ei_data):
    secs = [
        Sec("." + name, addr, b"" if nobits else data, size=len(data) if nobits else None, flags=flags,
            type="NOBITS" if nobits else "PROGBITS", align=align)
        for name, addr, data, flags, nobits, align in specs
    ]
    elf = parse(build_elf(secs, symbols=files, ei_class=ei_class, ei_data=ei_data))
    got = [s for s in elf.iter_sections()][1 : 1 + len(secs)]
    for want, have in zip(secs, got):
        assert have.name == want.name
        assert have["sh_addr"] == want.addr
        assert have["sh_size"] == want.mem_size
        if not want.nobits:
            assert have.data() == want.data
    assert file_symbols(elf) == list(files)
    assert len(loads(elf)) == sum(1 for s in secs if s.alloc and s.mem_size)


# --------------------------------------------------------------------------- cross-compiled fixtures

FIXTURE_SPECS = {
    "esp32c3-min.elf": (
        "EM_RISCV",
        "esp32c3",
        {
            ".rodata_desc": 0x3C00_0020,
            ".rodata": 0x3C00_0120,
            ".rotext_dummy": 0x4200_0020,
            ".text": 0x4201_0020,
            ".trap": 0x4038_0000,
            ".rwtext": None,
            ".rwdata_dummy": 0x3FC8_0000,
            ".data": None,
            ".bss": None,
        },
    ),
    "esp32c6-min.elf": (
        "EM_RISCV",
        "esp32c6",
        {
            ".rodata_desc": 0x4200_0020,
            ".rodata": 0x4200_0120,
            ".text_gap": None,
            ".text": None,
            ".trap": 0x4080_0000,
            ".rwtext": None,
            ".data": None,
            ".bss": None,
        },
    ),
    "esp32-min.elf": (
        "EM_XTENSA",
        "esp32",
        {
            ".rodata_desc": 0x3F40_0020,
            ".rodata": 0x3F40_0120,
            ".data": 0x3FFB_0000,
            ".bss": None,
            ".vectors": 0x4008_0000,
            ".rwtext": 0x4008_0400,
            ".text": 0x400D_0020,
        },
    ),
}


def fixture(name: str) -> ELFFile:
    path = FIXTURES / name
    assert path.is_file(), f"{path} missing: run tests/fixtures/build_fixtures.sh"
    return ELFFile(io.BytesIO(path.read_bytes()))


@pytest.mark.parametrize("name", sorted(FIXTURE_SPECS))
def test_fixture_elf_shape(name):
    machine, chip, expected = FIXTURE_SPECS[name]
    assert (FIXTURES / name).stat().st_size < 40 * 1024
    elf = fixture(name)
    assert elf.elfclass == 32 and elf.little_endian
    assert elf["e_machine"] == machine and elf["e_type"] == "ET_EXEC"
    secs = sections(elf)
    for sec_name, addr in expected.items():
        assert sec_name in secs, f"{name} lacks {sec_name}"
        if addr is not None:
            assert secs[sec_name]["sh_addr"] == addr, sec_name
    assert secs[".bss"]["sh_type"] == "SHT_NOBITS"
    assert not any(n.startswith(".debug") for n in secs)
    # the entry point is _start, in .text
    text = secs[".text"]
    assert text["sh_addr"] <= elf["e_entry"] < text["sh_addr"] + text["sh_size"]
    symtab = elf.get_section_by_name(".symtab")
    (start,) = symtab.get_symbol_by_name("_start")
    assert start["st_value"] == elf["e_entry"]
    # chip name in the metadata section and the crate-like FILE symbol
    assert secs[".espressif.metadata"].data() == espressif_metadata(chip)
    assert secs[".espressif.metadata"]["sh_flags"] == 0
    assert file_symbols(elf) == [f"{chip}.f17e0000c0de0001-cgu.0"]
    # .data holds the initialised values from the C source (fixture_state, fixture_counter)
    assert b"\x78\x56\x34\x12" in secs[".data"].data()


@pytest.mark.parametrize("name", sorted(FIXTURE_SPECS))
def test_fixture_app_descriptor(name):
    elf = fixture(name)
    desc = elf.get_section_by_name(".rodata_desc").data()
    assert desc == app_descriptor(
        version="0.1.0", project="fixture", time="00:00:00", date="2025-01-01", idf_ver="fixture-noidf"
    )
    rodata = elf.get_section_by_name(".rodata")
    assert rodata["sh_addr"] == elf.get_section_by_name(".rodata_desc")["sh_addr"] + 256  # immediately follows


def test_fixture_flash_page_sharing():
    """c3 keeps code and read-only data in different 64 KiB pages; c6 puts them in the same one."""
    c3 = sections(fixture("esp32c3-min.elf"))
    assert c3[".text"]["sh_addr"] & 0xFFFF == 0x20
    assert (c3[".text"]["sh_addr"] - 0x4200_0000) >> 16 != (c3[".rodata"]["sh_addr"] - 0x3C00_0000) >> 16
    assert c3[".rotext_dummy"]["sh_type"] == "SHT_NOBITS" and c3[".rotext_dummy"]["sh_size"] == 0x1_0000
    c6 = sections(fixture("esp32c6-min.elf"))
    assert c6[".text"]["sh_addr"] >> 16 == c6[".rodata_desc"]["sh_addr"] >> 16
    assert c6[".text_gap"]["sh_type"] == "SHT_NOBITS"


def test_fixture_program_headers():
    for name in FIXTURE_SPECS:
        elf = fixture(name)
        segs = loads(elf)
        for sec in elf.iter_sections():
            if sec["sh_flags"] & 2 and sec["sh_size"]:  # every non-empty alloc section is loaded
                assert any(p["p_vaddr"] <= sec["sh_addr"] < p["p_vaddr"] + p["p_memsz"] for p in segs), (name, sec.name)
    c3 = fixture("esp32c3-min.elf")  # .rodata_desc and .rodata in separate segments, like the corpus c3 ELF
    assert {p["p_vaddr"] for p in loads(c3)} >= {0x3C00_0020, 0x3C00_0120, 0x4200_0020, 0x4201_0020}
    esp32 = fixture("esp32-min.elf")
    first = loads(esp32)[0]  # .rodata_desc + .rodata in one segment, like the corpus esp32 ELF
    assert first["p_vaddr"] == 0x3F40_0020 and first["p_filesz"] > 256
