"""End to end: pack, flash with real esptool into a mock ROM bootloader, read the flash back, verify it.

The peer is esp32-mock-bootloader (speaks the ROM/stub serial protocol over TCP on
127.0.0.1); esptool talks to it through a ``socket://`` URL. One case per bootloader
offset (0x1000 Xtensa esp32, 0x0 RISC-V esp32c3, 0x2000 RISC-V esp32c5) and per way of
flashing (``@flash_args``, ``-z OFFSET merged.bin``, ``imgtool flash`` with the parts).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader

from imgtool.pack import pack
from imgtool.verify import verify

mock_api = pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")

BAUD = "921600"
ESPTOOL_TIMEOUT = 120
#: esp32-mock-bootloader 0.3 gives up a stub read-flash stream when esptool's ack takes over 50 ms
#: (its socket poll interval); esptool then reports this. Seen on loaded machines only, and only
#: while reading back, so the read-back is tried again.
PEER_GAVE_UP = "Serial data stream stopped"
READ_BACK_ATTEMPTS = 4


@pytest.fixture
def mock_port(tmp_path, monkeypatch):
    """Start a mock ROM bootloader for a chip on a free 127.0.0.1 port; always stopped afterwards."""
    monkeypatch.setenv("ESP32_MOCK_BOOTLOADER_STATE_DIR", str(tmp_path / "mock-state"))
    handles = []

    def start(chip: str) -> str:
        handle = mock_api.mock_bootloader(chip, mode="foreground")
        handles.append(handle)
        url = handle.url()
        assert url.startswith("socket://127.0.0.1:"), url
        return url

    yield start
    for handle in handles:
        handle.stop()


def esptool(chip: str, url: str, *args: str, cwd: Path, attempts: int = 1) -> str:
    cmd = [sys.executable, "-m", "esptool", "--chip", chip, "--port", url, "--baud", BAUD, *args]
    for _ in range(attempts):
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT)
        if proc.returncode == 0 or PEER_GAVE_UP not in proc.stderr:
            break
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout




def c5_elf(path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent))
    from elfbuild import esp_app_elf

    path.write_bytes(esp_app_elf("esp32c6", symbols=["esp32c5.0123456789abcdef-cgu.0"]))
    return path


def read_back_and_verify(chip: str, url: str, outdir: Path, res, elf: Path) -> None:
    end = res.merged.offset + res.merged.size
    dump = outdir.parent / "dump.bin"
    esptool(chip, url, "read-flash", "0x0", hex(end), str(dump), cwd=outdir, attempts=READ_BACK_ATTEMPTS)
    data = dump.read_bytes()
    assert len(data) == end
    for part in res.parts:
        assert data[part.offset : part.offset + part.size] == (outdir / part.file).read_bytes(), part.name
    report = verify(dump, chip=chip, elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    assert report.kind in ("flash dump", "merged image / flash dump") and report.base == 0
    # and with the chip detected from the dump alone
    assert verify(dump, elf=elf).ok


def test_esp32_flash_args(tmp_path, mock_port):
    """Xtensa, bootloader at 0x1000: esptool write-flash @flash_args from the output folder."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32", size_code=1)
    elf = FIXTURES / "esp32-min.elf"
    out = tmp_path / "out dir"  # a space in the folder: the argument file uses bare names, run from OUTDIR
    res = pack(elf, out, bootloader=boot, project_config=False)
    url = mock_port("esp32")
    log = esptool("esp32", url, "write-flash", "@flash_args", cwd=out)
    assert "Hash of data verified" in log
    read_back_and_verify("esp32", url, out, res, elf)


def test_esp32c3_merged_bin_with_otadata(tmp_path, mock_port):
    """RISC-V, bootloader at 0x0: esptool write-flash -z 0x0 NAME.merged.bin, table with otadata."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=2)
    elf = FIXTURES / "esp32c3-min.elf"
    out = tmp_path / "out"
    res = pack(elf, out, bootloader=boot, flash_size="4MB", partition_table="factory_two_ota", project_config=False)
    assert [p.name for p in res.parts] == ["bootloader", "partition-table", "otadata", "app"]
    url = mock_port("esp32c3")
    esptool(
        "esp32c3", url, "write-flash", "-z", "--flash-mode", "dio", "--flash-size", "4MB", "0x0", res.merged.file, cwd=out
    )
    read_back_and_verify("esp32c3", url, out, res, elf)


def test_esp32c5_imgtool_flash_parts(tmp_path, mock_port):
    """RISC-V, bootloader at 0x2000: `imgtool flash --parts` (esptool's public API with flash_parts_args)."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c5", size_code=1)
    elf = c5_elf(tmp_path / "c5app.elf")
    out = tmp_path / "out"
    res = pack(elf, out, chip="esp32c5", bootloader=boot, project_config=False)
    assert res.merged.offset == 0x2000
    url = mock_port("esp32c5")
    proc = subprocess.run(
        [sys.executable, "-m", "imgtool", "flash", str(out), "--port", url, "--baud", BAUD, "--parts"],
        capture_output=True,
        text=True,
        timeout=ESPTOOL_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    read_back_and_verify("esp32c5", url, out, res, elf)


def test_imgtool_flash_reports_esptool_failure_in_one_line(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=1)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", out, bootloader=boot, project_config=False)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "imgtool", "flash", str(out), "--port", f"socket://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=ESPTOOL_TIMEOUT,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("imgtool: error:")
