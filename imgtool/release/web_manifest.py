"""One web-flasher release for packs of several chips: an esp-web-tools manifest, optionally an ESP Launchpad TOML.

esp-web-tools picks the build whose ``chipFamily`` matches the connected chip, so a
manifest holds one build per chip family; each pack's part files are copied into a
folder named for its chip beside the manifest (``DIR/esp32c3/bootloader.bin``), and
the manifest names them relative to itself, as the browser resolves them.

ESP Launchpad's Quick Start (``esp_toml_version = 1.0``) lists ``chipsets`` by the same
family names and downloads ``firmware_images_url`` + ``image.<family in lower case>``,
writing that one file at flash address 0x0. So its image is the pack's merged image
from 0x0: the merged image itself where the bootloader sits at 0x0, else the same
bytes after 0xFF up to the bootloader offset (what ``esptool merge-bin`` writes).

Every pack is read and checked before anything is written (``verify``, with the part
files, argument files and ``SHA256SUMS`` checked by ``check_pack_folder``); each chip
folder is then replaced as one transaction (:func:`imgtool.atomic.write_outputs`) and
the manifest and TOML, written last, are each replaced atomically (:func:`imgtool.atomic.write_bytes`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgtool.atomic import read_input, write_bytes, write_outputs
from imgtool.chips.table import ERASED, Chip
from imgtool.errors import ImgtoolError, InputError, UsageError
from imgtool.flash.pack_folder import (
    MAX_METADATA_BYTES,
    FlasherArgs,
    checked_sums,
    esp_web_tools_manifest,
    json_bytes,
    read_flasher_args,
    require_listed,
)
from imgtool.image.format import c_string, parse_app_descriptor, parse_image
from imgtool.inspect.verify import check_pack_folder, verify
from imgtool.output_names import FLASHER_ARGS_JSON_FILE, MERGED_SUFFIX, UNVERSIONED, WEB_MANIFEST_FILE
from imgtool.pack.project_config import load_toml

LAUNCHPAD_FILE = "launchpad.toml"
LAUNCHPAD_TOML_VERSION = "1.0"
#: A pack's merged image's Launchpad copy (from flash 0x0) takes this suffix instead of MERGED_SUFFIX.
LAUNCHPAD_SUFFIX = ".launchpad.bin"


@dataclass(frozen=True)
class ReleaseBuild:
    """One chip's build in a web release: a pack folder's parts, as its ``flasher_args.json`` lists them."""

    folder: Path
    chip: Chip
    parts: tuple[tuple[int, str], ...]  # (flash offset, file name), by offset
    merged_file: str
    merged_offset: int
    name: str
    version: str

    @property
    def family(self) -> str:
        return self.chip.esp_web_tools_family

    @property
    def subdir(self) -> str:
        return self.chip.name

    @property
    def launchpad_file(self) -> str:
        """The file Launchpad writes at 0x0: the merged image when it starts there, else a padded copy."""
        if self.merged_offset == 0:
            return self.merged_file
        return self.merged_file.removesuffix(MERGED_SUFFIX) + LAUNCHPAD_SUFFIX


@dataclass
class WebRelease:
    """The packs of one release, one per chip, with the name and version the flasher shows."""

    name: str
    version: str
    packs: tuple[ReleaseBuild, ...]
    launchpad_base_url: str | None = None
    warnings: list[str] = field(default_factory=list)

    def manifest(self) -> dict:
        """The esp-web-tools manifest: per chip family, the pack's parts (an update keeps NVS), paths relative to it."""
        builds = [(p.family, [(f"{p.subdir}/{file}", off) for off, file in p.parts]) for p in self.packs]
        return esp_web_tools_manifest(self.name, self.version, builds)

    def launchpad_toml(self) -> str:
        """ESP Launchpad's config (``esp_toml_version = 1.0``): one app, one image per chip family, flashed at 0x0."""
        base = self.launchpad_base_url or ""
        lines = [
            f"esp_toml_version = {LAUNCHPAD_TOML_VERSION}",
            f"firmware_images_url = {_toml_string(base)}",
            "",
            f"supported_apps = [{_toml_string(self.name)}]",
            "",
            f"[{_toml_string(self.name)}]",
            f"description = {_toml_string(f'{self.name} {self.version}')}",
            f"chipsets = [{', '.join(_toml_string(p.family) for p in self.packs)}]",
        ]
        lines += [f"image.{p.family.lower()} = {_toml_string(f'{p.subdir}/{p.launchpad_file}')}" for p in self.packs]
        return "\n".join(lines) + "\n"

    def folder_files(self, pack: ReleaseBuild) -> dict[str, bytes]:
        """The files copied into ``pack``'s chip folder: its parts, and its Launchpad image when asked for."""
        out = {file: read_input(pack.folder / file, "pack part") for _, file in pack.parts}
        if self.launchpad_base_url is not None:
            merged = read_input(pack.folder / pack.merged_file, "merged image")
            out[pack.launchpad_file] = ERASED * pack.merged_offset + merged
        return out

    def to_dict(self, manifest_path: Path | None = None) -> dict:
        folder = manifest_path.parent if manifest_path is not None else Path(".")
        return {
            "manifest": os.fspath(manifest_path) if manifest_path is not None else None,
            "launchpad": os.fspath(folder / LAUNCHPAD_FILE) if self.launchpad_base_url is not None else None,
            "name": self.name,
            "version": self.version,
            "builds": [
                {
                    "chip": p.chip.name,
                    "chipFamily": p.family,
                    "pack": os.fspath(p.folder),
                    "folder": os.fspath(folder / p.subdir),
                    "parts": [{"path": f"{p.subdir}/{file}", "offset": off} for off, file in p.parts],
                    **({"launchpad_image": f"{p.subdir}/{p.launchpad_file}"} if self.launchpad_base_url is not None else {}),
                }
                for p in self.packs
            ],
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- reading packs


def read_pack(folder: str | os.PathLike) -> ReleaseBuild:
    """A pack output folder, refused in one line unless it verifies (the merged image boots, the part files match it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such pack folder; pass an OUTDIR written by imgtool pack", path=folder)
    entries = read_flasher_args(folder)
    sums = checked_sums(folder)
    require_listed(folder, sums, [name for _, name in entries.parts] + [entries.merged_file, entries.app_file], FLASHER_ARGS_JSON_FILE)
    _check_pack(folder, entries)
    name, version = _app_identity(folder, entries.app_file)
    return ReleaseBuild(folder, entries.chip, entries.parts, entries.merged_file, entries.merged_offset, name, version)


def _check_pack(folder: Path, entries: FlasherArgs) -> None:
    """Refuse a pack whose merged image would not boot or whose part files disagree with it.

    Encrypted packs cannot be booted without their key, so only their files are compared.
    """
    if entries.encrypted:
        merged = read_input(folder / entries.merged_file, "merged image")
        problems = [c for c in check_pack_folder(folder, merged, entries.merged_offset) if not c.ok]
    else:
        problems = verify(folder, chip=entries.chip).problems
    if problems:
        raise InputError(f"is not a sound pack: {problems[0]}; re-run imgtool pack", path=folder)


def _app_identity(folder: Path, app_file: str) -> tuple[str, str]:
    """Project name and version from the app descriptor, else from the pack's own manifest."""
    name = version = ""
    try:
        parsed = parse_image(read_input(folder / app_file, "app image"))
        desc = parse_app_descriptor(parsed.segments[0].segment.data) if parsed.segments else None
        if desc is not None:
            name, version = c_string(desc.project_name), c_string(desc.version)
    except ImgtoolError:
        pass  # encrypted: the descriptor is not readable without the key
    if not name or not version:
        try:
            own = json.loads(read_input(folder / WEB_MANIFEST_FILE, WEB_MANIFEST_FILE, limit=MAX_METADATA_BYTES).decode("utf-8"))
            name = name or str(own.get("name") or "")
            version = version or str(own.get("version") or "")
        except (ImgtoolError, ValueError, AttributeError, RecursionError):
            pass
    return name or folder.name, version or UNVERSIONED


# --------------------------------------------------------------------------- the release


def plan_release(
    folders, *, name: str | None = None, version: str | None = None, launchpad_base_url: str | None = None
) -> WebRelease:
    """Read and check every pack; refuse two of one chip and packs that disagree on the name or version shown."""
    if not folders:
        raise UsageError("pass at least one pack folder", field="OUTDIR")
    packs = [read_pack(f) for f in folders]
    seen: dict[str, ReleaseBuild] = {}
    for p in packs:
        other = seen.get(p.chip.name)
        if other is not None:
            raise UsageError(
                f"{other.folder} and {p.folder} are both {p.chip.name} packs, and esp-web-tools takes one build per "
                f"chip family ({p.family}); pass one of them",
                field="OUTDIR",
            )
        seen[p.chip.name] = p
    name = name if name is not None else _agreed(packs, "name", "--name")
    version = version if version is not None else _agreed(packs, "version", "--version")
    if launchpad_base_url is not None and launchpad_base_url and not launchpad_base_url.endswith("/"):
        launchpad_base_url += "/"  # Launchpad appends the image path to it as text
    return WebRelease(name, version, tuple(packs), launchpad_base_url)


def _agreed(packs, attr: str, option: str) -> str:
    values = {getattr(p, attr) for p in packs}
    if len(values) > 1:
        listed = ", ".join(f"{p.folder}: '{getattr(p, attr)}'" for p in packs)
        raise UsageError(f"the packs' app descriptors give different {attr}s ({listed}); pass {option}", field=option)
    return values.pop()


def write_release(
    release: WebRelease, manifest_path: str | os.PathLike, *, force: bool = False
) -> Path:
    """Copy each pack's files into ``DIR/<chip>/`` and write the manifest (and Launchpad TOML) beside them.

    Files an earlier manifest at the same path (or, when the TOML is rewritten, an earlier
    ``launchpad.toml``) listed in a chip folder, and this release does not, are removed;
    without ``--launchpad`` an existing TOML and its images are left alone. A file already in a
    chip folder that neither lists is the user's and is refused unless ``force``.
    """
    target = Path(manifest_path)
    if target.is_dir():
        target = target / WEB_MANIFEST_FILE
    out = target.parent
    rendered = {p.subdir: release.folder_files(p) for p in release.packs}  # every read before any write
    manifest = json_bytes(release.manifest())
    stale = _previous_files(target, launchpad=release.launchpad_base_url is not None)
    written = _previous_files(target, launchpad=True)
    out.mkdir(parents=True, exist_ok=True)
    for subdir, files in rendered.items():
        remove = tuple(sorted(stale.get(subdir, set()) - set(files)))
        owned = None if force else (lambda _folder, names=frozenset(written.get(subdir, ())): names)
        write_outputs(out / subdir, files, remove=remove, owned=owned)
    if release.launchpad_base_url is not None:
        write_bytes(out / LAUNCHPAD_FILE, release.launchpad_toml())
    write_bytes(target, manifest)
    return target


def _previous_files(manifest_path: Path, *, launchpad: bool) -> dict[str, set[str]]:
    """Chip folder → file names the existing manifest at ``manifest_path`` (and, when rewriting it, the Launchpad TOML) list there."""
    paths: list[str] = []
    try:
        doc = json.loads(read_input(manifest_path, WEB_MANIFEST_FILE, limit=MAX_METADATA_BYTES).decode("utf-8"))
        paths += [str(part["path"]) for build in doc["builds"] for part in build["parts"]]
    except (ImgtoolError, ValueError, KeyError, TypeError, RecursionError):
        pass
    if launchpad:
        paths += _launchpad_images(manifest_path.parent / LAUNCHPAD_FILE)
    out: dict[str, set[str]] = {}
    for path in paths:
        folder, _, name = path.partition("/")
        if name and "/" not in name and name not in (".", ".."):
            out.setdefault(folder, set()).add(name)
    return out


def _launchpad_images(path: Path) -> list[str]:
    try:
        doc = load_toml(path)
        return [str(v) for app in doc.get("supported_apps", []) for v in doc[app].get("image", {}).values()]
    except (InputError, KeyError, TypeError, AttributeError):
        return []


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; TOML also forbids a raw DEL, which JSON leaves as it is)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


__all__ = ["LAUNCHPAD_FILE", "ReleaseBuild", "WebRelease", "plan_release", "read_pack", "write_release"]
