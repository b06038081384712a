"""What each chip's ROM and bootloader can check and decrypt: Secure Boot V2 schemes and flash encryption.

The chip table gives every chip one :class:`SecureBoot` (or None) and one :class:`FlashEncryption`;
``security``'s keys, signing and encryption compute with them and branch on no chip name.
"""

from __future__ import annotations

import hashlib

#: Signature block ``version`` byte per algorithm family.
VERSION_RSA = 0x02
VERSION_ECDSA = 0x03
#: Signature block ``sha_version`` byte (ECDSA only).
SHA_VERSION_256 = 0
SHA_VERSION_384 = 1
#: Signature block curve ids.
CURVE_P192 = 1
CURVE_P256 = 2
CURVE_P384 = 3
RSA_BYTES = 384


class Scheme:
    """One signature scheme as the signature block encodes it.

    ``int_len`` is the bytes per coordinate / signature half; the RSA modulus length for RSA. The records of
    this module are plain classes, one instance per fact, compared by identity: every pack defines them, and
    a NamedTuple costs ~0.2 ms there.
    """

    __slots__ = ("name", "version", "sha_version", "curve_id", "int_len")

    def __init__(self, name: str, version: int, sha_version: int, curve_id: int | None, int_len: int):
        self.name = name
        self.version = version
        self.sha_version = sha_version
        self.curve_id = curve_id
        self.int_len = int_len

    def digest(self, data: bytes) -> bytes:
        algo = hashlib.sha384 if self.sha_version == SHA_VERSION_384 else hashlib.sha256
        return algo(data).digest()


RSA3072 = Scheme("RSA-3072", VERSION_RSA, SHA_VERSION_256, None, RSA_BYTES)
ECDSA192 = Scheme("ECDSA-P192", VERSION_ECDSA, SHA_VERSION_256, CURVE_P192, 24)
ECDSA256 = Scheme("ECDSA-P256", VERSION_ECDSA, SHA_VERSION_256, CURVE_P256, 32)
ECDSA384 = Scheme("ECDSA-P384", VERSION_ECDSA, SHA_VERSION_384, CURVE_P384, 48)
CURVES = {s.curve_id: s for s in (ECDSA192, ECDSA256, ECDSA384)}

#: Scheme sets of the chip rows: RSA where SOC_SECURE_BOOT_V2_RSA, ECDSA where SOC_SECURE_BOOT_V2_ECC,
#: P-384 where the ECDSA block supports it (ESP32-C5, ESP32-P4).
RSA_ONLY = (RSA3072,)
ECDSA_ONLY = (ECDSA192, ECDSA256)
RSA_AND_ECDSA = (RSA3072, ECDSA192, ECDSA256)
RSA_AND_ECDSA_384 = (RSA3072, ECDSA192, ECDSA256, ECDSA384)


class SecureBoot:
    """What a chip's ROM and ESP-IDF bootloader verify (ESP-IDF soc_caps and bootloader_support Kconfig).

    ``key_slots`` counts the eFuse key digests, so the most signature blocks worth appending.
    """

    __slots__ = ("schemes", "key_slots", "min_rev", "p192_off_by_default")

    def __init__(self, schemes: tuple[Scheme, ...], key_slots: int, min_rev: int = 0, p192_off_by_default: bool = False):
        self.schemes = schemes
        self.key_slots = key_slots
        #: Chip revision (major*100+minor) below which the chip has no Secure Boot V2; 0 for every revision.
        self.min_rev = min_rev
        #: ECDSA-P192 is off by default and cannot be enabled once Secure Boot is on (ESP32-H2).
        self.p192_off_by_default = p192_off_by_default


#: Key file lengths of flash encryption keys.
KEY_256 = 32
KEY_512 = 64
#: ESP32 with the 3/4 eFuse coding scheme holds 192 key bits; the hardware repeats bytes 8..16 to make 256.
ESP32_KEY_192 = 24
#: XTS-AES-128 keys derived from 128 eFuse bits (SHA-256 of them), ESP32-C2 only.
DERIVED_KEY_LEN = 16
#: ESP32's FLASH_CRYPT_CONFIG eFuse value when the bootloader burns it: every key bit tweaked.
DEFAULT_FLASH_CRYPT_CONF = 0xF
FLASH_CRYPT_CONF_MAX = 0xF


class FlashEncryption:
    """A chip's flash encryption: the ESP32 tweak or XTS, and the key file lengths it takes
    (SOC_FLASH_ENCRYPTION_XTS_AES_128 / _256 / _128_DERIVED in ESP-IDF's soc_caps)."""

    __slots__ = ("xts", "key_lengths")

    def __init__(self, xts: bool, key_lengths: tuple[int, ...]):
        self.xts = xts
        self.key_lengths = key_lengths

    def describe(self, length: int) -> str:
        if not self.xts:
            return "AES-256 with the ESP32 key tweak"
        return "XTS-AES-256" if length == KEY_512 else "XTS-AES-128"


ESP32_AES = FlashEncryption(False, (KEY_256, ESP32_KEY_192))
XTS_128 = FlashEncryption(True, (KEY_256,))
XTS_128_256 = FlashEncryption(True, (KEY_256, KEY_512))
XTS_128_DERIVED = FlashEncryption(True, (KEY_256, DERIVED_KEY_LEN))

__all__ = [
    "CURVES",
    "ECDSA192",
    "ECDSA256",
    "ECDSA384",
    "RSA3072",
    "FlashEncryption",
    "Scheme",
    "SecureBoot",
]
