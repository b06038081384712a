"""ELF → ESP app image: the library entry point for the `image` stage.

Data flows one way: ELF pieces → classified pieces → segment layout → EspImage → bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgtool.boot_rules import check_app
from imgtool.chips import (
    EM_XTENSA,
    ANY_REVISION_MAX,
    CHIPS,
    DEFAULT_FLASH_MODE,
    DEFAULT_MMU_PAGE_SIZE,
    DEFAULT_FLASH_SIZE,
    FLASH_MODES,
    FLASH_SIZES,
    Chip,
    Region,
    flash_size_bytes,
    get_chip,
    normalize_flash_mode,
    normalize_flash_size,
    revision_name,
)
from imgtool.elf import ElfInfo, read_elf
from imgtool.errors import ElfError, LayoutError, UsageError
from imgtool.image_format import (
    APP_DESC_ELF_SHA256_OFFSET,
    APP_DESC_LEN,
    EspImage,
    c_string,
    parse_app_descriptor,
    parse_image,
)
from imgtool.segments import classify, layout
from imgtool.size_report import SizeReport, size_report


@dataclass
class AppImage:
    chip: Chip
    image: EspImage
    data: bytes
    elf: ElfInfo
    size_report: SizeReport
    app_desc: dict | None
    elf_sha256: bytes
    mmu_page_size: int
    warnings: list[str] = field(default_factory=list)


#: The ESP8266's instruction RAM, where its firmware's entry point lives; no supported chip starts there.
ESP8266_IRAM = range(0x4010_0000, 0x4011_0000)


def detect_chip(elf: ElfInfo) -> Chip:
    """Pick the chip from the ELF's machine, addresses and the chip-named crates it carries."""
    if elf.machine == EM_XTENSA and elf.entry in ESP8266_IRAM and not elf.chip_hints:
        raise ElfError(
            f"the entry point 0x{elf.entry:08x} is in the ESP8266's IRAM: ESP8266 firmware is not supported "
            "(imgtool handles the ESP32 family); use esptool elf2image --chip esp8266",
            path=elf.path,
        )
    candidates = [c for c in CHIPS.values() if c.elf_machine == elf.machine]
    fitting = [c for c in candidates if all(c.region_of(p.addr, p.size) for p in elf.pieces)]
    named = [c for c in fitting if c.name in elf.chip_hints]
    if len(named) == 1:
        return named[0]
    if len(fitting) == 1:
        return fitting[0]
    pool = named or fitting
    if not pool:
        raise ElfError(
            f"no {elf.machine_name} chip has memory at all of this ELF's addresses; pass --chip to see which section is off",
            path=elf.path,
        )
    raise ElfError(
        f"cannot tell the chip from the ELF (could be {', '.join(c.name for c in pool)}); pass --chip",
        path=elf.path,
        field="--chip",
    )


def resolve_chip(elf: ElfInfo, chip: str | Chip | None, warnings: list[str]) -> Chip:
    if chip is None:
        return detect_chip(elf)
    chosen = get_chip(chip)
    if chosen.elf_machine != elf.machine:
        others = [c.name for c in CHIPS.values() if c.elf_machine == elf.machine]
        raise ElfError(
            f"ELF is {elf.machine_name} but {chosen.name} is {'Xtensa' if chosen.arch == 'xtensa' else 'RISC-V'}; "
            f"pass --chip with one of {', '.join(others)}",
            path=elf.path,
            field="e_machine",
        )
    if elf.chip_hints and chosen.name not in elf.chip_hints:
        warnings.append(
            f"{elf.path}: the ELF mentions {', '.join(sorted(elf.chip_hints))} but --chip is {chosen.name}"
        )
    return chosen


def _check_revision(value: int | None, name: str) -> None:
    if value is not None and not 0 <= value <= ANY_REVISION_MAX:
        raise UsageError(f"{name} must be between 0 and {ANY_REVISION_MAX} (major*100+minor), got {value}", field=name)


def parse_revision(text: str | int | None, name: str) -> int | None:
    """``v3.1`` or ``3.1`` → 301; a plain integer is already major*100+minor (esptool's --min-rev-full)."""
    if text is None or isinstance(text, int):
        _check_revision(text, name)
        return text
    raw = text.strip().lower().removeprefix("v")
    try:
        if "." in raw:
            major, minor = raw.split(".", 1)
            if not (major.isdigit() and minor.isdigit() and int(minor) < 100):
                raise ValueError(raw)
            value = int(major) * 100 + int(minor)
        else:
            value = int(raw, 0)
    except ValueError:
        raise UsageError(f"{name} '{text}' is not a chip revision like v3.1 or 301", field=name) from None
    _check_revision(value, name)
    return value


def build_app_image(
    elf_path: str | os.PathLike,
    *,
    chip: str | Chip | None = None,
    flash_mode: str | None = None,
    flash_size: str | None = None,
    flash_freq: str | None = None,
    min_rev_full: int | None = None,
    max_rev_full: int | None = None,
    mmu_page_size: int | None = None,
) -> AppImage:
    """Turn a firmware ELF into an ESP app image for ``chip`` (detected when None)."""
    warnings: list[str] = []
    mode = normalize_flash_mode(flash_mode or DEFAULT_FLASH_MODE)
    size = normalize_flash_size(flash_size or DEFAULT_FLASH_SIZE)
    _check_revision(min_rev_full, "--min-rev")
    _check_revision(max_rev_full, "--max-rev")
    elf = read_elf(elf_path)
    target = resolve_chip(elf, chip, warnings)
    freq_code = target.flash_freq_code(flash_freq or target.default_flash_freq)

    contents = elf.read_all()
    desc_piece = elf.find_app_descriptor(contents)
    elf_sha = elf.sha256()
    app_desc = None
    if desc_piece is None:
        warnings.append(
            f"{elf.path}: no ESP-IDF app descriptor (esp_app_desc_t) found; current ESP-IDF bootloaders and "
            "espflash expect one (esp-hal adds it with esp_bootloader_esp_idf::esp_app_desc!())"
        )
    else:
        contents[desc_piece] = _fill_elf_sha(contents[desc_piece], elf_sha)
        parsed = parse_app_descriptor(contents[desc_piece])
        app_desc = desc_dict(parsed) if parsed is not None else None

    page = _page_size(target, mmu_page_size, app_desc, elf.path, warnings)
    pieces = [classify(target, p.name, p.addr, contents[p], elf.path) for p in elf.pieces]
    segments = layout(target, pieces, page, first_addr=desc_piece.addr if desc_piece else None, path=elf.path)
    _check_entry(target, elf, warnings)
    if min_rev_full is None and elf.min_chip_revision is not None:
        min_rev_full = elf.min_chip_revision
    if desc_piece is not None and segments[0].addr != desc_piece.addr:
        warnings.append(
            f"{elf.path}: the app descriptor at 0x{desc_piece.addr:08x} cannot be the start of the first segment "
            f"(its address must be 0x20 past an MMU page); the bootloader will not find it"
        )

    image = EspImage(
        chip_id=target.image_chip_id,
        entry=elf.entry,
        segments=tuple(segments),
        flash_mode=FLASH_MODES[mode],
        flash_size_code=FLASH_SIZES[size],
        flash_freq_code=freq_code,
        min_chip_rev_full=min_rev_full if min_rev_full is not None else 0,
        max_chip_rev_full=max_rev_full if max_rev_full is not None else ANY_REVISION_MAX,
    )
    if image.min_chip_rev_full > image.max_chip_rev_full:
        raise UsageError(
            f"--min-rev {revision_name(image.min_chip_rev_full)} is above "
            f"--max-rev {revision_name(image.max_chip_rev_full)}",
            field="--min-rev",
        )
    data = image.to_bytes()
    warnings += _boot_check(target, data, elf.path)
    if len(data) > flash_size_bytes(size):
        raise LayoutError(
            f"app image is {len(data)} bytes, more than the {size} flash; pass a larger --flash-size",
            path=elf.path,
        )
    report = size_report(target, elf, pieces, len(data), flash_size_bytes(size))
    return AppImage(target, image, data, elf, report, app_desc, elf_sha, page, warnings)


def _boot_check(chip: Chip, data: bytes, path: Path) -> list[str]:
    """Judge the finished image as the bootloader would: refuse what it would not start, warn on the rest."""
    findings = check_app(chip, parse_image(data, path))
    for finding in findings:
        if finding.fatal:
            raise LayoutError(f"the {chip.name} bootloader would not start this image: {finding}", path=path)
    return [f"{path}: {finding}" for finding in findings]


def _fill_elf_sha(desc: bytes, sha: bytes) -> bytes:
    """ESP-IDF stores the ELF's SHA-256 in the descriptor so panic decoders can match the ELF."""
    if len(desc) < APP_DESC_LEN:
        return desc
    start = APP_DESC_ELF_SHA256_OFFSET
    return desc[:start] + sha + desc[start + len(sha) :]


def _page_size(chip: Chip, requested: int | None, app_desc: dict | None, path: Path, warnings: list[str]) -> int:
    """The MMU page the bootloader will use (``verify_segment_header``): the descriptor's on chips
    with a configurable page, 64 KiB on the others whatever the descriptor says."""
    if requested is not None and requested not in chip.mmu_page_sizes:
        raise UsageError(
            f"{chip.name} has no {requested}-byte MMU page; use one of {', '.join(map(str, chip.mmu_page_sizes))}",
            field="--mmu-page-size",
        )
    wanted = 1 << app_desc["mmu_page_size"] if app_desc and app_desc.get("mmu_page_size") else None
    if len(chip.mmu_page_sizes) == 1:
        if wanted is not None and wanted != DEFAULT_MMU_PAGE_SIZE:
            warnings.append(
                f"{path}: the app descriptor asks for a {wanted // 1024} KiB MMU page, but {chip.name} always maps "
                f"{DEFAULT_MMU_PAGE_SIZE // 1024} KiB pages; laid out for those"
            )
        return DEFAULT_MMU_PAGE_SIZE
    if requested is None and wanted is not None:
        if wanted not in chip.mmu_page_sizes:
            raise ElfError(
                f"app descriptor asks for a {wanted // 1024} KiB MMU page, which {chip.name} does not have "
                f"({', '.join(str(s // 1024) + ' KiB' for s in chip.mmu_page_sizes)})",
                path=path,
                field="mmu_page_size",
            )
        return wanted
    return requested or DEFAULT_MMU_PAGE_SIZE


def _check_entry(chip: Chip, elf: ElfInfo, warnings: list[str]) -> None:
    rng = chip.region_of(elf.entry)
    if rng is None or rng.region not in (Region.IROM, Region.IRAM, Region.SRAM, Region.TCM, Region.RTC_IRAM):
        warnings.append(f"{elf.path}: entry point 0x{elf.entry:08x} is not in executable memory of {chip.name}")


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


__all__ = ["AppImage", "build_app_image", "desc_dict", "detect_chip", "parse_revision"]
