"""Where every part goes in flash: a plan made of values, checked before anything is rendered or written.

From the chip, the app image, the placed bootloader and the partition table,
:func:`plan_layout` places bootloader, table, otadata, app and data partition
images, and refuses overlaps and anything past the flash size. The plan
(:class:`FlashLayout`) also assembles the merged flash image, which starts at
the chip's bootloader offset the way ``esptool merge-bin`` lays it out.

Data flows one way: this layout plan → :mod:`imgtool.flash.outputs` (every output file, the
pack folder's own format from :mod:`imgtool.flash.pack_folder`) → :mod:`imgtool.pack.result`
(the report) and the output folder.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

from imgtool.chips.table import ERASED, Chip, flash_size_bytes
from imgtool.chips.units import align_up
from imgtool.errors import LayoutError, UsageError
from imgtool.output_names import (
    BOOTLOADER_FILE,
    FIXED_FILES,
    OTADATA_FILE,
    PARTITIONS_BIN_FILE,
    app_file_name,
    check_output_name,
    merged_file_name,
)
from imgtool.partitions.choice import check_app_fits
from imgtool.partitions.otadata import boot_plan, otadata_for
from imgtool.partitions.table import (
    DEFAULT_TABLE_OFFSET,
    OFFSET_ALIGN,
    TABLE_SECTOR_SIZE,
    TYPE_APP,
    Partition,
    PartitionTable,
)


class FlashSettings(NamedTuple):
    """SPI flash parameters as esptool spells them (``dio``, ``80m``, ``4MB``)."""

    mode: str
    freq: str
    size: str

    def esptool_args(self) -> list[str]:
        """``write-flash`` options in the short spellings esptool 4.x and 5.x share (5.x warns on ``--flash_mode``, 4.x refuses ``--flash-mode``)."""
        return ["-fm", self.mode, "-ff", self.freq, "-fs", self.size]

    def to_dict(self) -> dict:
        return {"flash_mode": self.mode, "flash_size": self.size, "flash_freq": self.freq}


class FlashPart(NamedTuple):
    """One file written to flash at ``offset``.

    A NamedTuple, not a frozen dataclass: it is defined on every pack's start-up (issue 23).
    """

    name: str  # bootloader, partition-table, otadata, app (ESP-IDF's flasher_args.json keys), or a data partition's label
    offset: int
    file: str
    data: bytes
    encrypted: bool = False
    #: A device in flash-encryption mode reads it through decryption (data partitions: their ``encrypted`` flag).
    flash_encrypted: bool = True

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    def __repr__(self) -> str:
        return (
            f"FlashPart(name={self.name!r}, offset={self.offset!r}, file={self.file!r}, "
            f"encrypted={self.encrypted!r}, flash_encrypted={self.flash_encrypted!r})"
        )


# --------------------------------------------------------------------------- the merged image

#: The erased gaps of a merged image are given in pieces of at most this many bytes, all the same object.
ERASED_BLOCK_LEN = 1 << 16


class MergedImage:
    """The merged flash image as its pieces (parts in place, erased bytes between), in flash order.

    Written and hashed piece by piece (:meth:`chunks`), so a ``--fill-flash-size`` image of 16 MB is
    never held in memory whole; ``bytes()`` of it joins the pieces (the release archive needs them).
    Its bytes are :meth:`FlashLayout.merged_bytes`'s: parts never overlap (:func:`plan_layout`).
    """

    __slots__ = ("_parts", "_start", "_end")

    def __init__(self, parts, start: int, end: int):
        self._parts = sorted(parts, key=lambda p: p.offset)
        self._start = start
        self._end = end

    def __len__(self) -> int:
        return self._end - self._start

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self):
        """The image's bytes in flash order: each part's data, and erased blocks for the gaps."""
        at = self._start
        for part in self._parts:
            yield from _erased(part.offset - at)
            yield part.data
            at = part.end
        yield from _erased(self._end - at)


_ERASED_BLOCK = ERASED * ERASED_BLOCK_LEN


def _erased(length: int):
    """``length`` erased bytes as views of one shared block."""
    block = memoryview(_ERASED_BLOCK)
    for start in range(0, length, ERASED_BLOCK_LEN):
        yield block[: min(ERASED_BLOCK_LEN, length - start)]


# --------------------------------------------------------------------------- the layout


#: A layout's bootloader source when none is given: a bootloader file, read-only so layouts never share a dict one could change.
_FILE_SOURCE: MappingProxyType = MappingProxyType({"source": "file"})


class FlashLayout(NamedTuple):
    """The layout plan: every part at its offset; :mod:`imgtool.flash.outputs` renders the files.

    A NamedTuple, not a dataclass: it is defined on every pack's start-up (issue 23), built once by
    :func:`plan_layout` and never changed (encryption makes a new one).
    """

    chip: Chip
    name: str
    settings: FlashSettings
    parts: tuple[FlashPart, ...]
    app_partition_name: str
    app_partition_offset: int
    app_partition_size: int
    partitions_csv: str
    fill_flash_size: bool = False
    version: str | None = None
    project_name: str | None = None
    warnings: tuple[str, ...] = ()
    #: Which bootloader build was placed: ``{"source": "pinned", "variant": ..., "crystal_mhz": ...}`` or ``{"source": "file"}``.
    bootloader_source: dict = _FILE_SOURCE
    #: The bootloader is written as it came (it is signed): its header holds its own flash settings.
    bootloader_kept: bool = False

    @property
    def start(self) -> int:
        return self.chip.bootloader_offset

    @property
    def flash_bytes(self) -> int:
        return flash_size_bytes(self.settings.size)

    @property
    def end(self) -> int:
        return self.flash_bytes if self.fill_flash_size else max(p.end for p in self.parts)

    @property
    def merged_file(self) -> str:
        return merged_file_name(self.name)

    def part(self, name: str) -> FlashPart | None:
        for p in self.parts:
            if p.name == name:
                return p
        return None

    @property
    def app(self) -> FlashPart:
        part = self.part("app")
        assert part is not None
        return part

    def merged_bytes(self) -> bytearray:
        """The flash image from the bootloader offset on: parts in place, 0xFF between them."""
        out = bytearray(ERASED) * (self.end - self.start)
        for p in self.parts:
            out[p.offset - self.start : p.end - self.start] = p.data
        return out

    def merged_image(self) -> MergedImage:
        """:meth:`merged_bytes` as the pieces it is made of, for writing and hashing without building it."""
        return MergedImage(self.parts, self.start, self.end)

    @property
    def encrypted(self) -> bool:
        return any(p.encrypted for p in self.parts)

    @property
    def keeps_headers(self) -> bool:
        """esptool must not rewrite the bootloader header (``write-flash`` does unless told ``keep``):
        encrypted parts, or a kept signed bootloader whose signature covers its header."""
        return self.encrypted or self.bootloader_kept


def plan_layout(
    chip: Chip,
    *,
    name: str,
    app: bytes,
    bootloader: bytes,
    table: PartitionTable,
    table_offset: int = DEFAULT_TABLE_OFFSET,
    settings: FlashSettings,
    app_partition: str | Partition | None = None,
    otadata: bytes | None = None,
    fill_flash_size: bool = False,
    version: str | None = None,
    project_name: str | None = None,
    warnings=(),
    bootloader_source: dict | None = None,
    data_parts=(),
    bootloader_kept: bool = False,
) -> FlashLayout:
    """Place bootloader, table, otadata and app, then ``data_parts`` (:class:`imgtool.partitions.data_images.DataImage`,
    listed after the app as ESP-IDF lists them); refuse overlaps and anything past the flash size.

    ``otadata`` defaults, when the table has an otadata partition, to contents that make the
    bootloader start the app's partition (:func:`imgtool.partitions.otadata.otadata_for`): erased for the
    factory app or ota_0 without one, else an entry selecting the app's OTA slot.

    ``app_partition`` names the app's partition (the boot default when None); a
    :class:`~imgtool.partitions.table.Partition` is one :func:`imgtool.partitions.choice.check_app_fits`
    already chose, so the app-fits check is not made twice.
    """
    check_output_name(name)
    check_table_offset(table_offset, chip)
    flash_bytes = flash_size_bytes(settings.size)
    target = app_partition if isinstance(app_partition, Partition) else check_app_fits(table, len(app), app_partition)
    _check_app_partition(table, target, flash_bytes, settings.size)
    parts = [
        FlashPart("bootloader", chip.bootloader_offset, BOOTLOADER_FILE, bytes(bootloader)),
        FlashPart("partition-table", table_offset, PARTITIONS_BIN_FILE, bytes(table.to_binary())),
    ]
    warnings = list(warnings)
    if table.otadata is not None:
        parts.append(_otadata_part(table, target, otadata))
    else:
        warnings.extend(_no_otadata_warning(table, target))
    parts.append(FlashPart("app", target.offset, app_file_name(name), bytes(app)))
    parts.sort(key=lambda p: p.offset)
    parts += _data_parts(data_parts, name)
    _check_overlaps(sorted(parts, key=lambda p: p.offset), flash_bytes, settings.size)
    return FlashLayout(
        chip=chip,
        name=name,
        settings=settings,
        parts=tuple(parts),
        app_partition_name=target.name,
        app_partition_offset=target.offset,
        app_partition_size=target.size,
        partitions_csv=table.to_csv(),
        fill_flash_size=fill_flash_size,
        version=version,
        project_name=project_name,
        warnings=tuple(warnings),
        bootloader_source=dict(bootloader_source or {"source": "file"}),
        bootloader_kept=bootloader_kept,
    )


def _check_app_partition(table: PartitionTable, target: Partition, flash_bytes: int, size_name: str) -> None:
    """Refuse a table reaching past the flash, and an app partition the MMU cannot map from its start."""
    beyond = table.past_flash_end(flash_bytes)
    if beyond is not None:
        raise LayoutError(
            f"partition '{beyond.name}' ends at 0x{beyond.end:x}, past the end of the "
            f"{size_name} flash; pass a larger --flash-size or a smaller partition table",
            field="partition table",
        )
    if target.offset % OFFSET_ALIGN[TYPE_APP]:
        raise LayoutError(
            f"app partition '{target.name}' starts at 0x{target.offset:x}, which is not 64 KiB aligned; "
            "the MMU can only map it from a 0x10000 boundary",
            field="partition table",
        )


def _otadata_part(table: PartitionTable, target: Partition, otadata: bytes | None) -> FlashPart:
    """The otadata partition's contents: ``otadata`` as given, else what makes the bootloader start ``target``."""
    part = table.otadata
    if otadata is None:
        otadata = otadata_for(table, target)
    if len(otadata) > part.size:
        raise LayoutError(
            f"otadata contents are {len(otadata)} bytes but partition '{part.name}' holds {part.size}",
            field="otadata",
        )
    return FlashPart("otadata", part.offset, OTADATA_FILE, bytes(otadata))


def _data_parts(data_parts, name: str) -> list[FlashPart]:
    """The data partition images, each refused when its file name is another output's."""
    taken = {*FIXED_FILES, app_file_name(name), merged_file_name(name)}
    parts = []
    for image in data_parts:
        if image.file in taken:
            raise UsageError(
                f"the image for partition '{image.label}' would be written as {image.file}, which is another output; "
                "rename the partition or the ELF",
                field="--data",
            )
        parts.append(FlashPart(image.label, image.partition.offset, image.file, image.data, flash_encrypted=image.partition.encrypted))
    return parts


def _no_otadata_warning(table: PartitionTable, target) -> list[str]:
    """Without otadata the bootloader tries the factory app first; say so when the app is elsewhere."""
    first = boot_plan(table, None).partition
    if first is None or first == target:
        return []
    return [
        f"{table.source}: the table has no otadata partition, so the bootloader tries '{first.name}' first and "
        f"starts '{target.name}' only while '{first.name}' holds no app; add an otadata partition to select it"
    ]


def check_table_offset(offset: int, chip: Chip) -> None:
    """Refuse a partition-table offset the bootloader cannot use, naming the option (not a partition it pushes)."""
    if offset % TABLE_SECTOR_SIZE:
        raise UsageError(
            f"the partition table offset 0x{offset:x} is not a multiple of 0x{TABLE_SECTOR_SIZE:x} (4 KiB); "
            f"use e.g. 0x{align_up(offset, TABLE_SECTOR_SIZE):x}",
            field="--partition-table-offset",
        )
    if offset <= chip.bootloader_offset:
        raise UsageError(
            f"the partition table offset 0x{offset:x} is not above {chip.name}'s bootloader offset "
            f"0x{chip.bootloader_offset:x}; use the default 0x{DEFAULT_TABLE_OFFSET:x} or higher",
            field="--partition-table-offset",
        )


def _check_overlaps(parts: list[FlashPart], flash_bytes: int, size_name: str) -> None:
    for before, after in zip(parts, parts[1:]):
        if before.end > after.offset:
            raise LayoutError(
                f"{before.name} ({before.size} bytes at 0x{before.offset:x}, ends 0x{before.end:x}) overlaps "
                f"{after.name} at 0x{after.offset:x}"
                + ("; use a smaller bootloader or a higher --partition-table-offset" if before.name == "bootloader" else ""),
                field=before.name,
            )
    for p in parts:
        if p.end > flash_bytes:
            raise LayoutError(
                f"{p.name} ends at 0x{p.end:x}, past the end of the {size_name} flash; pass a larger --flash-size",
                field=p.name,
            )


__all__ = ["FlashLayout", "FlashPart", "FlashSettings", "check_table_offset", "plan_layout"]
