"""The monitor: a fake device (a pseudo-terminal, or a loopback socket through pyserial's
``socket://``) prints a Rust app's panic; the addresses in it, taken from the real corpus ELFs,
come out with their function and ``main.rs:LINE`` as pyelftools' own line program says (computed
here independently). Ctrl+C, the port closing and the time limit end it cleanly."""

from __future__ import annotations

import functools
import io
import os
import socket
import sys
import threading

import pytest
from conftest import corpus_path, run_cli

from imgtool.decode.addresses import addresses_in, decode_line
from imgtool.decode.symbols import Symbolizer, demangle
from imgtool.device.monitor import CTRL_C, CTRL_R, AppOutput, Monitor

# --------------------------------------------------------------------------- what the ELF says, independently


@functools.lru_cache(maxsize=None)
def main_rs_lines(elf) -> dict[int, int]:
    """address → line of each line-table row in a file called main.rs (the last row at an address wins)."""
    from elftools.elf.elffile import ELFFile

    rows = {}
    with open(elf, "rb") as fh:
        dwarf = ELFFile(fh).get_dwarf_info()
        for cu in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(cu)
            base = 0 if program.header.version >= 5 else 1
            for entry in program.get_entries():
                state = entry.state
                if state is None or state.end_sequence:
                    continue
                if program["file_entry"][state.file - base].name == b"main.rs" and state.address:
                    rows[state.address] = state.line
    return {a: line for a, line in rows.items() if line}


def function_at(elf, address: int) -> str:
    """The symbol-table function holding ``address``."""
    for start, size, name in functions(elf):
        if start <= address < start + size:
            return name
    raise AssertionError(f"no function holds 0x{address:x}")


@functools.lru_cache(maxsize=None)
def functions(elf) -> tuple[tuple[int, int, str], ...]:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as fh:
        return tuple(
            (sym["st_value"], sym["st_size"], sym.name)
            for sym in ELFFile(fh).get_section_by_name(".symtab").iter_symbols()
            if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"]
        )


def two_addresses(elf) -> list[tuple[int, int]]:
    rows = sorted(main_rs_lines(elf).items())
    assert len(rows) >= 2, rows
    return [rows[0], rows[-1]]


PANIC_RISCV = """!! A panic occured in 'src/bin/main.rs', at line 32, column 5

PanicInfo {{ message: boom }}

Backtrace:

0x{a:08x}
0x{b:08x}
Exception 'Illegal instruction' mepc=0x{a:08x}, mtval=0x00000000
MEPC    : 0x{a:08x}  RA      : 0x{b:08x}  SP      : 0x4087ff00  GP      : 0x40811e00
PC=0x{b:08x} at 0x40000000 (the ROM: not in the app)
"""
PANIC_XTENSA = """Guru Meditation Error: Core  0 panic'ed (LoadProhibited). Exception was unhandled.

Backtrace: 0x{a:08x}:0x3ffb1230 0x{b:08x}:0x3ffb1250 0x40000400:0x3ffb1270
"""


def check_decoded(text: str, elf, pairs) -> None:
    for address, line in pairs:
        assert f"0x{address:08x} - " in text, text
        assert f"main.rs:{line}" in text, (hex(address), line, text)
        assert function_at(elf, address) in text  # e.g. "main", inside esp32c6::__risc_v_rt__main


# --------------------------------------------------------------------------- symbols


@pytest.mark.parametrize("chip", ["esp32c6", "esp32", "esp32s2"])
def test_addresses_map_to_function_and_main_rs_line(chip):
    elf = corpus_path("elf", chip)
    with Symbolizer(elf) as symbols:
        for address, line in main_rs_lines(elf).items():
            frames = symbols.lookup(address)
            assert frames and frames[0].file.endswith("main.rs") and frames[0].line == line, (hex(address), frames)
            assert function_at(elf, address) in frames[-1].function


def test_inlined_calls_give_one_frame_each_with_the_call_site():
    """esp32's main is inlined into its trampoline: at the start of each inlined call the frame around it
    is at the DW_AT_call_line the DWARF records."""
    from elftools.elf.elffile import ELFFile

    elf = corpus_path("elf", "esp32")
    calls = []
    with open(elf, "rb") as fh:
        for cu in ELFFile(fh).get_dwarf_info().iter_CUs():
            if not cu.get_top_DIE().attributes["DW_AT_name"].value.startswith(b"src/bin/main.rs"):
                continue  # the app's own unit: where main is inlined
            for die in cu.iter_DIEs():
                if die.tag == "DW_TAG_inlined_subroutine" and "DW_AT_low_pc" in die.attributes and "DW_AT_call_line" in die.attributes:
                    calls.append((die.attributes["DW_AT_low_pc"].value, die.attributes["DW_AT_call_line"].value))
    assert calls
    with Symbolizer(elf) as symbols:
        for low, call_line in calls:
            frames = symbols.lookup(low)
            assert len(frames) >= 2 and frames[0].inlined and not frames[-1].inlined, frames
            assert call_line in [f.line for f in frames[1:]], (hex(low), call_line, frames)  # the frame around the call


def test_addresses_outside_the_app_are_left_alone_unless_asked():
    elf = corpus_path("elf", "esp32c6")
    line = "PC=0x40000010 RA=0x{:08x}".format(two_addresses(elf)[0][0])
    with Symbolizer(elf) as symbols:
        assert [d.address for d in decode_line(line, symbols)] == [two_addresses(elf)[0][0]]
        shown = decode_line(line, symbols, show_all=True)
        assert [d.in_app for d in shown] == [False, True]


def test_stackdump_words_are_candidates():
    assert addresses_in("STACKDUMP: 420012e8 01000000cc120042") == [0x420012E8, 1, 0x420012CC]


def test_rust_legacy_names_demangle():
    assert demangle("_ZN7esp32c64main17h0123456789abcdefE") == "esp32c6::main"
    assert demangle("_ZN4core3ptr42drop_in_place$LT$alloc..string..String$GT$17h0123456789abcdefE") == "core::ptr::drop_in_place<alloc::string::String>"
    assert demangle("main") == "main"


# --------------------------------------------------------------------------- the monitor loop


class FakePort:
    """A serial port that gives ``chunks`` one read each, then b"" (or ends: raises, as a closed port does)."""

    def __init__(self, chunks, *, then_close=True):
        self.chunks, self.then_close, self.written = list(chunks), then_close, bytearray()

    @property
    def in_waiting(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        from serial import SerialException

        if self.chunks:
            return self.chunks.pop(0)
        if self.then_close:
            raise SerialException("device disconnected")
        return b""

    def write(self, data):
        self.written += data


class Keys:
    def __init__(self, *batches):
        self.batches = list(batches)

    def read(self):
        return self.batches.pop(0) if self.batches else b""


def test_keys_go_to_the_device_ctrl_r_resets_and_ctrl_c_exits():
    resets = []
    port = FakePort([b"hello\n"], then_close=False)
    out = io.BytesIO()
    keys = Keys(b"ab", bytes([CTRL_R]) + b"c", b"d" + bytes([CTRL_C]) + b"never")
    result = Monitor(port, AppOutput(), out, keys=keys, reset=lambda: resets.append(1)).run()
    assert result.reason == "exit" and out.getvalue() == b"hello\n"
    assert bytes(port.written) == b"abcd" and resets == [1]


def test_the_port_closing_ends_a_non_interactive_monitor_and_the_log_gets_everything():
    out, log = io.BytesIO(), io.BytesIO()
    result = Monitor(FakePort([b"a", b"b\n"]), AppOutput(), out, log=log).run()
    assert result.reason == "eof" and result.received == 3
    assert out.getvalue() == log.getvalue() == b"ab\n"


def test_the_time_limit_ends_it_on_the_clock_not_on_the_wall():
    ticks = iter(range(100))
    result = Monitor(FakePort([], then_close=False), AppOutput(), io.BytesIO(), timeout=5, clock=lambda: next(ticks)).run()
    assert result.reason == "timeout"


def test_ctrl_c_as_a_signal_ends_it_cleanly():
    class Interrupting(FakePort):
        def read(self, n):
            raise KeyboardInterrupt

    assert Monitor(Interrupting([]), AppOutput(), io.BytesIO()).run().reason == "interrupt"


def test_an_address_split_across_reads_is_decoded_once_its_line_is_complete():
    elf = corpus_path("elf", "esp32c6")
    (a, line), _ = two_addresses(elf)
    text = f"0x{a:08x}\n".encode()
    with Symbolizer(elf) as symbols:
        output = AppOutput(symbols)
        first = output.feed(text[:5])
        rest = output.feed(text[5:])
    assert first == text[:5] and rest.startswith(text[5:]) and f"main.rs:{line}".encode() in rest


# --------------------------------------------------------------------------- fake devices


def serve_once(data: bytes, opened: threading.Event) -> str:
    """A loopback device that sends ``data`` to its first client once the port is open, then hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def run():
        with server:
            conn, _ = server.accept()
            with conn:
                opened.wait()
                conn.sendall(data)

    threading.Thread(target=run, daemon=True).start()
    return f"socket://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("chip, panic", [("esp32c6", PANIC_RISCV), ("esp32", PANIC_XTENSA)])
def test_monitor_decodes_a_panic_from_a_socket_device_until_it_hangs_up(chip, panic, tmp_path, port_opened):
    elf = corpus_path("elf", chip)
    pairs = two_addresses(elf)
    text = panic.format(a=pairs[0][0], b=pairs[1][0])
    url = serve_once(text.encode(), port_opened)
    log = tmp_path / "monitor.log"
    result = run_cli("monitor", elf, "--port", url, "--non-interactive", "--no-reset", "--log", log)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(text.splitlines()[0]), (result.stdout, result.stderr)
    check_decoded(result.stdout, elf, pairs)
    assert "0x40000000 -" not in result.stdout and "0x40000400 -" not in result.stdout  # ROM addresses are left alone
    assert "monitor ended (the port closed" in result.stderr
    assert log.read_bytes().decode() == result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_monitor_on_a_pseudo_terminal_passes_keys_and_ends_on_ctrl_c(port_opened):
    """The device prints a panic on a pty; once it has been shown, the user types, then Ctrl+C."""
    from imgtool.cli.monitor import run_monitor

    elf = corpus_path("elf", "esp32c6")
    pairs = two_addresses(elf)
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    panic = PANIC_RISCV.format(a=pairs[0][0], b=pairs[1][0]).encode()
    threading.Thread(target=lambda: port_opened.wait() and os.write(master, panic), daemon=True).start()
    shown = io.BytesIO()

    class UserAtKeyboard:
        """Types only once the decoded panic is on screen: no timing in the test."""

        typed = False

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def read(self):
            if self.typed or f"main.rs:{pairs[1][1]}".encode() not in shown.getvalue():
                return b""
            self.typed = True
            return b"help\r\n" + bytes([CTRL_C])

    from types import SimpleNamespace

    real = sys.stdout
    try:
        sys.stdout = SimpleNamespace(buffer=shown)
        reason = run_monitor(os.ttyname(slave), baud=115200, elf=elf, reset=False, non_interactive=False, timeout=None,
                             log_file=None, show_all=False, keyboard=UserAtKeyboard())  # fmt: skip
    finally:
        sys.stdout = real
    assert reason == "exit"
    check_decoded(shown.getvalue().decode(), elf, pairs)
    assert os.read(master, 64) == b"help\r\n"
    os.close(master)
    os.close(slave)


def test_the_log_format_esp_hal_records_is_read():
    from imgtool.decode.defmt import Table, log_format

    elf = corpus_path("elf", "esp32c6")
    assert log_format(elf) == "serial" and Table.from_elf(elf) is None


def test_a_pack_folder_finds_its_elf_beside_it_by_hash(tmp_path):
    """pack's default output is the ELF's folder: monitor OUTDIR decodes with that ELF, and only if its hash matches."""
    import shutil

    from imgtool.bootloader.store import BootloaderStore
    from imgtool.decode.app_elf import find_app_elf
    from imgtool.pack.job import PackOptions, pack

    elf = tmp_path / "blinky"
    shutil.copy(corpus_path("elf", "esp32c6"), elf)
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    pack(elf, PackOptions(outdir=tmp_path / "out", project_config=False, offline=True, store=store))
    assert find_app_elf(tmp_path / "out") == elf  # in the folder's parent, named after the app image
    elf.write_bytes(elf.read_bytes() + b"\0")  # rebuilt since: not the same ELF
    assert find_app_elf(tmp_path / "out") is None


def test_monitor_baud_comes_from_the_option_then_monitor_baud(port_opened):
    url = serve_once(b"hi\n", port_opened)
    result = run_cli("monitor", "--port", url, "--non-interactive", "--no-reset", env={"MONITOR_BAUD": "74880"})
    assert result.exit_code == 0 and f"monitoring {url} at 74880 baud" in result.stderr, result.output
    bad = run_cli("monitor", "--port", url, "--no-reset", env={"MONITOR_BAUD": "fast"})
    assert bad.exit_code == 2 and bad.stderr.strip() == "imgtool: error: MONITOR_BAUD: 'fast' is not a baud rate; set a number such as 115200 or unset it"
