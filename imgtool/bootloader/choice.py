"""Which pinned bootloader variant an app gets: the chip's default, unless the app's chip revisions need another.

ESP32-P4 engineering samples (v1.x) need the v0 build, production silicon the default v3; the
choice reads each candidate's revision range from its image header, so the manifest need not
repeat it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgtool.bootloader.pins import Manifest, load_manifest
from imgtool.bootloader.place import runs_app
from imgtool.bootloader.store import BootloaderStore
from imgtool.chips.table import ANY_REVISION_MAX, revision_range
from imgtool.image.format import parse_image

if TYPE_CHECKING:
    # for types only: download loads http and ssl (~15 ms), which a pack from the cache skips
    from imgtool.bootloader.download import DownloadSettings


def bootloader_for_app(
    chip_name: str,
    *,
    store: BootloaderStore | None = None,
    app_min_rev_full: int = 0,
    app_max_rev_full: int = ANY_REVISION_MAX,
    variant: str | None = None,
    offline: bool = False,
    quiet: bool = False,
    manifest: Manifest | None = None,
    settings: DownloadSettings | None = None,
) -> tuple[bytes, str | None]:
    """The pinned bootloader an app can boot with (fetched through ``store``), and a note when it is not the default.

    ``variant`` is taken as given. Otherwise the default variant is used when its chip-revision
    range meets the app's; if not, the first other variant that does. With no match the default
    is returned and :func:`imgtool.bootloader.place.place_bootloader` explains the mismatch.
    """
    store = store or BootloaderStore()
    manifest = manifest or load_manifest()
    fetch = {"offline": offline, "quiet": quiet, "manifest": manifest, "settings": settings}
    if variant is not None:
        manifest.lookup(chip_name, variant, option="--bootloader-variant")
        return store.fetch(chip_name, variant=variant, **fetch), None
    default = manifest.lookup(chip_name)
    data = store.fetch(chip_name, **fetch)
    if runs_app(parse_image(data).image, app_min_rev_full, app_max_rev_full):
        return data, None
    for entry in manifest.variants(default.chip):
        if entry is default:
            continue
        other = store.fetch(chip_name, variant=entry.variant, **fetch)
        image = parse_image(other).image
        if runs_app(image, app_min_rev_full, app_max_rev_full):
            return other, (
                f"using the {entry.chip} bootloader variant {entry.variant} "
                f"(revisions {revision_range(image.min_chip_rev_full, image.max_chip_rev_full, '-', later=True)}): the app allows "
                f"revisions {revision_range(app_min_rev_full, app_max_rev_full, '-', later=True)}, which the default "
                f"{default.variant} does not run on"
            )
    return data, None


__all__ = ["bootloader_for_app"]
