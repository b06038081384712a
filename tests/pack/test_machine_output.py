"""--json says what the summary says: the recommended esptool command writes the parts, --erase-all lists the
erase, and a spelling a file accepts is accepted on the command line too."""

from __future__ import annotations

import json
import os
import shlex

from conftest import FIXTURES, make_bootloader, run_cli

C3 = FIXTURES / "esp32c3-min.elf"


def test_pack_json_esptool_command_writes_the_parts_like_flash_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    result = run_cli("pack", C3, "-o", "out", "--bootloader", boot, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    flash_args = (tmp_path / "out" / "flash_args").read_text().split()
    command = shlex.split(doc["esptool_command"])
    assert command[:4] == ["esptool", "--chip", "esp32c3", "write-flash"]
    assert command[4:] == [arg if arg.startswith("-") or arg.startswith("0x") or arg in ("dio", "80m", "2MB")
                           else os.path.join("out", arg) for arg in flash_args]
    assert doc["esptool_args"] == command[1:]
    merged = shlex.split(doc["merged_esptool_command"])
    assert merged[-2:] == ["0x0", os.path.join("out", "esp32c3-min.merged.bin")]
    summary = run_cli("pack", C3, "-o", "out", "--bootloader", boot).stdout
    assert "write-flash @flash_args" in summary  # the summary recommends the same parts


def test_flash_erase_all_json_lists_the_whole_flash(tmp_path, fake_esptool):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    assert run_cli("pack", C3, "-o", out, "--bootloader", boot, "-q").exit_code == 0
    result = run_cli("flash", out, "--port", "p", "--erase-all", "--erase-parts", "nvs", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["erased"][0] == {"offset": 0, "offset_hex": "0x0", "size": 2 * 1024 * 1024, "partition": None, "whole_flash": True}
    assert [e["partition"] for e in doc["erased"][1:]] == ["nvs"]
    assert ("erase_all",) in fake_esptool.calls
    assert not [c for c in fake_esptool.calls if c[0] == "erase" and c[1] == 0]  # the whole flash is not erased twice


def test_flash_freq_spelled_as_espflash_writes_it(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    for spelling in ("80MHz", "80M", "80m"):
        result = run_cli("pack", C3, "-o", tmp_path / "out", "--bootloader", boot, "--flash-freq", spelling, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["flash_settings"]["flash_freq"] == "80m"


def test_summary_and_json_give_the_probe_rs_line_for_the_pack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    summary = run_cli("pack", C3, "-o", "out", "--bootloader", boot, "--partition-table", "two_ota", "--flash-size", "4MB").stdout
    doc = json.loads(run_cli("pack", C3, "-o", "out", "--bootloader", boot, "--partition-table", "two_ota",
                             "--flash-size", "4MB", "--json").stdout)
    command = doc["probe_rs_command"]
    assert f"  or, with a debug probe: {command}" in summary.splitlines()
    assert shlex.split(command) == ["probe-rs", "run", "--chip", "esp32c3",
                                    "--idf-bootloader", os.path.join("out", "bootloader.bin"),
                                    "--idf-partition-table", os.path.join("out", "partitions.bin"),
                                    "--idf-target-app-partition", "ota_0", str(C3)]


def test_no_probe_rs_line_for_an_encrypted_pack(tmp_path):
    """probe-rs writes the app it builds from the ELF, in clear: a line for it would not flash this pack."""
    key = tmp_path / "key.bin"
    key.write_bytes(bytes(range(32)))
    result = run_cli("pack", C3, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                     "--encrypt-key", key, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["probe_rs_command"] is None
