"""Find the code addresses in a line the app printed, and say where each one is in the source.

Covers what Rust and ESP-IDF apps print on a crash: esp-backtrace's ``Backtrace:`` list and its
``0x…`` lines, ESP-IDF's Xtensa ``Backtrace: 0xPC:0xSP …``, RISC-V register dumps (``MEPC : 0x…``,
``RA``, ``PC=0x…``), ``Stack memory:`` rows and esp-backtrace's ``STACKDUMP: <pc> <bytes>``
line. Any 32-bit ``0x`` word is a candidate; one lying in the app's executable sections is
decoded, others are left alone unless ``show_all``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgtool.decode.symbols import Frame, Symbolizer

#: A 32-bit word as crash dumps print it.
_HEX_WORD = re.compile(r"0x([0-9a-fA-F]{8})\b")
#: esp-backtrace's raw stack line: the caller's PC, then the stack bytes as hex from SP upwards.
_STACKDUMP = re.compile(r"STACKDUMP: ([0-9a-fA-F]{8}) ([0-9a-fA-F]+)")
#: Bytes per stack word in a STACKDUMP line.
_WORD_BYTES = 4
#: How many decoded addresses one line may add (a STACKDUMP line can hold thousands of words).
MAX_ADDRESSES_PER_LINE = 64


@dataclass(frozen=True)
class Decoded:
    address: int
    frames: tuple[Frame, ...]  # empty: nothing known about it
    in_app: bool = True


def addresses_in(line: str) -> list[int]:
    """The candidate code addresses in ``line``, first seen first, each once."""
    found: list[int] = []
    dump = _STACKDUMP.search(line)
    if dump:
        found.append(int(dump.group(1), 16))
        data = dump.group(2)
        for i in range(0, len(data) - 2 * _WORD_BYTES + 1, 2 * _WORD_BYTES):
            found.append(int.from_bytes(bytes.fromhex(data[i : i + 2 * _WORD_BYTES]), "little"))
    found.extend(int(m.group(1), 16) for m in _HEX_WORD.finditer(line))
    return list(dict.fromkeys(found))


def decode_line(line: str, symbols: Symbolizer, *, show_all: bool = False) -> list[Decoded]:
    """The addresses of ``line`` that the app's ELF knows (all of them with ``show_all``)."""
    out = []
    for address in addresses_in(line):
        if symbols.in_app(address):
            out.append(Decoded(address, tuple(symbols.lookup(address))))
        elif show_all:
            out.append(Decoded(address, (), in_app=False))
        if len(out) == MAX_ADDRESSES_PER_LINE:
            break
    return out


def describe(decoded: Decoded) -> list[str]:
    """Text lines for one address: ``0x… - function`` then ``    at file:line`` per frame, innermost first."""
    if not decoded.frames:
        return [f"0x{decoded.address:08x} - {'??' if decoded.in_app else '(not in the app)'}"]
    lines = []
    for i, frame in enumerate(decoded.frames):
        head = f"0x{decoded.address:08x} - " if i == 0 else "    inlined into "
        lines.append(f"{head}{frame.function or '??'}")
        lines.append(f"    at {frame.location()}")
    return lines


__all__ = ["MAX_ADDRESSES_PER_LINE", "Decoded", "addresses_in", "decode_line", "describe"]
