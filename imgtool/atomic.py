"""Write outputs so that a failure or interruption never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from imgtool.errors import OutputError

#: New files get these permissions less the umask (0644 under umask 022), as any other tool's output does.
NEW_FILE_MODE = 0o666
#: ``-o -`` names standard output.
STDOUT = "-"
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def create_temp(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file in ``folder``, open for writing, with the umask's permissions (``mkstemp`` always gives 0600)."""
    for _ in range(100):
        path = Path(folder) / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}{suffix}"
        try:
            return os.open(path, _TEMP_FLAGS, NEW_FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {folder}")


def write_output(path: str | os.PathLike, data: bytes | str) -> Path | None:
    """:func:`write_bytes`, or standard output when ``path`` is ``-`` (then None is returned)."""
    if os.fspath(path) == STDOUT:
        import sys

        stream = sys.stdout.buffer
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        stream.flush()
        return None
    return write_bytes(path, data)


def write_bytes(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it into place; the umask sets its mode."""
    target = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError("is a directory; give a file name", path=target)
    if not parent.is_dir():
        raise OutputError("the folder to write into does not exist; create it first", path=target)
    try:
        fd, tmp = create_temp(parent, f".{target.name}.")
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
