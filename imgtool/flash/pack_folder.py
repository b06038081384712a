"""The pack output folder's format, both ways: what ``pack`` writes into it and how it is read back.

Written (rendered from a :class:`imgtool.flash.layout.FlashLayout`, values only):

- ``flash_args``: esptool argument file, flash settings then one ``OFFSET FILE`` line per
  part (ESP-IDF's meaning: flashing it leaves NVS and other data partitions alone, except the
  data partition images ``pack --data`` made, which follow the app as in ESP-IDF);
- ``flash_merged_args``: the same settings and the merged image at its offset;
- ``flasher_args.json``: ESP-IDF's machine-readable flashing description, plus the merged
  image and which bootloader build the pack placed (``imgtool flash`` checks the crystal with it);
- ``manifest.json``: an esp-web-tools manifest listing the parts (a web update keeps NVS);
- ``SHA256SUMS``: ``sha256sum -c`` format over every other output.

Both argument files are run from the output folder (``esptool write-flash @flash_args``)
and use the short flash options ``-fm/-ff/-fs``, which esptool 4.x and 5.x both accept
without a deprecation warning. Every text is rendered in a fixed order (no time, path or
random name), so the same layout always gives the same bytes.

Read back without trusting it: a pack folder is a user's input like any other: it may have been
edited, damaged or built by hand to point elsewhere. So every name it gives must be a plain file
name inside the folder (never a path, never a link out of it), ``flasher_args.json`` must be the
JSON object pack writes (bounded in size and depth), and ``SHA256SUMS`` must list every file that
is used, with matching hashes. ``flash`` (:func:`read_pack_folder`), ``verify``, ``manifest`` and
the CLI read it only through this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

from imgtool.atomic import input_kind, read_input
from imgtool.chips.table import (
    ANY_REVISION_MAX,
    DEFAULT_FLASH_MODE,
    DEFAULT_FLASH_SIZE,
    MAX_FLASH_BYTES,
    Chip,
    get_chip,
)
from imgtool.errors import ImgtoolError, InputError
from imgtool.flash.layout import FlashLayout, FlashSettings
from imgtool.image.format import parse_image
from imgtool.output_names import (
    BOOTLOADER_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    PARTITIONS_BIN_FILE,
    SHA256SUMS_FILE,
    UNVERSIONED,
)
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, TABLE_MAX_LEN, PartitionTable

#: pack's JSON and argument files are a few kilobytes; anything larger was not written by it.
MAX_METADATA_BYTES = 1 << 20
#: What pack's SHA256SUMS and argument files hold at most (one line per output).
MAX_SUMS_BYTES = 1 << 20
#: pack's ``flasher_args.json`` nests three levels deep; a deeper document is not one.
MAX_JSON_DEPTH = 8


# --------------------------------------------------------------------------- writing


#: write-flash options leaving the bytes as they are (esptool patches a header it finds at the bootloader offset).
KEEP_FLASH_ARGS = ("-fm", "keep", "-ff", "keep", "-fs", "keep")


def write_flash_args(layout: FlashLayout) -> list[str]:
    """Flash settings for esptool: ``keep`` when the layout :attr:`~FlashLayout.keeps_headers`."""
    return list(KEEP_FLASH_ARGS) if layout.keeps_headers else layout.settings.esptool_args()


def flash_args_text(layout: FlashLayout) -> str:
    """esptool argument file with one line per part, ESP-IDF's ``flash_args`` (``esptool write-flash @flash_args``)."""
    lines = [_join(write_flash_args(layout))]
    lines += [_join([f"0x{p.offset:x}", p.file]) for p in layout.parts]
    return "\n".join(lines) + "\n"


def flash_merged_args_text(layout: FlashLayout) -> str:
    """esptool argument file writing the merged image (``esptool write-flash @flash_merged_args``)."""
    return f"{_join(write_flash_args(layout))}\n{_join([f'0x{layout.start:x}', layout.merged_file])}\n"


def flasher_args(layout: FlashLayout) -> dict:
    """ESP-IDF's ``flasher_args.json`` content, plus ``merged`` and ``imgtool`` (ignored by ESP-IDF tools)."""
    doc: dict = {
        "write_flash_args": write_flash_args(layout),
        "flash_settings": layout.settings.to_dict(),
        "flash_files": {f"0x{p.offset:x}": p.file for p in layout.parts},
    }
    for p in layout.parts:
        doc[p.name] = _file_entry(p.offset, p.file, p.encrypted)
    doc["merged"] = _file_entry(layout.start, layout.merged_file, False)
    doc["extra_esptool_args"] = {
        "after": "hard-reset",
        "before": "default-reset",
        "stub": True,
        "chip": layout.chip.name,
    }
    doc["imgtool"] = {"bootloader": dict(layout.bootloader_source)}
    return doc


def web_manifest(layout: FlashLayout) -> dict:
    """esp-web-tools manifest writing the parts, so an update keeps NVS (offsets are integers, as it requires)."""
    return esp_web_tools_manifest(
        layout.project_name or layout.name,
        layout.version or UNVERSIONED,
        [(layout.chip.esp_web_tools_family, [(p.file, p.offset) for p in layout.parts])],
    )


def esp_web_tools_manifest(name: str, version: str, builds) -> dict:
    """An esp-web-tools manifest: ``builds`` are ``(chipFamily, [(path, offset), ...])``, one per chip family."""
    return {
        "name": name,
        "version": version,
        "new_install_prompt_erase": True,
        "builds": [
            {"chipFamily": family, "parts": [{"path": path, "offset": offset} for path, offset in parts]}
            for family, parts in builds
        ],
    }


def _join(words) -> str:
    """One argument-file line that esptool's reader (``shlex.split`` per line) splits back into ``words``."""
    return " ".join(shlex.quote(str(w)) for w in words)


def _file_entry(offset: int, file: str, encrypted: bool) -> dict:
    return {"offset": f"0x{offset:x}", "file": file, "encrypted": "true" if encrypted else "false"}


def marks_encrypted_parts(doc: dict) -> bool:
    """Whether a ``flasher_args.json`` document, as :func:`flasher_args` writes it, marks any part encrypted."""
    return any(isinstance(v, dict) and v.get("encrypted") == "true" for v in doc.values())


def json_bytes(doc: dict) -> bytes:
    """A JSON output as the pack writes it: 4-space indent, UTF-8, a final newline."""
    return (json.dumps(doc, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


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


# --------------------------------------------------------------------------- reading


#: write-flash options an argument file may carry, each followed by its value (esptool 4 and 5 spellings).
_SETTING_OPTIONS = {
    "-fm": "mode", "--flash-mode": "mode", "--flash_mode": "mode",
    "-ff": "freq", "--flash-freq": "freq", "--flash_freq": "freq",
    "-fs": "size", "--flash-size": "size", "--flash_size": "size",
}  # fmt: skip


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


#: ``sha256sum``'s escapes in a name (a line starting with a backslash), and what each stands for; a
#: pattern, compiled (by ``re``'s cache) only for a name with escapes, which a plain pack never reads (~0.05 ms).
_GNU_ESCAPE = r"\\(.)"
_GNU_UNESCAPED = {"n": "\n", "r": "\r", "\\": "\\"}


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` lines (text or binary mode, GNU escapes) as name → hex digest."""
    out = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        digest, _, name = line.removeprefix("\\").partition(" ")
        name = name.removeprefix("*").removeprefix(" ")
        if escaped:
            name = re.sub(_GNU_ESCAPE, lambda m: _GNU_UNESCAPED.get(m.group(1), m.group(0)), name, flags=re.DOTALL)
        if digest and name:
            out[name] = digest.lower()
    return out


def checked_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS``'s name → digest, after checking every listed file is inside ``folder`` and matches."""
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


def parse_args_file(path: Path) -> tuple[dict, list[tuple[int, Path]]]:
    """Flash settings and ``(offset, file)`` pairs of an esptool argument file, read as esptool reads it.

    Every file it names must be a plain name inside its folder (:func:`imgtool.flash.pack_folder.file_in`).
    """
    if not os.path.lexists(path):
        raise InputError("not found; run 'imgtool pack' into this folder first", path=path)
    try:
        text = read_input(path, "argument file", limit=MAX_METADATA_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read it ({exc})", path=path) from None
    words: list[str] = []
    try:
        for line in text.splitlines():
            words += shlex.split(line)
    except ValueError as exc:
        raise InputError(f"cannot split it as esptool would ({exc}); pack again", path=path) from None
    settings: dict = {}
    pairs: list[tuple[int, Path]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in _SETTING_OPTIONS and i + 1 < len(words):
            settings[_SETTING_OPTIONS[word]] = words[i + 1]
            i += 2
            continue
        if i + 1 >= len(words):
            raise InputError(f"'{word}' has no file after it; expected OFFSET FILE pairs", path=path)
        try:
            offset = int(word, 0)
        except ValueError:
            raise InputError(f"'{word}' is not an offset; expected OFFSET FILE pairs after the flash options", path=path) from None
        pairs.append((offset, file_in(path.parent, words[i + 1], path.name)))
        i += 2
    if not pairs:
        raise InputError("lists no file to write; pack again", path=path)
    return settings, pairs


class PackFolder:
    """A pack output folder as ``imgtool flash`` writes it: the chip, settings and files its argument files give.

    A plain class, not a dataclass: it is defined on every pack's start-up (issue 23).
    """

    __slots__ = ("path", "chip", "settings", "parts", "merged", "bootloader_source", "app_revisions", "bootloader_revisions")

    def __init__(
        self,
        path: Path,
        chip: str,
        settings: FlashSettings,
        parts: list[tuple[int, Path]],  # from flash_args
        merged: tuple[int, Path] | None,  # from flash_merged_args
        bootloader_source: dict | None = None,
        app_revisions: tuple[int, int] = (0, ANY_REVISION_MAX),
        bootloader_revisions: tuple[int, int] = (0, ANY_REVISION_MAX),
    ):
        self.path, self.chip, self.settings, self.parts, self.merged = path, chip, settings, parts, merged
        self.bootloader_source = {} if bootloader_source is None else bootloader_source
        self.app_revisions, self.bootloader_revisions = app_revisions, bootloader_revisions

    @property
    def bootloader_offset(self) -> int:
        return get_chip(self.chip).bootloader_offset

    def partition_table(self) -> PartitionTable:
        """The table in ``partitions.bin``, for ``--erase-parts`` and ``--erase-data-parts``."""
        table_file = self.path / PARTITIONS_BIN_FILE
        offset = next((off for off, p in self.parts if p.name == PARTITIONS_BIN_FILE), DEFAULT_TABLE_OFFSET)
        data = read_input(table_file, "partition table", limit=TABLE_MAX_LEN)
        return PartitionTable.from_binary(data, source=os.fspath(table_file), table_offset=offset)


def read_pack_folder(path: str | os.PathLike) -> PackFolder:
    """Read a pack output folder: chip and bootloader build from flasher_args.json, files from the argument files.

    Nothing it names is trusted: ``SHA256SUMS`` must vouch for every file the argument files name, each
    inside the folder, before anything connects to a device.
    """
    folder = Path(path)
    meta_path = folder / FLASHER_ARGS_JSON_FILE
    meta = read_pack_json(folder)
    try:
        chip = meta["extra_esptool_args"]["chip"]
        target = get_chip(chip)
    except (KeyError, TypeError, ImgtoolError):
        raise InputError("does not name the chip in extra_esptool_args.chip; pack again", path=meta_path) from None
    settings, parts = parse_args_file(folder / FLASH_ARGS_FILE)
    merged = None
    if os.path.lexists(folder / FLASH_MERGED_ARGS_FILE):
        merged = parse_args_file(folder / FLASH_MERGED_ARGS_FILE)[1][0]
    sums = checked_sums(folder)
    require_listed(folder, sums, [p.name for _, p in parts], FLASH_ARGS_FILE)
    if merged is not None:
        require_listed(folder, sums, [merged[1].name], FLASH_MERGED_ARGS_FILE)
    sections = _object(meta, "flash_settings")
    flash = FlashSettings(
        mode=settings.get("mode") or sections.get("flash_mode", DEFAULT_FLASH_MODE),
        freq=settings.get("freq") or sections.get("flash_freq", target.default_flash_freq),
        size=settings.get("size") or sections.get("flash_size", DEFAULT_FLASH_SIZE),
    )
    source = _object(_object(meta, "imgtool"), "bootloader")
    pack = PackFolder(folder, chip, flash, parts, merged, dict(source))
    for attr, name in (("app_revisions", _object(meta, "app").get("file")), ("bootloader_revisions", BOOTLOADER_FILE)):
        if name in sums:
            revisions = _revisions(folder / name)
            if revisions is not None:
                setattr(pack, attr, revisions)
    return pack


def _object(doc: dict, key: str) -> dict:
    """``doc[key]`` when it is a JSON object, else an empty one (a hand-edited entry falls back to defaults)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _revisions(file: Path) -> tuple[int, int] | None:
    """The chip-revision range an image header allows; None for a damaged image (verify reports it; esptool's own checks still run)."""
    try:
        image = parse_image(read_input(file, "image", limit=MAX_FLASH_BYTES), file).image
    except ImgtoolError:
        return None
    return image.min_chip_rev_full, image.max_chip_rev_full


class FlasherArgs:
    """The entries of ``flasher_args.json`` a web release needs, as :func:`flasher_args` writes them.

    ``parts`` is (flash offset, file name) by offset; ``encrypted``: some part is written encrypted
    (:func:`marks_encrypted_parts`). A plain class: every pack defines it, a NamedTuple costs ~0.3 ms there.
    """

    __slots__ = ("chip", "parts", "merged_file", "merged_offset", "app_file", "encrypted")

    def __init__(
        self, chip: Chip, parts: tuple[tuple[int, str], ...], merged_file: str, merged_offset: int, app_file: str, encrypted: bool
    ):
        self.chip = chip
        self.parts = parts
        self.merged_file = merged_file
        self.merged_offset = merged_offset
        self.app_file = app_file
        self.encrypted = encrypted


def read_flasher_args(folder: Path) -> FlasherArgs:
    """``flasher_args.json``'s chip, parts, merged image and app, each checked the way pack writes it."""
    doc = read_pack_json(folder)
    try:
        chip = get_chip(doc["extra_esptool_args"]["chip"])
        files = doc["flash_files"]
        merged_file = doc["merged"]["file"]
        merged_hex = doc["merged"]["offset"]
        app_file = doc["app"]["file"]
    except (KeyError, TypeError, AttributeError, ImgtoolError):
        raise InputError(
            f"{FLASHER_ARGS_JSON_FILE} lacks the chip, flash_files, merged or app entries imgtool pack writes; re-run imgtool pack",
            path=folder,
        ) from None
    if not isinstance(files, dict) or not files:
        raise InputError(f"{FLASHER_ARGS_JSON_FILE}: flash_files is not an object of offset → file; re-run imgtool pack", path=folder)
    parts = tuple(sorted((flash_offset(folder, off, f"flash_files key {off!r}"), name) for off, name in files.items()))
    merged_offset = flash_offset(folder, merged_hex, "merged.offset")
    if merged_offset not in (0, chip.bootloader_offset):
        raise InputError(
            f"{FLASHER_ARGS_JSON_FILE}: merged.offset is 0x{merged_offset:x}, but a {chip.name} merged image starts at "
            f"0x{chip.bootloader_offset:x} (or 0x0); re-run imgtool pack",
            path=folder,
        )
    for _, name in [*parts, (merged_offset, merged_file), (0, app_file)]:
        file_in(folder, name, FLASHER_ARGS_JSON_FILE)
    return FlasherArgs(chip, parts, merged_file, merged_offset, app_file, marks_encrypted_parts(doc))


def flash_offset(folder: Path, text: object, field: str) -> int:
    """A flash offset as pack writes it (``"0x10000"``), inside the largest flash."""
    try:
        value = int(text, 16) if isinstance(text, str) and text.lower().startswith("0x") else None
    except ValueError:
        value = None
    if value is None or not 0 <= value < MAX_FLASH_BYTES:
        raise InputError(f"{FLASHER_ARGS_JSON_FILE}: {field} is {text!r}, not a flash offset like '0x10000'; re-run imgtool pack", path=folder)
    return value


def flash_files(doc: dict) -> dict[int, str]:
    """``flash_files`` as offset → file name; KeyError, TypeError, AttributeError or ValueError when pack did not write it."""
    return {int(off, 16): name for off, name in doc["flash_files"].items()}


def named_merged(folder: Path) -> tuple[str | None, Path | None]:
    """The chip and the merged image ``flasher_args.json`` names, each None when it names none it can (``verify``
    then looks for the merged image itself)."""
    try:
        doc = read_pack_json(folder)
    except ImgtoolError:
        return None, None
    chip = merged = None
    try:
        chip = doc.get("extra_esptool_args", {}).get("chip")
        entry = doc.get("merged") or {}
        if entry.get("file"):
            merged = file_in(folder, entry["file"], FLASHER_ARGS_JSON_FILE)
    except (AttributeError, ImgtoolError):
        pass
    return chip, merged


def named_app(folder: Path) -> Path | None:
    """The app image ``flasher_args.json`` names, when it is a regular file inside the pack folder."""
    try:
        app = file_in(folder, read_pack_json(folder)["app"]["file"], FLASHER_ARGS_JSON_FILE)
        input_kind(app, "app image", pipes=False)
    except (ImgtoolError, KeyError, TypeError):
        return None
    return app


def has_encrypted_parts(folder: Path) -> bool:
    """Whether the pack folder's ``flasher_args.json`` marks any part encrypted (False when it cannot be read)."""
    try:
        return marks_encrypted_parts(read_pack_json(folder))
    except ImgtoolError:
        return False


def clear_ranges(folder: Path) -> tuple[tuple[int, int], ...]:
    """Flash ranges ``flasher_args.json`` lists as written in clear (``encrypted`` false); none when it cannot be read."""
    try:
        doc = read_pack_json(folder)
        parts = [v for k, v in doc.items() if k != "merged" and isinstance(v, dict) and v.get("encrypted") == "false"]
        return tuple((int(p["offset"], 16), int(p["offset"], 16) + (folder / p["file"]).stat().st_size) for p in parts)
    except (ImgtoolError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()


__all__ = [
    "KEEP_FLASH_ARGS",
    "MAX_METADATA_BYTES",
    "FlasherArgs",
    "PackFolder",
    "checked_sums",
    "clear_ranges",
    "esp_web_tools_manifest",
    "file_in",
    "flash_args_text",
    "flash_files",
    "flash_merged_args_text",
    "flash_offset",
    "flasher_args",
    "has_encrypted_parts",
    "json_bytes",
    "marks_encrypted_parts",
    "named_app",
    "named_merged",
    "parse_args_file",
    "parse_sha256sums",
    "read_flasher_args",
    "read_pack_folder",
    "read_pack_json",
    "require_listed",
    "sha256sums_text",
    "web_manifest",
    "write_flash_args",
]
