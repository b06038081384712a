"""Write outputs so that a failure or interruption never leaves a half-written file behind.

Portable by design (Linux, macOS, Windows): locks through ``filelock``, durable writes with one
``syncfs`` where Linux offers it and ``fsync`` per file elsewhere, folder syncs only where a
folder can be opened (POSIX).
"""

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


def sync_files(paths: list[Path]) -> None:
    """Make ``paths`` (written and closed files on one file system) durable, with one flush where possible.

    On Linux this is one ``syncfs(2)`` of the file system holding them: it writes back every
    dirty page and inode there, so it covers all ``paths`` exactly as one ``fsync`` per file
    would (what a later rename needs: the data is on disk before any name points at it), at
    the cost of one flush instead of one per file. (It also flushes other programs' pending
    writes on that file system; a cargo build's fresh ELF is usually among them anyway.)
    Elsewhere, or where ``syncfs`` is unavailable, each file gets its own ``fsync``.
    Write-back errors raise ``OSError``, as ``fsync`` does.
    """
    if not paths:
        return
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(paths[0], os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
            import ctypes

            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), os.fspath(paths[0]))
        finally:
            os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))  # Windows flushes only handles open for writing
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs():
    """libc's ``syncfs`` on Linux (not in the ``os`` module), else None."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames into ``path`` durable: fsync the folder itself.

    POSIX only: Windows cannot open a folder as a file (NTFS journals the renames itself), so
    there this does nothing; nor does it fail where a file system refuses to sync a folder.
    """
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


#: Folder locks live in this subfolder of imgtool's cache (one small file per locked folder), so locking
#: leaves nothing in the user's tree.
LOCK_SUBDIR = "locks"
#: Hex digits of the folder's path hash naming its lock file.
LOCK_NAME_DIGITS = 32


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path``: a lock file (created if needed) or an existing folder.

    Uses ``filelock``: ``flock`` on Linux and macOS, ``LockFileEx`` on Windows, so two imgtool
    processes serialise the same way everywhere. A folder cannot be locked on every platform,
    so a folder's lock is a file named after its resolved path in imgtool's cache folder
    (:func:`folder_lock_path`), leaving nothing behind in the user's tree. Where that folder
    cannot be created the lock is skipped: temp-file-and-rename still keeps every file whole.
    """
    from filelock import FileLock

    target = Path(path)
    lock_file = folder_lock_path(target) if target.is_dir() else target
    if lock_file is None:
        yield
        return
    # thread_local=False: a lock object is used by one thread only; each call opens its own.
    lock = FileLock(lock_file, thread_local=False)
    try:
        lock.acquire()
    except OSError:  # e.g. a lock file that cannot be created: go on unlocked, as on a file system without locks
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def folder_lock_path(folder: Path) -> Path | None:
    """The lock file standing for ``folder``: in imgtool's cache folder, named by a hash of its resolved path.

    The cache folder is per user (``$IMGTOOL_CACHE_DIR``, else the platform's user cache), so
    users never share or block each other's lock files; None where it cannot be created.
    """
    import hashlib

    from imgtool.bootloader import cache_dir

    key = os.path.normcase(os.fspath(folder.resolve()))
    locks = cache_dir() / LOCK_SUBDIR
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return locks / f"{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:LOCK_NAME_DIGITS]}.lock"
