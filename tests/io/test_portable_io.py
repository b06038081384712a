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
from imgtool.atomic import file_lock
with file_lock(sys.argv[1], cache_dir=Path(sys.argv[4])):
    Path(sys.argv[2]).write_text(repr(time.time()))  # when it got the lock
    time.sleep(float(sys.argv[3]))
    Path(sys.argv[2]).with_suffix(".out").write_text(repr(time.time()))  # just before letting go
"""


def test_package_has_no_posix_only_locking():
    """Locks come from filelock; the monitor's keyboard reader is the one module with a msvcrt (Windows) branch."""
    package = Path(atomic.__file__).parent
    keyboard = package / "device" / "keyboard.py"
    source = "\n".join(p.read_text(encoding="utf-8") for p in package.rglob("*.py") if p != keyboard)
    assert "fcntl" not in source and "msvcrt" not in source
    assert "termios" in keyboard.read_text(encoding="utf-8") and "msvcrt" in keyboard.read_text(encoding="utf-8")


def test_folder_lock_leaves_nothing_in_the_folder_or_beside_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with atomic.file_lock(out, cache_dir=tmp_path / "cache"):
        pass
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]
    assert [p.suffix for p in (tmp_path / "cache" / atomic.LOCK_SUBDIR).iterdir()] == [".lock"]


def test_one_folder_one_lock_whatever_the_spelling(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "a" / "out").mkdir(parents=True)
    assert atomic.folder_lock_path(tmp_path / "a" / "out", cache_dir=cache) == atomic.folder_lock_path(
        tmp_path / "a" / ".." / "a" / "out", cache_dir=cache
    )
    (tmp_path / "b").mkdir()
    assert atomic.folder_lock_path(tmp_path / "a", cache_dir=cache) != atomic.folder_lock_path(tmp_path / "b", cache_dir=cache)


def test_a_second_process_waits_for_the_lock(tmp_path):
    """Process A holds the folder's lock for a while; B, started meanwhile, only gets it after A let go."""
    cache = str(tmp_path / "cache")
    out = tmp_path / "out"
    out.mkdir()
    a_in, b_in = tmp_path / "a.in", tmp_path / "b.in"
    a = subprocess.Popen([sys.executable, "-c", HOLD_THEN_EXIT, str(out), str(a_in), "0.6", cache])
    try:
        deadline = time.monotonic() + 30
        while not a_in.exists():
            assert a.poll() is None and time.monotonic() < deadline, "A never took the lock"
            time.sleep(0.01)
        b = subprocess.run([sys.executable, "-c", HOLD_THEN_EXIT, str(out), str(b_in), "0", cache], timeout=30)
        assert b.returncode == 0
    finally:
        a.wait(timeout=30)
    assert a.returncode == 0
    a_let_go = float(a_in.with_suffix(".out").read_text())
    assert float(b_in.read_text()) >= a_let_go, "B got the lock while A still held it"


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


def test_an_uncreatable_lock_folder_does_not_stop_the_work(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    out = tmp_path / "out"
    out.mkdir()
    assert atomic.folder_lock_path(out, cache_dir=blocker) is None
    with atomic.file_lock(out, cache_dir=blocker):
        (out / "f").write_text("done")
    assert (out / "f").read_text() == "done"


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
