"""Secure Boot V2 signing and checking: signature blocks made, read back and verified, and images signed.

The sector's format is :mod:`imgtool.security.signature_block`, keys are :mod:`imgtool.security.keys`
and the padding before the sector :mod:`imgtool.security.secure_pad`.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from construct import StreamError

from imgtool.atomic import read_input
from imgtool.chips.security import (
    CURVES,
    ECDSA192,
    ECDSA256,
    ECDSA384,
    RSA3072,
    RSA_BYTES,
    SHA_VERSION_256,
    SHA_VERSION_384,
    VERSION_ECDSA,
    VERSION_RSA,
    Scheme,
)
from imgtool.chips.table import FLASH_SECTOR_SIZE, chip_by_image_id, get_chip
from imgtool.chips.units import MAX_APP_IMAGE_BYTES
from imgtool.errors import ImageError, InputError, UsageError
from imgtool.image.format import parse_image
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, ENTRY_MAGIC
from imgtool.security.keys import SigningKey, check_chip_schemes, load_key
from imgtool.security.secure_pad import app_page_size, is_secure_padded, secure_pad
from imgtool.security.signature_block import (
    MAX_SIGNATURE_BLOCKS,
    SIG_BLOCK_LEN,
    SIG_BLOCK_MAGIC,
    SignatureBlock,
    SignedPart,
    ec_field_width,
    key_fields,
    key_struct,
    le_bytes,
    sector_align,
    signature_offset,
    signature_sector,
)

# cryptography is imported where a signature is made or checked: about 27 ms of start-up that packs,
# `info` and `verify` of unsigned images never pay.

#: The largest input ``sign`` reads: an app of the largest flash span the MMU maps, plus its signature sector.
MAX_SIGNABLE_BYTES = MAX_APP_IMAGE_BYTES + FLASH_SECTOR_SIZE
#: RSA-PSS salt length the ROM's verifier expects (the digest length).
PSS_SALT_LEN = 32


# --------------------------------------------------------------------------- signing


def sign(contents: bytes, key: SigningKey) -> bytes:
    """A signature over ``contents`` as the signing tools make it (RSA-PSS big-endian, ECDSA DER)."""
    return key.private.sign(key.scheme.digest(contents), *_algorithm(key.scheme, signing=True))


def _algorithm(scheme: Scheme, *, signing: bool = False) -> tuple:
    """The arguments after the digest that cryptography's ``sign`` and ``verify`` take for ``scheme``."""
    # not at the top: verify and info load this module, only a signed image needs cryptography (~6 ms)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

    if scheme is RSA3072:
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LEN), utils.Prehashed(hashes.SHA256())
    digest = hashes.SHA384() if scheme.sha_version == SHA_VERSION_384 else hashes.SHA256()
    # RFC 6979 nonces: the same image and key give the same ECDSA signature, so signed packs repeat
    return (ec.ECDSA(utils.Prehashed(digest), deterministic_signing=signing),)


def signature_block(contents: bytes, key: SigningKey, signature: bytes, *, sig_path: str | None = None) -> bytes:
    """One signature block for ``contents``; the signature is checked against the key first."""
    from cryptography.exceptions import InvalidSignature  # not at the top: as in _algorithm (~6 ms)

    scheme = key.scheme
    digest = scheme.digest(contents)
    try:
        if scheme is RSA3072:
            if len(signature) != RSA_BYTES:
                raise ValueError(f"is {len(signature)} bytes; an RSA-3072 signature is {RSA_BYTES}")
            _verify_rsa(key.public, signature, digest)
            raw = signature[::-1]
        else:
            r, s = _ecdsa_rs(signature, scheme)
            _verify_ecdsa(key.public, scheme, r, s, digest)
            raw = (le_bytes(r, scheme.int_len) + le_bytes(s, scheme.int_len)).ljust(ec_field_width(scheme), b"\0")
    except ValueError as exc:
        raise InputError(str(exc), path=sig_path or key.path, field="--signature") from None
    except InvalidSignature:
        raise InputError(
            f"does not verify against {key.path} over this image's {len(contents)} signed bytes; sign the "
            "secure-padded image ('imgtool sign IMAGE --pad-only -o PADDED.bin') with the matching private key",
            path=sig_path or key.path,
            field="--signature",
        ) from None
    body = {"digest": digest, "key": _parse_key(scheme, key.key_fields()), "signature": raw}
    signed = SignedPart.build(dict(version=scheme.version, sha_version=scheme.sha_version, body=body))
    return SignatureBlock.build(dict(signed=dict(data=signed), crc=zlib.crc32(signed)))


def _parse_key(scheme: Scheme, fields: bytes):
    return key_struct(scheme).parse(fields)


def _ecdsa_rs(signature: bytes, scheme: Scheme) -> tuple[int, int]:
    """(r, s) from a DER signature, or from raw big-endian r‖s as HSMs often return it."""
    from cryptography.hazmat.primitives.asymmetric import utils  # not at the top: as in _algorithm (~6 ms)

    if len(signature) == 2 * scheme.int_len:
        half = scheme.int_len
        return int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    try:
        return utils.decode_dss_signature(signature)
    except ValueError:
        raise ValueError(f"is not a DER or raw r||s {scheme.name} signature") from None


def _verify_rsa(public, signature_be: bytes, digest: bytes) -> None:
    public.verify(signature_be, digest, *_algorithm(RSA3072))


def _verify_ecdsa(public, scheme: Scheme, r: int, s: int, digest: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import utils  # not at the top: as in _algorithm (~6 ms)

    public.verify(utils.encode_dss_signature(r, s), digest, *_algorithm(scheme))


def sign_contents(contents: bytes, keys: list[SigningKey]) -> bytes:
    """Sector-aligned ``contents`` followed by a signature sector with one block per key."""
    contents = sector_align(contents)
    return contents + signature_sector([signature_block(contents, k, sign(contents, k)) for k in keys])


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SignatureInfo:
    """One signature block as found, and what holds for it."""

    index: int
    scheme: str | None
    key_digest: str | None
    crc_valid: bool
    digest_valid: bool
    signature_valid: bool
    trusted: bool | None = None  # matches a key the user gave; None when none was given

    @property
    def valid(self) -> bool:
        return self.crc_valid and self.digest_valid and self.signature_valid

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "scheme": self.scheme,
            "key_digest": self.key_digest,
            "crc_valid": self.crc_valid,
            "digest_valid": self.digest_valid,
            "signature_valid": self.signature_valid,
            "valid": self.valid,
            "trusted": self.trusted,
        }

    def __str__(self) -> str:
        what = f"{self.scheme or 'unknown scheme'}, key digest {self.key_digest or '?'}"
        if not self.crc_valid:
            state = "CRC mismatch"
        elif not self.digest_valid:
            state = "image digest does not match the image"
        elif not self.signature_valid:
            state = "signature does not verify"
        else:
            state = "valid"
        if self.trusted is not None:
            state += ", matches the given key" if self.trusted else ", signed by another key"
        return f"signature block {self.index} ({what}): {state}"


def read_signatures(data: bytes, image_len: int, keys: list[SigningKey] = ()) -> list[SignatureInfo]:
    """The signature blocks after an image (empty when the sector is missing or erased).

    Each block is checked on its own: CRC, digest of the bytes before the sector,
    and the signature against the key the block carries. ``keys`` says which are trusted.
    """
    start = signature_offset(image_len)
    sector = bytes(data[start : start + FLASH_SECTOR_SIZE])
    if len(sector) < SIG_BLOCK_LEN:
        return []
    contents = bytes(data[:start])
    trusted_digests = {k.key_digest for k in keys}
    found = []
    for index in range(MAX_SIGNATURE_BLOCKS):
        raw = sector[index * SIG_BLOCK_LEN : (index + 1) * SIG_BLOCK_LEN]
        if len(raw) < SIG_BLOCK_LEN or raw[0] != SIG_BLOCK_MAGIC:
            break
        found.append(_check_block(index, raw, contents, trusted_digests if keys else None))
    return found


def _check_block(index: int, raw: bytes, contents: bytes, trusted: set | None) -> SignatureInfo:
    try:
        block = SignatureBlock.parse(raw)
    except StreamError:  # pragma: no cover - the length is checked
        return SignatureInfo(index, None, None, False, False, False)
    signed = block.signed.value
    crc_valid = zlib.crc32(block.signed.data) == block.crc
    scheme = _block_scheme(signed)
    if scheme is None:
        return SignatureInfo(index, None, None, crc_valid, False, False, False if trusted is not None else None)
    body = signed.body
    key_raw = key_struct(scheme).build(body.key)
    key_digest = hashlib.sha256(key_raw).digest()
    digest_valid = bytes(body.digest) == scheme.digest(contents)
    signature_valid = digest_valid and _block_signature_ok(scheme, body)
    return SignatureInfo(
        index,
        scheme.name,
        key_digest.hex(),
        crc_valid,
        digest_valid,
        signature_valid,
        None if trusted is None else key_digest in trusted,
    )


def _block_scheme(signed) -> Scheme | None:
    if signed.version == VERSION_RSA and signed.sha_version == SHA_VERSION_256:
        return RSA3072
    if signed.version == VERSION_ECDSA:
        scheme = CURVES.get(signed.body.key.curve) if not isinstance(signed.body, bytes) else None
        if scheme is not None and scheme.sha_version == signed.sha_version:
            return scheme
    return None


def _block_signature_ok(scheme: Scheme, body) -> bool:
    """The block's signature against the key it carries (trust in that key is a separate question)."""
    # not at the top: as in _algorithm (~6 ms that verify and info of an unsigned image skip)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if scheme is RSA3072:
            n = int.from_bytes(body.key.n, "little")
            public = rsa.RSAPublicNumbers(body.key.e, n).public_key()
            if key_fields(scheme, public) != key_struct(scheme).build(body.key):
                return False  # the ROM computes with the stored Montgomery values: they must fit n
            _verify_rsa(public, bytes(body.signature)[::-1], bytes(body.digest))
        else:
            half = scheme.int_len
            point, sig = bytes(body.key.point), bytes(body.signature)
            curve = {ECDSA192: ec.SECP192R1, ECDSA256: ec.SECP256R1, ECDSA384: ec.SECP384R1}[scheme]()
            x, y = int.from_bytes(point[:half], "little"), int.from_bytes(point[half : 2 * half], "little")
            public = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
            r, s = int.from_bytes(sig[:half], "little"), int.from_bytes(sig[half : 2 * half], "little")
            _verify_ecdsa(public, scheme, r, s, bytes(body.digest))
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_checks(data: bytes, image_len: int, keys: list[SigningKey] = ()) -> list[tuple[bool, str]]:
    """(ok, message) per signature block, and one more when ``keys`` were given but none vouches for the image."""
    infos = read_signatures(data, image_len, keys)
    checks = [(info.valid, str(info)) for info in infos]
    if keys and not any(info.valid and info.trusted for info in infos):
        names = ", ".join(k.path for k in keys)
        checks.append((False, f"no valid signature block made with {names}" if infos else f"is not signed, but {names} was given"))
    return checks


def signature_report(data: bytes, image_len: int, keys: list[SigningKey] = ()) -> tuple[list[dict], list[str]]:
    """Signature blocks as plain values, and the problems with them (for `info`)."""
    infos = read_signatures(data, image_len, keys)
    problems = [message for ok, message in signature_checks(data, image_len, keys) if not ok]
    return [info.to_dict() for info in infos], problems


def existing_blocks(data: bytes, image_len: int) -> list[bytes]:
    """The leading blocks of an image's signature sector whose CRC holds (kept when appending)."""
    start = signature_offset(image_len)
    blocks = []
    for info in read_signatures(data, image_len):
        if not info.crc_valid:
            break
        blocks.append(bytes(data[start + info.index * SIG_BLOCK_LEN : start + (info.index + 1) * SIG_BLOCK_LEN]))
    return blocks


# --------------------------------------------------------------------------- images


class PreparedImage(NamedTuple):
    """An app image ready for signing: the signed part, and blocks already in its signature sector."""

    contents: bytes
    blocks: list[bytes]


def prepare_app(data: bytes, chip_page_sizes: tuple[int, ...], *, path=None, pad: bool = True) -> PreparedImage:
    """The part of an app image a signature covers, secure-padded unless already padded or signed."""
    parsed = parse_image(data, path, what="app image")
    start = signature_offset(parsed.length)
    blocks = existing_blocks(data, parsed.length)
    if blocks:
        return PreparedImage(bytes(data[:start]), blocks)
    page = app_page_size(parsed.image, chip_page_sizes)
    if not pad or is_secure_padded(parsed.length, page):
        return PreparedImage(sector_align(bytes(data[: parsed.length])), [])
    return PreparedImage(secure_pad(parsed.image, page).to_bytes(), [])


def sign_prepared(prepared: PreparedImage, blocks: list[bytes]) -> bytes:
    return prepared.contents + signature_sector([*prepared.blocks, *blocks])


class SignResult(NamedTuple):
    data: bytes
    chip: str
    blocks: int  # signature blocks in the output
    added: int
    warnings: list[str]


def sign_image(
    image_path,
    *,
    keys=(),
    pub_keys=(),
    signatures=(),
    chip: str | None = None,
    pad: bool = True,
) -> SignResult:
    """Sign an existing image with private ``keys``, or append ``signatures`` made elsewhere for ``pub_keys``.

    An unsigned app is secure-padded first (unless ``pad`` is False, e.g. for a bootloader);
    a signed one keeps its blocks and gets the new ones after them.
    """
    if bool(keys) == bool(pub_keys):
        raise UsageError("give either --key (sign here) or --pub-key with --signature (signed elsewhere)", field="--key")
    if len(pub_keys) != len(signatures):
        raise UsageError(
            f"{len(pub_keys)} --pub-key for {len(signatures)} --signature; give one signature per public key, in order",
            field="--signature",
        )
    data, parsed, target = _signable(image_path, chip)
    loaded = [load_key(k, field="--key") for k in keys] or [load_key(k, private=False, field="--pub-key") for k in pub_keys]
    prepared = prepare_app(data, target.mmu_page_sizes, path=image_path, pad=pad)
    warnings = check_chip_schemes(target.name, loaded, field="--key" if keys else "--pub-key", existing=len(prepared.blocks))
    if keys:
        blocks = [signature_block(prepared.contents, k, sign(prepared.contents, k)) for k in loaded]
    else:
        blocks = []
        for key, sig_path in zip(loaded, signatures):
            raw = read_input(sig_path, "signature", limit=FLASH_SECTOR_SIZE)
            blocks.append(signature_block(prepared.contents, key, raw, sig_path=os.fspath(sig_path)))
    out = sign_prepared(prepared, blocks)
    return SignResult(out, target.name, len(prepared.blocks) + len(blocks), len(blocks), warnings)


def _signable(image_path, chip: str | None):
    """Read an image to sign; refuse one a signature must not vouch for.

    A signature makes the chip trust the bytes, so a corrupted image (checksum or appended
    SHA-256 wrong), a merged image (only its bootloader would be signed, as if it were an app)
    and a ``--chip`` that disagrees with the header (a scheme that chip may not verify) are refused.
    """
    data = read_input(image_path, "ESP image", limit=MAX_SIGNABLE_BYTES)
    parsed = parse_image(data, image_path)
    header_chip = chip_by_image_id(parsed.image.chip_id)
    target = get_chip(chip) if chip else header_chip
    if target is None:
        raise ImageError(
            f"has chip id {parsed.image.chip_id}, which no known chip has; pass --chip", path=image_path, field="chip_id"
        )
    if header_chip is not None and header_chip.name != target.name:
        raise UsageError(
            f"the image header says {header_chip.name} (chip id {parsed.image.chip_id}), not {target.name}; "
            "drop --chip or sign an image built for that chip",
            path=image_path,
            field="--chip",
        )
    if not parsed.checksum_valid:
        raise ImageError(
            f"checksum byte is 0x{parsed.stored_checksum:02x} but the segments give 0x{parsed.computed_checksum:02x}: "
            "the image is corrupted; rebuild it before signing",
            path=image_path,
            field="checksum",
        )
    if parsed.hash_valid is False:
        raise ImageError(
            "the appended SHA-256 does not match the image: it is corrupted; rebuild it before signing",
            path=image_path,
            field="sha256",
        )
    table_at = merged_table_offset(data, parsed.length, target.bootloader_offset)
    if table_at is not None:
        raise ImageError(
            f"is a merged image (a bootloader, then a partition table at 0x{table_at:x} in the file); "
            "sign the app image instead (the app .bin in the pack folder, or imgtool image)",
            path=image_path,
        )
    return data, parsed, target


def merged_table_offset(data: bytes, image_len: int, bootloader_offset: int) -> int | None:
    """Where a partition table sits in ``data`` past its first image, if ``data`` is a merged image or flash dump."""
    for at in (DEFAULT_TABLE_OFFSET - bootloader_offset, DEFAULT_TABLE_OFFSET):
        if at >= image_len and data[at : at + len(ENTRY_MAGIC)] == ENTRY_MAGIC:
            return at
    return None


def pad_image(image_path, *, chip: str | None = None) -> bytes:
    """The secure-padded, sector-aligned image: exactly the bytes a remote signer must sign."""
    data, _parsed, target = _signable(image_path, chip)
    prepared = prepare_app(data, target.mmu_page_sizes, path=image_path)
    if prepared.blocks:
        raise ImageError("is already signed; its signed part is everything before the signature sector", path=image_path)
    return prepared.contents


__all__ = [
    "SignatureInfo",
    "prepare_app",
    "read_signatures",
    "sign",
    "sign_contents",
    "sign_image",
    "signature_block",
]
