"""A bootloader image: check a user's file, and place one (real flash parameters in its header).

Placing writes the flash mode, size and frequency into the 8-byte header and re-computes the
appended SHA-256, which the ROM checks before running it; the segments stay byte for byte the
same, so their checksum still holds.
"""

from __future__ import annotations

import hashlib
import os

from imgtool.atomic import read_input
from imgtool.chips.table import (
    ANY_REVISION_MAX,
    FLASH_MODES,
    FLASH_SIZES,
    Chip,
    chip_by_image_id,
    get_chip,
    normalize_flash_mode,
    normalize_flash_size,
    revision_range,
)
from imgtool.errors import BootloaderError
from imgtool.image.format import (
    APP_DESC_MAGIC,
    FIRST_SEGMENT_DATA_OFFSET,
    HEADER_LEN,
    SHA256_LEN,
    EspImage,
    ImageHeader,
    parse_image,
)

#: Far above any real second-stage bootloader; guards against reading a whole flash dump by mistake.
MAX_BOOTLOADER_BYTES = 1024 * 1024


def runs_app(image: EspImage, app_min_rev_full: int, app_max_rev_full: int) -> bool:
    """Whether the image's chip-revision range meets the app's."""
    return image.min_chip_rev_full <= app_max_rev_full and app_min_rev_full <= image.max_chip_rev_full


def load_user_bootloader(path: str | os.PathLike, chip: Chip | str) -> bytes:
    """A bootloader file the user supplies, refused unless it is an intact ESP image for ``chip``."""
    chip = get_chip(chip)
    data = read_input(path, "bootloader", limit=MAX_BOOTLOADER_BYTES)
    # an app image's first segment starts with ESP_APP_DESC_MAGIC_WORD; a bootloader's never does
    if int.from_bytes(data[FIRST_SEGMENT_DATA_OFFSET : FIRST_SEGMENT_DATA_OFFSET + 4], "little") == APP_DESC_MAGIC:
        raise BootloaderError(
            "is an app image (it starts with an app descriptor), not a bootloader; pass the bootloader's .bin "
            "(ESP-IDF: build/bootloader/bootloader.bin) or drop --bootloader to use the pinned one",
            path=path,
        )
    _checked(data, chip, path)
    return data


def place_bootloader(
    data: bytes,
    chip: Chip | str,
    *,
    flash_mode: str,
    flash_size: str,
    flash_freq: str,
    app_min_rev_full: int = 0,
    app_max_rev_full: int = ANY_REVISION_MAX,
    path: str | os.PathLike | None = None,
) -> bytes:
    """The bootloader with the flash parameters in its header and a fresh appended SHA-256.

    Everything after the 8-byte header stays byte-for-byte the same (the checksum
    covers segment data only, so it still holds). Refuses a bootloader for another
    chip, or one whose chip-revision range cannot run on any revision the app allows.
    """
    chip = get_chip(chip)
    mode_code = FLASH_MODES[normalize_flash_mode(flash_mode)]
    size_code = FLASH_SIZES[normalize_flash_size(flash_size)]
    freq_code = chip.flash_freq_code(flash_freq)
    parsed = _checked(data, chip, path)
    image = parsed.image
    if not runs_app(image, app_min_rev_full, app_max_rev_full):
        # not at the top: imgtool flash and the bootloader commands load this module and judge no app (~6 ms)
        from imgtool.image.boot_rules import disjoint_revisions, revisions_allowed

        lo, hi = revisions_allowed(app_min_rev_full, app_max_rev_full)
        finding = disjoint_revisions(lo, hi, (image.min_chip_rev_full, image.max_chip_rev_full))
        built_for = revision_range(image.min_chip_rev_full, image.max_chip_rev_full, "-", later=True)
        why = str(finding) if finding else f"the bootloader is built for {chip.name} revisions {built_for}"
        raise BootloaderError(
            f"{why}; pick a bootloader variant for the app's revisions ('imgtool bootloader list', then pack "
            "--bootloader-variant) or change the app's revision range",
            path=path,
            field="chip revision",
        )
    header = ImageHeader.build(
        dict(
            segment_count=len(image.segments),
            flash_mode=mode_code,
            flash_size_freq=(size_code << 4) | freq_code,
            entry=image.entry,
        )
    )
    body_end = parsed.length - (SHA256_LEN if image.hash_appended else 0)
    out = header + bytes(data[HEADER_LEN:body_end])
    if image.hash_appended:
        out += hashlib.sha256(out).digest()
    return out


def _checked(data: bytes, chip: Chip, path):
    """Parse ``data`` and refuse it unless it is an intact image for ``chip``."""
    parsed = parse_image(data, path, what="bootloader")
    image = parsed.image
    if image.chip_id != chip.image_chip_id:
        other = chip_by_image_id(image.chip_id)
        built_for = other.name if other else f"unknown chip id {image.chip_id}"
        raise BootloaderError(
            f"the bootloader is built for {built_for}, not {chip.name}; use an {chip.name} bootloader",
            path=path,
            field="chip_id",
        )
    if not parsed.checksum_valid:
        raise BootloaderError(
            f"the bootloader's checksum is 0x{parsed.stored_checksum:02x} but its segments give "
            f"0x{parsed.computed_checksum:02x}; the file is damaged, rebuild or re-download it",
            path=path,
            field="checksum",
        )
    if parsed.hash_valid is False:
        raise BootloaderError(
            "the bootloader's appended SHA-256 does not match its contents; the file is damaged, "
            "rebuild or re-download it",
            path=path,
            field="sha256",
        )
    return parsed


__all__ = ["load_user_bootloader", "place_bootloader", "runs_app"]
