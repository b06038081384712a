"""What ``imgtool flash`` writes, decided before touching the device: a library, no esptool, no printing.

A pack output folder is read back through its own argument files (``flash_args`` for the
parts, ``flash_merged_args`` for the merged image) and ``flasher_args.json``; the connected
chip's facts (model, revision, crystal) are then checked against the app's and the
bootloader's chip-revision ranges and the bootloader build's crystal, the way espflash does.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from imgtool.chips.table import ANY_REVISION_MAX, MAX_FLASH_BYTES, get_chip, revision_name, revision_range
from imgtool.errors import ImgtoolError, InputError, UsageError
from imgtool.flash.layout import FlashSettings
from imgtool.output_names import (
    BOOTLOADER_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    PARTITIONS_BIN_FILE,
)

#: write-flash options an argument file may carry, each followed by its value (esptool 4 and 5 spellings).
_SETTING_OPTIONS = {
    "-fm": "mode", "--flash-mode": "mode", "--flash_mode": "mode",
    "-ff": "freq", "--flash-freq": "freq", "--flash_freq": "freq",
    "-fs": "size", "--flash-size": "size", "--flash_size": "size",
}  # fmt: skip
#: The crystal ESP-IDF builds assume unless told otherwise (CONFIG_XTAL_FREQ default on esp32 and esp32c2).
DEFAULT_CRYSTAL_MHZ = 40
FORCE_HINT = "pass --force to flash anyway"


class FlashCheckError(ImgtoolError):
    """The connected chip cannot run what would be written."""


@dataclass(frozen=True)
class DeviceInfo:
    """What the connected chip reported."""

    chip: str  # imgtool's name, e.g. esp32c3
    revision: int  # major * 100 + minor
    crystal_mhz: int | None = None
    description: str = ""


@dataclass
class PackFolder:
    """A pack output folder as ``imgtool flash`` needs it."""

    path: Path
    chip: str
    settings: FlashSettings
    parts: list[tuple[int, Path]]  # from flash_args
    merged: tuple[int, Path] | None  # from flash_merged_args
    bootloader_source: dict = field(default_factory=dict)
    app_revisions: tuple[int, int] = (0, ANY_REVISION_MAX)
    bootloader_revisions: tuple[int, int] = (0, ANY_REVISION_MAX)

    @property
    def bootloader_offset(self) -> int:
        return get_chip(self.chip).bootloader_offset

    def partition_table(self):
        """The table in ``partitions.bin``, for ``--erase-parts`` and ``--erase-data-parts``."""
        from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, TABLE_MAX_LEN, PartitionTable

        table_file = self.path / PARTITIONS_BIN_FILE
        offset = next((off for off, p in self.parts if p.name == PARTITIONS_BIN_FILE), DEFAULT_TABLE_OFFSET)
        from imgtool.atomic import read_input

        data = read_input(table_file, "partition table", limit=TABLE_MAX_LEN)
        return PartitionTable.from_binary(data, source=os.fspath(table_file), table_offset=offset)


def parse_args_file(path: Path) -> tuple[dict, list[tuple[int, Path]]]:
    """Flash settings and ``(offset, file)`` pairs of an esptool argument file, read as esptool reads it.

    Every file it names must be a plain name inside its folder (:func:`imgtool.flash.pack_folder.file_in`).
    """
    from imgtool.atomic import read_input
    from imgtool.flash.pack_folder import MAX_METADATA_BYTES, file_in

    if not os.path.lexists(path):
        raise InputError("not found; run 'imgtool pack' into this folder first", path=path)
    try:
        text = read_input(path, "argument file", limit=MAX_METADATA_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read it ({exc})", path=path) from None
    words: list[str] = []
    try:
        for line in text.splitlines():
            words += shlex.split(line)
    except ValueError as exc:
        raise InputError(f"cannot split it as esptool would ({exc}); pack again", path=path) from None
    settings: dict = {}
    pairs: list[tuple[int, Path]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in _SETTING_OPTIONS and i + 1 < len(words):
            settings[_SETTING_OPTIONS[word]] = words[i + 1]
            i += 2
            continue
        if i + 1 >= len(words):
            raise InputError(f"'{word}' has no file after it; expected OFFSET FILE pairs", path=path)
        try:
            offset = int(word, 0)
        except ValueError:
            raise InputError(f"'{word}' is not an offset; expected OFFSET FILE pairs after the flash options", path=path) from None
        pairs.append((offset, file_in(path.parent, words[i + 1], path.name)))
        i += 2
    if not pairs:
        raise InputError("lists no file to write; pack again", path=path)
    return settings, pairs


def read_pack_folder(path: str | os.PathLike) -> PackFolder:
    """Read a pack output folder: chip and bootloader build from flasher_args.json, files from the argument files.

    Nothing it names is trusted: ``SHA256SUMS`` must vouch for every file the argument files name, each
    inside the folder (:mod:`imgtool.flash.pack_folder`), before anything connects to a device.
    """
    from imgtool.atomic import read_input
    from imgtool.flash.pack_folder import checked_sums, read_pack_json, require_listed
    from imgtool.image.format import parse_image

    folder = Path(path)
    meta_path = folder / FLASHER_ARGS_JSON_FILE
    meta = read_pack_json(folder)
    try:
        chip = meta["extra_esptool_args"]["chip"]
        get_chip(chip)
    except (KeyError, TypeError, ImgtoolError):
        raise InputError("does not name the chip in extra_esptool_args.chip; pack again", path=meta_path) from None
    settings, parts = parse_args_file(folder / FLASH_ARGS_FILE)
    merged = None
    if os.path.lexists(folder / FLASH_MERGED_ARGS_FILE):
        merged_pairs = parse_args_file(folder / FLASH_MERGED_ARGS_FILE)[1]
        merged = merged_pairs[0]
    sums = checked_sums(folder)
    require_listed(folder, sums, [p.name for _, p in parts], FLASH_ARGS_FILE)
    if merged is not None:
        require_listed(folder, sums, [merged[1].name], FLASH_MERGED_ARGS_FILE)
    sections = meta.get("flash_settings") if isinstance(meta.get("flash_settings"), dict) else {}
    flash = FlashSettings(
        mode=settings.get("mode") or sections.get("flash_mode", "dio"),
        freq=settings.get("freq") or sections.get("flash_freq", "40m"),
        size=settings.get("size") or sections.get("flash_size", "2MB"),
    )
    own = meta.get("imgtool") if isinstance(meta.get("imgtool"), dict) else {}
    source = own.get("bootloader") if isinstance(own.get("bootloader"), dict) else {}
    pack = PackFolder(folder, chip, flash, parts, merged, dict(source))
    app_entry = meta.get("app").get("file") if isinstance(meta.get("app"), dict) else None
    for attr, name in (("app_revisions", app_entry), ("bootloader_revisions", BOOTLOADER_FILE)):
        if name not in sums:
            continue
        file = folder / name
        try:
            image = parse_image(read_input(file, "image", limit=MAX_FLASH_BYTES), file).image
        except ImgtoolError:
            continue  # verify reports a damaged image; esptool's own checks still run
        setattr(pack, attr, (image.min_chip_rev_full, image.max_chip_rev_full))
    return pack


def check_chip(pack: PackFolder, *, device_chip: str, requested_chip: str | None = None) -> None:
    """Refuse a pack for another chip than the connected one (or than ``--chip``); never overridable."""
    if requested_chip is not None and get_chip(requested_chip).name != pack.chip:
        raise UsageError(
            f"the pack in {pack.path} is for {pack.chip}, but --chip says {requested_chip}; "
            f"pack the ELF for {requested_chip} or drop --chip",
            field="--chip",
        )
    if device_chip != pack.chip:
        raise FlashCheckError(
            f"the connected chip is {device_chip}, but the pack in {pack.path} is for {pack.chip}; "
            f"connect a {pack.chip}, or build the firmware for {device_chip} and pack that ELF",
        )


def check_revision(pack: PackFolder, device: DeviceInfo, bootloader_fix: str | None = None) -> list[str]:
    """Problems running the app and the bootloader on the device's chip revision (empty when both allow it).

    The app must allow the revision at both ends; the bootloader checks only its own minimum
    (``bootloader_common_check_chip_validity`` skips the maximum for ESP_IMAGE_BOOTLOADER).
    ``bootloader_fix`` is the step that gets a bootloader for this revision (the flasher knows the pinned builds).
    """
    problems = []
    low, high = pack.app_revisions
    if not low <= device.revision <= high:
        problems.append(
            f"the connected {device.chip} is revision {revision_name(device.revision)} but the app runs on "
            f"{revision_range(low, high, ' to ', later=True)}; pack the ELF again with --min-rev/--max-rev including "
            f"{revision_name(device.revision)} (if the firmware supports it)"
        )
    boot_low = pack.bootloader_revisions[0]
    if device.revision < boot_low:
        problems.append(
            f"the connected {device.chip} is revision {revision_name(device.revision)} but the bootloader starts only on "
            f"{revision_name(boot_low)} and later; "
            + (bootloader_fix or "pack the ELF again with --bootloader FILE, an ESP-IDF bootloader built for this revision")
        )
    return problems


@dataclass(frozen=True)
class CrystalDecision:
    """What the crystal check concluded: a pinned variant to write instead, or a problem."""

    variant: str | None = None  # the pinned variant to place instead of the pack's bootloader
    problem: str | None = None
    note: str | None = None


def check_crystal(pack: PackFolder, device: DeviceInfo, crystal_variants: dict[int, str]) -> CrystalDecision:
    """Match the bootloader build to the device's crystal on chips with per-crystal builds (esp32, esp32c2).

    ``crystal_variants`` maps crystal MHz to the pinned variant built for it (empty for other chips).
    A pinned bootloader is swapped for the matching pinned variant; a user's own file is refused,
    since imgtool cannot tell which crystal it was built for unless it is a pinned file.
    """
    if not crystal_variants or device.crystal_mhz is None:
        return CrystalDecision()
    source = pack.bootloader_source
    built_for = source.get("crystal_mhz")
    assumed = built_for if built_for is not None else DEFAULT_CRYSTAL_MHZ
    if assumed == device.crystal_mhz:
        return CrystalDecision()
    wanted = crystal_variants.get(device.crystal_mhz)
    if source.get("source") == "pinned" and wanted is not None:
        return CrystalDecision(
            variant=wanted,
            note=f"the connected {device.chip} has a {device.crystal_mhz} MHz crystal: writing the pinned "
            f"{wanted} bootloader instead of the pack's {source.get('variant')}",
        )
    if built_for is None:
        what = f"the pack's bootloader is your own file, built for an unknown crystal (ESP-IDF's default is {DEFAULT_CRYSTAL_MHZ} MHz)"
    else:
        what = f"the pack's bootloader is built for a {built_for} MHz crystal"
    fix = f"pack with --bootloader-variant {wanted}" if wanted else "use a bootloader built for this crystal"
    return CrystalDecision(
        problem=f"the connected {device.chip} has a {device.crystal_mhz} MHz crystal and {what}; {fix}, "
        f"or {FORCE_HINT} if the bootloader is built for {device.crystal_mhz} MHz"
    )


def erase_regions(pack: PackFolder, labels: list[str], data_types: list[str]) -> list[tuple[int, int, str]]:
    """``(offset, size, label)`` of the partitions ``--erase-parts`` and ``--erase-data-parts`` name."""
    if not labels and not data_types:
        return []
    from imgtool.partitions.table import TYPE_DATA

    table = pack.partition_table()
    chosen: dict[str, object] = {}
    for label in labels:
        part = table.find(label)
        if part is None:
            names = ", ".join(p.name for p in table.partitions)
            raise UsageError(f"no partition is labelled '{label}' in {pack.path / PARTITIONS_BIN_FILE}; labels: {names}", field="--erase-parts")
        chosen[part.name] = part
    data_parts = [p for p in table.partitions if p.type == TYPE_DATA]
    for kind in data_types:
        matches = [p for p in data_parts if p.subtype_name == kind.lower()]
        if not matches:
            kinds = ", ".join(sorted({p.subtype_name for p in data_parts})) or "none"
            raise UsageError(f"no data partition of type '{kind}' in the pack's table; types present: {kinds}", field="--erase-data-parts")
        for part in matches:
            chosen[part.name] = part
    return sorted(((p.offset, p.size, p.name) for p in chosen.values()), key=lambda r: r[0])


__all__ = [
    "CrystalDecision",
    "DeviceInfo",
    "FlashCheckError",
    "PackFolder",
    "check_chip",
    "check_crystal",
    "check_revision",
    "erase_regions",
    "parse_args_file",
    "read_pack_folder",
]
