"""The ELF a pack was made from, found beside the pack folder and proved by its hash.

``pack`` writes the ELF's SHA-256 into the app descriptor (``app_elf_sha256``), so a candidate
file is the app's ELF exactly when its hash matches: ``imgtool monitor OUTDIR`` can decode with it
without being told where it is, and never with a stale build.
"""

from __future__ import annotations

from pathlib import Path

from imgtool.elf.reader import read_elf
from imgtool.errors import ImgtoolError
from imgtool.flash.pack_folder import named_app
from imgtool.image.format import FIRST_SEGMENT_DATA_OFFSET, parse_app_descriptor

#: How much of the app image holds the header, the first segment header and the descriptor.
_DESCRIPTOR_READ = 4096


def recorded_elf_sha256(app: Path) -> bytes | None:
    """The ``app_elf_sha256`` in the app image ``app``, or None (unreadable, no descriptor, all zero)."""
    try:
        with open(app, "rb") as fh:
            head = fh.read(_DESCRIPTOR_READ)
    except OSError:
        return None
    desc = parse_app_descriptor(head[FIRST_SEGMENT_DATA_OFFSET:])
    digest = bytes(desc.app_elf_sha256) if desc is not None else b""
    return digest if any(digest) else None


def find_app_elf(folder: Path) -> Path | None:
    """The ELF beside ``folder`` (in it, or in its parent: ``pack``'s default output is the ELF's folder)
    named after the app image, whose SHA-256 is the one the image records."""
    app = named_app(folder)
    digest = recorded_elf_sha256(app) if app is not None else None
    if digest is None:
        return None
    stem = app.stem
    for place in (folder, folder.parent):
        for name in (stem, f"{stem}.elf"):
            candidate = place / name
            if not candidate.is_file():
                continue
            try:
                if read_elf(candidate).sha256() == digest:
                    return candidate
            except ImgtoolError:
                continue
    return None


__all__ = ["find_app_elf", "recorded_elf_sha256"]
