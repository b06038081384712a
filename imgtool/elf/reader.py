"""Read what an image needs from a firmware ELF: loadable pieces, entry point, chip hints.

Headers are parsed with pyelftools' ELF declarations and only the sections we
place (plus the string tables hinting at the chip) are ever read, so debug info
costs nothing. Sizes and offsets are checked against the file before any read,
so a broken file gets a one-line error instead of a parser traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

from imgtool.atomic import input_kind
from imgtool.chips.table import CHIPS, EM_RISCV, EM_XTENSA
from imgtool.chips.units import MAX_APP_IMAGE_BYTES
from imgtool.errors import ElfError, InputError, LayoutError

ELF_MAGIC = b"\x7fELF"
#: ``ESP_APP_DESC_MAGIC_WORD``: the first word of ``esp_app_desc_t``, by which the reader finds it among the ELF's
#: pieces; ``image.format`` declares the descriptor with it.
APP_DESC_MAGIC = 0xABCD5432
ELFCLASS32 = 1
ELFDATA2LSB = 1
ELF32_HEADER_LEN = 52
ELF32_SHDR_LEN = 40
ELF32_PHDR_LEN = 32
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
PF_X = 0x1
#: esp-hal's metadata section is a few short strings; anything larger is not it.
METADATA_MAX = 4096
METADATA_SECTION = ".espressif.metadata"
MIN_CHIP_REVISION_SYMBOL = b"build_info.MIN_CHIP_REVISION"
#: esp-hal names the chip it was built for here (espflash reads it too); the ELF's own word for it.
CHIP_NAME_SYMBOL = b"build_info.CHIP_NAME"
METADATA_VALUE_MAX = 16
#: Bytes of the ELF hashed per read for the app descriptor's ``app_elf_sha256``.
ELF_HASH_BLOCK = 1 << 20
#: ``Elf32_Sym``: st_name, st_value, st_size, st_info, st_other, st_shndx.
ELF32_SYM = struct.Struct("<IIIBBH")
#: A function symbol's type (the low nibble of st_info).
STT_FUNC = 2

MACHINE_NAMES = {EM_XTENSA: "Xtensa", EM_RISCV: "RISC-V"}
#: pyelftools reports known machines by their ELF constant name.
EM_BY_NAME = {"EM_XTENSA": EM_XTENSA, "EM_RISCV": EM_RISCV}
#: ESP-IDF and esp-hal keep chip crates and metadata named like this.
_CHIP_TOKEN = re.compile(r"(\d*)(esp32[a-z0-9]*)")
_CHIP_NAMES_LONGEST_FIRST = sorted(CHIPS, key=len, reverse=True)


class LoadablePiece:
    """One allocated, file-backed ELF section (or program header) that must reach memory.

    A plain class (so is ElfInfo; :meth:`ElfInfo.read_all` keys its bytes by these very objects): every
    pack defines them, where a NamedTuple costs ~0.2 ms each.
    """

    __slots__ = ("name", "addr", "size", "offset", "executable")

    def __init__(self, name: str, addr: int, size: int, offset: int, executable: bool):
        self.name = name
        self.addr = addr
        self.size = size
        self.offset = offset
        self.executable = executable

    @property
    def end(self) -> int:
        return self.addr + self.size


class ElfInfo:
    """What a pack reads from an ELF: its machine, entry, loadable and NOBITS sections and chip hints."""

    __slots__ = (
        "path", "machine", "entry", "pieces", "nobits", "chip_hints", "file_size", "min_chip_revision", "metadata_chip",
    )

    def __init__(
        self,
        path: Path,
        machine: int,
        entry: int,
        pieces: list[LoadablePiece],
        nobits: list[LoadablePiece],
        chip_hints: set[str],
        file_size: int,
        min_chip_revision: int | None = None,
        metadata_chip: str | None = None,
    ):
        self.path = path
        self.machine = machine
        self.entry = entry
        self.pieces = pieces
        self.nobits = nobits
        self.chip_hints = chip_hints
        self.file_size = file_size
        #: esp-hal's ``build_info.MIN_CHIP_REVISION`` (major*100+minor), when the ELF records it.
        self.min_chip_revision = min_chip_revision
        #: esp-hal's ``build_info.CHIP_NAME`` (e.g. ``esp32c3``), when the ELF records it.
        self.metadata_chip = metadata_chip

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    def read_all(self) -> dict[LoadablePiece, bytes]:
        out = {}
        with open(self.path, "rb") as fh:
            for piece in self.pieces:
                data = _read_at(fh, piece.offset, piece.size)
                if len(data) != piece.size:
                    raise ElfError(
                        f"section {piece.name} is truncated (file ends before its data)", path=self.path
                    )
                out[piece] = data
        return out

    def sha256(self) -> bytes:
        """The SHA-256 of the whole file, read through one reused buffer (no fresh bytes per block)."""
        digest = hashlib.sha256()
        buf = bytearray(ELF_HASH_BLOCK)
        view = memoryview(buf)
        with open(self.path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
        return digest.digest()

    def find_app_descriptor(self, data: dict[LoadablePiece, bytes]) -> LoadablePiece | None:
        """The piece that starts with ``esp_app_desc_t``'s magic (named sections first)."""
        magic = APP_DESC_MAGIC.to_bytes(4, "little")
        preferred = (".rodata_desc", ".flash.appdesc")
        ordered = sorted(self.pieces, key=lambda p: (p.name not in preferred, p.addr))
        for piece in ordered:
            if not piece.executable and data[piece][:4] == magic:
                return piece
        return None


def read_elf(path: str | os.PathLike) -> ElfInfo:
    """Parse the ELF at ``path``; any malformation becomes an :class:`ElfError` naming the file."""
    path = Path(path)
    if os.path.exists(path):  # a missing file is named below, as open() finds it
        try:
            input_kind(path, "ELF file", pipes=False)
        except InputError as exc:
            raise ElfError(exc.message, path=path) from None
    try:
        with open(path, "rb") as fh:
            file_size = os.fstat(fh.fileno()).st_size
            head = fh.read(ELF32_HEADER_LEN)
            _check_ident(head, path)
            if len(head) < ELF32_HEADER_LEN:
                raise ElfError(f"truncated ELF header ({len(head)} of {ELF32_HEADER_LEN} bytes)", path=path)
            return _read_tables(fh, head, file_size, path)
    except FileNotFoundError:
        raise ElfError("no such file", path=path) from None
    except IsADirectoryError:
        raise ElfError("is a directory, expected an ELF file", path=path) from None
    except OSError as exc:
        raise ElfError(f"cannot read ({exc.strerror})", path=path) from None


def _read_tables(fh, head: bytes, file_size: int, path: Path) -> ElfInfo:
    """Section (or program) headers through pyelftools' ELF declarations.

    ``ELFStructs`` is the ELF layout pyelftools' own ``ELFFile`` parses with; using it directly
    skips the DWARF/EH machinery ``ELFFile`` imports, which a firmware image never needs.
    """
    # not at the top: verify without --elf and the monitor load this module for its constants; pyelftools ~4 ms
    from elftools.elf.structs import ELFStructs

    structs = ELFStructs(little_endian=True, elfclass=32)
    structs.create_basic_structs()
    header = structs.Elf_Ehdr.parse(head)
    machine = EM_BY_NAME.get(header.e_machine, header.e_machine)
    if machine not in MACHINE_NAMES:
        raise ElfError(
            f"ELF is for machine {machine}, not Xtensa ({EM_XTENSA}) or RISC-V ({EM_RISCV}); "
            "build for an Espressif target",
            path=path,
            field="e_machine",
        )
    structs.create_advanced_structs(header.e_type, header.e_machine, header.e_ident.EI_OSABI)
    shnum, phnum = header.e_shnum, header.e_phnum
    if shnum and (header.e_shentsize != ELF32_SHDR_LEN or header.e_shoff + shnum * ELF32_SHDR_LEN > file_size):
        raise ElfError("truncated or corrupt ELF: section header table lies past the end of the file", path=path)
    if phnum and (header.e_phentsize != ELF32_PHDR_LEN or header.e_phoff + phnum * ELF32_PHDR_LEN > file_size):
        raise ElfError("truncated or corrupt ELF: program header table lies past the end of the file", path=path)
    if shnum and 0 < header.e_shstrndx < shnum:
        table = _read_at(fh, header.e_shoff, shnum * ELF32_SHDR_LEN)
        sections = [structs.Elf_Shdr.parse(table[i : i + ELF32_SHDR_LEN]) for i in range(0, len(table), ELF32_SHDR_LEN)]
        names = _section_names(fh, sections, sections[header.e_shstrndx], file_size, path)
        pieces, nobits = _pieces_from_sections(sections, names, file_size, path)
        hints = _chip_hints(fh, sections, names, file_size)
        metadata = _metadata_values(fh, sections, names, file_size, (MIN_CHIP_REVISION_SYMBOL, CHIP_NAME_SYMBOL))
        min_rev = _revision_value(metadata[MIN_CHIP_REVISION_SYMBOL]) if MIN_CHIP_REVISION_SYMBOL in metadata else None
        chip_name = _text_value(metadata.get(CHIP_NAME_SYMBOL))
    else:
        table = _read_at(fh, header.e_phoff, phnum * ELF32_PHDR_LEN)
        segments = [structs.Elf_Phdr.parse(table[i : i + ELF32_PHDR_LEN]) for i in range(0, len(table), ELF32_PHDR_LEN)]
        pieces, nobits = _pieces_from_segments(segments, file_size, path)
        hints, min_rev, chip_name = set(), None, None
    if not pieces:
        raise ElfError("ELF has no loadable data (no allocated sections with contents)", path=path)
    _check_loadable(pieces, path)
    return ElfInfo(path, machine, header.e_entry, pieces, nobits, hints, file_size, min_rev, chip_name)


def _check_loadable(pieces: list[LoadablePiece], path: Path) -> None:
    """Refuse, before any section is read, pieces that overlap in memory or hold more than an app image can.

    Section data is read only after this, so a hostile ELF (a thousand sections aliasing the same
    bytes) costs its headers, not its claims.
    """
    ordered = sorted(pieces, key=lambda p: (p.addr, p.end))
    for prev, piece in zip(ordered, ordered[1:]):
        if piece.addr < prev.end:
            raise LayoutError(
                f"sections {prev.name} (0x{prev.addr:08x}..0x{prev.end:08x}) and {piece.name} "
                f"(0x{piece.addr:08x}..0x{piece.end:08x}) overlap; fix the linker script",
                path=path,
                field=piece.name,
            )
    total = sum(p.size for p in pieces)
    if total > MAX_APP_IMAGE_BYTES:
        raise ElfError(
            f"the loadable sections hold {total:,} bytes, more than an app image can ({MAX_APP_IMAGE_BYTES:,}); "
            "is this a firmware ELF?",
            path=path,
        )


def _read_at(fh, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def _check_ident(head: bytes, path: Path) -> None:
    if head[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file (no \\x7fELF magic); pass the firmware ELF cargo built", path=path)
    if len(head) < 16:
        raise ElfError("truncated ELF header", path=path)
    if head[4] != ELFCLASS32:
        raise ElfError("ELF is 64-bit; Espressif firmware ELFs are 32-bit", path=path, field="EI_CLASS")
    if head[5] != ELFDATA2LSB:
        raise ElfError("ELF is big-endian; Espressif firmware ELFs are little-endian", path=path, field="EI_DATA")


def _section_names(fh, sections, shstrtab, file_size: int, path: Path) -> list[str]:
    """Each section's name from the section-name string table (empty when it points nowhere)."""
    if shstrtab.sh_type == "SHT_NOBITS" or shstrtab.sh_offset + shstrtab.sh_size > file_size:
        raise ElfError("truncated or corrupt ELF: section name table (e_shstrndx) has no contents in the file", path=path)
    strings = _read_at(fh, shstrtab.sh_offset, shstrtab.sh_size)
    names = []
    for sec in sections:
        end = strings.find(b"\0", sec.sh_name)
        names.append(strings[sec.sh_name : end if end >= 0 else len(strings)].decode("utf-8", "replace"))
    return names


def _pieces_from_sections(sections, names: list[str], file_size: int, path: Path):
    pieces, nobits = [], []
    for sec, name in zip(sections, names):
        if not sec.sh_flags & SHF_ALLOC or sec.sh_size == 0:
            continue
        piece = LoadablePiece(
            name=name or f"section@0x{sec.sh_addr:x}",
            addr=sec.sh_addr,
            size=sec.sh_size,
            offset=sec.sh_offset,
            executable=bool(sec.sh_flags & SHF_EXECINSTR),
        )
        if sec.sh_type == "SHT_NOBITS":
            nobits.append(piece)
            continue
        if sec.sh_offset + sec.sh_size > file_size:
            raise ElfError(
                f"truncated ELF: section {piece.name} needs bytes up to 0x{sec.sh_offset + sec.sh_size:x} "
                f"but the file is 0x{file_size:x} long",
                path=path,
            )
        pieces.append(piece)
    return pieces, nobits


def _pieces_from_segments(segments, file_size: int, path: Path):
    pieces, nobits = [], []
    for index, seg in enumerate(segments):
        if seg.p_type != "PT_LOAD" or seg.p_memsz == 0:
            continue
        if seg.p_offset + seg.p_filesz > file_size:
            raise ElfError(f"truncated ELF: program header {index} data lies past the end of the file", path=path)
        common = {"executable": bool(seg.p_flags & PF_X)}
        if seg.p_filesz:
            pieces.append(LoadablePiece(f"segment{index}", seg.p_paddr, seg.p_filesz, seg.p_offset, **common))
        if seg.p_memsz > seg.p_filesz:
            nobits.append(
                LoadablePiece(f"segment{index}.bss", seg.p_paddr + seg.p_filesz, seg.p_memsz - seg.p_filesz, 0, **common)
            )
    return pieces, nobits


def _chip_hints(fh, sections, names: list[str], file_size: int) -> set[str]:
    """Chip names the ELF mentions: crate FILE symbols, mangled paths, esp-hal's metadata section.

    Symbol names all live in the string table, so one regex pass over it replaces walking every symbol.
    """
    hints: set[str] = set()
    for sec, name in zip(sections, names):
        if sec.sh_offset + sec.sh_size > file_size:
            continue
        if name == ".strtab" and sec.sh_type == "SHT_STRTAB":
            hints |= _names_in(_read_at(fh, sec.sh_offset, sec.sh_size).decode("latin-1"), bounded=True)
        elif name == METADATA_SECTION and sec.sh_type != "SHT_NOBITS" and sec.sh_size < METADATA_MAX:
            # Values are stored back to back ("ESP-IDFesp32c3serial"), so no boundary follows the name.
            hints |= _names_in(_read_at(fh, sec.sh_offset, sec.sh_size).decode("latin-1"), bounded=False)
    return hints


def _metadata_values(fh, sections, names: list[str], file_size: int, wanted: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """The values of esp-hal's ``wanted`` symbols in ``.espressif.metadata`` (``build_info.*``), by name.

    espflash raises the image's minimum chip revision to ``build_info.MIN_CHIP_REVISION`` and names
    the chip from ``build_info.CHIP_NAME``; the symbol table is read only when the string table
    names one of them.
    """
    index = {name: i for i, name in enumerate(names)}
    meta, symtab = index.get(METADATA_SECTION), index.get(".symtab")
    if meta is None or symtab is None:
        return {}
    strtab = sections[symtab].sh_link
    tables = (sections[meta], sections[symtab], sections[strtab] if strtab < len(sections) else None)
    if any(t is None or t.sh_type == "SHT_NOBITS" or t.sh_offset + t.sh_size > file_size for t in tables):
        return {}
    strings = _read_at(fh, tables[2].sh_offset, tables[2].sh_size)
    # a name starts right after a NUL (the table's first byte is one), so a longer name ending alike is not taken
    name_at = {at + 1: name for name in wanted if (at := strings.find(b"\0" + name + b"\0")) >= 0}
    if not name_at:
        return {}
    found = {}
    raw = _read_at(fh, tables[1].sh_offset, tables[1].sh_size)
    for st_name, st_value, st_size, _info, _other, st_shndx in ELF32_SYM.iter_unpack(raw[: len(raw) // ELF32_SYM.size * ELF32_SYM.size]):
        if st_name in name_at and st_shndx == meta and 0 < st_size <= METADATA_VALUE_MAX:
            start = st_value - tables[0].sh_addr
            if 0 <= start and start + st_size <= tables[0].sh_size:
                found[name_at[st_name]] = _read_at(fh, tables[0].sh_offset + start, st_size)
    return found


def _text_value(raw: bytes | None) -> str | None:
    """A metadata string value (``esp32c3``); None when absent or not plain ASCII."""
    text = raw.rstrip(b"\0") if raw else b""
    return text.decode("ascii").lower() if text and text.isascii() and text.isalnum() else None


def _revision_value(raw: bytes) -> int | None:
    """A metadata value as major*100+minor: ASCII digits (``300``) or a little-endian integer."""
    text = raw.rstrip(b"\0")
    if text.isdigit():
        return int(text)
    return int.from_bytes(raw, "little") if len(raw) in (1, 2, 4) else None


def _names_in(text: str, *, bounded: bool) -> set[str]:
    """Chip names in ``text``; a Rust-mangled length prefix (``7esp32c3``) cuts the token where it ends."""
    found = set()
    for length, token in _CHIP_TOKEN.findall(text):
        if length and 5 <= int(length) <= len(token):
            token = token[: int(length)]
        for name in _CHIP_NAMES_LONGEST_FIRST:
            if token.startswith(name) and (not bounded or len(token) == len(name) or not token[len(name)].isalpha()):
                found.add(name)
                break
    return found
