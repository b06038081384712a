"""What an image puts in memory, as a sparse map; used to prove an image loads an ELF intact."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from imgtool.image.format import APP_DESC_ELF_SHA256_OFFSET, Segment
from imgtool.image.segments import PADDING_ADDR


class LoadedMemory:
    """Address-sorted, non-overlapping runs of bytes the bootloader would load or map."""

    def __init__(self, segments: Iterable[Segment]):
        runs = sorted((s.addr, s.data) for s in segments if s.addr != PADDING_ADDR and s.data)
        self._starts = [addr for addr, _ in runs]
        self._runs = runs

    def explain(self, addr: int) -> str:
        """Nothing to add: a byte here is the segment's byte."""
        return ""

    def read(self, addr: int, length: int) -> bytes | None:
        """The ``length`` bytes at ``addr``, or None when any of them is not loaded (runs may abut)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        out = bytearray()
        cursor, end = addr, addr + length
        while cursor < end:
            if i >= len(self._runs):
                return None
            start, data = self._runs[i]
            if not start <= cursor < start + len(data):
                return None
            take = min(end, start + len(data)) - cursor
            out += data[cursor - start : cursor - start + take]
            cursor += take
            i += 1
        return bytes(out)


def elf_mismatches(
    segments: Iterable[Segment], elf, *, app_desc_addr: int | None = None, contents: dict | None = None, memory=None
) -> list[str]:
    """Sections of ``elf`` (an ElfInfo) whose bytes the image does not load intact, one message each.

    ``memory`` is what to read instead of the segments' bytes: a ``boot_rules.CpuView`` (what the CPU
    reads through the MMU as the bootloader maps it); its ``explain`` says why a flash address reads
    what it does. The app descriptor's ELF SHA-256 field is filled in by the image writer, so it is not
    compared. ``contents`` (from ``elf.read_all()``) saves a second read when the caller has it already.
    """
    memory = memory if memory is not None else LoadedMemory(segments)
    problems = []
    contents = contents if contents is not None else elf.read_all()
    for piece, expected in contents.items():
        actual = memory.read(piece.addr, piece.size)
        if actual is None:
            why = memory.explain(piece.addr)
            problems.append(
                f"section {piece.name} (0x{piece.addr:08x}, {piece.size} bytes) is not loaded by the image" + (f": {why}" if why else "")
            )
            continue
        if piece.addr == app_desc_addr:
            lo, hi = APP_DESC_ELF_SHA256_OFFSET, APP_DESC_ELF_SHA256_OFFSET + 32
            actual = actual[:lo] + expected[lo:hi] + actual[hi:]
        if actual != expected:
            first = next(i for i, (a, b) in enumerate(zip(actual, expected)) if a != b)
            why = memory.explain(piece.addr + first)
            problems.append(f"section {piece.name} differs at 0x{piece.addr + first:08x}" + (f" as the CPU reads it: {why}" if why else ""))
    return problems
