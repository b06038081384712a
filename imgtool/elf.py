"""Read what an image needs from a firmware ELF: loadable pieces, entry point, chip hints.

pyelftools reads lazily, so debug info costs nothing; only the sections we
place are ever read. Header sanity is checked by hand first so a broken file
gets a one-line error instead of a parser traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from imgtool.chips import CHIPS, EM_RISCV, EM_XTENSA
from imgtool.errors import ElfError
from imgtool.image_format import APP_DESC_MAGIC

ELF_MAGIC = b"\x7fELF"
ELFCLASS32 = 1
ELFDATA2LSB = 1
ELF32_HEADER_LEN = 52
ELF32_SHDR_LEN = 40
ELF32_PHDR_LEN = 32
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHT_NOBITS = 8
PT_LOAD = 1

MACHINE_NAMES = {EM_XTENSA: "Xtensa", EM_RISCV: "RISC-V"}
#: ESP-IDF and esp-hal keep chip crates and metadata named like this.
_CHIP_TOKEN = re.compile(r"(\d*)(esp32[a-z0-9]*)")
_CHIP_NAMES_LONGEST_FIRST = sorted(CHIPS, key=len, reverse=True)


class LoadablePiece(NamedTuple):
    """One allocated, file-backed ELF section (or program header) that must reach memory."""

    name: str
    addr: int
    size: int
    offset: int
    executable: bool
    writable: bool

    @property
    def end(self) -> int:
        return self.addr + self.size


@dataclass
class ElfInfo:
    path: Path
    machine: int
    entry: int
    pieces: list[LoadablePiece]
    nobits: list[LoadablePiece]
    chip_hints: set[str]
    file_size: int

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    def read_all(self) -> dict[LoadablePiece, bytes]:
        out = {}
        with open(self.path, "rb") as fh:
            for piece in self.pieces:
                fh.seek(piece.offset)
                data = fh.read(piece.size)
                if len(data) != piece.size:
                    raise ElfError(
                        f"section {piece.name} is truncated (file ends before its data)", path=self.path
                    )
                out[piece] = data
        return out

    def sha256(self) -> bytes:
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
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
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(ELF32_HEADER_LEN)
    except FileNotFoundError:
        raise ElfError("no such file", path=path) from None
    except IsADirectoryError:
        raise ElfError("is a directory, expected an ELF file", path=path) from None
    except OSError as exc:
        raise ElfError(f"cannot read ({exc.strerror})", path=path) from None
    _check_ident(head, path)
    if len(head) < ELF32_HEADER_LEN:
        raise ElfError(f"truncated ELF header ({len(head)} of {ELF32_HEADER_LEN} bytes)", path=path)
    (e_type, machine, _ver, entry, phoff, shoff, _flags, _ehsize, phentsize, phnum, shentsize, shnum, shstrndx) = (
        struct.unpack_from("<HHIIIIIHHHHHH", head, 16)
    )
    if machine not in MACHINE_NAMES:
        raise ElfError(
            f"ELF is for machine {machine}, not Xtensa ({EM_XTENSA}) or RISC-V ({EM_RISCV}); "
            "build for an Espressif target",
            path=path,
            field="e_machine",
        )
    if shnum and (shentsize != ELF32_SHDR_LEN or shoff + shnum * shentsize > file_size):
        raise ElfError("truncated or corrupt ELF: section header table lies past the end of the file", path=path)
    if phnum and (phentsize != ELF32_PHDR_LEN or phoff + phnum * phentsize > file_size):
        raise ElfError("truncated or corrupt ELF: program header table lies past the end of the file", path=path)

    from elftools.common.exceptions import ELFError as PyElfError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            if shnum and 0 < shstrndx < shnum:
                pieces, nobits = _pieces_from_sections(elf, file_size, path)
            else:
                pieces, nobits = _pieces_from_segments(elf, file_size, path)
            hints = _chip_hints(elf)
    except ElfError:
        raise
    except (PyElfError, Exception) as exc:  # pyelftools/construct raise many types on corrupt input
        raise ElfError(f"corrupt ELF ({type(exc).__name__}: {exc})".splitlines()[0], path=path) from None
    if not pieces:
        raise ElfError("ELF has no loadable data (no allocated sections with contents)", path=path)
    return ElfInfo(path, machine, entry, pieces, nobits, hints, file_size)


def _check_ident(head: bytes, path: Path) -> None:
    if head[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file (no \\x7fELF magic); pass the firmware ELF cargo built", path=path)
    if len(head) < 16:
        raise ElfError("truncated ELF header", path=path)
    if head[4] != ELFCLASS32:
        raise ElfError("ELF is 64-bit; Espressif firmware ELFs are 32-bit", path=path, field="EI_CLASS")
    if head[5] != ELFDATA2LSB:
        raise ElfError("ELF is big-endian; Espressif firmware ELFs are little-endian", path=path, field="EI_DATA")


def _pieces_from_sections(elf, file_size: int, path: Path):
    pieces, nobits = [], []
    for sec in elf.iter_sections():
        h = sec.header
        if not h.sh_flags & SHF_ALLOC or h.sh_size == 0:
            continue
        piece = LoadablePiece(
            name=sec.name or f"section@0x{h.sh_addr:x}",
            addr=h.sh_addr,
            size=h.sh_size,
            offset=h.sh_offset,
            executable=bool(h.sh_flags & SHF_EXECINSTR),
            writable=bool(h.sh_flags & SHF_WRITE),
        )
        if h.sh_type == "SHT_NOBITS":
            nobits.append(piece)
            continue
        if h.sh_offset + h.sh_size > file_size:
            raise ElfError(
                f"truncated ELF: section {piece.name} needs bytes up to 0x{h.sh_offset + h.sh_size:x} "
                f"but the file is 0x{file_size:x} long",
                path=path,
            )
        pieces.append(piece)
    return pieces, nobits


def _pieces_from_segments(elf, file_size: int, path: Path):
    pieces, nobits = [], []
    for index, seg in enumerate(elf.iter_segments()):
        h = seg.header
        if h.p_type != "PT_LOAD" or h.p_memsz == 0:
            continue
        if h.p_offset + h.p_filesz > file_size:
            raise ElfError(f"truncated ELF: program header {index} data lies past the end of the file", path=path)
        common = dict(executable=bool(h.p_flags & 1), writable=bool(h.p_flags & 2))
        if h.p_filesz:
            pieces.append(LoadablePiece(f"segment{index}", h.p_paddr, h.p_filesz, h.p_offset, **common))
        if h.p_memsz > h.p_filesz:
            nobits.append(LoadablePiece(f"segment{index}.bss", h.p_paddr + h.p_filesz, h.p_memsz - h.p_filesz, 0, **common))
    return pieces, nobits


def _chip_hints(elf) -> set[str]:
    """Chip names the ELF mentions: crate FILE symbols, mangled paths, esp-hal's metadata section.

    Symbol names all live in the string table, so one regex pass over it replaces walking every symbol.
    """
    hints: set[str] = set()
    strtab = elf.get_section_by_name(".strtab")
    if strtab is not None and strtab.header.sh_type == "SHT_STRTAB":
        hints |= _names_in(strtab.data().decode("latin-1"), bounded=True)
    meta = elf.get_section_by_name(".espressif.metadata")
    if meta is not None and meta.header.sh_type != "SHT_NOBITS" and meta.header.sh_size < 4096:
        # Values are stored back to back ("ESP-IDFesp32c3serial"), so no boundary follows the name.
        hints |= _names_in(meta.data().decode("latin-1"), bounded=False)
    return hints


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
