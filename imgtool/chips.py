"""Every chip fact imgtool needs, as one declarative table.

Numbers come from Espressif's public documentation and esptool's target
definitions. Code looks facts up here; nothing else branches on chip names.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

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

#: Chip revision range meaning "any revision" (major * 100 + minor encoding).
ANY_REVISION_MAX = 0xFFFF


def revision_name(full: int) -> str:
    """A major * 100 + minor chip revision as ESP-IDF and esptool print it: 301 → ``v3.1``."""
    return f"v{full // 100}.{full % 100}"


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


class Chip(NamedTuple):
    name: str
    image_chip_id: int
    bootloader_offset: int
    elf_machine: int
    memory: tuple[MemoryRange, ...]
    flash_freqs: dict[str, int]
    default_flash_freq: str
    rust_targets: tuple[str, ...]
    mmu_page_sizes: tuple[int, ...] = (DEFAULT_MMU_PAGE_SIZE,)
    #: True when code and read-only data share one flash-mapped address range.
    unified_flash_map: bool = False
    esp_web_tools_family: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def arch(self) -> str:
        return "xtensa" if self.elf_machine == EM_XTENSA else "riscv"

    @property
    def display_name(self) -> str:
        return self.esp_web_tools_family or self.name.upper()

    def ranges(self, region: Region) -> tuple[MemoryRange, ...]:
        return tuple(r for r in self.memory if r.region is region)

    def region_of(self, addr: int, length: int = 1) -> MemoryRange | None:
        """The memory range that holds ``[addr, addr+length)`` entirely, or None."""
        for rng in self.memory:
            if rng.contains(addr, length):
                return rng
        return None

    def is_flash_mapped(self, addr: int) -> bool:
        rng = self.region_of(addr)
        return rng is not None and rng.region.flash_mapped

    def capacity(self, region: Region) -> int:
        return sum(r.size for r in self.ranges(region))

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


_CLASSIC_FREQS = {"80m": 0xF, "40m": 0x0, "26m": 0x1, "20m": 0x2}
_XTENSA = ("xtensa",)

CHIPS: dict[str, Chip] = {
    c.name: c
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
                _m(Region.IRAM, 0x4007_0000, 0x400C_0000),
                _m(Region.RTC_IRAM, 0x400C_0000, 0x400C_2000),
                _m(Region.IROM, 0x400D_0000, 0x4040_0000),
                _m(Region.RTC_DATA, 0x5000_0000, 0x5000_2000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="40m",
            rust_targets=("xtensa-esp32-none-elf",),
            esp_web_tools_family="ESP32",
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
            rust_targets=("xtensa-esp32s2-none-elf",),
            esp_web_tools_family="ESP32-S2",
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
            rust_targets=("xtensa-esp32s3-none-elf",),
            esp_web_tools_family="ESP32-S3",
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
            rust_targets=("riscv32imc-unknown-none-elf",),
            mmu_page_sizes=(16 * KiB, 32 * KiB, 64 * KiB),
            esp_web_tools_family="ESP32-C2",
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
            rust_targets=("riscv32imc-unknown-none-elf",),
            esp_web_tools_family="ESP32-C3",
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
            flash_freqs={"80m": 0xF, "40m": 0x0, "20m": 0x2},
            default_flash_freq="80m",
            rust_targets=("riscv32imac-unknown-none-elf",),
            mmu_page_sizes=(8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C5",
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
            rust_targets=("riscv32imac-unknown-none-elf",),
            mmu_page_sizes=(8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C6",
        ),
        Chip(
            name="esp32c61",
            image_chip_id=0x0014,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4086_0000),
                _m(Region.IROM, 0x4200_0000, 0x4400_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_4000),
            ),
            flash_freqs={"80m": 0xF, "40m": 0x0, "20m": 0x2},
            default_flash_freq="80m",
            rust_targets=("riscv32imac-unknown-none-elf",),
            mmu_page_sizes=(8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-C61",
        ),
        Chip(
            name="esp32h2",
            image_chip_id=0x0010,
            bootloader_offset=0x0,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.SRAM, 0x4080_0000, 0x4085_0000),
                _m(Region.IROM, 0x4200_0000, 0x4300_0000),
                _m(Region.RTC_IRAM, 0x5000_0000, 0x5000_4000),
            ),
            flash_freqs={"48m": 0xF, "24m": 0x0, "16m": 0x1, "12m": 0x2},
            default_flash_freq="48m",
            rust_targets=("riscv32imac-unknown-none-elf",),
            mmu_page_sizes=(8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-H2",
        ),
        Chip(
            name="esp32p4",
            image_chip_id=0x0012,
            bootloader_offset=0x2000,
            elf_machine=EM_RISCV,
            memory=(
                _m(Region.TCM, 0x3010_0000, 0x3010_2000),
                _m(Region.IROM, 0x4000_0000, 0x4C00_0000),
                _m(Region.SRAM, 0x4FF0_0000, 0x4FFC_0000),
                _m(Region.RTC_IRAM, 0x5010_8000, 0x5011_0000),
            ),
            flash_freqs=_CLASSIC_FREQS,
            default_flash_freq="80m",
            rust_targets=("riscv32imafc-unknown-none-elf",),
            unified_flash_map=True,
            esp_web_tools_family="ESP32-P4",
        ),
    )
}


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
