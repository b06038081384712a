"""verify --encrypt-key reads flash as the chip does: what was written encrypted is decrypted, flash never
written (still erased) and parts written in clear are not, so an untouched NVS reads as empty."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, make_bootloader, run_cli

from imgtool.pack.job import PackOptions, pack
from imgtool.security.encryption import decrypt_written, encrypt, load_flash_key


@pytest.fixture(scope="module")
def flash_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("fe") / "key.bin"
    path.write_bytes(bytes(range(32)))
    return path


@pytest.mark.parametrize("chip", ["esp32", "esp32c3"])
def test_only_written_encrypted_flash_is_decrypted(flash_key, chip):
    key = load_flash_key(flash_key, chip)
    base = 0x1_0000
    clear = bytes(range(256)) * 2
    nvs = b"\x00\x01" * 0x40
    raw = encrypt(key, clear, base) + b"\xff" * 0x180 + nvs + b"\xff" * 0x80
    plain_at = base + len(clear) + 0x180
    read = decrypt_written(key, raw, base, plain=((plain_at, plain_at + len(nvs)),))
    assert read == clear + b"\xff" * 0x180 + nvs + b"\xff" * 0x80


@pytest.mark.parametrize("chip", ["esp32", "esp32c3"])
def test_untouched_nvs_of_an_encrypted_pack_is_empty(tmp_path, flash_key, chip):
    boot = make_bootloader(tmp_path / "bl.bin", chip)
    pack(FIXTURES / f"{chip}-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, encrypt_key=flash_key, project_config=False))
    result = run_cli("verify", tmp_path / "out", "--encrypt-key", flash_key)
    assert result.exit_code == 0, result.output
    assert "data ('nvs' at 0x9000): empty NVS (erased" in result.stdout
    assert "corrupt" not in result.stdout and "holds data" not in result.stdout


def test_nvs_written_in_clear_reads_as_written_from_a_bare_merged_image(tmp_path, flash_key):
    """Without the pack folder's marks the partition table says which partitions the chip decrypts."""
    csv = tmp_path / "settings.csv"
    csv.write_text("key,type,encoding,value\nstore,namespace,,\nanswer,data,u8,42\n", encoding="utf-8")
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    res = pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=tmp_path / "out", bootloader=boot, encrypt_key=flash_key,
               data=(("nvs", csv),), project_config=False))  # fmt: skip
    merged = tmp_path / "out" / res.merged.file
    for target in (tmp_path / "out", merged):
        result = run_cli("verify", target, "--encrypt-key", flash_key, "--chip", "esp32c3")
        assert result.exit_code == 0, result.output
        assert "data ('nvs' at 0x9000): NVS with 1 used page, headers valid" in result.stdout, result.stdout
