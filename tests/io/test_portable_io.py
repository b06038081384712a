"""Portable locking and durable writes (imgtool.atomic), and each output hashed once (flash_outputs.OutputFiles)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imgtool import atomic
from imgtool.flash.outputs import OutputFiles, sha256sums
from imgtool.flash.pack_folder import sha256sums_text
from imgtool.output_names import SHA256SUMS_FILE

HOLD_THEN_EXIT = r"""
import sys, time
from pathlib import Path
from imgtool import atomic
if sys.argv[4] == "windows":  # the Windows branch's logic, over a stand-in msvcrt made of POSIX record locks
    sys.path.insert(0, sys.argv[5])
    from msvcrt_standin import msvcrt
    atomic._platform_locks = lambda: atomic._MsvcrtLocks(msvcrt)
with atomic.file_lock(sys.argv[1]):
    Path(sys.argv[2]).write_text(repr(time.time()))  # when it got the lock
    time.sleep(float(sys.argv[3]))
    Path(sys.argv[2]).with_suffix(".out").write_text(repr(time.time()))  # just before letting go
"""

#: ``msvcrt.locking`` as Windows behaves: a byte range from the file position, EACCES at once while another
#: process holds it (``LK_NBLCK``), ``LK_UNLCK`` to let go; built on ``fcntl.lockf`` so processes really exclude.
MSVCRT_STANDIN = r"""
import errno, fcntl, os, types

def locking(fd, mode, nbytes):
    start = os.lseek(fd, 0, os.SEEK_CUR)
    if mode == msvcrt.LK_UNLCK:
        fcntl.lockf(fd, fcntl.LOCK_UN, nbytes, start)
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, nbytes, start)
    except BlockingIOError:
        raise OSError(errno.EACCES, "Permission denied") from None

msvcrt = types.SimpleNamespace(LK_UNLCK=0, LK_NBLCK=2, locking=locking)
"""


def test_locks_are_the_platforms_own_with_a_windows_branch():
    """flock on POSIX, msvcrt.locking on Windows, in atomic alone (and the monitor's keyboard reader); no filelock."""
    package = Path(atomic.__file__).parent
    own = {package / "atomic.py", package / "device" / "keyboard.py"}
    source = "\n".join(p.read_text(encoding="utf-8") for p in package.rglob("*.py") if p not in own)
    assert "fcntl" not in source and "msvcrt" not in source and "filelock" not in source
    text = (package / "atomic.py").read_text(encoding="utf-8")
    assert "fcntl" in text and "msvcrt" in text and "filelock" not in text


def test_folder_lock_leaves_nothing_in_the_folder_or_beside_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with atomic.file_lock(out) as locked:
        assert locked and atomic.folder_lock_path(out).exists()
        assert atomic.folder_lock_path(out).parent == tmp_path
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_one_folder_one_lock_whatever_the_spelling(tmp_path):
    (tmp_path / "a" / "out").mkdir(parents=True)
    assert atomic.folder_lock_path(tmp_path / "a" / "out") == atomic.folder_lock_path(tmp_path / "a" / ".." / "a" / "out")
    (tmp_path / "b").mkdir()
    assert atomic.folder_lock_path(tmp_path / "a") != atomic.folder_lock_path(tmp_path / "b")


@pytest.mark.parametrize("branch", ["platform", pytest.param("windows", marks=pytest.mark.skipif(
    sys.platform == "win32", reason="the stand-in msvcrt is built on fcntl"))])
def test_a_second_process_waits_for_the_lock(tmp_path, branch):
    """Process A holds the folder's lock for a while; B, started meanwhile, only gets it after A let go."""
    (tmp_path / "msvcrt_standin.py").write_text(MSVCRT_STANDIN)
    out = tmp_path / "out"
    out.mkdir()
    a_in, b_in = tmp_path / "a.in", tmp_path / "b.in"
    extra = [branch, str(tmp_path)]
    a = subprocess.Popen([sys.executable, "-c", HOLD_THEN_EXIT, str(out), str(a_in), "0.6", *extra])
    try:
        deadline = time.monotonic() + 30
        while not a_in.exists():
            assert a.poll() is None and time.monotonic() < deadline, "A never took the lock"
            time.sleep(0.01)
        b = subprocess.run([sys.executable, "-c", HOLD_THEN_EXIT, str(out), str(b_in), "0", *extra], timeout=30)
        assert b.returncode == 0
    finally:
        a.wait(timeout=30)
    assert a.returncode == 0
    a_let_go = float(a_in.with_suffix(".out").read_text())
    assert float(b_in.read_text()) >= a_let_go, "B got the lock while A still held it"
    assert not atomic.folder_lock_path(out).exists()


def test_threads_take_turns(tmp_path):
    lock = tmp_path / "x.lock"
    inside, overlaps = [0], []

    def work():
        with atomic.file_lock(lock):
            inside[0] += 1
            overlaps.append(inside[0])
            time.sleep(0.01)
            inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


def test_an_uncreatable_lock_file_does_not_stop_the_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    atomic.folder_lock_path(out).mkdir()  # a folder where the lock file should be
    with atomic.file_lock(out) as locked:
        (out / "f").write_text("done")
    assert not locked and (out / "f").read_text() == "done"


def _record_fsyncs(monkeypatch) -> list[tuple[int, int]]:
    """(device, inode) of every descriptor ``os.fsync`` is given, then the real fsync."""
    seen: list[tuple[int, int]] = []
    real = os.fsync

    def recording(fd):
        st = os.fstat(fd)
        seen.append((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording)
    return seen


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


@pytest.mark.parametrize("one_flush", [True, False], ids=["syncfs", "fsync-each"])
def test_sync_files_flushes_the_file_system_once_or_every_file(tmp_path, monkeypatch, one_flush):
    """With ``syncfs``, one call on the files' own file system and no fsync; without it, one fsync per file."""
    fsynced = _record_fsyncs(monkeypatch)
    syncfs_on: list[int] = []

    def syncfs(fd):
        syncfs_on.append(os.fstat(fd).st_dev)
        return 0

    monkeypatch.setattr(atomic, "_syncfs", (lambda: syncfs) if one_flush else (lambda: None))
    paths = []
    for i in range(3):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * 100)
        paths.append(path)
    atomic.sync_files(paths)
    if one_flush:
        assert syncfs_on == [tmp_path.stat().st_dev] and fsynced == []
    else:
        assert syncfs_on == [] and sorted(fsynced) == sorted(_identity(p) for p in paths)
    assert [p.read_bytes() for p in paths] == [bytes([i]) * 100 for i in range(3)]
    fsynced.clear()
    atomic.sync_files([])
    assert syncfs_on == ([tmp_path.stat().st_dev] if one_flush else []) and fsynced == []  # nothing to flush


def test_a_failed_syncfs_raises_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    monkeypatch.setattr(atomic, "_syncfs", lambda: lambda fd: -1)
    with pytest.raises(OSError) as info:
        atomic.sync_files([path])
    assert info.value.filename == os.fspath(path)


def test_fsync_dir_syncs_the_folder_and_never_raises(tmp_path, monkeypatch):
    fsynced = _record_fsyncs(monkeypatch)
    synced = [] if os.name == "nt" else [_identity(tmp_path)]  # Windows cannot open a folder; NTFS journals renames
    assert atomic.fsync_dir(tmp_path) is None
    assert fsynced == synced
    assert atomic.fsync_dir(tmp_path / "missing") is None  # a folder that cannot be opened is left alone
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(22, "Invalid argument")))
    assert atomic.fsync_dir(tmp_path) is None  # a file system that refuses to sync a folder is not an error
    assert fsynced == synced


def test_rendered_digests_are_reused_and_dropped_when_a_file_changes():
    files = {"a.bin": b"a" * 1000, "b.txt": b"b"}
    rendered = OutputFiles(files, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    assert sha256sums(rendered) == sha256sums(dict(files)) == sha256sums_text(rendered.sha256)
    rendered["a.bin"] = b"changed"
    assert "a.bin" not in rendered.sha256
    assert sha256sums(rendered).startswith(hashlib.sha256(b"changed").hexdigest())
    rendered.update({"b.txt": b"new"})
    assert sha256sums(rendered) == sha256sums({"a.bin": b"changed", "b.txt": b"new"})
    assert SHA256SUMS_FILE not in sha256sums_text({SHA256SUMS_FILE: "0" * 64, "x": "1" * 64})
