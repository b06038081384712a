"""One exception root for everything a user can cause; the CLI turns these into one-line messages."""

from __future__ import annotations

import os


class ImgtoolError(Exception):
    """A failure the user can fix. ``path`` and ``field`` say where; the message says what and how."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.field:
            where.append(self.field)
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class UsageError(ImgtoolError):
    """A bad option value (unknown chip, flash size, ...)."""

    exit_code = 2


class InputError(ImgtoolError):
    """An input file is unreadable, malformed or does not fit the chip."""


class ElfError(InputError):
    """The ELF cannot be read or does not describe firmware for the chip."""


class ImageError(InputError):
    """An ESP image is malformed or does not verify."""


class LayoutError(ImgtoolError):
    """Things do not fit: segments outside memory, app larger than flash or partition."""


class PartitionError(InputError):
    """A partition table is malformed or breaks ESP-IDF's rules."""


class BootloaderError(ImgtoolError):
    """A bootloader cannot be found, downloaded, verified or placed."""


class OutputError(ImgtoolError):
    """An output cannot be written."""
