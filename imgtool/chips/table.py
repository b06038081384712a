"""Every chip fact imgtool needs, as one declarative table.

Numbers come from Espressif's public documentation and esptool's target
definitions. Code looks facts up here; nothing else branches on chip names. What each chip's
security hardware checks is declared in ``chips.security`` and given per chip here.
Beside the table: the flash facts every chip shares (sector size, erased byte,
largest flash) and the user's spellings of flash sizes, modes and chip
revisions (``v3.1`` ⇄ 301), read and written in one place.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from imgtool.chips.security import (
    ECDSA_ONLY,
    ESP32_AES,
    RSA_AND_ECDSA,
    RSA_AND_ECDSA_384,
    RSA_ONLY,
    XTS_128,
    XTS_128_256,
    XTS_128_DERIVED,
    FlashEncryption,
    SecureBoot,
)
from imgtool.errors import UsageError

EM_XTENSA = 94
EM_RISCV = 243

KiB = 1024
MiB = 1024 * KiB

#: Flash sizes the image header can describe, with their header encoding (high nibble of byte 3).
FLASH_SIZES: dict[str, int] = {
    "1MB": 0x0,
    "2MB": 0x1,
    "4MB": 0x2,
    "8MB": 0x3,
    "16MB": 0x4,
    "32MB": 0x5,
    "64MB": 0x6,
    "128MB": 0x7,
}
#: The largest flash an image header can describe: the most any image or flash file read can hold.
MAX_FLASH_BYTES = 128 * MiB
#: The flash erase unit: partition tables, otadata copies and signature blocks each own whole sectors.
FLASH_SECTOR_SIZE = 0x1000
#: Erased flash reads as 0xFF; padding and the gaps of a merged image are filled with it.
ERASED = b"\xff"

#: SPI flash modes and their header encoding (byte 2).
FLASH_MODES: dict[str, int] = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}

DEFAULT_FLASH_MODE = "dio"
#: Mode written into the image headers and argument files for a requested mode, where they differ.
#: The ROM loads the second-stage bootloader before quad I/O is enabled on the flash chip, so
#: ESP-IDF writes dio for qio/qout projects (esptool-py's Kconfig); a bootloader built for quad
#: mode switches to it itself. A qio header can leave the chip unable to boot.
BOOT_FLASH_MODE: dict[str, str] = {"qio": "dio", "qout": "dio"}
DEFAULT_FLASH_SIZE = "2MB"
DEFAULT_MMU_PAGE_SIZE = 64 * KiB
#: Lengths the newer bootloader linker scripts (bootloader-CHIP.ld) give their regions.
BOOTLOADER_STACK_OVERHEAD = 0x2000
BOOTLOADER_DRAM_SEG_LEN = 0x5000
BOOTLOADER_IRAM_LOADER_SEG_LEN = 0x7000
#: ESP-IDF's bootloader ≤ v3.1 left the last MMU page of a flash segment unmapped when the segment
#: entered it by fewer bytes than this; esptool and espflash pad ESP32 flash segments past it.
LEGACY_FLASH_TAIL_MIN = 0x24

#: Chip revision range meaning "any revision" (major * 100 + minor encoding).
ANY_REVISION_MAX = 0xFFFF


def revision_name(full: int) -> str:
    """A major * 100 + minor chip revision as ESP-IDF and esptool print it: 301 → ``v3.1``."""
    return f"v{full // 100}.{full % 100}"


def revision_range(low: int, high: int | None, joiner: str = "–", *, later: bool = False) -> str:
    """A chip-revision range in a message: ``v1.0–v1.99`` (``joiner`` between the ends).

    An open range (``high`` None or ANY_REVISION_MAX) reads ``v3.0–any``, or ``v3.0 and later`` with ``later``.
    """
    if high is None or high == ANY_REVISION_MAX:
        return f"{revision_name(low)} and later" if later else f"{revision_name(low)}{joiner}any"
    return f"{revision_name(low)}{joiner}{revision_name(high)}"


def check_revision_number(value: int | None, name: str) -> None:
    """Refuse a major*100+minor revision the image header cannot hold (outside 0..ANY_REVISION_MAX), naming the option ``name``."""
    if value is not None and not 0 <= value <= ANY_REVISION_MAX:
        raise UsageError(f"{name} must be between 0 and {ANY_REVISION_MAX} (major*100+minor), got {value}", field=name)


def parse_revision(text: str | int | None, name: str) -> int | None:
    """``v3.1`` or ``3.1`` → 301; a plain integer is already major*100+minor (esptool's --min-rev-full)."""
    if text is None or isinstance(text, int):
        check_revision_number(text, name)
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
    check_revision_number(value, name)
    return value


class Region(str, Enum):
    """Kinds of memory an image segment can be loaded into."""

    IROM = "IROM"  # flash-mapped code
    DROM = "DROM"  # flash-mapped read-only data
    IRAM = "IRAM"
    DRAM = "DRAM"
    SRAM = "SRAM"  # internal RAM that holds both code and data at the same addresses
    RTC_IRAM = "RTC_IRAM"
    RTC_DRAM = "RTC_DRAM"
    RTC_DATA = "RTC_DATA"
    TCM = "TCM"
    #: CPU cache banks used as RAM: the ROM loads images there, the second-stage bootloader never does.
    CACHE_RAM = "CACHE_RAM"

    @property
    def flash_mapped(self) -> bool:
        return self in (Region.IROM, Region.DROM)


class MemoryRange(NamedTuple):
    region: Region
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.start <= addr and addr + max(length, 1) <= self.end


class Span(NamedTuple):
    """A half-open address range ``[start, end)``."""

    start: int
    end: int

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.start <= addr and addr + max(length, 1) <= self.end

    def overlaps(self, start: int, end: int) -> bool:
        """ESP-IDF's ``bootloader_util_regions_overlap`` for ``[start, end)``."""
        return start < self.end and self.start < end


class Diram:
    """SRAM reachable both as instruction and as data addresses (SOC_DIRAM_* in soc.h).

    A plain class, one instance per chip (so are BootloaderRam and MmuWindow): every pack defines them,
    where a NamedTuple costs ~0.15 ms each.
    """

    __slots__ = ("iram", "dram", "inverted")

    def __init__(self, iram: Span, dram: Span, inverted: bool = False):
        self.iram = iram
        self.dram = dram
        #: ESP32 only: the two views run in opposite word order (SOC_DIRAM_INVERTED).
        self.inverted = inverted


class BootloaderRam:
    """RAM the running second-stage bootloader occupies, from its linker script (bootloader-CHIP.ld).

    ``verify_load_addresses`` refuses app segments over its data (``_dram_start.._dram_end``, inside
    ``dram_seg``), its loader code (``_loader_text_start.._loader_text_end``, inside ``iram_loader_seg``)
    and the stack below ``SOC_ROM_STACK_START``. Whole linker regions are used: a superset of what a
    particular build fills, so what passes here passes there.
    """

    __slots__ = ("min_rev", "data", "loader_text", "rom_stack_start")

    def __init__(self, min_rev: int, data: Span, loader_text: Span, rom_stack_start: int):
        #: Lowest chip revision (major*100+minor) whose bootloader builds use this layout.
        self.min_rev = min_rev
        self.data = data
        self.loader_text = loader_text
        self.rom_stack_start = rom_stack_start


def _ld_regions(
    min_rev: int,
    usable_dram_end: int,
    rom_stack_start: int,
    iram_dram_offset: int = 0,
    loader_len: int = BOOTLOADER_IRAM_LOADER_SEG_LEN,
) -> BootloaderRam:
    """The regions of the newer bootloader linker scripts, which derive them from one address."""
    data_end = usable_dram_end - BOOTLOADER_STACK_OVERHEAD
    data_start = data_end - BOOTLOADER_DRAM_SEG_LEN
    loader_start = data_start - loader_len + iram_dram_offset
    return BootloaderRam(
        min_rev,
        Span(data_start, data_end),
        Span(loader_start, loader_start + loader_len),
        rom_stack_start,
    )


#: ``MMU_LL_FLASH_MMU_ID`` / ``MMU_LL_PSRAM_MMU_ID``: chips with one MMU per external memory
#: (SOC_MMU_PER_EXT_MEM_TARGET) number PSRAM entries in a second table.
FLASH_MMU_ID = 0
PSRAM_MMU_ID = 1


class MmuWindow:
    """Virtual addresses one cache bus reaches through the MMU, and which entries they use.

    ``mmu_ll_get_entry_id`` (``components/hal/CHIP/include/hal/mmu_ll.h``) gives an address in
    ``span`` the entry ``first_entry + (vaddr - base) // page`` (``(vaddr & SOC_MMU_VADDR_MASK) >>
    shift`` plus the bus's offset; the mask covers ``entries`` pages on every chip). Windows of one
    MMU whose entry ranges overlap share those entries: on esp32c2/c3/s3 the data-bus page and the
    instruction-bus page with the same index are one entry, and whichever mapping is made last wins.
    """

    __slots__ = ("span", "base", "first_entry", "entries", "mmu_id", "boot_mapped")

    def __init__(self, span: Span, base: int, first_entry: int, entries: int, mmu_id: int = FLASH_MMU_ID, boot_mapped: bool = True):
        self.span = span
        self.base = base
        self.first_entry = first_entry
        self.entries = entries
        self.mmu_id = mmu_id
        #: ``s_flash_seg_needs_map``: the bootloader maps segments here; False for PSRAM on chips with
        #: one MMU per memory (SOC_MMU_PER_EXT_MEM_TARGET), whose app maps (copies) them itself.
        self.boot_mapped = boot_mapped

    def entry(self, vaddr: int, page: int) -> int | None:
        """The MMU entry ``vaddr`` reads through with ``page``-byte pages, or None outside this window."""
        index = (vaddr - self.base) // page
        if not self.span.contains(vaddr) or not 0 <= index < self.entries:
            return None
        return self.first_entry + index

    def page_of(self, entry: int, page: int) -> int:
        """The start of the page that reads through ``entry``."""
        return self.base + (entry - self.first_entry) * page

    def last_page(self, page: int) -> int:
        """``MMU_DROM_END_ENTRY_VADDR``: the start of the window's last page."""
        return self.page_of(self.first_entry + self.entries - 1, page)


class BootFacts(NamedTuple):
    """What the ESP-IDF v5.5 second-stage bootloader knows about the chip (soc.h, soc_caps.h, bootloader.ld)."""

    #: ``should_map``: SOC_DROM_LOW..HIGH; on chips with one shared flash bus it equals ``irom``.
    drom: Span
    #: ``should_map``: SOC_IROM_LOW..HIGH.
    irom: Span
    #: One entry per bootloader memory layout, oldest chip revision first.
    bootloader_ram: tuple[BootloaderRam, ...]
    #: ``verify_load_addresses``: where the bootloader copies RAM segments (SOC_DRAM, SOC_IRAM,
    #: RTC fast I/D, RTC slow, TCM where the chip has them). Derived from ``Chip.memory`` (:func:`_load_ranges`).
    load: tuple[MemoryRange, ...] = ()
    #: Given for chips with separate instruction and data RAM; on the others the one SRAM range (:func:`_with_ram_views`).
    diram: Diram | None = None
    #: ``unpack_load_app``: more flash-mapped ranges counted with text and rodata (SOC_EXTRAM on ESP32-P4).
    extra_mapped: tuple[Span, ...] = ()
    #: ``ESP_IMAGE_MAX_FLASH_ADDR_SIZE``: largest partition and segment the loader accepts.
    max_flash_span: int = 16 * MiB
    #: Bootloader layouts of loader generations whose memory map differs from ``bootloader_ram`` (v5.5's
    #: ``bootloader-CHIP.ld``), keyed by ``loader_generations.Generation.name`` (v6.1: ``bootloader-CHIP.memory.ld.in``).
    ram_by_generation: tuple[tuple[str, tuple[BootloaderRam, ...]], ...] = ()
    #: ``process_segment_data``: the loader checks segment 0's eFuse-block revision fields (every chip but ESP32).
    efuse_blk_check: bool = True
    #: The MMU windows of the flash (and PSRAM) buses, from ext_mem_defs.h and ``mmu_ll_get_entry_id``
    #: (every chip row gives them).
    mmu: tuple[MmuWindow, ...] = ()
    #: ``set_cache_and_start_app`` also maps the DROM window's last entry (MMU_LL_END_DROM_ENTRY_ID) to the
    #: first rodata page, for the app to find its partition; ESP32's ``cache_flash_mmu_set`` branch does not.
    maps_drom_end_entry: bool = True

    def mapped(self, addr: int) -> bool:
        return self.drom.contains(addr) or self.irom.contains(addr) or any(s.contains(addr) for s in self.extra_mapped)

    def mmu_windows(self) -> tuple[MmuWindow, ...]:
        """The MMU windows of the flash (and PSRAM) buses: which bus shares entries with which is data here."""
        return self.mmu

    def mmu_window(self, vaddr: int) -> MmuWindow | None:
        return next((w for w in self.mmu_windows() if w.span.contains(vaddr)), None)

    def linear(self, vaddr: int, page: int) -> tuple[int, int] | None:
        """``(mmu id, entry * page + offset in the page)``: two bus addresses with equal linear addresses
        read one MMU entry at one offset, so one flash byte. None outside every MMU window."""
        window = self.mmu_window(vaddr)
        entry = window.entry(vaddr, page) if window else None
        return None if entry is None else (window.mmu_id, entry * page + vaddr % page)

    def layouts(self, generation: str | None = None) -> tuple[BootloaderRam, ...]:
        """The bootloader's memory layouts in loader generation ``generation`` (None: v5.5's)."""
        return dict(self.ram_by_generation).get(generation, self.bootloader_ram)

    def ram_for(self, min_rev: int, generation: str | None = None) -> BootloaderRam:
        """The bootloader layout for builds that start at chip revision ``min_rev``."""
        layouts = self.layouts(generation)
        chosen = layouts[0]
        for ram in layouts:
            if ram.min_rev <= min_rev:
                chosen = ram
        return chosen


class Chip(NamedTuple):
    name: str
    image_chip_id: int
    bootloader_offset: int
    elf_machine: int
    #: Where imgtool places ELF sections; every range lies inside what ``boot`` maps or loads.
    memory: tuple[MemoryRange, ...]
    flash_freqs: dict[str, int]
    default_flash_freq: str
    boot: BootFacts
    #: MMU page sizes the app may choose (SOC_MMU_PAGE_SIZE_CONFIGURABLE); others always use 64 KiB.
    mmu_page_sizes: tuple[int, ...] = (DEFAULT_MMU_PAGE_SIZE,)
    #: SOC_MMU_DI_VADDR_SHARED: code and read-only data share one flash bus, and the bootloader maps
    #: exactly two flash segments (``unpack_load_app``); otherwise one DROM and one IROM segment.
    unified_flash_map: bool = False
    #: Flash segments end at least this far into their last MMU page (LEGACY_FLASH_TAIL_MIN on ESP32).
    flash_tail_min: int = 0
    #: esp-web-tools' ``chipFamily`` (a manifest build's key); ESP Launchpad's ``chipsets`` use the same names.
    esp_web_tools_family: str = ""
    #: UF2 family id (Microsoft's uf2families.json, as esptool's merge-bin writes it).
    uf2_family_id: int = 0
    #: Crystal frequencies the chip runs from (SOC_XTAL_SUPPORT_*M in soc_caps.h).
    crystals_mhz: tuple[int, ...] = (40,)
    #: RAM only the ROM loads (images it starts itself: a second-stage bootloader, a RAM-only app);
    #: ``verify_load_addresses`` refuses app segments there. ESP32: the PRO and APP CPU cache banks
    #: (SOC_CACHE_PRO_LOW..SOC_CACHE_APP_HIGH in soc.h), where the bootloader keeps its loader code.
    rom_only_ram: tuple[MemoryRange, ...] = ()
    #: Secure Boot V2 as the ROM and bootloader verify it; None where the chip has none.
    secure_boot: SecureBoot | None = None
    flash_encryption: FlashEncryption = XTS_128

    @property
    def arch(self) -> str:
        return "xtensa" if self.elf_machine == EM_XTENSA else "riscv"

    def ranges(self, region: Region) -> tuple[MemoryRange, ...]:
        return tuple(r for r in self.memory if r.region is region)

    def region_of(self, addr: int, length: int = 1, *, rom_loaded: bool = False) -> MemoryRange | None:
        """The memory range that holds ``[addr, addr+length)`` entirely, or None.

        ``rom_loaded``: for an image the ROM loads, whose RAM includes ``rom_only_ram``.
        """
        for rng in (*self.memory, *self.rom_only_ram) if rom_loaded else self.memory:
            if rng.contains(addr, length):
                return rng
        return None

    def is_flash_mapped(self, addr: int) -> bool:
        """Whether the bootloader maps (rather than copies) a segment loaded at ``addr`` (``should_map``)."""
        return self.boot.mapped(addr)

    def capacity(self, region: Region) -> int:
        return sum(r.size for r in self.memory if r.region is region)

    def flash_freq_code(self, freq: str) -> int:
        try:
            return self.flash_freqs[freq.lower()]
        except KeyError:
            raise UsageError(
                f"unknown flash frequency '{freq}' for {self.name}; use one of {', '.join(self.flash_freqs)}",
                field="--flash-freq",
            ) from None

    def flash_freq_name(self, code: int) -> str:
        names = [n for n, c in self.flash_freqs.items() if c == code]
        return names[0] if names else f"0x{code:x}"


def _m(region: Region, start: int, end: int) -> MemoryRange:
    return MemoryRange(region, start, end)


def _s(start: int, end: int) -> Span:
    return Span(start, end)


#: The order of ``BootFacts.load``: SOC_DRAM, SOC_IRAM, RTC fast I/D, RTC slow, TCM.
_LOAD_ORDER = (Region.DRAM, Region.IRAM, Region.RTC_IRAM, Region.RTC_DRAM, Region.RTC_DATA, Region.TCM)


def _load_ranges(chip: Chip) -> tuple[MemoryRange, ...]:
    """The RAM the bootloader copies segments into, from the one spelling of each range in ``chip.memory``.

    SRAM is both SOC_DRAM and SOC_IRAM (the same addresses); RTC fast memory given only as RTC_IRAM is
    also SOC_RTC_DRAM (one block reached at the same addresses), as on every chip newer than ESP32-S2.
    """
    by_region = {region: list(chip.ranges(region)) for region in _LOAD_ORDER}
    for sram in chip.ranges(Region.SRAM):
        by_region[Region.DRAM].append(sram._replace(region=Region.DRAM))
        by_region[Region.IRAM].append(sram._replace(region=Region.IRAM))
    if not by_region[Region.RTC_DRAM]:
        by_region[Region.RTC_DRAM] = [r._replace(region=Region.RTC_DRAM) for r in by_region[Region.RTC_IRAM]]
    return tuple(r for region in _LOAD_ORDER for r in by_region[region])


def _with_ram_views(chip: Chip) -> Chip:
    """``chip`` with the bootloader's views of its RAM (load ranges, DIRAM) derived from ``memory``."""
    diram = chip.boot.diram
    if diram is None:
        sram = chip.ranges(Region.SRAM)[0]
        diram = Diram(Span(sram.start, sram.end), Span(sram.start, sram.end))
    return chip._replace(boot=chip.boot._replace(load=_load_ranges(chip), diram=diram))


_CLASSIC_FREQS = {"80m": 0xF, "40m": 0x0, "26m": 0x1, "20m": 0x2}
#: The classic codes without 26 MHz (esp32c5, esp32c61, esp32s31).
_FREQS_80_40_20 = {"80m": 0xF, "40m": 0x0, "20m": 0x2}
#: The 48/24 MHz flash clocks of esp32h4 and esp32h21.
_FREQS_48_24 = {"48m": 0xF, "24m": 0x0}
_CONFIGURABLE_PAGES = (8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB)
_BUS_42 = _s(0x4200_0000, 0x4400_0000)
#: SOC_IROM_HIGH = SOC_IROM_LOW + (SOC_MMU_PAGE_SIZE << 8), with the pinned builds' 64 KiB page.
_BUS_42_256_PAGES = _s(0x4200_0000, 0x4300_0000)


def _bus(start: int, end: int, entries: int, first_entry: int = 0, base: int | None = None) -> MmuWindow:
    """A flash MMU window: SOC_*_CACHE_ADDRESS_LOW..HIGH, its first entry and the entries its mask covers."""
    return MmuWindow(_s(start, end), start if base is None else base, first_entry, entries)


def _shared_entries(drom: Span, irom: Span, entries: int) -> tuple[MmuWindow, ...]:
    """esp32c2/c3/s3: DBUS and IBUS page ``n`` are both entry ``n`` (``(vaddr & SOC_MMU_VADDR_MASK) >> 16``)."""
    return (_bus(drom.start, drom.end, entries), _bus(irom.start, irom.end, entries))


def _psram_mmu(start: int, end: int, entries: int) -> MmuWindow:
    """The PSRAM MMU of a SOC_MMU_PER_EXT_MEM_TARGET chip; the bootloader leaves it to the app."""
    return MmuWindow(_s(start, end), start, 0, entries, mmu_id=PSRAM_MMU_ID, boot_mapped=False)


#: 64 entries per bus on ESP32 and ESP32-S2: SOC_MMU_VADDR_MASK is 0x3FFFFF with 64 KiB pages.
_ENTRIES_PER_4M_BUS = 64

CHIPS: dict[str, Chip] = {
    c.name: _with_ram_views(c)
    for c in (
        Chip(
            name="esp32",
            image_chip_id=0x0000,
            bootloader_offset=0x1000,
            elf_machine=EM_XTENSA,
            memory=(
                _m(Region.DROM, 0x3F40_0000, 0x3F80_0000),
                _m(Region.RTC_DRAM, 0x3FF8_0000, 0x3FF8_2000),
                _m(Region.DRAM, 0x3FFA_E000, 0x4000_0000),
                _m(Region.IRAM, 0x4008_0000, 0x400A_A000),
                _m(Region.RTC_IRAM, 0x400C_0000, 0x400C_2000),
                _m(Region.IROM, 0x400D_0000, 0x4040_0000),
                _m(Region.RTC_DATA, 0x5000_0000, 0x5000_2000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="40m",
            boot=BootFacts(
                drom=_s(0x3F40_0000, 0x3F80_0000),
                irom=_s(0x400D_0000, 0x4040_0000),
                diram=Diram(_s(0x400A_0000, 0x400C_0000), _s(0x3FFE_0000, 0x4000_0000), inverted=True),
                bootloader_ram=(BootloaderRam(0, _s(0x3FFF_0000, 0x3FFF_6000), _s(0x4007_8000, 0x4008_0000), 0x3FFE_3F20),),
                efuse_blk_check=False,
                # ext_mem_defs.h: DROM0 uses entries 0-63, IRAM0 64-127 (from 0x40000000), IRAM1 128-191, IROM0 192-255.
                mmu=(
                    _bus(0x3F40_0000, 0x3F80_0000, _ENTRIES_PER_4M_BUS),
                    _bus(0x400D_0000, 0x4040_0000, _ENTRIES_PER_4M_BUS, 64, base=0x4000_0000),
                    _bus(0x4040_0000, 0x4080_0000, _ENTRIES_PER_4M_BUS, 128),
                    _bus(0x4080_0000, 0x40C0_0000, _ENTRIES_PER_4M_BUS, 192),
                ),
                maps_drom_end_entry=False,
            ),
            flash_tail_min=LEGACY_FLASH_TAIL_MIN,
            esp_web_tools_family="ESP32",
            uf2_family_id=0x1C5F21B0,
            secure_boot=SecureBoot(RSA_ONLY, 1, min_rev=300),
            flash_encryption=ESP32_AES,
            crystals_mhz=(26, 40),
            rom_only_ram=(_m(Region.CACHE_RAM, 0x4007_0000, 0x4008_0000),),
        ),
        Chip(
            name="esp32s2",
            image_chip_id=0x0002,
            bootloader_offset=0x1000,
            elf_machine=EM_XTENSA,
            memory=(
                _m(Region.DROM, 0x3F00_0000, 0x3F3F_0000),
                _m(Region.RTC_DRAM, 0x3FF9_E000, 0x3FFA_0000),
                _m(Region.DRAM, 0x3FFB_0000, 0x4000_0000),
                _m(Region.IRAM, 0x4002_0000, 0x4007_0000),
                _m(Region.RTC_IRAM, 0x4007_0000, 0x4007_2000),
                _m(Region.IROM, 0x4008_0000, 0x40B8_0000),
                _m(Region.RTC_DATA, 0x5000_0000, 0x5000_2000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_s(0x3F00_0000, 0x3FF8_0000),
                irom=_s(0x4008_0000, 0x4080_0000),
                diram=Diram(_s(0x4002_0000, 0x4007_0000), _s(0x3FFB_0000, 0x4000_0000)),
                bootloader_ram=(BootloaderRam(0, _s(0x3FFE_5000, 0x3FFE_AB00), _s(0x4004_E000, 0x4005_5000), 0x3FFF_E70C),),
                # ext_mem_defs.h: PRO_CACHE_{IBUS0,IBUS1,IBUS2,DBUS0,DBUS1,DBUS2}_MMU_START / 4.
                mmu=(
                    _bus(0x4008_0000, 0x4040_0000, _ENTRIES_PER_4M_BUS, 0, base=0x4000_0000),
                    _bus(0x4040_0000, 0x4080_0000, _ENTRIES_PER_4M_BUS, 64),
                    _bus(0x3F00_0000, 0x3F40_0000, _ENTRIES_PER_4M_BUS, 128),
                    _bus(0x3FC0_0000, 0x3FF8_0000, _ENTRIES_PER_4M_BUS, 192),
                    _bus(0x3F80_0000, 0x3FC0_0000, _ENTRIES_PER_4M_BUS, 256),
                    _bus(0x3F50_0000, 0x3F80_0000, _ENTRIES_PER_4M_BUS, 320, base=0x3F40_0000),
                ),
            ),
            esp_web_tools_family="ESP32-S2",
            uf2_family_id=0xBFDD4EEE,
            secure_boot=SecureBoot(RSA_ONLY, 3),
            flash_encryption=XTS_128_256,
        ),
        Chip(
            name="esp32s3",
            image_chip_id=0x0009,
            bootloader_offset=0x0,
            elf_machine=EM_XTENSA,
            memory=(
                _m(Region.DROM, 0x3C00_0000, 0x3E00_0000),
                _m(Region.DRAM, 0x3FC8_8000, 0x3FD0_0000),
                _m(Region.IRAM, 0x4037_0000, 0x403E_0000),
                _m(Region.IROM, 0x4200_0000, 0x4400_0000),
                _m(Region.RTC_DATA, 0x5000_0000, 0x5000_2000),
                _m(Region.RTC_IRAM, 0x600F_E000, 0x6010_0000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_s(0x3C00_0000, 0x3E00_0000),
                irom=_BUS_42,
                diram=Diram(_s(0x4037_8000, 0x403E_0000), _s(0x3FC8_8000, 0x3FCF_0000)),
                bootloader_ram=(_ld_regions(0, 0x3FCE_9700, 0x3FCE_B710, iram_dram_offset=0x6F_0000),),
                max_flash_span=1 << 32,
                mmu=_shared_entries(_s(0x3C00_0000, 0x3E00_0000), _BUS_42, 512),
            ),
            esp_web_tools_family="ESP32-S3",
            uf2_family_id=0xC47E5767,
            secure_boot=SecureBoot(RSA_ONLY, 3),
            flash_encryption=XTS_128_256,
        ),
        Chip(
            name="esp32c2",
            image_chip_id=0x000C,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.DROM, 0x3C00_0000, 0x3C40_0000),
                _m(Region.DRAM, 0x3FCA_0000, 0x3FCE_0000),
                _m(Region.IRAM, 0x4037_C000, 0x403C_0000),
                _m(Region.IROM, 0x4200_0000, 0x4240_0000),
            ),
            flash_freqs={"60m": 0xF, "30m": 0x0, "20m": 0x1, "15m": 0x2},
            default_flash_freq="60m",
            boot=BootFacts(
                drom=_s(0x3C00_0000, 0x3C40_0000),
                irom=_s(0x4200_0000, 0x4240_0000),
                diram=Diram(_s(0x4038_0000, 0x403C_0000), _s(0x3FCA_0000, 0x3FCE_0000)),
                bootloader_ram=(_ld_regions(0, 0x3FCD_CB70, 0x3FCD_EB70, iram_dram_offset=0x6E_0000),),
                mmu=_shared_entries(_s(0x3C00_0000, 0x3C40_0000), _s(0x4200_0000, 0x4240_0000), 64),
            ),
            mmu_page_sizes=(16 * KiB, 32 * KiB, 64 * KiB),
            esp_web_tools_family="ESP32-C2",
            uf2_family_id=0x2B88D29C,
            secure_boot=SecureBoot(ECDSA_ONLY, 1),
            flash_encryption=XTS_128_DERIVED,
            crystals_mhz=(26, 40),
        ),
        Chip(
            name="esp32c3",
            image_chip_id=0x0005,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.DROM, 0x3C00_0000, 0x3C80_0000),
                _m(Region.DRAM, 0x3FC8_0000, 0x3FCE_0000),
                _m(Region.IRAM, 0x4037_C000, 0x403E_0000),
                _m(Region.IROM, 0x4200_0000, 0x4280_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_2000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_s(0x3C00_0000, 0x3C80_0000),
                irom=_s(0x4200_0000, 0x4280_0000),
                diram=Diram(_s(0x4038_0000, 0x403E_0000), _s(0x3FC8_0000, 0x3FCE_0000)),
                bootloader_ram=(_ld_regions(0, 0x3FCD_C710, 0x3FCD_E710, iram_dram_offset=0x70_0000),),
                mmu=_shared_entries(_s(0x3C00_0000, 0x3C80_0000), _s(0x4200_0000, 0x4280_0000), 128),
            ),
            esp_web_tools_family="ESP32-C3",
            uf2_family_id=0xD42BA06C,
            secure_boot=SecureBoot(RSA_ONLY, 3, min_rev=3),
            flash_encryption=XTS_128,
        ),
        Chip(
            name="esp32c5",
            image_chip_id=0x0017,
            bootloader_offset=0x2000,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4086_0000),
                _m(Region.IROM, 0x4200_0000, 0x4400_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_4000),
            ),
            flash_freqs=_FREQS_80_40_20,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_BUS_42,
                irom=_BUS_42,
                bootloader_ram=(_ld_regions(0, 0x4085_C5A0, 0x4085_E5A0),),
                max_flash_span=1 << 32,
                mmu=(_bus(0x4200_0000, 0x4400_0000, 512),),
            ),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C5",
            uf2_family_id=0xF71C0343,
            secure_boot=SecureBoot(RSA_AND_ECDSA_384, 3),
            flash_encryption=XTS_128_256,
            crystals_mhz=(40, 48),
        ),
        Chip(
            name="esp32c6",
            image_chip_id=0x000D,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4088_0000),
                _m(Region.IROM, 0x4200_0000, 0x4300_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_4000),
            ),
            flash_freqs={"80m": 0x0, "40m": 0x0, "20m": 0x2},
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_BUS_42_256_PAGES,
                irom=_BUS_42_256_PAGES,
                bootloader_ram=(_ld_regions(0, 0x4087_C610, 0x4087_E610),),
                mmu=(_bus(0x4200_0000, 0x4300_0000, 256),),
            ),
            mmu_page_sizes=_CONFIGURABLE_PAGES,
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C6",
            uf2_family_id=0x540DDF62,
            secure_boot=SecureBoot(RSA_AND_ECDSA, 3),
            flash_encryption=XTS_128,
        ),
        Chip(
            name="esp32c61",
            image_chip_id=0x0014,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4085_0000),
                _m(Region.IROM, 0x4200_0000, 0x4400_0000),
            ),
            flash_freqs=_FREQS_80_40_20,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_BUS_42,
                irom=_BUS_42,
                bootloader_ram=(_ld_regions(0, 0x4084_CA70, 0x4084_EA70),),
                # v6.1 moved the bootloader's usable DRAM end (bootloader-esp32c61.memory.ld.in) and
                # SOC_ROM_STACK_START (soc.h, used by ``verify_load_addresses``) down by 0x400.
                ram_by_generation=(("v6.1", (_ld_regions(0, 0x4084_C670, 0x4084_E670),)),),
                mmu=(_bus(0x4200_0000, 0x4400_0000, 512),),
            ),
            mmu_page_sizes=_CONFIGURABLE_PAGES,
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C61",
            uf2_family_id=0x77D850C4,
            secure_boot=SecureBoot(ECDSA_ONLY, 3),
            flash_encryption=XTS_128,
        ),
        Chip(
            name="esp32h2",
            image_chip_id=0x0010,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4085_0000),
                _m(Region.IROM, 0x4200_0000, 0x4300_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_1000),
            ),
            flash_freqs={"48m": 0xF, "24m": 0x0, "16m": 0x1, "12m": 0x2},
            default_flash_freq="48m",
            boot=BootFacts(
                drom=_BUS_42_256_PAGES,
                irom=_BUS_42_256_PAGES,
                bootloader_ram=(_ld_regions(0, 0x4084_CFD0, 0x4084_F380),),
                mmu=(_bus(0x4200_0000, 0x4300_0000, 256),),
            ),
            mmu_page_sizes=_CONFIGURABLE_PAGES,
            unified_flash_map=True,
            esp_web_tools_family="ESP32-H2",
            uf2_family_id=0x332726F6,
            secure_boot=SecureBoot(RSA_AND_ECDSA, 3, p192_off_by_default=True),
            flash_encryption=XTS_128,
            crystals_mhz=(32,),
        ),
        Chip(
            name="esp32p4",
            image_chip_id=0x0012,
            bootloader_offset=0x2000,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.TCM, 0x3010_0000, 0x3010_2000),
                _m(Region.IROM, 0x4000_0000, 0x4400_0000),
                _m(Region.SRAM, 0x4FF0_0000, 0x4FFC_0000),
                _m(Region.RTC_IRAM, 0x5010_8000, 0x5011_0000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_s(0x4000_0000, 0x4400_0000),
                irom=_s(0x4000_0000, 0x4400_0000),
                # Chips before v3.0 keep ROM data lower in SRAM; ESP-IDF links a second layout for v3.0+
                # (bootloader.rev3.ld.in), as the pinned esp32p4-v0 and -v3 builds show.
                bootloader_ram=(
                    _ld_regions(0, 0x4FF3_ABD0, 0x4FF3_CFC0),
                    _ld_regions(300, 0x4FFB_CFC0, 0x4FFB_EFC0),
                ),
                # v6.1 (bootloader-esp32p4.memory.ld.in): a 0x8000-byte iram_loader_seg; builds for v3.0+ (not
                # CONFIG_ESP32P4_SELECTS_REV_LESS_V3) check the ROM stack at SOC_ROM_STACK_START_REV2 (soc.h), the
                # ROM_STACK_START of ``verify_load_addresses`` in esp_image_format.c.
                ram_by_generation=(
                    (
                        "v6.1",
                        (
                            _ld_regions(0, 0x4FF3_ABD0, 0x4FF3_CFC0, loader_len=0x8000),
                            _ld_regions(300, 0x4FFB_CFC0, 0x4FFB_CFC0, loader_len=0x8000),
                        ),
                    ),
                ),
                extra_mapped=(_s(0x4800_0000, 0x4C00_0000),),
                max_flash_span=1 << 32,
                # MMU_LL_FLASH_MMU_ID and MMU_LL_PSRAM_MMU_ID: 1024 entries each (MMU_ENTRY_NUM).
                mmu=(_bus(0x4000_0000, 0x4400_0000, 1024), _psram_mmu(0x4800_0000, 0x4C00_0000, 1024)),
            ),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-P4",
            uf2_family_id=0x3D308E94,
            secure_boot=SecureBoot(RSA_AND_ECDSA_384, 3),
            flash_encryption=XTS_128_256,
        ),
        Chip(
            name="esp32s31",
            image_chip_id=0x0020,
            bootloader_offset=0x2000,
            elf_machine=EM_RISCV,
            # The flash window is the one the ESP-IDF loader maps (SOC_IROM/DROM 0x40000000..0x44000000
            # in soc.h, ``should_map``). esptool 5.6 declares 0x40000000..0x54000000 and esp-hal links
            # flash up to 0x50000000, but the bootloader maps nothing of flash past 0x44000000: the
            # rest is PSRAM's own MMU (0x50000000..0x54000000, SOC_EXTRAM), below as ``extra_mapped``.
            memory=(
                _m(Region.RTC_IRAM, 0x2E00_0000, 0x2E00_8000),
                _m(Region.SRAM, 0x2F00_0000, 0x2F08_0000),
                _m(Region.IROM, 0x4000_0000, 0x4400_0000),
            ),
            flash_freqs=_FREQS_80_40_20,
            default_flash_freq="80m",
            boot=BootFacts(
                drom=_s(0x4000_0000, 0x4400_0000),
                irom=_s(0x4000_0000, 0x4400_0000),
                # bootloader-esp32s31.memory.ld.in (v6.1): bootloader_usable_dram_end; SOC_ROM_STACK_START.
                bootloader_ram=(_ld_regions(0, 0x2F07_AFB0, 0x2F07_CFB0),),
                # SOC_MMU_PER_EXT_MEM_TARGET: ``unpack_load_app`` counts PSRAM segments with text and rodata.
                extra_mapped=(_s(0x5000_0000, 0x5400_0000),),
                max_flash_span=1 << 32,
                # ext_mem_defs.h: SOC_MMU_ENTRY_NUM 1024 for each MMU, SOC_MMU_FLASH/PSRAM_VADDR_BASE.
                mmu=(_bus(0x4000_0000, 0x4400_0000, 1024), _psram_mmu(0x5000_0000, 0x5400_0000, 1024)),
            ),
            # The flash MMU's page sizes (mmu_ll_set_page_size, MMU_LL_FLASH_MMU_ID); PSRAM's MMU has its own.
            mmu_page_sizes=(32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB),
            unified_flash_map=True,
            # esptool's CHIP_NAME spelling, which esp-web-tools' chipFamily follows.
            esp_web_tools_family="ESP32-S31",
            uf2_family_id=0x3101F7C1,
            secure_boot=SecureBoot(RSA_ONLY, 3),
            flash_encryption=XTS_128_256,
        ),
        Chip(
            name="esp32h4",
            image_chip_id=0x001C,
            bootloader_offset=0x2000,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4081_0000, 0x4086_0000),
                _m(Region.IROM, 0x4200_0000, 0x4400_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_4000),
            ),
            flash_freqs=_FREQS_48_24,
            default_flash_freq="48m",
            boot=BootFacts(
                drom=_BUS_42,
                irom=_BUS_42,
                # bootloader-esp32h4.memory.ld.in (v6.1); no prebuilt bootloader exists to compare.
                bootloader_ram=(_ld_regions(0, 0x4085_D350, 0x4085_D350),),
                max_flash_span=1 << 32,
                # ext_mem_defs.h: SOC_MMU_ENTRY_NUM 512 from SOC_MMU_IBUS_VADDR_BASE.
                mmu=(_bus(0x4200_0000, 0x4400_0000, 512),),
            ),
            mmu_page_sizes=_CONFIGURABLE_PAGES,
            unified_flash_map=True,
            esp_web_tools_family="ESP32-H4",
            uf2_family_id=0x9E0BAA8A,
            # SOC_SECURE_BOOT_SUPPORTED is 0 in ESP-IDF v6.1: no Secure Boot V2.
            flash_encryption=XTS_128_256,
            crystals_mhz=(32,),
        ),
        Chip(
            name="esp32h21",
            image_chip_id=0x0019,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4085_0000),
                _m(Region.IROM, 0x4200_0000, 0x4300_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_1000),
            ),
            flash_freqs=_FREQS_48_24,
            default_flash_freq="48m",
            boot=BootFacts(
                drom=_s(0x4200_0000, 0x4300_0000),
                irom=_s(0x4200_0000, 0x4300_0000),
                # bootloader-esp32h21.memory.ld.in (v6.1); no prebuilt bootloader exists to compare.
                bootloader_ram=(_ld_regions(0, 0x4084_9A78, 0x4084_F380),),
                # ext_mem_defs.h: SOC_MMU_ENTRY_NUM 256 from SOC_MMU_IBUS_VADDR_BASE.
                mmu=(_bus(0x4200_0000, 0x4300_0000, 256),),
            ),
            mmu_page_sizes=_CONFIGURABLE_PAGES,
            unified_flash_map=True,
            esp_web_tools_family="ESP32-H21",
            uf2_family_id=0xB6DD00AF,
            secure_boot=SecureBoot(RSA_ONLY, 3),
            flash_encryption=XTS_128,
            crystals_mhz=(32,),
        ),
    )
}

#: Every chip's bootloader offset, lowest first: where a merged image or flash dump may hold the bootloader.
BOOTLOADER_OFFSETS = tuple(sorted({chip.bootloader_offset for chip in CHIPS.values()}))


def get_chip(name: str | Chip) -> Chip:
    """Look a chip up by name (case-insensitive, ``ESP32-C3`` and ``esp32c3`` both work); a Chip is returned as is."""
    if isinstance(name, Chip):
        return name
    key = name.strip().lower().replace("-", "").replace("_", "")
    try:
        return CHIPS[key]
    except KeyError:
        raise UsageError(f"unknown chip '{name}'; use one of {', '.join(CHIPS)}", field="--chip") from None


def chip_by_image_id(chip_id: int) -> Chip | None:
    for chip in CHIPS.values():
        if chip.image_chip_id == chip_id:
            return chip
    return None


def flash_size_bytes(name: str) -> int:
    """Bytes in a flash size name such as ``4MB``."""
    key = normalize_flash_size(name)
    return int(key[:-2]) * MiB


def normalize_flash_size(name: str) -> str:
    key = name.strip().upper().replace("MIB", "MB")
    if key.endswith("M"):
        key += "B"
    if key not in FLASH_SIZES:
        raise UsageError(f"unknown flash size '{name}'; use one of {', '.join(FLASH_SIZES)}", field="--flash-size")
    return key


def flash_size_name(code: int) -> str:
    for name, c in FLASH_SIZES.items():
        if c == code:
            return name
    return f"0x{code:x}"


def normalize_flash_mode(mode: str) -> str:
    key = mode.strip().lower()
    if key not in FLASH_MODES:
        raise UsageError(f"unknown flash mode '{mode}'; use one of {', '.join(FLASH_MODES)}", field="--flash-mode")
    return key


def boot_flash_mode(mode: str) -> str:
    """The mode image headers and esptool arguments carry for the requested ``mode``."""
    return BOOT_FLASH_MODE.get(mode, mode)


def flash_mode_name(code: int) -> str:
    for name, c in FLASH_MODES.items():
        if c == code:
            return name
    return f"0x{code:x}"
