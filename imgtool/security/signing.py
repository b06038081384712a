"""Secure Boot V2 signatures: the signature sector an ESP-IDF secure bootloader checks, and secure padding.

A signed image is the image, padded so its length is a multiple of 4 KiB,
followed by one 4 KiB signature sector holding up to three 1216-byte
signature blocks (then 0xFF). Each block carries the image digest, the public
key in the form the ROM's verifier takes, the signature and a CRC-32; the chip
trusts a block when the SHA-256 of its key part matches a digest burned in
eFuse. The format is the one ``espsecure sign-data --version 2`` writes.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass, replace
from typing import NamedTuple

from construct import Bytes, Const, Int8ul, Int32ul, Padding, RawCopy, StreamError, Struct, Switch

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
from imgtool.chips.table import CHIPS, ERASED, FLASH_SECTOR_SIZE, revision_name
from imgtool.chips.units import align_up
from imgtool.errors import ImageError, InputError, UsageError
from imgtool.image.format import (
    CHECKSUM_ALIGN,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    MAX_APP_IMAGE_BYTES,
    MAX_SEGMENTS,
    SEGMENT_HEADER_LEN,
    SHA256_LEN,
    EspImage,
    Segment,
    descriptor_page_size,
    parse_app_descriptor,
    parse_image,
)
from imgtool.image.segments import PADDING_ADDR

SIG_BLOCK_MAGIC = 0xE7

#: The largest input ``sign`` reads: an app of the largest flash span the MMU maps, plus its signature sector.
MAX_SIGNABLE_BYTES = MAX_APP_IMAGE_BYTES + FLASH_SECTOR_SIZE
#: At most this many blocks fit the sector (the bootloader reads no more).
MAX_SIGNATURE_BLOCKS = 3
#: RSA-PSS salt length the ROM's verifier expects (the digest length).
PSS_SALT_LEN = 32

RsaKey = Struct(
    "n" / Bytes(RSA_BYTES),  # modulus, little-endian
    "e" / Int32ul,
    "rinv" / Bytes(RSA_BYTES),  # R^2 mod n (Montgomery), little-endian
    "m_prime" / Int32ul,  # -n^-1 mod 2^32
)
RsaBody = Struct(
    "digest" / Bytes(32),
    "key" / RsaKey,
    "signature" / Bytes(RSA_BYTES),  # little-endian
)
EcKey256 = Struct("curve" / Int8ul, "point" / Bytes(64))  # x then y, little-endian; P-192 zero-extended
EcBody256 = Struct("digest" / Bytes(32), "key" / EcKey256, "signature" / Bytes(64), Padding(1031))
EcKey384 = Struct("curve" / Int8ul, "point" / Bytes(96))
EcBody384 = Struct("digest" / Bytes(48), "key" / EcKey384, "signature" / Bytes(96), Padding(951))
BODY_LEN = RsaBody.sizeof()
#: Zeros after the CRC that round the block up to its fixed length.
BLOCK_TAIL_PAD = 16

SignedPart = Struct(
    "magic" / Const(SIG_BLOCK_MAGIC, Int8ul),
    "version" / Int8ul,
    "sha_version" / Int8ul,  # ECDSA only: 0 SHA-256, 1 SHA-384
    Padding(1),
    "body"
    / Switch(
        lambda ctx: (ctx.version, ctx.sha_version),
        {
            (VERSION_RSA, SHA_VERSION_256): RsaBody,
            (VERSION_ECDSA, SHA_VERSION_256): EcBody256,
            (VERSION_ECDSA, SHA_VERSION_384): EcBody384,
        },
        default=Bytes(BODY_LEN),
    ),
)
SignatureBlock = Struct(
    "signed" / RawCopy(SignedPart),
    "crc" / Int32ul,  # CRC-32 of the signed part
    Padding(BLOCK_TAIL_PAD),
)
#: Block length: 4-byte head, body, CRC-32, tail padding (1216 bytes for every scheme).
SIG_BLOCK_LEN = 4 + BODY_LEN + 4 + BLOCK_TAIL_PAD


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class SigningKey:
    """A key read from ``path``: a private key signs, a public key only checks."""

    path: str
    public: object  # cryptography RSAPublicKey / EllipticCurvePublicKey
    private: object | None
    scheme: Scheme

    def key_fields(self) -> bytes:
        """The key part of a signature block; its SHA-256 is the digest burned in eFuse."""
        return key_fields(self.scheme, self.public)

    @property
    def key_digest(self) -> bytes:
        return hashlib.sha256(self.key_fields()).digest()


def load_key(path: str | os.PathLike, *, private: bool = True, field: str = "--sign-key") -> SigningKey:
    """Read a PEM key; ``private`` requires a private key (to sign), otherwise either kind is fine."""
    from cryptography.hazmat.primitives import serialization

    from imgtool.atomic import read_input

    data = read_input(path, "key file", limit=1 << 20)
    priv = pub = None
    try:
        priv = serialization.load_pem_private_key(data, password=None)
        pub = priv.public_key()
    except TypeError:
        raise InputError("the private key is password protected; give an unencrypted PEM key", path=path, field=field) from None
    except ValueError:
        if private:
            raise InputError(
                "is not a PEM private key; create one with 'espsecure generate-signing-key --version 2 --scheme rsa3072 KEY.pem'",
                path=path,
                field=field,
            ) from None
        try:
            pub = serialization.load_pem_public_key(data)
        except ValueError:
            raise InputError("is not a PEM public or private key", path=path, field=field) from None
    return SigningKey(os.fspath(path), pub, priv, _scheme_of(pub, path, field))


def _scheme_of(public, path, field: str) -> Scheme:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size != RSA_BYTES * 8:
            raise InputError(
                f"is an RSA-{public.key_size} key; Secure Boot V2 takes RSA-3072 only", path=path, field=field
            )
        return RSA3072
    if isinstance(public, ec.EllipticCurvePublicKey):
        by_name = {"secp192r1": ECDSA192, "secp256r1": ECDSA256, "secp384r1": ECDSA384}
        scheme = by_name.get(public.curve.name)
        if scheme is None:
            raise InputError(
                f"is an ECDSA key on {public.curve.name}; Secure Boot V2 takes P-192, P-256 or P-384",
                path=path,
                field=field,
            )
        return scheme
    raise InputError("is neither an RSA nor an ECDSA key", path=path, field=field)


def key_fields(scheme: Scheme, public) -> bytes:
    if scheme is RSA3072:
        numbers = public.public_numbers()
        n = numbers.n
        return RsaKey.build(
            dict(
                n=_le(n, RSA_BYTES),
                e=numbers.e,
                rinv=_le((1 << (2 * RSA_BYTES * 8)) % n, RSA_BYTES),
                m_prime=-pow(n, -1, 1 << 32) & 0xFFFFFFFF,
            )
        )
    numbers = public.public_numbers()
    point = _le(numbers.x, scheme.int_len) + _le(numbers.y, scheme.int_len)
    return _ec_key(scheme).build(dict(curve=scheme.curve_id, point=point.ljust(_ec_width(scheme), b"\0")))


def _ec_key(scheme: Scheme):
    return EcKey384 if scheme is ECDSA384 else EcKey256


def _ec_width(scheme: Scheme) -> int:
    """Bytes of the block's point and signature fields (two coordinates; P-192 is zero-extended into P-256's)."""
    return 2 * ECDSA384.int_len if scheme is ECDSA384 else 2 * ECDSA256.int_len


def _le(value: int, length: int) -> bytes:
    return value.to_bytes(length, "little")


def check_chip_schemes(chip: str, keys: list[SigningKey], *, field: str = "--sign-key", existing: int = 0) -> list[str]:
    """Refuse keys the chip cannot verify or more blocks than it has key slots; returns warnings."""
    caps = CHIPS[chip].secure_boot if chip in CHIPS else None
    if caps is None:
        raise UsageError(f"{chip} has no Secure Boot V2", field=field)
    allowed = ", ".join(s.name for s in caps.schemes)
    for key in keys:
        if key.scheme not in caps.schemes:
            raise InputError(
                f"is an {key.scheme.name} key but {chip}'s Secure Boot V2 verifies {allowed} only; use a key of one of those",
                path=key.path,
                field=field,
            )
    schemes = {k.scheme.name for k in keys}
    if len(schemes) > 1:
        raise UsageError(
            f"the keys mix {' and '.join(sorted(schemes))}; a Secure Boot bootloader checks one scheme, so use keys of one kind",
            field=field,
        )
    total = existing + len(keys)
    if total > min(caps.key_slots, MAX_SIGNATURE_BLOCKS):
        limit = min(caps.key_slots, MAX_SIGNATURE_BLOCKS)
        raise UsageError(
            f"{total} signature blocks asked for but {chip} takes at most {limit}"
            + (f" (the image already has {existing})" if existing else "")
            + "; pass fewer keys",
            field=field,
        )
    warnings = []
    if any(k.scheme is ECDSA192 for k in keys):
        warnings.append(
            "ECDSA-P192 is a legacy Secure Boot scheme (about 96-bit security); prefer P-256"
            + (f"; P-192 is off by default on {chip} and cannot be enabled once Secure Boot is on" if caps.p192_off_by_default else "")
        )
    return warnings


def revision_warning(chip: str, min_rev_full: int) -> str | None:
    """Secure Boot V2 is missing on early revisions of some chips: say so when the app allows them."""
    caps = CHIPS[chip].secure_boot if chip in CHIPS else None
    if caps is not None and min_rev_full < caps.min_rev:
        return (
            f"Secure Boot V2 on {chip} needs chip revision {revision_name(caps.min_rev)} or later; "
            "the app also runs on earlier revisions, where the signature is not checked"
        )
    return None


# --------------------------------------------------------------------------- secure padding


def secure_pad(image: EspImage, page_size: int) -> EspImage:
    """Append a padding segment so the image (checksum and SHA-256 included) ends on an MMU page boundary.

    The signature sector then starts at that boundary and every flash page the app maps
    lies inside the signed part, as ``esptool elf2image --secure-pad-v2`` arranges. The
    segment has load address 0, so the bootloader neither loads nor maps it.
    """
    if len(image.segments) + 1 > MAX_SEGMENTS:
        raise ImageError(
            f"the image has {len(image.segments)} segments; secure padding needs one more but the bootloader "
            f"accepts at most {MAX_SEGMENTS}",
            field="segments",
        )
    end = HEADER_LEN + EXTENDED_HEADER_LEN + sum(SEGMENT_HEADER_LEN + len(s.data) for s in image.segments)
    # the checksum byte and the zeros before it fill one whole CHECKSUM_ALIGN line after the padding
    used = end + SEGMENT_HEADER_LEN + CHECKSUM_ALIGN + (SHA256_LEN if image.hash_appended else 0)
    pad = (-used) % page_size
    return replace(image, segments=(*image.segments, Segment(PADDING_ADDR, b"\x00" * pad)))


def is_secure_padded(image_len: int, page_size: int) -> bool:
    return image_len % page_size == 0


def app_page_size(image: EspImage, chip_page_sizes: tuple[int, ...]) -> int:
    """The MMU page the app was laid out for: its descriptor's, else the chip's largest."""
    if image.segments:
        desc = parse_app_descriptor(image.segments[0].data)
        page = descriptor_page_size(desc.mmu_page_size) if desc is not None else None
        if page in chip_page_sizes:
            return page
    return max(chip_page_sizes)


# --------------------------------------------------------------------------- signing


def sign(contents: bytes, key: SigningKey) -> bytes:
    """A signature over ``contents`` as the signing tools make it (RSA-PSS big-endian, ECDSA DER)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    digest = key.scheme.digest(contents)
    if key.scheme is RSA3072:
        return key.private.sign(digest, _pss(), utils.Prehashed(hashes.SHA256()))
    # RFC 6979 nonces: the same image and key give the same ECDSA signature, so signed packs repeat
    return key.private.sign(digest, ec.ECDSA(utils.Prehashed(_hash(key.scheme)), deterministic_signing=True))


def _pss():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LEN)


def _hash(scheme: Scheme):
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA384() if scheme.sha_version == SHA_VERSION_384 else hashes.SHA256()


def signature_block(contents: bytes, key: SigningKey, signature: bytes, *, sig_path: str | None = None) -> bytes:
    """One signature block for ``contents``; the signature is checked against the key first."""
    from cryptography.exceptions import InvalidSignature

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
            raw = (_le(r, scheme.int_len) + _le(s, scheme.int_len)).ljust(_ec_width(scheme), b"\0")
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
    return (RsaKey if scheme is RSA3072 else _ec_key(scheme)).parse(fields)


def _ecdsa_rs(signature: bytes, scheme: Scheme) -> tuple[int, int]:
    """(r, s) from a DER signature, or from raw big-endian r‖s as HSMs often return it."""
    from cryptography.hazmat.primitives.asymmetric import utils

    if len(signature) == 2 * scheme.int_len:
        half = scheme.int_len
        return int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    try:
        return utils.decode_dss_signature(signature)
    except ValueError:
        raise ValueError(f"is not a DER or raw r||s {scheme.name} signature") from None


def _verify_rsa(public, signature_be: bytes, digest: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import utils

    public.verify(signature_be, digest, _pss(), utils.Prehashed(hashes.SHA256()))


def _verify_ecdsa(public, scheme: Scheme, r: int, s: int, digest: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    public.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(_hash(scheme))))


def sector_align(data: bytes) -> bytes:
    """``data`` padded with 0xFF to a whole sector, so the signature sector starts on one."""
    return bytes(data) + ERASED * ((-len(data)) % FLASH_SECTOR_SIZE)


def signature_sector(blocks: list[bytes]) -> bytes:
    sector = b"".join(blocks)
    return sector + ERASED * (FLASH_SECTOR_SIZE - len(sector))


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


def signature_offset(image_len: int) -> int:
    """Where the signature sector of an image ``image_len`` bytes long starts."""
    return align_up(image_len, FLASH_SECTOR_SIZE)


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
    key_raw = (RsaKey if scheme is RSA3072 else _ec_key(scheme)).build(body.key)
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
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if scheme is RSA3072:
            n = int.from_bytes(body.key.n, "little")
            public = rsa.RSAPublicNumbers(body.key.e, n).public_key()
            if key_fields(scheme, public) != RsaKey.build(body.key):
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


def load_trusted_keys(paths) -> list[SigningKey]:
    """Keys given to `info`/`verify` to say which signatures are trusted: public or private PEM."""
    return [load_key(p, private=False, field="--key") for p in paths]


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
    from imgtool.atomic import read_input

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
    from imgtool.atomic import read_input
    from imgtool.chips.table import chip_by_image_id, get_chip

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
    from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, ENTRY_MAGIC

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
    "SigningKey",
    "check_chip_schemes",
    "load_key",
    "prepare_app",
    "read_signatures",
    "secure_pad",
    "sign",
    "sign_contents",
    "signature_block",
]
