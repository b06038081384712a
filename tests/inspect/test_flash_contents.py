"""`imgtool info` on a merged image or flash dump describes every part, not only the bootloader."""

from __future__ import annotations

import json

from conftest import FIXTURES, make_bootloader, run_cli

from imgtool.inspect.flash_contents import describe_flash, looks_like_flash
from imgtool.pack.job import PackOptions, pack


def test_info_on_a_merged_image_lists_every_part(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32")
    res = pack(FIXTURES / "esp32-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, partition_table="factory_two_ota",
               flash_size="4MB", project_config=False))
    merged = tmp_path / "out" / res.merged.file
    result = run_cli("info", str(merged), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["chip"] == "esp32" and doc["kind"] == "merged image" and doc["base"] == 0x1000
    parts = {p["name"]: p for p in doc["parts"]}
    assert list(parts)[:2] == ["bootloader", "partition table"]
    assert parts["nvs"]["content"] == "erased" and parts["otadata"]["offset"] == 0xD000
    assert parts["factory"]["content"].startswith(f"image, {res.app_size:,} bytes") and "app fixture" in parts["factory"]["content"]
    assert parts["ota_0"]["content"] == "past the end of the file"
    text = run_cli("info", str(merged)).output
    assert "merged image for esp32" in text and "factory" in text and "ota_1" in text


def test_a_flash_dump_from_zero_is_recognised(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32")
    res = pack(FIXTURES / "esp32-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\xff" * 0x1000 + (tmp_path / "out" / res.merged.file).read_bytes())
    doc = describe_flash(dump)
    assert doc["kind"] == "flash dump" and doc["base"] == 0 and [p["name"] for p in doc["parts"]][-1] == "factory"


def test_a_plain_app_image_is_not_a_flash_image(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    res = pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    app = (tmp_path / "out" / "esp32c3-min.bin").read_bytes()
    assert not looks_like_flash(app)
    assert describe_flash(tmp_path / "out" / "esp32c3-min.bin") is None
    assert res.app_size == len(app)
