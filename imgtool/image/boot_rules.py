"""A model of how ESP-IDF's second-stage bootloader (v5.5 and v6.1) loads and starts an app.

An image that ``esptool image-info`` calls valid can still be refused, or can abort, at boot. Each
rule here repeats one check of the bootloader's own source and names the function it comes from
(``esp_image_format.c``, ``bootloader_utility.c``, ``bootloader_common_loader.c``). ``verify``,
``info``, ``image`` and ``pack`` judge app images with :func:`check_app`; ``segments`` lays
images out so they pass it. :func:`boot_mmu_table` is the MMU as ``set_cache_and_start_app`` leaves
it, and :class:`CpuView` what the CPU then reads (``verify --elf`` compares the ELF with that). Chip
facts (address ranges, bus kind, page sizes, MMU windows, the bootloader's own RAM) come from ``chips``;
the loader generation (v5.5 or v6.1, see ``loader_generations``) comes from the bootloader actually
used, and picks the chip facts of that generation where they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from imgtool.chips.table import (
    ANY_REVISION_MAX,
    DEFAULT_MMU_PAGE_SIZE,
    BootloaderRam,
    Chip,
    Region,
    Span,
    chip_by_image_id,
    revision_name,
    revision_range,
)
from imgtool.image.format import (
    APP_DESC_EFUSE_BLK_OFFSET,
    APP_DESC_MAGIC,
    MAX_SEGMENTS,
    SEGMENT_ALIGN,
    EfuseBlkRevisions,
    ParsedImage,
    descriptor_page_size,
    parse_app_descriptor,
)
from imgtool.image.loader_generations import DEFAULT_GENERATION, GENERATIONS, Generation
from imgtool.image.memory import LoadedMemory

#: ``should_load``: segments loaded below this address are padding (0x0) or reserved, never copied.
RESERVED_ADDR_LIMIT = 0x1000_0000
#: ``verify_load_addresses``: bytes kept free below the bootloader's stack pointer.
STACK_LOAD_HEADROOM = 0x8000
#: SOC_ROM_STACK_SIZE: how far below SOC_ROM_STACK_START the bootloader's stack pointer can be.
ROM_STACK_SIZE = 0x2000
#: ``bootloader_common_check_*_validity``: a revision limit of 0 or 0xFFFF means "not set".
UNSET_REVISIONS = (0, ANY_REVISION_MAX)
#: ``bootloader_common_check_efuse_blk_validity`` compares with ``efuse_hal_blk_version()`` = major*100+minor, and
#: BLK_VERSION_MAJOR is a 2-bit eFuse field (espefuse's efuse_defs, e.g. esp32c3.yaml), so no chip's eFuse
#: block reports revision v4.0 or later: an image that requires one boots on no chip.
EFUSE_BLK_REV_UNREACHABLE = 400
#: ``unpack_load_app`` on chips with one shared flash bus.
SHARED_BUS_FLASH_SEGMENTS = 2
#: Load regions ``verify_load_addresses`` accepts without overlap checks (RTC memory, TCM).
_UNCHECKED_LOAD_REGIONS = (Region.RTC_IRAM, Region.RTC_DRAM, Region.RTC_DATA, Region.TCM)


class Finding(NamedTuple):
    """One way the bootloader would treat the image; ``fatal`` ones stop the app from running."""

    rule: str  # the ESP-IDF function that applies it
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.message} ({self.rule})"


class Mapping:
    """A flash-mapped segment: ``size`` bytes of flash at ``flash_addr`` appear at ``vaddr``.

    A plain class: every pack defines it, a NamedTuple costs ~0.2 ms there.
    """

    __slots__ = ("index", "vaddr", "flash_addr", "size")

    def __init__(self, index: int, vaddr: int, flash_addr: int, size: int):
        self.index = index
        self.vaddr = vaddr
        self.flash_addr = flash_addr
        self.size = size

    @property
    def delta(self) -> int:
        return self.flash_addr - self.vaddr

    def pages(self, page: int) -> range:
        return range(self.vaddr // page, (self.vaddr + max(self.size, 1) - 1) // page + 1)


# --------------------------------------------------------------------------- single facts


def mmu_page_size(chip: Chip, first_segment_data: bytes | None) -> int:
    """The MMU page the bootloader maps the app with (``verify_segment_header``).

    Chips with a configurable page take it from the app descriptor (log2; 0 means 64 KiB); the
    others always use 64 KiB, whatever the descriptor says.
    """
    if len(chip.mmu_page_sizes) == 1 or not first_segment_data:
        return DEFAULT_MMU_PAGE_SIZE
    desc = parse_app_descriptor(first_segment_data)
    return descriptor_page_size(desc.mmu_page_size if desc else 0) or DEFAULT_MMU_PAGE_SIZE


def should_load(chip: Chip, addr: int) -> bool:
    """Whether the bootloader copies a segment loaded at ``addr`` into RAM (``should_load``)."""
    return not chip.is_flash_mapped(addr) and addr >= RESERVED_ADDR_LIMIT


def flash_mappings(chip: Chip, parsed: ParsedImage, flash_offset: int = 0) -> list[Mapping]:
    """Segments ``unpack_load_app`` counts as flash-mapped, with where they sit in flash."""
    return [
        Mapping(i, ps.segment.addr, flash_offset + ps.data_offset, len(ps.segment.data))
        for i, ps in enumerate(parsed.segments)
        if chip.is_flash_mapped(ps.segment.addr)
    ]


def congruent(mapping: Mapping, page: int) -> bool:
    """A flash segment can be mapped only if its flash and load addresses agree modulo the MMU page."""
    return mapping.flash_addr % page == mapping.vaddr % page


def revisions_allowed(min_rev: int, max_rev: int) -> tuple[int, int | None]:
    """The chip revisions an image header allows, as ``(lowest, highest or None for any)``."""
    return min_rev, (None if max_rev in UNSET_REVISIONS else max_rev)


# --------------------------------------------------------------------------- load addresses


def _dram_to_iram(chip: Chip, addr: int) -> int:
    d = chip.boot.diram
    if d.inverted:
        return d.iram.start + (d.dram.end - addr) - SEGMENT_ALIGN
    return d.iram.start + (addr - d.dram.start)


def _iram_to_dram(chip: Chip, addr: int) -> int:
    d = chip.boot.diram
    if d.inverted:
        return d.dram.start + (d.iram.end - addr) - SEGMENT_ALIGN
    return d.dram.start + (addr - d.iram.start)


def _in(chip: Chip, region: Region, start: int, end: int) -> bool:
    return any(r.region is region and r.contains(start, end - start) for r in chip.boot.load)


def _alias(chip: Chip, start: int, end: int, own: Span, convert) -> tuple[int, int]:
    """The other view of the D/IRAM part of ``[start, end)``, clamped as the bootloader clamps it."""
    lo = convert(chip, start) if own.contains(start) else convert(chip, own.start)
    hi = convert(chip, end) if own.contains(end - 1) else convert(chip, own.end)
    return (hi, lo) if hi < lo else (lo, hi)


def load_address_problem(chip: Chip, ram: BootloaderRam, start: int, end: int) -> str | None:
    """Why copying ``[start, end)`` fails: refused by ``verify_load_addresses``, or missed by it and
    overwriting the bootloader while it runs. None when the copy is safe."""
    refused = _verify_load_addresses(chip, ram, start, end)
    if refused:
        return refused
    # On chips whose DRAM and IRAM share addresses the D/IRAM recursion lands in the DRAM branch
    # again, so the loader-code check never runs; the copy would overwrite the running loader.
    views = [(start, end)]
    if chip.boot.diram.dram.overlaps(start, end):
        views.append(_alias(chip, start, end, chip.boot.diram.dram, _dram_to_iram))
    if any(ram.loader_text.overlaps(lo, hi) for lo, hi in views):
        return "overwrites the bootloader's loader code while it runs (not caught by the bootloader here)"
    return None


def _verify_load_addresses(chip: Chip, ram: BootloaderRam, start: int, end: int, recurse: bool = True) -> str | None:
    """``verify_load_addresses``, branch for branch."""
    if end == start:
        return None
    if _in(chip, Region.DRAM, start, end):
        stack = Span(ram.rom_stack_start - ROM_STACK_SIZE - STACK_LOAD_HEADROOM, ram.rom_stack_start)
        if stack.overlaps(start, end):
            return "overlaps bootloader stack"
        return _verify_bus(chip, ram, start, end, recurse, (ram.data, "overlaps bootloader data"), chip.boot.diram.dram, _dram_to_iram)
    if _in(chip, Region.IRAM, start, end):
        return _verify_bus(chip, ram, start, end, recurse, (ram.loader_text, "overlaps loader IRAM"), chip.boot.diram.iram, _iram_to_dram)
    if any(_in(chip, region, start, end) for region in _UNCHECKED_LOAD_REGIONS):
        return None
    return "bad load address range"


def _verify_bus(chip: Chip, ram: BootloaderRam, start: int, end: int, recurse: bool, own, diram: Span, to_other) -> str | None:
    """One bus's branch of ``verify_load_addresses``: the bootloader's own ``(span, problem)`` there, then the
    same range seen through the other bus when it lies in memory both buses reach."""
    span, problem = own
    if span.overlaps(start, end):
        return problem
    if recurse and diram.overlaps(start, end):
        lo, hi = _alias(chip, start, end, diram, to_other)
        return _verify_load_addresses(chip, ram, lo, hi, recurse=False)
    return None


def bootloader_layouts(
    chip: Chip, min_rev: int, max_rev: int, generation: Generation = DEFAULT_GENERATION
) -> list[tuple[BootloaderRam, int | None]]:
    """The bootloader memory layouts (of loader ``generation``) for chips an app allows, each with the revision it stops at."""
    lo, hi = revisions_allowed(min_rev, max_rev)
    layouts = chip.boot.layouts(generation.name)
    out = []
    for ram, nxt in zip(layouts, [*layouts[1:], None]):
        until = nxt.min_rev if nxt else None
        if (until is None or lo < until) and (hi is None or hi >= ram.min_rev):
            out.append((ram, until))
    return out or [(chip.boot.ram_for(lo, generation.name), None)]


# --------------------------------------------------------------------------- the app


class BootContext(NamedTuple):
    """What the bootloader knows besides the image: where it sits, its slot, and the bootloader itself."""

    flash_offset: int = 0
    partition_size: int | None = None
    #: The bootloader's own header revision range; None when the image is judged alone.
    bootloader_revs: tuple[int, int] | None = None
    #: Whose rules apply: the generation of the bootloader in the image (``loader_generations.loader_build``).
    generation: Generation = DEFAULT_GENERATION


def check_app(chip: Chip, parsed: ParsedImage, context: BootContext = BootContext()) -> list[Finding]:
    """Every way the bootloader would refuse, abort or mis-map this app image, in boot order."""
    findings: list[Finding] = []
    first = parsed.segments[0].segment.data if parsed.segments else None
    page = mmu_page_size(chip, first)

    if context.partition_size is not None and context.partition_size > chip.boot.max_flash_span:
        findings.append(Finding("image_load", f"partition is larger than {chip.boot.max_flash_span >> 20} MB: refused"))
    findings += _header_findings(chip, parsed, context)
    findings += _descriptor_findings(chip, first, page)
    findings += efuse_blk_findings(chip, parsed)
    findings += _segment_findings(chip, parsed, context, page)
    if not parsed.checksum_valid:
        findings.append(
            Finding(
                "process_checksum",
                f"checksum mismatch (stored 0x{parsed.stored_checksum:02x}, computed 0x{parsed.computed_checksum:02x}): refused",
            )
        )
    if context.partition_size is not None and parsed.length > context.partition_size:
        findings.append(
            Finding(
                "process_appended_hash_and_sig",
                f"image is {parsed.length} bytes, more than its {context.partition_size}-byte partition: refused",
            )
        )
    if parsed.hash_valid is False:
        findings.append(Finding("verify_simple_hash", "appended SHA-256 does not match the image: refused as corrupt"))
    findings += _mapping_findings(chip, parsed, context, page)
    findings += mmu_findings(chip, parsed, context.flash_offset, page)
    findings += _entry_findings(chip, parsed, context)
    return findings


def check_app_for_any_loader(chip: Chip, parsed: ParsedImage, context: BootContext = BootContext()) -> list[Finding]:
    """:func:`check_app` for an app judged before (or without) its bootloader: under every modelled generation.

    A finding every generation makes is kept as it is; one that only some make becomes a warning naming
    them, since the bootloader that will start the app decides (``pack`` judges again with it).
    """
    per_generation = [check_app(chip, parsed, context._replace(generation=g)) for g in GENERATIONS]
    out: list[Finding] = []
    seen: set[Finding] = set()
    for findings in per_generation:
        for finding in findings:
            if finding in seen:
                continue
            seen.add(finding)
            made_by = [g.name for g, found in zip(GENERATIONS, per_generation) if finding in found]
            if len(made_by) == len(GENERATIONS):
                out.append(finding)
            else:
                loaders = " and ".join(made_by)
                out.append(finding._replace(message=f"{finding.message} (under the {loaders} loader only)", fatal=False))
    return out


def _header_findings(chip: Chip, parsed: ParsedImage, context: BootContext) -> list[Finding]:
    img, out = parsed.image, []
    if img.chip_id != chip.image_chip_id:
        out.append(
            Finding(
                "bootloader_common_check_chip_validity",
                f"is built for {_chip_name(img.chip_id)}, not {chip.name}: the {chip.name} bootloader refuses it",
            )
        )
    lo, hi = revisions_allowed(img.min_chip_rev_full, img.max_chip_rev_full)
    if hi is not None and lo > hi:
        out.append(
            Finding(
                "bootloader_common_check_chip_revision_validity",
                f"minimum chip revision {revision_name(lo)} is above the maximum {revision_name(hi)}: no chip boots it",
            )
        )
    elif context.bootloader_revs is not None and (disjoint := disjoint_revisions(lo, hi, context.bootloader_revs)):
        out.append(disjoint)
    elif context.bootloader_revs is not None:
        boot_lo, boot_hi = revisions_allowed(*context.bootloader_revs)
        outside = lo < boot_lo or (boot_hi is not None and (hi is None or hi > boot_hi))
        if outside:
            out.append(
                Finding(
                    "bootloader_common_check_chip_revision_validity",
                    f"the app allows chip revisions {revision_range(lo, hi)} "
                    f"but the bootloader is built for {revision_range(boot_lo, boot_hi)}: "
                    "other revisions do not boot this pack",
                    fatal=False,
                )
            )
    if len(parsed.segments) > MAX_SEGMENTS:
        out.append(
            Finding("verify_image_header", f"{len(parsed.segments)} segments, more than the {MAX_SEGMENTS} it accepts: refused")
        )
    return out


def disjoint_revisions(lo: int, hi: int | None, bootloader_revs: tuple[int, int]) -> Finding | None:
    """No chip revision is both one the app allows and one the bootloader is built for.

    The bootloader checks its own header with ``bootloader_check_bootloader_validity`` (bootloader_init.c),
    which calls ``bootloader_common_check_chip_validity`` for ``ESP_IMAGE_BOOTLOADER``: the minimum only, its
    maximum is skipped. The app's range is checked in full (``bootloader_common_check_chip_revision_validity``).
    """
    boot_lo, boot_hi = revisions_allowed(*bootloader_revs)
    app = revision_range(lo, hi)
    built = revision_range(boot_lo, boot_hi)
    if hi is not None and hi < boot_lo:
        return Finding(
            "bootloader_check_bootloader_validity",
            f"the app allows chip revisions {app} but the bootloader starts only on {revision_name(boot_lo)} and later "
            "(its minimum is enforced): no chip boots this pack",
        )
    if boot_hi is not None and lo > boot_hi:
        return Finding(
            "bootloader_check_bootloader_validity",
            f"the app needs chip revision {revision_name(lo)} or later but the bootloader is built for {built}; "
            "the bootloader's maximum is not enforced (only its minimum is), so every chip that starts this app runs a "
            "bootloader not built for it",
        )
    return None


def _chip_name(chip_id: int) -> str:
    other = chip_by_image_id(chip_id)
    return other.name if other else f"chip id 0x{chip_id:04x}"


def _descriptor_findings(chip: Chip, first: bytes | None, page: int) -> list[Finding]:
    desc = parse_app_descriptor(first) if first else None
    configurable = len(chip.mmu_page_sizes) > 1
    if desc is None:
        if configurable:
            return [
                Finding(
                    "verify_segment_header",
                    f"segment 0 does not start with the app descriptor (magic 0x{APP_DESC_MAGIC:08X}); the {chip.name} "
                    "bootloader reads the MMU page size there and refuses the app",
                )
            ]
        if chip.boot.efuse_blk_check:
            return []  # efuse_blk_findings judges what the loader reads there
        return [
            Finding(
                "esp_ota_get_app_description",
                "segment 0 does not start with the app descriptor: ESP-IDF tools read the version from whatever is there",
                fatal=False,
            )
        ]
    out = []
    if configurable and page not in chip.mmu_page_sizes:
        out.append(
            Finding(
                "set_cache_and_start_app",
                f"app descriptor asks for a 0x{page:x}-byte MMU page, which {chip.name} cannot use: the mapping fails",
            )
        )
    return out


def efuse_blk_fields(parsed: ParsedImage) -> tuple[int, int] | None:
    """The ``(min, max)`` eFuse-block revisions the loader reads at +0xB0/+0xB2 of segment 0, descriptor or not.

    ``process_segment_data`` casts the start of segment 0 to ``esp_app_desc_t`` without checking its magic;
    when segment 0 is shorter, the bytes after it in the image are read. None when nothing is read: no
    segments, or an empty segment 0 (``process_segment`` calls ``process_segment_data`` only for data).
    """
    if not parsed.segments or not parsed.segments[0].segment.data:
        return None
    first = parsed.segments[0]
    end = APP_DESC_EFUSE_BLK_OFFSET + EfuseBlkRevisions.sizeof()
    raw = first.segment.data[:end]
    if len(raw) < end:
        whole = parsed.image.to_bytes()
        raw = whole[first.data_offset : first.data_offset + end]
    fields = EfuseBlkRevisions.parse(raw[APP_DESC_EFUSE_BLK_OFFSET:].ljust(EfuseBlkRevisions.sizeof(), b"\0"))
    return fields.min_rev_full, fields.max_rev_full


def efuse_blk_findings(chip: Chip, parsed: ParsedImage) -> list[Finding]:
    """``bootloader_common_check_efuse_blk_validity`` on segment 0's +0xB0/+0xB2 (ESP-IDF >= 5.4, every chip but ESP32;
    called from ``process_segment_data`` in esp_image_format.c, v5.5 and v6.1 alike)."""
    fields = efuse_blk_fields(parsed) if chip.boot.efuse_blk_check else None
    if fields is None:
        return []
    lo, hi = revisions_allowed(*fields)
    lo = 0 if lo in UNSET_REVISIONS else lo  # IS_FIELD_SET: 0 and 0xFFFF are "not set" for the minimum too
    if not lo and hi is None:
        return []
    rule = "bootloader_common_check_efuse_blk_validity"
    descriptor = parse_app_descriptor(parsed.segments[0].segment.data) is not None
    source = "app descriptor" if descriptor else "segment 0 (no app descriptor: these bytes are not one)"
    limits = f"eFuse block revisions {revision_range(lo, hi)}"
    fix = "" if descriptor else "; segment 0 must be zeroed there (imgtool pack starts apps without a descriptor so)"
    if hi is not None and lo > hi:
        return [Finding(rule, f"{source} allows {limits}: no chip boots it{fix}")]
    if lo >= EFUSE_BLK_REV_UNREACHABLE:
        return [
            Finding(
                rule,
                f"{source} requires eFuse block revision {revision_name(lo)} or later, which no {chip.name} has "
                f"(\"requires efuse blk rev >= {revision_name(lo)}\"): refused on every chip{fix}",
            )
        ]
    if descriptor:
        return []
    return [Finding(rule, f"{source} limits the app to {limits}: chips outside that range refuse it{fix}", fatal=False)]


def _segment_findings(chip: Chip, parsed: ParsedImage, context: BootContext, page: int) -> list[Finding]:
    out = []
    revs = context.bootloader_revs or (parsed.image.min_chip_rev_full, parsed.image.max_chip_rev_full)
    layouts = bootloader_layouts(chip, *revs, context.generation)
    for index, ps in enumerate(parsed.segments):
        seg = ps.segment
        length = len(seg.data)
        where = f"segment {index} (0x{seg.addr:08x}..0x{seg.addr + length:08x})"
        if length % SEGMENT_ALIGN or length >= chip.boot.max_flash_span:
            out.append(Finding("verify_segment_header", f"{where} has invalid length 0x{length:x}: refused"))
            continue
        if chip.is_flash_mapped(seg.addr):
            mapping = Mapping(index, seg.addr, context.flash_offset + ps.data_offset, length)
            if not congruent(mapping, page):
                out.append(
                    Finding(
                        "verify_segment_header",
                        f"{where} sits at flash 0x{mapping.flash_addr:x}, not equal to its load address modulo the "
                        f"0x{page:x}-byte MMU page: refused",
                    )
                )
        elif should_load(chip, seg.addr):
            out += _load_findings(chip, layouts, where, seg.addr, seg.addr + length)
    return out


def _load_findings(chip: Chip, layouts, where: str, start: int, end: int) -> list[Finding]:
    """Fatal when the copy fails under every bootloader layout the app's revisions allow, else a warning."""
    failing = [(ram, until, p) for ram, until in layouts if (p := load_address_problem(chip, ram, start, end))]
    if not failing:
        return []
    ram, until, problem = failing[0]
    if len(failing) == len(layouts):
        return [Finding("verify_load_addresses", f"{where} {problem}: the app does not start")]
    span = f"before {revision_name(until)}" if until is not None else f"{revision_name(ram.min_rev)} and later"
    return [
        Finding(
            "verify_load_addresses",
            f"{where} {problem} on {chip.name} {span} (raise --min-rev to exclude those chips)",
            fatal=False,
        )
    ]


def _mapping_findings(chip: Chip, parsed: ParsedImage, context: BootContext, page: int) -> list[Finding]:
    mappings = flash_mappings(chip, parsed, context.flash_offset)
    out = []
    if chip.unified_flash_map:
        if len(mappings) != SHARED_BUS_FLASH_SEGMENTS:
            out.append(
                Finding(
                    "unpack_load_app",
                    f"the {chip.name} bootloader asserts exactly two flash-mapped segments, this app has "
                    f"{len(mappings)}: it aborts before starting the app",
                )
            )
    else:
        for bus, span in (("DROM", chip.boot.drom), ("IROM", chip.boot.irom)):
            on_bus = [m for m in mappings if span.contains(m.vaddr)]
            if len(on_bus) > 1:
                out.append(
                    Finding(
                        "unpack_load_app",
                        f"segments {', '.join(str(m.index) for m in on_bus)} are all {bus}; the bootloader maps only the "
                        f"last one, so the others are missing when the app runs",
                    )
                )
    if chip.flash_tail_min:
        for m in mappings:
            into_last_page = (m.flash_addr + m.size) % page
            if into_last_page < chip.flash_tail_min:
                out.append(
                    Finding(
                        "set_cache_and_start_app (ESP-IDF <= v3.1)",
                        f"segment {m.index} ends 0x{into_last_page:x} bytes into an MMU page; bootloaders up to ESP-IDF "
                        f"v3.1 leave that page unmapped (pad flash segments to 0x{chip.flash_tail_min:x})",
                        fatal=False,
                    )
                )
    return out


def _entry_findings(chip: Chip, parsed: ParsedImage, context: BootContext) -> list[Finding]:
    entry = parsed.image.entry
    for ps in parsed.segments:
        seg = ps.segment
        runs = chip.is_flash_mapped(seg.addr) or should_load(chip, seg.addr)
        if runs and seg.addr <= entry < seg.addr + len(seg.data):
            return []
    return [
        Finding(
            "set_cache_and_start_app",
            f"entry point 0x{entry:08x} is in no segment the bootloader loads or maps: the jump to it crashes",
        )
    ]


def fatal(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.fatal]


# --------------------------------------------------------------------------- the MMU

#: The rule behind every mis-mapping: the mappings ``set_cache_and_start_app`` (bootloader_utility.c) makes,
#: through the entries ``mmu_ll_get_entry_id`` (hal/CHIP/include/hal/mmu_ll.h) gives their addresses.
MMU_RULE = "set_cache_and_start_app, mmu_ll_get_entry_id"


class MmuEntry:
    """One MMU entry as the app finds it: the flash page it maps and which mapping set it last (a plain class, as Mapping)."""

    __slots__ = ("flash_page", "set_by")

    def __init__(self, flash_page: int, set_by: str):
        self.flash_page = flash_page
        self.set_by = set_by


class MmuTable:
    """The MMU entries, keyed ``(mmu id, entry id)``, as ``set_cache_and_start_app`` leaves them."""

    def __init__(self, chip: Chip, page: int):
        self.chip = chip
        self.page = page
        self.entries: dict[tuple[int, int], MmuEntry] = {}

    def entry_of(self, vaddr: int) -> tuple[int, int] | None:
        """``mmu_ll_get_entry_id`` for ``vaddr``, with the MMU it belongs to; None outside every MMU window."""
        window = self.chip.boot.mmu_window(vaddr)
        entry = window.entry(vaddr, self.page) if window else None
        return None if entry is None else (window.mmu_id, entry)

    def map_region(self, vaddr: int, flash_addr: int, size: int, set_by: str) -> None:
        """``mmu_hal_map_region`` (``cache_flash_mmu_set`` on ESP32): whole pages from both addresses rounded down."""
        page = self.page
        first_vaddr, first_flash = vaddr - vaddr % page, flash_addr - flash_addr % page
        count = -(-(size + vaddr - first_vaddr) // page)
        for i in range(count):
            key = self.entry_of(first_vaddr + i * page)
            if key is not None:
                self.entries[key] = MmuEntry(first_flash + i * page, set_by)

    def flash_addr(self, vaddr: int) -> int | None:
        """The flash address the CPU reads at ``vaddr``; None when no entry maps that page."""
        key = self.entry_of(vaddr)
        hit = self.entries.get(key) if key is not None else None
        return None if hit is None else hit.flash_page + vaddr % self.page

    def pages_sharing(self, key: tuple[int, int]) -> list[int]:
        """Start addresses of every bus page that reads through entry ``key`` (more than one where buses share)."""
        mmu_id, entry = key
        out = []
        for window in self.chip.boot.mmu_windows():
            index = entry - window.first_entry
            start = window.base + index * self.page
            if window.mmu_id == mmu_id and 0 <= index < window.entries and window.span.overlaps(start, start + self.page):
                out.append(max(start, window.span.start))
        return out

    def describe(self, vaddr: int) -> str:
        """Why the CPU reads what it reads at ``vaddr``: the entry, the pages sharing it, and its last mapping."""
        key = self.entry_of(vaddr)
        if key is None:
            window = self.chip.boot.mmu_window(vaddr)
            if window is not None:
                return f"0x{vaddr:08x} is past the last of the {window.entries} MMU entries with 0x{self.page:x}-byte pages"
            return f"0x{vaddr:08x} is in no MMU window of {self.chip.name}"
        hit = self.entries.get(key)
        shared = self.pages_sharing(key)
        by = f" (shared by the pages at {' and '.join(f'0x{p:08x}' for p in shared)})" if len(shared) > 1 else ""
        if hit is None:
            return f"MMU entry {key[1]}{by} is not mapped when the app starts"
        return f"MMU entry {key[1]}{by} maps flash 0x{hit.flash_page:x}, set last by {hit.set_by}"


def boot_mappings(chip: Chip, parsed: ParsedImage, flash_offset: int = 0) -> list[tuple[Mapping, str]]:
    """The segments ``unpack_load_app`` hands to ``set_cache_and_start_app``, as (mapping, bus), DROM first.

    One shared flash bus: the first two flash-mapped segments. Separate buses: the last DROM and the last
    IROM segment (each later one replaces the one before).
    """
    mappings = flash_mappings(chip, parsed, flash_offset)
    if chip.unified_flash_map:
        return [(m, "flash") for m in mappings[:SHARED_BUS_FLASH_SEGMENTS]]
    out = []
    for bus, span in (("DROM", chip.boot.drom), ("IROM", chip.boot.irom)):
        on_bus = [m for m in mappings if span.contains(m.vaddr)]
        if on_bus:
            out.append((on_bus[-1], bus))
    return out


def boot_mmu_table(chip: Chip, parsed: ParsedImage, flash_offset: int = 0, page: int | None = None) -> MmuTable:
    """The MMU when the app starts, built as ``set_cache_and_start_app`` builds it (bootloader_utility.c):
    every entry unmapped (``mmu_hal_unmap_all``), the rodata segment mapped, then the DROM window's last entry
    mapped to the rodata's first page (MMU_LL_END_DROM_ENTRY_ID; not on ESP32), then the code segment, so
    on an entry both buses share the code mapping wins. PSRAM of a SOC_MMU_PER_EXT_MEM_TARGET chip is left
    to the app (``s_flash_seg_needs_map``).
    """
    if page is None:
        page = mmu_page_size(chip, parsed.segments[0].segment.data if parsed.segments else None)
    table = MmuTable(chip, page)
    applied = boot_mappings(chip, parsed, flash_offset)
    for n, (m, bus) in enumerate(applied):
        window = chip.boot.mmu_window(m.vaddr)
        if window is not None and window.boot_mapped:
            table.map_region(m.vaddr, m.flash_addr, m.size, f"segment {m.index}'s {bus} mapping")
        if n == 0 and chip.boot.maps_drom_end_entry:
            drom_window = chip.boot.mmu_window(chip.boot.drom.start)
            if drom_window is not None:
                table.map_region(drom_window.last_page(page), m.flash_addr, page, "the last-DROM-entry mapping (MMU_LL_END_DROM_ENTRY_ID)")
    return table


def mmu_findings(chip: Chip, parsed: ParsedImage, flash_offset: int, page: int) -> list[Finding]:
    """A mapped segment any of whose pages the CPU reads from other flash than the segment's own bytes."""
    table = boot_mmu_table(chip, parsed, flash_offset, page)
    out = []
    for m, bus in boot_mappings(chip, parsed, flash_offset):
        window = chip.boot.mmu_window(m.vaddr)
        if not m.size or not congruent(m, page) or window is None or not window.boot_mapped:
            continue
        for start in range(m.vaddr - m.vaddr % page, m.vaddr + m.size, page):
            lo, hi = max(start, m.vaddr), min(start + page, m.vaddr + m.size)
            if table.flash_addr(lo) != m.flash_addr + (lo - m.vaddr):
                out.append(
                    Finding(
                        MMU_RULE,
                        f"segment {m.index} ({bus} 0x{lo:08x}..0x{hi:08x}) is at flash 0x{m.flash_addr + lo - m.vaddr:x}, but "
                        f"{table.describe(lo)}: the CPU reads other bytes there",
                    )
                )
                break
    return out


class CpuView:
    """What the CPU reads when the app starts: RAM as the bootloader copied it, flash-mapped addresses through
    :func:`boot_mmu_table` from ``read_flash(addr, length)`` (flash bytes, or fewer past the end), and PSRAM
    segments of a SOC_MMU_PER_EXT_MEM_TARGET chip as the image holds them (the app maps them itself)."""

    def __init__(self, chip: Chip, parsed: ParsedImage, read_flash, flash_offset: int = 0, page: int | None = None):
        self.chip = chip
        self.table = boot_mmu_table(chip, parsed, flash_offset, page)
        self.read_flash = read_flash
        segments = [ps.segment for ps in parsed.segments]
        self.loaded = LoadedMemory([s for s in segments if should_load(chip, s.addr)])
        self.app_mapped = LoadedMemory([s for s in segments if chip.is_flash_mapped(s.addr) and not self._boot_mapped(s.addr)])

    def _boot_mapped(self, addr: int) -> bool:
        window = self.chip.boot.mmu_window(addr)
        return window is not None and window.boot_mapped

    def read(self, addr: int, length: int) -> bytes | None:
        """The ``length`` bytes the CPU reads at ``addr``, or None when any of them is neither loaded nor mapped."""
        if not self.chip.is_flash_mapped(addr):
            return self.loaded.read(addr, length)
        if not self._boot_mapped(addr):
            return self.app_mapped.read(addr, length)
        page, out, cursor, end = self.table.page, bytearray(), addr, addr + length
        while cursor < end:
            take = min(end, cursor - cursor % page + page) - cursor
            flash_addr = self.table.flash_addr(cursor)
            chunk = self.read_flash(flash_addr, take) if flash_addr is not None else None
            if chunk is None or len(chunk) < take:
                return None
            out += chunk
            cursor += take
        return bytes(out)

    def explain(self, addr: int) -> str:
        """How the CPU reaches ``addr`` (the MMU entry and its last mapping), for a message; empty for RAM."""
        return self.table.describe(addr) if self.chip.is_flash_mapped(addr) and self._boot_mapped(addr) else ""


def image_cpu_view(chip: Chip, parsed: ParsedImage, data: bytes, page: int | None = None) -> CpuView:
    """:class:`CpuView` of an image judged alone, as if written at a flash address that is a multiple of the page."""
    return CpuView(chip, parsed, lambda addr, length: bytes(data[addr : addr + length]), page=page)
