"""Every file and folder imgtool writes goes through here, so nothing is ever half-written.

What it guarantees:

- A single file (:func:`write_bytes`, :func:`staged_file`) is written to a temp file beside
  its target, flushed to disk, then renamed over it: readers see the old file or the new one,
  never a mix. ``-o -`` (:func:`write_output`) writes standard output instead.
- An output folder (:func:`write_outputs`) is staged in a temp folder beside it under a folder
  lock, made durable with one flush, journalled, then swapped in file by file. Any interruption
  before the commit (exception, Ctrl-C, kill, power loss) ends with the old files back: at once,
  or by the next imgtool run on the folder (:func:`recover_outputs`), which also removes staging
  folders dead runs left. The file that vouches for the others (``SHA256SUMS``) leaves first and
  arrives last. A caller can name the files an earlier run wrote, so a user's own file is refused.
- New files get 0666 less the umask (0644 under umask 022), as other tools' outputs do.
- Linux: one ``syncfs`` makes a staged set durable; renames are made durable by syncing the
  folder. macOS: ``fsync`` per file and of the folder. Windows: ``fsync`` (FlushFileBuffers) per
  file; folders cannot be opened for syncing, NTFS journals the renames itself; ``os.replace``
  replaces a file that is not open elsewhere. Locks: ``flock`` on Linux and macOS, ``msvcrt.locking``
  (``LockFileEx``) on Windows; a folder's lock file sits beside it while held.

Nothing else in imgtool creates temp files or folders, or renames files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat as st
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgtool.errors import InputError, OutputError

#: New files get these permissions less the umask (0644 under umask 022), as any other tool's output does.
NEW_FILE_MODE = 0o666
#: ``-o -`` names standard output.
STDOUT = "-"
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file in ``folder``, open for writing, with the umask's permissions (``mkstemp`` always gives 0600)."""
    for _ in range(100):
        path = Path(folder) / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}{suffix}"
        try:
            return os.open(path, _TEMP_FLAGS, NEW_FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {folder}")


@contextlib.contextmanager
def staged_file(dest: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary file beside ``dest``; when the block ends it is flushed to disk and renamed over ``dest``.

    If the block raises, the temp file is removed and ``dest`` is untouched. OS failures are
    raised as they are (``OSError``); callers word them for their users.
    """
    dest = Path(dest)
    fd, tmp = _create_temp(dest.parent, f".{dest.name}.", suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_output(path: str | os.PathLike, data: bytes | str) -> Path | None:
    """:func:`write_bytes`, or standard output when ``path`` is ``-`` (then None is returned)."""
    if os.fspath(path) == STDOUT:
        stream = sys.stdout.buffer
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        stream.flush()
        return None
    return write_bytes(path, data)


def write_bytes(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace the file at ``path`` with ``data`` (:func:`staged_file`), naming the path and the fix on failure."""
    target = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent = target.parent
    if target.is_dir():
        raise OutputError("is a directory; give a file name", path=target)
    if not parent.is_dir():
        raise OutputError("the folder to write into does not exist; create it first", path=target)
    try:
        with staged_file(target) as fh:
            fh.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror}); choose another output path", path=target) from None
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
            import ctypes  # loaded already by _syncfs; here only to read errno

            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(paths[0]))
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
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # not at the top: only Linux's syncfs needs it (~1.5 ms, -X importtime); macOS and Windows never load it

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


#: What ``read_input`` reads when the caller names no smaller cap: nothing imgtool reads can be larger
#: than the largest flash it writes.
MAX_INPUT_BYTES = 128 * 1024 * 1024
#: Pipes are read in chunks of this size, so a cap is never overshot by more than one chunk.
_PIPE_CHUNK = 1 << 16


def input_kind(path: str | os.PathLike, what: str = "file", *, pipes: bool = True) -> os.stat_result:
    """The ``stat`` of an input, refused in one line unless it is a regular file (or, with ``pipes``, a pipe).

    Devices (``/dev/zero``), sockets and folders never end or are not files; a pipe can only be read once.
    """
    p = Path(path)
    try:
        info = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"no such {what}", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read this {what} ({exc.strerror})", path=p) from None
    mode = info.st_mode
    if st.S_ISREG(mode) or (pipes and st.S_ISFIFO(mode)):
        return info
    if st.S_ISDIR(mode):
        raise InputError(f"is a directory, expected a {what}", path=p)
    kind = (
        "a pipe, which can be read only once" if st.S_ISFIFO(mode)
        else "a character device" if st.S_ISCHR(mode)
        else "a block device" if st.S_ISBLK(mode)
        else "a socket" if st.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise InputError(f"is {kind}; pass a regular file as the {what}", path=p)


def read_input(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> bytes:
    """Read a user's input file (or a pipe with a writer), at most ``limit`` bytes, OS failures as one-line errors.

    The kind and the size are checked before anything is read, so a device, a pipe nobody writes to
    or a file larger than anything valid costs nothing.
    """
    p = Path(path)
    cap = MAX_INPUT_BYTES if limit is None else limit
    info = input_kind(p, what)
    if st.S_ISREG(info.st_mode) and info.st_size > cap:
        raise InputError(f"{what} is {info.st_size} bytes, larger than any valid one ({cap} bytes)", path=p)
    try:
        if st.S_ISFIFO(info.st_mode):
            data = _read_pipe(p, cap + 1)
            if data is None:
                raise InputError(f"is a pipe with no writer (nothing to read); pass the {what} itself", path=p)
        else:
            with open(p, "rb") as fh:
                data = fh.read(cap + 1)
    except FileNotFoundError:
        raise InputError(f"no such {what}", path=p) from None
    except PermissionError:
        raise InputError(f"cannot read this {what} (permission denied)", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read this {what} ({exc.strerror})", path=p) from None
    if len(data) > cap:
        raise InputError(f"{what} is larger than any valid one ({cap} bytes)", path=p)
    return data


def _read_pipe(path: Path, most: int) -> bytes | None:
    """Up to ``most`` bytes from a pipe, or None when no process has it open for writing.

    Opened without blocking (a FIFO's ``open`` otherwise waits for a writer), a read that finds
    nothing and no writer returns b"" at once; with a writer it would block, so the pipe is then
    read normally. Windows has no FIFOs in the file system.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock)
    try:
        try:
            chunks = [os.read(fd, _PIPE_CHUNK)]
        except BlockingIOError:
            chunks = []
        else:
            if not chunks[0]:
                return None
        os.set_blocking(fd, True)
        total = sum(map(len, chunks))
        while total < most:
            chunk = os.read(fd, min(_PIPE_CHUNK, most - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


#: A folder's lock file sits beside it, named ``.NAME`` + this; it is removed when the lock is let go.
FOLDER_LOCK_SUFFIX = ".imgtool.lock"
#: Windows locks this many bytes from the start of the lock file (the lock is on a byte range there).
LOCKED_BYTES = 1
#: Seconds between tries while another process holds a Windows lock (``msvcrt`` has no wait without a limit).
LOCK_POLL_SECONDS = 0.05
#: The errors ``msvcrt.locking`` gives while another handle holds the range.
_LOCK_BUSY = (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK))


class _FlockLocks:
    """POSIX: ``flock``, which waits as long as it takes. A held lock file can be unlinked, so it is removed first."""

    remove_while_held = True

    def __init__(self):
        import fcntl  # POSIX only

        self._fcntl = fcntl

    def lock(self, fd: int) -> None:
        self._fcntl.flock(fd, self._fcntl.LOCK_EX)

    def unlock(self, fd: int) -> None:
        self._fcntl.flock(fd, self._fcntl.LOCK_UN)


class _MsvcrtLocks:
    """Windows: ``msvcrt.locking`` of the file's first byte, tried again until free (``LockFileEx`` underneath).

    An open file cannot be removed there, so the lock file is removed after it is closed, and only when no
    other process has it open. ``msvcrt`` is a parameter so tests can run this logic off Windows.
    """

    remove_while_held = False

    def __init__(self, msvcrt=None):
        if msvcrt is None:
            import msvcrt  # Windows only
        self._msvcrt = msvcrt

    def lock(self, fd: int) -> None:
        while True:
            os.lseek(fd, 0, os.SEEK_SET)  # the range starts at the file position
            try:
                self._msvcrt.locking(fd, self._msvcrt.LK_NBLCK, LOCKED_BYTES)
                return
            except OSError as exc:
                if exc.errno not in _LOCK_BUSY:
                    raise
            time.sleep(LOCK_POLL_SECONDS)

    def unlock(self, fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        self._msvcrt.locking(fd, self._msvcrt.LK_UNLCK, LOCKED_BYTES)


def _platform_locks():
    return _MsvcrtLocks() if os.name == "nt" else _FlockLocks()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive lock on ``path``: a lock file (created if needed) or an existing folder; yields whether it is held.

    ``flock`` on Linux and macOS, ``msvcrt.locking`` (``LockFileEx``) on Windows, so two imgtool processes
    serialise the same way everywhere. A folder cannot be locked on every platform, so a folder's lock
    is a file beside it (:func:`folder_lock_path`), removed when the lock is let go; it does not depend
    on any cache folder, so two runs into one folder lock each other whatever their environments say.
    Where the lock file cannot be created or locked the work goes on unlocked: temp-file-and-rename
    still keeps every file whole.
    """
    target = Path(path)
    folder = target.is_dir()
    lock_file = folder_lock_path(target) if folder else target
    locks = _platform_locks()
    try:
        fd = _acquire(lock_file, locks)
    except OSError:  # e.g. a lock file that cannot be created: go on unlocked, as on a file system without locks
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            _release(fd, lock_file, locks, remove=folder)


def _acquire(lock_file: Path, locks) -> int:
    """Open and lock ``lock_file``; if the holder waited for removed it meanwhile, lock the file now there instead."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), NEW_FILE_MODE)
        try:
            locks.lock(fd)
            if os.path.samestat(os.fstat(fd), os.stat(lock_file)):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _release(fd: int, lock_file: Path, locks, *, remove: bool) -> None:
    """Let go of the lock; with ``remove``, the lock file goes too (see :meth:`_acquire` for why that is safe)."""
    try:
        if remove and locks.remove_while_held:
            with contextlib.suppress(OSError):
                os.unlink(lock_file)
        locks.unlock(fd)
    finally:
        os.close(fd)
    if remove and not locks.remove_while_held:
        with contextlib.suppress(OSError):  # another process has it open: the last one out removes it
            os.unlink(lock_file)


def folder_lock_path(folder: Path) -> Path:
    """The lock file standing for ``folder``: ``.NAME.imgtool.lock`` beside it, for its resolved path."""
    real = Path(os.path.realpath(folder))
    return real.parent / f".{real.name or 'root'}{FOLDER_LOCK_SUFFIX}"


#: The staging folder's journal, written before the first rename of a swap: while it is there, a
#: later run on the folder undoes the swap (the moved-aside files are restored).
JOURNAL_FILE = "journal.json"
#: The journal renamed once every new file is in place and the folder synced: the swap is done.
COMMITTED_FILE = "committed.json"
#: Tests set this to a callable taking a step name (``staged``, ``journal``, ``aside NAME``,
#: ``placed NAME``, ``committed``, ``cleaned``) to interrupt a swap exactly there.
step_hook = None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


def staging_prefix(outdir: Path) -> str:
    """Staging folders for ``outdir`` sit beside it under this name prefix."""
    return f".{outdir.name or 'out'}.imgtool-"


def write_outputs(
    outdir: str | os.PathLike,
    files: dict[str, bytes],
    *,
    remove=(),
    seal: str | None = None,
    owned=None,
) -> None:
    """Write ``files`` (name → bytes) into ``outdir`` as one transaction that survives any interruption.

    Under ``outdir``'s lock (beside it, see :func:`folder_lock_path`): an interrupted
    earlier swap is finished or undone first (:func:`recover_outputs`); everything is written into
    a staging folder beside ``outdir`` and made durable with one flush (:func:`sync_files`); a
    journal naming every file to move is written; files being replaced, and stale files named in
    ``remove``, are moved aside into the staging folder, then the new ones renamed in; the folder
    is synced and the journal marked committed. An exception or Ctrl-C before the commit puts
    every old file back; a kill or power loss leaves the journal, and the next run on ``outdir``
    puts them back. ``seal`` (the checksum file) leaves first and arrives last, so it never
    vouches for a mixed set. ``owned``, when given, is called under the lock with ``outdir`` and
    returns the names an earlier run wrote there: an existing file not among them is refused
    (a user's own file is never replaced), and only those are removed.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError("exists and is not a folder; choose another output folder", path=outdir)
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc.strerror})", path=outdir) from None
    try:
        _write_locked(outdir, files, remove, seal, owned)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                outdir.rmdir()  # only when still empty: a failed first pack leaves no folder behind
        raise


def _write_locked(outdir: Path, files: dict[str, bytes], remove, seal: str | None, owned) -> None:
    with file_lock(outdir) as locked:
        if locked:
            _recover(outdir)
        if owned is not None:
            previous = set(owned(outdir))
            _refuse_foreign(outdir, files, previous, seal)
            remove = [name for name in remove if name in previous]
        try:
            tmp = _make_temp_dir(outdir.absolute().parent, staging_prefix(outdir))
        except OSError as exc:
            raise OutputError(f"cannot create a staging folder beside the output folder ({exc.strerror})", path=outdir) from None
        try:
            staged = tmp / "new"
            staged.mkdir()
            (tmp / "old").mkdir()
            for name, data in files.items():
                with os.fdopen(os.open(staged / name, _TEMP_FLAGS, NEW_FILE_MODE), "wb") as fh:
                    if hasattr(data, "chunks"):  # a value given in pieces (pack's merged image) is streamed
                        fh.writelines(data.chunks())
                    else:
                        fh.write(data)
            sync_files([staged / name for name in files])
            _step("staged")
        except BaseException as exc:
            _remove_tree(tmp)
            if isinstance(exc, OSError):
                raise OutputError(f"cannot write outputs ({exc.strerror}); check free space and permissions", path=outdir) from None
            raise
        _swap_in(outdir, tmp, [*files], remove, seal)


def _refuse_foreign(outdir: Path, files, previous: set[str], seal: str | None) -> None:
    for name in files:
        target = outdir / name
        if name not in previous and (target.exists() or target.is_symlink()):
            listed = f"{seal} there does not list it" if seal else "no earlier imgtool run there lists it"
            raise OutputError(
                f"is not a file imgtool wrote ({listed}); move it away, choose another output folder, "
                "or pass --force to replace it",
                path=target,
            )


def _swap_in(outdir: Path, tmp: Path, names: list[str], remove, seal: str | None) -> None:
    """Journal the swap, then rename; undo it on any exception before the commit; remove ``tmp`` when settled."""
    aside = [n for n in dict.fromkeys([*names, *remove]) if (outdir / n).is_file() or (outdir / n).is_symlink()]
    journal = {"names": names, "aside": aside, "seal": seal}
    committed = False
    try:
        with staged_file(tmp / JOURNAL_FILE) as fh:
            fh.write(json.dumps(journal).encode("utf-8"))
        fsync_dir(tmp)
        _step("journal")
        for name in sorted(aside, key=lambda n: n != seal):
            os.replace(outdir / name, tmp / "old" / name)
            _step(f"aside {name}")
        for name in sorted(names, key=lambda n: n == seal):
            os.replace(tmp / "new" / name, outdir / name)
            _step(f"placed {name}")
        fsync_dir(outdir)
        os.replace(tmp / JOURNAL_FILE, tmp / COMMITTED_FILE)
        committed = True
        fsync_dir(tmp)  # a commit lost to a power cut would have the next run undo a finished pack
        _step("committed")
    except BaseException as exc:
        if not committed:
            if (tmp / JOURNAL_FILE).is_file():
                try:
                    _undo(outdir, tmp, journal)  # interrupted in turn: the journal stays for the next run
                except OSError as undo_exc:
                    raise OutputError(
                        f"cannot move outputs into place, nor the old ones back ({undo_exc.strerror}); "
                        "the next imgtool run on this folder restores them",
                        path=outdir,
                    ) from None
            _remove_tree(tmp)
            if isinstance(exc, OSError):
                raise OutputError(
                    f"cannot move outputs into place ({exc.strerror}); nothing was changed", path=outdir
                ) from None
            raise
        _remove_tree(tmp)
        raise
    _remove_tree(tmp)
    _step("cleaned")


def _undo(outdir: Path, tmp: Path, journal: dict) -> None:
    """Put back what a journalled swap moved; safe to repeat after any interruption of itself.

    A staged file missing from ``new/`` was placed: it goes back there (the new seal first). A file
    in ``old/`` was moved aside: it goes back into ``outdir`` (the old seal last).
    """
    seal = journal.get("seal")
    for name in sorted(journal["names"], key=lambda n: n != seal):
        placed = outdir / name
        if not (tmp / "new" / name).exists() and (placed.exists() or placed.is_symlink()):
            os.replace(placed, tmp / "new" / name)
    for name in sorted(journal["aside"], key=lambda n: n == seal):
        if (tmp / "old" / name).exists() or (tmp / "old" / name).is_symlink():
            os.replace(tmp / "old" / name, outdir / name)
    fsync_dir(outdir)


def _is_staging_of(name: str, prefix: str) -> bool:
    """Whether ``name`` is a staging folder :func:`_make_temp_dir` made with ``prefix`` (PID, dash, 8 hex digits).

    Exactly that: a folder ``a.imgtool-x`` beside ``a`` has staging folders starting with ``.a.imgtool-`` too.
    """
    return name.startswith(prefix) and re.fullmatch(r"\d+-[0-9a-f]{8}", name[len(prefix):]) is not None


def recover_outputs(outdir: str | os.PathLike) -> None:
    """Finish or undo what an interrupted imgtool run left for ``outdir``, under its lock.

    The commands that read a pack folder (``flash``, ``verify``, ``manifest``) call this first; ``pack``
    does it inside :func:`write_outputs`. Where the lock cannot be taken, nothing is touched.
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        return
    with file_lock(outdir) as locked:
        if locked:
            _recover(outdir)


def _recover(outdir: Path) -> None:
    """Under ``outdir``'s lock every staging folder beside it belongs to a run that is gone: settle each.

    A committed swap only needs its leftovers removed; a journalled one is undone (its old files
    restored); one with no journal never moved anything and is removed, unless an imgtool older than
    the journal left files in its ``old/`` (those are left alone, never deleted).
    """
    parent = outdir.absolute().parent
    prefix = staging_prefix(outdir)
    try:
        leftovers = [e for e in os.scandir(parent) if _is_staging_of(e.name, prefix) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in leftovers:
        tmp = Path(entry.path)
        if (tmp / COMMITTED_FILE).exists():
            _remove_tree(tmp)
            continue
        if (tmp / JOURNAL_FILE).exists():
            try:
                journal = json.loads((tmp / JOURNAL_FILE).read_text(encoding="utf-8"))
                _undo(outdir, tmp, journal)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise OutputError(
                    f"an interrupted imgtool run left {tmp} and it cannot be undone ({exc}); "
                    "move its old/ files back by hand",
                    path=outdir,
                ) from None
            _remove_tree(tmp)
            continue
        try:
            old_files = os.listdir(tmp / "old")
        except OSError:
            old_files = []
        if not old_files:
            _remove_tree(tmp)


def _make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new private folder in ``parent`` (like tempfile.mkdtemp, without importing tempfile/shutil)."""
    for _ in range(100):
        candidate = parent / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            candidate.mkdir(mode=0o700)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder in {parent}")


def _remove_tree(path: Path) -> None:
    """Remove a temp folder of ours; never raises. The usual shape (plain files one level down) needs no shutil."""
    try:
        for sub in os.scandir(path):
            if sub.is_dir(follow_symlinks=False):
                for entry in os.scandir(sub.path):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
            with contextlib.suppress(OSError):
                (os.rmdir if sub.is_dir(follow_symlinks=False) else os.unlink)(sub.path)
        os.rmdir(path)
    except OSError:
        import shutil  # not at the top: only a tree that resists entry-by-entry removal needs it (~2.6 ms)

        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A new private folder in the system's temp folder, removed with everything in it when the block ends."""
    import tempfile  # not at the top: only `flash ELF` packs into a scratch folder (~2.7 ms)

    tmp = _make_temp_dir(Path(tempfile.gettempdir()), prefix)
    try:
        yield tmp
    finally:
        _remove_tree(tmp)
