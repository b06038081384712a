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
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgtool.chips.table import (
    CHIPS,
    FLASH_SIZES,
    Chip,
    chip_by_image_id,
    flash_size_name,
    get_chip,
    revision_name,
)
from imgtool.errors import ImageError, ImgtoolError, InputError, PartitionError
from imgtool.flash.outputs import parse_sha256sums as _sha256sums
from imgtool.output_names import FLASH_ARGS_FILE, FLASHER_ARGS_JSON_FILE, MERGED_SUFFIX, SHA256SUMS_FILE
from imgtool.partitions.table import (
    DEFAULT_TABLE_OFFSET,
    ENTRY_SIZE,
    MD5_MAGIC,
    OTADATA_SIZE,
    TABLE_MAX_LEN,
    Partition,
    PartitionTable,
)


@dataclass(frozen=True)
class Check:
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

    def add(self, part: str, ok: bool, message: str, *, warning: bool = False) -> bool:
        self.checks.append(Check(part, ok, message, warning))
        return ok

    def fail(self, part: str, message: str) -> None:
        self.add(part, False, message)

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
    import json

    p = Path(path)
    if not p.is_dir():
        return p, {}
    hints: dict = {}
    merged = None
    meta = p / FLASHER_ARGS_JSON_FILE
    if meta.is_file():
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
            hints["chip"] = doc.get("extra_esptool_args", {}).get("chip")
            entry = doc.get("merged") or {}
            if entry.get("file"):
                from imgtool.flash.pack_folder import file_in

                merged = file_in(p, entry["file"], FLASHER_ARGS_JSON_FILE)
        except (ValueError, OSError, AttributeError, RecursionError, ImgtoolError):
            pass
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


# --------------------------------------------------------------------------- the verifier


def verify(path_or_bytes, *, chip: str | Chip | None = None, elf=None, table_offset: int = DEFAULT_TABLE_OFFSET, keys=()) -> VerifyReport:
    """Verify a merged image (starts at the bootloader offset) or a flash dump (starts at 0).

    ``path_or_bytes`` is a file, a pack output folder, or the bytes themselves.
    Problems are collected in the report; only an unreadable input raises.
    """
    from imgtool.atomic import read_input

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        source = "<bytes>"
    else:
        file, hints = resolve_input(path_or_bytes)
        if chip is None and hints.get("chip"):
            chip = hints["chip"]
        data = read_input(file, "flash image")
        source = os.fspath(file)
    target = get_chip(chip) if chip is not None else None
    report = VerifyReport(source=source)
    _Verifier(report, data, target, table_offset, keys).run(elf)
    folder = Path(path_or_bytes) if not isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else None
    if folder is not None and folder.is_dir() and report.chip is not None:
        check_pack_folder(report, folder, data)
    return report


def check_pack_folder(report: VerifyReport, folder: Path, merged: bytes) -> None:
    """The part files, ``SHA256SUMS`` and argument files of a pack folder say what the merged image holds.

    The merged image was verified as the chip boots it; every part file must be the same bytes at the
    offset ``flasher_args.json`` and ``flash_args`` give it, so flashing parts writes what was verified.
    """
    import json
    import shlex

    label = "pack folder"
    try:
        doc = json.loads((folder / FLASHER_ARGS_JSON_FILE).read_text(encoding="utf-8"))
        files = {int(off, 16): name for off, name in doc["flash_files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        report.fail(label, f"{FLASHER_ARGS_JSON_FILE} is missing or has no readable flash_files; re-run imgtool pack")
        return
    from imgtool.flash.pack_folder import file_in

    ok = True
    for offset, name in sorted(files.items()):
        try:
            part = file_in(folder, name, FLASHER_ARGS_JSON_FILE)
        except ImgtoolError as exc:
            ok = report.add(label, False, exc.message)
            continue
        if not part.is_file():
            ok = report.add(label, False, f"{name} (0x{offset:x} in {FLASHER_ARGS_JSON_FILE}) is missing")
            continue
        data = part.read_bytes()
        start = offset - report.base
        if start < 0 or bytes(merged[start : start + len(data)]) != data:
            ok = report.add(
                label, False, f"{name} differs from the merged image at 0x{offset:x}: changed after packing? re-run imgtool pack"
            )
    args = folder / FLASH_ARGS_FILE
    if args.is_file():
        lines = [shlex.split(line) for line in args.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
        listed = {int(words[0], 16): words[1] for words in lines if len(words) == 2}
        if listed != files:
            ok = report.add(label, False, f"{FLASH_ARGS_FILE} and {FLASHER_ARGS_JSON_FILE} list different files or offsets")
    sums = folder / SHA256SUMS_FILE
    if sums.is_file():
        for name, digest in _sha256sums(sums.read_text(encoding="utf-8")).items():
            try:
                target = file_in(folder, name, SHA256SUMS_FILE)
            except ImgtoolError as exc:
                ok = report.add(label, False, exc.message)
                continue
            if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
                ok = report.add(label, False, f"{name} does not match its SHA256SUMS entry")
    if ok:
        report.add(label, True, f"{len(files)} part files match the merged image at their offsets; argument files and SHA256SUMS agree")


def integrity_checked(parsed) -> str:
    """What an image's integrity check covered: its checksum, and its appended SHA-256 only when it has one."""
    return "checksum and SHA-256 valid" if parsed.stored_sha256 is not None else "checksum valid (no appended SHA-256)"


class _Verifier:
    def __init__(self, report: VerifyReport, data: bytes, chip: Chip | None, table_offset: int, keys=()):
        self.keys = list(keys)  # Secure Boot V2 keys the app's signatures must include
        self.r = report
        self.data = data
        self.chip = chip
        self.table_offset = table_offset
        self.flash_bytes: int | None = None
        self.bootloader_revs: tuple[int, int] | None = None
        self.loader = None  # loader_generations.LoaderBuild of the bootloader found
        self.fallbacks: tuple = ()  # app partitions the bootloader tries after the selected one

    # flash access ------------------------------------------------------
    def read(self, addr: int, length: int) -> bytes:
        start = addr - self.r.base
        if start < 0:
            return b""
        return self.data[start : start + length]

    def read_mapped(self, addr: int, length: int) -> bytes:
        """Flash as the MMU reads it: past the end of a merged image lies flash it never wrote (erased)."""
        from imgtool.chips.table import ERASED

        data = self.read(addr, length)
        if self.flash_bytes is not None and addr + length > self.flash_bytes:
            return data
        return data + ERASED * (length - len(data))

    def available(self, addr: int) -> int:
        return max(0, len(self.data) - (addr - self.r.base))

    # steps --------------------------------------------------------------
    def run(self, elf) -> None:
        if not self.locate():
            return
        boot_ok = self.check_bootloader()
        table = self.check_table()
        if table is None:
            return
        part = self.pick_boot_partition(table)
        if part is not None:
            app = self.check_app(part, boot_ok)
            if app is not None and elf is not None:
                self.check_elf(app, elf, part.offset)
        self.check_data_partitions(table)

    def locate(self) -> bool:
        """Decide where the file sits in flash and which chip it is for."""
        r, data = self.r, self.data
        if not data:
            r.fail("image", "the file is empty")
            return False
        chip = self.chip
        if chip is None:
            chip = self._chip_at(0)
            if chip is None:
                for off in sorted({c.bootloader_offset for c in CHIPS.values()} - {0}):
                    candidate = self._chip_at(off)
                    if candidate is not None and candidate.bootloader_offset == off:
                        chip, r.base, r.kind = candidate, 0, "flash dump"
                        break
            else:
                r.base = chip.bootloader_offset
                r.kind = "merged image" if r.base else "merged image / flash dump"
            if chip is None:
                r.fail(
                    "bootloader",
                    "no ESP image (magic 0xE9) at the start of the file or at a bootloader offset "
                    "(0x1000, 0x2000); pass --chip, or check this is a merged image or flash dump",
                )
                return False
        else:
            off = chip.bootloader_offset
            if data[0] == 0xE9:
                r.base = off
                r.kind = "merged image" if off else "merged image / flash dump"
            elif off and len(data) > off and data[off] == 0xE9:
                r.base, r.kind = 0, "flash dump"
            else:
                r.fail(
                    "bootloader",
                    "no ESP image (magic 0xE9) at the start of the file"
                    + (f" or at {chip.name}'s bootloader offset 0x{off:x}" if off else "")
                    + f" (found 0x{data[0]:02X}); is this a merged image or flash dump for {chip.name}?",
                )
                return False
        self.chip = chip
        r.chip = chip.name
        return True

    def _chip_at(self, off: int) -> Chip | None:
        from imgtool.image.format import (
            EXTENDED_HEADER_LEN,
            HEADER_LEN,
            IMAGE_MAGIC,
            ExtendedHeader,
        )

        end = off + HEADER_LEN + EXTENDED_HEADER_LEN
        if len(self.data) < end or self.data[off] != IMAGE_MAGIC:
            return None
        return chip_by_image_id(ExtendedHeader.parse(bytes(self.data[off + HEADER_LEN : end])).chip_id)

    def check_bootloader(self) -> bool:
        from imgtool.image.format import parse_image

        r, chip = self.r, self.chip
        off = chip.bootloader_offset
        try:
            parsed = parse_image(self.read(off, self.table_offset - off), what="bootloader")
        except ImgtoolError as exc:
            r.fail("bootloader", f"at 0x{off:x}: {exc.message}")
            return False
        from imgtool.image.loader_generations import loader_build

        img = parsed.image
        r.bootloader_size = parsed.length
        self.loader = loader_build(chip, parsed)
        r.bootloader_build = self.loader.as_dict()
        ok = True
        ok &= self._chip_id("bootloader", img)
        ok &= self._integrity("bootloader", parsed)
        ok &= self._revisions("bootloader", img)
        self.bootloader_revs = (img.min_chip_rev_full, img.max_chip_rev_full)
        size_code = img.flash_size_code
        if size_code in FLASH_SIZES.values():
            r.flash_size = flash_size_name(size_code)
            from imgtool.chips.table import flash_size_bytes

            self.flash_bytes = flash_size_bytes(r.flash_size)
        else:
            ok &= r.add("bootloader", False, f"header has unknown flash size code 0x{size_code:x}")
        if img.flash_mode > 3:
            ok &= r.add("bootloader", False, f"header has unknown flash mode {img.flash_mode}")
        if ok:
            r.add("bootloader", True, f"{parsed.length} bytes at 0x{off:x}, {integrity_checked(parsed)}; {self.loader.label}")
        return ok

    def _integrity(self, part: str, parsed) -> bool:
        ok = True
        if not parsed.checksum_valid:
            ok = self.r.add(
                part, False, f"checksum mismatch (stored 0x{parsed.stored_checksum:02x}, computed 0x{parsed.computed_checksum:02x})"
            )
        if parsed.hash_valid is False:
            ok = self.r.add(part, False, "appended SHA-256 does not match its contents")
        return ok

    def _revisions(self, part: str, img) -> bool:
        if img.min_chip_rev_full > img.max_chip_rev_full:
            return self.r.add(
                part,
                False,
                f"minimum chip revision {revision_name(img.min_chip_rev_full)} is above the maximum {revision_name(img.max_chip_rev_full)}",
            )
        return True

    def _chip_id(self, part: str, img) -> bool:
        if img.chip_id == self.chip.image_chip_id:
            return True
        other = chip_by_image_id(img.chip_id)
        return self.r.add(part, False, f"is built for {other.name if other else f'chip id 0x{img.chip_id:04x}'}, not {self.chip.name}")

    def check_table(self) -> PartitionTable | None:
        """Parse the table with the same declaration and ESP-IDF rules that compile it."""
        r, off = self.r, self.table_offset
        raw = self.read(off, TABLE_MAX_LEN)
        if len(raw) < ENTRY_SIZE:
            r.fail("partition table", f"the file ends before the partition table at 0x{off:x}")
            return None
        try:
            table = PartitionTable.from_binary(
                raw,
                source=f"partition table at 0x{off:x}",
                table_offset=off,
                bootloader_offset=self.chip.bootloader_offset,
                flash_size=self.flash_bytes,
            )
        except PartitionError as exc:
            r.fail("partition table", str(exc).removeprefix(f"partition table at 0x{off:x}: "))
            return None
        md5_at = len(table.partitions) * ENTRY_SIZE
        if not table.partitions:
            r.fail("partition table", f"no partition table at 0x{off:x} (found 0x{raw[0]:02X}{raw[1]:02X}, expected 0xAA50)")
            return None
        if raw[md5_at : md5_at + len(MD5_MAGIC)] != MD5_MAGIC:
            r.fail("partition table", "has no MD5 entry; the bootloader refuses tables without one")
            return None
        r.table = list(table.partitions)
        r.add("partition table", True, f"{len(table.partitions)} partitions at 0x{off:x}, MD5 valid")
        return table

    def pick_boot_partition(self, table: PartitionTable) -> Partition | None:
        """The partition the bootloader starts, by ``imgtool.partitions.otadata``'s model of its rules (each names its ESP-IDF function)."""
        from imgtool.partitions.otadata import boot_plan

        r = self.r
        raw = None
        if table.otadata is not None:
            raw = self.read(table.otadata.offset, OTADATA_SIZE)  # past the end of a merged image: never written, reads as erased
        plan = boot_plan(table, raw)
        chosen = plan.partition
        if chosen is None:
            r.fail("partition table", "has no app partition to boot")
            return None
        part = "otadata" if table.otadata is not None else "partition table"
        r.add(part, True, f"the bootloader starts '{chosen.name}' at 0x{chosen.offset:x}: {plan.choice.reason}")
        self.fallbacks = plan.order[1:]
        r.boot_partition = chosen.name
        r.boot_partition_offset = chosen.offset
        r.boot_partition_size = chosen.size
        r.boot_reason = plan.choice.reason
        return chosen

    def fallback_text(self) -> str:
        """What ``bootloader_utility_load_boot_image`` does when the selected partition holds no loadable app."""
        from imgtool.image.format import parse_image

        for part in self.fallbacks:
            try:
                parsed = parse_image(self.read(part.offset, part.size), what="app image")
            except ImgtoolError:
                continue
            if parsed.valid:
                return f"the bootloader falls back to '{part.name}' at 0x{part.offset:x} and starts that app instead (bootloader_utility_load_boot_image)"
        return "no other app partition holds an app either, so the bootloader resets and tries again forever (bootloader_utility_load_boot_image)"

    def check_app(self, part: Partition, boot_ok: bool):
        """The app as the bootloader loads it: every rule of ``boot_rules``, each naming its ESP-IDF step."""
        from imgtool.bootloader.revision_reach import REVISION_RULE, locked_out_below, locked_out_text
        from imgtool.image.boot_rules import BootContext, check_app
        from imgtool.image.format import parse_image

        r, chip = self.r, self.chip
        label = f"app ('{part.name}' at 0x{part.offset:x})"
        if self.available(part.offset) <= 0:
            r.fail(label, f"the file ends before the app partition: nothing to boot; {self.fallback_text()}")
            return None
        try:
            parsed = parse_image(self.read(part.offset, part.size), what="app image")
        except ImgtoolError as exc:
            r.fail(label, f"{exc.message}; {self.fallback_text()}")
            return None
        r.app_size = parsed.length
        from imgtool.image.loader_generations import DEFAULT_GENERATION

        generation = self.loader.generation if self.loader is not None else DEFAULT_GENERATION
        context = BootContext(part.offset, part.size, self.bootloader_revs, generation)
        findings = check_app(chip, parsed, context)
        for finding in findings:
            if finding.rule == REVISION_RULE and not finding.fatal:  # an overlap: said as what it means (revision_reach)
                boot_lo = locked_out_below((parsed.image.min_chip_rev_full, parsed.image.max_chip_rev_full), self.bootloader_revs)
                if boot_lo is not None:
                    r.add(label, True, f"{locked_out_text(chip.name, boot_lo)} ({REVISION_RULE})")
                continue
            r.add(label, not finding.fatal, str(finding), warning=not finding.fatal)
        from imgtool.security.signing import signature_checks

        signed_ok = True
        for good, message in signature_checks(self.read(part.offset, part.size), parsed.length, self.keys):
            signed_ok &= r.add(label, good, message)
        if signed_ok and not any(f.fatal for f in findings):
            r.add(
                label,
                True,
                f"{parsed.length} of {part.size} bytes, {integrity_checked(parsed)}, segments load and map as the "
                f"{chip.name} bootloader requires ({generation.name} loader rules)",
            )
        return parsed

    def check_data_partitions(self, table: PartitionTable) -> None:
        """What each written data partition holds (NVS page headers checked); erased ones and otadata say nothing."""
        from imgtool.partitions.data_images import describe_contents
        from imgtool.partitions.table import SUBTYPE_DATA_OTA, TYPE_DATA

        for part in table.partitions:
            if part.type != TYPE_DATA or part.subtype == SUBTYPE_DATA_OTA or self.available(part.offset) <= 0:
                continue
            found = describe_contents(part, self.read(part.offset, part.size))
            if found is not None:
                plausible, message = found
                self.r.add(f"data ('{part.name}' at 0x{part.offset:x})", True, message, warning=not plausible)

    def check_elf(self, parsed, elf_path, flash_offset: int) -> None:
        """Every allocated ELF section as the CPU reads it when the app starts (``boot_rules.CpuView``): flash
        through the MMU table ``set_cache_and_start_app`` leaves, RAM as loaded; not the segments' own bytes."""
        from imgtool.elf.reader import read_elf
        from imgtool.image.boot_rules import CpuView
        from imgtool.image.format import APP_DESC_ELF_SHA256_OFFSET, SHA256_LEN
        from imgtool.image.memory import LoadedMemory, elf_mismatches

        r = self.r
        try:
            info = read_elf(elf_path)
            contents = info.read_all()
        except ImgtoolError as exc:
            r.fail("elf", exc.message)
            return
        segments = [s.segment for s in parsed.segments]
        desc = info.find_app_descriptor(contents)
        cpu = CpuView(self.chip, parsed, self.read_mapped, flash_offset)
        problems = elf_mismatches(segments, info, app_desc_addr=desc.addr if desc else None, contents=contents, memory=cpu)
        if desc is not None:
            stored = LoadedMemory(segments).read(desc.addr + APP_DESC_ELF_SHA256_OFFSET, SHA256_LEN)
            if stored is not None and stored != b"\x00" * SHA256_LEN and stored != info.sha256():
                problems.append(f"the app descriptor in {desc.name} records another ELF's SHA-256 (built from a different ELF?)")
        for problem in problems:
            r.fail("elf", problem)
        if not problems:
            r.add(
                "elf",
                True,
                f"all {len(contents)} loadable sections of {Path(elf_path).name} read intact as the CPU sees them "
                "(flash through the MMU as the bootloader maps it, RAM as it loads it)",
            )


__all__ = ["Check", "VerifyReport", "resolve_input", "verify"]
