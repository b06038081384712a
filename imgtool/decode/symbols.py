"""Code address → function and ``file:line`` from an ELF's DWARF, in process (no ``addr2line``).

The line tables of every compile unit are read once, when the :class:`Symbolizer` is made; the
function tree (subprograms and the inlined calls inside them) is read per compile unit on the first
address that falls in it, found through ``.debug_aranges``. Without DWARF the symbol table still
names the function.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from pathlib import Path

from imgtool.elf.reader import ELF32_SYM, STT_FUNC
from imgtool.errors import ElfError

#: ELF section flags: allocated, executable.
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
#: Line-table sequences the linker dropped (garbage-collected functions) start at address 0.
_DISCARDED_SEQUENCE_START = 0
#: DIEs whose children can hold functions (Rust nests them in modules and impl types).
_SCOPE_TAGS = {"DW_TAG_namespace", "DW_TAG_structure_type", "DW_TAG_enumeration_type", "DW_TAG_union_type", "DW_TAG_trait"}
_CODE_TAGS = {"DW_TAG_subprogram", "DW_TAG_inlined_subroutine"}
_NESTING_TAGS = _SCOPE_TAGS | _CODE_TAGS | {"DW_TAG_lexical_block", "DW_TAG_compile_unit"}


@dataclass(frozen=True)
class Frame:
    """One function at one source position; an inlined call yields several for one address."""

    function: str | None
    file: str | None
    line: int | None
    inlined: bool = False  # this frame's call was inlined into the next one

    def location(self) -> str:
        if not self.file:
            return "??"
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class _Node:
    ranges: list[tuple[int, int]]
    die: object
    children: list


class Symbolizer:
    """Looks code addresses up in one ELF; cheap to query many times."""

    def __init__(self, path: str | os.PathLike):
        # not at the top: the monitor without an ELF loads this module (through decode.addresses); pyelftools ~12 ms
        from elftools.common.exceptions import ELFError as PyElfError
        from elftools.elf.elffile import ELFFile

        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise ElfError(f"cannot read it ({exc.strerror})", path=self.path) from None
        try:
            self._elf = ELFFile(self._fh)
            self.code_ranges = sorted(
                (s["sh_addr"], s["sh_addr"] + s["sh_size"])
                for s in self._elf.iter_sections()
                if s["sh_flags"] & _SHF_ALLOC and s["sh_flags"] & _SHF_EXECINSTR and s["sh_size"]
            )
            self._functions: list[tuple[int, int, str]] | None = None  # read on first need
            self._dwarf = self._elf.get_dwarf_info() if self._elf.has_dwarf_info() else None
            self._rows: list[tuple[int, str | None, int, bool]] = []
            self._files: dict[int, list[str | None]] = {}
            if self._dwarf is not None:
                self._read_line_tables()
            self._aranges = self._dwarf.get_aranges() if self._dwarf is not None else None
        except (PyElfError, ValueError, KeyError, IndexError, AttributeError, OSError) as exc:
            self._fh.close()
            raise ElfError(f"cannot read its symbols or debug info ({exc})", path=self.path) from None
        self._addresses = [row[0] for row in self._rows]
        self._trees: dict[int, list[_Node]] = {}

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def in_app(self, address: int) -> bool:
        """Whether ``address`` lies in one of the app's executable sections."""
        i = bisect.bisect_right(self.code_ranges, (address, float("inf"))) - 1
        return i >= 0 and self.code_ranges[i][0] <= address < self.code_ranges[i][1]

    def lookup(self, address: int) -> list[Frame]:
        """The frames at ``address``, innermost first (an inlined call, then the function it sits in); empty when unknown."""
        file, line = self._line_at(address)
        chain = self._function_chain(address) if self._dwarf is not None else []
        if not chain:
            name = self._symbol_at(address)
            return [Frame(name, file, line)] if name or file else []
        frames = []
        for depth in range(len(chain) - 1, -1, -1):
            node = chain[depth]
            frames.append(Frame(self._name(node.die), file, line, inlined=depth > 0))
            if depth > 0:
                file, line = self._call_site(node.die)
        return frames

    # ------------------------------------------------------------------ line tables

    def _read_line_tables(self) -> None:
        rows = []
        for cu in self._dwarf.iter_CUs():
            program = self._dwarf.line_program_for_CU(cu)
            if program is None:
                continue
            files = file_names(cu, program)
            self._files[cu.cu_offset] = files
            base = 0 if program.header.version >= 5 else 1
            sequence: list = []
            for entry in program.get_entries():
                state = entry.state
                if state is None:
                    continue
                index = state.file - base
                name = files[index] if 0 <= index < len(files) else None
                sequence.append((state.address, name, state.line, state.end_sequence))
                if state.end_sequence:
                    if sequence[0][0] != _DISCARDED_SEQUENCE_START:
                        rows.extend(sequence)
                    sequence = []
        rows.sort(key=lambda row: (row[0], not row[3]))  # an end row before a start row at the same address
        self._rows = rows

    def _line_at(self, address: int) -> tuple[str | None, int | None]:
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None, None
        _, file, line, end = self._rows[i]
        if end:
            return None, None
        return file, line or None

    # ------------------------------------------------------------------ functions

    def _function_chain(self, address: int) -> list[_Node]:
        if self._aranges is not None:  # the index names the one unit; no entry means no unit has it
            offset = self._aranges.cu_offset_at_addr(address)
            cus = [self._dwarf.get_CU_at(offset)] if offset is not None else []
        else:
            cus = self._dwarf.iter_CUs()
        for cu in cus:
            chain: list[_Node] = []
            nodes = self._tree(cu)
            while True:
                hit = next((n for n in nodes if any(lo <= address < hi for lo, hi in n.ranges)), None)
                if hit is None:
                    break
                chain.append(hit)
                nodes = hit.children
            if chain:
                return chain
        return []

    def _tree(self, cu) -> list[_Node]:
        """The code DIEs of ``cu`` with their address ranges, nested as inlining nests them (read once)."""
        tree = self._trees.get(cu.cu_offset)
        if tree is not None:
            return tree

        def walk(die) -> list[_Node]:
            found = []
            for child in die.iter_children():
                if child.tag in _CODE_TAGS:
                    ranges = self._ranges(cu, child)
                    inner = walk(child)
                    if ranges:
                        found.append(_Node(ranges, child, inner))
                    else:
                        found.extend(inner)
                elif child.tag in _NESTING_TAGS and child.has_children:
                    found.extend(walk(child))
            return found

        tree = self._trees[cu.cu_offset] = walk(cu.get_top_DIE())
        return tree

    def _ranges(self, cu, die) -> list[tuple[int, int]]:
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high = attrs["DW_AT_high_pc"]
            end = high.value if high.form == "DW_FORM_addr" else low + high.value
            return [(low, end)] if low != _DISCARDED_SEQUENCE_START else []
        if "DW_AT_ranges" in attrs:
            lists = self._dwarf.range_lists()
            if lists is None:
                return []
            top = cu.get_top_DIE().attributes
            base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
            out = []
            for entry in lists.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
                if hasattr(entry, "base_address"):
                    base = entry.base_address
                    continue
                start, end = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    start, end = start + base, end + base
                if start != end and entry.begin_offset != _DISCARDED_SEQUENCE_START:
                    out.append((start, end))
            return out
        return []

    def _name(self, die) -> str | None:
        """The function's name qualified by the modules and types it is declared in (``blinky::main``)."""
        origin = die
        for _ in range(4):  # an inlined call → its abstract instance → its declaration
            attrs = origin.attributes
            ref = "DW_AT_abstract_origin" if "DW_AT_abstract_origin" in attrs else ("DW_AT_specification" if "DW_AT_specification" in attrs else None)
            if ref is None:
                break
            origin = origin.get_DIE_from_attribute(ref)
        if "DW_AT_name" not in origin.attributes:
            linkage = origin.attributes.get("DW_AT_linkage_name")
            return demangle(_text(linkage.value)) if linkage else None
        parts = [_text(origin.attributes["DW_AT_name"].value)]
        parent = origin.get_parent()
        while parent is not None and parent.tag in _SCOPE_TAGS:
            if "DW_AT_name" in parent.attributes:
                parts.append(_text(parent.attributes["DW_AT_name"].value))
            parent = parent.get_parent()
        return "::".join(reversed(parts))

    def _call_site(self, die) -> tuple[str | None, int | None]:
        attrs = die.attributes
        files = self._files.get(die.cu.cu_offset, [])
        line = attrs["DW_AT_call_line"].value if "DW_AT_call_line" in attrs else None
        file = None
        if "DW_AT_call_file" in attrs:
            program = self._dwarf.line_program_for_CU(die.cu)
            index = attrs["DW_AT_call_file"].value - (0 if program is not None and program.header.version >= 5 else 1)
            file = files[index] if 0 <= index < len(files) else None
        return file, line

    # ------------------------------------------------------------------ symbol table

    def _symbol_table(self) -> list[tuple[int, int, str]]:
        """``(start, size, name)`` of every sized function symbol, sorted (unpacked in bulk: pyelftools'
        per-symbol parsing costs most of a second on an esp-hal app)."""
        table = self._elf.get_section_by_name(".symtab")
        if table is None:
            return []
        strings = self._elf.get_section(table["sh_link"]).data()
        raw = table.data()
        found = []
        for st_name, st_value, st_size, st_info, _other, _shndx in ELF32_SYM.iter_unpack(raw[: len(raw) // ELF32_SYM.size * ELF32_SYM.size]):
            if st_info & 0xF == STT_FUNC and st_size and st_name:
                end = strings.find(b"\0", st_name)
                found.append((st_value & ~1, st_size, strings[st_name:end].decode("utf-8", "replace")))
        found.sort()
        return found

    def symbol_address(self, name: str) -> int | None:
        table = self._elf.get_section_by_name(".symtab")
        symbols = table.get_symbol_by_name(name) if table is not None else None
        return symbols[0]["st_value"] if symbols else None

    def _symbol_at(self, address: int) -> str | None:
        if self._functions is None:
            self._functions = self._symbol_table()
        i = bisect.bisect_right(self._functions, (address, float("inf"), "")) - 1
        if i >= 0:
            start, size, name = self._functions[i]
            if start <= address < start + size:
                return demangle(name)
        return None


def file_names(cu, program) -> list[str | None]:
    """A compile unit's line-program file table as paths (the directory joined as DWARF records it)."""
    version = program.header.version
    dirs = [_text(d) for d in program["include_directory"]]
    top = cu.get_top_DIE()
    comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else ""
    names = []
    for entry in program["file_entry"]:
        name = _text(entry.name)
        index = entry.dir_index
        if version >= 5:
            folder = dirs[index] if index < len(dirs) else ""
        else:
            folder = comp_dir if index == 0 else (dirs[index - 1] if index - 1 < len(dirs) else "")
        names.append(name if not folder or name.startswith("/") else f"{folder.rstrip('/')}/{name}")
    return names


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


_LEGACY_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}
_LEGACY_HASH = re.compile(r"h[0-9a-f]{16}")
_ESCAPE = re.compile(r"\$([A-Z]{1,2}|u[0-9a-f]{2,6})\$")


def demangle(name: str) -> str:
    """A Rust legacy-mangled symbol (``_ZN7blinky4main17h…E``) as a path (``blinky::main``); other names unchanged."""
    if not name.startswith("_ZN") or not name.endswith("E"):
        return name
    parts, pos, body = [], 3, name[:-1]
    while pos < len(body):
        digits = re.match(r"\d+", body[pos:])
        if digits is None:
            return name
        length = int(digits.group())
        pos += len(digits.group())
        parts.append(body[pos : pos + length])
        pos += length
    if parts and _LEGACY_HASH.fullmatch(parts[-1]):
        parts.pop()

    def unescape(part: str) -> str:
        if part.startswith("_$"):
            part = part[1:]
        part = _ESCAPE.sub(lambda m: _LEGACY_ESCAPES.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), part)
        return part.replace("..", "::")

    return "::".join(unescape(p) for p in parts) or name


__all__ = ["Frame", "Symbolizer", "demangle", "file_names"]
