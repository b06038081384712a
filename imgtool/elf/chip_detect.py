"""Which chip an ELF is for: esp-hal's ``build_info.CHIP_NAME`` when the ELF has it, else its
machine, its addresses and the chip-named crates it carries.

Used by the image builder when ``--chip`` is left out, and to check a ``--chip`` given
against the ELF. Chip facts come from :mod:`imgtool.chips.table`; this only compares.
"""

from __future__ import annotations

from imgtool.chips.table import CHIPS, EM_XTENSA, Chip, get_chip
from imgtool.elf.reader import ElfInfo
from imgtool.errors import ElfError

#: The ESP8266's instruction RAM, where its firmware's entry point lives; no supported chip starts there.
ESP8266_IRAM = range(0x4010_0000, 0x4011_0000)


def detect_chip(elf: ElfInfo) -> Chip:
    """Pick the chip: the one esp-hal's metadata names, else from the ELF's machine, addresses and crates.

    Addresses fit a chip when it has memory at every one of them, counting RAM only the ROM loads
    (an image the ROM starts, such as a second-stage bootloader, may use it).
    """
    stated = CHIPS.get(elf.metadata_chip or "")
    if stated is not None and stated.elf_machine == elf.machine:
        return stated
    if elf.machine == EM_XTENSA and elf.entry in ESP8266_IRAM and not elf.chip_hints:
        raise ElfError(
            f"the entry point 0x{elf.entry:08x} is in the ESP8266's IRAM: ESP8266 firmware is not supported "
            "(imgtool handles the ESP32 family); use esptool elf2image --chip esp8266",
            path=elf.path,
        )
    candidates = [c for c in CHIPS.values() if c.elf_machine == elf.machine]
    fitting = [c for c in candidates if all(c.region_of(p.addr, p.size, rom_loaded=True) for p in elf.pieces)]
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
    """The chip named by ``chip`` (checked against the ELF, a mismatch of crate names added to ``warnings``), else the detected one."""
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
    if elf.metadata_chip and elf.metadata_chip in CHIPS and elf.metadata_chip != chosen.name:
        warnings.append(f"{elf.path}: the ELF is built for {elf.metadata_chip} (esp-hal's build_info.CHIP_NAME) but --chip is {chosen.name}")
    elif elf.chip_hints and chosen.name not in elf.chip_hints:
        warnings.append(
            f"{elf.path}: the ELF mentions {', '.join(sorted(elf.chip_hints))} but --chip is {chosen.name}"
        )
    return chosen


__all__ = ["detect_chip", "resolve_chip"]
