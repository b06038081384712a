"""Where pinned bootloaders come from: imgtool's cache folder, else a mirror, else their pinned address.

Whatever the source, bytes must match the manifest's SHA-256 before they are cached or
returned (:mod:`imgtool.bootloader.download` checks them before anything is renamed into the cache).
A mirror serves the default pinned set at its own address and every other set at a sibling
address named with the set's suffix (``.../bootloaders`` and ``.../bootloaders-idf6.1``, as the
corpus and espflash's two releases lay them out); see :class:`imgtool.bootloader.pins.BootloaderSet`.
The cache folder and the mirror are values a :class:`BootloaderStore` holds; the CLI fills them
from ``$IMGTOOL_CACHE_DIR`` and ``$IMGTOOL_BOOTLOADER_MIRROR`` (:mod:`imgtool.environment`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from imgtool.atomic import read_input
from imgtool.bootloader.pins import Manifest, ManifestEntry, get_set, load_manifest
from imgtool.bootloader.place import MAX_BOOTLOADER_BYTES
from imgtool.environment import ENV_MIRROR, user_cache_dir
from imgtool.errors import BootloaderError, InputError

if TYPE_CHECKING:
    # for types only: download loads http and ssl (~15 ms), which a pack from the cache skips
    from imgtool.bootloader.download import DownloadSettings

CACHE_SUBDIR = "bootloaders"
#: Cached files are named ``<file stem>-<first hex digits of the SHA-256>.bin`` so a re-pinned file never collides.
CACHE_HASH_DIGITS = 16


class BootloaderStatus:
    """A pinned entry and where it is (or would be) cached (a plain class: a NamedTuple costs ~0.2 ms at a pack's start-up)."""

    __slots__ = ("entry", "path", "cached")

    def __init__(self, entry: ManifestEntry, path: Path, cached: bool):
        self.entry = entry
        self.path = path
        self.cached = cached


class BootloaderStore:
    """imgtool's cache folder and the mirror (an http(s) base URL, a ``file://`` URL or a folder; empty: none).

    A plain class, not a dataclass: nothing to build at import. With no ``cache_dir`` the platform's user
    cache is looked up only when the cache is used, so a pack given its own bootloader never asks.
    """

    __slots__ = ("_cache_dir", "mirror")

    def __init__(self, cache_dir: Path | None = None, mirror: str = ""):
        self._cache_dir = cache_dir
        self.mirror = mirror

    def __repr__(self) -> str:
        return f"BootloaderStore(cache_dir={self._cache_dir!r}, mirror={self.mirror!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, BootloaderStore):
            return NotImplemented
        return (self._cache_dir, self.mirror) == (other._cache_dir, other.mirror)

    def __hash__(self) -> int:
        return hash((self._cache_dir, self.mirror))

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else user_cache_dir()

    def path(self, entry: ManifestEntry) -> Path:
        """Where ``entry`` is (or would be) cached."""
        stem = entry.file.rsplit(".", 1)[0]
        return self.cache_dir / CACHE_SUBDIR / f"{stem}-{entry.sha256[:CACHE_HASH_DIGITS]}.bin"

    def read_cached(self, entry: ManifestEntry) -> bytes | None:
        """The cached bytes when present and intact; a damaged cache file (or one that is no file) counts as absent."""
        try:
            data = read_input(self.path(entry), "cached bootloader", limit=MAX_BOOTLOADER_BYTES)
        except InputError:
            return None
        return data if hashlib.sha256(data).hexdigest() == entry.sha256 else None

    def statuses(self, manifest: Manifest | None = None) -> list[BootloaderStatus]:
        """Every pinned entry, where it is cached and whether it is."""
        manifest = manifest or load_manifest()
        return [BootloaderStatus(e, self.path(e), self.read_cached(e) is not None) for e in manifest.entries]

    def fetch(
        self,
        chip_name: str,
        *,
        variant: str | None = None,
        offline: bool = False,
        quiet: bool = False,
        manifest: Manifest | None = None,
        settings: DownloadSettings | None = None,
    ) -> bytes:
        """The pinned bootloader's bytes: from the cache, else the mirror, else its pinned address.

        ``offline`` allows the cache and a mirror folder only; ``quiet`` hides the progress bar.
        ``manifest`` and ``settings`` (a ``download.DownloadSettings``) exist for tests and tools.
        """
        entry = (manifest or load_manifest()).lookup(chip_name, variant)
        cached = self.read_cached(entry)
        if cached is not None:
            return cached
        from imgtool.bootloader import download  # only now: a cache hit should not pay for the network stack

        dest = self.path(entry)
        suffix = get_set(entry.bootloader_set).mirror_suffix
        folder = _mirror_folder(self.mirror)
        try:
            if folder is not None:
                folder = folder.resolve().with_name(folder.resolve().name + suffix) if suffix else folder
                source = folder / entry.file
                where = f"the {ENV_MIRROR} folder"
                if suffix:
                    where += f"'s {entry.bootloader_set} sibling (the folder name + '{suffix}')"
                try:
                    data = read_input(source, "bootloader", limit=MAX_BOOTLOADER_BYTES)
                except InputError as exc:
                    raise BootloaderError(
                        f"cannot read {entry.file} from {where} ({exc.message}); copy it there or unset the variable",
                        path=source,
                    ) from None
                download.install_bytes(data, dest, sha256=entry.sha256, source=os.fspath(source))
            elif offline:
                raise BootloaderError(
                    f"the {entry.chip} bootloader ({entry.variant}) is not cached in {dest.parent} and offline mode "
                    f"forbids downloading it; run 'imgtool bootloader fetch --chip {entry.chip}"
                    f"{'' if entry.default else ' --variant ' + entry.variant}"
                    f"{'' if not suffix else ' --set ' + entry.bootloader_set}' while online, set {ENV_MIRROR} "
                    f"to a folder holding {entry.file}, or pass your own bootloader file"
                )
            else:
                url = f"{self.mirror.rstrip('/')}{suffix}/{entry.file}" if self.mirror else entry.url
                download.download(
                    url,
                    dest,
                    sha256=entry.sha256,
                    settings=settings or download.DEFAULT_SETTINGS,
                    quiet=quiet,
                    label=f"{entry.chip} bootloader",
                )
        except download.DownloadError as exc:
            raise BootloaderError(f"cannot get the {entry.chip} bootloader: {exc.message}") from None
        data = self.read_cached(entry)
        if data is None:  # pragma: no cover - only if someone alters the cache between our write and read
            raise BootloaderError("the cached bootloader changed while reading it; run again", path=dest)
        return data


def _mirror_folder(mirror: str) -> Path | None:
    """The mirror as a local folder, or None when it is unset or a URL."""
    if not mirror or mirror.startswith(("http://", "https://")):
        return None
    if mirror.startswith("file://"):
        mirror = unquote(urlsplit(mirror).path)
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise BootloaderError(
            f"'{folder}' is neither an http(s) address nor an existing folder; fix or unset it",
            path=ENV_MIRROR,
        )
    return folder


__all__ = ["BootloaderStatus", "BootloaderStore"]
