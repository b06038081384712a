"""Reading a pack output folder back without trusting it: ``flash`` and ``manifest`` use what it names only after this.

A pack folder is a user's input like any other: it may have been edited, damaged or built by hand
to point elsewhere. So every name it gives must be a plain file name inside the folder (never a
path, never a link out of it), ``flasher_args.json`` must be the JSON object pack writes (bounded
in size and depth), and ``SHA256SUMS`` must list every file that is used, with matching hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imgtool.errors import InputError
from imgtool.output_names import FLASHER_ARGS_JSON_FILE, SHA256SUMS_FILE

#: pack's JSON and argument files are a few kilobytes; anything larger was not written by it.
MAX_METADATA_BYTES = 1 << 20
#: What pack's SHA256SUMS and argument files hold at most (one line per output).
MAX_SUMS_BYTES = 1 << 20
#: pack's ``flasher_args.json`` nests three levels deep; a deeper document is not one.
MAX_JSON_DEPTH = 8


def file_in(folder: Path, name: object, source: str) -> Path:
    """``folder / name`` when ``name`` is a plain file name that stays inside ``folder``, else a one-line error."""
    if not isinstance(name, str):
        raise InputError(f"{source} names {name!r}, which is not a file name; pack again", path=folder)
    plain = name not in ("", ".", "..") and "/" not in name and "\\" not in name and Path(name).name == name
    if not plain or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InputError(f"{source} names {name!r}, which is not a file in the pack folder; pack again", path=folder)
    path = folder / name
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.dirname(real) != root:
        raise InputError(f"{source} names {name!r}, a link that leads outside the pack folder; pack again", path=folder)
    return path


def read_pack_json(folder: Path) -> dict:
    """``flasher_args.json`` as a dict, bounded in size and depth; anything else is a one-line error."""
    from imgtool.atomic import read_input

    path = folder / FLASHER_ARGS_JSON_FILE
    if not os.path.lexists(path):
        raise InputError(f"is not a pack folder (no {FLASHER_ARGS_JSON_FILE}); run 'imgtool pack' into this folder first", path=folder)
    raw = read_input(path, FLASHER_ARGS_JSON_FILE, limit=MAX_METADATA_BYTES)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise InputError(f"cannot read {FLASHER_ARGS_JSON_FILE} ({reason}); re-run imgtool pack", path=folder) from None
    if not isinstance(doc, dict):
        raise InputError(f"{FLASHER_ARGS_JSON_FILE} is not a JSON object; re-run imgtool pack", path=folder)
    if _depth(doc) > MAX_JSON_DEPTH:
        raise InputError(f"{FLASHER_ARGS_JSON_FILE} is nested deeper than pack writes; re-run imgtool pack", path=folder)
    return doc


def _depth(value, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def checked_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS``'s name → digest, after checking every listed file is inside ``folder`` and matches."""
    from imgtool.atomic import read_input
    from imgtool.chips.table import MAX_FLASH_BYTES
    from imgtool.flash.outputs import parse_sha256sums

    sums_path = folder / SHA256SUMS_FILE
    if not os.path.lexists(sums_path):
        raise InputError(f"has no {SHA256SUMS_FILE}, so nothing vouches for its files; pack again", path=folder)
    try:
        sums = parse_sha256sums(read_input(sums_path, SHA256SUMS_FILE, limit=MAX_SUMS_BYTES).decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{SHA256SUMS_FILE} is not UTF-8 text; pack again", path=folder) from None
    if not sums:
        raise InputError(f"{SHA256SUMS_FILE} lists no file; pack again", path=folder)
    for name, digest in sums.items():
        path = file_in(folder, name, SHA256SUMS_FILE)
        data = read_input(path, "pack file", limit=MAX_FLASH_BYTES)
        if hashlib.sha256(data).hexdigest() != digest:
            raise InputError(
                f"{name} does not match its {SHA256SUMS_FILE} entry (changed after packing?); pack again", path=folder
            )
    return sums


def require_listed(folder: Path, sums: dict[str, str], names, source: str) -> None:
    """Every file ``source`` names must be one ``SHA256SUMS`` vouches for."""
    for name in names:
        if name not in sums:
            raise InputError(f"{source} names {name!r}, which {SHA256SUMS_FILE} does not list; pack again", path=folder)


__all__ = ["checked_sums", "file_in", "read_pack_json", "require_listed"]
