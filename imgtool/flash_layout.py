"""Where every part goes in flash, and the files that describe it: a library, no CLI, no printing.

From the chip, the app image, the placed bootloader and the partition table this
builds the merged flash image (it starts at the chip's bootloader offset, the
way ``esptool merge-bin`` lays it out) and the text of the argument files that
let plain esptool, ESP-IDF tooling and esp-web-tools flash the result:

- ``flash_args``: esptool argument file, flash settings then one ``OFFSET FILE`` line per
  part (ESP-IDF's meaning: flashing it leaves NVS and other data partitions alone, except the
  data partition images ``pack --data`` made, which follow the app as in ESP-IDF);
- ``flash_merged_args``: the same settings and the merged image at its offset;
- ``flasher_args.json``: ESP-IDF's machine-readable flashing description, plus the merged
  image and which bootloader build the pack placed (``imgtool flash`` checks the crystal with it);
- ``manifest.json``: an esp-web-tools manifest listing the parts (a web update keeps NVS);

Both argument files are run from the output folder (``esptool write-flash @flash_args``)
and use the short flash options ``-fm/-ff/-fs``, which esptool 4.x and 5.x both accept
without a deprecation warning.
- ``SHA256SUMS``: ``sha256sum -c`` format over every other output (``NAME.uf2``/``NAME.hex``
  from :mod:`imgtool.flash_formats` included when asked for).

Every text is rendered in a fixed order from values only (no time, path or
random name), so the same layout always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from imgtool.chips import Chip, flash_size_bytes
from imgtool.errors import LayoutError, UsageError
from imgtool.partitions import OFFSET_ALIGN, TYPE_APP, PartitionTable
from imgtool.table_choice import check_app_fits

#: Erased flash reads as 0xFF; the merged image fills the gaps between parts with it.
ERASED = b"\xff"

BOOTLOADER_FILE = "bootloader.bin"
PARTITIONS_CSV_FILE = "partitions.csv"
PARTITIONS_BIN_FILE = "partitions.bin"
OTADATA_FILE = "ota_data_initial.bin"
FLASH_ARGS_FILE = "flash_args"
FLASH_MERGED_ARGS_FILE = "flash_merged_args"
#: Written by imgtool 0.1 (the parts, when flash_args held the merged image); a re-pack removes it.
LEGACY_FILES = ("flash_parts_args",)
FLASHER_ARGS_JSON_FILE = "flasher_args.json"
MANIFEST_FILE = "manifest.json"
SHA256SUMS_FILE = "SHA256SUMS"
FIXED_FILES = (
    BOOTLOADER_FILE,
    PARTITIONS_CSV_FILE,
    PARTITIONS_BIN_FILE,
    OTADATA_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    MANIFEST_FILE,
    SHA256SUMS_FILE,
)

#: The parts every pack writes (flasher_args.json's keys for them); any other part is a data partition image.
CORE_PARTS = ("bootloader", "partition-table", "otadata", "app")

#: write-flash options leaving the bytes as they are (esptool patches a header it finds at the bootloader offset).
KEEP_FLASH_ARGS = ("-fm", "keep", "-ff", "keep", "-fs", "keep")


def app_file_name(name: str) -> str:
    return f"{name}.bin"


def merged_file_name(name: str) -> str:
    return f"{name}.merged.bin"


# --------------------------------------------------------------------------- value objects


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


@dataclass(frozen=True)
class FlashPart:
    """One file written to flash at ``offset``."""

    name: str  # bootloader, partition-table, otadata, app (ESP-IDF's flasher_args.json keys), or a data partition's label
    offset: int
    file: str
    data: bytes = field(repr=False, compare=False)
    encrypted: bool = False
    #: A device in flash-encryption mode reads it through decryption (data partitions: their ``encrypted`` flag).
    flash_encrypted: bool = True

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


class PartInfo(NamedTuple):
    """What a part is, without its bytes (for reports and JSON)."""

    name: str
    offset: int
    size: int
    file: str

    def to_dict(self) -> dict:
        return {"name": self.name, "offset": self.offset, "offset_hex": f"0x{self.offset:x}", "size": self.size, "file": self.file}


@dataclass(frozen=True)
class PackResult:
    """Everything ``imgtool pack`` produced, as values."""

    chip: str
    name: str
    flash: FlashSettings
    parts: tuple[PartInfo, ...]
    merged: PartInfo
    app_partition: str
    app_partition_offset: int
    app_partition_size: int
    app_size: int
    files: tuple[str, ...]
    esptool_args: tuple[str, ...]  # argv after "esptool"
    outdir: Path | None = None
    warnings: tuple[str, ...] = ()
    sha256: dict = field(default_factory=dict)
    config_files: tuple[str, ...] = ()  # espflash.toml / Cargo.toml read
    config_settings: tuple[str, ...] = ()  # the settings taken from them (the command line did not set)

    @property
    def app_usage(self) -> float:
        """Fraction of the app partition the app uses."""
        return self.app_size / self.app_partition_size if self.app_partition_size else 1.0

    @property
    def esptool_command(self) -> str:
        return shlex.join(["esptool", *self.esptool_args])

    def path(self, file: str) -> Path:
        return (self.outdir or Path(".")) / file

    def to_dict(self) -> dict:
        return {
            "chip": self.chip,
            "name": self.name,
            "outdir": str(self.outdir) if self.outdir is not None else None,
            "flash_settings": self.flash.to_dict(),
            "parts": [p.to_dict() for p in self.parts],
            "merged": self.merged.to_dict(),
            "app": {
                "size": self.app_size,
                "partition": self.app_partition,
                "partition_offset": self.app_partition_offset,
                "partition_size": self.app_partition_size,
                "used_percent": round(self.app_usage * 100, 2),
            },
            "files": list(self.files),
            "sha256": dict(self.sha256),
            "esptool_args": list(self.esptool_args),
            "esptool_command": self.esptool_command,
            "warnings": list(self.warnings),
            "config": {"files": list(self.config_files), "settings": list(self.config_settings)},
        }


# --------------------------------------------------------------------------- the layout


@dataclass
class FlashLayout:
    """The planned flash contents; ``files()`` renders every output."""

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
    bootloader_source: dict = field(default_factory=lambda: {"source": "file"})
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

    @property
    def encrypted(self) -> bool:
        return any(p.encrypted for p in self.parts)

    @property
    def keeps_headers(self) -> bool:
        """esptool must not rewrite the bootloader header (``write-flash`` does unless told ``keep``):
        encrypted parts, or a kept signed bootloader whose signature covers its header."""
        return self.encrypted or self.bootloader_kept

    def write_flash_args(self) -> list[str]:
        """Flash settings for esptool: ``keep`` when :attr:`keeps_headers`."""
        return list(KEEP_FLASH_ARGS) if self.keeps_headers else self.settings.esptool_args()

    def esptool_args(self, merged_path: str | None = None) -> list[str]:
        """argv (after ``esptool``) writing the merged image; ``merged_path`` defaults to the bare file name."""
        return [
            "--chip",
            self.chip.name,
            "write-flash",
            *self.write_flash_args(),
            f"0x{self.start:x}",
            merged_path or self.merged_file,
        ]

    def flash_args_text(self) -> str:
        """esptool argument file with one line per part, ESP-IDF's ``flash_args`` (``esptool write-flash @flash_args``)."""
        lines = [_join(self.write_flash_args())]
        lines += [_join([f"0x{p.offset:x}", p.file]) for p in self.parts]
        return "\n".join(lines) + "\n"

    def flash_merged_args_text(self) -> str:
        """esptool argument file writing the merged image (``esptool write-flash @flash_merged_args``)."""
        return f"{_join(self.write_flash_args())}\n{_join([f'0x{self.start:x}', self.merged_file])}\n"

    def flasher_args(self) -> dict:
        """ESP-IDF's ``flasher_args.json`` content, plus ``merged`` and ``imgtool`` (ignored by ESP-IDF tools)."""
        doc: dict = {
            "write_flash_args": self.write_flash_args(),
            "flash_settings": self.settings.to_dict(),
            "flash_files": {f"0x{p.offset:x}": p.file for p in self.parts},
        }
        for p in self.parts:
            doc[p.name] = _file_entry(p.offset, p.file, p.encrypted)
        doc["merged"] = _file_entry(self.start, self.merged_file, False)
        doc["extra_esptool_args"] = {
            "after": "hard-reset",
            "before": "default-reset",
            "stub": True,
            "chip": self.chip.name,
        }
        doc["imgtool"] = {"bootloader": dict(self.bootloader_source)}
        return doc

    def manifest(self) -> dict:
        """esp-web-tools manifest writing the parts, so an update keeps NVS (offsets are integers, as it requires)."""
        return {
            "name": self.project_name or self.name,
            "version": self.version or "0.0.0",
            "new_install_prompt_erase": True,
            "builds": [
                {
                    "chipFamily": self.chip.esp_web_tools_family or self.chip.name.upper(),
                    "parts": [{"path": p.file, "offset": p.offset} for p in self.parts],
                }
            ],
        }

    def files(self, formats=()) -> dict[str, bytes]:
        """Every output file, name → bytes, in a stable order; ``SHA256SUMS`` last, covering the rest.

        ``formats`` adds ``NAME.uf2``/``NAME.hex`` (:mod:`imgtool.flash_formats`) before ``SHA256SUMS``.
        """
        from imgtool.flash_formats import format_files

        out: dict[str, bytes] = {}
        app = self.app
        out[app.file] = app.data
        for p in self.parts:
            if p.name != "app":
                out[p.file] = p.data
        out[PARTITIONS_CSV_FILE] = self.partitions_csv.encode("utf-8")
        # keep the documented order: app, bootloader, table (csv, bin), otadata, merged, texts
        order = [app.file, BOOTLOADER_FILE, PARTITIONS_CSV_FILE, PARTITIONS_BIN_FILE, OTADATA_FILE]
        ordered = {k: out[k] for k in order if k in out}
        ordered.update({k: v for k, v in out.items() if k not in ordered})
        ordered[self.merged_file] = self.merged_bytes()
        ordered[FLASH_ARGS_FILE] = self.flash_args_text().encode("utf-8")
        ordered[FLASH_MERGED_ARGS_FILE] = self.flash_merged_args_text().encode("utf-8")
        ordered[FLASHER_ARGS_JSON_FILE] = _json(self.flasher_args())
        ordered[MANIFEST_FILE] = _json(self.manifest())
        ordered.update(format_files(self, formats))
        rendered = OutputFiles(ordered, {name: hashlib.sha256(data).hexdigest() for name, data in ordered.items()})
        rendered[SHA256SUMS_FILE] = sha256sums_text(rendered.sha256).encode("utf-8")
        return rendered

    def result(self, files: dict[str, bytes] | None = None, *, outdir: Path | None = None, merged_path: str | None = None) -> PackResult:
        files = files if files is not None else self.files()
        merged_size = len(files[self.merged_file]) if self.merged_file in files else self.end - self.start
        return PackResult(
            chip=self.chip.name,
            name=self.name,
            flash=self.settings,
            parts=tuple(PartInfo(p.name, p.offset, p.size, p.file) for p in self.parts),
            merged=PartInfo("merged", self.start, merged_size, self.merged_file),
            app_partition=self.app_partition_name,
            app_partition_offset=self.app_partition_offset,
            app_partition_size=self.app_partition_size,
            app_size=self.app.size,
            files=tuple(files),
            esptool_args=tuple(self.esptool_args(merged_path)),
            outdir=outdir,
            warnings=self.warnings,
            sha256=_digests(files),
        )


def plan_layout(
    chip: Chip,
    *,
    name: str,
    app: bytes,
    bootloader: bytes,
    table: PartitionTable,
    table_offset: int = 0x8000,
    settings: FlashSettings,
    app_partition: str | None = None,
    otadata: bytes | None = None,
    fill_flash_size: bool = False,
    version: str | None = None,
    project_name: str | None = None,
    warnings=(),
    bootloader_source: dict | None = None,
    data_parts=(),
    bootloader_kept: bool = False,
) -> FlashLayout:
    """Place bootloader, table, otadata and app, then ``data_parts`` (:class:`imgtool.data_parts.DataImage`,
    listed after the app as ESP-IDF lists them); refuse overlaps and anything past the flash size.

    ``otadata`` defaults, when the table has an otadata partition, to contents that make the
    bootloader start the app's partition (:func:`imgtool.otadata.otadata_for`): erased for the
    factory app or ota_0 without one, else an entry selecting the app's OTA slot.
    """
    check_output_name(name)
    flash_bytes = flash_size_bytes(settings.size)
    target = check_app_fits(table, len(app), app_partition)
    for entry in table.partitions:
        if entry.end > flash_bytes:
            raise LayoutError(
                f"partition '{entry.name}' ends at 0x{entry.end:x}, past the end of the "
                f"{settings.size} flash; pass a larger --flash-size or a smaller partition table",
                field="partition table",
            )
    if target.offset % OFFSET_ALIGN[TYPE_APP]:
        raise LayoutError(
            f"app partition '{target.name}' starts at 0x{target.offset:x}, which is not 64 KiB aligned; "
            "the MMU can only map it from a 0x10000 boundary",
            field="partition table",
        )
    table_bin = table.to_binary()
    parts = [
        FlashPart("bootloader", chip.bootloader_offset, BOOTLOADER_FILE, bytes(bootloader)),
        FlashPart("partition-table", table_offset, PARTITIONS_BIN_FILE, bytes(table_bin)),
    ]
    otadata_part = table.otadata
    warnings = list(warnings)
    if otadata_part is not None:
        if otadata is None:
            from imgtool.otadata import otadata_for

            otadata = otadata_for(table, target)
        if len(otadata) > otadata_part.size:
            raise LayoutError(
                f"otadata contents are {len(otadata)} bytes but partition '{otadata_part.name}' holds {otadata_part.size}",
                field="otadata",
            )
        parts.append(FlashPart("otadata", otadata_part.offset, OTADATA_FILE, bytes(otadata)))
    else:
        warnings.extend(_no_otadata_warning(table, target))
    parts.append(FlashPart("app", target.offset, app_file_name(name), bytes(app)))
    parts.sort(key=lambda p: p.offset)
    taken = {*FIXED_FILES, app_file_name(name), merged_file_name(name)}
    for image in data_parts:
        if image.file in taken:
            raise UsageError(
                f"the image for partition '{image.label}' would be written as {image.file}, which is another output; "
                "rename the partition or the ELF",
                field="--data",
            )
        parts.append(FlashPart(image.label, image.partition.offset, image.file, image.data, flash_encrypted=image.partition.encrypted))
    _check_overlaps(sorted(parts, key=lambda p: p.offset), chip, table_offset, flash_bytes, settings.size)
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


def _no_otadata_warning(table: PartitionTable, target) -> list[str]:
    """Without otadata the bootloader tries the factory app first; say so when the app is elsewhere."""
    from imgtool.otadata import boot_plan

    first = boot_plan(table, None).partition
    if first is None or first == target:
        return []
    return [
        f"{table.source}: the table has no otadata partition, so the bootloader tries '{first.name}' first and "
        f"starts '{target.name}' only while '{first.name}' holds no app; add an otadata partition to select it"
    ]


def check_output_name(name: str) -> None:
    # esptool reads argument files line by line, so a line break cannot be quoted away.
    if not name or name in (".", "..") or any(c in name for c in "/\x00\n\r"):
        raise UsageError(f"'{name}' cannot name output files; rename the ELF", field="name")
    for fixed in FIXED_FILES:
        if app_file_name(name) == fixed or merged_file_name(name) == fixed:
            raise UsageError(
                f"an ELF named '{name}' would write its app image over {fixed}; rename the ELF",
                field="name",
            )


def _check_overlaps(parts: list[FlashPart], chip: Chip, table_offset: int, flash_bytes: int, size_name: str) -> None:
    if table_offset % 0x1000:
        raise LayoutError(f"the partition table offset 0x{table_offset:x} is not 4 KiB aligned", field="--partition-table-offset")
    if table_offset < chip.bootloader_offset:
        raise LayoutError(
            f"the partition table offset 0x{table_offset:x} is below {chip.name}'s bootloader offset "
            f"0x{chip.bootloader_offset:x}",
            field="--partition-table-offset",
        )
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


# --------------------------------------------------------------------------- text helpers


def _join(words) -> str:
    """One argument-file line that esptool's reader (``shlex.split`` per line) splits back into ``words``."""
    return " ".join(shlex.quote(str(w)) for w in words)


def _file_entry(offset: int, file: str, encrypted: bool) -> dict:
    return {"offset": f"0x{offset:x}", "file": file, "encrypted": "true" if encrypted else "false"}


def _json(doc: dict) -> bytes:
    return (json.dumps(doc, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


def sha256sums(files: dict[str, bytes]) -> str:
    """``sha256sum`` output (binary mode) for ``files``; names with ``\\`` or newlines are escaped as GNU does."""
    return sha256sums_text(_digests(files))


def sha256sums_text(digests: dict[str, str]) -> str:
    """``sha256sum`` output for already computed hex digests (name → digest), ``SHA256SUMS`` itself left out."""
    lines = []
    for name, digest in digests.items():
        if name == SHA256SUMS_FILE:
            continue
        if "\\" in name or "\n" in name or "\r" in name:
            escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"\\{digest} *{escaped}")
        else:
            lines.append(f"{digest} *{name}")
    return "\n".join(lines) + "\n"


class OutputFiles(dict):
    """Output name → bytes, carrying each file's SHA-256 (``sha256``: name → hex) from when it was rendered.

    ``SHA256SUMS`` and the pack result both need every digest; a 16 MB merged image costs
    milliseconds to hash, so it is hashed once. Replacing a file drops its digest.
    """

    def __init__(self, files: dict[str, bytes], sha256: dict[str, str] | None = None):
        super().__init__(files)
        self.sha256 = dict(sha256 or {})

    def __setitem__(self, name: str, data: bytes) -> None:
        self.sha256.pop(name, None)
        super().__setitem__(name, data)

    def update(self, *args, **kwargs) -> None:
        for name, data in dict(*args, **kwargs).items():
            self[name] = data


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    """Hex SHA-256 of every file but ``SHA256SUMS``: the ones :meth:`FlashLayout.files` computed, else now."""
    known = getattr(files, "sha256", None) or {}
    return {
        name: known[name] if name in known else hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name != SHA256SUMS_FILE
    }


__all__ = [
    "FlashLayout",
    "FlashPart",
    "FlashSettings",
    "PackResult",
    "PartInfo",
    "plan_layout",
    "sha256sums",
    "sha256sums_text",
]
