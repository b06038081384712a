"""Which ESP-IDF loader a second-stage bootloader image is, so apps are judged by that loader's rules.

A bootloader build carries ``esp_bootloader_desc_t`` (``esp_bootloader_desc.h``; declared in
:mod:`imgtool.image.format`) at the start of its first DRAM segment, with the ESP-IDF version it was
built from. The version's major number picks the :class:`Generation` whose rules ``boot_rules``
applies; never the pinned set a file came from (espflash v4.5.0's "v5.5" ``esp32s31-bootloader.bin``
is a v6.2-dev build). A bootloader without a descriptor (ESP-IDF releases before it existed, or a
file whose first DRAM segment does not start with it) is judged by :data:`DEFAULT_GENERATION`, the
v5.5 rules: the older of the two modelled loaders, whose bootloader RAM is the one checked longest.

What differs between generations is data: the chip facts that changed are in
``chips.BootFacts.ram_by_generation`` keyed by :attr:`Generation.name`; this module holds no chip names.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from imgtool.chips.table import Chip, Region
from imgtool.image.format import ParsedImage, c_string, parse_bootloader_descriptor, parse_image


class Generation:
    """One modelled ESP-IDF loader: its reference sources are ``reference/esp-idf-NAME/``.

    A plain class (there is one instance per generation, below): a NamedTuple costs ~0.2 ms at a pack's start-up.
    """

    __slots__ = ("name", "idf_major")

    def __init__(self, name: str, idf_major: int):
        self.name = name
        #: ESP-IDF major versions whose bootloaders behave as this one.
        self.idf_major = idf_major


V5 = Generation("v5.5", 5)
V6 = Generation("v6.1", 6)
GENERATIONS = (V5, V6)
DEFAULT_GENERATION = V5
#: ``idf_ver`` as ESP-IDF writes it: ``v5.5.1-838-gd66ebb86d2e``, ``v6.1-beta1-...``, ``v6.2-dev-...``.
_IDF_VERSION = re.compile(r"v?(\d+)\.(\d+)")
#: Where a bootloader's own data lives; its descriptor opens the first such segment.
_DATA_REGIONS = (Region.DRAM, Region.SRAM)


class LoaderBuild(NamedTuple):
    """What a bootloader image says about itself, and the generation it is judged as."""

    generation: Generation
    #: ``idf_ver`` from its descriptor; None when it has none.
    idf_ver: str | None = None

    @property
    def label(self) -> str:
        """For reports: ``ESP-IDF v6.1-beta1-497-g14f663f003e (v6.1 loader rules)``."""
        if self.idf_ver is None:
            return f"no bootloader descriptor ({self.generation.name} loader rules, the default)"
        return f"ESP-IDF {self.idf_ver} ({self.generation.name} loader rules)"

    def as_dict(self) -> dict:
        return {"idf_ver": self.idf_ver, "rules": self.generation.name}


def generation_for_version(idf_ver: str) -> Generation | None:
    """The modelled generation for an ESP-IDF version string; newer majors get the newest rules, older none."""
    match = _IDF_VERSION.match(idf_ver.strip())
    if match is None:
        return None
    major = int(match.group(1))
    if major < GENERATIONS[0].idf_major:
        return None
    return next((g for g in GENERATIONS if g.idf_major == major), GENERATIONS[-1])


def descriptor_segment(chip: Chip | None, parsed: ParsedImage):
    """The segment a bootloader keeps its descriptor in: its first DRAM segment (segment 0 if the chip is unknown)."""
    for ps in parsed.segments:
        if chip is None:
            return ps.segment
        where = chip.region_of(ps.segment.addr, len(ps.segment.data))
        if where is not None and where.region in _DATA_REGIONS:
            return ps.segment
    return None


def loader_build(chip: Chip | None, parsed: ParsedImage) -> LoaderBuild:
    """The bootloader's ESP-IDF version (from ``esp_bootloader_desc_t``) and the rules it is judged by."""
    segment = descriptor_segment(chip, parsed)
    desc = parse_bootloader_descriptor(segment.data) if segment is not None else None
    if desc is None:
        return LoaderBuild(DEFAULT_GENERATION)
    idf_ver = c_string(desc.idf_ver)
    return LoaderBuild(generation_for_version(idf_ver) or DEFAULT_GENERATION, idf_ver)


def loader_build_of(chip: Chip | None, data: bytes) -> LoaderBuild:
    """:func:`loader_build` for the bytes of a bootloader image."""
    return loader_build(chip, parse_image(data, what="bootloader"))


__all__ = ["DEFAULT_GENERATION", "GENERATIONS", "Generation", "LoaderBuild", "loader_build", "loader_build_of"]
