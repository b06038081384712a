"""UF2 and Intel HEX outputs (equal to esptool merge-bin's), repeatable packs and release archives.

esptool is the oracle for the formats: one separate Python process runs its
``merge-bin --format uf2|hex @flash_args`` in every pack folder of the module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli
from elfbuild import esp_app_elf
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtool.chips.table import CHIPS
from imgtool.flash.archive import ZIP_EPOCH, archive_name, safe_version
from imgtool.flash.ihex import intel_hex
from imgtool.flash.uf2 import (
    BLOCK_SIZE,
    FLAG_FAMILY_ID_PRESENT,
    FLAG_MD5_PRESENT,
    MAGIC_END,
    MAGIC_START0,
    MAGIC_START1,
    PAYLOAD_SIZE,
    parse_uf2,
    uf2_file,
)
from imgtool.pack.job import PackOptions, pack

FORMATS = ("uf2", "hex")
#: Chips added in issue 19, each packed once (UF2 family ids and bootloader offsets of their own).
NEW_CHIPS = ("esp32s31", "esp32h4", "esp32h21")
#: A fixed flash encryption key (XTS-AES-128 on esp32c3).
FLASH_KEY = bytes(range(32))
#: One Python process runs esptool's CLI for every (folder, chip, format): esptool's start-up dominates.
ORACLE = """
import os, sys, esptool
for folder, chip in zip(sys.argv[1::2], sys.argv[2::2]):
    os.chdir(folder)
    for fmt in ("uf2", "hex"):
        esptool.main(["--chip", chip, "merge-bin", "--format", fmt, "-o", "../" + os.path.basename(folder) + ".esptool." + fmt, "@flash_args"])
"""


def c5_elf(path: Path) -> Path:
    from elfbuild import esp_app_elf

    path.write_bytes(esp_app_elf("esp32c6", symbols=["esp32c5.0123456789abcdef-cgu.0"]))
    return path


def ecdsa_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.derive_private_key(0x1234_5678_9ABC_DEF0, ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def signed_bootloader(folder: Path, key: Path) -> Path:
    """An esp32c6 bootloader carrying a signature block, its header set for 4MB (pack keeps such a file as it is)."""
    res = pack(FIXTURES / "esp32c6-min.elf", PackOptions(outdir=folder / "signing", bootloader=make_bootloader(folder / "c6-boot.bin", "esp32c6"),
               flash_size="4MB", sign_keys=(key,), sign_bootloader=True, project_config=False))
    return res.path("bootloader.bin")


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    """case → (PackResult, {format: esptool's bytes}); every case packed with --uf2 --hex."""
    root = tmp_path_factory.mktemp("formats")
    key = root / "flash_key.bin"
    key.write_bytes(FLASH_KEY)
    boot = {chip: make_bootloader(root / f"{chip}-boot.bin", chip) for chip in ("esp32", "esp32c3", "esp32c5", *NEW_CHIPS)}
    new_chip_elfs = {chip: root / f"{chip}.elf" for chip in NEW_CHIPS}
    for chip, path in new_chip_elfs.items():
        path.write_bytes(esp_app_elf(chip))
    cases = {
        "esp32": dict(elf=FIXTURES / "esp32-min.elf", bootloader=boot["esp32"]),
        "esp32c3": dict(elf=FIXTURES / "esp32c3-min.elf", bootloader=boot["esp32c3"]),
        "esp32c5": dict(elf=c5_elf(root / "c5.elf"), chip="esp32c5", bootloader=boot["esp32c5"]),
        "esp32c3-ota": dict(elf=FIXTURES / "esp32c3-min.elf", bootloader=boot["esp32c3"], flash_size="4MB", partition_table="factory_two_ota"),
        "esp32c3-encrypted": dict(elf=FIXTURES / "esp32c3-min.elf", bootloader=boot["esp32c3"], encrypt_key=key),
        "esp32c6-kept-signed-bootloader": dict(
            elf=FIXTURES / "esp32c6-min.elf", bootloader=signed_bootloader(root, ecdsa_key(root / "sb.pem")), flash_size="2MB"
        ),
        **{chip: dict(elf=new_chip_elfs[chip], bootloader=boot[chip]) for chip in NEW_CHIPS},
    }
    results = {}
    for case, kw in cases.items():
        elf = kw.pop("elf")
        results[case] = pack(elf, PackOptions(outdir=root / case, project_config=False, formats=FORMATS, **kw))
    argv = [item for case, res in results.items() for item in (str(res.outdir), res.chip)]
    done = subprocess.run([sys.executable, "-c", ORACLE, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {case: (res, {fmt: (root / f"{case}.esptool.{fmt}").read_bytes() for fmt in FORMATS}) for case, res in results.items()}


CASES = ("esp32", "esp32c3", "esp32c5", "esp32c3-ota", "esp32c3-encrypted", "esp32c6-kept-signed-bootloader", *NEW_CHIPS)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_equal_esptool_merge_bin(packs, case, fmt):
    res, oracle = packs[case]
    ours = res.path(f"{res.name}.{fmt}").read_bytes()
    assert ours == oracle[fmt]
    sums = res.path("SHA256SUMS").read_text()
    assert f"{hashlib.sha256(ours).hexdigest()} *{res.name}.{fmt}" in sums
    for listing in ("flash_args", "flasher_args.json"):
        assert f"{res.name}.{fmt}" not in res.path(listing).read_text()


def test_packs_cover_the_three_bootloader_offsets_and_an_ota_table(packs):
    offsets = {packs[c][0].parts[0].offset for c in ("esp32", "esp32c3", "esp32c5")}
    assert offsets == {0x1000, 0x0, 0x2000}
    assert "otadata" in {p.name for p in packs["esp32c3-ota"][0].parts}


def test_uf2_holds_the_encrypted_parts(packs):
    res, _ = packs["esp32c3-encrypted"]
    blocks = parse_uf2(res.path(f"{res.name}.uf2").read_bytes())
    assert rebuild(blocks) == {p.offset: res.path(p.file).read_bytes() for p in res.parts}


def test_kept_signed_bootloader_is_flashed_byte_for_byte(packs):
    """Its signature covers the header: flash_args says keep, so esptool (and the UF2) leave it as it came."""
    res, _ = packs["esp32c6-kept-signed-bootloader"]
    assert (res.outdir / "flash_args").read_text().splitlines()[0] == "-fm keep -ff keep -fs keep"
    placed = rebuild(parse_uf2(res.path(f"{res.name}.uf2").read_bytes()))[0x0]
    kept = res.path("bootloader.bin").read_bytes()
    assert kept[3] >> 4 == 2  # 4MB in the signed file, while the pack's flash size is 2MB
    assert placed == kept


def rebuild(blocks) -> dict[int, bytes]:
    """Parts from UF2 blocks: a block numbered 0 opens a part at its address."""
    parts: dict[int, bytearray] = {}
    start = None
    for block in blocks:
        if block.block_no == 0:
            start = block.target_addr
            parts[start] = bytearray()
        parts[start] += block.data
    return {k: bytes(v) for k, v in parts.items()}


# --------------------------------------------------------------------------- format properties


@st.composite
def flash_parts(draw):
    """Non-overlapping (offset, data) parts, some touching, some crossing 64 KiB windows."""
    parts, offset = [], draw(st.integers(0, 0x1_FFFF))
    for _ in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, 1500))
        parts.append((offset, draw(st.binary(min_size=size, max_size=size))))
        offset += size + draw(st.sampled_from([0, 1, 15, 0x1000, 0x10000 - 7]))
    return parts


@settings(max_examples=25, deadline=None)
@given(parts=flash_parts(), chip=st.sampled_from(sorted(CHIPS)))
def test_uf2_blocks_carry_each_part_in_order(parts, chip):
    family = CHIPS[chip].uf2_family_id
    data = uf2_file(parts, family)
    assert len(data) % BLOCK_SIZE == 0
    blocks = parse_uf2(data)
    index = 0
    for offset, payload in parts:
        count = -(-len(payload) // PAYLOAD_SIZE)
        for k in range(count):
            block = blocks[index + k]
            raw = data[(index + k) * BLOCK_SIZE : (index + k + 1) * BLOCK_SIZE]
            assert int.from_bytes(raw[0:4], "little") == MAGIC_START0 and int.from_bytes(raw[4:8], "little") == MAGIC_START1
            assert int.from_bytes(raw[-4:], "little") == MAGIC_END
            assert block.flags == FLAG_FAMILY_ID_PRESENT | FLAG_MD5_PRESENT and block.family_id == family
            assert (block.block_no, block.num_blocks) == (k, count)
            assert block.target_addr == offset + k * PAYLOAD_SIZE
            assert block.data == payload[k * PAYLOAD_SIZE : (k + 1) * PAYLOAD_SIZE]
            assert (block.md5.address, block.md5.length) == (block.target_addr, len(block.data))
            assert block.md5.md5 == hashlib.md5(block.data).digest()
        index += count
    assert index == len(blocks)
    assert all(family != 0 for family in (c.uf2_family_id for c in CHIPS.values()))


@settings(max_examples=25, deadline=None)
@given(parts=flash_parts())
def test_hex_equals_the_intelhex_package(parts, tmp_path_factory):
    from intelhex import IntelHex

    expected = IntelHex()
    for offset, payload in parts:
        expected.frombytes(payload, offset)
    path = tmp_path_factory.mktemp("hex") / "x.hex"
    expected.write_hex_file(str(path))
    assert intel_hex(parts) == path.read_bytes()


# --------------------------------------------------------------------------- repeatable packs and archives


def two_packs(tmp_path: Path, **kw):
    boot = make_bootloader(tmp_path / "boot.bin", "esp32c3")
    return [pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=tmp_path / out, bootloader=boot, project_config=False,
                 formats=FORMATS, archive=True, **kw)) for out in ("one", "two")]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_packs_of_one_elf_are_identical(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first, second = two_packs(tmp_path, flash_size="4MB", partition_table="factory_two_ota")
    assert folder_bytes(first.outdir) == folder_bytes(second.outdir)
    assert first.path("SHA256SUMS").read_bytes() == second.path("SHA256SUMS").read_bytes()
    assert set(folder_bytes(first.outdir)) == set(first.files)


def test_ecdsa_signed_packs_repeat(tmp_path):
    key = ecdsa_key(tmp_path / "k.pem")
    boot = make_bootloader(tmp_path / "boot.bin", "esp32c6")
    a, b = (pack(FIXTURES / "esp32c6-min.elf", PackOptions(outdir=tmp_path / out, bootloader=boot, sign_keys=(key,), project_config=False))
            for out in ("a", "b"))
    assert folder_bytes(a.outdir) == folder_bytes(b.outdir)


def test_archive_holds_exactly_the_pack_files_with_fixed_metadata(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first, second = two_packs(tmp_path)
    name = archive_name(first.name, "0.1.0", "esp32c3")
    assert name == "esp32c3-min-0.1.0-esp32c3.zip" and name in first.files
    assert first.path(name).read_bytes() == second.path(name).read_bytes()
    with zipfile.ZipFile(first.path(name)) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(f for f in first.files if f != name)
        for info in infos:
            assert info.date_time == ZIP_EPOCH and info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert zf.read(info) == first.path(info.filename).read_bytes()
    assert name not in first.path("SHA256SUMS").read_text()


def test_source_date_epoch_sets_the_archive_timestamp(tmp_path):
    first, second = two_packs(tmp_path, source_date_epoch="1700000000")  # 2023-11-14 22:13:20 UTC
    archive = next(f for f in first.files if f.endswith(".zip"))
    assert first.path(archive).read_bytes() == second.path(archive).read_bytes()
    with zipfile.ZipFile(first.path(archive)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_outputs_not_asked_for_again_are_removed(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first, _ = two_packs(tmp_path)
    boot = make_bootloader(tmp_path / "boot.bin", "esp32c3")
    again = pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=first.outdir, bootloader=boot, project_config=False))
    assert sorted(p.name for p in first.outdir.iterdir()) == sorted(again.files)
    assert not any(f.endswith((".uf2", ".hex", ".zip")) for f in again.files)


@pytest.mark.parametrize(
    "version, safe",
    [("0.1.0", "0.1.0"), ("v1.2-3-gabc/dirty", "v1.2-3-gabc_dirty"), ("", "0.0.0"), (None, "0.0.0"), ("../x y", "_x_y")],
)
def test_version_is_made_safe_for_a_file_name(version, safe):
    assert safe_version(version) == safe


# --------------------------------------------------------------------------- CLI




@pytest.fixture
def elf(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "esp32c3-min.elf", src / "blinky")
    return src / "blinky"


def test_cli_flags_write_the_files(tmp_path, elf):
    boot = make_bootloader(tmp_path / "boot.bin", "esp32c3")
    done = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", boot, "--uf2", "--hex", "--archive", "--json",
                   env={"SOURCE_DATE_EPOCH": ""})
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    for file in ("blinky.uf2", "blinky.hex", "blinky-0.1.0-esp32c3.zip"):
        assert file in doc["files"] and (tmp_path / "out" / file).is_file()
    text = run_cli("pack", elf, "-o", tmp_path / "out2", "--bootloader", boot, "--uf2")
    assert text.exit_code == 0 and "also: blinky.uf2" in text.output


def test_cli_bad_source_date_epoch_is_one_line_and_writes_nothing(tmp_path, elf):
    boot = make_bootloader(tmp_path / "boot.bin", "esp32c3")
    done = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", boot, "--archive", env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert done.exit_code != 0
    assert "SOURCE_DATE_EPOCH" in done.output and "Traceback" not in done.output
    assert len(done.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
