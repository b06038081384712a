"""Intel HEX text, as ``esptool merge-bin --format hex`` writes it (through the ``intelhex`` package).

Only the parts are written; the erased flash between them is left out (the point
of HEX over a merged ``.bin``). The rules, which decide the exact bytes:

- data records (type 00) carry at most :data:`RECORD_BYTES` (16) contiguous bytes, start
  where a part (or the previous record) ends, and never cross a 64 KiB boundary; parts
  that touch form one run;
- when any byte lies above 0xFFFF, an extended linear address record (type 04) opens
  every run of records in a new 64 KiB window (and the first one);
- upper-case hex digits, ``\\n`` line ends, no start-address record, and the
  end-of-file record ``:00000001FF`` last.
"""

from __future__ import annotations

from collections.abc import Iterable

RECORD_BYTES = 16
WINDOW = 0x10000
TYPE_DATA = 0x00
TYPE_EOF = 0x01
TYPE_EXTENDED_LINEAR_ADDRESS = 0x04
EOL = "\n"


def record(kind: int, address: int, payload: bytes) -> str:
    """One ``:LLAAAATT<data>CC`` line (the checksum makes the bytes sum to 0 mod 256)."""
    body = bytes([len(payload), (address >> 8) & 0xFF, address & 0xFF, kind]) + payload
    return f":{(body + bytes([-sum(body) & 0xFF])).hex().upper()}{EOL}"


def intel_hex(parts: Iterable[tuple[int, bytes]]) -> bytes:
    """Intel HEX for the ``(offset, data)`` parts, which must not overlap."""
    runs: list[tuple[int, bytes]] = []
    for offset, data in sorted(((o, bytes(d)) for o, d in parts if d), key=lambda p: p[0]):
        if runs and runs[-1][0] + len(runs[-1][1]) == offset:  # adjacent parts are one run of records
            runs[-1] = (runs[-1][0], runs[-1][1] + data)
        else:
            runs.append((offset, data))
    need_window = bool(runs) and runs[-1][0] + len(runs[-1][1]) - 1 >= WINDOW
    lines: list[str] = []
    window = None
    for offset, data in runs:
        pos = 0
        while pos < len(data):
            address = offset + pos
            if need_window and address // WINDOW != window:
                window = address // WINDOW
                lines.append(record(TYPE_EXTENDED_LINEAR_ADDRESS, 0, window.to_bytes(2, "big")))
            length = min(RECORD_BYTES, len(data) - pos, WINDOW - address % WINDOW)
            lines.append(record(TYPE_DATA, address % WINDOW, data[pos : pos + length]))
            pos += length
    lines.append(record(TYPE_EOF, 0, b""))
    return "".join(lines).encode("ascii")


__all__ = ["intel_hex", "record"]
