"""The pinned-bootloader manifest: which prebuilt ESP-IDF bootloader each chip gets, pinned by SHA-256.

Rust users have no ESP-IDF build, so imgtool ships ``bootloaders/manifest.json`` listing each
chip's prebuilt builds (variants by crystal or chip revision), their pinned addresses and hashes.
This module checks that document (every mistake names the entry and field) and looks entries up;
fetching them is :mod:`imgtool.bootloader.store`'s job.

There are two pinned sets (:data:`BOOTLOADER_SETS`), one manifest each: ``idf5.5`` (the default,
espflash v4.5.0's ESP-IDF v5.5 builds) and ``idf6.1`` (espflash main's ESP-IDF release/v6.1 builds,
``manifest-idf6.1.json``), with the same file names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

from imgtool.chips.table import get_chip
from imgtool.errors import BootloaderError, UsageError

MANIFEST_PACKAGE = "imgtool.bootloader_manifest"
PIN_MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 1
_HEX = frozenset("0123456789abcdef")
#: Variants named for a crystal frequency (esp32 and esp32c2: ``26mhz``, ``40mhz``).
_CRYSTAL_VARIANT = re.compile(r"(\d+)mhz")


class BootloaderSet:
    """One pinned set of bootloaders: its manifest, and where a mirror serves it (a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up)."""

    __slots__ = ("name", "manifest_file", "mirror_suffix")

    def __init__(self, name: str, manifest_file: str, mirror_suffix: str):
        self.name = name
        self.manifest_file = manifest_file
        #: A mirror (``$IMGTOOL_BOOTLOADER_MIRROR``: a folder or base URL) serves the default set itself; another
        #: set lives in the sibling whose name adds this suffix (``.../bootloaders`` → ``.../bootloaders-idf6.1``).
        self.mirror_suffix = mirror_suffix


BOOTLOADER_SETS = (
    BootloaderSet("idf5.5", PIN_MANIFEST_FILE, ""),  # espflash v4.5.0's ESP-IDF v5.5 builds (released)
    BootloaderSet("idf6.1", "manifest-idf6.1.json", "-idf6.1"),  # espflash main's ESP-IDF release/v6.1 builds
)
DEFAULT_SET = BOOTLOADER_SETS[0].name


def get_set(name: str | None, *, option: str = "--bootloader-set") -> BootloaderSet:
    """The pinned set called ``name`` (None: the default); an unknown name is blamed on ``option``."""
    wanted = DEFAULT_SET if name is None else name.strip().lower()
    for entry in BOOTLOADER_SETS:
        if entry.name == wanted:
            return entry
    names = ", ".join(s.name for s in BOOTLOADER_SETS)
    raise UsageError(f"unknown bootloader set '{name}'; use one of {names}", field=option)


class ManifestEntry(NamedTuple):
    """One pinned bootloader build."""

    chip: str
    variant: str
    default: bool
    file: str
    url: str
    sha256: str
    size: int
    esp_idf: str
    note: str = ""
    #: The pinned set the entry belongs to (:data:`BOOTLOADER_SETS`).
    bootloader_set: str = DEFAULT_SET

    @property
    def crystal_mhz(self) -> int | None:
        """The crystal a ``26mhz``/``40mhz`` build is for; None when the variant does not depend on it."""
        match = _CRYSTAL_VARIANT.fullmatch(self.variant)
        return int(match.group(1)) if match else None

    def describe(self) -> dict:
        """What ``flasher_args.json`` records about a placed pinned build."""
        return {
            "source": "pinned",
            "chip": self.chip,
            "variant": self.variant,
            "crystal_mhz": self.crystal_mhz,
            "set": self.bootloader_set,
        }


class Manifest:
    """One pinned set's entries (a plain class, as BootloaderSet)."""

    __slots__ = ("entries", "bootloader_set")

    def __init__(self, entries: tuple[ManifestEntry, ...], bootloader_set: str = DEFAULT_SET):
        self.entries = entries
        self.bootloader_set = bootloader_set

    def variants(self, chip: str) -> list[ManifestEntry]:
        return [e for e in self.entries if e.chip == chip]

    def entry_for(self, data: bytes) -> ManifestEntry | None:
        """The pinned entry whose file is exactly ``data``, if any."""
        digest = hashlib.sha256(data).hexdigest()
        return next((e for e in self.entries if e.sha256 == digest), None)

    def lookup(self, chip_name: str, variant: str | None = None, *, option: str = "--variant") -> ManifestEntry:
        """The entry for ``chip_name`` and ``variant`` (its default variant when None).

        ``option`` names the command-line option an unknown variant is blamed on.
        """
        chip = get_chip(chip_name).name
        entries = self.variants(chip)
        if not entries:
            raise BootloaderError(
                f"no prebuilt bootloader is pinned for {chip} (espflash ships none for it); pass --bootloader FILE "
                "with one built by ESP-IDF (build/bootloader/bootloader.bin)",
                field=chip,
            )
        if variant is None:
            return next((e for e in entries if e.default), entries[0])
        wanted = variant.strip().lower()
        for entry in entries:
            if entry.variant == wanted:
                return entry
        if len(entries) == 1:
            raise UsageError(f"unknown bootloader variant '{variant}' for {chip}, which has one build only; drop {option}", field=option)
        names = ", ".join(e.variant for e in entries)
        raise UsageError(f"unknown bootloader variant '{variant}' for {chip}; use one of {names}", field=option)


def load_manifest(path: str | os.PathLike | None = None, *, bootloader_set: str | None = None) -> Manifest:
    """The manifest of pinned set ``bootloader_set`` (None: the default) shipped inside the package, or the JSON file at ``path``."""
    if path is None:
        import pkgutil  # lighter to import than importlib.resources, which matters for `pack` start-up

        name = get_set(bootloader_set).manifest_file
        where = f"{MANIFEST_PACKAGE}/{name}"
        text = pkgutil.get_data(MANIFEST_PACKAGE, name).decode("utf-8")
    else:
        where = os.fspath(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BootloaderError(f"the bootloader manifest is not valid JSON ({exc})", path=where) from None
    return parse_manifest(data, where)


def parse_manifest(data: dict, where: str = "manifest") -> Manifest:
    """Check and convert a manifest document; every mistake names the entry and field."""
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise BootloaderError(f"unsupported manifest; expected schema {MANIFEST_SCHEMA}", path=where, field="schema")
    raw = data.get("bootloaders")
    if not isinstance(raw, list) or not raw:
        raise BootloaderError("the manifest lists no bootloaders", path=where, field="bootloaders")
    set_name = data.get("set", DEFAULT_SET)
    names = [s.name for s in BOOTLOADER_SETS]
    if set_name not in names:
        raise BootloaderError(f"unknown bootloader set {set_name!r}; use one of {', '.join(names)}", path=where, field="set")
    entries = tuple(
        _parse_entry(item, where, f"bootloaders[{i}]")._replace(bootloader_set=set_name) for i, item in enumerate(raw)
    )
    for chip in sorted({e.chip for e in entries}):
        defaults = [e for e in entries if e.chip == chip and e.default]
        if len(defaults) != 1:
            raise BootloaderError(
                f"{chip} has {len(defaults)} default variants; mark exactly one with \"default\": true",
                path=where,
                field="default",
            )
    return Manifest(entries=entries, bootloader_set=set_name)


def _parse_entry(item, where: str, name: str) -> ManifestEntry:
    def need(key, kind):
        value = item.get(key) if isinstance(item, dict) else None
        # bool is an int subclass: a size of ``true`` must not pass as a number
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise BootloaderError(f"missing or mistyped '{key}'", path=where, field=f"{name}.{key}")
        return value

    chip = get_chip(need("chip", str))
    variant = need("variant", str).lower()
    crystal = _CRYSTAL_VARIANT.fullmatch(variant)
    if crystal and int(crystal.group(1)) not in chip.crystals_mhz:
        runs_from = ", ".join(f"{mhz} MHz" for mhz in chip.crystals_mhz)
        raise BootloaderError(
            f"variant {variant} names a crystal {chip.name} does not run from ({runs_from})", path=where, field=f"{name}.variant"
        )
    sha256 = need("sha256", str).lower()
    if len(sha256) != 2 * hashlib.sha256().digest_size or not set(sha256) <= _HEX:
        raise BootloaderError("sha256 must be 64 hex digits", path=where, field=f"{name}.sha256")
    file = need("file", str)
    if "/" in file or "\\" in file or file.startswith("."):
        raise BootloaderError("file must be a plain file name", path=where, field=f"{name}.file")
    url = need("url", str)
    if not url.startswith(("https://", "http://")):
        raise BootloaderError("url must be an http(s) address", path=where, field=f"{name}.url")
    return ManifestEntry(
        chip=chip.name,
        variant=variant,
        default=need("default", bool),
        file=file,
        url=url,
        sha256=sha256,
        size=need("size", int),
        esp_idf=need("esp_idf", str),
        note=item.get("note", "") if isinstance(item.get("note", ""), str) else "",
    )


def pinned_entry(data: bytes) -> ManifestEntry | None:
    """The pinned entry of any set whose file is exactly ``data``."""
    for pinned_set in BOOTLOADER_SETS:
        entry = load_manifest(bootloader_set=pinned_set.name).entry_for(data)
        if entry is not None:
            return entry
    return None


__all__ = [
    "BOOTLOADER_SETS",
    "DEFAULT_SET",
    "BootloaderSet",
    "Manifest",
    "ManifestEntry",
    "get_set",
    "load_manifest",
    "parse_manifest",
    "pinned_entry",
]
