"""Secure padding: an app laid out so its signature covers every flash page the app maps."""

from __future__ import annotations

from imgtool.errors import ImageError
from imgtool.image.format import (
    CHECKSUM_ALIGN,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    MAX_SEGMENTS,
    SEGMENT_HEADER_LEN,
    SHA256_LEN,
    EspImage,
    Segment,
    descriptor_page_size,
    parse_app_descriptor,
)
from imgtool.image.segments import PADDING_ADDR


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
    return image._replace(segments=(*image.segments, Segment(PADDING_ADDR, b"\x00" * pad)))


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
