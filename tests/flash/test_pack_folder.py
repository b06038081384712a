"""The pack folder's format both ways: what render_files writes, every reader of imgtool.flash.pack_folder reads back."""

from __future__ import annotations

import hashlib
import json
import string

from conftest import bootloader_image
from hypothesis import given
from hypothesis import strategies as st

from imgtool.chips.table import get_chip
from imgtool.flash.layout import FlashSettings, plan_layout
from imgtool.flash.outputs import render_files
from imgtool.flash.pack_folder import (
    clear_ranges,
    named_app,
    named_merged,
    parse_sha256sums,
    read_flasher_args,
    read_pack_folder,
    sha256sums_text,
)
from imgtool.output_names import FLASH_ARGS_FILE, FLASHER_ARGS_JSON_FILE, SHA256SUMS_FILE
from imgtool.partitions.choice import default_table


def _written(tmp_path, chip_name="esp32c3"):
    layout = plan_layout(
        get_chip(chip_name),
        name="blinky",
        app=b"\xe9APP" * 100,
        bootloader=bootloader_image(chip_name, length=0x400),
        table=default_table(4 * 1024 * 1024),
        settings=FlashSettings(mode="dio", freq="80m", size="4MB"),
    )
    for name, data in render_files(layout).items():
        (tmp_path / name).write_bytes(data)
    return layout


def test_every_reader_reads_back_what_the_writer_wrote(tmp_path):
    layout = _written(tmp_path)
    parts = [(p.offset, p.file) for p in layout.parts]
    flash = read_pack_folder(tmp_path)
    assert (flash.chip, flash.settings) == (layout.chip.name, layout.settings)
    assert [(off, path.name) for off, path in flash.parts] == parts
    assert flash.merged == (layout.start, tmp_path / layout.merged_file)
    entries = read_flasher_args(tmp_path)
    assert (entries.chip, list(entries.parts), entries.encrypted) == (layout.chip, parts, False)
    assert (entries.merged_file, entries.merged_offset, entries.app_file) == (layout.merged_file, layout.start, layout.app.file)
    assert named_merged(tmp_path) == (layout.chip.name, tmp_path / layout.merged_file)
    assert named_app(tmp_path) == tmp_path / layout.app.file
    assert clear_ranges(tmp_path) == tuple((p.offset, p.end) for p in layout.parts)


def test_flash_settings_a_folder_does_not_name_are_the_chips_defaults(tmp_path):
    _written(tmp_path, "esp32h2")
    args = tmp_path / FLASH_ARGS_FILE
    args.write_text("\n".join(args.read_text().splitlines()[1:]) + "\n")
    doc = json.loads((tmp_path / FLASHER_ARGS_JSON_FILE).read_text())
    del doc["flash_settings"]
    (tmp_path / FLASHER_ARGS_JSON_FILE).write_text(json.dumps(doc))
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    (tmp_path / SHA256SUMS_FILE).write_text(sha256sums_text(files))
    settings = read_pack_folder(tmp_path).settings
    assert settings == FlashSettings(mode="dio", freq=get_chip("esp32h2").default_flash_freq, size="2MB")


def test_sha256sums_lists_every_file_but_itself(tmp_path):
    _written(tmp_path)
    listed = parse_sha256sums((tmp_path / SHA256SUMS_FILE).read_text())
    assert set(listed) == {p.name for p in tmp_path.iterdir()} - {SHA256SUMS_FILE}


#: What an output name may hold (no control character but the ones sha256sum escapes), and a backslash.
NAME_CHARS = string.ascii_letters + string.digits + string.punctuation + " \n\r"


@given(
    st.dictionaries(
        st.text(NAME_CHARS, min_size=1).filter(lambda n: n.strip(" ") == n and n != SHA256SUMS_FILE),
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    )
)
def test_sha256sums_text_reads_back_names_with_escapes(digests):
    assert parse_sha256sums(sha256sums_text(digests)) == digests
