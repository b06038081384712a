"""Shared test helpers, one per need: the real-data corpus (skipping cleanly without it), the hypothesis
profile, bootloader stand-ins, the CLI in process (``run_cli``), esptool/espsecure as in-process oracles,
real esptool commands against one esp32-mock-bootloader per chip (``mock_port``, ``esptool_at``,
``flash_holds``), folder snapshots."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(os.environ.get("IMGTOOL_CORPUS", REPO.parent / "shared" / "corpus"))

CORPUS_SKIP_REASON = (
    f"real-data corpus not found at {CORPUS} (it lives in ../shared/corpus beside the checkout; "
    "set IMGTOOL_CORPUS to point elsewhere)"
)


def corpus_path(*parts: str) -> Path:
    """A path inside the corpus; skips the calling test when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(CORPUS_SKIP_REASON)
    return path


#: Corpus ELFs of chips that joined after ``elf/`` was filled (``new-chips/``, moved into the set once supported).
SUPPORTED_NEW_CHIPS = ("esp32s31",)


def corpus_elfs() -> list[Path]:
    """The corpus's real app ELFs: every file in ``elf/`` and the supported ones of ``new-chips/``."""
    folder = CORPUS / "elf"
    if not folder.is_dir():
        return []
    new = [CORPUS / "new-chips" / name for name in SUPPORTED_NEW_CHIPS]
    return sorted([p for p in folder.iterdir() if p.is_file()] + [p for p in new if p.is_file()], key=lambda p: p.name)


def corpus_elf_params():
    """pytest params over the corpus ELFs, or one skipped param when the corpus is absent."""
    elfs = corpus_elfs()
    if not elfs:
        return [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_SKIP_REASON), id="no-corpus")]
    return [pytest.param(p, id=p.name) for p in elfs]


@pytest.fixture(scope="session")
def _empty_config_home(tmp_path_factory):
    return tmp_path_factory.mktemp("config-home")


@pytest.fixture(autouse=True)
def _no_global_espflash_config(monkeypatch, _empty_config_home):
    """The global espflash.toml of whoever runs the tests (``pack`` reads it) must not change what they see."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(_empty_config_home))
    monkeypatch.setenv("APPDATA", str(_empty_config_home))
    if sys.platform == "darwin":
        monkeypatch.setenv("HOME", str(_empty_config_home))


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_SKIP_REASON)
    return CORPUS


#: Examples per property/fuzz test. The default keeps the whole suite fast; a long run by hand:
#: ``IMGTOOL_FUZZ_EXAMPLES=100000 python -m pytest -q tests/hostile/test_fuzz_parsers.py``.
FUZZ_EXAMPLES = int(os.environ.get("IMGTOOL_FUZZ_EXAMPLES", "60"))
#: One hypothesis profile for every property test (no per-test example counts). No deadline: the
#: machine is shared, so wall-clock limits per example would flake; slow inputs are bounded in
#: the tests themselves. The example database stays off so runs do not depend on earlier ones.
settings.register_profile(
    "imgtool",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
settings.load_profile("imgtool")


def mutations(seed: bytes, max_edits: int = 8):
    """Seed bytes with a few bytes overwritten and maybe truncated: keeps the structure mostly valid."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=max_edits)
    cut = st.one_of(st.none(), st.integers(0, len(seed)))
    return st.builds(_apply_edits, st.just(seed), edits, cut)


def _apply_edits(seed: bytes, edits, cut):
    data = bytearray(seed)
    for pos, value in edits:
        data[pos] = value
    return bytes(data if cut is None else data[:cut])


#: A bootloader stand-in's one segment is this long unless asked otherwise.
BOOTLOADER_STAND_IN_LEN = 2048
#: esptool run as a command: the real flashing tool in the end-to-end tests.
ESPTOOL = [sys.executable, "-m", "esptool"]
ESPTOOL_TIMEOUT = 120


def bootloader_image(chip_name: str, size_code: int = 1, *, fill: int = 0, length: int = BOOTLOADER_STAND_IN_LEN) -> bytes:
    """A small valid ESP image with the chip's id, standing in for a real bootloader (none ship in the repo);
    its one segment loads where the chip's real bootloader keeps its data."""
    from imgtool.chips.table import get_chip
    from imgtool.image.format import EspImage, Segment

    chip = get_chip(chip_name)
    addr = chip.boot.bootloader_ram[0].data.start
    seg = Segment(addr, bytes((i + fill) % 256 for i in range(length)))
    return EspImage(chip_id=chip.image_chip_id, entry=addr, segments=(seg,), flash_size_code=size_code).to_bytes()


def make_bootloader(path: Path, chip_name: str, size_code: int = 1, *, fill: int = 0) -> Path:
    path.write_bytes(bootloader_image(chip_name, size_code, fill=fill))
    return path


@pytest.fixture(scope="module")
def boot(tmp_path_factory):
    """Stand-in bootloaders for esp32c3 and esp32, made once per module."""
    root = tmp_path_factory.mktemp("boot")
    return {chip: make_bootloader(root / f"bl-{chip}.bin", chip, size_code=2) for chip in ("esp32c3", "esp32")}


def pack_c3(out, boot, table, slot=None):
    """The esp32c3 fixture ELF packed at 4MB with ``table`` (and app partition ``slot``), no project files."""
    from imgtool.pack.job import PackOptions, pack

    return pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot["esp32c3"], flash_size="4MB",
                partition_table=table, app_partition=slot, project_config=False))


def run_cli(*args, env: dict | None = None):
    """``imgtool ARGS`` in process (click's CliRunner): the result has exit_code, output, stdout and stderr."""
    from click.testing import CliRunner

    from imgtool.cli.main import main

    return CliRunner().invoke(main, [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args], env=env)


def esptool(*args, check: bool = True) -> subprocess.CompletedProcess:
    """esptool as an oracle (``image-info``, ``elf2image``, ...), run in process through its Python entry point.

    A separate command would cost most of a second of interpreter start-up and imports each time;
    the end-to-end tests, where the command is the point, use :func:`esptool_at`.
    """
    return _oracle("esptool", args, check)


def espsecure(*args, check: bool = True) -> subprocess.CompletedProcess:
    """espsecure as an oracle (signature checks, flash decryption), run in process like :func:`esptool`."""
    return _oracle("espsecure", args, check)


def _oracle(module_name: str, args, check: bool) -> subprocess.CompletedProcess:
    """``module.main(ARGS)`` with its output captured; a fatal error reads as its command would print it."""
    import importlib
    import io

    module = importlib.import_module(module_name)
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            module.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # esptool's FatalError and the like: the command prints this and exits 2
            print(f"A fatal error occurred: {exc}", file=sys.stderr)
            code = 2
    done = subprocess.CompletedProcess([module_name, *argv], code, out.getvalue(), err.getvalue())
    if check:
        assert code == 0, f"{module_name} {' '.join(argv)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` → its bytes (None for folders); empty when ``root`` does not exist."""
    out: dict[str, bytes | None] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*")):
        rel = os.fspath(path.relative_to(root))
        out[rel] = None if path.is_dir() else path.read_bytes()
    return out


# --------------------------------------------------------------------------- esp32-mock-bootloader

#: Serial speed esptool is told; the mock serves any.
BAUD = "921600"


@pytest.fixture(scope="session")
def mocks(tmp_path_factory):
    """One mock ROM bootloader (esp32-mock-bootloader) per chip for the whole run, started on first use.

    Starting one takes most of a second, so tests share them; :func:`mock_port` erases the flash
    before each test. At the end each is told to stop (SIGTERM to the pid its status names) before
    the library's stop, which otherwise waits a second for a server that never exits by itself.
    """
    handles: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESP32_MOCK_BOOTLOADER_STATE_DIR", str(tmp_path_factory.mktemp("mock-state")))
        yield handles
        for handle in handles.values():
            with contextlib.suppress(OSError, KeyError, TypeError):
                os.kill(handle.status()["pid"], signal.SIGTERM)
            handle.stop()


class _NoPauseAfterClose:
    """Stands in for the ``time`` module of pyserial's ``socket://`` handler, whose only use of it is a 0.3 s
    sleep after every close "in case of quick reconnects": the mock takes a reconnect from its listen backlog
    once it has seen the close (as the monitor tests' fake devices do), so waiting adds nothing but 0.3 s to
    every connection a test makes in process."""

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_pause_after_socket_close(monkeypatch):
    """Every ``socket://`` port a test opens in process (the mocks, the monitor's fake devices) closes at once."""
    from serial.urlhandler import protocol_socket

    monkeypatch.setattr(protocol_socket, "time", _NoPauseAfterClose)


@pytest.fixture
def mock_port(mocks):
    """``start(chip)`` → the ``socket://127.0.0.1:PORT`` URL of that chip's mock, its flash erased (all 0xFF)."""
    mock_api = pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")

    def start(chip: str) -> str:
        handle = mocks.get(chip)
        if handle is None:
            handle = mocks[chip] = mock_api.mock_bootloader(chip, mode="foreground")
        else:
            handle.erase_flash()
        url = handle.url()
        assert url.startswith("socket://127.0.0.1:"), url
        return url

    return start


def esptool_at(chip: str, url: str, *args, cwd: Path) -> str:
    """esptool as a real command against the device (mock) at ``url``, as a user runs it; its output."""
    cmd = [*ESPTOOL, "--chip", chip, "--port", url, "--baud", BAUD, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def flash_holds(chip: str, url: str, cwd: Path, *pairs: tuple[int, str]) -> None:
    """esptool verify-flash: the peer's MD5 of each region equals the file's.

    Read back by digest rather than ``read-flash``: esp32-mock-bootloader 0.3 drops a stub
    read stream when an ack takes over 50 ms, which esptool over ``socket://`` (one byte per
    read) often does; the digest is computed by the peer from what it stored.

    The check runs esptool in process (an oracle, like :func:`esptool`): the flashing under test
    is done by esptool as a command, and another interpreter start-up would prove nothing more.
    It stays at the first baud rate and leaves the chip as it is afterwards (``--after no-reset``): a
    socket carries any rate alike, each connection to the mock starts a fresh ROM session, and the baud
    change and the reset pulse would only add their waits.
    """
    args = [item for offset, file in pairs for item in (hex(offset), cwd / file)]
    out = esptool("--chip", chip, "--port", url, "--after", "no-reset", "verify-flash", *args).stdout
    assert out.count("Verification successful") == len(pairs), out


class FakeEsp:
    """What flash_folder uses of an esptool loader."""

    def __init__(self, chip_name="ESP32-C3", revision=4, crystal=40, flash_size=None):
        self.CHIP_NAME, self.revision, self.crystal = chip_name, revision, crystal
        self.flash_size = flash_size  # esptool's text ("4MB"), or None: the flash id names no size
        self._port = SimpleNamespace(close=lambda: None)
        self.calls = []

    def get_chip_revision(self):
        return self.revision

    def get_crystal_freq(self):
        return self.crystal

    def get_chip_description(self):
        return self.CHIP_NAME

    def change_baud(self, baud):
        self.calls.append(("baud", baud))

    def flash_set_parameters(self, size):
        self.calls.append(("size", size))


@pytest.fixture
def fake_esptool(monkeypatch):
    from esptool import cmds

    esp = FakeEsp()
    monkeypatch.setattr(cmds, "detect_chip", lambda port, baud, connect_mode: esp)
    monkeypatch.setattr(cmds, "run_stub", lambda e: e.calls.append(("stub",)) or e)
    monkeypatch.setattr(cmds, "attach_flash", lambda e: None)
    monkeypatch.setattr(cmds, "detect_flash_size", lambda e: e.flash_size)
    monkeypatch.setattr(cmds, "erase_flash", lambda e, force: e.calls.append(("erase_all",)))
    monkeypatch.setattr(cmds, "erase_region", lambda e, off, size, force: e.calls.append(("erase", off, size)))
    monkeypatch.setattr(cmds, "write_flash", lambda e, pairs, force: e.calls.append(("write", [(o, bytes(d)) for o, d in pairs], force)))
    monkeypatch.setattr(cmds, "reset_chip", lambda e, mode: e.calls.append(("reset", mode)))
    return esp


# --------------------------------------------------------------------------- fake devices for the monitor


@pytest.fixture
def port_opened(monkeypatch):
    """Set once the monitor has opened its port: pyserial drops what arrived before (reset_input_buffer),
    so a fake device speaks only then, as a real app prints after the reset."""
    import imgtool.device.monitor as monitor_module

    opened = threading.Event()
    real = monitor_module.open_port

    def open_and_tell(port, baud):
        link = real(port, baud)
        opened.set()
        return link

    monkeypatch.setattr(monitor_module, "open_port", open_and_tell)
    return opened
