"""`imgtool partitions`: compile, decompile, show and check through the real click entry point."""

from __future__ import annotations

import json

import pytest
from conftest import corpus_path, run_cli
from esp_idf_defs import PartitionTable as IdfTable

from imgtool.partitions.choice import load_table, preset_csv, preset_names

OTA_CSV = """# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
"""


def run(*args):
    return run_cli("partitions", *args)


@pytest.fixture
def ota_csv(tmp_path):
    path = tmp_path / "partitions.csv"
    path.write_text(OTA_CSV)
    return path


def test_compile_writes_the_esp_idf_binary(ota_csv, tmp_path):
    out = tmp_path / "pt.bin"
    result = run("compile", str(ota_csv), "-o", str(out), "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == IdfTable.from_csv(OTA_CSV).to_binary()


@pytest.mark.parametrize("name", ["single_app", "factory_two_ota"])
def test_compile_a_preset_at_another_offset(name, tmp_path):
    out = tmp_path / "pt.bin"
    result = run("compile", name, "-o", str(out), "--offset", "0x10000")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == IdfTable.from_csv(preset_csv(name), 0x10000).to_binary()


def test_decompile_round_trips(ota_csv, tmp_path):
    binary = tmp_path / "pt.bin"
    assert run("compile", str(ota_csv), "-o", str(binary)).exit_code == 0
    result = run("decompile", str(binary))
    assert result.exit_code == 0, result.output
    assert result.output == IdfTable.from_binary(binary.read_bytes()).to_csv()
    csv = tmp_path / "back.csv"
    assert run("decompile", str(binary), "-o", str(csv)).exit_code == 0
    again = tmp_path / "again.bin"
    assert run("compile", str(csv), "-o", str(again)).exit_code == 0
    assert again.read_bytes() == binary.read_bytes()


def test_compile_error_is_one_line_with_the_line_number(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("nvs, data, nvs, 0x9000, 24K,\nfactory, app, factory, 0x18000, 1M,\n")
    out = tmp_path / "pt.bin"
    result = run("compile", str(bad), "-o", str(out))
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:2: " in lines[0]
    assert not out.exists()


def test_compile_into_a_missing_folder_fails_cleanly(ota_csv, tmp_path):
    result = run("compile", str(ota_csv), "-o", str(tmp_path / "nowhere" / "pt.bin"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"imgtool: error: {tmp_path / 'nowhere' / 'pt.bin'}: the folder to write into does not exist; create it first"
    ]
    assert not (tmp_path / "nowhere").exists()  # not made behind the user's back


def test_show_lists_partitions_and_free_space(ota_csv):
    result = run("show", str(ota_csv), "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    for text in ("nvs", "otadata", "factory", "ota_1", "0x210000", "free after the last partition: 0xf0000 (960 KiB)"):
        assert text in result.output


def test_show_a_binary_and_a_preset(ota_csv, tmp_path):
    binary = tmp_path / "pt.bin"
    binary.write_bytes(load_table(ota_csv).to_binary())
    assert "ota_0" in run("show", str(binary)).output
    result = run("show", "two_ota")
    assert result.exit_code == 0 and "pass --flash-size" in result.output


def test_show_json(ota_csv):
    result = run("show", str(ota_csv), "--json", "--flash-size", "4MB")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["table_offset"] == 0x8000 and data["free"] == 0xF0000
    factory = next(p for p in data["partitions"] if p["name"] == "factory")
    assert factory == {
        "name": "factory", "type": "app", "subtype": "factory", "type_id": 0, "subtype_id": 0,
        "offset": 0x10000, "size": 0x100000, "flags": [],
    }


def test_show_flags(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("nvs, data, nvs, , 24K, encrypted:readonly\n")
    data = json.loads(run("show", str(path), "--json").stdout)
    assert data["partitions"][0]["flags"] == ["encrypted", "readonly"]
    assert "encrypted:readonly" in run("show", str(path)).output


def test_check_ok(ota_csv):
    result = run("check", str(ota_csv), "--flash-size", "4MB")
    assert result.exit_code == 0
    assert result.output.startswith("ok: ") and "6 partitions" in result.output and "960 KiB free" in result.output


def test_check_needs_a_flash_size(ota_csv):
    result = run("check", str(ota_csv))
    assert result.exit_code == 2 and result.stdout == ""  # a usage error: nothing checked, nothing reported
    (line,) = result.output.strip().splitlines()
    assert line.startswith("imgtool: error: Missing option '--flash-size'.") and line.endswith(" partitions check -h')")


def test_check_reports_a_partition_past_the_flash(ota_csv):
    result = run("check", str(ota_csv), "--flash-size", "2MB")
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1
    assert f"{ota_csv}:7: 'ota_1'" in result.output and "2 MiB flash" in result.output


def test_check_with_a_moved_table(ota_csv):
    """A table moved to 0x9000 collides with the first partition, which must then start after it."""
    result = run("check", str(ota_csv), "--flash-size", "4MB", "--offset", "0x9000")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"imgtool: error: {ota_csv}:2: 'nvs' at 0x9000 overlaps the partition table (0x9000-0xa000); "
        "start it at 0xa000 or later"
    ]
    assert run("check", str(ota_csv), "--flash-size", "4MB", "--offset", "0x8000").exit_code == 0


def test_check_with_a_chip_places_the_bootloader(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text("bootloader, bootloader, primary, N/A, N/A,\nfactory, app, factory, , 1M,\n")
    without = run("check", str(path), "--flash-size", "4MB")
    assert without.exit_code == 1
    assert without.output.strip().splitlines() == [
        f"imgtool: error: {path}:1: a bootloader entry needs the primary bootloader offset; "
        "pass --chip or --primary-bootloader-offset"
    ]
    result = run("show", str(path), "--chip", "esp32", "--json")
    assert result.exit_code == 0, result.output
    bootloader = json.loads(result.output)["partitions"][0]
    assert (bootloader["offset"], bootloader["size"]) == (0x1000, 0x7000)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--flash-size", "3MB"], "unknown flash size"),
        (["--flash-size", "4MB", "--secure", "v3"], "'v3' is not one of"),
        (["--flash-size", "4MB", "--extra-partition-subtypes", "data, x"], "not a subtype entry"),
        (["--flash-size", "4MB", "--offset", "nope"], "not an offset"),
        (["--flash-size", "4MB", "--chip", "esp99"], "'esp99' is not one of"),
    ],
)
def test_bad_options_are_usage_errors(ota_csv, args, expect):
    result = run("check", str(ota_csv), *args)
    assert result.exit_code == 2 and expect in result.output


def test_unknown_source_lists_presets():
    result = run("show", "no_such_table")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"imgtool: error: no_such_table: no such file, and not a preset (presets: {', '.join(preset_names())})"
    ]


def test_espflash_corpus_table_does_not_fit_4mb(tmp_path):
    path = corpus_path("partitions-espflash-test.csv")
    out = tmp_path / "pt.bin"
    assert run("compile", str(path), "-o", str(out)).exit_code == 0
    assert out.read_bytes() == IdfTable.from_csv(path.read_text()).to_binary()
    result = run("check", str(path), "--flash-size", "4MB")
    assert result.exit_code != 0
    assert ":4: 'factory' (0x10000-0x410000) ends 64 KiB past the end of the 4 MiB flash" in result.output
    assert run("check", str(path), "--flash-size", "8MB").exit_code == 0


def test_pack_accepts_what_esp_idf_accepts_and_prints_the_warnings(tmp_path):
    """Two factory apps: ESP-IDF writes the table, so pack does too, with one warning line."""
    import shutil

    from conftest import FIXTURES, make_bootloader

    elf = tmp_path / "fw"
    shutil.copy(FIXTURES / "esp32c3-min.elf", elf)
    csv = tmp_path / "two.csv"
    csv.write_text("nvs, data, nvs, , 24K,\nfactory, app, factory, , 512K,\nfactory2, app, factory, , 512K,\n")
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    args = ["pack", str(elf), "-o", str(tmp_path / "out"), "--bootloader", str(boot), "--partition-table", str(csv), "-q"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"imgtool: warning: {csv}:3: a second factory app 'factory2' (line 2 has one); "
        "the bootloader only uses the last one listed, so give one of them another subtype"
    ]
    # the app goes where ESP-IDF's bootloader looks: the last factory row
    assert "0x90000 fw.bin" in (tmp_path / "out" / "flash_args").read_text()
    assert (tmp_path / "out" / "partitions.bin").read_bytes() == IdfTable.from_csv(csv.read_text()).to_binary()
