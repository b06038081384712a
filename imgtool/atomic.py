"""Write outputs so that a failure or interruption never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from imgtool.errors import OutputError


def write_bytes(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it into place."""
    target = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError("is a directory; give a file name", path=target)
    if not parent.is_dir():
        raise OutputError("the folder to write into does not exist; create it first", path=target)
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror}); choose another output path", path=target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write ({exc.strerror}); choose another output path", path=target) from None
        raise
    return target


def read_input(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> bytes:
    """Read a user's input file, turning OS failures into one-line errors."""
    from imgtool.errors import InputError

    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"is a directory, expected a {what}", path=p)
        with open(p, "rb") as fh:
            data = fh.read(limit + 1) if limit is not None else fh.read()
    except FileNotFoundError:
        raise InputError(f"no such {what}", path=p) from None
    except PermissionError:
        raise InputError(f"cannot read this {what} (permission denied)", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read this {what} ({exc.strerror})", path=p) from None
    if limit is not None and len(data) > limit:
        raise InputError(f"{what} is larger than {limit} bytes", path=p)
    return data


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path``: a lock file (created if needed) or an existing folder.

    Locking a folder itself leaves nothing behind in the user's tree. A no-op where
    ``fcntl`` does not exist or the file system refuses locks; temp-file-and-rename
    still keeps every file whole there.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX platforms
        yield
        return
    target = Path(path)
    fd = os.open(target, os.O_RDONLY) if target.is_dir() else os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
