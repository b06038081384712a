"""ELF → ESP app image: the library entry point for the `image` stage.

Data flows one way: ELF pieces → classified pieces → segment layout → EspImage → bytes.
Which chip an ELF is for is :mod:`imgtool.elf.chip_detect`'s job; revision strings are read by
:func:`imgtool.chips.table.parse_revision`; the app descriptor's fields by
:func:`imgtool.image.format.desc_dict`.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgtool.chips.table import (
    ANY_REVISION_MAX,
    DEFAULT_FLASH_MODE,
    DEFAULT_FLASH_SIZE,
    DEFAULT_MMU_PAGE_SIZE,
    FLASH_MODES,
    FLASH_SIZES,
    Chip,
    Region,
    check_revision_number,
    flash_size_bytes,
    normalize_flash_mode,
    normalize_flash_size,
    revision_name,
)
from imgtool.elf.chip_detect import resolve_chip
from imgtool.elf.reader import ElfInfo, read_elf
from imgtool.errors import ElfError, LayoutError, UsageError
from imgtool.image.boot_rules import check_app_for_any_loader
from imgtool.image.format import (
    APP_DESC_ELF_SHA256_OFFSET,
    APP_DESC_LEN,
    EspImage,
    ParsedImage,
    build_image,
    desc_dict,
    descriptor_page_size,
    parse_app_descriptor,
)
from imgtool.image.segments import classify, layout
from imgtool.image.size_report import SizeReport, size_report


class AppImage:
    """A built app image with what it was built from and what was found on the way.

    A plain class: every pack defines it, where a NamedTuple of these fields costs ~0.25 ms.
    """

    __slots__ = (
        "chip", "image", "data", "elf", "size_report", "app_desc", "mmu_page_size", "warnings", "rom_loaded",
        "flash_freq", "parsed", "file_sha256",
    )

    def __init__(
        self,
        chip: Chip,
        image: EspImage,
        data: bytes,
        elf: ElfInfo,
        size_report: SizeReport,
        app_desc: dict | None,
        mmu_page_size: int,
        warnings: list[str],
        rom_loaded: bool = False,
        flash_freq: str = "",
        parsed: ParsedImage | None = None,
        file_sha256: str | None = None,
    ):
        self.chip = chip
        self.image = image
        self.data = data
        self.elf = elf
        self.size_report = size_report
        self.app_desc = app_desc
        self.mmu_page_size = mmu_page_size
        self.warnings = warnings
        #: Every loaded section is RAM: built as the ROM loads an image (a second-stage bootloader, a
        #: RAM-only app), without the app descriptor or the second-stage bootloader's rules.
        self.rom_loaded = rom_loaded
        #: The flash frequency the header carries, by name (the chip's default when none was asked for).
        self.flash_freq = flash_freq
        #: ``data`` as :func:`imgtool.image.format.parse_image` would read it, from the build (nothing re-read).
        self.parsed = parsed
        #: Hex SHA-256 of ``data``, from the build's own hashing (None when the image carries no hash).
        self.file_sha256 = file_sha256


def flash_defaults(mode: str | None, size: str | None, default_size: str | None = None) -> tuple[str, str]:
    """The flash mode and size an image is built for, normalized: the defaults are applied here only.

    ``default_size`` stands in for :data:`DEFAULT_FLASH_SIZE` (``flash ELF`` passes the board's).
    """
    return normalize_flash_mode(mode or DEFAULT_FLASH_MODE), normalize_flash_size(size or default_size or DEFAULT_FLASH_SIZE)


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
    boot_warnings: bool = True,
) -> AppImage:
    """Turn a firmware ELF into an ESP app image for ``chip`` (detected when None).

    The image is judged as a bootloader would: what none would start is refused. With
    ``boot_warnings`` False the other findings are left out, for a caller (``pack``) that judges the
    app under the bootloader it chose, which knows which chip revisions can run at all, and so
    says each finding once. The flash mode and size default as :func:`flash_defaults` says.
    """
    warnings: list[str] = []
    mode, size = flash_defaults(flash_mode, flash_size)
    check_revision_number(min_rev_full, "--min-rev")
    check_revision_number(max_rev_full, "--max-rev")
    elf = read_elf(elf_path)
    target = resolve_chip(elf, chip, warnings)
    freq = flash_freq or target.default_flash_freq
    freq_code = target.flash_freq_code(freq)

    contents = elf.read_all()
    rom_loaded = is_rom_loaded(target, elf)
    desc_piece, app_desc = _app_descriptor(elf, contents, rom_loaded, warnings)
    page = _page_size(target, mmu_page_size, app_desc, elf.path, warnings)
    pieces = [classify(target, p.name, p.addr, contents[p], elf.path, rom_loaded=rom_loaded) for p in elf.pieces]
    segments = layout(
        target,
        pieces,
        page,
        first_addr=desc_piece.addr if desc_piece else None,
        # the app loader reads eFuse-block fields at +0xB0 of segment 0; the ROM reads no descriptor
        zeroed_first=APP_DESC_LEN if desc_piece is None and target.boot.efuse_blk_check and not rom_loaded else 0,
        path=elf.path,
    )
    _check_entry(target, elf, warnings, rom_loaded)
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
    data, parsed, file_sha = build_image(image)
    if not rom_loaded:
        boot_findings = _boot_check(target, parsed, elf.path)
        if boot_warnings:
            warnings += boot_findings
    if len(data) > flash_size_bytes(size):
        raise LayoutError(
            f"app image is {len(data)} bytes, more than the {size} flash; pass a larger --flash-size",
            path=elf.path,
        )
    report = size_report(target, elf, pieces, len(data), flash_size_bytes(size))
    return AppImage(target, image, data, elf, report, app_desc, page, warnings, rom_loaded, flash_freq=freq.lower(),
                    parsed=parsed, file_sha256=file_sha)


def is_rom_loaded(chip: Chip, elf: ElfInfo) -> bool:
    """Whether every section the ELF loads is RAM: an image the ROM loads, not one the bootloader maps."""
    return not any(chip.is_flash_mapped(p.addr) for p in elf.pieces)


def _boot_check(chip: Chip, parsed: ParsedImage, path: Path) -> list[str]:
    """Judge the finished image as the bootloader would: refuse what it would not start, warn on the rest."""
    findings = check_app_for_any_loader(chip, parsed)
    for finding in findings:
        if finding.fatal:
            raise LayoutError(f"the {chip.name} bootloader would not start this image: {finding}", path=path)
    return [f"{path}: {finding}" for finding in findings]


def _app_descriptor(elf: ElfInfo, contents, rom_loaded: bool, warnings: list[str]):
    """The ELF's app descriptor piece (its ELF SHA-256 filled in ``contents``) and its fields; warns when an
    image the bootloader loads has none."""
    desc_piece = elf.find_app_descriptor(contents)
    if desc_piece is None:
        if not rom_loaded:
            warnings.append(
                f"{elf.path}: no ESP-IDF app descriptor (esp_app_desc_t) found; current ESP-IDF bootloaders and "
                "espflash expect one (esp-hal adds it with esp_bootloader_esp_idf::esp_app_desc!())"
            )
        return None, None
    contents[desc_piece] = _fill_elf_sha(contents[desc_piece], elf.sha256())
    parsed = parse_app_descriptor(contents[desc_piece])
    return desc_piece, (desc_dict(parsed) if parsed is not None else None)


def _fill_elf_sha(desc: bytes, sha: bytes) -> bytes:
    """ESP-IDF stores the ELF's SHA-256 in the descriptor so panic decoders can match the ELF.

    ``desc`` is the whole piece holding the descriptor (all of rodata when one program header covers
    both), so its tail is joined from a view: one copy, not a slice and then a concatenation.
    """
    if len(desc) < APP_DESC_LEN:
        return desc
    start = APP_DESC_ELF_SHA256_OFFSET
    return b"".join((desc[:start], sha, memoryview(desc)[start + len(sha) :]))


def _page_size(chip: Chip, requested: int | None, app_desc: dict | None, path: Path, warnings: list[str]) -> int:
    """The MMU page the bootloader will use (``verify_segment_header``): the descriptor's on chips
    with a configurable page, 64 KiB on the others whatever the descriptor says."""
    if requested is not None and requested not in chip.mmu_page_sizes:
        raise UsageError(
            f"{chip.name} has no {requested}-byte MMU page; use one of {', '.join(map(str, chip.mmu_page_sizes))}",
            field="--mmu-page-size",
        )
    wanted = descriptor_page_size(app_desc["mmu_page_size"]) if app_desc else None
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


def _check_entry(chip: Chip, elf: ElfInfo, warnings: list[str], rom_loaded: bool) -> None:
    rng = chip.region_of(elf.entry, rom_loaded=rom_loaded)
    executable = (Region.IROM, Region.IRAM, Region.SRAM, Region.TCM, Region.RTC_IRAM, Region.CACHE_RAM)
    if rng is None or rng.region not in executable:
        warnings.append(f"{elf.path}: entry point 0x{elf.entry:08x} is not in executable memory of {chip.name}")


__all__ = ["AppImage", "build_app_image", "flash_defaults", "is_rom_loaded"]
