"""ELF → app image on real esp-hal ELFs: esptool accepts the result, it loads the ELF intact,
flash data is MMU-congruent, and where esptool can convert the ELF too, both load the same memory."""

from __future__ import annotations

import pytest
from conftest import corpus_elf_params, esptool

from imgtool.chips.table import CHIPS
from imgtool.elf.chip_detect import detect_chip
from imgtool.elf.reader import read_elf
from imgtool.image.build import build_app_image
from imgtool.image.format import APP_DESC_ELF_SHA256_OFFSET, parse_image
from imgtool.image.memory import LoadedMemory, elf_mismatches
from imgtool.image.segments import PADDING_ADDR, flash_data_offsets

PAGE = 0x10000


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_corpus_elf_converts_to_a_valid_image(elf_path, tmp_path):
    result = build_app_image(elf_path, flash_size="4MB")
    assert result.chip.name == elf_path.name
    out = tmp_path / "app.bin"
    out.write_bytes(result.data)

    info = esptool("image-info", out, check=False)
    assert info.returncode == 0, info.stderr
    assert "Checksum" in info.stdout and "(valid)" in info.stdout and "invalid" not in info.stdout.lower()
    assert "Validation hash" in info.stdout

    parsed = parse_image(result.data)
    assert parsed.checksum_valid and parsed.hash_valid
    assert parsed.image.entry == read_elf(elf_path).entry
    assert parsed.image.chip_id == CHIPS[elf_path.name].image_chip_id

    desc = result.elf.find_app_descriptor(result.elf.read_all())
    assert desc is not None and parsed.image.segments[0].addr == desc.addr
    assert elf_mismatches(parsed.image.segments, result.elf, app_desc_addr=desc.addr) == []

    for seg, off in zip(parsed.image.segments, flash_data_offsets(list(parsed.image.segments))):
        if seg.addr != PADDING_ADDR and result.chip.is_flash_mapped(seg.addr):
            assert off % PAGE == seg.addr % PAGE


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_app_descriptor_carries_the_elf_sha256(elf_path):
    import hashlib

    result = build_app_image(elf_path)
    first = parse_image(result.data).image.segments[0].data
    sha = first[APP_DESC_ELF_SHA256_OFFSET : APP_DESC_ELF_SHA256_OFFSET + 32]
    assert sha == hashlib.sha256(elf_path.read_bytes()).digest()
    assert result.app_desc["app_elf_sha256"] == sha.hex()


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_chip_is_detected_from_the_elf(elf_path):
    assert detect_chip(read_elf(elf_path)).name == elf_path.name


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_same_memory_as_esptool_where_esptool_can_convert(elf_path, tmp_path):
    chip = elf_path.name
    ours = parse_image(build_app_image(elf_path).data).image
    theirs_path = tmp_path / "esptool.bin"
    for extra in ([], ["--use-segments"]):
        run = esptool("--chip", chip, "elf2image", *extra, "-o", theirs_path, elf_path, check=False)
        if run.returncode == 0:
            break
    else:
        pytest.skip(f"esptool elf2image refuses {chip}: {run.stderr.strip().splitlines()[-1]}")
    theirs = LoadedMemory(parse_image(theirs_path.read_bytes()).image.segments)
    ours_memory = LoadedMemory(ours.segments)
    elf = read_elf(elf_path)
    contents = elf.read_all()
    desc = elf.find_app_descriptor(contents)
    for section in elf.pieces:
        mine, esptools = ours_memory.read(section.addr, section.size), theirs.read(section.addr, section.size)
        assert esptools is not None and mine is not None, section.name
        if section is desc:
            lo, hi = APP_DESC_ELF_SHA256_OFFSET, APP_DESC_ELF_SHA256_OFFSET + 32
            mine = mine[:lo] + esptools[lo:hi] + mine[hi:]
        assert mine == esptools, section.name


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_image_header_takes_the_requested_flash_settings(elf_path):
    chip = CHIPS[elf_path.name]
    freq = sorted(chip.flash_freqs)[0]
    img = parse_image(build_app_image(elf_path, flash_mode="qio", flash_size="16MB", flash_freq=freq).data).image
    assert (img.flash_mode, img.flash_size_code, img.flash_freq_code) == (0, 4, chip.flash_freqs[freq])


@pytest.mark.parametrize("elf_path", corpus_elf_params())
def test_revisions_land_in_the_extended_header(elf_path):
    lo, hi = (303, 399) if "p4" in str(elf_path) else (3, 199)  # the corpus P4 app only fits v3.x's bootloader
    img = parse_image(build_app_image(elf_path, min_rev_full=lo, max_rev_full=hi).data).image
    assert (img.min_chip_rev_full, img.max_chip_rev_full, img.min_chip_rev) == (lo, hi, lo // 100)
