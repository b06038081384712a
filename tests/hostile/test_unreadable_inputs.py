"""Inputs that are not files we can read: a FIFO nobody writes to, and ``/dev/zero``, as each input in turn.

Each ends in one ``imgtool: error:`` line naming the input, at once: the kind of file is checked before
it is opened for reading, so nothing blocks and nothing is read. A pipe that has a writer is read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli

C3 = FIXTURES / "esp32c3-min.elf"
#: A safety net only (SIGALRM fails a test that would block forever); a refusal takes milliseconds.
HANG_GUARD_SECONDS = 20

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="FIFOs and /dev/zero are POSIX")


@pytest.fixture(scope="module")
def ec_key(tmp_path_factory) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("key") / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def app_bin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "app.bin"
    assert run_cli("image", C3, "-o", path, "-q").exit_code == 0
    return path


class Work:
    def __init__(self, root: Path, bad: Path, ec_key: Path, app_bin: Path):
        self.root, self.bad, self.key, self.app = root, bad, ec_key, app_bin
        self.elf = root / "fw"
        shutil.copy(C3, self.elf)
        self.boot = make_bootloader(root / "bl.bin", "esp32c3")
        self.env: dict[str, str] = {"IMGTOOL_CACHE_DIR": str(root / "cache")}

    def pack(self, *extra) -> list:
        return ["pack", self.elf, "-o", self.root / "out", "--bootloader", self.boot, "-q", *extra]

    def with_table(self) -> list:
        table = self.root / "t.csv"
        table.write_text("nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 1M,\nstore, data, spiffs, , 64K,\n")
        return ["--partition-table", table]

    def place(self, name: str) -> Path:
        """The hostile file at ``root/name`` (a FIFO is made there; /dev/zero linked there)."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.bad == Path("/dev/zero"):
            target.symlink_to(self.bad)
        else:
            os.mkfifo(target)
        return target

    def pinned(self):
        from imgtool.bootloader.pins import load_manifest
        from imgtool.bootloader.store import BootloaderStore

        entry = load_manifest().lookup("esp32c3")
        return entry, BootloaderStore(cache_dir=self.root / "cache")


def _mirror(w: Work):
    entry, _ = w.pinned()
    w.env["IMGTOOL_BOOTLOADER_MIRROR"] = str(w.root / "mirror")
    bad = w.place(f"mirror/{entry.file}")
    return ["pack", w.elf, "-o", w.root / "out", "-q"], bad


def _pack_file(command: str, name: str):
    """A pack folder whose ``name`` (a fixed name, or ``*.merged.bin``) is the hostile file, given to ``command``."""

    def case(w: Work):
        from imgtool.pack.job import PackOptions, pack

        out = w.root / "packed"
        pack(w.elf, PackOptions(outdir=out, bootloader=w.boot, project_config=False))
        target = next(out.glob(name)) if "*" in name else out / name
        target.unlink()
        bad = w.place(os.fspath(target.relative_to(w.root)))
        args = {"flash": ["flash", out, "--port", w.root / "no-port"], "manifest": ["manifest", out, "-o", w.root / "web" / "m.json"]}
        return args[command], bad

    return case


def _littlefs(w: Work):
    (w.root / "www").mkdir()
    (w.root / "www" / "index.html").write_text("hi")
    bad = w.place("www/zero")
    return w.pack(*w.with_table(), "--data", f"store={w.root / 'www'}"), bad


def _espflash_toml(w: Work):
    bad = w.place("espflash.toml")
    return ["pack", w.elf, "--bootloader", w.boot, "-q", "-o", w.root / "out"], bad


CASES = {
    "image-elf": lambda w: (["image", w.place("x.elf"), "-o", w.root / "a.bin"], w.root / "x.elf"),
    "pack-elf": lambda w: (["pack", w.place("y.elf"), "-o", w.root / "out", "--bootloader", w.boot], w.root / "y.elf"),
    "partition-table": lambda w: (w.pack("--partition-table", w.place("p.csv")), w.root / "p.csv"),
    "partitions-command": lambda w: (["partitions", "show", w.place("q.csv")], w.root / "q.csv"),
    "bootloader": lambda w: (["pack", w.elf, "-o", w.root / "out", "--bootloader", w.place("b.bin")], w.root / "b.bin"),
    "sign-key": lambda w: (w.pack("--sign-key", w.place("s.pem")), w.root / "s.pem"),
    "encrypt-key": lambda w: (w.pack("--encrypt-key", w.place("e.bin")), w.root / "e.bin"),
    "data-raw": lambda w: (w.pack(*w.with_table(), "--data", f"store={w.place('raw.bin')}"), w.root / "raw.bin"),
    "data-nvs-csv": lambda w: (w.pack(*w.with_table(), "--data", f"nvs={w.place('n.csv')}"), w.root / "n.csv"),
    "data-littlefs-entry": _littlefs,
    "espflash-toml": _espflash_toml,
    "mirror-file": _mirror,
    "verify": lambda w: (["verify", w.place("m.bin")], w.root / "m.bin"),
    "info": lambda w: (["info", w.place("i.bin")], w.root / "i.bin"),
    "sign-image": lambda w: (["sign", w.place("u.bin"), "--key", w.key, "-o", w.root / "s.bin"], w.root / "u.bin"),
    "sign-with-key": lambda w: (["sign", w.app, "--key", w.place("k.pem"), "-o", w.root / "s.bin"], w.root / "k.pem"),
    "flash-flash-args": _pack_file("flash", "flash_args"),
    "flash-flasher-args-json": _pack_file("flash", "flasher_args.json"),
    "flash-sha256sums": _pack_file("flash", "SHA256SUMS"),
    "manifest-merged-image": _pack_file("manifest", "*.merged.bin"),
    "monitor-elf": lambda w: (["monitor", "--port", w.root / "no-port", "--elf", w.place("m.elf"), "--non-interactive"], w.root / "m.elf"),
}


@pytest.fixture
def hang_guard():
    def expired(*_):
        raise AssertionError(f"blocked for {HANG_GUARD_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HANG_GUARD_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("bad", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_an_input_that_is_no_file_is_refused_in_one_line(tmp_path, case, bad, ec_key, app_bin, hang_guard):
    w = Work(tmp_path, Path("/dev/zero") if bad == "/dev/zero" else Path("fifo"), ec_key, app_bin)
    args, named = CASES[case](w)
    result = run_cli(*args, env=w.env)
    assert result.exit_code != 0, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("imgtool: error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    assert named.name in errors[0] and any(word in errors[0] for word in ("pipe", "device", "outside the")), errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["fifo", "/dev/zero"])
def test_a_cache_entry_that_is_no_file_counts_as_absent(tmp_path, bad, hang_guard):
    """The cache is imgtool's own: a FIFO or device there is replaced by the verified file from the mirror."""
    from conftest import corpus_path

    w = Work(tmp_path, Path("/dev/zero") if bad == "/dev/zero" else Path("fifo"), Path(), Path())
    entry, store = w.pinned()
    w.env["IMGTOOL_BOOTLOADER_MIRROR"] = os.fspath(corpus_path("bootloaders"))
    cached = w.place(os.fspath(store.path(entry).relative_to(tmp_path)))
    result = run_cli("pack", w.elf, "-o", tmp_path / "out", "-q", env=w.env)
    assert result.exit_code == 0, result.output
    assert cached.is_file() and not cached.is_symlink()


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
def test_a_pipe_with_a_writer_is_read(hang_guard, tmp_path):
    """``partitions show <(cat table.csv)`` works: a pipe that has a writer is read to its end, however it is paced."""
    import threading

    text = b"nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 1M,\n"
    read_end, write_end = os.pipe()

    def writer():  # the write end is open before the command starts, as a shell's is
        os.write(write_end, text)
        os.close(write_end)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        result = run_cli("partitions", "show", f"/dev/fd/{read_end}", "--json")
    finally:
        thread.join(5)
        os.close(read_end)
    assert result.exit_code == 0, result.output
    (tmp_path / "table.csv").write_bytes(text)
    from_file = run_cli("partitions", "show", tmp_path / "table.csv", "--json")
    piped = json.loads(result.stdout)["partitions"]
    assert piped == json.loads(from_file.stdout)["partitions"]  # every row, as the same table read from a file
    assert [p["name"] for p in piped] == ["nvs", "factory"]
