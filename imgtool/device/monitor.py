"""The serial monitor: the app's output as it comes, its crash addresses and defmt frames decoded.

:class:`AppOutput` turns received bytes into what to print (no I/O); :class:`Monitor` moves bytes
between a serial port, the terminal and an optional log file until Ctrl+C, the end of the stream
(the port closed) or a time limit. Both take their collaborators as values so tests drive them
with a fake device and a fake clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from serial import SerialException, serial_for_url

from imgtool.decode.addresses import decode_line, describe
from imgtool.decode.esp_println import FrameError, FrameSplitter, rzcobs_decode
from imgtool.device.ports import uses_usb_jtag

CTRL_C = 0x03
CTRL_R = 0x12
#: A line longer than this is printed without looking for addresses in it (bounded memory).
MAX_LINE = 8192
#: How long one read waits for the device before the keyboard is looked at again (seconds).
READ_WAIT = 0.05
_READ_CHUNK = 4096


class AppOutput:
    """Received bytes → bytes to print: text passes through at once; after each complete line come
    the functions and source lines of the code addresses in it; defmt frames become log lines."""

    def __init__(self, symbols=None, defmt_table=None, *, show_all: bool = False):
        self.symbols = symbols
        self.table = defmt_table
        self.show_all = show_all
        self._splitter = FrameSplitter() if defmt_table is not None else None
        self._line = bytearray()
        self._at_line_start = True

    def feed(self, data: bytes) -> bytes:
        if self._splitter is None:
            return self._text(data)
        out = bytearray()
        for kind, piece in self._splitter.feed(data):
            if kind == "text":
                out += self._text(piece)
            else:
                out += self._frame(piece, lost=kind == "lost")
        return bytes(out)

    def _text(self, data: bytes) -> bytes:
        out = bytearray(data)
        if data:
            self._at_line_start = data.endswith(b"\n")
        for chunk in data.splitlines(keepends=True):
            self._line += chunk
            if chunk.endswith(b"\n"):
                out += self._addresses(bytes(self._line))
                self._line.clear()
            elif len(self._line) > MAX_LINE:
                self._line.clear()
        return bytes(out)

    def _addresses(self, line: bytes) -> bytes:
        if self.symbols is None:
            return b""
        found = decode_line(line.decode("utf-8", "replace"), self.symbols, show_all=self.show_all)
        return "".join(f"{text}\n" for d in found for text in describe(d)).encode("utf-8")

    def _frame(self, frame: bytes, *, lost: bool) -> bytes:
        from imgtool.decode.defmt import DefmtError, decode_frame  # not at the top: only defmt apps need it (~18 ms)

        if lost:
            text = f"[defmt: a frame was cut short ({len(frame)} bytes); the device may have reset]"
        else:
            try:
                text = decode_frame(self.table, rzcobs_decode(frame)).render()
            except (FrameError, DefmtError) as exc:
                text = f"[defmt: cannot decode a frame ({len(frame)} bytes): {exc}]"
        prefix = b"" if self._at_line_start else b"\n"
        self._at_line_start = True
        return prefix + text.encode("utf-8") + b"\n"


@dataclass
class MonitorResult:
    reason: str  # "exit" (Ctrl+C), "eof" (the port closed), "timeout", "interrupt"
    received: int


class Monitor:
    """Copies the device's output to ``out`` (and ``log``) through ``output``; typed keys go to the device.

    ``serial`` is a pyserial port (or anything with ``read``/``write``/``in_waiting``); ``keys`` has a
    ``read()`` giving typed bytes, or is None (no keyboard); ``reset`` restarts the app (Ctrl+R).
    """

    def __init__(self, serial, output: AppOutput, out, *, keys=None, log=None, reset=None, timeout: float | None = None, clock=time.monotonic):
        self.serial, self.output, self.out, self.keys, self.log = serial, output, out, keys, log
        self.reset, self.timeout, self.clock = reset, timeout, clock

    def run(self) -> MonitorResult:
        start = self.clock()
        received = 0
        try:
            while True:
                try:
                    data = self.serial.read(max(1, min(self.serial.in_waiting, _READ_CHUNK)))
                except (SerialException, OSError):
                    self._emit(self.output.feed(b""))
                    return MonitorResult("eof", received)
                if data:
                    received += len(data)
                    self._emit(self.output.feed(data))
                if self.keys is not None and self._keys() == "exit":
                    return MonitorResult("exit", received)
                if self.timeout is not None and self.clock() - start >= self.timeout:
                    return MonitorResult("timeout", received)
        except KeyboardInterrupt:
            return MonitorResult("interrupt", received)

    def _keys(self) -> str | None:
        """Typed keys to the device, except Ctrl+C (exit) and Ctrl+R (reset the app)."""
        pending = bytearray()
        for byte in self.keys.read():
            if byte == CTRL_C:
                self._send(bytes(pending))
                return "exit"
            if byte == CTRL_R:
                self._send(bytes(pending))
                pending.clear()
                if self.reset is not None:
                    self.reset()
            else:
                pending.append(byte)
        self._send(bytes(pending))
        return None

    def _send(self, data: bytes) -> None:
        if data:
            self.serial.write(data)

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.out.write(data)
        self.out.flush()
        if self.log is not None:
            self.log.write(data)
            self.log.flush()


__all__ = ["CTRL_C", "CTRL_R", "AppOutput", "Monitor", "MonitorResult"]


def open_port(port: str, baud: int):
    """``port`` (a name or pyserial URL) opened for the monitor without pulling EN or IO0 low.

    pyserial raises DTR and RTS on open by default, which on the usual auto-reset circuit holds the
    chip in reset (or in its bootloader); both are cleared before the port opens.
    """
    link = serial_for_url(port, baudrate=baud, timeout=READ_WAIT, do_not_open=True)
    link.dtr = False
    link.rts = False
    link.open()
    return link


def app_reset(link, port: str) -> None:
    """Restart the chip into its app (EN pulsed, IO0 left high) as esptool's hard reset does; the
    USB-Serial/JTAG sequence on a chip's own USB port. A network URL cannot reset, so it does nothing."""
    if "://" in port:
        return
    from esptool.reset import HardReset  # not at the top: esptool (~140 ms) only to reset, never with --no-reset

    HardReset(link, uses_usb=uses_usb_jtag(port))()
