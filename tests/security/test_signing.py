"""Secure Boot V2 signing and host-side flash encryption, with espsecure (run as a command) as the oracle."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import FIXTURES, espsecure, make_bootloader, run_cli

from imgtool.chips.table import FLASH_SECTOR_SIZE as SECTOR_SIZE
from imgtool.errors import ImgtoolError, InputError, UsageError
from imgtool.image.format import parse_image
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack
from imgtool.security.signing import read_signatures

#: Offset of the signature field inside an RSA block (head, digest, n, e, rinv, m').
RSA_SIGNATURE_AT = 4 + 32 + 384 + 4 + 384 + 4
CRC_AT = 1196


def _pem(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


#: Fixed private scalars for the ECDSA test keys (any value below the curve order is a valid key).
EC_TEST_SCALARS = {"p256": 0x1111, "p256b": 0x2222, "p256c": 0x3333, "p384": 0x4444}


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Path]:
    """The signing keys, the same on every run and made once per session: RSA keys are read from
    ``tests/fixtures/keys/`` (cryptography cannot generate RSA from a seed, and generating RSA-3072 is
    slow), ECDSA keys derived from fixed scalars."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = tmp_path_factory.mktemp("keys")
    curves = {"p256": ec.SECP256R1(), "p256b": ec.SECP256R1(), "p256c": ec.SECP256R1(), "p384": ec.SECP384R1()}
    made = {
        name: serialization.load_pem_private_key((FIXTURES / "keys" / f"{fixture}.pem").read_bytes(), None)
        for name, fixture in (("rsa", "rsa3072"), ("rsa2048", "rsa2048"))
    }
    made.update({name: ec.derive_private_key(EC_TEST_SCALARS[name], curve) for name, curve in curves.items()})
    paths = {}
    for name, key in made.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(_pem(key))
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        paths[f"{name}.pub"] = folder / f"{name}.pub.pem"
        paths[f"{name}.pub"].write_bytes(pub)
    for bits in (256, 512):
        paths[f"fe{bits}"] = folder / f"fe{bits}.bin"
        paths[f"fe{bits}"].write_bytes(bytes((i * 7 + bits) % 251 for i in range(bits // 8)))
    return paths


def _elf(tmp_path: Path, chip: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    elf = src / "blinky"
    shutil.copy(FIXTURES / f"{chip}-min.elf", elf)
    return elf


def _pack(tmp_path: Path, chip: str, out: str = "out", **kwargs):
    boot = make_bootloader(tmp_path / f"bl-{chip}.bin", chip)
    return pack(_elf(tmp_path, chip), PackOptions(outdir=tmp_path / out, bootloader=boot, flash_size="4MB", **kwargs))


def assert_espsecure_verifies(key: Path, image: Path) -> None:
    done = espsecure("verify-signature", "-v", "2", "-k", key, image)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification successful" in done.stdout


# --------------------------------------------------------------------------- signing in pack


def test_pack_signs_rsa3072_on_esp32c3(tmp_path, keys):
    res = _pack(tmp_path, "esp32c3", sign_keys=(keys["rsa"],))
    out = res.outdir
    app = (out / "blinky.bin").read_bytes()
    assert_espsecure_verifies(keys["rsa"], out / "blinky.bin")
    parsed = parse_image(app)
    assert parsed.valid and parsed.length % 0x10000 == 0  # secure-padded to the MMU page
    assert parsed.image.segments[-1].addr == 0  # the padding segment is neither loaded nor mapped
    assert len(app) == parsed.length + SECTOR_SIZE
    merged = (out / "blinky.merged.bin").read_bytes()
    assert merged[res.app_partition_offset : res.app_partition_offset + len(app)] == app
    assert verify(out).ok
    assert not any(p.suffix == ".pem" for p in out.iterdir())


def test_pack_signs_ecdsa_p256_on_esp32c6(tmp_path, keys):
    res = _pack(tmp_path, "esp32c6", sign_keys=(keys["p256"],))
    assert_espsecure_verifies(keys["p256"], res.outdir / "blinky.bin")
    [block] = read_signatures((res.outdir / "blinky.bin").read_bytes(), parse_image((res.outdir / "blinky.bin").read_bytes()).length)
    assert block.scheme == "ECDSA-P256" and block.valid
    digest = espsecure("digest-sbv2-public-key", "-k", keys["p256"], "-o", tmp_path / "digest.bin")
    assert digest.returncode == 0, digest.stderr
    assert block.key_digest == (tmp_path / "digest.bin").read_bytes().hex()


def test_three_keys_are_appended_and_each_verifies(tmp_path, keys):
    names = ("p256", "p256b", "p256c")
    res = _pack(tmp_path, "esp32c6", sign_keys=tuple(keys[n] for n in names))
    app = res.outdir / "blinky.bin"
    assert len(read_signatures(app.read_bytes(), parse_image(app.read_bytes()).length)) == 3
    for name in names:
        assert_espsecure_verifies(keys[name], app)


def test_signed_bootloader_and_pinned_bootloader_warning(tmp_path, keys):
    res = _pack(tmp_path, "esp32c3", sign_keys=(keys["rsa"],), sign_bootloader=True)
    assert_espsecure_verifies(keys["rsa"], res.outdir / "bootloader.bin")
    with pytest.raises(UsageError, match="not Secure Boot builds"):
        pack(_elf(tmp_path, "esp32c3"), PackOptions(outdir=tmp_path / "o2", sign_keys=(keys["rsa"],), sign_bootloader=True, offline=True))


@pytest.mark.parametrize(
    "chip, key, message",
    [
        ("esp32c3", "p256", "verifies RSA-3072 only"),
        ("esp32c6", "p384", "ECDSA-P384 key but esp32c6"),
        ("esp32c6", "rsa2048", "RSA-3072 only"),
    ],
)
def test_scheme_the_chip_cannot_verify_is_refused(tmp_path, keys, chip, key, message):
    with pytest.raises(InputError, match=message) as err:
        _pack(tmp_path, chip, sign_keys=(keys[key],))
    assert str(keys[key]) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_more_keys_than_the_chip_has_slots_is_refused(tmp_path, keys):
    with pytest.raises(UsageError, match="esp32 takes at most 1"):
        _pack(tmp_path, "esp32", sign_keys=(keys["rsa"], keys["rsa"]))
    with pytest.raises(UsageError, match="mix"):
        _pack(tmp_path, "esp32c6", sign_keys=(keys["rsa"], keys["p256"]))


# --------------------------------------------------------------------------- imgtool sign


@pytest.fixture
def app_c3(tmp_path) -> Path:
    image = tmp_path / "app.bin"
    result = run_cli("image", _elf(tmp_path, "esp32c3"), "-o", image, "-q")
    assert result.exit_code == 0, result.output
    return image


def test_sign_command_output_verifies(tmp_path, keys, app_c3):
    signed = tmp_path / "ota.bin"
    result = run_cli("sign", app_c3, "--key", keys["rsa"], "-o", signed)
    assert result.exit_code == 0, result.output
    assert_espsecure_verifies(keys["rsa"], signed)
    again = tmp_path / "ota2.bin"
    assert run_cli("sign", signed, "--key", keys["rsa"], "-o", again, "-q").exit_code == 0
    assert len(read_signatures(again.read_bytes(), parse_image(again.read_bytes()).length)) == 2


def test_external_signature_is_checked_then_appended(tmp_path, keys, app_c3):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    padded = tmp_path / "to-sign.bin"
    assert run_cli("sign", app_c3, "--pad-only", "-o", padded).exit_code == 0
    server_key = serialization.load_pem_private_key(keys["rsa"].read_bytes(), None)  # stands in for an HSM
    sig = tmp_path / "sig.bin"
    sig.write_bytes(server_key.sign(padded.read_bytes(), padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()))
    signed = tmp_path / "signed.bin"
    result = run_cli("sign", app_c3, "--pub-key", keys["rsa.pub"], "--signature", sig, "-o", signed)
    assert result.exit_code == 0, result.output
    assert_espsecure_verifies(keys["rsa.pub"], signed)

    bad = tmp_path / "bad-sig.bin"
    bad.write_bytes(bytes(reversed(sig.read_bytes())))
    result = run_cli("sign", app_c3, "--pub-key", keys["rsa.pub"], "--signature", bad, "-o", tmp_path / "x.bin")
    assert result.exit_code == 1 and not (tmp_path / "x.bin").exists()
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"imgtool: error: {bad}: --signature: ")


def test_sign_errors_name_the_key_file(tmp_path, keys, app_c3):
    result = run_cli("sign", app_c3, "--key", keys["rsa.pub"], "-o", tmp_path / "x.bin")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"imgtool: error: {keys['rsa.pub']}: --key: is not a PEM private key")
    result = run_cli("sign", app_c3, "--key", keys["rsa"], "-o", keys["rsa"])
    assert result.exit_code == 2 and "overwrite a key" in result.stderr


# --------------------------------------------------------------------------- verify and info


def _corrupt(data: bytes, at: int, *, fix_crc: bool) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    if fix_crc:
        block = at - at % SECTOR_SIZE  # first block starts the sector
        out[block + CRC_AT : block + CRC_AT + 4] = struct.pack("<I", zlib.crc32(out[block : block + CRC_AT]))
    return bytes(out)


@pytest.mark.parametrize("fix_crc, message", [(False, "CRC mismatch"), (True, "signature does not verify")])
def test_verify_rejects_a_corrupted_signature(tmp_path, keys, fix_crc, message):
    res = _pack(tmp_path, "esp32c3", sign_keys=(keys["rsa"],))
    merged = (res.outdir / "blinky.merged.bin").read_bytes()
    sector = res.app_partition_offset + res.app_size - SECTOR_SIZE
    bad = tmp_path / "bad.bin"
    bad.write_bytes(_corrupt(merged, sector + RSA_SIGNATURE_AT + 5, fix_crc=fix_crc))
    result = run_cli("verify", bad, "--chip", "esp32c3")
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert run_cli("verify", res.outdir, "--key", keys["rsa.pub"], "-q").exit_code == 0
    other = run_cli("verify", res.outdir, "--key", keys["p256"], "-q")
    assert other.exit_code == 1 and "no valid signature block made with" in other.stderr


def test_info_shows_signature_blocks(tmp_path, keys):
    res = _pack(tmp_path, "esp32c6", sign_keys=(keys["p256"],))
    result = run_cli("info", res.outdir / "blinky.bin", "--json", "--key", keys["p256.pub"])
    assert result.exit_code == 0, result.output
    [sig] = json.loads(result.stdout)["signatures"]
    assert sig["scheme"] == "ECDSA-P256" and sig["valid"] and sig["trusted"]
    plain = run_cli("info", res.outdir / "blinky.bin")
    assert "signature block 0: ECDSA-P256" in plain.stdout


# --------------------------------------------------------------------------- flash encryption


def _decrypt(key: Path, data: bytes, address: int, xts: bool, tmp_path: Path) -> bytes:
    enc, dec = tmp_path / "enc.part", tmp_path / "dec.part"
    enc.write_bytes(data)
    done = espsecure("decrypt-flash-data", *(["-x"] if xts else []), "-k", key, "-a", hex(address), "-o", dec, enc)
    assert done.returncode == 0, done.stdout + done.stderr
    return dec.read_bytes()


@pytest.mark.parametrize("chip, key, xts", [("esp32", "fe256", False), ("esp32c3", "fe256", True)])
def test_encrypted_parts_decrypt_to_the_plain_pack(tmp_path, keys, chip, key, xts):
    plain = _pack(tmp_path, chip, "plain")
    enc = _pack(tmp_path, chip, "enc", encrypt_key=keys[key])
    doc = json.loads((enc.outdir / "flasher_args.json").read_text())
    for part in enc.parts:
        assert doc[part.name]["encrypted"] == "true"
        ciphertext = (enc.outdir / part.file).read_bytes()
        assert ciphertext != (plain.outdir / part.file).read_bytes()
        if part.name in ("app", "bootloader"):
            clear = _decrypt(keys[key], ciphertext, part.offset, xts, tmp_path)
            assert clear == (plain.outdir / part.file).read_bytes()
    merged = (enc.outdir / "blinky.merged.bin").read_bytes()
    app = next(p for p in enc.parts if p.name == "app")
    assert merged[app.offset - enc.merged.offset :][: app.size] == (enc.outdir / app.file).read_bytes()
    assert "keep" in (enc.outdir / "flash_args").read_text() and "--encrypt" not in (enc.outdir / "flash_args").read_text()
    assert keys[key].read_bytes() not in merged
    refused = run_cli("verify", enc.outdir, "-q")
    assert refused.exit_code == 2 and "pass --encrypt-key" in refused.stderr
    assert run_cli("verify", enc.outdir, "--encrypt-key", keys[key], "-q").exit_code == 0


@pytest.mark.parametrize("chip, key, address", [("esp32s3", "fe512", 0x10010), ("esp32", "fe256", 0x1010)])
def test_unaligned_addresses_and_xts_aes_256_match_espsecure(tmp_path, keys, chip, key, address):
    from imgtool.security.encryption import decrypt, encrypt, load_flash_key

    flash_key = load_flash_key(keys[key], chip)
    data = bytes(range(256)) * 9
    ciphertext = encrypt(flash_key, data, address)
    assert _decrypt(keys[key], ciphertext, address, flash_key.scheme.xts, tmp_path) == data
    assert decrypt(flash_key, ciphertext, address) == data


def test_signed_then_encrypted_app_decrypts_to_the_signed_app(tmp_path, keys):
    plain = _pack(tmp_path, "esp32c3", "plain", sign_keys=(keys["rsa"],))
    enc = _pack(tmp_path, "esp32c3", "enc", sign_keys=(keys["rsa"],), encrypt_key=keys["fe256"])
    app = next(p for p in enc.parts if p.name == "app")
    clear = _decrypt(keys["fe256"], (enc.outdir / app.file).read_bytes(), app.offset, True, tmp_path)
    signed = tmp_path / "clear.bin"
    signed.write_bytes(clear)
    assert clear[: -SECTOR_SIZE] == (plain.outdir / app.file).read_bytes()[: -SECTOR_SIZE]
    assert_espsecure_verifies(keys["rsa"], signed)


@pytest.mark.parametrize("chip, key", [("esp32c3", "fe512"), ("esp32", "fe512")])
def test_key_of_the_wrong_length_is_refused(tmp_path, keys, chip, key):
    result = run_cli("pack", _elf(tmp_path, chip), "-o", tmp_path / "out", "--encrypt-key", keys[key], "--offline")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"imgtool: error: {keys[key]}: --encrypt-key: is 64 bytes but {chip} takes")
    assert not (tmp_path / "out").exists()


def test_flash_crypt_conf_is_esp32_only(tmp_path, keys):
    with pytest.raises(ImgtoolError, match="ESP32 eFuse"):
        _pack(tmp_path, "esp32c3", encrypt_key=keys["fe256"], flash_crypt_conf=3)
    res = _pack(tmp_path, "esp32", encrypt_key=keys["fe256"], flash_crypt_conf=3)
    app = next(p for p in res.parts if p.name == "app")
    enc = tmp_path / "enc.part"
    enc.write_bytes((res.outdir / app.file).read_bytes())
    dec = tmp_path / "dec.part"
    done = espsecure("decrypt-flash-data", "--flash-crypt-conf", "3", "-k", keys["fe256"], "-a", hex(app.offset), "-o", dec, enc)
    assert done.returncode == 0, done.stderr
    assert parse_image(dec.read_bytes()).valid


def test_real_esp32p4_app_signs_and_keeps_its_layout(tmp_path, keys):
    """A real Rust ELF with many segments: the padding goes last and every flash segment stays mapped."""
    from conftest import corpus_path

    elf = corpus_path("elf", "esp32p4")
    boot = corpus_path("bootloaders", "esp32p4-v3-bootloader.bin")
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=boot, flash_size="4MB", sign_keys=(keys["p256"],)))
    app = res.outdir / f"{elf.name}.bin"
    assert_espsecure_verifies(keys["p256"], app)
    assert verify(res.outdir, keys=[]).ok


def test_real_esp32s31_app_signs_encrypts_and_verifies(tmp_path, keys):
    """ESP32-S31: Secure Boot V2 with RSA-3072 only, XTS-AES-256 flash encryption; verify reads it back as the chip would."""
    from conftest import corpus_path

    elf = corpus_path("new-chips", "esp32s31")
    boot = corpus_path("bootloaders", "esp32s31-bootloader.bin")
    plain = pack(elf, PackOptions(outdir=tmp_path / "plain", bootloader=boot, flash_size="4MB", sign_keys=(keys["rsa"],), project_config=False))
    assert_espsecure_verifies(keys["rsa"], plain.outdir / "esp32s31.bin")
    enc = pack(elf, PackOptions(outdir=tmp_path / "enc", bootloader=boot, flash_size="4MB", sign_keys=(keys["rsa"],), encrypt_key=keys["fe512"],
               project_config=False))
    app = next(p for p in enc.parts if p.name == "app")
    clear = _decrypt(keys["fe512"], (enc.outdir / app.file).read_bytes(), app.offset, True, tmp_path)
    assert clear[:-SECTOR_SIZE] == (plain.outdir / app.file).read_bytes()[:-SECTOR_SIZE]  # RSA-PSS salts differ
    (tmp_path / "clear.bin").write_bytes(clear)
    assert_espsecure_verifies(keys["rsa"], tmp_path / "clear.bin")
    assert run_cli("verify", enc.outdir, "--encrypt-key", keys["fe512"], "--elf", elf, "-q").exit_code == 0
    with pytest.raises(ImgtoolError, match="esp32s31's Secure Boot V2 verifies RSA-3072 only"):
        pack(elf, PackOptions(outdir=tmp_path / "ec", bootloader=boot, sign_keys=(keys["p256"],), project_config=False))


def test_signing_with_a_pinned_bootloader_warns_it_does_not_enforce(tmp_path, keys):
    from conftest import corpus_path

    from imgtool.bootloader.store import BootloaderStore

    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    res = pack(_elf(tmp_path, "esp32c6"), PackOptions(outdir=tmp_path / "out", flash_size="4MB", sign_keys=(keys["p256"],), offline=True,
               store=store))
    assert any("not built with Secure Boot" in w for w in res.warnings)


# --------------------------------------------------------------------------- sign refuses what it must not vouch for


def _flip(src: Path, dest: Path, at: int) -> Path:
    data = bytearray(src.read_bytes())
    data[at] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


def test_sign_refuses_an_app_whose_sha256_is_wrong(tmp_path, keys, app_c3):
    bad = _flip(app_c3, tmp_path / "bad.bin", 0x100)
    for extra in ([], ["--pad-only"]):
        args = ["--key", keys["rsa"]] if not extra else extra
        result = run_cli("sign", bad, *args, "-o", tmp_path / "s.bin")
        assert result.exit_code == 1 and not (tmp_path / "s.bin").exists()
        assert result.stderr.count("\n") == 1 and f"{bad}: " in result.stderr
        assert "corrupted" in result.stderr


def test_sign_refuses_an_app_whose_checksum_is_wrong(tmp_path, keys, app_c3):
    unhashed = parse_image(app_c3.read_bytes()).image._replace(hash_appended=False).to_bytes()
    (tmp_path / "nohash.bin").write_bytes(unhashed)
    bad = _flip(tmp_path / "nohash.bin", tmp_path / "bad.bin", 0x100)
    result = run_cli("sign", bad, "--key", keys["rsa"], "-o", tmp_path / "s.bin")
    assert result.exit_code == 1 and "checksum: checksum byte" in result.stderr and "corrupted" in result.stderr


def test_sign_refuses_a_merged_image(tmp_path, keys):
    res = _pack(tmp_path, "esp32c3")
    merged = res.outdir / "blinky.merged.bin"
    result = run_cli("sign", merged, "--key", keys["rsa"], "-o", tmp_path / "s.bin")
    assert result.exit_code == 1 and not (tmp_path / "s.bin").exists()
    assert "is a merged image" in result.stderr and "sign the app image" in result.stderr
    assert result.stderr.count("\n") == 1


def test_sign_refuses_a_chip_that_disagrees_with_the_header(tmp_path, keys, app_c3):
    result = run_cli("sign", app_c3, "--key", keys["p256"], "--chip", "esp32c6", "-o", tmp_path / "s.bin")
    assert result.exit_code == 2 and not (tmp_path / "s.bin").exists()
    assert "--chip: the image header says esp32c3" in result.stderr
