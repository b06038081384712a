"""The image format: header declarations, checksum, hash, and a parser that never over-reads."""

from __future__ import annotations

import hashlib

import pytest
from conftest import CORPUS, corpus_path
from hypothesis import example, given
from hypothesis import strategies as st

from imgtool.errors import ImageError
from imgtool.image.format import (
    CHECKSUM_BLOCK,
    CHECKSUM_SEED,
    EXTENDED_HEADER_LEN,
    HEADER_LEN,
    EspImage,
    Segment,
    parse_image,
    xor_checksum,
)

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


def byte_loop_checksum(chunks, seed=CHECKSUM_SEED):
    """The checksum by its plain definition: the seed XOR every byte, one at a time."""
    acc = seed
    for chunk in chunks:
        for byte in bytes(chunk):
            acc ^= byte
    return acc


#: Data of any length up to a few checksum blocks: a short pattern repeated, so lengths that cross
#: the block boundary cost hypothesis little to draw.
long_data_st = st.builds(
    lambda pattern, reps, tail: pattern * reps + tail,
    st.binary(min_size=1, max_size=61),
    st.integers(0, 3 * CHECKSUM_BLOCK // 61 + 2),
    st.binary(max_size=17),
)


@given(data=long_data_st, cuts=st.lists(st.integers(0, 4 * CHECKSUM_BLOCK), max_size=4), seed=st.integers(0, 0xFF))
@example(data=bytes(range(256)) * (CHECKSUM_BLOCK // 128) + b"\x01", cuts=[5, CHECKSUM_BLOCK + 3], seed=CHECKSUM_SEED)
def test_checksum_over_blocks_equals_the_byte_loop(data, cuts, seed):
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    expected = byte_loop_checksum(chunks, seed)
    assert xor_checksum(chunks, seed) == expected
    # any bytes-like chunk gives the same: bytearray, memoryview, a memoryview of 4-byte words
    assert xor_checksum([bytearray(c) for c in chunks], seed) == expected
    assert xor_checksum([memoryview(c) for c in chunks], seed) == expected
    whole = data[: len(data) // 4 * 4]
    assert xor_checksum([memoryview(whole).cast("I")], seed) == byte_loop_checksum([whole], seed)


def test_checksum_of_nothing_is_the_seed():
    assert xor_checksum([]) == xor_checksum([b"", bytearray()]) == CHECKSUM_SEED


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
