"""Keys typed at the terminal, read without waiting and without echo, on POSIX and on Windows.

:func:`open_keyboard` gives a context manager whose ``read()`` returns the bytes typed since the
last call (empty when none). On POSIX the terminal leaves canonical mode with echo and signals
off, so Ctrl+C and Ctrl+R arrive as bytes, and is restored on exit; output processing is left
alone so ``\\n`` still ends lines. On Windows ``msvcrt`` reads the console; arrow and other
special keys become the ANSI sequences a POSIX terminal would send.
"""

from __future__ import annotations

import os
import select
import sys

#: What Enter sends: ESP-IDF's console and esp-idf-monitor use CR LF.
ENTER = b"\r\n"
#: Windows special keys (after a 0x00 or 0xE0 prefix) as ANSI sequences.
_WINDOWS_SPECIAL = {"H": b"\x1b[A", "P": b"\x1b[B", "M": b"\x1b[C", "K": b"\x1b[D", "G": b"\x1b[H", "O": b"\x1b[F", "S": b"\x1b[3~"}
_READ_CHUNK = 64


class PosixKeyboard:
    def __init__(self, fd: int):
        self.fd = fd
        self._saved = None

    def __enter__(self):
        import termios  # POSIX only: not at the top, so the module loads on Windows

        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[0] &= ~(termios.IXON | termios.ICRNL)  # iflag: Ctrl+S/Ctrl+Q and Enter as typed
        mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)  # lflag
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def __exit__(self, *exc):
        import termios  # POSIX only: not at the top, so the module loads on Windows

        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], 0)
        if not ready:
            return b""
        data = os.read(self.fd, _READ_CHUNK)
        return data.replace(b"\r", ENTER)


class WindowsKeyboard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def read(self) -> bytes:
        import msvcrt  # Windows only: not at the top, so the module loads on POSIX

        out = bytearray()
        while msvcrt.kbhit():
            key = msvcrt.getwch()
            if key in ("\x00", "\xe0"):
                out += _WINDOWS_SPECIAL.get(msvcrt.getwch(), b"")
            elif key == "\r":
                out += ENTER
            else:
                out += key.encode("utf-8", "replace")
        return bytes(out)


def open_keyboard():
    """The terminal's keyboard reader for this platform (stdin must be a terminal)."""
    if sys.platform == "win32":
        return WindowsKeyboard()
    return PosixKeyboard(sys.stdin.fileno())


__all__ = ["ENTER", "PosixKeyboard", "WindowsKeyboard", "open_keyboard"]
