"""The image format: header declarations, checksum, hash, and a parser that never over-reads."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgtool.errors import ImageError
from imgtool.image_format import (
    CHECKSUM_SEED,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    EspImage,
    Segment,
    parse_image,
    xor_checksum,
)

from conftest import CORPUS, corpus_path

segments_st = st.lists(
    st.builds(
        Segment,
        st.integers(0, 0xFFFF_FFFF),
        st.binary(max_size=64).map(lambda b: b + b"\x00" * (-len(b) % 4)),
    ),
    max_size=6,
)


def test_header_lengths_match_esp_idf():
    assert (HEADER_LEN, EXTENDED_HEADER_LEN) == (8, 16)


def test_checksum_is_xor_of_all_segment_bytes_seeded_with_0xef():
    data = bytes(range(256)) * 3 + b"\x01\x02"
    expected = CHECKSUM_SEED
    for byte in data:
        expected ^= byte
    assert xor_checksum([data[:100], data[100:]]) == expected


@given(segments=segments_st, entry=st.integers(0, 0xFFFF_FFFF), hashed=st.booleans())
def test_build_then_parse_round_trips(segments, entry, hashed):
    img = EspImage(chip_id=5, entry=entry, segments=tuple(segments), hash_appended=hashed)
    raw = img.to_bytes()
    parsed = parse_image(raw)
    assert parsed.image == EspImage(
        chip_id=5, entry=entry, segments=tuple(segments), hash_appended=hashed, min_chip_rev=0
    )
    assert parsed.checksum_valid and parsed.hash_valid in (True, None)
    assert parsed.length == len(raw)
    tail = 32 if hashed else 0
    assert (len(raw) - tail) % 16 == 0
    if hashed:
        assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()


@given(segments=segments_st, cut=st.integers(0, 400))
def test_truncated_images_raise_image_error(segments, cut):
    raw = EspImage(chip_id=0, entry=0, segments=tuple(segments)).to_bytes()
    if cut >= len(raw):
        return
    with pytest.raises(ImageError):
        parse_image(raw[:cut])


def test_flipped_byte_breaks_checksum_or_hash():
    raw = bytearray(EspImage(chip_id=0, entry=0, segments=(Segment(0x3FFB0000, b"abcd" * 8),)).to_bytes())
    raw[HEADER_LEN + EXTENDED_HEADER_LEN + 8] ^= 0xFF
    parsed = parse_image(bytes(raw))
    assert not parsed.checksum_valid
    assert parsed.hash_valid is False


def test_wrong_magic_names_the_field():
    with pytest.raises(ImageError, match="magic") as err:
        parse_image(b"\x00" * 64, "x.bin")
    assert err.value.field == "magic"
    with pytest.raises(ImageError, match="is an ELF file, not an ESP image; make the app image first: 'imgtool image x.bin"):
        parse_image(b"\x7fELF" + b"\x00" * 60, "x.bin")


def test_huge_claimed_segment_length_is_refused_without_reading():
    raw = bytearray(EspImage(chip_id=0, entry=0, segments=(Segment(0x3FFB0000, b"abcd"),)).to_bytes())
    raw[HEADER_LEN + EXTENDED_HEADER_LEN + 4 : HEADER_LEN + EXTENDED_HEADER_LEN + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    with pytest.raises(ImageError, match="truncated"):
        parse_image(bytes(raw))


@pytest.mark.skipif(not (CORPUS / "bootloaders").is_dir(), reason="corpus absent")
@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS / "bootloaders").glob("*.bin")) if (CORPUS / "bootloaders").is_dir() else [])
def test_real_bootloaders_parse_and_rebuild_byte_identical(name):
    raw = corpus_path("bootloaders", name).read_bytes()
    parsed = parse_image(raw)
    assert parsed.checksum_valid and parsed.hash_valid
    assert parsed.image.to_bytes() == raw
