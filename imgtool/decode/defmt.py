"""Our own decoder of defmt's wire format (versions 3 and 4, the ones defmt 0.3+/1.x write).

The ELF carries the table: each symbol in the ``.defmt`` section is named by a JSON object
(``{"package":…,"tag":"defmt_info","data":"x = {=u8}",…}``) and its address is the index the
device sends. A log frame is that index (``u16`` little-endian), then the timestamp's arguments
(when the app declares one, tag ``defmt_timestamp``), then the message's arguments in the order
of their positions in the format string, each encoded by its type:

- ``u8``…``u128``, ``i8``…``i128``, ``f32``, ``f64``: little-endian, fixed size; ``usize``/``isize``
  and every length: 4 bytes; ``char``: a ``u32``; ``bool``: one byte.
- ``str``: length + UTF-8; ``[u8]``: length + bytes; ``[u8; N]``: N bytes; ``istr``: a ``u16`` index.
- ``?`` (a ``Format`` value): the ``u16`` index of its own format string, then its arguments;
  an enum's format string lists variants split by ``|`` and a discriminant (``u8`` up to 256
  variants) picks one. ``[?]``: length, one index, then each element's arguments; ``[?; N]``: the same
  without the length.
- ``M..N`` bitfields: the arguments sharing a position are sent once, as the bytes spanning all
  their bits. ``__internal_Debug``/``__internal_Display`` (``Debug2Format``/``Display2Format``):
  UTF-8 up to a ``0xFF``. ``__internal_FormatSequence``: ``Format`` values until a zero index.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError as PyElfError
from elftools.elf.elffile import ELFFile

from imgtool.decode.symbols import file_names
from imgtool.elf.reader import ELF32_SYM, METADATA_SECTION
from imgtool.errors import ElfError

SUPPORTED_VERSIONS = ("3", "4")
DEFMT_SECTION = ".defmt"
_VERSION_PREFIX = "_defmt_version_ = "
_ENCODING_PREFIX = "_defmt_encoding_ = "
LEVEL_TAGS = {"defmt_trace": "TRACE", "defmt_debug": "DEBUG", "defmt_info": "INFO", "defmt_warn": "WARN", "defmt_error": "ERROR"}
PRINTLN_TAG = "defmt_println"
TIMESTAMP_TAG = "defmt_timestamp"
#: The one DWARF variable per log statement; its address is the statement's index.
LOG_STATEMENT_VARIABLE = "DEFMT_LOG_STATEMENT"
#: DWARF expression opcode: the operand is an address.
_DW_OP_ADDR = 0x03
_INDEX = struct.Struct("<H")
_FIXED = {
    "u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q", "i8": "<b", "i16": "<h", "i32": "<i", "i64": "<q",
    "usize": "<I", "isize": "<i", "f32": "<f", "f64": "<d", "char": "<I",
}  # fmt: skip
_WIDE = {"u128": False, "i128": True}
_LENGTH = struct.Struct("<I")
#: The terminator of a Debug2Format/Display2Format string.
_PREFORMATTED_END = 0xFF
#: Nesting deeper than this is a corrupt frame, not a real value.
_MAX_DEPTH = 32


class DefmtError(ValueError):
    """A frame that does not decode against the table (corrupt, truncated, or from another build)."""


# ---------------------------------------------------------------------------- format strings


@dataclass(frozen=True)
class Param:
    index: int
    type: str  # "u8", "?", "[u8]", "[?; 4]", "0..4" (a bitfield), ...
    hint: str = ""

    @property
    def bits(self) -> tuple[int, int] | None:
        m = re.fullmatch(r"(\d+)\.\.(\d+)", self.type)
        return (int(m.group(1)), int(m.group(2))) if m else None


_PARAM = re.compile(r"\{(\d+)?(?:=([^:}]*))?(?::([^}]*))?\}")


def parse_format(text: str) -> list[str | Param]:
    """``"x={=u8:x} {}"`` → literal strings and parameters; ``{{`` and ``}}`` are literal braces."""
    parts: list[str | Param] = []
    literal = []
    implicit = 0
    i = 0
    while i < len(text):
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(text[i])
            i += 2
            continue
        if text[i] == "{":
            m = _PARAM.match(text, i)
            if m is None:
                raise DefmtError(f"unreadable format string {text!r}")
            if literal:
                parts.append("".join(literal))
                literal = []
            if m.group(1) is not None:
                index = int(m.group(1))
            else:
                index = implicit
                implicit += 1
            parts.append(Param(index, (m.group(2) or "?").strip(), (m.group(3) or "").strip()))
            i = m.end()
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append("".join(literal))
    return parts


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Entry:
    tag: str
    text: str


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    module: str = ""


@dataclass
class Table:
    """The defmt strings of one ELF, by index."""

    entries: dict[int, Entry]
    timestamp: Entry | None = None
    version: str = "4"
    encoding: str = "rzcobs"
    locations: dict[int, Location] = field(default_factory=dict)

    @classmethod
    def from_elf(cls, path: str | os.PathLike, *, locations: bool = True) -> Table | None:
        """The ELF's table, or None when the app does not use defmt."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                elf = ELFFile(fh)
                index = next((i for i, s in enumerate(elf.iter_sections()) if s.name == DEFMT_SECTION), None)
                symtab = elf.get_section_by_name(".symtab")
                if index is None or symtab is None:
                    return None
                table = cls._from_symbols(symtab.iter_symbols(), index, path)
                if locations and elf.has_dwarf_info():
                    table.locations = _locations(elf.get_dwarf_info(), set(table.entries))
                return table
        except OSError as exc:
            raise ElfError(f"cannot read it ({exc.strerror})", path=path) from None
        except (PyElfError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ElfError(f"cannot read its defmt table ({exc})", path=path) from None

    @classmethod
    def _from_symbols(cls, symbols, section_index: int, path: Path) -> Table:
        entries: dict[int, Entry] = {}
        timestamp = None
        version = encoding = None
        for sym in symbols:
            name = sym.name.strip('"')
            if name.startswith(_VERSION_PREFIX):
                version = name[len(_VERSION_PREFIX) :]
                continue
            if name.startswith(_ENCODING_PREFIX):
                encoding = name[len(_ENCODING_PREFIX) :]
                continue
            if sym["st_shndx"] != section_index or not sym.name.startswith("{"):
                continue
            try:
                doc = json.loads(sym.name)
                entry = Entry(str(doc["tag"]), str(doc["data"]))
            except (ValueError, KeyError, TypeError):
                continue
            if entry.tag == TIMESTAMP_TAG:
                timestamp = entry
            else:
                entries[sym["st_value"]] = entry
        if version is None:
            raise ElfError("has a .defmt section but no _defmt_version_ symbol; link with defmt.x", path=path)
        if version not in SUPPORTED_VERSIONS:
            raise ElfError(
                f"uses defmt wire format version {version}; imgtool decodes versions {', '.join(SUPPORTED_VERSIONS)}",
                path=path,
            )
        if encoding not in (None, "rzcobs"):
            raise ElfError(f"uses defmt encoding '{encoding}'; esp-println's defmt-espflash feature sends rzcobs", path=path)
        return cls(entries, timestamp, version, encoding or "rzcobs")


#: esp-hal's metadata symbol naming the app's log format ("serial" or "defmt"), as espflash reads it.
LOG_FORMAT_SYMBOL = b"espflash.LOG_FORMAT"


def log_format(path: str | os.PathLike) -> str | None:
    """The ``espflash.LOG_FORMAT`` value in the ELF's ``.espressif.metadata`` (None when absent or unreadable)."""
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            names = [s.name for s in elf.iter_sections()]
            symtab = elf.get_section_by_name(".symtab")
            if METADATA_SECTION not in names or symtab is None:
                return None
            meta_index = names.index(METADATA_SECTION)
            meta = elf.get_section(meta_index)
            strings = elf.get_section(symtab["sh_link"]).data()
            at = strings.find(LOG_FORMAT_SYMBOL + b"\0")
            if at < 0:
                return None
            raw, data = symtab.data(), meta.data()
            for st_name, st_value, st_size, _info, _other, st_shndx in ELF32_SYM.iter_unpack(raw[: len(raw) // ELF32_SYM.size * ELF32_SYM.size]):
                if st_name == at and st_shndx == meta_index:
                    start = st_value - meta["sh_addr"]
                    return data[start : start + st_size].decode("ascii", "replace").strip("\0") or None
    except (OSError, PyElfError, ValueError, IndexError):
        return None
    return None


def _locations(dwarf, indices: set[int]) -> dict[int, Location]:
    """Each log statement's source line and module, from the DWARF variable defmt declares for it."""
    found: dict[int, Location] = {}
    for cu in dwarf.iter_CUs():
        program = None
        files: list = []
        modules: list[tuple[int, str]] = []  # (depth, name) of the namespaces around the current DIE
        depth = 0
        for die in cu.iter_DIEs():
            if die.is_null():  # the end of a DIE's children
                depth -= 1
                continue
            while modules and modules[-1][0] >= depth:
                modules.pop()
            attrs = die.attributes
            if die.tag == "DW_TAG_namespace" and "DW_AT_name" in attrs:
                modules.append((depth, attrs["DW_AT_name"].value.decode("utf-8", "replace")))
            elif die.tag == "DW_TAG_variable" and _is_log_statement(attrs, indices):
                if program is None:
                    program = dwarf.line_program_for_CU(cu)
                    files = file_names(cu, program) if program is not None else []
                address = _address_of(attrs)
                found[address] = Location(_decl_file(files, attrs, program), attrs["DW_AT_decl_line"].value, "::".join(n for _, n in modules))
            if die.has_children:
                depth += 1
    return found


def _is_log_statement(attrs, indices: set[int]) -> bool:
    name = attrs.get("DW_AT_name")
    return (
        name is not None and name.value == LOG_STATEMENT_VARIABLE.encode()
        and "DW_AT_decl_line" in attrs and _address_of(attrs) in indices
    )  # fmt: skip


def _address_of(attrs) -> int | None:
    """The address a ``DW_OP_addr`` location expression names (a log statement's index)."""
    loc = attrs.get("DW_AT_location")
    expr = loc.value if loc is not None else None
    if not isinstance(expr, list) or not expr or expr[0] != _DW_OP_ADDR:
        return None
    return int.from_bytes(bytes(expr[1:]), "little")


def _decl_file(files: list, attrs, program) -> str:
    if program is None or "DW_AT_decl_file" not in attrs:
        return "?"
    i = attrs["DW_AT_decl_file"].value - (0 if program.header.version >= 5 else 1)
    return (files[i] or "?") if 0 <= i < len(files) else "?"


# ---------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Formatted:
    """A ``Format`` value: the format string chosen (an enum's variant) and its decoded arguments."""

    parts: tuple
    args: dict


@dataclass(frozen=True)
class Preformatted:
    text: str


@dataclass(frozen=True)
class LogFrame:
    level: str | None  # None for defmt::println!
    timestamp: str | None
    message: str
    location: Location | None = None

    def render(self) -> str:
        head = " ".join(x for x in (self.timestamp, f"{self.level:<5}" if self.level else None) if x)
        text = f"{head} {self.message}" if head else self.message
        if self.location:
            where = f"{self.location.module} @ " if self.location.module else ""
            text += f"\n└─ {where}{self.location.file}:{self.location.line}"
        return text


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DefmtError("the frame ends early (truncated)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def until(self, end: int) -> bytes:
        stop = self.data.find(bytes([end]), self.pos)
        if stop < 0:
            raise DefmtError("a preformatted string has no end (truncated)")
        out = self.data[self.pos : stop]
        self.pos = stop + 1
        return out


def decode_frame(table: Table, data: bytes) -> LogFrame:
    """One log frame (already rzCOBS-decoded) as text; :class:`DefmtError` when it does not fit the table."""
    reader = _Reader(data)
    index = reader.unpack("<H")
    entry = table.entries.get(index)
    if entry is None:
        raise DefmtError(f"index {index} is not in the ELF's defmt table (another build?)")
    if entry.tag not in LEVEL_TAGS and entry.tag != PRINTLN_TAG:
        raise DefmtError(f"index {index} is a {entry.tag} string, not a log statement")
    timestamp = None
    if table.timestamp is not None and entry.tag != PRINTLN_TAG:
        timestamp = _render(_decode(table, reader, table.timestamp.text, 0))
    message = _render(_decode(table, reader, entry.text, 0))
    if any(reader.data[reader.pos :]):  # rzCOBS may leave zero padding; anything else does not belong
        raise DefmtError(f"{len(reader.data) - reader.pos} bytes left over after the arguments (another build?)")
    return LogFrame(LEVEL_TAGS.get(entry.tag), timestamp, message, table.locations.get(index))


def _decode(table: Table, reader: _Reader, text: str, depth: int) -> Formatted:
    if depth > _MAX_DEPTH:
        raise DefmtError("values nest too deeply")
    parts = tuple(parse_format(text))
    params: dict[int, Param] = {}
    spans: dict[int, tuple[int, int]] = {}
    for part in parts:
        if isinstance(part, Param):
            if part.bits:
                low, high = spans.get(part.index, part.bits)
                spans[part.index] = (min(low, part.bits[0]), max(high, part.bits[1]))
            params.setdefault(part.index, part)
    args = {}
    for index in sorted(params):
        param = params[index]
        if index in spans:
            args[index] = _bitfield(reader, *spans[index])
        else:
            args[index] = _value(table, reader, param.type, depth)
    return Formatted(parts, args)


def _bitfield(reader: _Reader, low: int, high: int) -> int:
    first, last = low // 8, (high - 1) // 8
    size = last - first + 1
    width = 1 if size == 1 else 2 if size == 2 else 4 if size <= 4 else 8 if size <= 8 else 16
    return int.from_bytes(reader.take(width), "little") << (first * 8)


def _value(table: Table, reader: _Reader, kind: str, depth: int):
    if kind in _FIXED:
        value = reader.unpack(_FIXED[kind])
        if kind == "char":
            try:
                return chr(value)
            except (ValueError, OverflowError):
                raise DefmtError(f"{value:#x} is not a char") from None
        return value
    if kind in _WIDE:
        return int.from_bytes(reader.take(16), "little", signed=_WIDE[kind])
    if kind == "u24":
        return int.from_bytes(reader.take(3), "little")
    if kind == "bool":
        byte = reader.take(1)[0]
        if byte > 1:
            raise DefmtError(f"{byte} is not a bool")
        return bool(byte)
    if kind == "str":
        return _utf8(reader.take(reader.unpack("<I")))
    if kind == "istr":
        return _string(table, reader.unpack("<H"))
    if kind == "[u8]":
        return reader.take(reader.unpack("<I"))
    if kind in ("__internal_Debug", "__internal_Display"):
        return Preformatted(_utf8(reader.until(_PREFORMATTED_END)))
    if kind == "?":
        return _format_value(table, reader, _string(table, reader.unpack("<H")), depth)
    if kind == "[?]":
        return _format_list(table, reader, reader.unpack("<I"), depth)
    if kind == "__internal_FormatSequence":
        items = []
        while (index := reader.unpack("<H")) != 0:
            items.append(_format_value(table, reader, _string(table, index), depth))
        return tuple(items)
    array = re.fullmatch(r"\[(u8|\?);\s*(\d+)\]", kind)
    if array:
        count = int(array.group(2))
        return reader.take(count) if array.group(1) == "u8" else _format_list(table, reader, count, depth)
    raise DefmtError(f"unknown argument type {{={kind}}} (a newer defmt?)")


def _format_value(table: Table, reader: _Reader, text: str, depth: int) -> Formatted:
    return _decode(table, reader, _variant(reader, text), depth + 1)


def _format_list(table: Table, reader: _Reader, count: int, depth: int) -> list:
    if count == 0:
        return []
    if count > len(reader.data):  # every element takes at least... nothing, but a count beyond the frame is corrupt
        raise DefmtError(f"a list of {count} elements cannot fit in the frame")
    text = _string(table, reader.unpack("<H"))
    return [_format_value(table, reader, text, depth) for _ in range(count)]


def _variant(reader: _Reader, text: str) -> str:
    """An enum's format string (``"None|Some({=u8})"``) narrowed to the variant the discriminant picks."""
    if "|" not in text:
        return text
    variants = text.split("|")
    bars = len(variants) - 1
    width = 1 if bars < 1 << 8 else 2 if bars < 1 << 16 else 4
    pick = int.from_bytes(reader.take(width), "little")
    if pick >= len(variants):
        raise DefmtError(f"variant {pick} of {len(variants)} in {text!r}")
    return variants[pick]


def _string(table: Table, index: int) -> str:
    entry = table.entries.get(index)
    if entry is None:
        raise DefmtError(f"index {index} is not in the ELF's defmt table (another build?)")
    return entry.text


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DefmtError("a string is not UTF-8") from None


# ---------------------------------------------------------------------------- rendering

_INT_HINT = re.compile(r"(#)?(0\d+)?([xXbo])")
_TIME_HINTS = {"us": 6, "ms": 3}


def _render(value: Formatted) -> str:
    out = []
    for part in value.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        arg = value.args[part.index]
        if part.bits:
            low, high = part.bits
            arg = (arg >> low) & ((1 << (high - low)) - 1)
        out.append(_show(arg, part.hint, part.type))
    return "".join(out)


def _show(arg, hint: str, kind: str = "") -> str:
    if isinstance(arg, Formatted):
        return _render(arg)
    if isinstance(arg, Preformatted):
        return arg.text
    if isinstance(arg, bool):
        return "true" if arg else "false"
    if isinstance(arg, int):
        return _show_int(arg, hint)
    if isinstance(arg, float):
        return _show_float(arg, kind)
    if isinstance(arg, str):
        return json.dumps(arg, ensure_ascii=False) if hint == "?" else arg
    if isinstance(arg, bytes):
        if hint == "a":
            return "b\"" + "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in arg) + "\""
        return "[" + ", ".join(_show_int(b, hint) for b in arg) + "]"
    if isinstance(arg, (list, tuple)):
        items = [_show(item, hint) for item in arg]
        return "[" + ", ".join(items) + "]" if isinstance(arg, list) else "".join(items)
    return str(arg)


def _show_int(value: int, hint: str) -> str:
    m = _INT_HINT.fullmatch(hint)
    if m:
        return format(value, f"{m.group(1) or ''}{m.group(2) or ''}{m.group(3)}")
    if hint in _TIME_HINTS:
        digits = _TIME_HINTS[hint]
        return f"{value // 10**digits}.{value % 10**digits:0{digits}d}"
    return str(value)


def _show_float(value: float, kind: str) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind == "f32":  # the shortest text that reads back as the same f32, as Rust prints it
        for digits in range(1, 10):
            text = f"{value:.{digits}g}"
            if struct.unpack("<f", struct.pack("<f", float(text)))[0] == value:
                break
    else:
        text = repr(value)
    if "e" in text:
        text = f"{float(text):f}".rstrip("0")
    if "." not in text:
        text += ".0"
    return text[:-1] + "0" if text.endswith(".") else text


__all__ = ["LOG_FORMAT_SYMBOL", "log_format", "DefmtError", "Entry", "Location", "LogFrame", "Param", "SUPPORTED_VERSIONS", "Table", "decode_frame", "parse_format"]
