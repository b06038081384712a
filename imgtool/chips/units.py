"""Size arithmetic shared by the image, partition and signing code: one rounding rule for all of them."""

from __future__ import annotations


def align_up(value: int, alignment: int) -> int:
    """``value`` rounded up to a multiple of ``alignment``."""
    return -(-value // alignment) * alignment


__all__ = ["align_up"]
