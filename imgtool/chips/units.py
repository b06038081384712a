"""Size arithmetic shared by the image, partition and signing code: one rounding rule for all of them."""

from __future__ import annotations

#: An app image is at most this long: the largest flash span the MMU maps (16 MiB on every chip).
MAX_APP_IMAGE_BYTES = 16 * 1024 * 1024


def align_up(value: int, alignment: int) -> int:
    """``value`` rounded up to a multiple of ``alignment``."""
    return -(-value // alignment) * alignment


__all__ = ["MAX_APP_IMAGE_BYTES", "align_up"]
