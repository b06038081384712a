"""A report of what an ESP image holds, shared by `imgtool info` and JSON output."""

from __future__ import annotations

import os

from imgtool.atomic import read_input
from imgtool.chips.table import MAX_FLASH_BYTES, Region, chip_by_image_id, flash_mode_name, flash_size_name
from imgtool.image.boot_rules import check_app_for_any_loader
from imgtool.image.format import desc_dict, parse_app_descriptor, parse_image
from imgtool.image.loader_generations import GENERATIONS, loader_build
from imgtool.image.segments import PADDING_ADDR
from imgtool.security.signing import signature_report


def describe(path: str | os.PathLike, keys=()) -> dict:
    """Header, segments with memory type, checksum/hash validity and app descriptor of the image at ``path``."""
    data = read_input(path, "ESP image", limit=MAX_FLASH_BYTES)
    parsed = parse_image(data, path)
    img = parsed.image
    chip = chip_by_image_id(img.chip_id)
    is_app = chip is not None and _is_app(chip, parsed)
    segments = []
    problems = []
    for index, ps in enumerate(parsed.segments):
        seg = ps.segment
        if seg.addr == PADDING_ADDR:
            memory = "padding"
        elif chip is None:
            memory = "?"
        else:
            rng = chip.region_of(seg.addr, len(seg.data), rom_loaded=not is_app)
            memory = rng.region.value if rng else "outside memory"
        segments.append(
            {"index": index, "addr": seg.addr, "length": len(seg.data), "data_offset": ps.data_offset, "memory": memory}
        )
    warnings: list[str] = []
    app_rules = bootloader_build = None
    if is_app:
        app_rules = [g.name for g in GENERATIONS]  # an app image alone does not say which bootloader starts it
        for finding in check_app_for_any_loader(chip, parsed):
            (problems if finding.fatal else warnings).append(str(finding))
    else:
        bootloader_build = loader_build(chip, parsed).as_dict()
        if not parsed.checksum_valid:
            problems.append(f"checksum 0x{parsed.stored_checksum:02x} does not match the data (0x{parsed.computed_checksum:02x})")
        if parsed.hash_valid is False:
            problems.append("appended SHA-256 does not match the image")
    signatures, signature_problems = signature_report(data, parsed.length, keys)
    problems += signature_problems
    desc = None
    if parsed.segments and chip is not None:
        first = parsed.segments[0].segment
        rng = chip.region_of(first.addr)
        if rng is not None and rng.region in (Region.DROM, Region.IROM):
            raw = parse_app_descriptor(first.data)
            if raw is not None:
                desc = desc_dict(raw)
    return {
        "file": os.fspath(path),
        "size": len(data),
        "image_length": parsed.length,
        "chip": chip.name if chip else None,
        "chip_id": img.chip_id,
        "entry": img.entry,
        "flash_mode": flash_mode_name(img.flash_mode),
        "flash_size": flash_size_name(img.flash_size_code),
        "flash_freq": chip.flash_freq_name(img.flash_freq_code) if chip else f"0x{img.flash_freq_code:x}",
        "min_rev_full": img.min_chip_rev_full,
        "max_rev_full": img.max_chip_rev_full,
        "segments": segments,
        "checksum": {
            "stored": parsed.stored_checksum,
            "computed": parsed.computed_checksum,
            "valid": parsed.checksum_valid,
        },
        "sha256": None
        if parsed.stored_sha256 is None
        else {"stored": parsed.stored_sha256.hex(), "computed": parsed.computed_sha256.hex(), "valid": parsed.hash_valid},
        "app_desc": desc,
        "app_rules": app_rules,
        "bootloader_build": bootloader_build,
        "signatures": signatures,
        "problems": problems,
        "warnings": warnings,
    }


def _is_app(chip, parsed) -> bool:
    """Apps map flash or carry the app descriptor; second-stage bootloaders run from RAM only."""
    first = parsed.segments[0].segment.data if parsed.segments else b""
    return parse_app_descriptor(first) is not None or any(chip.is_flash_mapped(ps.segment.addr) for ps in parsed.segments)
