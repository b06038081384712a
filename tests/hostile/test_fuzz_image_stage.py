"""Fuzzing the parsers of the image stage: any input ends in a result or an ImgtoolError, quickly.

The normal run tries a few dozen inputs per target (the hypothesis profile in conftest.py);
IMGTOOL_FUZZ_EXAMPLES=100000 runs a long session by hand.
"""

from __future__ import annotations

import json

from conftest import FIXTURES, mutations
from hypothesis import given
from hypothesis import strategies as st

from imgtool.errors import ImgtoolError
from imgtool.image.build import build_app_image
from imgtool.image.format import parse_image
from imgtool.inspect.image_info import describe

SEED_ELF = (FIXTURES / "esp32c3-min.elf").read_bytes()
SEED_IMAGE = build_app_image(FIXTURES / "esp32c3-min.elf").data






@given(data=st.one_of(mutations(SEED_ELF), st.binary(max_size=256)))
def test_fuzz_elf_reader_and_image_builder(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.elf"
    path.write_bytes(data)
    try:
        result = build_app_image(path)
    except ImgtoolError:
        return
    assert parse_image(result.data).valid


@given(data=st.one_of(mutations(SEED_IMAGE), st.binary(max_size=128)))
def test_fuzz_image_parser(data):
    try:
        parsed = parse_image(data)
    except ImgtoolError:
        return
    assert parsed.length <= len(data)


@given(data=mutations(SEED_IMAGE))
def test_fuzz_info_report(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.bin"
    path.write_bytes(data)
    try:
        info = describe(path)
    except ImgtoolError as exc:
        assert "\n" not in str(exc), str(exc)  # refused in one line
        return
    assert info["size"] == len(data) and info["image_length"] <= len(data)
    assert all(s["data_offset"] + s["length"] <= info["image_length"] for s in info["segments"])  # never past the image
    json.dumps(info)  # what `info --json` prints
