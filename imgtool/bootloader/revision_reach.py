"""Which chips a pack cannot boot because of its bootloader's own chip-revision check.

The bootloader checks its own header's minimum chip revision when it starts, but not its maximum
(``bootloader_common_check_chip_validity`` skips the maximum for ESP_IMAGE_BOOTLOADER). So of an
app whose revision range is wider than its bootloader's, only the chips below the bootloader's
minimum fail to boot the pack; those above its maximum run it. ``pack`` and ``verify`` present
``boot_rules``' overlap finding through this, the rule itself stays there.
"""

from __future__ import annotations

from imgtool.chips.table import revision_name
from imgtool.image.boot_rules import revisions_allowed

#: The ESP-IDF function of boot_rules' chip-revision finding.
REVISION_RULE = "bootloader_common_check_chip_revision_validity"


def locked_out_below(app_revs: tuple[int, int], boot_revs: tuple[int, int]) -> int | None:
    """The bootloader's minimum revision when the app allows chips below it (they do not boot the pack), else None."""
    app_lo, _ = revisions_allowed(*app_revs)
    boot_lo, _ = revisions_allowed(*boot_revs)
    return boot_lo if app_lo < boot_lo else None


def locked_out_text(chip: str, boot_lo: int) -> str:
    first = revision_name(boot_lo)
    return f"{chip} chips before {first} do not boot this pack: its bootloader starts on {first} and later"


__all__ = ["REVISION_RULE", "locked_out_below", "locked_out_text"]
