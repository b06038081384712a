"""What a merged image or flash dump holds, part by part, for `imgtool info`.

It reuses the parsers `verify` and `info` already have: verify's locating of the file in
flash, its partition table and its choice of the partition the bootloader starts (otadata's
rules), the image parser and the app-descriptor reader for each app.
Checking is `verify`'s job; this only describes.
"""

from __future__ import annotations

import os

from imgtool.atomic import read_input
from imgtool.chips.table import BOOTLOADER_OFFSETS, MAX_FLASH_BYTES, get_chip, revision_name
from imgtool.errors import ImgtoolError
from imgtool.image.format import c_string, parse_app_descriptor, parse_image
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, ENTRY_MAGIC


def looks_like_flash(data: bytes) -> bool:
    """Whether ``data`` is a merged image or flash dump: a partition table sits at 0x8000 of flash."""
    for base in BOOTLOADER_OFFSETS:
        start = DEFAULT_TABLE_OFFSET - base
        if data[start : start + len(ENTRY_MAGIC)] == ENTRY_MAGIC:
            return True
    return False


def describe_flash(path: str | os.PathLike) -> dict | None:
    """Every part of the merged image or flash dump at ``path``, or None when it is not one."""
    # not at the top: 'imgtool info' on an app image would pay ~40 ms (python -X importtime)
    from imgtool.inspect.verify import verify

    data = read_input(path, "flash image", limit=MAX_FLASH_BYTES)
    if not looks_like_flash(data):
        return None
    report = verify(data)
    if report.chip is None or not report.table:
        return None
    chip = get_chip(report.chip)
    base = report.base

    def piece(offset: int, size: int) -> bytes:
        start = offset - base
        return data[start : start + size] if start >= 0 else b""

    parts = [
        {
            "name": "bootloader",
            "offset": chip.bootloader_offset,
            "size": report.bootloader_size,
            "content": _image_summary(piece(chip.bootloader_offset, DEFAULT_TABLE_OFFSET - chip.bootloader_offset)),
        },
        {"name": "partition table", "offset": DEFAULT_TABLE_OFFSET, "size": None, "content": f"{len(report.table)} partitions"},
    ]
    for p in report.table:
        raw = piece(p.offset, p.size)
        parts.append(
            {
                "name": p.name,
                "type": p.type_name,
                "subtype": p.subtype_name,
                "offset": p.offset,
                "size": p.size,
                "content": _content(raw, p.is_app, p.size),
            }
        )
    return {
        "source": os.fspath(path),
        "kind": report.kind,
        "chip": report.chip,
        "base": base,
        "size": len(data),
        "parts": parts,
        "boot_partition": report.boot_partition,
        "boot_reason": report.boot_reason,
        "problems": [str(c) for c in report.problems],
    }


def _content(raw: bytes, is_app: bool, size: int) -> str:
    if not raw:
        return "past the end of the file"
    if raw.count(0xFF) == len(raw):
        return "erased" + ("" if len(raw) == size else " (as far as the file goes)")
    if is_app:
        return _image_summary(raw)
    used = len(raw.rstrip(b"\xff"))
    return f"data, {used:,} bytes before the trailing 0xFF"


def _image_summary(raw: bytes) -> str:
    """One line about the ESP image at the start of ``raw``."""
    try:
        parsed = parse_image(raw)
    except ImgtoolError as exc:
        return f"no valid image ({exc.message})"
    image = parsed.image
    text = f"image, {parsed.length:,} bytes, {len(image.segments)} segments, chip revision {revision_name(image.min_chip_rev_full)}+"
    if parsed.segments:
        desc = parse_app_descriptor(parsed.segments[0].segment.data)
        if desc is not None:
            text += f", app {c_string(desc.project_name)} {c_string(desc.version)}"
    valid = parsed.checksum_valid and parsed.hash_valid is not False
    return text + ("" if valid else ", checksum or hash INVALID")


__all__ = ["describe_flash", "looks_like_flash"]
