"""pack --data LABEL=PATH: NVS from a CSV (Espressif's generator as the oracle), LittleFS from a folder, raw files;
every output lists them, verify checks them, every mistake is one line with OUTDIR untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import littlefs
import pytest
from conftest import FIXTURES, make_bootloader, run_cli

from imgtool.errors import UsageError
from imgtool.flash.pack_folder import read_pack_folder
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack
from imgtool.partitions.data_images import LITTLEFS_BLOCK_SIZE, LITTLEFS_NAME_MAX, describe_contents
from imgtool.partitions.table import PartitionTable

NVS, NVS_SIZE = 0x9000, 0x6000
STORAGE, STORAGE_SIZE = 0x110000, 0x20000
BLOB, BLOB_SIZE = 0x130000, 0x1000
TABLE = f"""\
# Name, Type, SubType, Offset, Size, Flags
nvs, data, nvs, 0x{NVS:x}, 0x{NVS_SIZE:x},
phy_init, data, phy, 0xf000, 0x1000,
factory, app, factory, 0x10000, 0x100000,
storage, data, littlefs, 0x{STORAGE:x}, 0x{STORAGE_SIZE:x},
blob, data, 0x40, 0x{BLOB:x}, 0x{BLOB_SIZE:x}, encrypted
"""
SETTINGS = """\
key,type,encoding,value
# a comment line, skipped
wifi,namespace,,
ssid,data,string,home network
retries,data,u8,3
offset,data,i32,-40
cert,file,binary,cert.der
app,namespace,,
blobby,data,hex2bin,00112233445566778899aabbccddeeff
"""
WWW = {
    "index.html": b"<h1>hello</h1>\n",
    "css/site.css": b"body { margin: 0 }\n",
    "img/deep/er/logo.bin": bytes(range(256)) * 20,
    "empty.txt": b"",
}


@pytest.fixture
def project(tmp_path):
    """ELF, bootloader, table, settings.csv (with a file row), a www/ tree and a raw blob, in tmp_path/src."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "esp32c3-min.elf", src / "blinky")
    make_bootloader(src / "bl.bin", "esp32c3")
    (src / "table.csv").write_text(TABLE)
    (src / "settings.csv").write_text(SETTINGS)
    (src / "cert.der").write_bytes(bytes(range(200)))
    for name, data in WWW.items():
        (src / "www" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "www" / name).write_bytes(data)
    (src / "blob.raw").write_bytes(b"\x01\x02\x03" * 100)
    return src


def run_pack(src: Path, out: Path, *extra: str):
    args = ["pack", str(src / "blinky"), "-o", str(out), "--bootloader", str(src / "bl.bin"),
            "--partition-table", str(src / "table.csv"), "--flash-size", "4MB", "-q", *extra]  # fmt: skip
    return run_cli(*args)


def oracle_nvs(csv: Path, size: int, tmp: Path) -> bytes:
    """What esp-idf-nvs-partition-gen's own command writes (run where the CSV is, so `file` rows resolve alike)."""
    out = tmp / "oracle-nvs.bin"
    subprocess.run(
        [sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", csv.name, str(out), hex(size)],
        cwd=csv.parent, check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


def mount_littlefs(image: bytes) -> littlefs.LittleFS:
    """Mount (never format) an image as a device would: block size 4096, its name limit."""
    ctx = littlefs.UserContext(len(image))
    ctx.buffer[:] = image
    fs = littlefs.LittleFS(context=ctx, block_size=LITTLEFS_BLOCK_SIZE, block_count=len(image) // LITTLEFS_BLOCK_SIZE,
                           name_max=LITTLEFS_NAME_MAX, mount=False)  # fmt: skip
    fs.mount()
    return fs


def files_in(fs: littlefs.LittleFS) -> dict[str, bytes]:
    found = {}
    for root, _, files in fs.walk("/"):
        for name in files:
            path = f"{root.rstrip('/')}/{name}".lstrip("/")
            with fs.open(path, "rb") as fh:
                found[path] = fh.read()
    return found


@pytest.fixture
def packed(project, tmp_path):
    out = tmp_path / "out"
    result = run_pack(project, out, "--data", f"nvs={project / 'settings.csv'}", "--data", f"storage={project / 'www'}/",
                      "--data", f"blob={project / 'blob.raw'}")  # fmt: skip
    assert result.exit_code == 0, result.output
    return project, out


def test_merged_image_holds_the_generators_nvs_and_a_mountable_littlefs(packed, tmp_path):
    src, out = packed
    merged = (out / "blinky.merged.bin").read_bytes()
    expected_nvs = oracle_nvs(src / "settings.csv", NVS_SIZE, tmp_path)
    assert len(expected_nvs) == NVS_SIZE
    assert merged[NVS : NVS + NVS_SIZE] == expected_nvs == (out / "nvs.bin").read_bytes()
    storage = merged[STORAGE : STORAGE + STORAGE_SIZE]
    assert storage == (out / "storage.bin").read_bytes() and len(storage) == STORAGE_SIZE
    fs = mount_littlefs(storage)
    assert files_in(fs) == WWW
    assert fs.stat("img/deep/er").type == littlefs.LFSStat.TYPE_DIR


def test_raw_file_is_written_as_it_is(packed):
    src, out = packed
    raw = (src / "blob.raw").read_bytes()
    assert (out / "blob.bin").read_bytes() == raw  # not padded to the partition
    assert (out / "blinky.merged.bin").read_bytes()[BLOB : BLOB + len(raw)] == raw


def test_every_output_lists_the_data_parts(packed):
    _, out = packed
    lines = (out / "flash_args").read_text().splitlines()[1:]
    assert lines == ["0x0 bootloader.bin", "0x8000 partitions.bin", "0x10000 blinky.bin",
                     f"0x{NVS:x} nvs.bin", f"0x{STORAGE:x} storage.bin", f"0x{BLOB:x} blob.bin"]  # fmt: skip
    doc = json.loads((out / "flasher_args.json").read_text())
    assert doc["flash_files"][f"0x{NVS:x}"] == "nvs.bin"
    assert doc["storage"] == {"offset": f"0x{STORAGE:x}", "file": "storage.bin", "encrypted": "false"}
    parts = json.loads((out / "manifest.json").read_text())["builds"][0]["parts"]
    assert {"path": "nvs.bin", "offset": NVS} in parts and {"path": "blob.bin", "offset": BLOB} in parts
    sums = dict(reversed(line.split(" *")) for line in (out / "SHA256SUMS").read_text().splitlines())
    for name in ("nvs.bin", "storage.bin", "blob.bin"):
        assert sums[name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    # imgtool flash writes what flash_args lists
    assert [(off, p.name) for off, p in read_pack_folder(out).parts][3:] == [(NVS, "nvs.bin"), (STORAGE, "storage.bin"), (BLOB, "blob.bin")]


def test_verify_reports_data_parts_and_catches_a_changed_file(packed):
    _, out = packed
    report = verify(out)
    assert report.ok, report.problems
    messages = {c.part: c.message for c in report.checks}
    assert "NVS with 1 used page" in messages[f"data ('nvs' at 0x{NVS:x})"]
    assert "LittleFS" in messages[f"data ('storage' at 0x{STORAGE:x})"]
    assert "6 part files match" in messages["pack folder"]
    nvs = bytearray((out / "nvs.bin").read_bytes())
    nvs[100] ^= 0xFF
    (out / "nvs.bin").write_bytes(nvs)
    result = run_cli("verify", out, "-q")
    assert result.exit_code != 0 and "nvs.bin differs from the merged image" in result.stderr


def test_a_damaged_nvs_page_header_is_a_warning(packed):
    _, out = packed
    merged = bytearray((out / "blinky.merged.bin").read_bytes())
    merged[NVS + 4] ^= 1  # the sequence number: the header CRC no longer matches
    report = verify(bytes(merged), chip="esp32c3")
    (check,) = [c for c in report.checks if c.part.startswith("data ('nvs'")]
    assert check.warning and "CRC" in check.message and report.ok


def test_describe_contents_of_erased_and_unknown_data():
    table = PartitionTable.from_csv(TABLE)
    assert describe_contents(table.find("blob"), b"\xff" * 64) is None
    assert describe_contents(table.find("blob"), b"\x00" * 64) == (True, "holds data")


def _refusals(src: Path):
    big = src / "big.raw"
    big.write_bytes(b"\x00" * (BLOB_SIZE + 1))
    huge = src / "huge"
    huge.mkdir()
    (huge / "a.bin").write_bytes(b"\x00" * (STORAGE_SIZE + 1))
    bad = src / "bad.csv"
    bad.write_text("key,type,encoding,value\nns,namespace,,\nx,data,u9,1\n")
    bad_type = src / "badtype.csv"
    bad_type.write_text("key,type,encoding,value\nns,namespace,,\nx,blob,u8,1\n")
    return {
        "unknown label": (["--data", f"nope={src / 'blob.raw'}"], "no partition is labelled 'nope'"),
        "app label": (["--data", f"factory={src / 'blob.raw'}"], "partition 'factory' has type app, not data"),
        "raw too big": (["--data", f"blob={big}"], "big.raw: --data: is 4,097 bytes but partition 'blob' holds 4,096"),
        "folder too big": (["--data", f"storage={huge}"], "does not fit in a LittleFS in partition 'storage'"),
        "twice": (["--data", f"blob={src / 'blob.raw'}", "--data", f"blob={big}"], "partition 'blob' is given twice"),
        "bad csv": (["--data", f"nvs={bad}"], "bad.csv: --data: line 3: u9: Unsupported encoding"),
        "bad csv type": (["--data", f"nvs={bad_type}"], "badtype.csv: --data: line 3: type 'blob'"),
        "no equals": (["--data", "nvs"], "'nvs' is not LABEL=PATH"),
        "missing file": (["--data", f"blob={src / 'missing.bin'}"], "missing.bin: no such data partition file"),
    }


@pytest.mark.parametrize("case", ["unknown label", "app label", "raw too big", "folder too big", "twice", "bad csv",
                                  "bad csv type", "no equals", "missing file"])  # fmt: skip
def test_refusals_are_one_line_and_leave_outdir_alone(case, project, tmp_path):
    args, expected = _refusals(project)[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "blinky.bin").write_bytes(b"old")
    result = run_pack(project, out, *args)
    assert result.exit_code != 0
    assert expected in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgtool: error:")
    assert "Traceback" not in result.output + result.stderr
    assert [(p.name, p.read_bytes()) for p in out.iterdir()] == [("blinky.bin", b"old")]


def test_otadata_and_clashing_labels_are_refused(project, tmp_path):
    table = project / "ota.csv"
    table.write_text("otadata, data, ota, 0xd000, 0x2000\nbootloader, data, 0x40, 0xf000, 0x1000\n"
                     "factory, app, factory, 0x10000, 0x100000\n")  # fmt: skip
    for label, message in (("otadata", "which pack writes itself"), ("bootloader", "cannot name an output file")):
        with pytest.raises(UsageError, match=message):
            pack(project / "blinky", PackOptions(outdir=tmp_path / "o", bootloader=project / "bl.bin", partition_table=table,
                 data=((label, project / "blob.raw"),)))  # fmt: skip


def test_project_config_declares_data_and_the_command_line_wins(project, tmp_path):
    (project / "espflash.toml").write_text('[data]\nnvs = "settings.csv"\nblob = "blob.raw"\n')
    other = project / "other.raw"
    other.write_bytes(b"other")
    out = tmp_path / "out"
    result = run_cli("pack", project / "blinky", "-o", out, "--bootloader", project / "bl.bin",
                     "--partition-table", project / "table.csv", "--flash-size", "4MB", "--data", f"blob={other}")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"data.nvs from {project / 'espflash.toml'}" in result.output and "data.blob" not in result.output
    # espflash 4.5 refuses a [data] table in espflash.toml: said once, naming the place both tools accept
    assert result.stderr.count("refuses the top-level key 'data'") == 1 and "[package.metadata.espflash.data]" in result.stderr
    assert (out / "nvs.bin").read_bytes() == oracle_nvs(project / "settings.csv", NVS_SIZE, tmp_path)
    assert (out / "blob.bin").read_bytes() == b"other"


def test_encrypted_pack_encrypts_only_flagged_data_parts(project, tmp_path):
    from imgtool.security.encryption import decrypt, load_flash_key

    key_file = tmp_path / "key.bin"
    key_file.write_bytes(bytes(range(32)))
    out = tmp_path / "out"
    pack(project / "blinky", PackOptions(outdir=out, bootloader=project / "bl.bin", partition_table=project / "table.csv", flash_size="4MB",
         encrypt_key=key_file, data=(("nvs", project / "settings.csv"), ("blob", project / "blob.raw"))))  # fmt: skip
    doc = json.loads((out / "flasher_args.json").read_text())
    assert doc["nvs"]["encrypted"] == "false" and doc["blob"]["encrypted"] == "true" and doc["app"]["encrypted"] == "true"
    assert (out / "nvs.bin").read_bytes() == oracle_nvs(project / "settings.csv", NVS_SIZE, tmp_path)
    blob = (out / "blob.bin").read_bytes()
    raw = (project / "blob.raw").read_bytes()
    assert blob[: len(raw)] != raw
    assert decrypt(load_flash_key(key_file, "esp32c3"), blob, BLOB)[: len(raw)] == raw


def test_flash_writes_data_parts_after_erasing_data_subtypes(packed, fake_esptool):
    from imgtool.device.flasher import FlashOptions, flash_folder

    _, out = packed
    opts = FlashOptions(port="socket://x", erase_data_parts=["nvs"], no_stub=True, baud=115200)
    flash_folder(out, opts, log=lambda _: None)
    calls = fake_esptool.calls
    erase = calls.index(("erase", NVS, NVS_SIZE))
    (write,) = [i for i, c in enumerate(calls) if c[0] == "write"]
    assert erase < write  # the erase comes first, so the packed NVS is what stays
    assert (NVS, (out / "nvs.bin").read_bytes()) in calls[write][1]


def test_an_image_kind_that_does_not_match_the_subtype_is_a_warning(project, tmp_path):
    (project / "small").mkdir()
    (project / "small" / "a.txt").write_text("a")
    result = pack(project / "blinky", PackOptions(outdir=tmp_path / "o", bootloader=project / "bl.bin", partition_table=project / "table.csv",
                  flash_size="4MB", data=(("nvs", project / "small"),)))  # fmt: skip
    assert any("makes a LittleFS image for partition 'nvs', whose subtype is nvs" in w for w in result.warnings)


# --------------------------------------------------------------------------- folders packed exactly


def _storage(project: Path, tmp_path: Path):
    return run_pack(project, tmp_path / "out", "--data", f"storage={project / 'www'}")


def _one_line_refusal(result, *needles: str) -> None:
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgtool: error:"), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_a_link_leaving_the_data_folder_is_refused(project, tmp_path):
    secret = tmp_path / "host_secret.txt"
    secret.write_text("not for the device")
    (project / "www" / "leak").symlink_to(secret)
    _one_line_refusal(_storage(project, tmp_path), "www/leak: --data: is a link to", "outside the data folder")
    assert not (tmp_path / "out").exists()


def test_a_link_inside_the_data_folder_is_packed_as_its_file(project, tmp_path):
    (project / "www" / "home.html").symlink_to(project / "www" / "index.html")
    assert _storage(project, tmp_path).exit_code == 0
    image = (tmp_path / "out" / "storage.bin").read_bytes()
    assert files_in(mount_littlefs(image))["home.html"] == WWW["index.html"]


def test_an_unreadable_subfolder_is_refused_not_packed_empty(project, tmp_path, monkeypatch):
    import os

    real = os.scandir
    locked = project / "www" / "img"

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    _one_line_refusal(_storage(project, tmp_path), "www/img: --data: cannot list this folder (Permission denied)")


def test_an_unreadable_folder_is_refused(project, tmp_path):
    import os

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop reads")
    (project / "www").chmod(0)
    try:
        _one_line_refusal(_storage(project, tmp_path), "www: --data: cannot list this folder")
    finally:
        (project / "www").chmod(0o755)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="only Linux file systems keep names that are not UTF-8")
def test_a_name_that_is_not_utf8_is_refused_escaped(project, tmp_path):
    import os

    with open(os.path.join(os.fsencode(project / "www"), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"x")
    _one_line_refusal(_storage(project, tmp_path), "caf\\xe9.txt: --data: the name is not UTF-8")


def test_a_full_littlefs_is_reported_as_full(project, tmp_path):
    """Many long names fill the metadata blocks; littlefs then says "name too long", imgtool says full."""
    for i in range(400):
        (project / "www" / f"{i:060d}").write_bytes(b"x")
    _one_line_refusal(_storage(project, tmp_path), "does not fit in a LittleFS in partition 'storage'", "full")


def test_an_nvs_key_is_limited_in_bytes(project, tmp_path):
    csv = project / "keys.csv"
    csv.write_text("key,type,encoding,value\nns,namespace,,\nschlüsselwört12,data,u8,1\n", encoding="utf-8")
    assert len("schlüsselwört12") == 15
    _one_line_refusal(run_pack(project, tmp_path / "out", "--data", f"nvs={csv}"), "is 17 bytes in UTF-8, longer than NVS's 15")
