"""esp-idf-sys (std) builds: pack uses the bootloader, partition table and flash settings the build made
beside the app, says so, and lets project files and the command line win."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, corpus_path, run_cli

from imgtool.image.format import parse_image
from imgtool.inspect.verify import verify
from imgtool.pack.idf_build import find_idf_build, sdkconfig_settings

#: ESP-IDF's partitions_singleapp_large.csv.
IDF_TABLE = "nvs, data, nvs, 0x9000, 0x6000\nphy_init, data, phy, 0xf000, 0x1000\nfactory, app, factory, 0x10000, 1500K\n"
SDKCONFIG = (
    "# Automatically generated file. DO NOT EDIT.\n"
    'CONFIG_ESPTOOLPY_FLASHMODE_DIO=y\nCONFIG_ESPTOOLPY_FLASHMODE="dio"\n'
    'CONFIG_ESPTOOLPY_FLASHFREQ="40m"\nCONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\nCONFIG_ESPTOOLPY_FLASHSIZE="4MB"\n'
    "CONFIG_PARTITION_TABLE_OFFSET=0x8000\n"
)


@pytest.fixture
def std_project(tmp_path):
    """A crate whose ELF sits in target/<triple>/release with esp-idf-sys's out/ folder under build/."""
    project = tmp_path / "proj"
    (project / "Cargo.toml").parent.mkdir(parents=True)
    (project / "Cargo.toml").write_text('[package]\nname = "blinky"\nversion = "0.1.0"\n')
    profile = project / "target" / "riscv32imc-esp-espidf" / "release"
    out = profile / "build" / "esp-idf-sys-0123456789abcdef" / "out"
    (out / "build" / "bootloader").mkdir(parents=True)
    (out / "build" / "partition_table").mkdir(parents=True)
    shutil.copy(corpus_path("bootloaders", "esp32c3-bootloader.bin"), out / "build" / "bootloader" / "bootloader.bin")
    from esp_idf_defs import PartitionTable as IdfTable  # ESP-IDF's gen_esp32part, as the build runs it

    (out / "build" / "partition_table" / "partition-table.bin").write_bytes(IdfTable.from_csv(IDF_TABLE).to_binary())
    (out / "sdkconfig").write_text(SDKCONFIG)
    (profile / "build" / "other-crate-0000").mkdir()
    elf = profile / "blinky"
    shutil.copy(FIXTURES / "esp32c3-min.elf", elf)
    return project, elf, out


def test_finds_the_build_and_reads_the_sdkconfig(std_project):
    _, elf, out = std_project
    build = find_idf_build(elf)
    assert build is not None and build.folder == out.resolve()
    assert build.settings == {"flash_mode": "dio", "flash_freq": "40m", "flash_size": "4MB", "partition_table_offset": 0x8000}


def test_pack_uses_the_builds_bootloader_table_and_flash_settings_and_says_so(std_project, tmp_path, monkeypatch):
    project, elf, out = std_project
    monkeypatch.chdir(project)
    dist = tmp_path / "dist"
    result = run_cli("pack", elf, "-o", dist)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    first = result.stdout.splitlines()[0]
    assert "flash 4MB, dio, 40m" in first
    assert f"from {out.resolve().relative_to(project.resolve())})" in first and "bootloader, partition-table" in first
    written = parse_image((dist / "bootloader.bin").read_bytes())
    idf = parse_image((out / "build" / "bootloader" / "bootloader.bin").read_bytes())
    assert [s.segment for s in written.segments] == [s.segment for s in idf.segments]  # esp-idf-sys's, not the pinned one
    assert (dist / "partitions.bin").read_bytes() == (out / "build" / "partition_table" / "partition-table.bin").read_bytes()
    assert verify(dist, elf=elf).ok
    doc = json.loads(run_cli("pack", elf, "-o", dist, "--json").stdout)
    assert doc["config"]["origins"]["bootloader"] == str(out.resolve())
    assert str(out.resolve() / "sdkconfig") in doc["config"]["files"]


def test_command_line_and_project_files_win_over_the_build(std_project, tmp_path, monkeypatch):
    project, elf, _ = std_project
    monkeypatch.chdir(project)
    (project / "espflash.toml").write_text('[flash]\nfrequency = "80MHz"\n')
    doc = json.loads(run_cli("pack", elf, "-o", tmp_path / "dist", "--flash-size", "8MB", "--partition-table", "single_app",
                             "--json").stdout)
    assert doc["flash_settings"]["flash_size"] == "8MB" and doc["flash_settings"]["flash_freq"] == "80m"
    assert doc["config"]["origins"]["flash_freq"] == str(project / "espflash.toml")
    assert "partition_table" not in doc["config"]["settings"] and "bootloader" in doc["config"]["settings"]


def test_a_bad_sdkconfig_value_is_one_line_naming_the_key(tmp_path):
    path = tmp_path / "sdkconfig"
    path.write_text('CONFIG_ESPTOOLPY_FLASHSIZE="3MB"\n')
    with pytest.raises(Exception, match=r"line 1: CONFIG_ESPTOOLPY_FLASHSIZE=3MB") as err:
        sdkconfig_settings(path)
    assert err.value.field == "CONFIG_ESPTOOLPY_FLASHSIZE"


def test_no_build_folder_means_no_build(tmp_path):
    elf = tmp_path / "target" / "x" / "release" / "app"
    elf.parent.mkdir(parents=True)
    elf.write_bytes(b"")
    (elf.parent / "build" / "esp-idf-sys-1" / "out").mkdir(parents=True)  # an unfinished build: no outputs yet
    assert find_idf_build(elf) is None
    assert find_idf_build(Path(tmp_path / "elsewhere" / "app")) is None
