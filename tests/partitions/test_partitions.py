"""Partition tables: byte-identical to ESP-IDF, round trips, ESP-IDF's rules, presets and defaults.

``esp_idf_defs`` (an extract of ESP-IDF's gen_esp32part.py) is the oracle; imgtool never imports it.
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import corpus_path
from esp_idf_defs import PartitionTable as IdfTable
from hypothesis import given
from hypothesis import strategies as st

from imgtool.errors import LayoutError, PartitionError, UsageError
from imgtool.partitions.choice import check_app_fits, default_table, load_table, preset_names
from imgtool.partitions.table import (
    DEFAULT_TABLE_OFFSET,
    MAX_PARTITIONS,
    TABLE_MAX_LEN,
    Partition,
    PartitionTable,
    boot_app_partition,
)

MiB = 1024 * 1024


def idf_binary(text: str, table_offset: int = DEFAULT_TABLE_OFFSET, bootloader_offset: int | None = None) -> bytes:
    table = IdfTable.from_csv(text, table_offset, bootloader_offset)
    table.verify(partition_table_offset=table_offset)
    return table.to_binary()


def compile_csv(text: str, **kwargs) -> bytes:
    return PartitionTable.from_csv(text, **kwargs).to_binary()


def error_of(text: str, **kwargs) -> str:
    with pytest.raises(PartitionError) as info:
        PartitionTable.from_csv(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


HEADER = "# Name, Type, SubType, Offset, Size, Flags\n"

EXAMPLES = {
    "docs_custom": """
# Name,   Type, SubType, Offset,  Size, Flags
# Note: if you have increased the bootloader size, make sure to update the offsets to avoid overlap
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
storage,  data, spiffs,  ,        0xF0000,
""",
    "ota_with_flags": """
nvs,      data, nvs,      ,        0x6000,
otadata,  data, ota,      ,        0x2000,
phy_init, data, phy,      ,        0x1000, encrypted
factory,  app,  factory,  ,        1M,
ota_0,    app,  ota_0,    ,        1M,
ota_1,    app,  ota_1,    ,        1M,
coredump, data, coredump, ,        64K,
nvs_key,  data, nvs_keys, ,        0x1000, encrypted
fs,       data, fat,      ,        528K,
ro_nvs,   data, nvs,      ,        0x2000, readonly
both,     data, spiffs,   ,        12288,  encrypted:readonly
""",
    "numbers_and_custom_types": """

custom,    0x40, 0x01,     ,          64K,
APP0,      APP,  FACTORY,  0x20000,   0x100000
decimal,   1,    130,      1245184,   4096,
undefined, data, ,         ,          4K,
tst,       app,  test,     ,          0x10000,
up_to,     data, littlefs, ,          -0x300000,
""",
    "fixed_regions": """
bootloader,      bootloader,      primary, N/A, N/A,
partition_table, partition_table, primary, N/A, N/A,
nvs,             data,            nvs,     ,    0x6000,
factory,         app,             factory, ,    1M,
""",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_match_esp_idf(name):
    text = EXAMPLES[name]
    assert compile_csv(text, bootloader_offset=0x1000) == idf_binary(text, bootloader_offset=0x1000)


@pytest.mark.parametrize("name", preset_names())
def test_presets_match_esp_idf(name):
    from imgtool.partitions.choice import preset_csv

    text = preset_csv(name)
    table = load_table(name, flash_size="4MB")
    assert table.to_binary() == idf_binary(text)


@pytest.mark.parametrize("table_offset", [0x8000, 0xA000, 0x10000])
def test_presets_follow_the_table_offset(table_offset):
    from imgtool.partitions.choice import preset_csv

    for name in preset_names():
        table = load_table(name, table_offset=table_offset)
        assert table.partitions[0].offset == table_offset + 0x1000
        assert table.to_binary() == idf_binary(preset_csv(name), table_offset)


def test_required_presets_exist_with_esp_idf_layouts():
    names = set(preset_names())
    assert {"single_app", "single_app_large", "factory_two_ota", "two_ota"} <= names
    single = load_table("single_app")
    assert [(p.name, p.offset, p.size) for p in single] == [
        ("nvs", 0x9000, 0x6000),
        ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x100000),
    ]
    assert load_table("single_app_large").find("factory").size == 1500 * 1024
    ota = load_table("factory_two_ota", flash_size="4MB")
    assert [p.name for p in ota] == ["nvs", "otadata", "phy_init", "factory", "ota_0", "ota_1"]
    two = load_table("two_ota", flash_size="4MB")
    assert two.find("factory") is None and {p.name for p in two.apps} == {"ota_0", "ota_1"}


def test_binary_layout():
    table = load_table("single_app")
    data = table.to_binary()
    assert len(data) == TABLE_MAX_LEN
    entries = data[: 32 * len(table)]
    assert data[:2] == b"\xaa\x50"
    md5 = data[32 * len(table) : 32 * (len(table) + 1)]
    assert md5[:2] == b"\xeb\xeb" and md5[2:16] == b"\xff" * 14
    assert md5[16:] == hashlib.md5(entries).digest()
    assert set(data[32 * (len(table) + 1) :]) == {0xFF}
    factory = data[64:96]
    assert factory[2:4] == b"\x00\x00"
    assert int.from_bytes(factory[4:8], "little") == 0x10000
    assert factory[12:28] == b"factory".ljust(16, b"\x00")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_and_csv_matches_esp_idf(name):
    text = EXAMPLES[name]
    first = PartitionTable.from_csv(text, bootloader_offset=0x1000)
    binary = first.to_binary()
    decoded = PartitionTable.from_binary(binary, bootloader_offset=0x1000)
    assert decoded.partitions == first.partitions
    csv = decoded.to_csv()
    assert csv == IdfTable.from_binary(binary).to_csv()
    assert compile_csv(csv, bootloader_offset=0x1000) == binary


# -- hypothesis: a family of valid tables -------------------------------------------------------

DATA_SUBTYPES = ["phy", "nvs", "coredump", "nvs_keys", "efuse", "fat", "spiffs", "littlefs", "0x40", "esphttpd"]


@st.composite
def valid_tables(draw):
    """CSV text of a table that satisfies every rule, mixing given and empty offsets."""
    table_offset = draw(st.sampled_from([0x8000, 0x9000, 0xC000, 0x10000]))
    count = draw(st.integers(1, 14))
    ota_slots = draw(st.lists(st.integers(0, 15), unique=True, max_size=4))
    kinds = ["otadata"] if ota_slots else []
    kinds += [f"ota_{n}" for n in ota_slots]
    if draw(st.booleans()):
        kinds.append("factory")
    kinds += draw(st.lists(st.sampled_from(["data", "custom", "test_app"]), min_size=count, max_size=count))
    kinds = draw(st.permutations(kinds))
    names = draw(st.lists(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=16),
                          min_size=len(kinds), max_size=len(kinds), unique=True))
    seen_test = False
    rows, end = [], table_offset + 0x1000
    for i, kind in enumerate(kinds):
        flags = draw(st.sampled_from(["", "encrypted", "readonly", "encrypted:readonly"]))
        if kind == "test_app":
            if seen_test:
                kind = "data"
            seen_test = True
        if kind == "otadata":
            ptype, subtype, size, align, flags = "data", "ota", 0x2000, 0x1000, draw(st.sampled_from(["", "encrypted"]))
        elif kind.startswith("ota_") or kind in ("factory", "test_app"):
            ptype, align = "app", 0x10000
            subtype = "test" if kind == "test_app" else kind
            size = draw(st.integers(1, 64)) * 0x1000
        elif kind == "custom":
            ptype, align = draw(st.sampled_from(["0x40", "0x99", "254"])), 0x1000
            subtype = str(draw(st.integers(0, 255)))
            size = draw(st.integers(1, 0x20000))
        else:
            ptype, align = "data", 0x1000
            subtype = draw(st.sampled_from(DATA_SUBTYPES))
            size = draw(st.integers(0x3000, 0x20000))
            if subtype == "coredump":
                flags = flags.replace("readonly", "").strip(":")
        offset = -(-end // align) * align + draw(st.integers(0, 3)) * align
        given_offset = draw(st.booleans())
        size_text = draw(st.sampled_from(["hex", "dec", "suffix"])) if size % 1024 == 0 else "hex"
        size_field = {"hex": f"0x{size:x}", "dec": str(size), "suffix": f"{size // 1024}K"}[size_text]
        if given_offset:
            rows.append(f"{names[i]}, {ptype}, {subtype}, 0x{offset:x}, {size_field}, {flags}")
            end = offset + size
        else:
            rows.append(f"{names[i]},{ptype},{subtype},,{size_field},{flags}")
            end = -(-end // align) * align + size
        if draw(st.booleans()):
            rows.append("# a comment" if draw(st.booleans()) else "")
    return HEADER + "\n".join(rows) + "\n", table_offset


@given(valid_tables())
def test_generated_tables_match_esp_idf_and_round_trip(case):
    text, table_offset = case
    table = PartitionTable.from_csv(text, table_offset=table_offset)
    binary = table.to_binary()
    assert binary == idf_binary(text, table_offset)
    again = PartitionTable.from_csv(table.to_csv(), table_offset=table_offset)
    assert again.to_binary() == binary
    assert PartitionTable.from_binary(binary, table_offset=table_offset).partitions == table.partitions


def test_max_partitions_matches_esp_idf():
    rows = [f"p{i}, data, fat, , 4K," for i in range(MAX_PARTITIONS)]
    text = "\n".join(rows)
    assert MAX_PARTITIONS == 94
    assert compile_csv(text) == idf_binary(text)


# -- ESP-IDF's rules: one malformed table per rule --------------------------------------------


def test_overlap_in_csv_names_the_line():
    message = error_of(HEADER + "nvs, data, nvs, 0x9000, 0x6000,\nphy, data, phy, 0xe000, 0x1000,\n")
    assert message.startswith("partitions.csv:3: ") and "inside 'nvs' (line 2)" in message


def test_overlap_between_entries_found_in_any_order():
    table = PartitionTable(
        (Partition("b", 1, 0x81, 0x20000, 0x1000, where="t.csv:9"), Partition("a", 1, 0x81, 0x1F000, 0x2000, where="t.csv:8"))
    )
    with pytest.raises(PartitionError, match=r"^t\.csv:9: 'b' \(0x20000-0x21000\) overlaps 'a'.*line 8"):
        table.validate()


def test_app_offset_must_be_64k_aligned():
    message = error_of(HEADER + "nvs, data, nvs, , 24K,\nfactory, app, factory, 0x18000, 1M,\n")
    assert message.startswith("partitions.csv:3: ") and "0x18000" in message and "0x20000" in message


def test_data_offset_must_be_4k_aligned():
    message = error_of("\n\nnvs, data, nvs, 0x9800, 24K,\n")
    assert message.startswith("partitions.csv:3: ") and "0x1000" in message


def idf_refuses(text: str) -> bool:
    """ESP-IDF's gen_esp32part refuses the table too (any of its errors)."""
    try:
        idf_binary(text)
    except Exception:  # gen_esp32part raises its own InputError/ValidationError types
        return True
    return False


def test_app_size_must_be_whole_sectors():
    message = error_of("factory, app, factory, 0x10000, 0x100100,")
    assert message == "partitions.csv:1: size 0x100100 of app 'factory' is not a multiple of 0x1000; use 0x101000"
    assert idf_refuses("factory, app, factory, 0x10000, 0x100100,")
    assert compile_csv("factory, app, factory, 0x10000, 0x101000,") == idf_binary("factory, app, factory, 0x10000, 0x101000,")


def test_names_must_be_unique():
    message = error_of(HEADER + "nvs, data, nvs, , 24K,\nnvs, data, fat, , 24K,\n")
    assert message.startswith("partitions.csv:3: ") and "line 2" in message


def test_names_over_16_bytes_are_cut_with_a_warning():
    ok = "sixteen_bytes_ab, data, fat, , 4K,"
    assert compile_csv(ok) == idf_binary(ok)
    long = HEADER + "seventeen_bytes_a, data, fat, , 4K,"
    table = PartitionTable.from_csv(long)
    assert table.to_binary() == idf_binary(long)
    assert any(w.startswith("partitions.csv:2: ") and "first 16" in w for w in table.warnings)
    assert error_of(long, strict=True).startswith("partitions.csv:2: ")


def test_partition_table_region_is_reserved():
    message = error_of(HEADER + "nvs, data, nvs, 0x8000, 24K,")
    assert message.startswith("partitions.csv:2: ") and "partition table (0x8000-0x9000)" in message
    moved = error_of("nvs, data, nvs, 0x10000, 24K,", table_offset=0x10000)
    assert "partition table (0x10000-0x11000)" in moved


def test_bootloader_region_is_reserved():
    message = error_of(HEADER + "early, data, fat, 0x1000, 4K,", bootloader_offset=0x1000)
    assert message.startswith("partitions.csv:2: ") and "bootloader" in message
    assert "bootloader" in error_of("early, data, fat, 0x9000, 4K,", table_offset=0x10000)


def test_table_offset_must_be_after_the_bootloader_and_should_be_aligned():
    with pytest.raises(UsageError, match="--offset.*bootloader"):
        PartitionTable.from_csv("nvs, data, nvs, , 24K,", table_offset=0x1000, bootloader_offset=0x2000)
    text = "nvs, data, nvs, , 24K,"
    table = PartitionTable.from_csv(text, table_offset=0x8800)  # ESP-IDF accepts it
    assert table.to_binary() == idf_binary(text, 0x8800)
    assert any("multiple of 0x1000" in w for w in table.warnings)
    with pytest.raises(PartitionError, match="multiple of 0x1000"):
        PartitionTable.from_csv(text, table_offset=0x8800, strict=True)


def test_table_must_fit_the_flash():
    message = error_of(HEADER + "nvs, data, nvs, , 24K,\nfactory, app, factory, , 2M,", flash_size=2 * MiB)
    assert message.startswith("partitions.csv:3: ") and "past the end of the 2 MiB flash" in message
    PartitionTable.from_csv(HEADER + "factory, app, factory, , 0x1F0000,", flash_size=2 * MiB)


def warned(text: str, fragment: str, **kwargs) -> str:
    """The table compiles to ESP-IDF's bytes, warns with ``fragment``, and is refused under strict."""
    table = PartitionTable.from_csv(text, **kwargs)
    assert table.to_binary() == idf_binary(text, **kwargs)
    warning = next(w for w in table.warnings if fragment in w)
    assert "\n" not in warning
    assert fragment in error_of(text, strict=True, **kwargs)
    return warning


def test_a_second_factory_app_is_a_warning():
    assert warned("a, app, factory, , 64K,\nb, app, factory, , 64K,\n", "second factory").startswith("partitions.csv:2: ")


def test_a_repeated_ota_slot_is_a_warning():
    text = "otadata, data, ota, , 8K,\na, app, ota_0, , 64K,\nb, app, ota_1, , 64K,\nc, app, ota_1, , 64K,\n"
    assert warned(text, "second ota_1").startswith("partitions.csv:4: ")


def test_ota_slots_without_otadata_is_a_warning():
    text = HEADER + "nvs, data, nvs, , 24K,\nota_0, app, ota_0, , 1M,\n"
    assert warned(text, "otadata").startswith("partitions.csv:3: ")


def test_otadata_is_two_sectors():
    message = error_of("otadata, data, ota, , 4K,\nota_0, app, ota_0, , 1M,\n")
    assert message.startswith("partitions.csv:1: ") and "0x2000" in message


def test_only_one_otadata():
    two = "o1, data, ota, , 8K,\no2, data, ota, , 8K,\n"
    assert error_of(two) == "partitions.csv:2: a second otadata (data, ota) partition 'o2'; keep only one"
    assert idf_refuses(two)
    assert compile_csv("o1, data, ota, , 8K,\n") == idf_binary("o1, data, ota, , 8K,\n")


def test_too_many_partitions():
    rows = [f"p{i}, data, fat, , 4K," for i in range(MAX_PARTITIONS + 1)]
    message = error_of("\n".join(rows))
    assert message.startswith(f"partitions.csv:{MAX_PARTITIONS + 1}: ") and "too many" in message


@pytest.mark.parametrize(
    "row, expect",
    [
        ("nvs, , nvs, , 24K,", "type column is empty"),
        ("nvs, datum, nvs, , 24K,", "type 'datum' is not valid"),
        ("nvs, data, nvram, , 24K,", "subtype 'nvram' is not valid"),
        ("factory, app, , , 1M,", "needs a subtype"),
        ("nvs, data, nvs, , ,", "size column is empty"),
        ("nvs, data, nvs, 0xZZ, 24K,", "offset '0xZZ' is not valid"),
        ("nvs, data, nvs, , 24K, secret", "unknown flag 'secret'"),
        ("nvs, data, nvs, , 0x2000,", "flag it readonly"),
        ("otadata, data, ota, , 8K, readonly", "remove the readonly flag"),
        ("$IMGTOOL_SURELY_UNSET_VAR, data, nvs, , 24K,", "unknown environment variable"),
        ("nvs, data, nvs, , $IMGTOOL_SURELY_UNSET_VAR,", "unset environment variable"),
        ("big, 0x100, 0, , 4K,", "type 0x100 of 'big' does not fit"),
        ("bootloader, bootloader, primary, , ,", "pass --chip"),
        ("nvs, data, nvs, , 24K, encrypted: readonly", "unknown flag ' readonly'"),
    ],
)
def test_malformed_rows_name_their_line(row, expect):
    message = error_of(HEADER + "\n" + row)
    assert message.startswith("partitions.csv:3: ") and expect in message


def test_environment_variables_expand(monkeypatch):
    monkeypatch.setenv("APP_SIZE", "0x180000")
    table = PartitionTable.from_csv("factory, app, factory, , $APP_SIZE,")
    assert table.find("factory").size == 0x180000


def test_csv_source_name_in_messages(tmp_path):
    path = tmp_path / "my.csv"
    path.write_text("nvs, data, nvs, 0x8000, 24K,\n")
    with pytest.raises(PartitionError, match=r"my\.csv:1: "):
        load_table(path)


# -- binary input ------------------------------------------------------------------------------


def test_binary_with_bad_md5_is_rejected():
    data = bytearray(load_table("single_app").to_binary())
    data[40] ^= 1
    with pytest.raises(PartitionError, match="MD5"):
        PartitionTable.from_binary(bytes(data))


def test_binary_without_end_marker_is_rejected():
    data = load_table("single_app").to_binary()[:96]
    with pytest.raises(PartitionError, match="end-of-table"):
        PartitionTable.from_binary(data)


def test_binary_with_bad_magic_is_rejected():
    data = bytearray(load_table("single_app").to_binary())
    data[32] = 0x12
    with pytest.raises(PartitionError, match="entry 1: bad magic"):
        PartitionTable.from_binary(bytes(data))


def test_binary_without_md5_entry_is_accepted():
    table = load_table("single_app")
    data = table.to_binary()[: 32 * len(table)] + b"\xff" * 32
    assert PartitionTable.from_binary(data).partitions == table.partitions


def test_load_table_detects_csv_binary_and_presets(tmp_path):
    binary = tmp_path / "pt.bin"
    binary.write_bytes(load_table("factory_two_ota").to_binary())
    csv = tmp_path / "pt.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + load_table("factory_two_ota").to_csv().encode())
    from_bin, from_csv, preset = load_table(binary), load_table(csv), load_table("factory-two-ota")
    assert from_bin.partitions == from_csv.partitions == preset.partitions
    with pytest.raises(PartitionError, match="not a preset"):
        load_table(tmp_path / "missing.csv")


# -- defaults, boot partition, app fit ---------------------------------------------------------


@pytest.mark.parametrize("flash", [1, 2, 4, 16])
def test_default_table_fills_the_flash(flash):
    table = default_table(flash * MiB)
    assert [(p.name, p.offset) for p in table] == [("nvs", 0x9000), ("phy_init", 0xF000), ("factory", 0x10000)]
    assert table.find("factory").end == flash * MiB
    assert table.to_binary() == idf_binary(table.to_csv())


def test_default_table_respects_the_table_offset():
    table = default_table(4 * MiB, table_offset=0xA000)
    assert table.partitions[0].offset == 0xB000
    factory = table.find("factory")
    assert factory.offset == 0x20000 and factory.end == 4 * MiB


def test_boot_app_partition_preference():
    assert boot_app_partition(load_table("factory_two_ota")).name == "factory"
    assert boot_app_partition(load_table("two_ota")).name == "ota_0"
    assert boot_app_partition(load_table("factory_two_ota"), "ota_1").name == "ota_1"
    only_test = PartitionTable.from_csv("t, app, test, , 64K,")
    assert boot_app_partition(only_test).name == "t"
    # no factory and no ota_0: the lowest OTA slot, as ESP-IDF's bootloader falls through the slots
    gaps = PartitionTable.from_csv("otadata, data, ota, , 8K,\nt, app, test, , 64K,\nb, app, ota_3, , 64K,\na, app, ota_1, , 64K,")
    assert boot_app_partition(gaps).name == "a"
    # repeated subtypes: the bootloader keeps the last row it reads
    twice = PartitionTable.from_csv("otadata, data, ota, , 8K,\nf1, app, factory, , 64K,\nf2, app, factory, , 64K,\n"
                                    "o1, app, ota_0, , 64K,\no2, app, ota_0, , 64K,")
    assert boot_app_partition(twice).name == "f2"
    assert [p.name for p in twice.ota_apps] == ["o2"]


def test_boot_app_partition_unknown_name_lists_apps():
    with pytest.raises(PartitionError, match="no partition named 'ota_9'; app partitions: factory, ota_0, ota_1"):
        boot_app_partition(load_table("factory_two_ota"), "ota_9")
    with pytest.raises(PartitionError, match="'nvs' is a data partition"):
        boot_app_partition(load_table("factory_two_ota"), "nvs")
    with pytest.raises(PartitionError, match="no app partition"):
        boot_app_partition(PartitionTable.from_csv("nvs, data, nvs, , 24K,"))


def test_check_app_fits():
    table = load_table("single_app")
    assert check_app_fits(table, 1 * MiB).name == "factory"
    with pytest.raises(LayoutError) as info:
        check_app_fits(table, int(1.3 * MiB))
    message = str(info.value)
    assert "app is 1.3 MiB" in message and "'factory' holds 1 MiB" in message
    assert "--flash-size 2MB" in message and "single_app_large" in message and "\n" not in message


def test_espflash_corpus_table():
    path = corpus_path("partitions-espflash-test.csv")
    table = load_table(path)
    assert table.to_binary() == idf_binary(path.read_text())
    with pytest.raises(PartitionError, match=r"partitions-espflash-test\.csv:4: 'factory'.*past the end of the 4 MiB"):
        load_table(path, flash_size="4MB")


def test_to_binary_refuses_an_oversized_hand_built_table():
    parts = tuple(Partition(f"p{i}", 1, 0x81, 0x9000 + i * 0x1000, 0x1000) for i in range(MAX_PARTITIONS + 1))
    with pytest.raises(PartitionError, match="do not fit"):
        PartitionTable(parts).to_binary()
