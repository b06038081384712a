"""End to end: pack, flash with real esptool into a mock ROM bootloader, read the flash back, verify it.

The peer is esp32-mock-bootloader (speaks the ROM/stub serial protocol over TCP on
127.0.0.1); esptool talks to it through a ``socket://`` URL. One case per bootloader
offset (0x1000 Xtensa esp32, 0x0 RISC-V esp32c3, 0x2000 RISC-V esp32c5) and per way of
flashing (``@flash_args``, ``-z OFFSET merged.bin``, ``imgtool flash`` with the parts, an
ELF, and ``--merged``), plus esptool 4.x reading ``@flash_args`` when
``IMGTOOL_ESPTOOL4_PYTHON`` names a Python that has esptool 4 installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BAUD, ESPTOOL, ESPTOOL_TIMEOUT, FIXTURES, flash_holds, make_bootloader, run_cli
from conftest import esptool as esptool_in_process
from conftest import esptool_at as esptool

from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")



def c5_elf(path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from elfbuild import esp_app_elf

    path.write_bytes(esp_app_elf("esp32c6", symbols=["esp32c5.0123456789abcdef-cgu.0"]))
    return path


def read_back_and_verify(chip: str, url: str, outdir: Path, res, elf: Path, *also: tuple[int, str]) -> None:
    """The peer holds every part (and ``also``'s files) at its offset, and the image it makes boots per imgtool verify.

    One esptool run checks them all: each run costs most of a second of connecting and stub upload.
    """
    flash_holds(chip, url, outdir, *((part.offset, part.file) for part in res.parts), *also)
    report = verify(outdir / res.merged.file, chip=chip, elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    assert verify(outdir / res.merged.file, elf=elf).ok  # and with the chip detected from the image alone
    assert verify(outdir).ok


def test_esp32_flash_args_from_a_folder_with_spaces_and_non_ascii(tmp_path, mock_port):
    """Xtensa, bootloader at 0x1000: esptool write-flash @flash_args run from OUTDIR, whose path and file
    names hold spaces, quotes and non-ASCII (the argument file names files bare, quoted as esptool splits them)."""
    src = tmp_path / "my crate ü" / "target dir"
    src.mkdir(parents=True)
    elf = src / "fïrm wäre 名前.elf"
    shutil.copy(FIXTURES / "esp32-min.elf", elf)
    boot = make_bootloader(tmp_path / "bl é.bin", "esp32", size_code=1)
    out = tmp_path / "out dir 'quoted' ñ"
    res = pack(elf, PackOptions(outdir=out, bootloader=boot, project_config=False))
    assert res.merged.file == "fïrm wäre 名前.merged.bin"
    url = mock_port("esp32")
    cmd = [*ESPTOOL, "--chip", "esp32", "--port", url, "--baud", BAUD, "write-flash", "@flash_args"]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Hash of data verified") == len(res.parts)
    assert "deprecat" not in (proc.stdout + proc.stderr).lower()  # -fm/-ff/-fs are esptool 5's own spellings too
    read_back_and_verify("esp32", url, out, res, elf)


#: A Python with esptool 4.x installed (e.g. ``python -m venv v4 && v4/bin/pip install esptool==4.8.1``).
ESPTOOL4_PYTHON = os.environ.get("IMGTOOL_ESPTOOL4_PYTHON")


@pytest.mark.skipif(not ESPTOOL4_PYTHON, reason="set IMGTOOL_ESPTOOL4_PYTHON to a Python with esptool 4.x to run it")
def test_esptool4_reads_flash_args(tmp_path, mock_port):
    """esptool 4.x (ESP-IDF <= 5.4) spells the command write_flash and refuses --flash-mode; -fm works in both."""
    version = subprocess.run([ESPTOOL4_PYTHON, "-m", "esptool", "version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip().splitlines()[-1].startswith("4."), version.stdout + version.stderr
    # esp32: esptool 4.8.1 misreads the mock's esp32c3 security-info reply as an ESP32-P4
    boot = make_bootloader(tmp_path / "bl.bin", "esp32", size_code=1)
    elf = FIXTURES / "esp32-min.elf"
    out = tmp_path / "out"
    res = pack(elf, PackOptions(outdir=out, bootloader=boot, project_config=False))
    url = mock_port("esp32")
    cmd = [ESPTOOL4_PYTHON, "-m", "esptool", "--chip", "esp32", "--port", url, "--baud", BAUD, "write_flash", "@flash_args"]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Hash of data verified") == len(res.parts)
    read_back_and_verify("esp32", url, out, res, elf)


def test_esp32c3_merged_bin_with_otadata(tmp_path, mock_port):
    """RISC-V, bootloader at 0x0: esptool write-flash -z 0x0 NAME.merged.bin, table with otadata."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=2)
    elf = FIXTURES / "esp32c3-min.elf"
    out = tmp_path / "out"
    res = pack(elf, PackOptions(outdir=out, bootloader=boot, flash_size="4MB", partition_table="factory_two_ota", project_config=False))
    assert [p.name for p in res.parts] == ["bootloader", "partition-table", "otadata", "app"]
    url = mock_port("esp32c3")
    esptool(
        "esp32c3", url, "write-flash", "-z", "--flash-mode", "dio", "--flash-size", "4MB", "0x0", res.merged.file, cwd=out
    )
    read_back_and_verify("esp32c3", url, out, res, elf)


def test_esp32c5_imgtool_flash_parts(tmp_path, mock_port):
    """RISC-V, bootloader at 0x2000: `imgtool flash` (esptool's Python API with the parts in flash_args)."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c5", size_code=1)
    elf = c5_elf(tmp_path / "c5app.elf")
    out = tmp_path / "out"
    res = pack(elf, PackOptions(outdir=out, chip="esp32c5", bootloader=boot, project_config=False))
    assert res.merged.offset == 0x2000
    url = mock_port("esp32c5")
    proc = imgtool("flash", out, "--port", url, "--baud", BAUD)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    read_back_and_verify("esp32c5", url, out, res, elf)


def test_imgtool_flash_reports_esptool_failure_in_one_line(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=1)
    out = tmp_path / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, project_config=False))
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"socket://127.0.0.1:{port}"
    proc = imgtool("flash", out, "--port", url)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()  # esptool's failure, named with the port, and nothing else
    assert line.startswith(f"imgtool: error: {url}: esptool: Could not open {url}"), line  # the rest is esptool's


def imgtool(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``imgtool ARGS`` in process, from ``cwd``: ``imgtool flash`` drives esptool through its Python API anyway,
    so a separate interpreter would only add start-up time (esptool itself runs as a command in the other tests)."""
    before = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = run_cli(*args)
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["imgtool", *map(str, args)], result.exit_code, result.stdout, result.stderr)


NVS_OFFSET = 0x9000
MARKER = b"wifi-credentials" * 256  # one 4 KiB sector


def test_imgtool_flash_keeps_nvs_and_merged_overwrites_it(tmp_path, mock_port):
    """The parts (`imgtool flash ELF`, packing on the fly as a cargo runner) leave NVS alone; --merged does not."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=2)
    elf = FIXTURES / "esp32c3-min.elf"
    out = tmp_path / "out"
    pack_opts = ["--bootloader", str(boot), "--flash-size", "4MB"]
    res = pack(elf, PackOptions(outdir=out, bootloader=boot, flash_size="4MB", project_config=False))
    assert res.parts[1].offset == 0x8000 and res.parts[2].offset == 0x10000  # NVS at 0x9000 lies between
    url = mock_port("esp32c3")
    (tmp_path / "marker.bin").write_bytes(MARKER)
    # the marker is the test's setup, not what it checks: esptool in process places it
    esptool_in_process("--chip", "esp32c3", "--port", url, "write-flash", hex(NVS_OFFSET), tmp_path / "marker.bin")

    # cargo runs `imgtool flash --port P target/.../app` from the crate: no espflash.toml here, so the options say it all
    proc = imgtool("flash", "--port", url, "--baud", BAUD, *pack_opts, str(elf), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "packed esp32c3-min.elf for esp32c3" in proc.stdout
    read_back_and_verify("esp32c3", url, out, res, elf, (NVS_OFFSET, str(tmp_path / "marker.bin")))

    proc = imgtool("flash", str(out), "--port", url, "--baud", BAUD, "--merged")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    merged = (out / res.merged.file).read_bytes()
    assert merged[NVS_OFFSET - res.merged.offset :][: len(MARKER)] == b"\xff" * len(MARKER)
    flash_holds("esp32c3", url, out, (res.merged.offset, res.merged.file))  # so the marker is gone


def test_pack_for_another_chip_is_refused_with_and_without_chip_option(tmp_path, mock_port):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3", size_code=1)
    out = tmp_path / "out_esp32c3"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=boot, project_config=False))
    url = mock_port("esp32")
    for extra in ([], ["--chip", "esp32"]):
        proc = imgtool("flash", str(out), "--port", url, *extra)
        assert proc.returncode != 0, extra
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("imgtool: error:") and "esp32c3" in line, line
        assert ("--chip says esp32" if extra else "connected chip is esp32") in line
    assert "Writing" not in proc.stdout


def test_esp32_crystal_mismatch_with_own_bootloader_is_refused_unless_forced(tmp_path, mock_port):
    """The mock ESP32 has a 26 MHz crystal; a bootloader file imgtool cannot place is refused, then --force writes it."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32", size_code=1)
    out = tmp_path / "out"
    res = pack(FIXTURES / "esp32-min.elf", PackOptions(outdir=out, bootloader=boot, project_config=False))
    url = mock_port("esp32")
    proc = imgtool("flash", str(out), "--port", url, "--baud", BAUD)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert "26 MHz crystal" in line and "--bootloader-variant 26mhz" in line and "--force" in line, line
    proc = imgtool("flash", str(out), "--port", url, "--baud", BAUD, "--force", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    doc = json.loads(proc.stdout)
    assert doc["chip"] == "esp32" and doc["crystal_mhz"] == 26
    assert [w["offset"] for w in doc["written"]] == [p.offset for p in res.parts]


def test_imgtool_flash_elf_with_the_v61_bootloader_set(tmp_path, mock_port, monkeypatch):
    """`imgtool flash ELF --bootloader-set idf6.1` writes a pinned v6.1 build; the mock ESP32's 26 MHz crystal
    swaps in the 26 MHz build of the same set (mirror: the corpus folders)."""
    from conftest import corpus_path

    from imgtool.bootloader.store import BootloaderStore

    mirror = corpus_path("bootloaders")
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(mirror))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    elf = FIXTURES / "esp32-min.elf"
    expected = tmp_path / "expected"
    store = BootloaderStore(tmp_path / "cache", str(mirror))
    # flash packs for the board's flash (the mock's 4 MB)
    pack(elf, PackOptions(outdir=expected, bootloader_set="idf6.1", bootloader_variant="26mhz", flash_size="4MB", project_config=False, store=store))
    url = mock_port("esp32")
    proc = imgtool("flash", elf, "--port", url, "--baud", BAUD, "--bootloader-set", "idf6.1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "writing the pinned 26mhz bootloader" in proc.stdout + proc.stderr
    flash_holds("esp32", url, expected, (0x1000, "bootloader.bin"))
