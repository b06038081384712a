"""How much of each memory the firmware uses: the first question after a release build (like `idf.py size`)."""

from __future__ import annotations


from imgtool.chips.table import Chip, Region
from imgtool.elf.reader import ElfInfo

#: NOBITS sections that reserve address space rather than hold program state.
_RESERVATION_MARKERS = ("stack", "heap", "dummy")

FLASH_CODE = "flash code"
FLASH_RODATA = "flash rodata"
IRAM = "IRAM"
DRAM = "DRAM"
RTC = "RTC"
IMAGE = "image (flash)"


class RegionUsage:
    """One row of the size report: bytes used of a region's capacity (None: unbounded); a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up."""

    __slots__ = ("name", "used", "capacity")

    def __init__(self, name: str, used: int, capacity: int | None):
        self.name = name
        self.used = used
        self.capacity = capacity

    @property
    def percent(self) -> float | None:
        return 100.0 * self.used / self.capacity if self.capacity else None


class SizeReport:
    """The app's use of each memory region, in report order."""

    __slots__ = ("rows",)

    def __init__(self, rows: tuple[RegionUsage, ...]):
        self.rows = rows

    def as_dict(self) -> list[dict]:
        return [{"region": r.name, "used": r.used, "capacity": r.capacity} for r in self.rows]


def _bucket(region: Region, executable: bool) -> str:
    if region.flash_mapped:
        return FLASH_CODE if executable else FLASH_RODATA
    if region in (Region.RTC_IRAM, Region.RTC_DRAM, Region.RTC_DATA):
        return RTC
    if region in (Region.SRAM, Region.TCM, Region.CACHE_RAM):
        return IRAM if executable else DRAM
    return IRAM if region is Region.IRAM else DRAM


def size_report(chip: Chip, elf: ElfInfo, pieces, image_size: int, flash_size: int) -> SizeReport:
    """Bytes per memory kind; RAM includes zero-initialised data but not stack/heap reservations."""
    used = {FLASH_CODE: 0, FLASH_RODATA: 0, IRAM: 0, DRAM: 0, RTC: 0}
    executable = {p.addr: p.executable for p in elf.pieces}
    for piece in pieces:
        used[_bucket(piece.region, executable.get(piece.addr, False))] += len(piece.data)
    for nob in elf.nobits:
        if any(marker in nob.name.lower() for marker in _RESERVATION_MARKERS):
            continue
        rng = chip.region_of(nob.addr, nob.size)
        if rng is not None and not rng.region.flash_mapped:
            used[_bucket(rng.region, nob.executable)] += nob.size
    sram = chip.capacity(Region.SRAM)
    capacity = {
        FLASH_CODE: None,
        FLASH_RODATA: None,
        IRAM: chip.capacity(Region.IRAM) or sram or None,
        DRAM: chip.capacity(Region.DRAM) or sram or None,
        RTC: chip.capacity(Region.RTC_IRAM) + chip.capacity(Region.RTC_DRAM) + chip.capacity(Region.RTC_DATA) or None,
    }
    rows = [RegionUsage(name, used[name], capacity[name]) for name in used if used[name] or name in (IRAM, DRAM)]
    rows.append(RegionUsage(IMAGE, image_size, flash_size))
    return SizeReport(tuple(rows))
