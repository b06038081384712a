"""flash_layout (where parts go in the merged image), flash_outputs (the files describing them) and pack_result."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest
from conftest import bootloader_image
from hypothesis import given
from hypothesis import strategies as st

from imgtool.chips.table import get_chip
from imgtool.errors import LayoutError, UsageError
from imgtool.atomic import write_outputs
from imgtool.flash.layout import ERASED_BLOCK_LEN, FlashSettings, plan_layout
from imgtool.flash.outputs import render_files, sha256sums
from imgtool.output_names import SHA256SUMS_FILE
from imgtool.pack.result import pack_result
from imgtool.partitions.choice import default_table, load_preset

SETTINGS = FlashSettings(mode="dio", freq="40m", size="4MB")


def bootloader_for(chip_name: str, size: int = 0x400) -> bytes:
    return bootloader_image(chip_name, length=size)


def layout(chip_name="esp32", *, app=b"\xe9APP" * 100, table=None, name="blinky", **kw):
    chip = get_chip(chip_name)
    return plan_layout(
        chip,
        name=name,
        app=app,
        bootloader=kw.pop("bootloader", bootloader_for(chip_name)),
        table=table or default_table(4 * 1024 * 1024),
        settings=kw.pop("settings", SETTINGS),
        **kw,
    )


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3", "esp32c5"])
def test_merged_image_places_every_part_at_its_offset(chip_name):
    lay = layout(chip_name)
    chip = get_chip(chip_name)
    merged = bytes(lay.merged_bytes())
    start = chip.bootloader_offset
    assert lay.start == start
    for part in lay.parts:
        assert merged[part.offset - start : part.end - start] == part.data
    boot = lay.part("bootloader")
    table = lay.part("partition-table")
    assert merged[boot.end - start : table.offset - start] == b"\xff" * (table.offset - boot.end)
    assert len(merged) == lay.app.end - start  # nothing after the app
    assert lay.app.offset == 0x10000


def test_fill_flash_size_pads_to_the_flash_end():
    lay = layout("esp32", fill_flash_size=True)
    merged = lay.merged_bytes()
    assert len(merged) == 4 * 1024 * 1024 - 0x1000
    assert merged[lay.app.end - 0x1000 :] == b"\xff" * (len(merged) - (lay.app.end - 0x1000))


def test_otadata_is_a_part_when_the_table_has_one():
    table = load_preset("factory_two_ota")
    lay = layout("esp32c3", table=table)
    ota = lay.part("otadata")
    assert ota is not None and ota.file == "ota_data_initial.bin"
    assert ota.data == b"\xff" * 0x2000
    files = render_files(lay)
    assert "ota_data_initial.bin" in files
    assert json.loads(files["flasher_args.json"])["otadata"]["offset"] == f"0x{ota.offset:x}"
    assert f"0x{ota.offset:x} ota_data_initial.bin" in files["flash_args"].decode()
    assert {"path": "ota_data_initial.bin", "offset": ota.offset} in json.loads(files["manifest.json"])["builds"][0]["parts"]


def test_app_goes_to_ota_0_without_factory_and_to_named_partition():
    table = load_preset("two_ota")
    assert layout("esp32c3", table=table).app_partition_name == "ota_0"
    lay = layout("esp32c3", table=table, app_partition="ota_1")
    assert lay.app_partition_name == "ota_1"
    assert lay.app.offset == next(p for p in table.partitions if p.name == "ota_1").offset


def test_file_names_and_order():
    files = render_files(layout("esp32"))
    assert list(files) == [
        "blinky.bin",
        "bootloader.bin",
        "partitions.csv",
        "partitions.bin",
        "blinky.merged.bin",
        "flash_args",
        "flash_merged_args",
        "flasher_args.json",
        "manifest.json",
        "SHA256SUMS",
    ]


def test_flash_args_text():
    files = render_files(layout("esp32"))
    assert files["flash_merged_args"].decode() == "-fm dio -ff 40m -fs 4MB\n0x1000 blinky.merged.bin\n"
    assert files["flash_args"].decode().splitlines() == [
        "-fm dio -ff 40m -fs 4MB",
        "0x1000 bootloader.bin",
        "0x8000 partitions.bin",
        "0x10000 blinky.bin",
    ]


@pytest.mark.parametrize("name", ["my app", "blïnky ✓", "it's", 'q"uote'])  # a backslash or a leading '-' is refused
def test_argument_files_split_back_with_esptools_reader(tmp_path, monkeypatch, name):
    from esptool import expand_file_arguments

    files = render_files(layout("esp32c3", name=name))
    for arg_file in ("flash_args", "flash_merged_args"):
        (tmp_path / arg_file).write_bytes(files[arg_file])
    monkeypatch.chdir(tmp_path)
    args = expand_file_arguments(["write-flash", "@flash_merged_args"])
    assert args == ["write-flash", "-fm", "dio", "-ff", "40m", "-fs", "4MB", "0x0", f"{name}.merged.bin"]
    parts = expand_file_arguments(["@flash_args"])
    assert parts[-2:] == ["0x10000", f"{name}.bin"]


def test_flasher_args_json_matches_esp_idf_shape():
    lay = layout("esp32c3")
    doc = json.loads(render_files(lay)["flasher_args.json"])
    assert doc["write_flash_args"] == ["-fm", "dio", "-ff", "40m", "-fs", "4MB"]
    assert doc["flash_settings"] == {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m"}
    assert doc["flash_files"] == {"0x0": "bootloader.bin", "0x8000": "partitions.bin", "0x10000": "blinky.bin"}
    for key, off in (("bootloader", "0x0"), ("partition-table", "0x8000"), ("app", "0x10000")):
        assert doc[key]["offset"] == off and doc[key]["encrypted"] == "false"
    assert doc["extra_esptool_args"] == {"after": "hard-reset", "before": "default-reset", "stub": True, "chip": "esp32c3"}
    # verify OUTDIR finds the merged image here; ESP-IDF tools ignore the extra keys
    assert doc["merged"] == {"offset": "0x0", "file": "blinky.merged.bin", "encrypted": "false"}
    assert "0x0" in doc["flash_files"] and "blinky.merged.bin" not in doc["flash_files"].values()
    assert doc["imgtool"] == {"bootloader": {"source": "file"}}


def test_manifest_json_for_esp_web_tools():
    lay = layout("esp32", version="1.2.3", project_name="blinky-proj")
    doc = json.loads(render_files(lay)["manifest.json"])
    assert doc["name"] == "blinky-proj" and doc["version"] == "1.2.3"
    (build,) = doc["builds"]
    assert build["chipFamily"] == "ESP32"
    # the parts, not the merged image: a web update must leave NVS (0x9000) alone
    assert build["parts"] == [
        {"path": "bootloader.bin", "offset": 0x1000},
        {"path": "partitions.bin", "offset": 0x8000},
        {"path": "blinky.bin", "offset": 0x10000},
    ]
    assert all(isinstance(p["offset"], int) for p in build["parts"])


def test_sha256sums_cover_every_other_file(tmp_path):
    files = render_files(layout("esp32"))
    lines = files["SHA256SUMS"].decode().splitlines()
    assert len(lines) == len(files) - 1
    for line in lines:
        digest, name = line.split(" *", 1)
        assert hashlib.sha256(bytes(files[name])).hexdigest() == digest
    if shutil.which("sha256sum"):
        for name, data in files.items():
            (tmp_path / name).write_bytes(bytes(data))
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path, check=True)


def test_sha256sums_escapes_backslashes():
    text = sha256sums({"a\\b": b"x"})
    assert text.startswith("\\") and "a\\\\b" in text


def test_result_describes_parts_and_command():
    lay = layout("esp32")
    res = pack_result(lay)
    assert [p.name for p in res.parts] == ["bootloader", "partition-table", "app"]
    assert res.merged.offset == 0x1000 and res.merged.file == "blinky.merged.bin"
    assert res.app_partition == "factory" and res.app_size == len(lay.app.data)
    assert res.merged_esptool_command == (
        "esptool --chip esp32 write-flash -fm dio -ff 40m -fs 4MB 0x1000 blinky.merged.bin"
    )
    assert res.esptool_command == (  # the parts, as flash_args
        "esptool --chip esp32 write-flash -fm dio -ff 40m -fs 4MB 0x1000 bootloader.bin 0x8000 partitions.bin 0x10000 blinky.bin"
    )
    assert 0 < res.app_usage < 1
    json.dumps(res.to_dict())


def test_bootloader_overlapping_the_table_is_refused():
    with pytest.raises(LayoutError, match="bootloader .* overlaps partition-table"):
        layout("esp32", bootloader=bootloader_for("esp32", 0x7400))


def test_app_larger_than_its_partition_is_refused():
    table = default_table(1024 * 1024)
    with pytest.raises(LayoutError, match="partition 'factory' holds"):
        layout("esp32", table=table, app=b"\x00" * (table.partitions[-1].size + 1))


def test_part_past_the_flash_end_is_refused():
    with pytest.raises(LayoutError, match="partition .factory. ends at .*past the end of the 2MB flash"):
        layout("esp32", settings=FlashSettings("dio", "40m", "2MB"))  # table is sized for 4MB


@pytest.mark.parametrize("name", ["bootloader", "partitions", "ota_data_initial", ""])
def test_names_that_would_overwrite_fixed_outputs_are_refused(name):
    with pytest.raises(UsageError):
        layout("esp32", name=name)


@given(app_len=st.integers(min_value=32, max_value=0x30000), chip_name=st.sampled_from(["esp32", "esp32c3", "esp32p4"]))
def test_merged_image_property(app_len, chip_name):
    app = hashlib.sha256(str(app_len).encode()).digest() * (app_len // 32)
    lay = layout(chip_name, app=app)
    merged = lay.merged_bytes()
    assert len(merged) == 0x10000 + len(app) - lay.start
    assert merged[0x10000 - lay.start :] == app
    assert merged[0x8000 - lay.start : 0x8000 - lay.start + 2] == b"\xaa\x50"


def test_a_known_digest_counts_only_for_the_data_it_was_taken_of():
    lay = layout("esp32")
    honest = render_files(lay)
    trusted = render_files(lay, known_sha256={lay.app.file: (lay.app.data, "ab" * 32)})
    stale = render_files(lay, known_sha256={lay.app.file: (bytes(bytearray(lay.app.data)), "ab" * 32)})
    assert trusted.sha256[lay.app.file] == "ab" * 32
    assert stale.sha256 == honest.sha256
    assert stale[SHA256SUMS_FILE] == honest[SHA256SUMS_FILE]


@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("table", [None, "factory_two_ota"])
def test_the_streamed_merged_image_is_the_merged_bytes_and_its_checksum(fill, table):
    lay = layout("esp32c3", fill_flash_size=fill, table=load_preset(table) if table else None)
    files = render_files(lay)
    merged = files[lay.merged_file]
    whole = bytes(lay.merged_bytes())
    assert bytes(merged) == whole and len(merged) == len(whole)
    assert files.sha256[lay.merged_file] == hashlib.sha256(whole).hexdigest()
    # never held whole: no piece is longer than the largest part or one erased block
    assert max(map(len, merged.chunks())) <= max(ERASED_BLOCK_LEN, *(p.size for p in lay.parts))


def test_the_merged_image_is_written_whole(tmp_path):
    lay = layout("esp32", fill_flash_size=True)
    write_outputs(tmp_path / "out", render_files(lay))
    assert (tmp_path / "out" / lay.merged_file).read_bytes() == bytes(lay.merged_bytes())
