"""`verify` names the damaged part and the reason, for each kind of corruption of a good merged image."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from conftest import FIXTURES, run_cli

from imgtool.chips.table import get_chip
from imgtool.image.format import EspImage, Segment, parse_image
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

TABLE = 0x8000
APP = 0x10000


def _bootloader(path, chip_name):
    chip = get_chip(chip_name)
    addr = 0x3FFF_0000 if chip.name == "esp32" else 0x4080_0000
    seg = Segment(addr, bytes(range(256)) * 8)
    path.write_bytes(EspImage(chip_id=chip.image_chip_id, entry=addr, segments=(seg,)).to_bytes())
    return path


@pytest.fixture(scope="module", params=["esp32c3", "esp32"])
def good(request, tmp_path_factory):
    """(chip, base address of the file, merged bytes) for a RISC-V (base 0x0) and an Xtensa (base 0x1000) pack."""
    chip = request.param
    tmp = tmp_path_factory.mktemp(chip)
    elf = FIXTURES / ("esp32c3-min.elf" if chip == "esp32c3" else "esp32-min.elf")
    res = pack(elf, PackOptions(outdir=tmp / "out", bootloader=_bootloader(tmp / "bl.bin", chip), flash_size="4MB", project_config=False))
    data = (tmp / "out" / res.merged.file).read_bytes()
    report = verify(data)
    assert report.ok, report.problems
    return chip, res.merged.offset, data


def _lengths(data: bytes, base: int):
    boot_len = parse_image(data[: TABLE - base]).length
    app_len = parse_image(data[APP - base :]).length
    return boot_len, app_len


def _reseal_table(d: bytearray, base: int) -> None:
    """Recompute the table's MD5 entry after editing entries, so only the intended change is seen."""
    start = TABLE - base
    pos = start
    while d[pos : pos + 2] == b"\xaa\x50":
        pos += 32
    assert d[pos : pos + 2] == b"\xeb\xeb"
    d[pos + 16 : pos + 32] = hashlib.md5(bytes(d[start:pos])).digest()


def _app_entry(d: bytearray, base: int) -> int:
    pos = TABLE - base
    while d[pos : pos + 2] == b"\xaa\x50":
        if d[pos + 2] == 0x00:  # type app
            return pos
        pos += 32
    raise AssertionError("no app entry")


def bootloader_byte(d, base):
    d[0x30] ^= 0x01  # inside segment 0's data
    return d


def bootloader_hash(d, base):
    boot_len, _ = _lengths(d, base)
    d[boot_len - 1] ^= 0x01
    return d


def table_entry_byte(d, base):
    d[TABLE - base + 32 + 8] ^= 0x01  # size of entry 1
    return d


def app_byte(d, base):
    d[APP - base + 0x100] ^= 0x01
    return d


def app_hash(d, base):
    _, app_len = _lengths(d, base)
    d[APP - base + app_len - 1] ^= 0x01
    return d


def app_chip_id(d, base):
    other = get_chip("esp32s3").image_chip_id
    struct.pack_into("<H", d, APP - base + 12, other)
    return d


def app_moved_off_partition(d, base):
    """The app bytes sit 64 KiB later than the partition the table names."""
    _, app_len = _lengths(d, base)
    app = bytes(d[APP - base : APP - base + app_len])
    d[APP - base : APP - base + app_len] = b"\xff" * app_len
    end = APP - base + 0x10000 + app_len
    if len(d) < end:
        d.extend(b"\xff" * (end - len(d)))
    d[APP - base + 0x10000 : end] = app
    return d


def table_points_elsewhere(d, base):
    """The table (MD5 intact) moves the app partition to where nothing was written."""
    entry = _app_entry(d, base)
    struct.pack_into("<I", d, entry + 4, 0x200000)
    struct.pack_into("<I", d, entry + 8, 0x100000)
    _reseal_table(d, base)
    return d


def app_partition_misaligned(d, base):
    entry = _app_entry(d, base)
    struct.pack_into("<I", d, entry + 4, APP + 0x1000)
    _reseal_table(d, base)
    return d


def truncated_in_app(d, base):
    _, app_len = _lengths(d, base)
    return d[: APP - base + app_len // 2]


def truncated_before_app(d, base):
    return d[: APP - base - 0x100]


def truncated_before_table(d, base):
    return d[: TABLE - base - 0x10]


#: id → (mutation, part the first problem names, words its reason contains)
CASES = {
    "bootloader-byte": (bootloader_byte, "bootloader", ["checksum mismatch"]),
    "bootloader-hash": (bootloader_hash, "bootloader", ["SHA-256 does not match"]),
    "table-entry-byte": (table_entry_byte, "partition table", ["MD5"]),
    "app-byte": (app_byte, "app ('factory' at 0x10000)", ["checksum mismatch"]),
    "app-hash": (app_hash, "app ('factory' at 0x10000)", ["SHA-256 does not match"]),
    "app-chip-id": (app_chip_id, "app ('factory' at 0x10000)", ["built for esp32s3"]),
    "app-moved-off-partition": (app_moved_off_partition, "app ('factory' at 0x10000)", ["magic"]),
    "table-points-past-end": (table_points_elsewhere, "app ('factory' at 0x200000)", ["ends before the app partition"]),
    "app-partition-misaligned": (app_partition_misaligned, "partition table", ["0x11000", "aligned"]),
    "truncated-in-app": (truncated_in_app, "app ('factory' at 0x10000)", ["truncated"]),
    "truncated-before-app": (truncated_before_app, "app ('factory' at 0x10000)", ["ends before the app partition"]),
    "truncated-before-table": (truncated_before_table, "partition table", ["ends before the partition table"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_corruption_is_named(case, good):
    chip, base, data = good
    mutate, part, words = CASES[case]
    bad = bytes(mutate(bytearray(data), base))
    report = verify(bad, chip=chip)
    assert not report.ok
    first = report.problems[0]
    assert first.part == part, [str(p) for p in report.problems]
    for word in words:
        assert word in first.message, [str(p) for p in report.problems]
    # and the same without --chip (detected from the bootloader header)
    detected = verify(bad)
    assert not detected.ok and detected.problems[0].part == part


def test_chip_id_change_alone_is_reported_even_with_hash_recomputed(good):
    """Chip id wrong but checksum and hash intact: only the chip mismatch is reported."""
    chip, base, data = good
    d = bytearray(data)
    _, app_len = _lengths(d, base)
    start = APP - base
    struct.pack_into("<H", d, start + 12, get_chip("esp32s3").image_chip_id)
    d[start + app_len - 32 : start + app_len] = hashlib.sha256(bytes(d[start : start + app_len - 32])).digest()
    report = verify(bytes(d), chip=chip)
    assert [str(p) for p in report.problems] == [
        f"app ('factory' at 0x10000): is built for esp32s3, not {chip}: the {chip} bootloader refuses it "
        "(bootloader_common_check_chip_validity)"
    ]


@pytest.mark.parametrize("case", ["bootloader-hash", "table-entry-byte", "app-hash", "truncated-in-app"])
def test_cli_verify_reports_the_part(case, good, tmp_path):
    chip, base, data = good
    mutate, part, words = CASES[case]
    path = tmp_path / "bad.merged.bin"
    path.write_bytes(bytes(mutate(bytearray(data), base)))
    result = run_cli("verify", str(path), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["problems"][0].startswith(f"{part}: ")
    errors = [line for line in result.stderr.splitlines() if line.startswith("imgtool: error:")]
    assert len(errors) == 1 and str(path) in errors[0] and part in errors[0]
