"""Shared test helpers: where the real-data corpus is, and skipping cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(os.environ.get("IMGTOOL_CORPUS", REPO.parent / "shared" / "corpus"))

CORPUS_SKIP_REASON = (
    f"real-data corpus not found at {CORPUS} (it lives in ../shared/corpus beside the checkout; "
    "set IMGTOOL_CORPUS to point elsewhere)"
)


def corpus_path(*parts: str) -> Path:
    """A path inside the corpus; skips the calling test when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(CORPUS_SKIP_REASON)
    return path


def corpus_elfs() -> list[Path]:
    folder = CORPUS / "elf"
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def corpus_elf_params():
    """pytest params over the corpus ELFs, or one skipped param when the corpus is absent."""
    elfs = corpus_elfs()
    if not elfs:
        return [pytest.param(None, marks=pytest.mark.skip(reason=CORPUS_SKIP_REASON), id="no-corpus")]
    return [pytest.param(p, id=p.name) for p in elfs]


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_SKIP_REASON)
    return CORPUS


#: Examples per property/fuzz test. The default keeps the whole suite fast; a long run by hand:
#: ``IMGTOOL_FUZZ_EXAMPLES=100000 python -m pytest -q tests/test_fuzz_parsers.py``.
FUZZ_EXAMPLES = int(os.environ.get("IMGTOOL_FUZZ_EXAMPLES", "60"))
#: One hypothesis profile for every property test (no per-test example counts). No deadline: the
#: machine is shared, so wall-clock limits per example would flake; slow inputs are bounded in
#: the tests themselves. The example database stays off so runs do not depend on earlier ones.
settings.register_profile(
    "imgtool",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
settings.load_profile("imgtool")


def mutations(seed: bytes, max_edits: int = 8):
    """Seed bytes with a few bytes overwritten and maybe truncated: keeps the structure mostly valid."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=max_edits)
    cut = st.one_of(st.none(), st.integers(0, len(seed)))
    return st.builds(_apply_edits, st.just(seed), edits, cut)


def _apply_edits(seed: bytes, edits, cut):
    data = bytearray(seed)
    for pos, value in edits:
        data[pos] = value
    return bytes(data if cut is None else data[:cut])


def bootloader_image(chip_name: str, size_code: int = 1, *, fill: int = 0) -> bytes:
    """A small valid ESP image with the chip's id, standing in for a real bootloader (none ship in the repo)."""
    from imgtool.chips import get_chip
    from imgtool.image_format import EspImage, Segment

    chip = get_chip(chip_name)
    addr = 0x3FFF_0000 if chip.name == "esp32" else 0x4080_0000
    seg = Segment(addr, bytes((i + fill) % 256 for i in range(2048)))
    return EspImage(chip_id=chip.image_chip_id, entry=addr, segments=(seg,), flash_size_code=size_code).to_bytes()


def make_bootloader(path: Path, chip_name: str, size_code: int = 1, *, fill: int = 0) -> Path:
    path.write_bytes(bootloader_image(chip_name, size_code, fill=fill))
    return path
