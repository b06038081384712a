"""`imgtool image` / `imgtool info` from the command line: outputs, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES, run_cli

from imgtool.image.format import parse_image

C3 = FIXTURES / "esp32c3-min.elf"
XTENSA = FIXTURES / "esp32-min.elf"


run = run_cli


def assert_one_line_error(result, *needles):
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("imgtool: error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_image_writes_a_valid_image_and_reports_sizes(tmp_path):
    out = tmp_path / "app.bin"
    result = run("image", C3, "-o", out, "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    parsed = parse_image(out.read_bytes())
    assert parsed.valid and parsed.image.chip_id == 5
    assert "IRAM" in result.output and "DRAM" in result.output and "flash code" in result.output


def test_default_output_sits_next_to_the_elf(tmp_path):
    elf = tmp_path / "blinky.elf"
    shutil.copy(C3, elf)
    assert run("image", elf, "-q").exit_code == 0
    assert (tmp_path / "blinky.bin").is_file()


def test_info_json_reports_segments_checksum_hash_and_descriptor(tmp_path):
    out = tmp_path / "app.bin"
    run("image", XTENSA, "-o", out, "-q")
    result = run("info", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["chip"] == "esp32"
    assert report["checksum"]["valid"] and report["sha256"]["valid"]
    assert report["app_desc"]["project_name"] == "fixture"
    assert {s["memory"] for s in report["segments"]} >= {"DROM", "IROM", "IRAM", "DRAM"}


def test_info_flags_a_corrupted_image(tmp_path):
    out = tmp_path / "app.bin"
    run("image", C3, "-o", out, "-q")
    good = parse_image(out.read_bytes())
    raw = bytearray(out.read_bytes())
    raw[40] ^= 0x55  # the first data byte of segment 0
    out.write_bytes(raw)
    result = run("info", out)
    assert result.exit_code == 1
    assert f"checksum 0x{good.stored_checksum:02x} (INVALID)" in result.output
    report = json.loads(run("info", out, "--json").output)
    # one byte changed by 0x55 changes the XOR checksum by 0x55; the stored values are the good image's
    assert report["checksum"] == {"stored": good.stored_checksum, "computed": good.stored_checksum ^ 0x55, "valid": False}
    assert not report["sha256"]["valid"] and report["sha256"]["stored"] == raw[good.length - 32 : good.length].hex()
    assert [p.rsplit("(", 1)[1] for p in report["problems"]] == ["process_checksum)", "verify_simple_hash)"]


def _mutated(tmp_path, name, mutate):
    data = bytearray(C3.read_bytes())
    data = mutate(data)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


BAD_ELFS = {
    "not-an-elf": (lambda d: bytearray(b"hello world" * 10), "not an ELF"),
    "empty": (lambda d: bytearray(), "not an ELF"),
    "truncated-header": (lambda d: d[:30], "truncated"),
    "truncated-body": (lambda d: d[: len(d) // 3], "truncated"),
    "elf64": (lambda d: d[:4] + b"\x02" + d[5:], "64-bit"),
    "big-endian": (lambda d: d[:5] + b"\x02" + d[6:], "big-endian"),
    "arm-machine": (lambda d: d[:18] + (40).to_bytes(2, "little") + d[20:], "machine EM_ARM"),
}


@pytest.mark.parametrize("case", sorted(BAD_ELFS))
def test_bad_elf_gives_one_line_error_and_no_output(case, tmp_path):
    mutate, needle = BAD_ELFS[case]
    elf = _mutated(tmp_path, f"{case}.elf", mutate)
    out = tmp_path / "out.bin"
    assert_one_line_error(run("image", elf, "-o", out), str(elf), needle)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [elf.name]


def test_missing_file(tmp_path):
    assert_one_line_error(run("image", tmp_path / "nope.elf"), "nope.elf", "no such file")


def test_wrong_architecture_for_chip(tmp_path):
    assert_one_line_error(run("image", C3, "--chip", "esp32", "-o", tmp_path / "x.bin"), "RISC-V", "esp32c3")


def test_unknown_chip_and_flash_options_are_usage_errors(tmp_path):
    for args in (["--chip", "esp8266"], ["--flash-size", "3MB"], ["--flash-mode", "fast"]):
        result = run("image", C3, *args)
        assert result.exit_code == 2 and "Traceback" not in result.output
    assert_one_line_error(run("image", C3, "--flash-freq", "33m", "-o", tmp_path / "x.bin"), "--flash-freq", "80m")


def test_bad_revision_option(tmp_path):
    assert_one_line_error(run("image", C3, "--min-rev", "banana", "-o", tmp_path / "x.bin"), "--min-rev")
    assert_one_line_error(run("image", C3, "--min-rev", "v2.0", "--max-rev", "v1.0", "-o", tmp_path / "x.bin"), "--min-rev")


def test_info_on_non_image(tmp_path):
    assert_one_line_error(run("info", C3), str(C3), "is an ELF file, not an ESP image; make the app image first")


def test_output_into_missing_folder(tmp_path):
    assert_one_line_error(run("image", C3, "-o", tmp_path / "no" / "such" / "x.bin"), "does not exist")


def test_python_dash_m_works():
    import subprocess
    import sys

    import imgtool

    done = subprocess.run([sys.executable, "-m", "imgtool", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"imgtool, version {imgtool.__version__}"


@pytest.mark.parametrize("spelling", ["4MB", "4mb", "4M", "4MiB"])
def test_flash_size_spellings_esptool_and_espflash_users_type(spelling, tmp_path):
    out = tmp_path / "x.bin"
    result = run("image", C3, "--flash-size", spelling, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert parse_image(out.read_bytes()).image.flash_size_code == 2  # 4MB
