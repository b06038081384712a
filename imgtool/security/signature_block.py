"""The Secure Boot V2 signature sector's format, as ``espsecure sign-data --version 2`` writes it.

A signed image is the image, padded so its length is a multiple of 4 KiB,
followed by one 4 KiB signature sector holding up to three 1216-byte
signature blocks (then 0xFF). Each block carries the image digest, the public
key in the form the ROM's verifier takes, the signature and a CRC-32; the chip
trusts a block when the SHA-256 of its key part matches a digest burned in
eFuse.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ul, Int32ul, Padding, RawCopy, Struct, Switch

from imgtool.chips.security import (
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
from imgtool.chips.table import ERASED, FLASH_SECTOR_SIZE
from imgtool.chips.units import align_up

SIG_BLOCK_MAGIC = 0xE7
#: At most this many blocks fit the sector (the bootloader reads no more).
MAX_SIGNATURE_BLOCKS = 3

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


def key_fields(scheme: Scheme, public) -> bytes:
    """The key part of a block for the ``public`` key, as the ROM's verifier takes it (RSA with its Montgomery values)."""
    if scheme is RSA3072:
        numbers = public.public_numbers()
        n = numbers.n
        return RsaKey.build(
            dict(
                n=le_bytes(n, RSA_BYTES),
                e=numbers.e,
                rinv=le_bytes((1 << (2 * RSA_BYTES * 8)) % n, RSA_BYTES),
                m_prime=-pow(n, -1, 1 << 32) & 0xFFFFFFFF,
            )
        )
    numbers = public.public_numbers()
    point = le_bytes(numbers.x, scheme.int_len) + le_bytes(numbers.y, scheme.int_len)
    return key_struct(scheme).build(dict(curve=scheme.curve_id, point=point.ljust(ec_field_width(scheme), b"\0")))


def key_struct(scheme: Scheme):
    """The block's key layout for ``scheme``."""
    if scheme is RSA3072:
        return RsaKey
    return EcKey384 if scheme is ECDSA384 else EcKey256


def ec_field_width(scheme: Scheme) -> int:
    """Bytes of the block's point and signature fields (two coordinates; P-192 is zero-extended into P-256's)."""
    return 2 * ECDSA384.int_len if scheme is ECDSA384 else 2 * ECDSA256.int_len


def le_bytes(value: int, length: int) -> bytes:
    return value.to_bytes(length, "little")


def signature_offset(image_len: int) -> int:
    """Where the signature sector of an image ``image_len`` bytes long starts."""
    return align_up(image_len, FLASH_SECTOR_SIZE)


def sector_align(data: bytes) -> bytes:
    """``data`` padded with 0xFF to a whole sector, so the signature sector starts on one."""
    return bytes(data) + ERASED * ((-len(data)) % FLASH_SECTOR_SIZE)


def signature_sector(blocks: list[bytes]) -> bytes:
    sector = b"".join(blocks)
    return sector + ERASED * (FLASH_SECTOR_SIZE - len(sector))
