"""read_elf against pyelftools' full ELFFile: same loadable pieces, same bss, same entry point.

read_elf parses headers through pyelftools' ELFStructs directly (ELFFile's imports cost start-up
time), so ELFFile serves as the oracle on the shipped fixtures, the corpus and generated ELFs.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from conftest import FIXTURES, corpus_elf_params
from elfbuild import EM_RISCV, Sec, build_elf, esp_app_sections
from elftools.elf.elffile import ELFFile
from hypothesis import given
from hypothesis import strategies as st

from imgtool.elf.reader import SHF_ALLOC, read_elf


def oracle(data: bytes):
    """(pieces, nobits, entry, machine) as pyelftools' ELFFile sees the sections."""
    elf = ELFFile(io.BytesIO(data))
    pieces, nobits = [], []
    for sec in elf.iter_sections():
        h = sec.header
        if not h.sh_flags & SHF_ALLOC or h.sh_size == 0:
            continue
        row = (sec.name, h.sh_addr, h.sh_size, h.sh_flags)
        (nobits if h.sh_type == "SHT_NOBITS" else pieces).append(row)
    return pieces, nobits, elf.header.e_entry


def ours(path):
    elf = read_elf(path)

    def rows(items):
        return [(p.name, p.addr, p.size, p.executable) for p in items]

    return rows(elf.pieces), rows(elf.nobits), elf.entry


def comparable(pieces):
    return [(name, addr, size, bool(flags & 0x4)) for name, addr, size, flags in pieces]


def assert_same_as_pyelftools(path):
    pieces, nobits, entry = oracle(path.read_bytes())
    assert ours(path) == (comparable(pieces), comparable(nobits), entry)


@pytest.mark.parametrize("name", ["esp32c3-min.elf", "esp32-min.elf", "esp32c6-min.elf"])
def test_fixture_sections_match_pyelftools(name):
    assert_same_as_pyelftools(FIXTURES / name)


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_corpus_sections_match_pyelftools(elf_path):
    assert_same_as_pyelftools(elf_path)


section_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=12).map(lambda s: "." + s)
extra_sections = st.lists(
    st.tuples(section_names, st.integers(0, 64), st.sampled_from(["A", "AW", "AX", ""]), st.sampled_from(["PROGBITS", "NOBITS"])),
    max_size=6,
)


@given(extra=extra_sections)
def test_generated_sections_match_pyelftools(extra, tmp_path_factory):
    sections = list(esp_app_sections("esp32c3"))
    addr = 0x4080_0000
    for name, size, flags, kind in extra:
        sections.append(Sec(name, addr if "A" in flags else 0, b"\x5a" * size, flags=flags, type=kind))
        addr += (size + 3) & ~3
    path = tmp_path_factory.mktemp("elf") / "fw.elf"
    path.write_bytes(build_elf(sections, machine=EM_RISCV, entry=0x4201_0020))
    assert_same_as_pyelftools(path)


@pytest.mark.parametrize("block", [7, 4096, 1 << 20])
def test_elf_sha256_is_the_files_hash_whatever_the_read_size(block, monkeypatch):
    """``app_elf_sha256`` covers the whole file, also when it takes many (and a short last) read."""
    import imgtool.elf.reader

    monkeypatch.setattr(imgtool.elf.reader, "ELF_HASH_BLOCK", block)
    path = FIXTURES / "esp32c3-min.elf"
    assert read_elf(path).sha256() == hashlib.sha256(path.read_bytes()).digest()
