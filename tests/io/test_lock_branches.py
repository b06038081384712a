"""The lock's logic on each branch, run on any OS: a removed lock file is never held, and the Windows branch waits."""

from __future__ import annotations

import errno
import os
import types

import pytest

from imgtool import atomic


class _Recording:
    """``msvcrt`` as far as the lock uses it: answers ``busy`` times EACCES, then grants; records each call."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self, busy: int = 0, error: int = errno.EACCES):
        self.busy, self.error, self.calls = busy, error, []

    def locking(self, fd, mode, nbytes):
        self.calls.append((mode, os.lseek(fd, 0, os.SEEK_CUR), nbytes))
        if mode == self.LK_NBLCK and self.busy:
            self.busy -= 1
            raise OSError(self.error, os.strerror(self.error))


def _windows(monkeypatch, fake) -> None:
    monkeypatch.setattr(atomic, "_platform_locks", lambda: atomic._MsvcrtLocks(fake))
    monkeypatch.setattr(atomic, "LOCK_POLL_SECONDS", 0)


def test_windows_branch_tries_again_while_busy_then_holds_the_first_byte(tmp_path, monkeypatch):
    fake = _Recording(busy=2)
    _windows(monkeypatch, fake)
    out = tmp_path / "out"
    out.mkdir()
    with atomic.file_lock(out) as locked:
        assert locked
    assert fake.calls == [(fake.LK_NBLCK, 0, 1)] * 3 + [(fake.LK_UNLCK, 0, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # removed once closed


def test_windows_branch_goes_on_unlocked_where_locking_fails_otherwise(tmp_path, monkeypatch):
    fake = _Recording(busy=1, error=errno.EINVAL)
    _windows(monkeypatch, fake)
    lock = tmp_path / "x.lock"
    with atomic.file_lock(lock) as locked:
        assert not locked
    assert lock.exists()  # a named lock file stays; only a folder's is removed


@pytest.mark.parametrize("branch", ["flock", "windows"], ids=["posix", "windows"])
def test_a_lock_file_removed_while_waiting_is_not_held(tmp_path, monkeypatch, branch):
    """The holder we waited for removed the file (and another run made a new one): the new one is locked instead."""
    if branch == "flock" and os.name == "nt":
        pytest.skip("flock is POSIX")
    inner = atomic._FlockLocks() if branch == "flock" else atomic._MsvcrtLocks(_Recording())
    lock_file = tmp_path / ".out.imgtool.lock"
    attempts = []

    def lock(fd):
        attempts.append(os.fstat(fd).st_ino)
        if len(attempts) == 1:
            os.unlink(lock_file)
            lock_file.write_bytes(b"")
        inner.lock(fd)

    locks = types.SimpleNamespace(lock=lock, unlock=inner.unlock, remove_while_held=inner.remove_while_held)
    fd = atomic._acquire(lock_file, locks)
    try:
        assert len(attempts) == 2 and os.path.samestat(os.fstat(fd), os.stat(lock_file))
    finally:
        atomic._release(fd, lock_file, locks, remove=True)
    assert not lock_file.exists()
