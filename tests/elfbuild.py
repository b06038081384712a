"""A tiny, dependency-free ELF writer for tests.

Builds ELF executables shaped like Rust/esp-hal firmware (or deliberately odd ones) so
edge cases can be tested without a cross toolchain::

    from elfbuild import Sec, build_elf, app_descriptor   # in tests/ (or tests.elfbuild)

    elf = build_elf(
        [
            Sec(".rodata_desc", 0x3C00_0020, app_descriptor(), flags="A"),
            Sec(".rodata", 0x3C00_0120, b"\\x01" * 64, flags="A"),
            Sec(".text", 0x4201_0020, b"\\x13\\x00\\x00\\x00" * 16, flags="AX"),
            Sec(".bss", 0x3FC8_0000, size=0x100, flags="WA", type="NOBITS"),
        ],
        machine=EM_RISCV,
        entry=0x4201_0020,
        symbols=["esp32c3.0123456789abcdef-cgu.0"],
    )

Output is a consistent ELF32 little-endian file by default. ``ei_class=2`` writes a
consistent ELF64 file and ``ei_data=2`` a consistent big-endian one (both are things a
firmware tool must reject). For files that *lie* (say ELFCLASS64 in e_ident over a 32-bit
body) patch the bytes (``elf[4] = 2``); for truncated files slice the bytes.

File layout: ELF header, program headers, section contents (each at a file offset
congruent to its address modulo its alignment), .symtab/.strtab, .shstrtab, section
header table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

EM_XTENSA = 94
EM_RISCV = 243

ET_REL = 1
ET_EXEC = 2
ET_DYN = 3

PT_NULL = 0
PT_LOAD = 1
PT_NOTE = 4
PT_GNU_STACK = 0x6474E551
PT_RISCV_ATTRIBUTES = 0x70000003

SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_RISCV_ATTRIBUTES = 0x70000003

SECTION_TYPES: dict[str, int] = {
    "NULL": SHT_NULL,
    "PROGBITS": SHT_PROGBITS,
    "SYMTAB": SHT_SYMTAB,
    "STRTAB": SHT_STRTAB,
    "NOTE": SHT_NOTE,
    "NOBITS": SHT_NOBITS,
    "RISCV_ATTRIBUTES": SHT_RISCV_ATTRIBUTES,
}

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_MERGE = 0x10
SHF_STRINGS = 0x20
SECTION_FLAGS: dict[str, int] = {"W": SHF_WRITE, "A": SHF_ALLOC, "X": SHF_EXECINSTR, "M": SHF_MERGE, "S": SHF_STRINGS}

PF_X, PF_W, PF_R = 1, 2, 4
SEGMENT_FLAGS: dict[str, int] = {"R": PF_R, "W": PF_W, "X": PF_X, "E": PF_X}

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
SYMBOL_TYPES: dict[str, int] = {"NOTYPE": 0, "OBJECT": 1, "FUNC": 2, "SECTION": 3, "FILE": 4}
SYMBOL_BINDS: dict[str, int] = {"LOCAL": 0, "GLOBAL": 1, "WEAK": 2}
SHN_UNDEF = 0
SHN_ABS = 0xFFF1

APP_DESC_MAGIC = 0xABCD5432
APP_DESC_SIZE = 256

KiB = 1024
MiB = 1024 * KiB


# --------------------------------------------------------------------------- inputs


@dataclass
class Sec:
    """One section. ``size`` is the memory size of a NOBITS section; for PROGBITS it
    zero-pads ``data`` up to ``size`` (handy for big sections). ``flags`` is a string of
    ``W A X M S`` letters or an int; ``type`` a name from SECTION_TYPES or an int."""

    name: str
    addr: int = 0
    data: bytes = b""
    size: int | None = None
    flags: str | int = "A"
    type: str | int = "PROGBITS"
    align: int = 4
    entsize: int = 0
    link: int = 0
    info: int = 0

    @property
    def sh_type(self) -> int:
        return self.type if isinstance(self.type, int) else SECTION_TYPES[self.type.upper()]

    @property
    def sh_flags(self) -> int:
        if isinstance(self.flags, int):
            return self.flags
        bits = 0
        for letter in self.flags:
            bits |= SECTION_FLAGS[letter.upper()]
        return bits

    @property
    def nobits(self) -> bool:
        return self.sh_type == SHT_NOBITS

    @property
    def alloc(self) -> bool:
        return bool(self.sh_flags & SHF_ALLOC)

    @property
    def mem_size(self) -> int:
        if self.nobits:
            return self.size if self.size is not None else len(self.data)
        return max(len(self.data), self.size or 0)

    @property
    def file_bytes(self) -> bytes:
        if self.nobits:
            return b""
        return self.data + bytes(self.mem_size - len(self.data))


@dataclass
class Seg:
    """One program header. Either name ``sections`` (offset, vaddr, filesz and memsz are
    then computed from them, in the given order) or give the raw fields; any raw field
    that is not None overrides the computed one. ``flags`` is ``R/W/X`` letters or an int."""

    sections: Sequence[str] = ()
    type: int = PT_LOAD
    flags: str | int | None = None
    vaddr: int | None = None
    paddr: int | None = None
    offset: int | None = None
    filesz: int | None = None
    memsz: int | None = None
    align: int | None = None


@dataclass
class Sym:
    """One symbol. ``section`` is a section name (or None for ABS/UNDEF via ``shndx``)."""

    name: str
    value: int = 0
    size: int = 0
    type: str | int = "NOTYPE"
    bind: str | int = "GLOBAL"
    section: str | None = None
    shndx: int = SHN_ABS


SymbolSpec = Union[str, Sym]


# --------------------------------------------------------------------------- helpers


def _cstr(text: str | bytes, size: int) -> bytes:
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if len(raw) > size:
        raise ValueError(f"{raw!r} does not fit in {size} bytes")
    return raw + bytes(size - len(raw))


def app_descriptor(
    version: str = "0.1.0",
    project: str = "test",
    mmu_page_size_log2: int = 16,
    *,
    magic: int = APP_DESC_MAGIC,
    secure_version: int = 0,
    time: str = "00:00:00",
    date: str = "2025-01-01",
    idf_ver: str = "",
    app_elf_sha256: bytes = b"",
    min_efuse_blk_rev_full: int = 0,
    max_efuse_blk_rev_full: int = 0xFFFF,
) -> bytes:
    """A 256-byte ESP-IDF ``esp_app_desc_t`` (little-endian), as esp-hal places it at the
    start of the flash data mapping. Strings fill their fields exactly when 32 (or 16)
    bytes long (no NUL), which the format allows."""
    out = struct.pack("<II8x", magic, secure_version)
    out += _cstr(version, 32)  # 16
    out += _cstr(project, 32)  # 48
    out += _cstr(time, 16)  # 80
    out += _cstr(date, 16)  # 96
    out += _cstr(idf_ver, 32)  # 112
    out += _cstr(app_elf_sha256, 32)  # 144
    out += struct.pack("<HHB3x", min_efuse_blk_rev_full, max_efuse_blk_rev_full, mmu_page_size_log2)  # 176..183
    out += bytes(APP_DESC_SIZE - len(out))  # reserv2[18]
    assert len(out) == APP_DESC_SIZE
    return out


def espressif_metadata(chip: str) -> bytes:
    """Contents of esp-hal's non-alloc ``.espressif.metadata`` section (no separators)."""
    return b"ESP-IDF" + chip.encode() + b"serial"


def metadata_section(chip: str) -> Sec:
    return Sec(".espressif.metadata", 0, espressif_metadata(chip), flags="", align=1)


class _StrTab:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self._index: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self.data)
            self.data += name.encode() + b"\0"
        return self._index[name]


def _seg_flags(flags: str | int) -> int:
    if isinstance(flags, int):
        return flags
    bits = 0
    for letter in flags:
        bits |= SEGMENT_FLAGS[letter.upper()]
    return bits


def _flags_for(sec: Sec) -> int:
    flags = PF_R
    if sec.sh_flags & SHF_WRITE:
        flags |= PF_W
    if sec.sh_flags & SHF_EXECINSTR:
        flags |= PF_X
    return flags


def _pad_to(buf: bytearray, offset: int) -> None:
    if offset < len(buf):
        raise ValueError("layout error: offset moves backwards")
    buf += bytes(offset - len(buf))


def _congruent_offset(cursor: int, addr: int, align: int) -> int:
    """Smallest offset >= cursor with offset % align == addr % align."""
    if align <= 1:
        return cursor
    return cursor + ((addr - cursor) % align)


# --------------------------------------------------------------------------- writer


def build_elf(
    sections: Iterable[Sec],
    *,
    machine: int = EM_RISCV,
    entry: int = 0,
    e_type: int = ET_EXEC,
    program_headers: bool | Sequence[Seg] = True,
    symbols: Iterable[SymbolSpec] = (),
    section_headers: bool = True,
    ei_class: int = 1,
    ei_data: int = 1,
    e_flags: int = 0,
    e_version: int = 1,
) -> bytes:
    """Build an ELF file.

    sections: in section-header order (index 1 onwards; index 0 is the NULL section).
    program_headers: True = one PT_LOAD per alloc section of nonzero size (NOBITS ones get
        filesz 0), False = none, or a list of :class:`Seg`.
    symbols: strings become ``STT_FILE`` LOCAL ABS symbols (e.g. ``"esp32c6.abc-cgu.0"``);
        :class:`Sym` objects give full control. A .symtab/.strtab pair is written only
        when there is at least one symbol.
    section_headers: False writes no section header table (e_shoff = e_shnum = 0).
    ei_class: 1 = ELF32, 2 = ELF64. ei_data: 1 = little-endian, 2 = big-endian.
    """
    secs = list(sections)
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ValueError("ei_class and ei_data must be 1 or 2 (patch the bytes for other values)")
    is64 = ei_class == 2
    end = "<" if ei_data == 1 else ">"
    word = "Q" if is64 else "I"  # addresses/offsets/sizes
    ehdr_fmt = end + "16sHHI" + word * 3 + "IHHHHHH"
    phdr_fmt = end + ("IIQQQQQQ" if is64 else "IIIIIIII")
    shdr_fmt = end + "II" + word * 4 + "II" + word * 2
    sym_fmt = end + ("IBBHQQ" if is64 else "IIIBBH")
    ehsize, phentsize, shentsize = struct.calcsize(ehdr_fmt), struct.calcsize(phdr_fmt), struct.calcsize(shdr_fmt)
    symentsize = struct.calcsize(sym_fmt)

    names = [s.name for s in secs]
    sec_index = {s.name: i + 1 for i, s in enumerate(secs)}

    # ---- program header specs (resolved to numbers once section offsets are known)
    if program_headers is True:
        seg_specs = [Seg(sections=(s.name,)) for s in secs if s.alloc and s.mem_size > 0]
    elif program_headers is False:
        seg_specs = []
    else:
        seg_specs = list(program_headers)
    phoff = ehsize if seg_specs else 0

    # ---- lay out section contents
    buf = bytearray(ehsize + phentsize * len(seg_specs))
    offsets: dict[int, int] = {}
    for i, s in enumerate(secs):
        align = max(s.align, 1)
        off = _congruent_offset(len(buf), s.addr, align) if s.alloc else _congruent_offset(len(buf), 0, align)
        offsets[i] = off
        if s.nobits:
            continue
        _pad_to(buf, off)
        buf += s.file_bytes

    # ---- symbol table
    extra: list[tuple[str, int, bytes, int, int, int, int]] = []  # name, type, data, link, info, align, entsize
    syms = [Sym(name=x, type="FILE", bind="LOCAL") if isinstance(x, str) else x for x in symbols]
    if syms:

        def bind_of(sym: Sym) -> int:
            return sym.bind if isinstance(sym.bind, int) else SYMBOL_BINDS[sym.bind.upper()]

        ordered = [s for s in syms if bind_of(s) == STB_LOCAL] + [s for s in syms if bind_of(s) != STB_LOCAL]
        first_global = 1 + sum(1 for s in syms if bind_of(s) == STB_LOCAL)
        strtab = _StrTab()
        symdata = bytearray(symentsize)  # index 0: the null symbol
        for sym in ordered:
            stype = sym.type if isinstance(sym.type, int) else SYMBOL_TYPES[sym.type.upper()]
            info = (bind_of(sym) << 4) | stype
            shndx = sec_index[sym.section] if sym.section is not None else sym.shndx
            name_off = strtab.add(sym.name)
            if is64:
                symdata += struct.pack(sym_fmt, name_off, info, 0, shndx, sym.value, sym.size)
            else:
                symdata += struct.pack(sym_fmt, name_off, sym.value, sym.size, info, 0, shndx)
        symtab_idx = len(secs) + 1
        strtab_idx = symtab_idx + 1
        extra.append((".symtab", SHT_SYMTAB, bytes(symdata), strtab_idx, first_global, 8 if is64 else 4, symentsize))
        extra.append((".strtab", SHT_STRTAB, bytes(strtab.data), 0, 0, 1, 0))

    # ---- section names
    shstrtab = _StrTab()
    name_offs = [shstrtab.add(n) for n in names]
    extra_name_offs = [shstrtab.add(e[0]) for e in extra]
    shstr_name_off = shstrtab.add(".shstrtab")
    extra.append((".shstrtab", SHT_STRTAB, bytes(shstrtab.data), 0, 0, 1, 0))
    extra_name_offs.append(shstr_name_off)

    extra_offsets = []
    for _name, _t, data, _link, _info, align, _es in extra:
        off = _congruent_offset(len(buf), 0, align)
        _pad_to(buf, off)
        extra_offsets.append(off)
        buf += data

    # ---- section header table
    shnum = 1 + len(secs) + len(extra)
    shstrndx = shnum - 1
    if section_headers:
        shoff = _congruent_offset(len(buf), 0, 8 if is64 else 4)
        _pad_to(buf, shoff)
        buf += bytes(shentsize)  # NULL section
        for i, s in enumerate(secs):
            size = s.mem_size
            buf += struct.pack(
                shdr_fmt, name_offs[i], s.sh_type, s.sh_flags, s.addr, offsets[i], size, s.link, s.info,
                s.align, s.entsize,
            )
        for (name, stype, data, link, info, align, es), off, noff in zip(extra, extra_offsets, extra_name_offs):
            buf += struct.pack(shdr_fmt, noff, stype, 0, 0, off, len(data), link, info, align, es)
    else:
        shoff, shnum, shstrndx = 0, 0, 0

    # ---- program headers
    by_name = {s.name: (i, s) for i, s in enumerate(secs)}
    pos = ehsize
    for spec in seg_specs:
        members = [by_name[n] for n in spec.sections]
        if members:
            first_i, first = members[0]
            vaddr = first.addr
            offset = offsets[first_i]
            memsz = max(s.addr + s.mem_size for _, s in members) - vaddr
            with_bits = [(i, s) for i, s in members if not s.nobits]
            filesz = (max(offsets[i] + len(s.file_bytes) for i, s in with_bits) - offset) if with_bits else 0
            flags = 0
            for _, s in members:
                flags |= _flags_for(s)
            align = max(max(s.align, 1) for _, s in members)
        else:
            vaddr = offset = memsz = filesz = flags = 0
            align = 1
        vaddr = spec.vaddr if spec.vaddr is not None else vaddr
        paddr = spec.paddr if spec.paddr is not None else vaddr
        offset = spec.offset if spec.offset is not None else offset
        filesz = spec.filesz if spec.filesz is not None else filesz
        memsz = spec.memsz if spec.memsz is not None else memsz
        flags = _seg_flags(spec.flags) if spec.flags is not None else flags
        align = spec.align if spec.align is not None else align
        if is64:
            ph = struct.pack(phdr_fmt, spec.type, flags, offset, vaddr, paddr, filesz, memsz, align)
        else:
            ph = struct.pack(phdr_fmt, spec.type, offset, vaddr, paddr, filesz, memsz, flags, align)
        buf[pos : pos + phentsize] = ph
        pos += phentsize

    # ---- ELF header
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    header = struct.pack(
        ehdr_fmt, ident, e_type, machine, e_version, entry, phoff, shoff, e_flags, ehsize,
        phentsize if seg_specs else 0, len(seg_specs), shentsize if section_headers else 0, shnum, shstrndx,
    )
    buf[:ehsize] = header
    return bytes(buf)


# --------------------------------------------------------------------------- presets


#: Where esp-hal-like apps of chips with one shared flash bus start their RAM and their flash mapping.
SHARED_BUS_BASES = {
    "esp32c6": (0x4080_0000, 0x4200_0000),
    "esp32h4": (0x4081_0000, 0x4200_0000),
    "esp32h21": (0x4080_0000, 0x4200_0000),
    "esp32s31": (0x2F00_0000, 0x4000_0000),
}


def esp_app_sections(chip: str = "esp32c3", *, text: bytes = b"\x01\x00" * 32, rodata: bytes = b"RODATA" * 8) -> list[Sec]:
    """Sections laid out like a small esp-hal app for ``chip`` (esp32c3, esp32, or one of SHARED_BUS_BASES),
    mirroring the real ELFs in the corpus: app descriptor first in the data mapping."""
    desc = app_descriptor()
    if chip == "esp32c3":
        return [
            Sec(".rodata_desc", 0x3C00_0020, desc, flags="A"),
            Sec(".trap", 0x4038_0000, b"\x6f\x00\x00\x00" * 32, flags="AX", align=256),
            Sec(".rwtext", 0x4038_0080, b"\x82\x80" * 8, flags="AX"),
            Sec(".rwdata_dummy", 0x3FC8_0000, size=0x90, flags="A", type="NOBITS"),
            Sec(".data", 0x3FC8_0090, b"DATA" * 4, flags="WA"),
            Sec(".bss", 0x3FC8_00A0, size=0x40, flags="WA", type="NOBITS"),
            Sec(".rodata", 0x3C00_0120, rodata, flags="A"),
            Sec(".rotext_dummy", 0x4200_0020, size=0x1_0000, flags="A", type="NOBITS", align=1),
            Sec(".text", 0x4201_0020, text, flags="AX"),
            metadata_section(chip),
        ]
    if chip in SHARED_BUS_BASES:
        ram, flash = SHARED_BUS_BASES[chip]
        ro_end = flash + 0x120 + len(rodata)
        return [
            Sec(".trap", ram, b"\x6f\x00\x00\x00" * 32, flags="AX", align=256),
            Sec(".rwtext", ram + 0x80, b"\x82\x80" * 8, flags="AX"),
            Sec(".data", ram + 0x90, b"DATA" * 4, flags="WA"),
            Sec(".bss", ram + 0xA0, size=0x40, flags="WA", type="NOBITS"),
            Sec(".rodata_desc", flash + 0x20, desc, flags="A"),
            Sec(".rodata", flash + 0x120, rodata, flags="A"),
            Sec(".text_gap", ro_end, size=0x24, flags="A", type="NOBITS", align=1),
            Sec(".text", (ro_end + 0x24 + 3) & ~3, text, flags="AX"),
            metadata_section(chip),
        ]
    if chip == "esp32":
        return [
            Sec(".rodata_desc", 0x3F40_0020, desc, flags="A"),
            Sec(".rwtext", 0x4008_0400, b"\x36\x41\x00\x1d\xf0\x00" * 4, flags="AX"),
            Sec(".data", 0x3FFB_0000, b"DATA" * 4, flags="WA"),
            Sec(".bss", 0x3FFB_0010, size=0x40, flags="WA", type="NOBITS"),
            Sec(".rodata", 0x3F40_0120, rodata, flags="A"),
            Sec(".text", 0x400D_0020, text, flags="AX"),
            Sec(".vectors", 0x4008_0000, bytes(0x400), flags="AX"),
            metadata_section(chip),
        ]
    raise ValueError(f"no preset for {chip!r}")


def esp_app_elf(chip: str = "esp32c3", **kwargs) -> bytes:
    """A whole small esp-hal-like ELF for ``chip`` (see :func:`esp_app_sections`)."""
    secs = esp_app_sections(chip)
    text = next(s for s in secs if s.name == ".text")
    kwargs.setdefault("machine", EM_XTENSA if chip == "esp32" else EM_RISCV)
    kwargs.setdefault("entry", text.addr)
    kwargs.setdefault("symbols", [f"{chip}.0123456789abcdef-cgu.0"])
    return build_elf(secs, **kwargs)
