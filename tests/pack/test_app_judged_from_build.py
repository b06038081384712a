"""The app pack judges is the image it built, seen from its own segments: exactly what reading the bytes back gives."""

from __future__ import annotations

import hashlib

import pytest
from conftest import corpus_elf_params

from imgtool.image.build import build_app_image
from imgtool.image.format import EspImage, Segment, build_image, parse_image


@pytest.mark.parametrize("elf", corpus_elf_params())
def test_built_view_is_what_parsing_the_app_gives(elf):
    app = build_app_image(elf)
    assert app.parsed == parse_image(app.data)
    assert app.parsed.length == len(app.data)


@pytest.mark.parametrize("hashed", [True, False])
@pytest.mark.parametrize("min_chip_rev", [None, 3])
def test_built_view_matches_parse_without_hash_and_with_a_legacy_revision(hashed, min_chip_rev):
    image = EspImage(chip_id=5, entry=0x40380000, segments=(Segment(0x3C000020, b"\x01" * 20), Segment(0x40380000, b"\x02" * 8)),
                     hash_appended=hashed, min_chip_rev=min_chip_rev, min_chip_rev_full=101)
    data, view, _ = build_image(image)
    assert data == image.to_bytes()
    assert view == parse_image(data)


@pytest.mark.parametrize("elf", corpus_elf_params())
def test_app_file_checksum_from_the_build_is_the_files_sha256(elf):
    app = build_app_image(elf)
    assert app.file_sha256 == hashlib.sha256(app.data).hexdigest()
