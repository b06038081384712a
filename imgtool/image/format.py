"""The ESP app/bootloader image format: declared once, parsed and built from the same declarations.

Layout: 8-byte header, 16-byte extended header, then ``segment_count`` times
(8-byte segment header + data), zero padding up to a 16-byte boundary whose
last byte is the XOR checksum of all segment data, then (when the extended
header says so) the SHA-256 of everything before it. The app descriptor
(``esp_app_desc_t``) is declared here too, with :func:`desc_dict` giving its
fields as plain values for ``image``, ``info`` and JSON.
"""

from __future__ import annotations

import hashlib
import os
from typing import NamedTuple

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, StreamError, Struct

from imgtool.chips.units import align_up
from imgtool.elf.reader import APP_DESC_MAGIC, ELF_MAGIC
from imgtool.errors import ImageError

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
CHECKSUM_ALIGN = 16
SHA256_LEN = 32
WP_PIN_DISABLED = 0xEE
#: ESP-IDF's bootloader refuses images with more segments than this.
MAX_SEGMENTS = 16
#: Segment data is always a multiple of this length.
SEGMENT_ALIGN = 4

#: ``ESP_BOOTLOADER_DESC_MAGIC_BYTE``: first byte of the bootloader descriptor.
BOOTLOADER_DESC_MAGIC = 80

ImageHeader = Struct(
    "magic" / Const(IMAGE_MAGIC, Int8ul),
    "segment_count" / Int8ul,
    "flash_mode" / Int8ul,
    "flash_size_freq" / Int8ul,  # high nibble: size code, low nibble: frequency code
    "entry" / Int32ul,
)

ExtendedHeader = Struct(
    "wp_pin" / Int8ul,
    "spi_pin_drv" / Bytes(3),
    "chip_id" / Int16ul,
    "min_chip_rev" / Int8ul,  # legacy: major revision only
    "min_chip_rev_full" / Int16ul,  # major * 100 + minor
    "max_chip_rev_full" / Int16ul,
    "reserved" / Bytes(4),
    "hash_appended" / Int8ul,
)

SegmentHeader = Struct(
    "load_addr" / Int32ul,
    "data_len" / Int32ul,
)

#: ESP-IDF's ``esp_app_desc_t``; the bootloader reads it from the start of the first segment.
AppDescriptor = Struct(
    "magic_word" / Const(APP_DESC_MAGIC, Int32ul),
    "secure_version" / Int32ul,
    "reserv1" / Bytes(8),
    "version" / Bytes(32),  # NUL-padded text
    "project_name" / Bytes(32),  # NUL-padded text
    "time" / Bytes(16),  # NUL-padded text
    "date" / Bytes(16),  # NUL-padded text
    "idf_ver" / Bytes(32),  # NUL-padded text
    "app_elf_sha256" / Bytes(32),
    "min_efuse_blk_rev_full" / Int16ul,
    "max_efuse_blk_rev_full" / Int16ul,
    "mmu_page_size" / Int8ul,  # log2 of the page size
    "reserv3" / Bytes(3),
    "reserv2" / Bytes(72),
)

#: ESP-IDF's ``esp_bootloader_desc_t`` (esp_bootloader_desc.h): a bootloader build places it at the start
#: of its first DRAM segment, with the ESP-IDF version it was built from.
BootloaderDescriptor = Struct(
    "magic_byte" / Const(BOOTLOADER_DESC_MAGIC, Int8ul),
    "reserved" / Bytes(2),
    "secure_version" / Int8ul,
    "version" / Int32ul,
    "idf_ver" / Bytes(32),  # NUL-padded text
    "date_time" / Bytes(24),  # NUL-padded text
    "reserved2" / Bytes(16),
)

HEADER_LEN = ImageHeader.sizeof()
EXTENDED_HEADER_LEN = ExtendedHeader.sizeof()
SEGMENT_HEADER_LEN = SegmentHeader.sizeof()
#: Where the first segment's data starts: an app's descriptor sits there.
FIRST_SEGMENT_DATA_OFFSET = HEADER_LEN + EXTENDED_HEADER_LEN + SEGMENT_HEADER_LEN
APP_DESC_LEN = AppDescriptor.sizeof()
#: Offset of ``app_elf_sha256`` inside the descriptor.
APP_DESC_ELF_SHA256_OFFSET = 144
BOOTLOADER_DESC_LEN = BootloaderDescriptor.sizeof()


def _offset_of(struct: Struct, name: str) -> int:
    """``offsetof`` for a field of a fixed-size Struct declared above."""
    offset = 0
    for sub in struct.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


#: Where the loader reads ``min_efuse_blk_rev_full``/``max_efuse_blk_rev_full`` in segment 0 (0xB0), descriptor or not.
APP_DESC_EFUSE_BLK_OFFSET = _offset_of(AppDescriptor, "min_efuse_blk_rev_full")
EfuseBlkRevisions = Struct("min_rev_full" / Int16ul, "max_rev_full" / Int16ul)


#: Bytes read into one integer at a time by :func:`xor_checksum`: large enough that the per-block
#: Python work vanishes, small enough that no copy of a multi-MB segment is ever made.
CHECKSUM_BLOCK = 1 << 16


def xor_checksum(chunks, seed: int = CHECKSUM_SEED) -> int:
    """XOR of every byte in ``chunks``, starting from ``seed``.

    XOR does not care where a byte sits, so each block is read as one little-endian integer and
    XORed into an accumulator (the work per byte is C's, not Python's); the accumulator's bytes are
    folded into one at the end. Equal to the byte-by-byte loop for any chunking.
    """
    acc = 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), CHECKSUM_BLOCK):
            acc ^= int.from_bytes(view[start : start + CHECKSUM_BLOCK], "little")
    return (_xor_fold(acc, CHECKSUM_BLOCK) ^ seed) & 0xFF


def _xor_fold(value: int, length: int) -> int:
    """The XOR of the ``length`` little-endian bytes of ``value``, by halving."""
    width = length * 8
    while width > 8:
        half = ((width // 8 + 1) // 2) * 8
        value = (value >> half) ^ (value & ((1 << half) - 1))
        width = half
    return value


class Segment(NamedTuple):
    """Bytes the loader copies to ``addr`` (a small value object, like esptool's ImageSegment)."""

    addr: int
    data: bytes

    @property
    def end(self) -> int:
        return self.addr + len(self.data)

    def __repr__(self) -> str:
        return f"Segment(0x{self.addr:08x}, {len(self.data)} bytes)"


class EspImage(NamedTuple):
    """An ESP image as values; ``to_bytes`` computes padding, checksum and hash.

    A NamedTuple, not a frozen dataclass: it is defined on every pack's start-up (issue 23).
    """

    chip_id: int
    entry: int
    segments: tuple[Segment, ...]
    flash_mode: int = 2
    flash_size_code: int = 1
    flash_freq_code: int = 0
    min_chip_rev_full: int = 0
    max_chip_rev_full: int = 0xFFFF
    hash_appended: bool = True
    wp_pin: int = WP_PIN_DISABLED
    spi_pin_drv: bytes = b"\x00\x00\x00"
    min_chip_rev: int | None = None

    def header_bytes(self) -> bytes:
        hdr = ImageHeader.build(
            dict(
                segment_count=len(self.segments),
                flash_mode=self.flash_mode,
                flash_size_freq=(self.flash_size_code << 4) | self.flash_freq_code,
                entry=self.entry,
            )
        )
        ext = ExtendedHeader.build(
            dict(
                wp_pin=self.wp_pin,
                spi_pin_drv=self.spi_pin_drv,
                chip_id=self.chip_id,
                min_chip_rev=self.min_chip_rev if self.min_chip_rev is not None else self.min_chip_rev_full // 100,
                min_chip_rev_full=self.min_chip_rev_full,
                max_chip_rev_full=self.max_chip_rev_full,
                reserved=b"\x00" * 4,
                hash_appended=1 if self.hash_appended else 0,
            )
        )
        return hdr + ext

    def to_bytes(self) -> bytes:
        return build_image(self).data


class ParsedSegment(NamedTuple):
    segment: Segment
    header_offset: int  # where its 8-byte header starts in the file

    @property
    def data_offset(self) -> int:
        return self.header_offset + SEGMENT_HEADER_LEN


class ParsedImage(NamedTuple):
    """What a file says, plus whether its checksum and hash verify."""

    image: EspImage
    segments: tuple[ParsedSegment, ...]
    stored_checksum: int
    computed_checksum: int
    stored_sha256: bytes | None
    computed_sha256: bytes | None
    length: int  # bytes the image occupies, hash included
    notes: tuple[str, ...] = ()

    @property
    def checksum_valid(self) -> bool:
        return self.stored_checksum == self.computed_checksum

    @property
    def hash_valid(self) -> bool | None:
        if self.stored_sha256 is None:
            return None
        return self.stored_sha256 == self.computed_sha256

    @property
    def valid(self) -> bool:
        return self.checksum_valid and self.hash_valid is not False


class BuiltImage(NamedTuple):
    """An image as built: its bytes, the view :func:`parse_image` would give of them, and the file's SHA-256."""

    data: bytes
    parsed: ParsedImage
    #: Hex SHA-256 of ``data`` (an output's checksum), carried on from the appended hash's; None without one.
    file_sha256: str | None


def build_image(image: EspImage) -> BuiltImage:
    """``image``'s bytes, and what :func:`parse_image` would say of them, from the values themselves.

    A builder that judges what it built (``image.build``) reads nothing back: no second checksum or
    SHA-256 pass, no copy of the segments. The image is joined once, digest included; the file's own
    SHA-256 continues the appended hash's over its last 32 bytes, so no output pass hashes it again.
    """
    if len(image.segments) > 0xFF:
        raise ImageError(f"{len(image.segments)} segments do not fit the image header")
    parts = [image.header_bytes()]
    offset = len(parts[0])
    placed = []
    for seg in image.segments:
        placed.append(ParsedSegment(seg, offset))
        parts.append(SegmentHeader.build(dict(load_addr=seg.addr, data_len=len(seg.data))))
        parts.append(seg.data)
        offset += SEGMENT_HEADER_LEN + len(seg.data)
    pad = align_up(offset + 1, CHECKSUM_ALIGN) - offset - 1
    parts.append(b"\x00" * pad)
    checksum = xor_checksum(s.data for s in image.segments)
    parts.append(bytes([checksum]))
    sha = file_sha = None
    if image.hash_appended:  # hashed part by part
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        sha = digest.digest()
        parts.append(sha)
        digest.update(sha)
        file_sha = digest.hexdigest()
    data = b"".join(parts)
    # as parse_image reads the header back: the legacy major revision is always a number
    legacy = image.min_chip_rev if image.min_chip_rev is not None else image.min_chip_rev_full // 100
    view = ParsedImage(
        image=image._replace(min_chip_rev=legacy) if image.min_chip_rev is None else image,
        segments=tuple(placed),
        stored_checksum=checksum,
        computed_checksum=checksum,
        stored_sha256=sha,
        computed_sha256=sha,
        length=len(data),
    )
    return BuiltImage(data, view, file_sha)


def _parse_segments(buf: memoryview, count: int, path, what: str) -> tuple[list[ParsedSegment], int]:
    """The ``count`` segments after the headers, each checked against the end of ``buf``; and where they end."""
    offset = HEADER_LEN + EXTENDED_HEADER_LEN
    parsed = []
    for index in range(count):
        if offset + SEGMENT_HEADER_LEN > len(buf):
            raise ImageError(
                f"{what} is truncated: segment {index} header at 0x{offset:x} is past the end ({len(buf)} bytes)",
                path=path,
                field=f"segment {index}",
            )
        try:
            sh = SegmentHeader.parse(bytes(buf[offset : offset + SEGMENT_HEADER_LEN]))
        except StreamError as exc:  # pragma: no cover - guarded by the length check above
            raise ImageError(f"{what}: unreadable segment {index} header", path=path) from exc
        start = offset + SEGMENT_HEADER_LEN
        if start + sh.data_len > len(buf):
            raise ImageError(
                f"{what} is truncated: segment {index} claims {sh.data_len} bytes at 0x{start:x} "
                f"but the file ends at 0x{len(buf):x}",
                path=path,
                field=f"segment {index}",
            )
        parsed.append(ParsedSegment(Segment(sh.load_addr, bytes(buf[start : start + sh.data_len])), offset))
        offset = start + sh.data_len
    return parsed, offset


def parse_image(data: bytes | memoryview, path=None, *, what: str = "image") -> ParsedImage:
    """Parse an ESP image from the start of ``data`` (extra bytes after it are allowed, e.g. flash dumps).

    Never trusts the header's counts or lengths beyond what ``data`` holds.
    """
    buf = memoryview(data)
    if len(buf) < HEADER_LEN + EXTENDED_HEADER_LEN:
        raise ImageError(f"{what} is {len(buf)} bytes, too short for an ESP image header", path=path)
    if bytes(buf[: len(ELF_MAGIC)]) == ELF_MAGIC:
        how = (f"; make the app image first: 'imgtool image {os.fspath(path) if path is not None else 'ELF'} -o app.bin' "
               "(or 'imgtool pack' it)") if what == "image" else f"; pass the {what} .bin"
        raise ImageError(f"is an ELF file, not an ESP {what}{how}", path=path)
    if buf[0] != IMAGE_MAGIC:
        raise ImageError(
            f"{what} does not start with the ESP image magic 0xE9 (found 0x{buf[0]:02X})", path=path, field="magic"
        )
    hdr = ImageHeader.parse(bytes(buf[:HEADER_LEN]))
    ext = ExtendedHeader.parse(bytes(buf[HEADER_LEN : HEADER_LEN + EXTENDED_HEADER_LEN]))
    if ext.hash_appended not in (0, 1):
        raise ImageError(
            f"{what} extended header has hash_appended={ext.hash_appended} (must be 0 or 1)",
            path=path,
            field="hash_appended",
        )
    parsed, offset = _parse_segments(buf, hdr.segment_count, path, what)
    checksum_pos = align_up(offset + 1, CHECKSUM_ALIGN) - 1
    if checksum_pos >= len(buf):
        raise ImageError(f"{what} is truncated: the checksum byte at 0x{checksum_pos:x} is missing", path=path)
    stored_checksum = buf[checksum_pos]
    computed_checksum = xor_checksum(p.segment.data for p in parsed)
    end = checksum_pos + 1
    stored_sha = computed_sha = None
    if ext.hash_appended:
        if end + SHA256_LEN > len(buf):
            raise ImageError(f"{what} is truncated: the appended SHA-256 is missing", path=path, field="sha256")
        stored_sha = bytes(buf[end : end + SHA256_LEN])
        computed_sha = hashlib.sha256(buf[:end]).digest()
        end += SHA256_LEN
    image = EspImage(
        chip_id=ext.chip_id,
        entry=hdr.entry,
        segments=tuple(p.segment for p in parsed),
        flash_mode=hdr.flash_mode,
        flash_size_code=hdr.flash_size_freq >> 4,
        flash_freq_code=hdr.flash_size_freq & 0xF,
        min_chip_rev_full=ext.min_chip_rev_full,
        max_chip_rev_full=ext.max_chip_rev_full,
        hash_appended=bool(ext.hash_appended),
        wp_pin=ext.wp_pin,
        spi_pin_drv=bytes(ext.spi_pin_drv),
        min_chip_rev=ext.min_chip_rev,
    )
    return ParsedImage(
        image=image,
        segments=tuple(parsed),
        stored_checksum=stored_checksum,
        computed_checksum=computed_checksum,
        stored_sha256=stored_sha,
        computed_sha256=computed_sha,
        length=end,
    )


def parse_app_descriptor(data: bytes):
    """The app descriptor at the start of ``data``, or None when the magic is absent."""
    if len(data) < APP_DESC_LEN or int.from_bytes(data[:4], "little") != APP_DESC_MAGIC:
        return None
    return AppDescriptor.parse(bytes(data[:APP_DESC_LEN]))


def parse_bootloader_descriptor(data: bytes):
    """The bootloader descriptor at the start of ``data``, or None when its magic byte is absent."""
    if len(data) < BOOTLOADER_DESC_LEN or data[0] != BOOTLOADER_DESC_MAGIC:
        return None
    return BootloaderDescriptor.parse(bytes(data[:BOOTLOADER_DESC_LEN]))


def descriptor_page_size(log2: int) -> int | None:
    """The page an app descriptor's ``mmu_page_size`` field (log2) asks for; None when 0 (not set)."""
    return 1 << min(log2, 31) if log2 else None


def c_string(raw: bytes) -> str:
    """A NUL-padded text field as str; firmware may put any bytes there, so undecodable ones are replaced."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def desc_dict(desc) -> dict:
    """The app descriptor as plain values (for reports and JSON)."""
    return {
        "magic_word": desc.magic_word,
        "secure_version": desc.secure_version,
        "version": c_string(desc.version),
        "project_name": c_string(desc.project_name),
        "time": c_string(desc.time),
        "date": c_string(desc.date),
        "idf_ver": c_string(desc.idf_ver),
        "app_elf_sha256": bytes(desc.app_elf_sha256).hex(),
        "min_efuse_blk_rev_full": desc.min_efuse_blk_rev_full,
        "max_efuse_blk_rev_full": desc.max_efuse_blk_rev_full,
        "mmu_page_size": desc.mmu_page_size,
    }
