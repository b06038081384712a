"""Shared test helpers: where the real-data corpus is, and skipping cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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


#: Examples per fuzz target: 2,000 in the normal run; raise IMGTOOL_FUZZ_EXAMPLES for a long run by hand.
FUZZ_EXAMPLES = int(os.environ.get("IMGTOOL_FUZZ_EXAMPLES", "2000"))
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
