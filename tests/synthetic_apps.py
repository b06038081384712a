"""Synthetic apps in the shapes the bootloader model cares about, built into images: shared by the layout,
loader-generation and bootloader-set tests."""

from __future__ import annotations

from elfbuild import EM_RISCV, EM_XTENSA, Sec, app_descriptor, build_elf

from imgtool.chips.table import CHIPS, Region
from imgtool.chips.table import EM_XTENSA as XTENSA
from imgtool.image.build import build_app_image

TEXT = b"\x13\x00\x00\x00" * 16


def ram_base(chip) -> int:
    """A DRAM address well away from the bootloader's own RAM on every chip."""
    return next(r.start for r in chip.boot.load if r.region is Region.DRAM) + 0x2_0000


def flash_bases(chip) -> tuple[int, int]:
    """Where rodata and text start (the same bus on shared-bus chips)."""
    return chip.boot.drom.start, chip.boot.irom.start


def build(tmp_path, chip_name: str, sections: list[Sec], entry: int | None = None):
    chip = CHIPS[chip_name]
    text = next(s for s in sections if s.name.startswith(".text"))
    path = tmp_path / f"{chip_name}.elf"
    machine = EM_XTENSA if chip.elf_machine == XTENSA else EM_RISCV
    path.write_bytes(build_elf(sections, machine=machine, entry=entry or text.addr, symbols=[f"{chip_name}.x-cgu.0"]))
    return build_app_image(path, chip=chip_name)


def base_sections(chip_name: str, *, rodata_len=0x60, text_at=None, extra=()):
    chip = CHIPS[chip_name]
    ro, tx = flash_bases(chip)
    ram = ram_base(chip)
    desc_at = ro + 0x20
    rodata_end = desc_at + 0x100 + rodata_len
    return [
        Sec(".rodata_desc", desc_at, app_descriptor(), flags="A"),
        Sec(".rodata", desc_at + 0x100, b"R" * rodata_len, flags="A"),
        Sec(".text", text_at if text_at is not None else tx + 0x1_0020, TEXT, flags="AX"),
        Sec(".data", ram, b"DATA" * 4, flags="WA"),
        *extra,
    ], rodata_end
