"""Every file of a pack, rendered from a planned layout: a library, no CLI, no printing.

The folder's own format (argument files, ``flasher_args.json``, ``manifest.json``, ``SHA256SUMS``)
is :mod:`imgtool.flash.pack_folder`'s, which also reads it back; this assembles it with the
images (parts, merged image, ``NAME.uf2``/``NAME.hex`` from :mod:`imgtool.flash.formats`) and
hashes each file once. It also gives the esptool command lines a pack prints.
"""

from __future__ import annotations

import hashlib

from imgtool.flash.formats import format_files
from imgtool.flash.layout import FlashLayout
from imgtool.flash.pack_folder import (
    flash_args_text,
    flash_merged_args_text,
    flasher_args,
    json_bytes,
    sha256sums_text,
    web_manifest,
    write_flash_args,
)
from imgtool.output_names import (
    BOOTLOADER_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    OTADATA_FILE,
    PARTITIONS_BIN_FILE,
    PARTITIONS_CSV_FILE,
    SHA256SUMS_FILE,
    WEB_MANIFEST_FILE,
)


def esptool_args(layout: FlashLayout, merged_path: str | None = None) -> list[str]:
    """argv (after ``esptool``) writing the merged image; ``merged_path`` defaults to the bare file name."""
    return [
        "--chip",
        layout.chip.name,
        "write-flash",
        *write_flash_args(layout),
        f"0x{layout.start:x}",
        merged_path or layout.merged_file,
    ]


def esptool_parts_args(layout: FlashLayout, shown=None) -> list[str]:
    """argv (after ``esptool``) writing the parts, as ``flash_args`` does (NVS and other data partitions kept);
    ``shown`` maps a file name to the path to print (default: the bare name)."""
    shown = shown or (lambda name: name)
    pairs = [item for p in layout.parts for item in (f"0x{p.offset:x}", shown(p.file))]
    return ["--chip", layout.chip.name, "write-flash", *write_flash_args(layout), *pairs]


def render_files(layout: FlashLayout, formats=()) -> OutputFiles:
    """Every output file, name → bytes, in a stable order; ``SHA256SUMS`` last, covering the rest.

    ``formats`` adds ``NAME.uf2``/``NAME.hex`` (:mod:`imgtool.flash.formats`) before ``SHA256SUMS``.
    """
    out: dict[str, bytes] = {}
    app = layout.app
    out[app.file] = app.data
    for p in layout.parts:
        if p.name != "app":
            out[p.file] = p.data
    out[PARTITIONS_CSV_FILE] = layout.partitions_csv.encode("utf-8")
    # keep the documented order: app, bootloader, table (csv, bin), otadata, merged, texts
    order = [app.file, BOOTLOADER_FILE, PARTITIONS_CSV_FILE, PARTITIONS_BIN_FILE, OTADATA_FILE]
    ordered = {k: out[k] for k in order if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    ordered[layout.merged_file] = layout.merged_bytes()
    ordered[FLASH_ARGS_FILE] = flash_args_text(layout).encode("utf-8")
    ordered[FLASH_MERGED_ARGS_FILE] = flash_merged_args_text(layout).encode("utf-8")
    ordered[FLASHER_ARGS_JSON_FILE] = json_bytes(flasher_args(layout))
    ordered[WEB_MANIFEST_FILE] = json_bytes(web_manifest(layout))
    ordered.update(format_files(layout, formats))
    rendered = OutputFiles(ordered, {name: hashlib.sha256(data).hexdigest() for name, data in ordered.items()})
    rendered[SHA256SUMS_FILE] = sha256sums_text(rendered.sha256).encode("utf-8")
    return rendered


def sha256sums(files: dict[str, bytes]) -> str:
    """``sha256sum`` output (binary mode) for ``files``; names with ``\\`` or newlines are escaped as GNU does."""
    return sha256sums_text(digests(files))


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


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """Hex SHA-256 of every file but ``SHA256SUMS``: the ones :func:`render_files` computed, else now."""
    known = getattr(files, "sha256", None) or {}
    return {
        name: known[name] if name in known else hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name != SHA256SUMS_FILE
    }


__all__ = [
    "OutputFiles",
    "digests",
    "esptool_args",
    "esptool_parts_args",
    "render_files",
    "sha256sums",
]
