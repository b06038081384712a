"""Fuzzing every parser that reads user input outside the image stage.

Targets: partition CSV and binary tables, the bootloader manifest, espflash.toml /
Cargo.toml, ``verify`` on merged images, and the argument-file writer's quoting.
Property everywhere: the call returns or raises ``ImgtoolError`` (nothing else), and
stays quick even when the input claims huge sizes or counts.

The normal run tries a few dozen inputs per target (the hypothesis profile in conftest.py);
IMGTOOL_FUZZ_EXAMPLES=100000 runs a long session by hand.
"""

from __future__ import annotations

import atexit
import copy
import functools
import io
import json
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, mutations
from hypothesis import assume, example, given
from hypothesis import strategies as st

from imgtool.bootloader.pins import parse_manifest
from imgtool.chips.table import get_chip
from imgtool.errors import ImgtoolError, UsageError
from imgtool.flash.layout import FlashSettings, plan_layout
from imgtool.flash.pack_folder import flash_args_text, flash_merged_args_text, write_flash_args
from imgtool.image.build import build_app_image
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack
from imgtool.pack.project_config import ProjectConfig, load_project_config
from imgtool.partitions.choice import default_table, preset_csv, preset_names
from imgtool.partitions.table import NAME_MAX_BYTES as PARTITION_NAME_BYTES
from imgtool.partitions.table import PartitionTable

#: One call on one fuzzed input must never take longer than this (generous: 2 shared cores).
SLOW = 5.0

PRESET_TEXTS = [preset_csv(n) for n in preset_names()]
EXTRA_CSV = [
    "nvs, data, nvs, 0x9000, 0x6000,\nphy_init, data, phy, 0xf000, 0x1000,\nfactory, app, factory, 0x10000, 1M,\n",
    "# with flags and hex types\nnvs, 0x01, 0x02, , 24K, readonly\nstorage, data, spiffs, , 0x10000, encrypted:readonly\n"
    "app, app, ota_0, , 1M\notadata, data, ota, , 0x2000\n",
    "bootloader, bootloader, primary, N/A, N/A\npartition_table, partition_table, primary, N/A, N/A\n"
    "factory, app, factory, 0x10000, -0x200000\n",
]
CSV_SEEDS = PRESET_TEXTS + EXTRA_CSV
TABLE_BINS = [PartitionTable.from_csv(t).to_binary() for t in PRESET_TEXTS]

#: Field values that stress the CSV parser: huge, negative, odd units, variables, junk.
NASTY_FIELDS = [
    "", " ", "0", "-1", "0x0", "0xFFFFFFFF", "0x100000000", "0xFFFFFFFFFFFFFFFFFFFF", "9" * 60, "1M", "1m", "4096K",
    "-0x10000", "0x1000", "0x10000", "app", "data", "ota_3", "factory", "nvs", "ota", "254", "255", "256", "0xFE",
    "readonly", "encrypted", "encrypted:readonly", "bogus", ":", "N/A", "$HOME", "${NOPE_IMGTOOL}", "$NOPE_IMGTOOL",
    "\\$x", "é", "名字", "a" * 17, "\x00", "\ufeff", "1e3", "0b101", "0o17", "1_000", "+4K", "K", "M",
]






@st.composite
def text_mutations(draw, seeds):
    """A seed text with some characters replaced/inserted/deleted, or some lines swapped."""
    text = draw(st.sampled_from(seeds))
    chars = list(text)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "field"]))
        pos = draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "replace" and chars:
            chars[pos] = draw(st.characters(codec="utf-8"))
        elif op == "insert":
            chars[pos:pos] = list(draw(st.sampled_from(NASTY_FIELDS + [",", "\n", "#", ",,,,,,,"])))
        elif op == "delete" and chars:
            del chars[pos : pos + draw(st.integers(1, 5))]
        elif op == "field":
            chars[pos:pos] = list("," + draw(st.sampled_from(NASTY_FIELDS)))
    lines = "".join(chars).splitlines()
    if lines and draw(st.booleans()):
        lines = draw(st.permutations(lines))
    return "\n".join(lines) + "\n"


csv_rows = st.lists(
    st.lists(st.sampled_from(NASTY_FIELDS), min_size=0, max_size=8).map(", ".join), min_size=0, max_size=40
).map("\n".join)


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    try:
        return fn(*args, **kwargs)
    except ImgtoolError:
        return None
    finally:
        assert time.monotonic() - start < SLOW, f"{fn.__name__} took {time.monotonic() - start:.1f}s"


# --------------------------------------------------------------------------- partition CSV


@given(
    text=st.one_of(text_mutations(CSV_SEEDS), csv_rows, st.text(max_size=400)),
    flash=st.sampled_from([None, 0x100000, 0x400000, 0x1000000]),
    boot=st.sampled_from([None, 0x0, 0x1000, 0x2000]),
    toff=st.sampled_from([0x8000, 0x8000, 0x9000, 0x10000, 0x1000]),
)
# found by CI: a long name with a control character must be quoted in the warning as repr shows it
@example(text="\x1b with flags and hex tnvs, data, nvs, 0x9000, 0x6000\n", flash=None, boot=None, toff=0x8000)
def test_fuzz_partition_csv(text, flash, boot, toff):
    table = _timed(PartitionTable.from_csv, text, flash_size=flash, bootloader_offset=boot, table_offset=toff)
    if table is not None:
        # a table that parsed is valid: it compiles and round-trips through the binary form, names as
        # the binary keeps them (16 bytes, ending at a NUL; both are warned about when parsing)
        try:
            binary = table.to_binary()
        except ImgtoolError:
            return
        again = PartitionTable.from_binary(binary, table_offset=toff, bootloader_offset=boot)
        assert [(p.name, p.type, p.subtype, p.offset, p.size) for p in again] == [
            (binary_name(p.name), p.type, p.subtype, p.offset, p.size) for p in table
        ]
        for p in table:
            if binary_name(p.name) != p.name:
                assert any(f"{p.name!r}" in w for w in table.warnings), (p.name, table.warnings)


def binary_name(name: str) -> str:
    """The name a binary table entry holds for ``name``: its first 16 UTF-8 bytes, up to a NUL."""
    return name.encode("utf-8")[:PARTITION_NAME_BYTES].split(b"\x00", 1)[0].decode("utf-8", "replace")


def test_csv_name_with_nul_is_written_as_esp_idf_does_with_a_warning():
    table = PartitionTable.from_csv("a\x00b, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 1M,\n")
    assert any("NUL" in w and "'a\\x00b'" in w for w in table.warnings), table.warnings
    again = PartitionTable.from_binary(table.to_binary())
    assert [p.name for p in again] == ["a", "factory"]


# --------------------------------------------------------------------------- partition binary


@given(
    data=st.one_of(
        st.sampled_from(TABLE_BINS).flatmap(mutations),
        st.sampled_from(TABLE_BINS).flatmap(lambda seed: mutations(seed, max_edits=1)),
        st.binary(max_size=0xC40),
        st.binary(max_size=0x40).map(lambda b: b"\xaa\x50" + b),
    ),
    flash=st.sampled_from([None, 0x400000]),
)
def test_fuzz_partition_binary(data, flash):
    table = _timed(PartitionTable.from_binary, data, flash_size=flash)
    if table is not None:
        assert len(table) <= len(data) // 32


def test_partition_binary_huge_input_is_bounded():
    """A megabyte of valid-looking entries (claims thousands of partitions) is refused quickly."""
    entry = TABLE_BINS[0][:32]
    start = time.monotonic()
    with pytest.raises(ImgtoolError):
        PartitionTable.from_binary(entry * 40000)
    assert time.monotonic() - start < SLOW


# --------------------------------------------------------------------------- bootloader manifest

GOOD_ENTRY = {
    "chip": "esp32c3",
    "variant": "default",
    "default": True,
    "file": "esp32c3-bootloader.bin",
    "url": "https://example.invalid/esp32c3-bootloader.bin",
    "sha256": "ab" * 32,
    "size": 20000,
    "esp_idf": "release/v5.5",
    "note": "",
}
GOOD_MANIFEST = {"schema": 1, "source": {"release": "v4.0.0"}, "bootloaders": [GOOD_ENTRY, {**GOOD_ENTRY, "chip": "esp32"}]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from(["esp32", "ESP32C3", "esp8266", "http://x", "https://x/y", "../x", ".hidden", "a/b", "A" * 64]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
manifest_keys = st.sampled_from(["schema", "bootloaders", "source"] + list(GOOD_ENTRY))


@st.composite
def mutated_manifests(draw):
    doc = copy.deepcopy(GOOD_MANIFEST)
    for _ in range(draw(st.integers(1, 5))):
        where = draw(st.sampled_from(["top", "entry", "entry", "entry", "drop", "dup"]))
        if where == "top":
            doc[draw(manifest_keys)] = draw(json_values)
        elif where in ("entry", "drop", "dup") and isinstance(doc.get("bootloaders"), list) and doc["bootloaders"]:
            index = draw(st.integers(0, len(doc["bootloaders"]) - 1))
            entry = doc["bootloaders"][index]
            if where == "dup":
                doc["bootloaders"].append(copy.deepcopy(entry))
            elif isinstance(entry, dict):
                key = draw(manifest_keys)
                if where == "drop":
                    entry.pop(key, None)
                else:
                    entry[key] = draw(json_values)
    return doc


@st.composite
def mutated_manifest_text(draw):
    """Mutate the JSON text, then keep only what still decodes (as load_manifest would)."""
    raw = json.dumps(GOOD_MANIFEST).encode()
    data = draw(mutations(raw, max_edits=3))
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        assume(False)


@given(doc=st.one_of(mutated_manifests(), mutated_manifest_text(), json_values))
def test_fuzz_manifest(doc):
    manifest = _timed(parse_manifest, doc, "fuzz.json")
    if manifest is not None:
        for entry in manifest.entries:
            assert len(entry.sha256) == 64 and "/" not in entry.file
            assert isinstance(entry.size, int) and not isinstance(entry.size, bool)


# --------------------------------------------------------------------------- espflash.toml / Cargo.toml

TOML_VALUES = [
    '"4MB"', '"dio"', '"80MHz"', '"40m"', "0x8000", "32768", '"0x8000"', '"banana"', "true", "-1", "1e3", "[]",
    "[1, 2]", "{}", '{ a = 1 }', '""', '" "', '"part.csv"', '"/abs/path.csv"', '"é"', "2026-01-01", "inf", "nan",
    '"""multi\nline"""', "'''raw'''", "99999999999999999999",
]
TOML_KEYS = [
    "size", "mode", "frequency", "freq", "partition_table", "bootloader", "partition_table_offset",
    "target_app_partition", "chip", "metadata", "espflash", "package",
]
TOML_SECTIONS = [
    "", "[flash]", "[idf]", "[idf_format_args]", "[esp_idf_format_args]", "[package]", "[package.metadata]",
    "[package.metadata.espflash]", "[[flash]]", "[package.metadata.espflash.flash]",
]


@st.composite
def toml_docs(draw):
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["section", "kv", "kv", "kv", "junk"]))
        if kind == "section":
            lines.append(draw(st.sampled_from(TOML_SECTIONS)))
        elif kind == "kv":
            lines.append(f"{draw(st.sampled_from(TOML_KEYS))} = {draw(st.sampled_from(TOML_VALUES))}")
        else:
            lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines) + "\n"


GOOD_ESPFLASH = '[idf_format_args]\npartition_table = "p.csv"\npartition_table_offset = 0x9000\n[flash]\nsize = "4MB"\nmode = "qio"\nfrequency = "80MHz"\n'
GOOD_CARGO = '[package]\nname = "x"\nversion = "0.1.0"\n[package.metadata.espflash]\npartition_table = "p.csv"\nbootloader = "b.bin"\n'


def _toml_bytes():
    return st.one_of(
        toml_docs().map(str.encode),
        text_mutations([GOOD_ESPFLASH, GOOD_CARGO]).map(str.encode),
        mutations(GOOD_ESPFLASH.encode(), max_edits=3),
        st.binary(max_size=64),
    )


@functools.cache
def _project_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="imgtool-fuzz-toml-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "target").mkdir()
    (root / "target" / "fw.elf").write_bytes(b"")
    return root


@given(espflash=st.one_of(st.none(), _toml_bytes()), cargo=st.one_of(st.none(), _toml_bytes()))
def test_fuzz_project_config(espflash, cargo):
    root = _project_dir()
    for name, data in (("espflash.toml", espflash), ("Cargo.toml", cargo)):
        path = root / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)
    cfg = _timed(load_project_config, root / "target" / "fw.elf", cwd=root)
    if cfg is not None:
        for key in ("partition_table", "bootloader", "target_app_partition", "flash_mode", "flash_size", "flash_freq", "chip"):
            assert getattr(cfg, key) is None or isinstance(getattr(cfg, key), str)
        assert cfg.partition_table_offset is None or isinstance(cfg.partition_table_offset, int)


def test_cargo_metadata_not_a_table_is_ignored(tmp_path):
    """``[package] metadata = 1`` holds no espflash settings: nothing is taken from it, and no error."""
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\nmetadata = 1\n')
    (tmp_path / "fw.elf").write_bytes(b"")
    assert load_project_config(tmp_path / "fw.elf", cwd=tmp_path) == ProjectConfig()


# --------------------------------------------------------------------------- verify on merged images




@functools.cache
def _merged(chip: str) -> bytes:
    """One merged image per chip, packed once per module (esp32c3: base 0x0; esp32: base 0x1000, OTA table)."""
    tmp = Path(tempfile.mkdtemp(prefix="imgtool-fuzz-verify-"))
    try:
        elf = FIXTURES / ("esp32c3-min.elf" if chip == "esp32c3" else "esp32-min.elf")
        boot = make_bootloader(tmp / "bl.bin", chip)
        table = None if chip == "esp32c3" else "factory_two_ota"
        res = pack(elf, PackOptions(outdir=tmp / "out", bootloader=boot, flash_size="4MB", partition_table=table, project_config=False))
        data = (tmp / "out" / res.merged.file).read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert verify(data).ok
    return data


@st.composite
def mutated_merged(draw):
    chip = draw(st.sampled_from(["esp32c3", "esp32"]))
    data = bytearray(_merged(chip))
    base = 0 if chip == "esp32c3" else 0x1000
    # aim at the interesting regions: bootloader header, table, otadata, app header and body
    regions = [(0, 0x40), (0, 0x900), (0x8000 - base, 0x100), (0x8000 - base, 0xC00), (0xD000 - base, 0x40),
               (0x10000 - base, 0x40), (0x10000 - base, len(data) - (0x10000 - base))]
    for _ in range(draw(st.integers(0, 6))):
        start, length = draw(st.sampled_from(regions))
        pos = start + draw(st.integers(0, max(length - 1, 0)))
        if pos < len(data):
            data[pos] = draw(st.integers(0, 255))
    # table entries claiming huge offsets/sizes
    if draw(st.booleans()):
        entry = 0x8000 - base + 32 * draw(st.integers(0, 3))
        field = draw(st.sampled_from([4, 8]))
        data[entry + field : entry + field + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return chip, bytes(data if cut is None else data[:cut])


@given(case=mutated_merged(), give_chip=st.booleans(), toff=st.sampled_from([0x8000, 0x8000, 0x9000]))
def test_fuzz_verify(case, give_chip, toff):
    chip, data = case
    report = _timed(verify, data, chip=chip if give_chip else None, table_offset=toff)
    assert report is not None, "verify on bytes must report problems, not raise"
    for check in report.checks:
        assert check.part and check.message and "\n" not in check.message
    try:
        report.raise_for_problems()
    except ImgtoolError as exc:
        assert "\n" not in str(exc)


@given(data=st.binary(max_size=0x200), chip=st.sampled_from([None, "esp32", "esp32c3", "esp32c5", "esp32s3"]))
def test_fuzz_verify_random_bytes(data, chip):
    assert _timed(verify, data, chip=chip) is not None


# --------------------------------------------------------------------------- argument-file quoting


@functools.cache
def _layout_inputs():
    app = build_app_image(FIXTURES / "esp32c3-min.elf", flash_size="4MB").data
    with tempfile.TemporaryDirectory() as tmp:
        boot = make_bootloader(Path(tmp) / "bl.bin", "esp32c3").read_bytes()
    return app, boot, default_table(0x400000)


def _esptool_lines(text: str) -> list[list[str]]:
    """How esptool reads an @argument file: text mode (universal newlines), readlines, shlex.split per line."""
    return [shlex.split(line) for line in io.StringIO(text, newline=None).readlines()]


def _layout(name: str):
    app, boot, table = _layout_inputs()
    return plan_layout(
        get_chip("esp32c3"), name=name, app=app, bootloader=boot, table=table,
        settings=FlashSettings(mode="dio", freq="80m", size="4MB"),
    )


names_without_line_breaks = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" '\"\\$`!*?;&|<>(){}[]#~=%,:\t-_.é名😀")),
        st.characters(codec="utf-8", exclude_characters="\n\r\x00/"),
    ),
    min_size=1,
    max_size=30,
)


@given(name=names_without_line_breaks)
def test_fuzz_argument_file_quoting(name):
    try:
        layout = _layout(name)
    except UsageError:
        return
    merged_line = _esptool_lines(flash_merged_args_text(layout))
    assert merged_line[-1] == [f"0x{layout.start:x}", layout.merged_file]
    assert merged_line[0] == write_flash_args(layout)
    parts = _esptool_lines(flash_args_text(layout))[1:]
    assert [tuple(words) for words in parts] == [(f"0x{p.offset:x}", p.file) for p in layout.parts]


@pytest.mark.parametrize("name", ["fw\nx", "fw\rx"], ids=["LF", "CR"])
def test_argument_file_names_with_line_breaks(name):
    try:
        layout = _layout(name)
    except UsageError:
        return  # refusing the name is a fine answer
    assert _esptool_lines(flash_merged_args_text(layout))[-1] == [f"0x{layout.start:x}", layout.merged_file]
