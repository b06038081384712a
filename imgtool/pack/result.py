"""What ``imgtool pack`` produced, as one value: the CLI prints it and ``--json`` dumps its :meth:`PackResult.to_dict`.

It is made last, from the plan (:mod:`imgtool.flash.layout`) and the rendered
files (:mod:`imgtool.flash.outputs`, whose digests it reuses), so the report
names exactly what was written.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from imgtool.flash.layout import FlashLayout, FlashSettings
from imgtool.flash.outputs import digests, esptool_args, esptool_parts_args, render_files
from imgtool.output_names import BOOTLOADER_FILE, PARTITIONS_BIN_FILE

#: The app partition probe-rs (espflash) picks by itself in a table with one.
DEFAULT_APP_PARTITION = "factory"


class PartInfo:
    """What a part is, without its bytes (for reports and JSON; a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up)."""

    __slots__ = ("name", "offset", "size", "file")

    def __init__(self, name: str, offset: int, size: int, file: str):
        self.name = name
        self.offset = offset
        self.size = size
        self.file = file

    def to_dict(self) -> dict:
        return {"name": self.name, "offset": self.offset, "offset_hex": f"0x{self.offset:x}", "size": self.size, "file": self.file}


#: A result's mappings default to this: empty and read-only, so results never share a dict one of them could change.
_EMPTY: MappingProxyType = MappingProxyType({})


class PackResult(NamedTuple):
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
    esptool_args: tuple[str, ...]  # argv after "esptool": the parts, as flash_args (keeps NVS)
    outdir: Path | None = None
    warnings: tuple[str, ...] = ()
    #: What is worth knowing but needs no action (the summary shows them; ``-q`` drops them).
    notes: tuple[str, ...] = ()
    sha256: dict = _EMPTY
    config_files: tuple[str, ...] = ()  # espflash.toml / Cargo.toml read
    config_settings: tuple[str, ...] = ()  # the settings taken from them (the command line did not set)
    config_origins: dict = _EMPTY  # setting -> the file it was taken from
    merged_esptool_args: tuple[str, ...] = ()  # argv after "esptool": the merged image, as flash_merged_args
    #: argv after "probe-rs" flashing the ELF over a debug probe with this pack's bootloader and table
    #: (empty for signed or encrypted packs: probe-rs writes the app it builds from the ELF, plain).
    probe_rs_args: tuple[str, ...] = ()
    #: The placed bootloader's ESP-IDF version and the loader rules the app was judged by.
    bootloader_build: str = ""

    @property
    def app_usage(self) -> float:
        """Fraction of the app partition the app uses."""
        return self.app_size / self.app_partition_size if self.app_partition_size else 1.0

    @property
    def esptool_command(self) -> str:
        """The esptool command writing the parts (what the summary recommends)."""
        return shlex.join(["esptool", *self.esptool_args])

    @property
    def merged_esptool_command(self) -> str:
        """The esptool command writing the merged image (overwrites NVS and every other data partition)."""
        return shlex.join(["esptool", *self.merged_esptool_args])

    @property
    def probe_rs_command(self) -> str | None:
        return shlex.join(["probe-rs", *self.probe_rs_args]) if self.probe_rs_args else None

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
            "bootloader_build": self.bootloader_build,
            "files": list(self.files),
            "sha256": dict(self.sha256),
            "esptool_args": list(self.esptool_args),
            "esptool_command": self.esptool_command,
            "merged_esptool_args": list(self.merged_esptool_args),
            "merged_esptool_command": self.merged_esptool_command,
            "probe_rs_args": list(self.probe_rs_args),
            "probe_rs_command": self.probe_rs_command,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "config": {"files": list(self.config_files), "settings": list(self.config_settings),
                       "origins": dict(self.config_origins)},
        }


def probe_rs_args(layout: FlashLayout, elf: str, shown=None) -> tuple[str, ...]:
    """``probe-rs run`` with the pack's bootloader and partition table (probe-rs builds the app from the ELF itself)."""
    shown = shown or (lambda name: name)
    args = ["run", "--chip", layout.chip.name, "--idf-bootloader", shown(BOOTLOADER_FILE),
            "--idf-partition-table", shown(PARTITIONS_BIN_FILE)]
    if layout.app_partition_name != DEFAULT_APP_PARTITION:
        args += ["--idf-target-app-partition", layout.app_partition_name]
    return (*args, elf)


def pack_result(
    layout: FlashLayout,
    files: dict[str, bytes] | None = None,
    *,
    outdir: Path | None = None,
    shown=None,
) -> PackResult:
    """The report for ``layout`` and its rendered ``files`` (rendered now when None).

    ``shown`` maps an output file name to the path the commands print (default: the bare name).
    """
    shown = shown or (lambda name: name)
    files = files if files is not None else render_files(layout)
    merged_size = len(files[layout.merged_file]) if layout.merged_file in files else layout.end - layout.start
    return PackResult(
        chip=layout.chip.name,
        name=layout.name,
        flash=layout.settings,
        parts=tuple(PartInfo(p.name, p.offset, p.size, p.file) for p in layout.parts),
        merged=PartInfo("merged", layout.start, merged_size, layout.merged_file),
        app_partition=layout.app_partition_name,
        app_partition_offset=layout.app_partition_offset,
        app_partition_size=layout.app_partition_size,
        app_size=layout.app.size,
        files=tuple(files),
        esptool_args=tuple(esptool_parts_args(layout, shown)),
        merged_esptool_args=tuple(esptool_args(layout, shown(layout.merged_file))),
        outdir=outdir,
        warnings=layout.warnings,
        sha256=digests(files),
    )


__all__ = ["PackResult", "PartInfo", "pack_result", "probe_rs_args"]
