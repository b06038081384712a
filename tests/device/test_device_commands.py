"""Device commands against esp32-mock-bootloader (4 MB flash; read with --no-stub there, see conftest),
the flash size read before writing, `flash --monitor` of a corpus ELF, and how a port is chosen."""

from __future__ import annotations

import json
import socket
import threading
from types import SimpleNamespace

import pytest
from conftest import FIXTURES, corpus_path, esptool, make_bootloader, run_cli
from test_monitor import PANIC_RISCV, PANIC_XTENSA, check_decoded, two_addresses

from imgtool.device.ports import PortsConfig, list_candidates, load_ports_config, one_port, port_request
from imgtool.environment import UserEnvironment
from imgtool.errors import UsageError
from imgtool.pack.job import PackOptions, pack

pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")

MiB = 1024 * 1024
#: The image header's flash size code for 4MB (high nibble of byte 3).
SIZE_CODE_4MB = 2


@pytest.fixture
def pinned_env(tmp_path):
    """The environment `imgtool flash ELF` packs in: pinned bootloaders from the corpus mirror."""
    return {"IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders")), "IMGTOOL_CACHE_DIR": str(tmp_path / "cache")}


def read_back(url, tmp_path, offset, size) -> bytes:
    """What the device holds at ``offset`` (the check, not the command under test: no reset afterwards)."""
    out = tmp_path / f"dump-{offset:x}.bin"
    result = run_cli("read-flash", "--port", url, "--no-stub", "--after", "no-reset", "--offset", hex(offset), "--size", hex(size), "-o", out)
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def test_flash_elf_packs_for_the_boards_flash_and_verify_reads_the_device_back(tmp_path, mock_port, pinned_env):
    elf = corpus_path("elf", "esp32c6")
    url = mock_port("esp32c6")
    result = run_cli("flash", elf, "--port", url, env=pinned_env)
    assert result.exit_code == 0, result.output
    header = read_back(url, tmp_path, 0x0, 0x10)
    assert header[0] == 0xE9 and header[3] >> 4 == SIZE_CODE_4MB  # the bootloader was placed for the board's 4MB
    result = run_cli("verify", "--port", url, "--no-stub", "--elf", elf)
    assert result.exit_code == 0, result.output
    assert f"flash of the device on {url}: " in result.stdout and "elf: all" in result.stdout


def test_a_pack_for_more_flash_than_the_board_has_is_refused_before_writing(tmp_path, mock_port):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=4)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, flash_size="16MB", project_config=False))
    url = mock_port("esp32c3")
    result = run_cli("flash", out, "--port", url)
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("imgtool: error:") and "is for 16MB of flash but the board has 4MB" in line and "--force" in line, line
    assert "Writing" not in result.stdout
    assert read_back(url, tmp_path, 0x0, 0x100) == b"\xff" * 0x100


def test_flash_says_when_the_board_has_more_flash(tmp_path, mock_port):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=1)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, project_config=False))  # today's default, 2MB
    url = mock_port("esp32c3")
    result = run_cli("flash", out, "--port", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notes"] == ["the board has 4MB of flash; the pack uses 2MB (pack with --flash-size 4MB to use it all)"]


def test_board_info_json_and_its_text(mock_port):
    from dataclasses import fields

    from imgtool.device.board import BoardInfo

    url = mock_port("esp32c6")
    result = run_cli("board-info", "--port", url, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["chip"] == "esp32c6" and doc["flash_size"] == 4 * MiB and doc["crystal_mhz"] == 40
    assert doc["flash_encryption"] is False and doc["secure_boot"] is False and len(doc["mac"].split(":")) == 6
    assert doc["flash_manufacturer_hex"] == "0x20" and doc["flash_device_hex"] == "0x4016"
    text = "\n".join(BoardInfo(**{f.name: doc[f.name] for f in fields(BoardInfo)}).lines())  # what board-info prints without --json
    assert "ESP32-C6" in text and "4MB (manufacturer 0x20, device 0x4016)" in text and "Secure Boot:      disabled" in text


def test_erase_parts_by_label_and_erase_flash(tmp_path, mock_port):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=2)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, flash_size="4MB", project_config=False))
    url = mock_port("esp32c3")
    assert run_cli("flash", out, "--port", url).exit_code == 0
    (tmp_path / "marker.bin").write_bytes(b"nvs!" * 1024)
    esptool("--chip", "esp32c3", "--port", url, "write-flash", "0x9000", tmp_path / "marker.bin")
    result = run_cli("erase-parts", "nvs", "--port", url, "--no-stub")  # the labels from the table on the device
    assert result.exit_code == 0, result.output
    assert "erased 'nvs' (0x9000, 24,576 bytes)" in result.stdout  # (the mock's ROM does not erase on flash_begin)
    result = run_cli("erase-parts", "nvs", "--pack", out, "--port", url)  # the stub erases; the pack's table
    assert result.exit_code == 0, result.output
    assert read_back(url, tmp_path, 0x9000, 0x100) == b"\xff" * 0x100
    bad = run_cli("erase-parts", "wifi", "--pack", out, "--port", url)
    assert bad.exit_code == 2 and "no partition is labelled 'wifi'" in bad.stderr
    assert run_cli("erase-flash", "--port", url).exit_code == 0
    assert read_back(url, tmp_path, 0x0, 0x100) == b"\xff" * 0x100


# --------------------------------------------------------------------------- flash --monitor


class Board:
    """One socket:// URL standing for one board: the first connection reaches the ROM-protocol mock
    (the flashing), the next one hears the app's output (the monitor), sent once the port is open."""

    def __init__(self, mock_url: str, app_output: bytes, opened: threading.Event):
        host, port = mock_url.removeprefix("socket://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.app_output, self.opened = app_output, opened
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with self.server:
            flasher, _ = self.server.accept()
            with flasher, socket.create_connection(self.upstream) as rom:
                back = threading.Thread(target=_pipe, args=(rom, flasher), daemon=True)
                back.start()
                _pipe(flasher, rom)
                rom.shutdown(socket.SHUT_RDWR)
                back.join()
            app, _ = self.server.accept()
            with app:
                self.opened.wait()
                app.sendall(self.app_output)


def _pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass


@pytest.mark.parametrize("chip, panic", [("esp32c6", PANIC_RISCV), ("esp32", PANIC_XTENSA)])
def test_flash_monitor_of_a_corpus_elf_prints_the_app_and_decodes_its_panic(chip, panic, tmp_path, mock_port, pinned_env, port_opened):
    elf = corpus_path("elf", chip)
    pairs = two_addresses(elf)
    panic = panic.format(a=pairs[0][0], b=pairs[1][0])
    board = Board(mock_port(chip), b"ESP-ROM:20220919\r\nHello world!\r\n" + panic.encode(), port_opened)
    result = run_cli("flash", "--monitor", "--port", board.url, elf, env=pinned_env)
    assert result.exit_code == 0, result.output
    assert "Hash of data verified" in result.stdout and "Hello world!" in result.stdout
    check_decoded(result.stdout[result.stdout.index("Hello world!") :], elf, pairs)
    assert "monitor ended (the port closed" in result.stderr


# --------------------------------------------------------------------------- ports


def fake_port(device, vid=None, pid=None, description="", location=None, serial_number=None):
    return SimpleNamespace(device=device, vid=vid, pid=pid, description=description, location=location, serial_number=serial_number)


def test_two_candidate_ports_one_silent_flash_finds_the_one_that_answers(tmp_path, mock_port, monkeypatch):
    import serial.tools.list_ports as list_ports

    with socket.socket() as s:  # nothing listens here: a port that never answers
        s.bind(("127.0.0.1", 0))
        silent = f"socket://127.0.0.1:{s.getsockname()[1]}"
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=2)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, flash_size="4MB", project_config=False))
    url = mock_port("esp32c3")
    ports = [fake_port(url, 0x1A86, 0x7523, "USB Serial"), fake_port(silent, 0x303A, 0x1001, "USB JTAG/serial debug unit")]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    for name in ("ESPFLASH_PORT", "ESPTOOL_PORT", "ESPPORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = run_cli("flash", out)
    assert result.exit_code == 0, result.output
    assert f"{silent} did not answer; trying the next port" in result.stdout  # the Espressif port is tried first
    assert "Hash of data verified" in result.stdout


def test_port_variables_precedence():
    env = UserEnvironment.from_environ({"ESPPORT": "/dev/c", "ESPTOOL_PORT": "/dev/b", "ESPFLASH_PORT": " "})
    assert env.port == "/dev/b"  # a blank variable is unset
    assert UserEnvironment.from_environ({"ESPPORT": "/dev/c", "ESPFLASH_PORT": "/dev/a"}).port == "/dev/a"
    config = PortsConfig(serial="/dev/from-toml")
    assert port_request("/dev/cli", "/dev/a", config).port == "/dev/cli"
    assert port_request(None, "/dev/a", config).port == "/dev/a"
    assert port_request(None, None, config).port == "/dev/from-toml"


def test_espflash_ports_toml_names_the_port_or_the_usb_ids(tmp_path, monkeypatch):
    import serial.tools.list_ports as list_ports

    file = tmp_path / "espflash_ports.toml"
    file.write_text('[connection]\nserial = "/dev/ttyUSB3"\n\n[[usb_device]]\nvid = "10c4"\npid = "ea60"\n')
    config = load_ports_config(file)
    assert config.serial == "/dev/ttyUSB3" and config.usb_devices == ((0x10C4, 0xEA60),)
    monkeypatch.setattr(list_ports, "comports", lambda: [fake_port("/dev/ttyACM0", 0x303A, 0x1001), fake_port("/dev/ttyUSB0", 0x10C4, 0xEA60)])
    assert one_port(port_request(None, None, PortsConfig(usb_devices=config.usb_devices))) == "/dev/ttyUSB0"
    assert one_port(port_request("303a:1001", None, config)) == "/dev/ttyACM0"  # --port vid:pid
    file.write_text('[[usb_device]]\nvid = 12\n')
    from imgtool.errors import InputError

    with pytest.raises(InputError, match="needs vid and pid as hex strings"):
        load_ports_config(file)


def test_known_adapters_first_and_an_ft2232s_uart_interface_before_its_jtag(monkeypatch):
    import serial.tools.list_ports as list_ports

    ports = [
        fake_port("/dev/ttyUSB0", 0x0403, 0x6010, "Dual RS232-HS", location="1-2:1.0"),
        fake_port("/dev/ttyUSB1", 0x0403, 0x6010, "Dual RS232-HS", location="1-2:1.1"),
        fake_port("/dev/ttyS0"),  # built in: no USB id, never a candidate
        fake_port("/dev/ttyACM5", 0x2341, 0x0043, "Arduino"),
        fake_port("/dev/ttyUSB7", 0x10C4, 0xEA60, "CP2102"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert [c.device for c in list_candidates()] == ["/dev/ttyUSB7", "/dev/ttyUSB1", "/dev/ttyUSB0", "/dev/ttyACM5"]
    monkeypatch.setattr(list_ports, "comports", lambda: ports[:2])
    assert one_port(port_request(None, None, PortsConfig())) == "/dev/ttyUSB1"  # WROVER-KIT: UART on interface B
    monkeypatch.setattr(list_ports, "comports", lambda: [ports[3], fake_port("/dev/ttyACM6", 0x2341, 0x0043, "Arduino")])
    with pytest.raises(UsageError, match=r"several serial ports: /dev/ttyACM5 \(Arduino\) \[2341:0043\], /dev/ttyACM6"):
        one_port(port_request(None, None, PortsConfig()))
    picked = one_port(port_request(None, None, PortsConfig()), choose=lambda cands: cands[1])  # on a terminal: asked
    assert picked == "/dev/ttyACM6"
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    with pytest.raises(UsageError, match="no USB serial port found"):
        one_port(port_request(None, None, PortsConfig()))


def test_a_port_that_opens_but_never_answers_is_skipped(monkeypatch):
    """What esptool raises for a silent port (after its connect attempts) moves on to the next candidate."""
    import esptool
    import serial.tools.list_ports as list_ports

    from imgtool.device.ports import PortRequest, answering_port

    monkeypatch.setattr(list_ports, "comports", lambda: [fake_port("/dev/ttyUSB0", 0x0403, 0x6010, location="1-2:1.1"), fake_port("/dev/ttyUSB1", 0x0403, 0x6010, location="1-2:1.0")])
    said = []

    def connect(port):
        if port == "/dev/ttyUSB0":
            raise esptool.FatalError("Failed to connect to Espressif device: No serial data received.")
        return f"loader on {port}"

    assert answering_port(PortRequest(), connect, log=said.append) == ("/dev/ttyUSB1", "loader on /dev/ttyUSB1")
    assert said == ["imgtool: /dev/ttyUSB0 did not answer; trying the next port"]

    def nobody_answers(port):
        if port == "/dev/ttyUSB1":
            raise OSError("busy")
        return connect(port)

    with pytest.raises(UsageError, match=r"no serial port answered: /dev/ttyUSB0 \(Failed to connect.*\); /dev/ttyUSB1 \(busy\)"):
        answering_port(PortRequest(), nobody_answers, log=said.append)
