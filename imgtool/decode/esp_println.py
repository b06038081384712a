"""esp-println's ``defmt-espflash`` framing: plain text, with each defmt frame sent as
``0xFF 0x00`` + rzCOBS-encoded bytes + ``0x00``, so text and frames share one serial line.

:class:`FrameSplitter` cuts a byte stream that arrives in arbitrary pieces into text and frames;
:func:`rzcobs_decode` undoes the frame encoding (reverse zero-compressing COBS, as the
``rzcobs`` crate writes it: the message is read back to front in groups).
"""

from __future__ import annotations

from collections.abc import Iterator

FRAME_START = b"\xff\x00"
FRAME_END = b"\x00"
#: A frame longer than this without its end marker is taken as lost (the device reset, bytes dropped).
MAX_FRAME = 64 * 1024

#: rzCOBS group markers (read from the end of the message).
_BITMAP_MAX = 0x7F  # 0x01..0x7f: seven slots, a set bit is a zero, a clear bit takes the next byte
_RUN_MARK = 0x80  # 0x80..0xfe: a zero, then (low 7 bits + 7) literal bytes
_RUN_BASE = 7
_LONG_RUN = 0xFF  # 134 literal bytes, no zero
_LONG_RUN_LEN = 134
_BITMAP_SLOTS = 7


class FrameError(ValueError):
    """The bytes are not a valid rzCOBS message."""


def rzcobs_decode(data: bytes) -> bytes:
    """The message rzCOBS-encoded in ``data`` (no ``0x00`` inside); may end in zero padding the decoder ignores."""
    out = bytearray()
    pos = len(data) - 1

    def take() -> int:
        nonlocal pos
        if pos < 0:
            raise FrameError("it ends in the middle of a group")
        value = data[pos]
        pos -= 1
        return value

    while pos >= 0:
        marker = take()
        if marker == 0:
            raise FrameError("it holds a zero byte")
        if marker <= _BITMAP_MAX:
            for bit in range(_BITMAP_SLOTS - 1, -1, -1):
                out.append(0 if marker & (1 << bit) else take())
        elif marker == _LONG_RUN:
            out.extend(take() for _ in range(_LONG_RUN_LEN))
        else:
            out.append(0)
            out.extend(take() for _ in range((marker & ~_RUN_MARK) + _RUN_BASE))
    out.reverse()
    return bytes(out)


class FrameSplitter:
    """Splits arriving bytes into ``("text", bytes)`` and ``("frame", bytes)`` pieces, in order.

    Text is handed out as soon as it arrives (but a trailing ``0xFF`` waits: it may start a frame);
    a frame once its end marker arrives. A frame interrupted by the start of another (the device
    reset mid-frame) comes out as ``("lost", bytes)``, as does one longer than :data:`MAX_FRAME`.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> Iterator[tuple[str, bytes]]:
        self._buffer += data
        while True:
            if self._in_frame:
                end = self._buffer.find(FRAME_END)
                if end < 0:
                    if len(self._buffer) > MAX_FRAME:
                        yield "lost", bytes(self._buffer)
                        self._buffer.clear()
                        self._in_frame = False
                    return
                frame = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._in_frame = False
                if frame.endswith(b"\xff") and not _decodes(frame):
                    yield "lost", frame[:-1]  # a new frame's 0xFF 0x00 cut this one short
                    self._in_frame = True
                    continue
                if frame:  # 0xFF 0x00 0x00 carries nothing
                    yield "frame", frame
            else:
                start = self._buffer.find(FRAME_START)
                if start < 0:
                    keep = 1 if self._buffer.endswith(b"\xff") else 0
                    text = bytes(self._buffer[: len(self._buffer) - keep])
                    del self._buffer[: len(text)]
                    if text:
                        yield "text", text
                    return
                if start:
                    yield "text", bytes(self._buffer[:start])
                del self._buffer[: start + len(FRAME_START)]
                self._in_frame = True


def _decodes(frame: bytes) -> bool:
    try:
        rzcobs_decode(frame)
    except FrameError:
        return False
    return True


__all__ = ["FRAME_END", "FRAME_START", "MAX_FRAME", "FrameError", "FrameSplitter", "rzcobs_decode"]
