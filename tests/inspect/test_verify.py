"""verify: read a merged image or flash dump as the chip would, and name the part that fails."""

from __future__ import annotations

import shutil
import struct

import pytest
from conftest import FIXTURES, run_cli
from conftest import bootloader_image as make_bootloader

from imgtool.chips.table import get_chip
from imgtool.flash.layout import FlashSettings, plan_layout
from imgtool.image.format import EspImage, Segment
from imgtool.inspect.verify import verify
from imgtool.output_names import app_file_name
from imgtool.pack.job import PackOptions, pack
from imgtool.partitions.choice import default_table, load_preset
from imgtool.partitions.otadata import initial_otadata


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Packed outputs for an Xtensa (0x1000) and a RISC-V (0x0) fixture ELF."""
    root = tmp_path_factory.mktemp("packed")
    out = {}
    for chip_name, elf_name in (("esp32", "esp32-min.elf"), ("esp32c3", "esp32c3-min.elf")):
        boot = root / f"bl-{chip_name}.bin"
        boot.write_bytes(make_bootloader(chip_name))
        elf = FIXTURES / elf_name
        res = pack(elf, PackOptions(outdir=root / chip_name, bootloader=boot, project_config=False))
        out[chip_name] = (res, root / chip_name, elf)
    return out


def merged_of(packed, chip_name) -> bytearray:
    res, outdir, _ = packed[chip_name]
    return bytearray((outdir / res.merged.file).read_bytes())


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3"])
def test_packed_output_verifies(packed, chip_name):
    res, outdir, elf = packed[chip_name]
    report = verify(outdir, elf=elf)
    assert report.ok, [str(p) for p in report.problems]
    assert report.chip == chip_name
    assert report.boot_partition == "factory" and report.app_size == res.app_size
    assert {c.part.split(" ")[0] for c in report.checks} == {"bootloader", "partition", "app", "elf", "data", "pack"}


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3"])
def test_chip_detected_from_merged_bytes_and_dump(packed, chip_name):
    merged = bytes(merged_of(packed, chip_name))
    report = verify(merged)
    assert report.ok and report.chip == chip_name
    offset = get_chip(chip_name).bootloader_offset
    dump = b"\xff" * offset + merged + b"\xff" * 0x1000
    report = verify(dump)
    assert report.ok and report.chip == chip_name and report.base == 0
    assert verify(dump, chip=chip_name).ok


def test_corrupt_bootloader_is_named(packed):
    data = merged_of(packed, "esp32")
    data[0x40] ^= 0xFF  # segment data: checksum and hash both break
    report = verify(bytes(data))
    assert not report.ok
    assert report.problems[0].part == "bootloader" and "checksum" in report.problems[0].message


def test_corrupt_table_md5_is_named(packed):
    data = merged_of(packed, "esp32c3")
    data[0x8000 + 20] ^= 0x01  # inside the first entry's name
    report = verify(bytes(data))
    assert [p.part for p in report.problems] == ["partition table"]
    assert "MD5" in report.problems[0].message


def test_missing_table(packed):
    data = merged_of(packed, "esp32c3")
    data[0x8000:0x8C00] = b"\xff" * 0xC00
    report = verify(bytes(data))
    assert report.problems[0].part == "partition table" and "no partition table" in report.problems[0].message


def test_corrupt_app_is_named(packed):
    data = merged_of(packed, "esp32c3")
    data[0x10000 + 0x30] ^= 0x55
    report = verify(bytes(data))
    assert report.problems and report.problems[0].part.startswith("app ('factory' at 0x10000)")
    assert "checksum" in report.problems[0].message or "SHA-256" in report.problems[0].message


def test_truncated_before_app(packed):
    data = merged_of(packed, "esp32c3")[:0x9000]
    report = verify(bytes(data))
    assert "nothing to boot" in report.problems[0].message


def test_wrong_chip_requested(packed):
    report = verify(bytes(merged_of(packed, "esp32c3")), chip="esp32c6")
    assert report.problems[0].part == "bootloader" and "esp32c3, not esp32c6" in report.problems[0].message


def test_not_an_image():
    report = verify(b"\x00" * 0x3000)
    assert report.problems[0].part == "bootloader" and "no ESP image" in report.problems[0].message


def test_different_elf_is_detected(packed):
    _, outdir, _ = packed["esp32c3"]
    report = verify(outdir, elf=FIXTURES / "esp32c6-min.elf")
    assert report.problems and all(p.part == "elf" for p in report.problems)


def test_otadata_selects_the_boot_partition(tmp_path):
    chip = get_chip("esp32c3")
    table = load_preset("two_ota", flash_size=4 * 1024 * 1024)
    app = EspImage(chip_id=chip.image_chip_id, entry=0x4038_0000, segments=(Segment(0x4038_0000, b"\x01" * 64),)).to_bytes()
    settings = FlashSettings("dio", "80m", "4MB")
    common = dict(name="a", app=app, bootloader=make_bootloader("esp32c3", size_code=2), table=table, settings=settings)
    # app in ota_1 and otadata selecting slot 1: boots
    lay = plan_layout(chip, app_partition="ota_1", otadata=initial_otadata(1), **common)
    report = verify(bytes(lay.merged_bytes()))
    assert report.ok and report.boot_partition == "ota_1"
    # app in ota_1 but blank otadata: the bootloader boots ota_0, which is empty
    lay = plan_layout(chip, app_partition="ota_1", otadata=initial_otadata(), **common)
    report = verify(bytes(lay.merged_bytes()))
    assert report.boot_partition == "ota_0" and not report.ok


def test_mmu_misaligned_flash_segment_is_reported():
    chip = get_chip("esp32c3")
    # the first segment's data sits at partition offset + 0x20; load it at an address that is not congruent
    app = EspImage(
        chip_id=chip.image_chip_id, entry=0x4200_0040, segments=(Segment(0x4200_0040, b"\x13\x00\x00\x00" * 16),)
    ).to_bytes()
    lay = plan_layout(
        chip,
        name="a",
        app=app,
        bootloader=make_bootloader("esp32c3"),
        table=default_table(2 * 1024 * 1024),
        settings=FlashSettings("dio", "80m", "2MB"),
    )
    report = verify(bytes(lay.merged_bytes()))
    assert [p.part for p in report.problems] == ["app ('factory' at 0x10000)"]
    assert "MMU" in report.problems[0].message


def test_partition_past_declared_flash_size(packed):
    data = merged_of(packed, "esp32")
    # patch the bootloader header to claim 1MB flash (the 2MB table then overruns it) and fix its hash
    from imgtool.bootloader.place import place_bootloader

    res = packed["esp32"][0]
    boot_len = res.parts[0].size
    placed = place_bootloader(bytes(data[:boot_len]), "esp32", flash_mode="dio", flash_size="1MB", flash_freq="40m")
    data[:boot_len] = placed
    report = verify(bytes(data))
    assert report.problems[0].part == "partition table" and "past the end of the 1 MiB flash" in report.problems[0].message


def test_report_json_and_raise(packed):
    data = merged_of(packed, "esp32c3")
    data[0x10000 + 0x30] ^= 0x55
    report = verify(bytes(data))
    doc = report.to_dict()
    assert doc["ok"] is False and doc["problems"]
    from imgtool.errors import ImageError

    with pytest.raises(ImageError) as info:
        report.raise_for_problems()
    assert "\n" not in str(info.value) and "app ('factory'" in str(info.value)


def test_cli_verify_exit_codes(packed, tmp_path):
    _, outdir, elf = packed["esp32c3"]
    ok = run_cli("verify", outdir, "--elf", elf)
    assert ok.exit_code == 0, ok.output
    bad = bytearray((outdir / "esp32c3-min.merged.bin").read_bytes())
    bad[0x8000 + 20] ^= 1
    path = tmp_path / "bad.bin"
    path.write_bytes(bad)
    result = run_cli("verify", path)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "partition table" in result.stderr
    result = run_cli("verify", path, "--json")
    assert result.exit_code == 1
    import json

    assert json.loads(result.stdout)["ok"] is False


def test_folder_with_two_merged_images_is_ambiguous(packed, tmp_path):
    _, outdir, _ = packed["esp32c3"]
    copy = tmp_path / "copy"
    shutil.copytree(outdir, copy)
    (copy / "flasher_args.json").unlink()
    shutil.copy(copy / "esp32c3-min.merged.bin", copy / "other.merged.bin")
    from imgtool.errors import InputError

    with pytest.raises(InputError, match="exactly one"):
        verify(copy)


def test_ota_entry_crc(tmp_path):
    # sanity: the otadata CRC the verifier relies on is ESP-IDF's (crc32 over ota_seq only)
    data = initial_otadata(0)
    seq, crc = struct.unpack_from("<I", data, 0)[0], struct.unpack_from("<I", data, 28)[0]
    import binascii

    assert seq == 1 and crc == binascii.crc32(struct.pack("<I", 1), 0xFFFFFFFF)


def test_esp32c6_app_with_one_flash_segment_is_rejected(tmp_path):
    """The layout imgtool used to write (rodata and text joined) aborts the ESP-IDF v5.x c6 bootloader."""
    from imgtool.image.format import parse_image

    boot = tmp_path / "bl.bin"
    boot.write_bytes(make_bootloader("esp32c6"))
    res = pack(FIXTURES / "esp32c6-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    merged_path = tmp_path / "out" / res.merged.file
    assert verify(merged_path).ok
    merged = bytearray(merged_path.read_bytes())
    app_at = res.app_partition_offset - get_chip("esp32c6").bootloader_offset
    parsed = parse_image(bytes(merged[app_at:]))
    rom = [s.segment for s in parsed.segments if get_chip("esp32c6").is_flash_mapped(s.segment.addr)]
    joined = Segment(rom[0].addr, rom[0].data + bytes(rom[1].addr - rom[0].end) + rom[1].data)
    ram = [s.segment for s in parsed.segments if s.segment.addr and s.segment not in rom]
    app = EspImage(chip_id=parsed.image.chip_id, entry=parsed.image.entry, segments=(joined, *ram)).to_bytes()
    merged[app_at : app_at + len(app)] = app
    report = verify(bytes(merged), chip="esp32c6")
    assert not report.ok
    messages = [str(p) for p in report.problems]
    assert any("asserts exactly two flash-mapped segments, this app has 1" in m and "unpack_load_app" in m for m in messages)


def test_pack_folder_with_an_app_file_changed_after_packing_is_rejected(packed, tmp_path):
    res, outdir, _ = packed["esp32c3"]
    folder = tmp_path / "copy"
    shutil.copytree(outdir, folder)
    app = folder / app_file_name("esp32c3-min")
    data = bytearray(app.read_bytes())
    data[0x30] ^= 0xFF
    app.write_bytes(bytes(data))
    report = verify(folder)
    assert not report.ok
    messages = [str(p) for p in report.problems]
    assert any(f"{app.name} differs from the merged image at 0x10000" in m for m in messages), messages
    assert any(f"{app.name} does not match its SHA256SUMS entry" in m for m in messages), messages


def test_pack_folder_arguments_must_point_at_the_parts(packed, tmp_path):
    res, outdir, _ = packed["esp32"]
    folder = tmp_path / "copy"
    shutil.copytree(outdir, folder)
    args = folder / "flash_args"
    args.write_text(args.read_text().replace("0x8000 ", "0x9000 "))
    report = verify(folder)
    assert [str(p) for p in report.problems] == [
        "pack folder: flash_args and flasher_args.json list different files or offsets",
        "pack folder: flash_args does not match its SHA256SUMS entry",
    ]


@pytest.mark.parametrize("chip_name", ["esp32", "esp32c3"])
def test_each_step_reads_the_flash_view_and_returns_its_own_checks(packed, chip_name):
    from imgtool.inspect.verify import FlashView, boot_report, check_bootloader, check_table, locate

    merged = bytes(merged_of(packed, chip_name))
    chip = get_chip(chip_name)
    where = locate(merged, None)
    assert (where.chip, where.base, where.checks) == (chip, chip.bootloader_offset, ())
    view = FlashView(merged, where.base)
    boot = check_bootloader(view, chip, 0x8000)
    assert boot.ok and [c.part for c in boot.checks] == ["bootloader"] and boot.flash_bytes is not None
    table, checks = check_table(FlashView(merged, where.base, boot.flash_bytes), chip, 0x8000)
    assert table is not None and [c.ok for c in checks] == [True]
    with pytest.raises(AttributeError):
        view.base = 0  # read-only: no step can move the file in flash for the next one
    report = boot_report("<bytes>", merged, None)
    assert report.checks[: 1 + len(checks)] == [*boot.checks, *checks]
    assert report.to_dict() == verify(merged).to_dict()


def test_a_file_with_no_image_says_where_it_looked():
    from imgtool.inspect.verify import BOOTLOADER_OFFSETS, locate

    where = locate(b"\x00" * 0x3000, None)
    assert where.chip is None
    assert [str(c) for c in where.checks] == [
        "bootloader: no ESP image (magic 0xE9) at the start of the file or at a bootloader offset "
        f"({', '.join(f'0x{off:x}' for off in BOOTLOADER_OFFSETS)}); pass --chip, or check this is a merged image or flash dump"
    ]
    assert BOOTLOADER_OFFSETS == (0x1000, 0x2000)
