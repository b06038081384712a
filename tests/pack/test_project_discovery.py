"""Settings found where espflash finds them: the working folder, its parent, the ELF's own crate (workspace
members and a shared CARGO_TARGET_DIR included) and the global espflash config; the summary names each file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli

from imgtool.pack.project_config import find_crate, global_config_path, load_project_config

TRIPLE_DIR = ("riscv32imc-unknown-none-elf", "release")
TABLE = "nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, 0x10000, 0x300000\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def built_elf(target_dir: Path, name: str = "blinky") -> Path:
    elf = target_dir.joinpath(*TRIPLE_DIR, name)
    elf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "esp32c3-min.elf", elf)
    return elf


@pytest.fixture
def workspace(tmp_path):
    """ws/ is a [workspace] of app/ (package blinky, with its espflash.toml) and lib/; the ELF in ws/target."""
    ws = tmp_path / "ws"
    write(ws / "Cargo.toml", '[workspace]\nmembers = ["app", "crates/*"]\nresolver = "2"\n')
    write(ws / "crates" / "util" / "Cargo.toml", '[package]\nname = "util"\nversion = "0.1.0"\n')
    write(ws / "app" / "Cargo.toml", '[package]\nname = "blinky"\nversion = "0.1.0"\n')
    write(ws / "app" / "espflash.toml", '[flash]\nsize = "8MB"\n\n[idf]\npartition_table = "parts.csv"\n')
    write(ws / "app" / "parts.csv", TABLE)
    return ws


def pack_json(elf: Path, out: Path, boot: Path, env: dict | None = None) -> dict:
    result = run_cli("pack", elf, "-o", out, "--bootloader", boot, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_workspace_member_run_from_its_folder(workspace, tmp_path, monkeypatch):
    elf = built_elf(workspace / "target")
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    monkeypatch.chdir(workspace / "app")
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", boot)
    assert result.exit_code == 0, result.output
    assert "flash 8MB" in result.stdout and "(flash-size, partition-table from espflash.toml)" in result.stdout
    doc = pack_json(elf, tmp_path / "out", boot)
    assert doc["flash_settings"]["flash_size"] == "8MB" and doc["app"]["partition_size"] == 0x300000
    assert doc["config"]["origins"] == {"flash_size": str(workspace / "app" / "espflash.toml"),
                                        "partition_table": str(workspace / "app" / "espflash.toml")}


def test_workspace_member_found_from_the_workspace_root(workspace, tmp_path, monkeypatch):
    """Run from ws/ (as cargo-espflash in a workspace is): the member named like the ELF gives its settings."""
    elf = built_elf(workspace / "target")
    monkeypatch.chdir(workspace)
    assert find_crate(elf, workspace) == workspace / "app" / "Cargo.toml"
    doc = pack_json(elf, tmp_path / "out", make_bootloader(tmp_path / "bl.bin", "esp32c3"))
    assert doc["flash_settings"]["flash_size"] == "8MB"
    assert doc["config"]["files"] == [str(workspace / "app" / "espflash.toml")]


def test_shared_cargo_target_dir_outside_the_project(workspace, tmp_path, monkeypatch):
    """CARGO_TARGET_DIR=/elsewhere: nothing above the ELF is the project; the crate is found from the working folder."""
    elf = built_elf(tmp_path / "shared-target")
    write(workspace / "app" / "Cargo.toml",
          '[package]\nname = "blinky"\nversion = "0.1.0"\n\n[package.metadata.espflash]\npartition_table_offset = "0x9000"\n')
    deep = workspace / "app" / "src" / "bin"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    cfg = load_project_config(elf, deep)
    assert cfg.flash_size == "8MB" and cfg.partition_table_offset == 0x9000
    assert cfg.origin("partition_table_offset") == str(workspace / "app" / "Cargo.toml")
    write(workspace / "app" / "Cargo.toml", '[package]\nname = "blinky"\nversion = "0.1.0"\n')
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"))
    assert result.exit_code == 0, result.output
    app_toml = workspace / "app" / "espflash.toml"
    assert "flash 8MB" in result.stdout and f"(flash-size, partition-table from {app_toml})" in result.stdout


def test_global_config_is_read_last_and_named(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    write(project / "Cargo.toml", '[package]\nname = "blinky"\nversion = "0.1.0"\n')
    write(project / "espflash.toml", '[flash]\nmode = "dout"\n')
    config_home = tmp_path / "config"
    global_file = write(config_home / "espflash" / "espflash.toml", 'baudrate = 921600\n[flash]\nsize = "4MB"\nmode = "qio"\n')
    elf = built_elf(project / "target")
    monkeypatch.chdir(project)
    env = {"XDG_CONFIG_HOME": str(config_home), "HOME": str(tmp_path / "home")}
    assert global_config_path(env, "linux") == global_file
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                     env=env)
    assert result.exit_code == 0, result.output
    assert "flash 4MB, dout" in result.stdout
    assert f"(flash-size from {global_file}; flash-mode from espflash.toml)" in result.stdout


@pytest.mark.parametrize(
    ("platform", "env", "want"),
    [
        ("linux", {"HOME": "/h"}, Path("/h/.config/espflash/espflash.toml")),
        ("darwin", {"HOME": "/h"}, Path("/h/Library/Application Support/rs.esp.espflash/espflash.toml")),
        ("win32", {"APPDATA": "C:/AppData/Roaming"}, Path("C:/AppData/Roaming/esp/espflash/config/espflash.toml")),
        ("win32", {}, None),
    ],
)
def test_global_config_location_per_platform(platform, env, want):
    assert global_config_path(env, platform) == want


def test_keys_espflash_refuses_are_warned_about_once_naming_the_fix(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    write(project / "Cargo.toml", '[package]\nname = "blinky"\nversion = "0.1.0"\n')
    write(project / "espflash.toml", 'partition_table = "parts.csv"\n[flash]\nfreq = "40MHz"\n')
    write(project / "parts.csv", TABLE)
    elf = built_elf(project / "target")
    monkeypatch.chdir(project)
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                     "--flash-size", "4MB", "-q")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert "refuses the top-level key 'partition_table'" in lines[0] and "move it under [idf]" in lines[0]
    assert "rename it to frequency" in lines[1]
    # following the hints: the same settings, no warning
    write(project / "espflash.toml", '[idf]\npartition_table = "parts.csv"\n[flash]\nfrequency = "40MHz"\n')
    again = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"),
                    "--flash-size", "4MB", "--json")
    assert again.exit_code == 0 and again.stderr == ""
    doc = json.loads(again.stdout)
    assert doc["flash_settings"]["flash_freq"] == "40m" and doc["app"]["partition_size"] == 0x300000


def test_flash_takes_baudrate_from_espflash_toml_and_baud_wins(tmp_path, monkeypatch):
    import imgtool.device.flasher

    seen = []
    monkeypatch.setattr(imgtool.device.flasher, "flash_folder", lambda folder, options, **kw: seen.append(options.baud) or _Report())
    out = tmp_path / "out"
    out.mkdir()
    write(tmp_path / "espflash.toml", "baudrate = 921600\n")
    monkeypatch.chdir(tmp_path)
    result = run_cli("flash", out, "--port", "socket://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    assert "baud 921600 (baudrate from" in result.output
    assert run_cli("flash", out, "--port", "socket://127.0.0.1:9", "--baud", "115200").exit_code == 0
    assert seen == [921600, 115200]


class _Report:
    device = type("Device", (), {"chip": "esp32c3", "revision": 4, "crystal_mhz": 40})()
    written, erased, notes = [], [], []


@pytest.mark.parametrize("members", ['["/abs/*"]', '[""]', '["a\\u0000b"]', '["../*"]', "3", '[1, "app"]'])
def test_odd_workspace_members_are_skipped_not_fatal(members, tmp_path):
    ws = tmp_path / "ws"
    write(ws / "Cargo.toml", f'[workspace]\nmembers = {members}\nexclude = ["x\\u0000"]\n')
    write(ws / "app" / "Cargo.toml", '[package]\nname = "blinky"\nversion = "0.1.0"\n')
    elf = built_elf(ws / "target")
    found = find_crate(elf, ws)
    assert found in (None, ws / "app" / "Cargo.toml")


def test_a_bin_target_name_finds_its_crate(tmp_path):
    project = tmp_path / "proj"
    write(project / "Cargo.toml", '[package]\nname = "firmware"\nversion = "0.1.0"\n\n[[bin]]\nname = "blinky-c3"\npath = "src/main.rs"\n')
    elf = built_elf(tmp_path / "elsewhere", "blinky-c3")
    (project / "src").mkdir()
    assert find_crate(elf, project / "src") == project / "Cargo.toml"
