"""What ``imgtool flash`` checks before touching the device: a library, no esptool, no printing.

The pack folder is read by :func:`imgtool.flash.pack_folder.read_pack_folder`; the connected
chip's facts (model, revision, crystal) are then checked against the app's and the
bootloader's chip-revision ranges and the bootloader build's crystal, the way espflash does,
and ``--erase-parts``/``--erase-data-parts`` are turned into flash regions.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgtool.chips.table import get_chip, revision_name, revision_range
from imgtool.errors import ImgtoolError, UsageError
from imgtool.flash.pack_folder import PackFolder
from imgtool.output_names import PARTITIONS_BIN_FILE
from imgtool.partitions.table import TYPE_DATA

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


def revision_problems(pack: PackFolder, device: DeviceInfo, bootloader_fix: str | None = None) -> list[str]:
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
    "check_chip",
    "check_crystal",
    "erase_regions",
    "revision_problems",
]
