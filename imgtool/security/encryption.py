"""Host-side flash encryption: parts written pre-encrypted for a device in flash-encryption release mode.

The chip decrypts flash reads transparently with a key in eFuse, so an encrypted
part's bytes depend on the key and on the flash address they are written to.
Two hardware schemes exist, computed here exactly as ``espsecure
encrypt-flash-data`` does:

- ESP32: AES-256 (ECB, used in the decrypt direction, bytes of each 16-byte
  block reversed) with a per-32-byte key "tweak": address bits 5..23 flip key
  bits, in the groups the FLASH_CRYPT_CONFIG eFuse enables.
- Later chips: XTS-AES over 128-byte blocks, the tweak being the block's flash
  address, bytes of each block reversed; XTS-AES-128 takes a 256-bit key,
  XTS-AES-256 a 512-bit one.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imgtool.atomic import read_input
from imgtool.chips.security import (
    DEFAULT_FLASH_CRYPT_CONF,
    DERIVED_KEY_LEN,
    ESP32_KEY_192,
    FLASH_CRYPT_CONF_MAX,
    FlashEncryption,
)
from imgtool.chips.table import get_chip
from imgtool.errors import ImgtoolError, InputError, UsageError
from imgtool.partitions.table import SUBTYPE_DATA_OTA, SUBTYPES, TABLE_MAX_LEN, TYPE_APP, TYPE_DATA, PartitionTable

AES_BLOCK = 16
#: ESP32: the tweaked key changes every 32 bytes of flash.
ESP32_TWEAK_SPAN = 32
#: XTS chips: one XTS data unit (and tweak) per 128 bytes of flash.
XTS_UNIT = 0x80
ESP32_KEY_BITS = 256
ESP32_REPEAT = slice(8, 16)
#: Lowest and highest flash address bits that flip ESP32 key bits.
TWEAK_ADDR_LOW = 5
TWEAK_ADDR_HIGH = 23
#: The key is cut into four groups (most significant first), each enabled by one FLASH_CRYPT_CONFIG bit.
#: A group is three runs over address bits 23..5, then a shorter run from this bit down to 5.
TWEAK_GROUP_TAILS = (14, 12, 10, 8)


class FlashKey(NamedTuple):
    """A flash encryption key as the hardware uses it, for one chip."""

    path: str
    chip: str
    key: bytes
    scheme: FlashEncryption
    flash_crypt_conf: int

    @property
    def description(self) -> str:
        return self.scheme.describe(len(self.key))


def load_flash_key(path: str | os.PathLike, chip: str, flash_crypt_conf: int | None = None) -> FlashKey:
    """Read a raw key file (``espsecure generate-flash-encryption-key``) and check it fits ``chip``."""
    scheme = get_chip(chip).flash_encryption
    if flash_crypt_conf is not None:
        if scheme.xts:
            raise UsageError(f"--flash-crypt-conf is an ESP32 eFuse; {chip} uses XTS-AES", field="--flash-crypt-conf")
        if not 0 <= flash_crypt_conf <= FLASH_CRYPT_CONF_MAX:
            raise UsageError(f"must be between 0 and 0x{FLASH_CRYPT_CONF_MAX:x}", field="--flash-crypt-conf")
    raw = read_input(path, "key file", limit=1024)
    if len(raw) not in scheme.key_lengths:
        wanted = " or ".join(f"{n} bytes ({n * 8} bits)" for n in scheme.key_lengths)
        raise InputError(
            f"is {len(raw)} bytes but {chip} takes a flash encryption key of {wanted}; "
            f"create one with 'espsecure generate-flash-encryption-key --keylen {scheme.key_lengths[0] * 8} KEY.bin'",
            path=path,
            field="--encrypt-key",
        )
    key = _hardware_key(raw, scheme)
    if scheme.xts and key[: len(key) // 2] == key[len(key) // 2 :]:
        raise InputError("has two equal halves, which XTS-AES does not allow; generate a new key", path=path, field="--encrypt-key")
    conf = DEFAULT_FLASH_CRYPT_CONF if flash_crypt_conf is None else flash_crypt_conf
    return FlashKey(os.fspath(path), chip, key, scheme, conf)


def _hardware_key(raw: bytes, scheme: FlashEncryption) -> bytes:
    """The key the AES engine sees: ESP32 192-bit keys extended, 128-bit XTS keys derived by SHA-256."""
    if not scheme.xts and len(raw) == ESP32_KEY_192:
        return raw + raw[ESP32_REPEAT]
    if scheme.xts and len(raw) == DERIVED_KEY_LEN:
        return hashlib.sha256(raw).digest()
    return raw


def encrypt(key: FlashKey, data: bytes, address: int) -> bytes:
    """``data`` as it must be written raw at flash ``address`` so the chip reads it back in clear.

    The length is padded with 0xFF to whole AES blocks first (erased flash reads 0xFF).
    """
    if address % AES_BLOCK:
        raise UsageError(f"flash address 0x{address:x} is not a multiple of {AES_BLOCK}", field="address")
    data = bytes(data) + b"\xff" * ((-len(data)) % AES_BLOCK)
    if key.scheme.xts:
        return _xts(key.key, data, address, encrypting=True)
    return _esp32(key.key, data, address, key.flash_crypt_conf, encrypting=True)


def decrypt(key: FlashKey, data: bytes, address: int) -> bytes:
    """Inverse of :func:`encrypt` (what the chip reads through the cache)."""
    if key.scheme.xts:
        return _xts(key.key, bytes(data), address, encrypting=False)
    return _esp32(key.key, bytes(data), address, key.flash_crypt_conf, encrypting=False)


def decrypt_written(key: FlashKey, data: bytes, address: int, plain: tuple[tuple[int, int], ...] = ()) -> bytes:
    """``data`` read at flash ``address`` as the chip reads it, decrypting only flash that was written encrypted.

    Units (``XTS_UNIT`` bytes at aligned addresses; whole ESP32 AES blocks too) still erased, all 0xFF, and
    the ``plain`` flash ranges ``(start, end)`` (parts written in clear, such as an NVS) are kept as they are:
    decrypting never-written flash would invent contents (an untouched NVS that reads as corrupt). ESP-IDF
    reads through decryption only what it wrote encrypted: the cache-mapped bootloader, table and apps, and
    ``esp_partition_read`` (components/esp_partition/partition_target.c) only for partitions flagged
    ``encrypted``; erased NVS pages are what ``nvs_flash_init`` formats.
    """
    out = bytearray(data)
    end = address + len(data)
    starts = range(address - address % XTS_UNIT, end, XTS_UNIT)

    def written(unit: int) -> bool:
        lo, hi = max(unit, address), min(unit + XTS_UNIT, end)
        chunk = data[lo - address : hi - address]
        return chunk.count(0xFF) != len(chunk) and not any(s < hi and lo < e for s, e in plain)

    run: int | None = None
    for unit in [*starts, None]:
        if unit is not None and written(unit):
            run = unit if run is None else run
            continue
        if run is not None:
            lo, hi = max(run, address), min(unit if unit is not None else end, end)
            out[lo - address : hi - address] = decrypt(key, data[lo - address : hi - address], lo)
            run = None
    return bytes(out)


def keep_plain_partitions(clear: bytes, raw: bytes, address: int, table_offset: int) -> bytes:
    """``clear`` (from :func:`decrypt_written`) with the partitions the chip reads without decryption put back
    as ``raw`` holds them, by the partition table found in ``clear``; unchanged when there is none.

    ESP-IDF's ``esp_partition`` (components/esp_partition/partition_target.c, partition.c) decrypts reads of
    app partitions, otadata and nvs_keys always, other data partitions only when flagged ``encrypted``.
    """
    start = table_offset - address
    if start < 0:
        return clear
    try:
        table = PartitionTable.from_binary(clear[start : start + TABLE_MAX_LEN], source="partition table", table_offset=table_offset)
    except ImgtoolError:
        return clear
    always = (SUBTYPE_DATA_OTA, SUBTYPES[TYPE_DATA]["nvs_keys"])
    out = bytearray(clear)
    for part in table.partitions:
        if part.type == TYPE_APP or part.encrypted or (part.type == TYPE_DATA and part.subtype in always):
            continue
        lo, hi = max(part.offset - address, 0), min(part.offset + part.size - address, len(out))
        if lo < hi:
            out[lo:hi] = raw[lo:hi]
    return bytes(out)


def encrypt_layout(layout, key: FlashKey):
    """The plan (:class:`imgtool.flash.layout.FlashLayout`), before rendering, with every part a release-mode device reads through flash decryption encrypted at its
    flash address and marked encrypted: the bootloader, partition table, otadata and app, and the data
    partitions flagged ``encrypted`` in the table (others, NVS among them, stay plain).
    """
    parts = tuple(
        p._replace(data=encrypt(key, p.data, p.offset), encrypted=True) if p.flash_encrypted else p for p in layout.parts
    )
    warnings = (*layout.warnings, f"parts are encrypted with {key.description} for {key.chip}; flash them only to a device whose eFuse holds this key")
    return layout._replace(parts=parts, warnings=warnings)


# --------------------------------------------------------------------------- XTS-AES


def _xts(key: bytes, data: bytes, address: int, *, encrypting: bool) -> bytes:
    """XTS per 128-byte flash unit; partial units at either end are zero-filled, then cut off again."""
    lead = address % XTS_UNIT
    buf = b"\x00" * lead + data
    buf += b"\x00" * ((-len(buf)) % XTS_UNIT)
    base = address - lead
    out = bytearray()
    for pos in range(0, len(buf), XTS_UNIT):
        tweak = (base + pos).to_bytes(4, "little") + bytes(12)
        cipher = Cipher(algorithms.AES(key), modes.XTS(tweak))
        op = cipher.encryptor() if encrypting else cipher.decryptor()
        out += op.update(buf[pos : pos + XTS_UNIT][::-1])[::-1]
    return bytes(out[lead : lead + len(data)])


# --------------------------------------------------------------------------- ESP32


@lru_cache(maxsize=None)
def _tweak_masks() -> dict[int, int]:
    """For each address bit, the key bits it flips (key as a 256-bit big-endian number)."""
    order: list[int] = []
    run = list(range(TWEAK_ADDR_HIGH, TWEAK_ADDR_LOW - 1, -1))
    for tail in TWEAK_GROUP_TAILS:
        order += run * 3 + list(range(tail, TWEAK_ADDR_LOW - 1, -1))
    assert len(order) == ESP32_KEY_BITS
    masks: dict[int, int] = {}
    for index, addr_bit in enumerate(order):
        masks[addr_bit] = masks.get(addr_bit, 0) | 1 << (ESP32_KEY_BITS - 1 - index)
    return masks


@lru_cache(maxsize=None)
def _tweak_range(conf: int) -> int:
    """Key bits the tweak may touch: one group per FLASH_CRYPT_CONFIG bit, bit 0 the most significant group."""
    rng, top = 0, ESP32_KEY_BITS
    run = TWEAK_ADDR_HIGH - TWEAK_ADDR_LOW + 1
    for bit, tail in enumerate(TWEAK_GROUP_TAILS):
        size = 3 * run + tail - TWEAK_ADDR_LOW + 1
        if conf >> bit & 1:
            rng |= ((1 << size) - 1) << (top - size)
        top -= size
    return rng


def _tweaked_key(key: int, address: int, conf: int) -> bytes:
    tweak = 0
    for bit, mask in _tweak_masks().items():
        if address >> bit & 1:
            tweak ^= mask
    return (key ^ (tweak & _tweak_range(conf))).to_bytes(ESP32_KEY_BITS // 8, "big")


def _esp32(key: bytes, data: bytes, address: int, conf: int, *, encrypting: bool) -> bytes:
    """AES per 16-byte block, reversed in and out, with the key tweaked per 32-byte flash span.

    The hardware runs AES backwards: writing encrypted flash uses AES decryption.
    """
    if len(data) % AES_BLOCK:
        raise UsageError(f"data length {len(data)} is not a multiple of {AES_BLOCK}", field="data")
    base_key = int.from_bytes(key, "big")
    out = bytearray()
    pos = 0
    while pos < len(data):
        addr = address + pos
        span_end = min(len(data), pos + ESP32_TWEAK_SPAN - addr % ESP32_TWEAK_SPAN)
        cipher = Cipher(algorithms.AES(_tweaked_key(base_key, addr, conf)), modes.ECB())
        op = cipher.decryptor() if encrypting else cipher.encryptor()
        for block in range(pos, span_end, AES_BLOCK):
            out += op.update(data[block : block + AES_BLOCK][::-1])[::-1]
        pos = span_end
    return bytes(out)


__all__ = ["FlashKey", "decrypt", "encrypt", "encrypt_layout", "load_flash_key"]
