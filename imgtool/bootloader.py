"""The second-stage bootloader: find the pinned prebuilt one (cache, mirror or download), check a user's, place it.

Rust users have no ESP-IDF build, so imgtool ships a manifest that pins each
chip's prebuilt ESP-IDF bootloader by SHA-256 and fetches it on first use.
Placing a bootloader means writing the real flash parameters into its header
and re-computing the appended SHA-256, which the ROM checks before running it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from imgtool.chips import (
    ANY_REVISION_MAX,
    FLASH_MODES,
    FLASH_SIZES,
    Chip,
    chip_by_image_id,
    get_chip,
    normalize_flash_mode,
    normalize_flash_size,
    revision_name,
)
from imgtool.errors import BootloaderError, UsageError
from imgtool.image_format import HEADER_LEN, SHA256_LEN, EspImage, ImageHeader, parse_image

ENV_CACHE_DIR = "IMGTOOL_CACHE_DIR"
ENV_MIRROR = "IMGTOOL_BOOTLOADER_MIRROR"
MANIFEST_PACKAGE = "imgtool.bootloader_manifest"
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = 1
CACHE_APP_NAME = "imgtool"
CACHE_SUBDIR = "bootloaders"
#: Cached files are named ``<file stem>-<first hex digits of the SHA-256>.bin`` so a re-pinned file never collides.
CACHE_HASH_DIGITS = 16
#: Far above any real second-stage bootloader; guards against reading a whole flash dump by mistake.
MAX_BOOTLOADER_BYTES = 1024 * 1024
_HEX = frozenset("0123456789abcdef")
#: An app image's first segment starts with ESP_APP_DESC_MAGIC_WORD (header 24 bytes + segment header 8); a bootloader's never does.
APP_DESC_OFFSET = 24 + 8
APP_DESC_MAGIC = (0xABCD5432).to_bytes(4, "little")
#: Variants named for a crystal frequency (esp32 and esp32c2: ``26mhz``, ``40mhz``).
_CRYSTAL_VARIANT = re.compile(r"(\d+)mhz")

if TYPE_CHECKING:
    from imgtool.download import DownloadSettings


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

    @property
    def crystal_mhz(self) -> int | None:
        """The crystal a ``26mhz``/``40mhz`` build is for; None when the variant does not depend on it."""
        match = _CRYSTAL_VARIANT.fullmatch(self.variant)
        return int(match.group(1)) if match else None

    def describe(self) -> dict:
        """What ``flasher_args.json`` records about a placed pinned build."""
        return {"source": "pinned", "chip": self.chip, "variant": self.variant, "crystal_mhz": self.crystal_mhz}


class Manifest(NamedTuple):
    entries: tuple[ManifestEntry, ...]
    release: str = ""  # the espflash release the files were published with

    def variants(self, chip: str) -> list[ManifestEntry]:
        return [e for e in self.entries if e.chip == chip]

    def entry_for(self, data: bytes) -> ManifestEntry | None:
        """The pinned entry whose file is exactly ``data``, if any."""
        digest = hashlib.sha256(data).hexdigest()
        return next((e for e in self.entries if e.sha256 == digest), None)

    def for_crystal(self, chip: str, crystal_mhz: int) -> ManifestEntry | None:
        """The variant built for ``crystal_mhz`` on a chip whose builds differ by crystal."""
        return next((e for e in self.variants(chip) if e.crystal_mhz == crystal_mhz), None)

    def lookup(self, chip_name: str, variant: str | None = None, *, option: str = "--variant") -> ManifestEntry:
        """The entry for ``chip_name`` and ``variant`` (its default variant when None).

        ``option`` names the command-line option an unknown variant is blamed on.
        """
        chip = get_chip(chip_name).name
        entries = self.variants(chip)
        if not entries:
            raise BootloaderError(
                f"no prebuilt bootloader is pinned for {chip}; pass your own bootloader file", field="chip"
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


class BootloaderStatus(NamedTuple):
    """A pinned entry and where it is (or would be) cached."""

    entry: ManifestEntry
    path: Path
    cached: bool


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    """The manifest shipped inside the package, or the JSON file at ``path``."""
    if path is None:
        import pkgutil  # lighter to import than importlib.resources, which matters for `pack` start-up

        where = f"{MANIFEST_PACKAGE}/{MANIFEST_FILE}"
        text = pkgutil.get_data(MANIFEST_PACKAGE, MANIFEST_FILE).decode("utf-8")
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
    entries = tuple(_parse_entry(item, where, f"bootloaders[{i}]") for i, item in enumerate(raw))
    for chip in sorted({e.chip for e in entries}):
        defaults = [e for e in entries if e.chip == chip and e.default]
        if len(defaults) != 1:
            raise BootloaderError(
                f"{chip} has {len(defaults)} default variants; mark exactly one with \"default\": true",
                path=where,
                field="default",
            )
    release = data.get("source", {}).get("release", "") if isinstance(data.get("source"), dict) else ""
    return Manifest(entries=entries, release=str(release))


def _parse_entry(item, where: str, name: str) -> ManifestEntry:
    def need(key, kind):
        value = item.get(key) if isinstance(item, dict) else None
        # bool is an int subclass: a size of ``true`` must not pass as a number
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise BootloaderError(f"missing or mistyped '{key}'", path=where, field=f"{name}.{key}")
        return value

    chip = get_chip(need("chip", str)).name
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
        chip=chip,
        variant=need("variant", str).lower(),
        default=need("default", bool),
        file=file,
        url=url,
        sha256=sha256,
        size=need("size", int),
        esp_idf=need("esp_idf", str),
        note=item.get("note", "") if isinstance(item.get("note", ""), str) else "",
    )


def cache_dir() -> Path:
    """imgtool's cache folder: ``$IMGTOOL_CACHE_DIR`` when set, else the platform's user cache."""
    override = os.environ.get(ENV_CACHE_DIR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(CACHE_APP_NAME, appauthor=False))


def cache_path(entry: ManifestEntry) -> Path:
    stem = entry.file.rsplit(".", 1)[0]
    return cache_dir() / CACHE_SUBDIR / f"{stem}-{entry.sha256[:CACHE_HASH_DIGITS]}.bin"


def read_cached(entry: ManifestEntry) -> bytes | None:
    """The cached bytes when present and intact; a damaged cache file counts as absent."""
    try:
        data = cache_path(entry).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == entry.sha256 else None


def list_bootloaders(*, manifest: Manifest | None = None) -> list[BootloaderStatus]:
    manifest = manifest or load_manifest()
    return [BootloaderStatus(e, cache_path(e), read_cached(e) is not None) for e in manifest.entries]


def get_bootloader(
    chip_name: str,
    *,
    variant: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    manifest: Manifest | None = None,
    settings: DownloadSettings | None = None,
) -> bytes:
    """The pinned bootloader's bytes: from the cache, else ``$IMGTOOL_BOOTLOADER_MIRROR``, else its pinned address.

    Whatever the source, the bytes must match the pinned SHA-256 before they are
    cached or returned. ``offline`` allows the cache and a mirror folder only.
    ``manifest`` and ``settings`` (a ``download.DownloadSettings``) exist for tests and tools.
    """
    entry = (manifest or load_manifest()).lookup(chip_name, variant)
    cached = read_cached(entry)
    if cached is not None:
        return cached
    from imgtool import (
        download,  # only now: a cache hit should not pay for the network stack
    )

    dest = cache_path(entry)
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    folder = _mirror_folder(mirror)
    try:
        if folder is not None:
            source = folder / entry.file
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise BootloaderError(
                    f"cannot read {entry.file} from the {ENV_MIRROR} folder ({exc.strerror}); "
                    "copy it there or unset the variable",
                    path=source,
                ) from None
            download.install_bytes(data, dest, sha256=entry.sha256, source=os.fspath(source))
        elif offline:
            raise BootloaderError(
                f"the {entry.chip} bootloader ({entry.variant}) is not cached in {dest.parent} and offline mode "
                f"forbids downloading it; run 'imgtool bootloader fetch --chip {entry.chip}"
                f"{'' if entry.default else ' --variant ' + entry.variant}' while online, set {ENV_MIRROR} "
                f"to a folder holding {entry.file}, or pass your own bootloader file"
            )
        else:
            url = f"{mirror.rstrip('/')}/{entry.file}" if mirror else entry.url
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
    data = read_cached(entry)
    if data is None:  # pragma: no cover - only if someone alters the cache between our write and read
        raise BootloaderError("the cached bootloader changed while reading it; run again", path=dest)
    return data


def _mirror_folder(mirror: str) -> Path | None:
    """The mirror as a local folder, or None when it is unset or a URL."""
    if not mirror or mirror.startswith(("http://", "https://")):
        return None
    if mirror.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        mirror = unquote(urlsplit(mirror).path)
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise BootloaderError(
            f"'{folder}' is neither an http(s) address nor an existing folder; fix or unset it",
            path=ENV_MIRROR,
        )
    return folder


def bootloader_for_app(
    chip_name: str,
    *,
    app_min_rev_full: int = 0,
    app_max_rev_full: int = ANY_REVISION_MAX,
    variant: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    manifest: Manifest | None = None,
    settings: DownloadSettings | None = None,
) -> tuple[bytes, str | None]:
    """The pinned bootloader an app can boot with, and a note when it is not the chip's default.

    ``variant`` is taken as given. Otherwise the default variant is used when its chip-revision
    range meets the app's; if not, the first other variant that does (an app built for ESP32-P4
    v1.x engineering samples needs the v0 build, production silicon the default v3). With no match
    the default is returned and :func:`place_bootloader` explains the mismatch.
    """
    manifest = manifest or load_manifest()
    fetch = {"offline": offline, "quiet": quiet, "manifest": manifest, "settings": settings}
    if variant is not None:
        manifest.lookup(chip_name, variant, option="--bootloader-variant")
        return get_bootloader(chip_name, variant=variant, **fetch), None
    default = manifest.lookup(chip_name)
    data = get_bootloader(chip_name, **fetch)
    if _runs_app(parse_image(data).image, app_min_rev_full, app_max_rev_full):
        return data, None
    for entry in manifest.variants(default.chip):
        if entry is default:
            continue
        other = get_bootloader(chip_name, variant=entry.variant, **fetch)
        image = parse_image(other).image
        if _runs_app(image, app_min_rev_full, app_max_rev_full):
            return other, (
                f"using the {entry.chip} bootloader variant {entry.variant} "
                f"(revisions {_rev_range(image.min_chip_rev_full, image.max_chip_rev_full)}): the app allows "
                f"revisions {_rev_range(app_min_rev_full, app_max_rev_full)}, which the default "
                f"{default.variant} does not run on"
            )
    return data, None


def _runs_app(image: EspImage, app_min_rev_full: int, app_max_rev_full: int) -> bool:
    """Whether the image's chip-revision range meets the app's."""
    return image.min_chip_rev_full <= app_max_rev_full and app_min_rev_full <= image.max_chip_rev_full


def load_user_bootloader(path: str | os.PathLike, chip: Chip | str) -> bytes:
    """A bootloader file the user supplies, refused unless it is an intact ESP image for ``chip``."""
    from imgtool.atomic import read_input

    chip = get_chip(chip)
    data = read_input(path, "bootloader", limit=MAX_BOOTLOADER_BYTES)
    if data[APP_DESC_OFFSET : APP_DESC_OFFSET + len(APP_DESC_MAGIC)] == APP_DESC_MAGIC:
        raise BootloaderError(
            "is an app image (it starts with an app descriptor), not a bootloader; pass the bootloader's .bin "
            "(ESP-IDF: build/bootloader/bootloader.bin) or drop --bootloader to use the pinned one",
            path=path,
        )
    _checked(data, chip, path)
    return data


def place_bootloader(
    data: bytes,
    chip: Chip | str,
    *,
    flash_mode: str,
    flash_size: str,
    flash_freq: str,
    app_min_rev_full: int = 0,
    app_max_rev_full: int = ANY_REVISION_MAX,
    path: str | os.PathLike | None = None,
) -> bytes:
    """The bootloader with the flash parameters in its header and a fresh appended SHA-256.

    Everything after the 8-byte header stays byte-for-byte the same (the checksum
    covers segment data only, so it still holds). Refuses a bootloader for another
    chip, or one whose chip-revision range cannot run on any revision the app allows.
    """
    chip = get_chip(chip)
    mode_code = FLASH_MODES[normalize_flash_mode(flash_mode)]
    size_code = FLASH_SIZES[normalize_flash_size(flash_size)]
    freq_code = chip.flash_freq_code(flash_freq)
    parsed = _checked(data, chip, path)
    image = parsed.image
    if not _runs_app(image, app_min_rev_full, app_max_rev_full):
        runs_on = _rev_range(image.min_chip_rev_full, image.max_chip_rev_full)
        raise BootloaderError(
            f"the bootloader runs on {chip.name} revisions {runs_on} "
            f"but the app allows {_rev_range(app_min_rev_full, app_max_rev_full)}; pick a bootloader variant for "
            "the app's revisions ('imgtool bootloader list', then pack --bootloader-variant) or change the app's "
            "revision range",
            path=path,
            field="chip revision",
        )
    header = ImageHeader.build(
        dict(
            segment_count=len(image.segments),
            flash_mode=mode_code,
            flash_size_freq=(size_code << 4) | freq_code,
            entry=image.entry,
        )
    )
    body_end = parsed.length - (SHA256_LEN if image.hash_appended else 0)
    out = header + bytes(data[HEADER_LEN:body_end])
    if image.hash_appended:
        out += hashlib.sha256(out).digest()
    return out


def _checked(data: bytes, chip: Chip, path):
    """Parse ``data`` and refuse it unless it is an intact image for ``chip``."""
    parsed = parse_image(data, path, what="bootloader")
    image = parsed.image
    if image.chip_id != chip.image_chip_id:
        other = chip_by_image_id(image.chip_id)
        built_for = other.name if other else f"unknown chip id {image.chip_id}"
        raise BootloaderError(
            f"the bootloader is built for {built_for}, not {chip.name}; use an {chip.name} bootloader",
            path=path,
            field="chip_id",
        )
    if not parsed.checksum_valid:
        raise BootloaderError(
            f"the bootloader's checksum is 0x{parsed.stored_checksum:02x} but its segments give "
            f"0x{parsed.computed_checksum:02x}; the file is damaged, rebuild or re-download it",
            path=path,
            field="checksum",
        )
    if parsed.hash_valid is False:
        raise BootloaderError(
            "the bootloader's appended SHA-256 does not match its contents; the file is damaged, "
            "rebuild or re-download it",
            path=path,
            field="sha256",
        )
    return parsed


def _rev_range(low: int, high: int) -> str:
    return f"{revision_name(low)} and later" if high == ANY_REVISION_MAX else f"{revision_name(low)}-{revision_name(high)}"
