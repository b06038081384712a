"""Check a merged image or a flash dump the way the chip would read it.

The ROM loads the bootloader from the chip's bootloader offset; the bootloader
reads the partition table (MD5-checked), picks the app partition as ESP-IDF's
bootloader does (``imgtool.partitions.otadata``: otadata's entry, else factory, else ota_0),
then loads and maps the app; a selected partition without a loadable app fails,
naming what the bootloader falls back to. The app is judged by
``boot_rules`` (ESP-IDF's loader as a model) under the bootloader actually
found, so every problem names the part and the bootloader step it fails. With
an ELF, every allocated section is compared with what the CPU reads when the
app starts: flash through the MMU table the bootloader leaves, RAM as loaded.
Data partitions that hold something are described (an NVS partition's page
headers checked as ESP-IDF's NVS reads them; a bad one is a warning: the app
would lose that data, but it boots).

Each step is a function over a read-only :class:`FlashView` of the file that returns its own
checks and what it read for the steps after it; :func:`boot_report` runs them in boot order
and assembles the report.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from imgtool.atomic import read_input
from imgtool.bootloader.revision_reach import REVISION_RULE, locked_out_below, locked_out_text
from imgtool.chips.table import (
    BOOTLOADER_OFFSETS as CHIP_BOOTLOADER_OFFSETS,
)
from imgtool.chips.table import (
    ERASED,
    FLASH_MODES,
    FLASH_SIZES,
    Chip,
    chip_by_image_id,
    flash_size_bytes,
    flash_size_name,
    get_chip,
    revision_name,
)
from imgtool.elf.reader import read_elf
from imgtool.errors import ImageError, ImgtoolError, InputError, PartitionError
from imgtool.flash.pack_folder import (
    file_in,
    flash_files,
    named_merged,
    parse_args_file,
    parse_sha256sums,
    read_pack_json,
)
from imgtool.image.boot_rules import BootContext, CpuView, check_app
from imgtool.image.format import (
    APP_DESC_ELF_SHA256_OFFSET,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    IMAGE_MAGIC,
    SHA256_LEN,
    ExtendedHeader,
    parse_image,
)
from imgtool.image.loader_generations import DEFAULT_GENERATION, LoaderBuild, loader_build
from imgtool.image.memory import LoadedMemory, elf_mismatches
from imgtool.output_names import FLASH_ARGS_FILE, FLASHER_ARGS_JSON_FILE, MERGED_SUFFIX, SHA256SUMS_FILE
from imgtool.partitions.data_images import describe_contents
from imgtool.partitions.otadata import BootPlan, boot_plan
from imgtool.partitions.table import (
    DEFAULT_TABLE_OFFSET,
    ENTRY_MAGIC,
    ENTRY_SIZE,
    MD5_MAGIC,
    OTADATA_SIZE,
    SUBTYPE_DATA_OTA,
    TABLE_MAX_LEN,
    TYPE_DATA,
    Partition,
    PartitionTable,
)
from imgtool.security.signing import signature_checks

#: Where a file that does not start with an image may hold the bootloader (a flash dump from 0x0).
BOOTLOADER_OFFSETS = tuple(off for off in CHIP_BOOTLOADER_OFFSETS if off)


@dataclass(frozen=True)
class Check:
    """One finding of a step: the part it is about, whether the chip gets past it, and what it says."""

    part: str  # image, bootloader, partition table, otadata, app, elf
    ok: bool
    message: str
    #: Passes, but the bootloader model flags something (other chip revisions, older bootloaders).
    warning: bool = False

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"

    def __str__(self) -> str:
        return f"{self.part}: {self.message}"


@dataclass
class VerifyReport:
    """Every step's checks in boot order and what the steps read (chip, table, boot partition), assembled by :func:`boot_report`."""

    source: str
    chip: str | None = None
    kind: str = "merged image"  # or "flash dump"
    base: int = 0  # flash address of the file's first byte
    bootloader_size: int | None = None
    table: list[Partition] = field(default_factory=list)
    boot_partition: str | None = None
    boot_partition_offset: int | None = None
    boot_partition_size: int | None = None
    #: Why the bootloader starts ``boot_partition`` (the rule, naming its ESP-IDF function).
    boot_reason: str | None = None
    app_size: int | None = None
    flash_size: str | None = None
    #: The bootloader's ESP-IDF version and the loader rules (v5.5 or v6.1) the app is judged by.
    bootloader_build: dict | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise one ``ImageError`` naming the first failed part (and how many problems there are)."""
        problems = self.problems
        if problems:
            more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
            raise ImageError(f"{problems[0]}{more}", path=self.source)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "ok": self.ok,
            "chip": self.chip,
            "kind": self.kind,
            "base": self.base,
            "flash_size": self.flash_size,
            "bootloader_size": self.bootloader_size,
            "bootloader_build": self.bootloader_build,
            "partitions": [
                {"name": e.name, "type": e.type, "subtype": e.subtype, "offset": e.offset, "size": e.size, "flags": e.flags}
                for e in self.table
            ],
            "boot_partition": self.boot_partition,
            "boot_partition_offset": self.boot_partition_offset,
            "boot_partition_size": self.boot_partition_size,
            "boot_reason": self.boot_reason,
            "app_size": self.app_size,
            "checks": [{"part": c.part, "ok": c.ok, "warning": c.warning, "message": c.message} for c in self.checks],
            "problems": [str(c) for c in self.problems],
        }


# --------------------------------------------------------------------------- inputs


def resolve_input(path: str | os.PathLike) -> tuple[Path, dict]:
    """A file to verify: ``path`` itself, or for a pack output folder its merged image.

    Returns the file and hints from ``flasher_args.json`` (chip, merged offset) when present.
    """
    p = Path(path)
    if not p.is_dir():
        return p, {}
    chip, merged = named_merged(p)
    hints = {"chip": chip} if chip is not None else {}
    if merged is None or not merged.is_file():
        found = sorted(p.glob(f"*{MERGED_SUFFIX}"))
        if len(found) != 1:
            raise InputError(
                "expected exactly one *.merged.bin in this folder"
                + (f" (found {len(found)})" if found else "")
                + "; pass the merged image or flash dump itself",
                path=p,
            )
        merged = found[0]
    return merged, hints


# --------------------------------------------------------------------------- verify


def verify(path_or_bytes, *, chip: str | Chip | None = None, elf=None, table_offset: int = DEFAULT_TABLE_OFFSET, keys=()) -> VerifyReport:
    """Verify a merged image (starts at the bootloader offset) or a flash dump (starts at 0).

    ``path_or_bytes`` is a file, a pack output folder, or the bytes themselves.
    Problems are collected in the report; only an unreadable input raises.
    """
    folder = None
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        source = "<bytes>"
    else:
        folder = Path(path_or_bytes)
        file, hints = resolve_input(path_or_bytes)
        if chip is None and hints.get("chip"):
            chip = hints["chip"]
        data = read_input(file, "flash image")
        source = os.fspath(file)
    target = get_chip(chip) if chip is not None else None
    report = boot_report(source, data, target, table_offset, keys, elf)
    if folder is not None and folder.is_dir() and report.chip is not None:
        report.checks += check_pack_folder(folder, data, report.base)
    return report


def boot_report(source: str, data: bytes, chip: Chip | None, table_offset: int = DEFAULT_TABLE_OFFSET, keys=(), elf=None) -> VerifyReport:
    """The report of every step, in the order the chip boots; a step whose input is missing ends it."""
    report = VerifyReport(source=source)
    where = locate(data, chip)
    report.checks += where.checks
    if where.chip is None:
        return report
    chip = where.chip
    report.chip, report.base, report.kind = chip.name, where.base, where.kind
    boot = check_bootloader(FlashView(data, where.base), chip, table_offset)
    report.checks += boot.checks
    report.bootloader_size, report.flash_size = boot.size, boot.flash_size
    report.bootloader_build = boot.loader.as_dict() if boot.loader is not None else None
    view = FlashView(data, where.base, boot.flash_bytes)
    table, checks = check_table(view, chip, table_offset)
    report.checks += checks
    if table is None:
        return report
    report.table = list(table.partitions)
    plan, checks = pick_boot_partition(view, table)
    report.checks += checks
    if plan is not None:
        part = plan.partition
        report.boot_partition, report.boot_partition_offset, report.boot_partition_size = part.name, part.offset, part.size
        report.boot_reason = plan.choice.reason
        app, checks = check_app_partition(view, chip, part, plan.order[1:], boot, keys)
        report.checks += checks
        report.app_size = app.length if app is not None else None
        if app is not None and elf is not None:
            report.checks += check_elf(view, chip, app, elf, part.offset)
    report.checks += check_data_partitions(view, table)
    return report


# --------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class FlashView:
    """The file as the flash it stands for, read-only: ``base`` is the flash address of its first byte,
    ``flash_bytes`` the flash size once the bootloader header gives it."""

    data: bytes
    base: int = 0
    flash_bytes: int | None = None

    def read(self, addr: int, length: int) -> bytes:
        start = addr - self.base
        if start < 0:
            return b""
        return self.data[start : start + length]

    def read_mapped(self, addr: int, length: int) -> bytes:
        """Flash as the MMU reads it: past the end of a merged image lies flash it never wrote (erased)."""
        data = self.read(addr, length)
        if self.flash_bytes is not None and addr + length > self.flash_bytes:
            return data
        return data + ERASED * (length - len(data))

    def available(self, addr: int) -> int:
        return max(0, len(self.data) - (addr - self.base))


def _fail(part: str, message: str) -> Check:
    return Check(part, False, message)


class Location(NamedTuple):
    """Where the file sits in flash and which chip it is for (``chip`` None: not found, ``checks`` say why)."""

    chip: Chip | None
    base: int = 0
    kind: str = "merged image"
    checks: tuple[Check, ...] = ()


def locate(data: bytes, chip: Chip | None) -> Location:
    """Decide where the file sits in flash and which chip it is for."""
    if not data:
        return Location(None, checks=(_fail("image", "the file is empty"),))
    if chip is not None:
        return _locate_for(data, chip)
    found = _chip_at(data, 0)
    if found is not None:
        base = found.bootloader_offset
        return Location(found, base, "merged image" if base else "merged image / flash dump")
    for off in BOOTLOADER_OFFSETS:
        candidate = _chip_at(data, off)
        if candidate is not None and candidate.bootloader_offset == off:
            return Location(candidate, 0, "flash dump")
    offsets = ", ".join(f"0x{off:x}" for off in BOOTLOADER_OFFSETS)
    return Location(None, checks=(_fail(
        "bootloader",
        f"no ESP image (magic 0x{IMAGE_MAGIC:02X}) at the start of the file or at a bootloader offset "
        f"({offsets}); pass --chip, or check this is a merged image or flash dump",
    ),))  # fmt: skip


def _locate_for(data: bytes, chip: Chip) -> Location:
    """Where a file for ``chip`` sits: its image at the start (a merged image) or at the bootloader offset (a dump)."""
    off = chip.bootloader_offset
    if data[0] == IMAGE_MAGIC:
        return Location(chip, off, "merged image" if off else "merged image / flash dump")
    if off and len(data) > off and data[off] == IMAGE_MAGIC:
        return Location(chip, 0, "flash dump")
    return Location(None, checks=(_fail(
        "bootloader",
        f"no ESP image (magic 0x{IMAGE_MAGIC:02X}) at the start of the file"
        + (f" or at {chip.name}'s bootloader offset 0x{off:x}" if off else "")
        + f" (found 0x{data[0]:02X}); is this a merged image or flash dump for {chip.name}?",
    ),))  # fmt: skip


def _chip_at(data: bytes, off: int) -> Chip | None:
    end = off + HEADER_LEN + EXTENDED_HEADER_LEN
    if len(data) < end or data[off] != IMAGE_MAGIC:
        return None
    return chip_by_image_id(ExtendedHeader.parse(bytes(data[off + HEADER_LEN : end])).chip_id)


class BootloaderFound(NamedTuple):
    """What the bootloader step found: its checks, and what the later steps judge by."""

    checks: tuple[Check, ...]
    ok: bool
    size: int | None = None
    loader: LoaderBuild | None = None  # the loader rules of the bootloader found
    flash_size: str | None = None
    flash_bytes: int | None = None
    revisions: tuple[int, int] | None = None


def check_bootloader(view: FlashView, chip: Chip, table_offset: int) -> BootloaderFound:
    off = chip.bootloader_offset
    try:
        parsed = parse_image(view.read(off, table_offset - off), what="bootloader")
    except ImgtoolError as exc:
        return BootloaderFound((_fail("bootloader", f"at 0x{off:x}: {exc.message}"),), False)
    img = parsed.image
    loader = loader_build(chip, parsed)
    checks = [*_chip_id("bootloader", img, chip), *_integrity("bootloader", parsed), *_revisions("bootloader", img)]
    flash_size = flash_bytes = None
    if img.flash_size_code in FLASH_SIZES.values():
        flash_size = flash_size_name(img.flash_size_code)
        flash_bytes = flash_size_bytes(flash_size)
    else:
        checks.append(_fail("bootloader", f"header has unknown flash size code 0x{img.flash_size_code:x}"))
    if img.flash_mode not in FLASH_MODES.values():
        checks.append(_fail("bootloader", f"header has unknown flash mode {img.flash_mode}"))
    ok = not checks  # each check above is a problem
    if ok:
        checks.append(Check("bootloader", True, f"{parsed.length} bytes at 0x{off:x}, {integrity_checked(parsed)}; {loader.label}"))
    revisions = (img.min_chip_rev_full, img.max_chip_rev_full)
    return BootloaderFound(tuple(checks), ok, parsed.length, loader, flash_size, flash_bytes, revisions)


def integrity_checked(parsed) -> str:
    """What an image's integrity check covered: its checksum, and its appended SHA-256 only when it has one."""
    return "checksum and SHA-256 valid" if parsed.stored_sha256 is not None else "checksum valid (no appended SHA-256)"


def _integrity(part: str, parsed) -> list[Check]:
    checks = []
    if not parsed.checksum_valid:
        checks.append(_fail(part, f"checksum mismatch (stored 0x{parsed.stored_checksum:02x}, computed 0x{parsed.computed_checksum:02x})"))
    if parsed.hash_valid is False:
        checks.append(_fail(part, "appended SHA-256 does not match its contents"))
    return checks


def _revisions(part: str, img) -> list[Check]:
    if img.min_chip_rev_full > img.max_chip_rev_full:
        low, high = revision_name(img.min_chip_rev_full), revision_name(img.max_chip_rev_full)
        return [_fail(part, f"minimum chip revision {low} is above the maximum {high}")]
    return []


def _chip_id(part: str, img, chip: Chip) -> list[Check]:
    if img.chip_id == chip.image_chip_id:
        return []
    other = chip_by_image_id(img.chip_id)
    return [_fail(part, f"is built for {other.name if other else f'chip id 0x{img.chip_id:04x}'}, not {chip.name}")]


def check_table(view: FlashView, chip: Chip, off: int) -> tuple[PartitionTable | None, list[Check]]:
    """Parse the table with the same declaration and ESP-IDF rules that compile it."""
    label = "partition table"
    raw = view.read(off, TABLE_MAX_LEN)
    if len(raw) < ENTRY_SIZE:
        return None, [_fail(label, f"the file ends before the partition table at 0x{off:x}")]
    try:
        table = PartitionTable.from_binary(
            raw,
            source=f"partition table at 0x{off:x}",
            table_offset=off,
            bootloader_offset=chip.bootloader_offset,
            flash_size=view.flash_bytes,
        )
    except PartitionError as exc:
        return None, [_fail(label, str(exc).removeprefix(f"partition table at 0x{off:x}: "))]
    md5_at = len(table.partitions) * ENTRY_SIZE
    if not table.partitions:
        return None, [_fail(label, f"no partition table at 0x{off:x} (found 0x{raw[0]:02X}{raw[1]:02X}, expected 0x{ENTRY_MAGIC.hex().upper()})")]
    if raw[md5_at : md5_at + len(MD5_MAGIC)] != MD5_MAGIC:
        return None, [_fail(label, "has no MD5 entry; the bootloader refuses tables without one")]
    return table, [Check(label, True, f"{len(table.partitions)} partitions at 0x{off:x}, MD5 valid")]


def pick_boot_partition(view: FlashView, table: PartitionTable) -> tuple[BootPlan | None, list[Check]]:
    """The partitions the bootloader tries, by ``imgtool.partitions.otadata``'s model of its rules (each names its ESP-IDF function)."""
    raw = None
    if table.otadata is not None:
        raw = view.read(table.otadata.offset, OTADATA_SIZE)  # past the end of a merged image: never written, reads as erased
    plan = boot_plan(table, raw)
    chosen = plan.partition
    if chosen is None:
        return None, [_fail("partition table", "has no app partition to boot")]
    part = "otadata" if table.otadata is not None else "partition table"
    return plan, [Check(part, True, f"the bootloader starts '{chosen.name}' at 0x{chosen.offset:x}: {plan.choice.reason}")]


def fallback_text(view: FlashView, fallbacks) -> str:
    """What ``bootloader_utility_load_boot_image`` does when the selected partition holds no loadable app."""
    for part in fallbacks:
        try:
            parsed = parse_image(view.read(part.offset, part.size), what="app image")
        except ImgtoolError:
            continue
        if parsed.valid:
            return f"the bootloader falls back to '{part.name}' at 0x{part.offset:x} and starts that app instead (bootloader_utility_load_boot_image)"
    return "no other app partition holds an app either, so the bootloader resets and tries again forever (bootloader_utility_load_boot_image)"


def check_app_partition(view: FlashView, chip: Chip, part: Partition, fallbacks, boot: BootloaderFound, keys=()):
    """The app as the bootloader loads it: every rule of ``boot_rules``, each naming its ESP-IDF step; and the
    signatures, which must include one by each of ``keys`` (Secure Boot V2). Gives the parsed app (None: none) and the checks."""
    label = f"app ('{part.name}' at 0x{part.offset:x})"
    if view.available(part.offset) <= 0:
        return None, [_fail(label, f"the file ends before the app partition: nothing to boot; {fallback_text(view, fallbacks)}")]
    try:
        parsed = parse_image(view.read(part.offset, part.size), what="app image")
    except ImgtoolError as exc:
        return None, [_fail(label, f"{exc.message}; {fallback_text(view, fallbacks)}")]
    generation = boot.loader.generation if boot.loader is not None else DEFAULT_GENERATION
    findings = check_app(chip, parsed, BootContext(part.offset, part.size, boot.revisions, generation))
    checks = []
    for finding in findings:
        if finding.rule == REVISION_RULE and not finding.fatal:  # an overlap: said as what it means (revision_reach)
            boot_lo = locked_out_below((parsed.image.min_chip_rev_full, parsed.image.max_chip_rev_full), boot.revisions)
            if boot_lo is not None:
                checks.append(Check(label, True, f"{locked_out_text(chip.name, boot_lo)} ({REVISION_RULE})"))
            continue
        checks.append(Check(label, not finding.fatal, str(finding), not finding.fatal))
    signatures = [Check(label, good, message) for good, message in signature_checks(view.read(part.offset, part.size), parsed.length, keys)]
    checks += signatures
    if all(c.ok for c in signatures) and not any(f.fatal for f in findings):
        checks.append(Check(
            label,
            True,
            f"{parsed.length} of {part.size} bytes, {integrity_checked(parsed)}, segments load and map as the "
            f"{chip.name} bootloader requires ({generation.name} loader rules)",
        ))  # fmt: skip
    return parsed, checks


def check_data_partitions(view: FlashView, table: PartitionTable) -> list[Check]:
    """What each written data partition holds (NVS page headers checked); erased ones and otadata say nothing."""
    checks = []
    for part in table.partitions:
        if part.type != TYPE_DATA or part.subtype == SUBTYPE_DATA_OTA or view.available(part.offset) <= 0:
            continue
        found = describe_contents(part, view.read(part.offset, part.size))
        if found is not None:
            plausible, message = found
            checks.append(Check(f"data ('{part.name}' at 0x{part.offset:x})", True, message, not plausible))
    return checks


def check_elf(view: FlashView, chip: Chip, parsed, elf_path, flash_offset: int) -> list[Check]:
    """Every allocated ELF section as the CPU reads it when the app starts (``boot_rules.CpuView``): flash
    through the MMU table ``set_cache_and_start_app`` leaves, RAM as loaded; not the segments' own bytes."""
    try:
        info = read_elf(elf_path)
        contents = info.read_all()
    except ImgtoolError as exc:
        return [_fail("elf", exc.message)]
    segments = [s.segment for s in parsed.segments]
    desc = info.find_app_descriptor(contents)
    cpu = CpuView(chip, parsed, view.read_mapped, flash_offset)
    problems = elf_mismatches(segments, info, app_desc_addr=desc.addr if desc else None, contents=contents, memory=cpu)
    if desc is not None:
        stored = LoadedMemory(segments).read(desc.addr + APP_DESC_ELF_SHA256_OFFSET, SHA256_LEN)
        if stored is not None and stored != b"\x00" * SHA256_LEN and stored != info.sha256():
            problems.append(f"the app descriptor in {desc.name} records another ELF's SHA-256 (built from a different ELF?)")
    if problems:
        return [_fail("elf", problem) for problem in problems]
    return [Check(
        "elf",
        True,
        f"all {len(contents)} loadable sections of {Path(elf_path).name} read intact as the CPU sees them "
        "(flash through the MMU as the bootloader maps it, RAM as it loads it)",
    )]  # fmt: skip


# --------------------------------------------------------------------------- the pack folder


def check_pack_folder(folder: Path, merged: bytes, base: int) -> list[Check]:
    """The part files, ``SHA256SUMS`` and argument files of a pack folder say what the merged image holds.

    The merged image (its first byte at flash address ``base``) was verified as the chip boots it; every part
    file must be the same bytes at the offset ``flasher_args.json`` and ``flash_args`` give it, so flashing
    parts writes what was verified.
    """
    label = "pack folder"
    try:
        files = flash_files(read_pack_json(folder))
    except (ImgtoolError, ValueError, KeyError, TypeError, AttributeError):
        return [_fail(label, f"{FLASHER_ARGS_JSON_FILE} is missing or has no readable flash_files; re-run imgtool pack")]
    problems = [*_part_files(folder, files, merged, base), *_args_agree(folder, files), *_sums_match(folder)]
    if problems:
        return [_fail(label, message) for message in problems]
    return [Check(label, True, f"{len(files)} part files match the merged image at their offsets; argument files and SHA256SUMS agree")]


def _part_files(folder: Path, files: dict[int, str], merged: bytes, base: int) -> list[str]:
    """Each part file named in ``flasher_args.json`` is the merged image's bytes at its offset."""
    problems = []
    for offset, name in sorted(files.items()):
        try:
            part = file_in(folder, name, FLASHER_ARGS_JSON_FILE)
        except ImgtoolError as exc:
            problems.append(exc.message)
            continue
        if not part.is_file():
            problems.append(f"{name} (0x{offset:x} in {FLASHER_ARGS_JSON_FILE}) is missing")
            continue
        data = part.read_bytes()
        start = offset - base
        if start < 0 or bytes(merged[start : start + len(data)]) != data:
            problems.append(f"{name} differs from the merged image at 0x{offset:x}: changed after packing? re-run imgtool pack")
    return problems


def _args_agree(folder: Path, files: dict[int, str]) -> list[str]:
    """``flash_args`` lists the files and offsets ``flasher_args.json`` does."""
    args = folder / FLASH_ARGS_FILE
    if not args.is_file():
        return []
    try:
        listed = {offset: path.name for offset, path in parse_args_file(args)[1]}
    except ImgtoolError as exc:
        return [exc.message]
    if listed != files:
        return [f"{FLASH_ARGS_FILE} and {FLASHER_ARGS_JSON_FILE} list different files or offsets"]
    return []


def _sums_match(folder: Path) -> list[str]:
    """Every file ``SHA256SUMS`` lists is in the folder with that digest."""
    sums = folder / SHA256SUMS_FILE
    if not sums.is_file():
        return []
    problems = []
    for name, digest in parse_sha256sums(sums.read_text(encoding="utf-8")).items():
        try:
            target = file_in(folder, name, SHA256SUMS_FILE)
        except ImgtoolError as exc:
            problems.append(exc.message)
            continue
        if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            problems.append(f"{name} does not match its SHA256SUMS entry")
    return problems


__all__ = ["Check", "FlashView", "VerifyReport", "boot_report", "check_pack_folder", "resolve_input", "verify"]
