"""Reference suite: ESP-IDF's own partition-table cases, each with gen_esp32part's verdict.

The cases are ported from ESP-IDF v5.5's host tests
(components/partition_table/test_gen_esp32part_host/gen_esp32part_tests.py) and from the
test data of the esp-idf-part crate (esp-rs/esp-idf-part, tests/data). ESP-IDF's module-level
tests run with the table offset at 0 (``offset_part_table = 0``); its command-line tests and
``idf.py`` use 0x8000. For every accepted table ``esp_idf_defs`` (an extract of gen_esp32part)
gives the bytes; imgtool never imports it.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import struct
from dataclasses import dataclass, field

import pytest
from conftest import run_cli
from esp_idf_defs import PartitionTable as IdfTable
from esp_idf_defs.partitions import InputError as IdfInputError
from hypothesis import given
from hypothesis import strategies as st

from imgtool.errors import PartitionError, UsageError
from imgtool.partitions.choice import load_table
from imgtool.partitions.table import (
    ESP_IDF_RELEASE,
    MAX_PARTITIONS,
    MAX_PARTITIONS_NO_MD5,
    PartitionTable,
    TableOptions,
    boot_app_partition,
)

ACCEPT, REJECT = "accept", "reject"


@dataclass(frozen=True)
class Case:
    """One table and ESP-IDF's verdict on it; ``needle`` must appear in imgtool's error or a warning."""

    csv: str
    verdict: str
    needle: str | None = None
    options: dict = field(default_factory=dict)
    #: False where the rule lives in gen_esp32part's main(), which esp_idf_defs does not carry.
    in_idf_defs: bool = True


def idf_table(text: str, opts: TableOptions) -> IdfTable:
    """The oracle: esp_idf_defs parses, verifies and size-checks as gen_esp32part's command line does."""
    table = IdfTable.from_csv(text, opts.table_offset, opts.bootloader_offset, opts.recovery_bootloader_offset)
    if opts.verify:
        table.verify(partition_table_offset=opts.table_offset, secure=opts.secure)
    if opts.flash_size is not None:
        table.verify_size_fits(opts.flash_size)
    return table


def idf_binary(text: str, opts: TableOptions) -> bytes:
    return idf_table(text, opts).to_binary(md5sum=opts.md5)


def verdict_of(case: Case) -> tuple[PartitionTable | None, str]:
    opts = TableOptions(**case.options)
    try:
        return PartitionTable.from_csv(case.csv, options=opts), ""
    except PartitionError as exc:
        message = str(exc)
        assert "\n" not in message
        return None, message


# -- ESP-IDF's host tests (module level: table offset 0) --------------------------------------------

AT0 = {"table_offset": 0}

HOST_CASES = {
    "simple_partition": Case("\n# Name,Type,SubType,Offset,Size,Flags\nfactory,0,2,65536,1048576,\n", ACCEPT, "subtype", AT0),
    "require_type": Case("\n# Name,Type, SubType,Offset,Size\nihavenotype,\n", REJECT, "type", AT0),
    "unit_suffixes": Case("one_megabyte, app, factory, 64k, 1M\n", ACCEPT, None, AT0),
    "default_offsets": Case(
        "first, app, factory,, 1M\nsecond, data, 0x15,, 1M\nminidata, data, 0x40,, 32K\notherapp, app, factory,, 1M\n",
        ACCEPT, "second factory", AT0,
    ),
    "negative_size_to_offset": Case("first, app, factory, 0x10000, -2M\nsecond, data, 0x15,         ,  1M\n", ACCEPT, None, AT0),
    "overlapping_offsets_fail": Case("first, app, factory, 0x100000, 2M\nsecond, app, ota_0,  0x200000, 1M\n", REJECT, "inside 'first'", AT0),
    "unique_name_fail": Case("first, app, factory, 0x100000, 1M\nfirst, app, ota_0,  0x200000, 1M\n", REJECT, "already used", AT0),
    "bootloader_rows_without_offset": Case("bootloader, bootloader, primary, N/A, N/A\n", REJECT, "--primary-bootloader-offset", AT0),
    "bootloader_and_part_table_partitions": Case(
        "bootloader,       bootloader,       primary, N/A, N/A\n"
        "partition_table,  partition_table,  primary, N/A, N/A\n"
        "FactoryApp,       app,              factory, ,    1M\n"
        "OtaBTLDR,         bootloader,       ota,     ,    N/A\n"
        "OtaPrtTable,      partition_table,  ota,     ,    N/A\n"
        "RecoveryBTLDR,    bootloader,       recovery, N/A, N/A\n",
        ACCEPT, None,
        {"table_offset": 0x9000, "bootloader_offset": 0x1000, "recovery_bootloader_offset": 0x200000},
    ),
    "binary_entry_unverified": Case("first, 0x30, 0xEE, 0x100400, 0x300000\n", ACCEPT, None, {**AT0, "verify": False}),
    "binary_entry_verified": Case("first, 0x30, 0xEE, 0x100400, 0x300000\n", REJECT, "not aligned", AT0),
    "multiple_entries": Case(
        "first, 0x30, 0xEE, 0x100400, 0x300000\nsecond,0x31, 0xEF,         , 0x100000\n", ACCEPT, None, {**AT0, "verify": False}
    ),
    "encrypted_flag": Case("first, app, factory,, 1M, encrypted\n", ACCEPT, None, AT0),
    "only_empty_subtype_is_not_0": Case(
        "nvs,            data,    nvs,          , 0x4000,\n"
        "otadata,        data,    ota,          , 0x2000,\n"
        "phy_init,       data,    phy,          , 0x1000,\n"
        "factory,        app, factory,          , 1M\n"
        "ota_0,             0,  ota_0,          , 1M,\n"
        "ota_1,             0,  ota_1,          , 1M,\n"
        "storage,        data,       ,          , 512k,\n"
        "storage2,       data, undefined,       , 12k,\n",
        ACCEPT, None, AT0,
    ),
    "bad_alignment_app": Case("# Name,Type, SubType,Offset,Size\napp,app, factory, 32K, 1M\n", REJECT, "not aligned", AT0),
    "bad_alignment_data": Case(
        "nvs,      data, nvs,     0x9420,  0x6000,\nphy_init, data, phy,     ,        0x1000,\nfactory,  app,  factory, ,        1M,\n",
        REJECT, "not aligned", AT0,
    ),
    "overlap_part_table": Case(
        "# Name,Type, SubType,Offset,Size\nnvs,      data, nvs,     0x0000,  0x6000,\n"
        "phy_init, data, phy,     ,        0x1000,\nfactory,  app,  factory, ,        1M,\n",
        REJECT, "partitions.csv:2: 'nvs' at 0x0", AT0,
    ),
    "only_one_otadata": Case(
        "nvs, data, nvs, , 0x4000,\notadata, data, ota, , 0x2000,\notadata2, data, ota, , 0x2000,\n"
        "factory, app, factory, , 1M\nota_0, 0, ota_0, , 1M,\nota_1, 0, ota_1, , 1M,\n",
        REJECT, "second otadata", AT0,
    ),
    "otadata_must_have_fixed_size": Case(
        "nvs, data, nvs, , 0x4000,\notadata, data, ota, , 0x3000,\nfactory, app, factory, , 1M\nota_0, 0, ota_0, , 1M,\n",
        REJECT, "must be 0x2000", AT0,
    ),
    "app_cannot_have_empty_subtype": Case(
        "nvs, data, nvs, , 0x4000,\notadata, data, ota, , 0x2000,\nfactory, app, , , 1M\n", REJECT, "needs a subtype", AT0
    ),
    "warning_type_name": Case("app, 1, 2, 32K, 1M\n", ACCEPT, "named like the app type", AT0),
    "warning_subtype_name": Case("ota_0, app, ota_1, , 1M\n", ACCEPT, "named like the ota_0 subtype", AT0),
    "size_error": Case("factory, app, factory, 0x10000, 20M\n", REJECT, "past the end of the 16 MiB", {**AT0, "flash_size": 16 << 20}),
    # the secure-boot cases run through the command line there: table offset 0x8000
    "secure_none": Case("ota_0,  app, ota_0, ,  0x101000\nota_1,  app, ota_1, ,  0x100800\n", REJECT, "'ota_1' is not a multiple of 0x1000"),
    "secure_v1": Case(
        "ota_0,  app, ota_0, ,  0x101000\nota_1,  app, ota_1, ,  0x100800\n", REJECT, "'ota_0' is not a multiple of 0x10000", {"secure": "v1"}
    ),
    "secure_v2": Case(
        "ota_0,  app, ota_0, ,  0x101000\nota_1,  app, ota_1, ,  0x100800\n", REJECT, "'ota_1' is not a multiple of 0x1000", {"secure": "v2"}
    ),
    "secure_v1_whole_blocks": Case("otadata, data, ota, , 8K\nota_0, app, ota_0, , 0x110000\n", ACCEPT, None, {"secure": "v1"}),
    "parttool_find_basic": Case(
        "nvs,      data, nvs,      0x9000,   0x4000\notadata,  data, ota,      0xd000,   0x2000\n"
        "phy_init, data, phy,      0xf000,   0x1000\nfactory,  app, factory,   0x10000,  1M\n"
        "nvs1_user, data, nvs,     0x110000, 0x4000\nnvs2_user, data, nvs,     0x114000, 0x4000\n"
        "nvs_key1, data, nvs_keys, 0x118000, 0x1000, encrypted\nnvs_key2, data, nvs_keys, 0x119000, 0x1000, encrypted\n",
        ACCEPT,
    ),
    "parttool_fallback": Case(
        "nvs,      data, nvs,     0x9000,  0x4000\notadata,  data, ota,     0xd000,  0x2000\n"
        "phy_init, data, phy,     0xf000,  0x1000\nota_0,  app,    ota_0,   0x30000,  1M\nota_1,  app,    ota_1,          ,  1M\n",
        ACCEPT,
    ),
}

# -- esp-idf-part's test data (table offset 0x8000), with ESP-IDF's verdict, not the crate's ---------

ESP_IDF_PART_CASES = {
    "err_conflicting_names": Case(
        "factory,  app,  factory, 0x10000, 1M,\nota_0,    app,  ota_0,          , 1M,\nota_0,    app,  ota_1,          , 1M,\n",
        REJECT, "already used",
    ),
    "err_factory_too_large": Case("factory,  app,  factory, 0x10000, 0x1000001,\n", REJECT, "not a multiple of 0x1000"),
    "err_multiple_factory": Case(
        "factory,   app,  factory, 0x10000, 1M,\nfactoryb,  app,  factory,        , 1M,\n", ACCEPT, "second factory"
    ),
    "err_multiple_otadata": Case(
        "factory,  app,  factory, 0x10000, 0x100000,\notadata1,  data,  ota,          , 0x2000,\n"
        "otadata2,  data,  ota,          , 0x2000,\n",
        REJECT, "second otadata",
    ),
    "err_no_app_partition": Case(
        "nvs,      data, nvs,     0x9000,  0x6000,\nphy_init, data, phy,     0xf000,  0x1000,\n", ACCEPT, "no app partition"
    ),
    "err_otadata_invalid_size": Case(
        "factory,  app,  factory, 0x10000, 0x100000,\notadata1,  data,  ota,          , 0x3000,\n", REJECT, "must be 0x2000"
    ),
    "err_overlapping_partitions": Case(
        "nvs,      data, nvs,     0x9000,  0x4000,\notadata,  data, ota,     0xd000,  0x2000,\n"
        "phy_init, data, phy,     0xf000,  0x1000,\nfactory,  app,  factory, 0x10000,  1M,\n"
        "ota_0,    app,  ota_0,   0x110000, 1M,\nota_1,    app,  ota_1,   0x200000, 1M,\n",
        REJECT, "partitions.csv:6: offset 0x200000",
    ),
    "err_unaligned_app_partition": Case(
        "nvs,      data, nvs,     0x9000,  0x6000,\nphy_init, data, phy,     0xf000,  0x1000,\nfactory,  app,  factory, 0x10010, 1M,\n",
        REJECT, "not aligned to 0x10000",
    ),
    "large_data_partition": Case(
        "nvs,      data, nvs,     0x9000,  0x6000,\nphy_init, data, phy,     0xf000,  0x1000,\n"
        "factory,  app,  factory, 0x10000, 1M,\nstorage,  data, fat,     0x110000,29M,\n",
        ACCEPT, None, {"flash_size": 32 << 20},
    ),
    "large_data_partition_16mb": Case(
        "nvs,      data, nvs,     0x9000,  0x6000,\nphy_init, data, phy,     0xf000,  0x1000,\n"
        "factory,  app,  factory, 0x10000, 1M,\nstorage,  data, fat,     0x110000,29M,\n",
        REJECT, "past the end", {"flash_size": 16 << 20},
    ),
    "partition_table_unit_test_app": Case(
        "# Special partition table for unit test app\n#\n# Name,     Type, SubType, Offset,   Size, Flags\n"
        "nvs,        data, nvs,      0xb000,  0x5000\notadata,    data, ota,      0x10000,  0x2000\n"
        "phy_init,   data, phy,      0x12000,  0x1000\n# factory,    0,    0,        0x20000, 0x260000\n"
        "ota_0,      0,    ota_0,    ,        64K\nota_1,      0,    ota_1,    ,        64K\n"
        "flash_test, data, fat,      ,        528K\nnvs_key,    data, nvs_keys, ,        0x1000, encrypted\n\n",
        ACCEPT, None, {"flash_size": 4 << 20},
    ),
    "partition_table_unit_test_app_2m": Case(
        "nvs,        data, nvs,      0xb000,  0x5000\notadata,    data, ota,      0x10000,  0x2000\n"
        "phy_init,   data, phy,      0x12000,  0x1000\nota_0,      0,    ota_0,    ,        64K\n"
        "ota_1,      0,    ota_1,    ,        64K\nflash_test, data, fat,      ,        320K\n"
        "nvs_key,    data, nvs_keys, ,        0x1000, encrypted\n",
        ACCEPT, None, {"flash_size": 2 << 20},
    ),
    "partition_table_unit_test_two_ota": Case(
        "nvs,        data, nvs,     ,        0x4000\notadata,    data, ota,     ,        0x2000\n"
        "phy_init,   data, phy,     ,        0x1000\nota_0,      0,    ota_0,   ,        0xB0000\n"
        "ota_1,      0,    ota_1,   ,        0xB0000\ntest,       0,    test,    ,        0xB0000\n"
        "flash_test, data, fat,     ,        528K\n",
        ACCEPT, None, {"flash_size": 4 << 20},
    ),
    "partition_table_unit_test_two_ota_2m": Case(
        "nvs,        data, nvs,     ,        0x4000\notadata,    data, ota,     ,        0x2000\n"
        "phy_init,   data, phy,     ,        0x1000\nota_0,      0,    ota_0,   ,        0x70000\n"
        "ota_1,      0,    ota_1,   ,        0x70000\ntest,       0,    test,    ,        0x70000\n"
        "flash_test, data, fat,     ,        128K\n",
        ACCEPT, None, {"flash_size": 2 << 20},
    ),
    "single_factory_no_ota": Case(
        "nvs,      data, nvs,     0x9000,  0x6000,\nphy_init, data, phy,     0xf000,  0x1000,\nfactory,  app,  factory, 0x10000, 1M,\n",
        ACCEPT,
    ),
    "factory_app_two_ota": Case(
        "nvs,      data, nvs,     0x9000,  0x4000,\notadata,  data, ota,     0xd000,  0x2000,\n"
        "phy_init, data, phy,     0xf000,  0x1000,\nfactory,  app,  factory, 0x10000,  1M,\n"
        "ota_0,    app,  ota_0,   0x110000, 1M,\nota_1,    app,  ota_1,   0x210000, 1M,\n",
        ACCEPT,
    ),
}

# -- tables from the issue: ESP-IDF accepts them, imgtool used to refuse ----------------------------

ISSUE_CASES = {
    # ESP-IDF's examples/custom_bootloader/bootloader_multiboot layout: OTA apps, no otadata
    "ota_without_otadata": Case(
        "nvs, data, nvs, , 0x6000,\nphy_init, data, phy, , 0x1000,\nota_0, app, ota_0, , 1M,\nota_1, app, ota_1, , 1M,\n",
        ACCEPT, "without an otadata",
    ),
    "repeated_ota_subtype": Case(
        "otadata, data, ota, , 8K,\na, app, ota_0, , 64K,\nb, app, ota_0, , 64K,\n", ACCEPT, "second ota_0"
    ),
    "size_zero": Case("nvs, data, nvs, , 24K,\nempty, data, fat, , 0,\nfactory, app, factory, , 1M,\n", ACCEPT, "size 0"),
    "type_0xff": Case("factory, app, factory, , 1M,\nraw, 0xFF, 0x12, , 4K,\n", ACCEPT),
    "name_over_16_bytes": Case("factory, app, factory, , 1M,\na_very_long_partition_name, data, fat, , 4K,\n", ACCEPT, "first 16"),
    "name_empty": Case("factory, app, factory, , 1M,\n, data, fat, , 4K,\n", ACCEPT, "name is empty"),
    "bootloader_rows_with_written_sizes": Case(
        "bootloader, bootloader, primary, 0x0, 0x4000\npartition_table, partition_table, primary, 0x1234, 0x2000\n"
        "factory, app, factory, , 1M\nOtaBTLDR, bootloader, ota, , 0x4000\nRecovery, bootloader, recovery, , 0x4000\n",
        ACCEPT, None, {"bootloader_offset": 0x1000, "recovery_bootloader_offset": 0x300000},
    ),
    "recovery_row_without_offset": Case(
        "factory, app, factory, , 1M\nRecovery, bootloader, recovery, , N/A\n", REJECT, "--recovery-bootloader-offset",
        {"bootloader_offset": 0x1000},
    ),
    "bootloader_after_the_table": Case("factory, app, factory, , 1M\n", REJECT, "not after the bootloader", {"bootloader_offset": 0x8000}, False),
    "flag_list_with_spaces": Case("nvs, data, nvs, , 24K, encrypted : readonly\n", REJECT, "unknown flag 'encrypted '"),
    "comment_with_unset_variable": Case("# uses $IMGTOOL_SURELY_UNSET_VAR\nfactory, app, factory, , 1M\n", ACCEPT),
    "row_starting_with_unset_variable": Case("$IMGTOOL_SURELY_UNSET_VAR, app, factory, , 1M\n", REJECT, "unknown environment"),
    "negative_size_past_its_end": Case("factory, app, factory, 0x20000, -0x10000\n", REJECT, "negative size"),
    "offset_past_32_bits": Case("big, data, fat, 0x100000000, 4K\n", REJECT, "does not fit"),
    "type_past_a_byte": Case("big, 0x100, 0, , 4K\n", REJECT, "does not fit"),
    "suffix_on_suffix": Case("factory, app, factory, 1kk, 1M\n", ACCEPT),  # each K multiplies: 1 MiB
    "size_fits_exactly": Case("factory, app, factory, 0x10000, 0xF0000\n", ACCEPT, None, {"flash_size": 1 << 20}),
}

ALL_CASES = {**{f"host-{k}": v for k, v in HOST_CASES.items()}, **{f"esp-idf-part-{k}": v for k, v in ESP_IDF_PART_CASES.items()},
             **{f"issue-{k}": v for k, v in ISSUE_CASES.items()}}


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_esp_idf_verdict_and_bytes(name):
    case = ALL_CASES[name]
    opts = TableOptions(**case.options)
    try:
        table, error = verdict_of(case)
    except UsageError as exc:
        table, error = None, str(exc)
    if case.verdict == REJECT:
        assert table is None, f"ESP-IDF rejects {name}; imgtool accepted it"
        if case.in_idf_defs:
            with pytest.raises((IdfInputError, struct.error, ValueError)):
                idf_binary(case.csv, opts)
        assert case.needle is None or case.needle in error, error
        return
    assert table is not None, f"ESP-IDF accepts {name}; imgtool said: {error}"
    assert table.to_binary() == idf_binary(case.csv, opts)
    if case.needle:
        assert any(case.needle in w for w in table.warnings), table.warnings
        with pytest.raises(PartitionError, match="--strict"):
            PartitionTable.from_csv(case.csv, options=TableOptions(**case.options, strict=True))


@pytest.mark.parametrize("name", sorted(k for k, v in ALL_CASES.items() if v.verdict == ACCEPT))
def test_binary_to_csv_and_back_byte_for_byte(name):
    """Decompiling gives gen_esp32part's CSV text; compiling that gives the same bytes again."""
    case = ALL_CASES[name]
    opts = TableOptions(**case.options)
    binary = PartitionTable.from_csv(case.csv, options=opts).to_binary()
    decoded = PartitionTable.from_binary(binary, options=opts)
    csv = decoded.to_csv()
    assert csv == IdfTable.from_binary(binary).to_csv()
    assert PartitionTable.from_csv(csv, options=opts).to_binary() == binary
    assert decoded.to_binary() == binary


# -- what the host tests assert beyond the verdict ---------------------------------------------------


def table_of(name: str) -> PartitionTable:
    case = ALL_CASES[name]
    return PartitionTable.from_csv(case.csv, options=TableOptions(**case.options))


def test_names_and_magic_numbers_give_the_same_table():
    numbers = "myapp, 0, 0,,  0x100000\nmyota_0, 0, 0x10,, 0x100000\nmyota_1, 0, 0x11,, 0x100000\n" \
              "myota_15, 0, 0x1f,, 0x100000\nmytest, 0, 0x20,, 0x100000\nmyota_status, 1, 0,, 0x2000\n"
    names = "myapp, app, factory,, 0x100000\nmyota_0, app, ota_0,, 0x100000\nmyota_1, app, ota_1,, 0x100000\n" \
            "myota_15, app, ota_15,, 0x100000\nmytest, app, test,, 0x100000\nmyota_status, data, ota,, 0x2000\n"
    a, b = PartitionTable.from_csv(numbers, table_offset=0), PartitionTable.from_csv(names, table_offset=0)
    assert a.partitions == b.partitions and a.warnings == b.warnings == ()
    assert b.find("myota_0").subtype == 0x10 and b.find("myota_status").type == 1


def test_offsets_sizes_and_subtypes_as_esp_idf_fills_them():
    assert [(p.offset, p.size) for p in table_of("host-default_offsets")] == [
        (0x10000, 0x100000), (0x110000, 0x100000), (0x210000, 0x8000), (0x220000, 0x100000)
    ]
    first, second = table_of("host-negative_size_to_offset")
    assert (first.offset, first.size, second.offset) == (0x10000, 0x200000 - 0x10000, 0x200000)
    suffixed = table_of("host-unit_suffixes").partitions[0]
    assert (suffixed.offset, suffixed.size) == (64 * 1024, 1024 * 1024)
    t = table_of("host-only_empty_subtype_is_not_0")
    assert (t.find("otadata").subtype, t.find("storage").subtype, t.find("storage2").subtype) == (0, 6, 6)


def test_bootloader_and_partition_table_rows():
    t = table_of("host-bootloader_and_part_table_partitions")
    boot_size = 0x9000 - 0x1000
    assert [(p.name, p.offset, p.size) for p in t] == [
        ("bootloader", 0x1000, boot_size), ("partition_table", 0x9000, 0x1000), ("FactoryApp", 0x10000, 0x100000),
        ("OtaBTLDR", 0x110000, boot_size), ("OtaPrtTable", 0x118000, 0x1000), ("RecoveryBTLDR", 0x200000, boot_size),
    ]
    written = table_of("issue-bootloader_rows_with_written_sizes")  # ESP-IDF overrides what the row says
    assert [(p.offset, p.size) for p in written if p.type in (2, 3)] == [
        (0x1000, 0x7000), (0x8000, 0x1000), (0x110000, 0x7000), (0x300000, 0x7000)
    ]


def test_binary_output_layout():
    t = table_of("host-binary_entry_unverified")
    tb = t.to_binary()
    assert tb[:4] == b"\xaa\x50\x30\xee" and struct.unpack("<LL", tb[4:12]) == (0x100400, 0x300000)
    assert tb[32:48] == b"\xeb\xeb" + b"\xff" * 14
    assert tb[48:64] == hashlib.md5(tb[:32]).digest()
    assert set(tb[64:]) == {0xFF}
    two = table_of("host-multiple_entries").to_binary()
    assert two[32:34] == b"\xaa\x50" and two[64:66] == b"\xeb\xeb" and set(two[96:]) == {0xFF}
    encrypted = table_of("host-encrypted_flag")
    assert PartitionTable.from_binary(encrypted.to_binary(), table_offset=0).partitions[0].encrypted


def _entry(ptype: int, subtype: int, offset: int, size: int, name: bytes) -> bytes:
    return b"\xaa\x50" + bytes([ptype, subtype]) + struct.pack("<LL", offset, size) + name.ljust(16, b"\0") + bytes(4)


LONGER_ENTRIES = (
    _entry(0x00, 0x00, 0x10000, 0x100000, b"factory")
    + _entry(0x01, 0x20, 0x110000, 0x20000, b"data")
    + _entry(0x10, 0x00, 0x150000, 0x100000, b"second")
)
LONGER_BINARY_TABLE = LONGER_ENTRIES + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(LONGER_ENTRIES).digest() + b"\xff" * 32


def test_binary_parser_cases():
    one = PartitionTable.from_binary(_entry(0x30, 0xEE, 0x100000, 0x200000, b"0123456789abc") + b"\xff" * 32, table_offset=0)
    assert [(p.type, p.subtype, p.offset, p.size, p.name) for p in one] == [(0x30, 0xEE, 0x100000, 0x200000, "0123456789abc")]
    longer = PartitionTable.from_binary(LONGER_BINARY_TABLE, table_offset=0)
    assert [(p.type, p.name) for p in longer] == [(0, "factory"), (1, "data"), (0x10, "second")]
    assert longer.to_binary() == LONGER_BINARY_TABLE.ljust(0xC00, b"\xff")
    bad_magic = b"OHAI" + b"\x00\x00\x10\x00" + b"\x00\x00\x20\x00" + b"0123456789abc\0\0\0" + bytes(4)
    with pytest.raises(PartitionError, match="bad magic"):
        PartitionTable.from_binary(bad_magic)
    with pytest.raises(PartitionError, match="cut short"):
        PartitionTable.from_binary(bad_magic[:22])


def test_csv_output_smart_formatting():
    row = table_of("host-simple_partition").to_csv().splitlines()[2].split(",")
    assert row[:5] == ["factory", "app", "2", "0x10000", "1M"]


def run(*args):
    return run_cli("partitions", *args)


def test_command_line_round_trip_without_warnings(tmp_path):
    """ESP-IDF's CommandLineTests: binary → CSV → binary through the tool, no WARNING printed."""
    binpath, csvpath, again = tmp_path / "t.bin", tmp_path / "t.csv", tmp_path / "again.bin"
    binpath.write_bytes(LONGER_BINARY_TABLE)
    result = run("decompile", binpath, "-o", csvpath)
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    assert csvpath.read_bytes() == IdfTable.from_binary(LONGER_BINARY_TABLE).to_csv().encode()
    result = run("compile", csvpath, "-o", again)
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    assert again.read_bytes() == LONGER_BINARY_TABLE.ljust(0xC00, b"\xff")


def test_parttool_boot_defaults():
    assert boot_app_partition(table_of("host-parttool_find_basic")).offset == 0x10000
    assert boot_app_partition(table_of("host-parttool_fallback")).offset == 0x30000
    moved = ALL_CASES["host-parttool_fallback"].csv.replace("ota_0", "ota_2")
    assert boot_app_partition(PartitionTable.from_csv(moved)).offset == 0x130000


# -- gen_esp32part's options ---------------------------------------------------------------------------


def test_disable_md5sum():
    text = ALL_CASES["esp-idf-part-factory_app_two_ota"].csv
    plain = PartitionTable.from_csv(text, md5=False)
    binary = plain.to_binary()
    assert binary == IdfTable.from_csv(text).to_binary(md5sum=False) and b"\xeb\xeb" not in binary
    assert PartitionTable.from_binary(binary, md5=False).partitions == plain.partitions
    with pytest.raises(PartitionError, match="bad magic eb"):  # ESP-IDF reads an MD5 entry as a bad entry then
        PartitionTable.from_binary(PartitionTable.from_csv(text).to_binary(), md5=False)
    rows = "".join(f"p{i}, data, fat, , 4K,\n" for i in range(MAX_PARTITIONS_NO_MD5))
    assert len(PartitionTable.from_csv(rows, md5=False).to_binary()) == 0xC00
    with pytest.raises(PartitionError, match="too many"):
        PartitionTable.from_csv(rows)
    assert MAX_PARTITIONS_NO_MD5 == MAX_PARTITIONS + 1 == 95


def test_extra_partition_subtypes():
    extra = ("data, my_store, 0x40", "app, my_app, 41")
    text = "store, data, my_store, , 4K\nfirmware, app, my_app, , 64K\n"
    table = PartitionTable.from_csv(text, extra_subtypes=extra)
    assert [p.subtype for p in table] == [0x40, 0x41]
    assert table.to_binary() == IdfTable.from_csv(text.replace("my_store", "0x40").replace("my_app", "0x41")).to_binary()
    assert "store,data,my_store,0x9000,4K," in table.to_csv()
    with pytest.raises(PartitionError, match="subtype 'my_store' is not valid"):
        PartitionTable.from_csv(text)
    with pytest.raises(UsageError, match="already 'nvs'"):
        PartitionTable.from_csv(text, extra_subtypes=("data, mine, 0x02",))
    with pytest.raises(UsageError, match="not a subtype entry"):
        PartitionTable.from_csv(text, extra_subtypes=("blob, mine, 0x40",))
    # gen_esp32part peels a trailing K or M before it looks a keyword up, so 'bulk' can never be used
    with pytest.raises(PartitionError, match="'bulk' is not valid"):
        PartitionTable.from_csv("b, data, bulk, , 4K\n", extra_subtypes=("data, bulk, 0x40",))


def test_command_line_options(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text(ALL_CASES["host-bootloader_and_part_table_partitions"].csv)
    out = tmp_path / "t.bin"
    result = run(
        "compile", csv, "-o", out, "--offset", "0x9000", "--primary-bootloader-offset", "0x1000",
        "--recovery-bootloader-offset", "0x200000", "--secure", "--disable-md5sum",
    )
    assert result.exit_code == 0, result.output
    expected = IdfTable.from_csv(csv.read_text(), 0x9000, 0x1000, 0x200000)
    expected.verify(partition_table_offset=0x9000, secure="v1")
    assert out.read_bytes() == expected.to_binary(md5sum=False)
    chip = run("compile", csv, "-o", out, "--offset", "0x9000", "--chip", "esp32", "--recovery-bootloader-offset", "0x200000")
    assert chip.exit_code == 0 and out.read_bytes() == expected.to_binary()
    bad = tmp_path / "bad.csv"
    bad.write_text("first, 0x30, 0xEE, 0x100400, 0x300000\n")
    assert run("compile", bad, "-o", out).exit_code == 1
    assert run("compile", bad, "-o", out, "--no-verify").exit_code == 0
    warned = tmp_path / "w.csv"
    warned.write_text(ALL_CASES["issue-ota_without_otadata"].csv)
    result = run("compile", warned, "-o", out)
    assert result.exit_code == 0 and result.stderr.startswith("imgtool: warning: ") and len(result.stderr.splitlines()) == 1
    strict = run("compile", warned, "-o", tmp_path / "strict.bin", "--strict")
    assert strict.exit_code == 1 and strict.output.startswith("imgtool: error: ") and not (tmp_path / "strict.bin").exists()


# -- text encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_byte_order_marks(tmp_path, encoding):
    text = "nvs, data, nvs, , 24K,\nfactory, app, factory, , 1M,\nstörage, data, fat, , 4K,\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path = tmp_path / "bom.csv"
    path.write_bytes(data)
    expected = IdfTable.from_file(io.BytesIO(data))[0].to_binary()
    assert load_table(path).to_binary() == expected


def test_utf32_le_is_read_as_utf16_as_esp_idf_does(tmp_path):
    data = "factory, app, factory, , 1M,\n".encode("utf-32")
    assert data.startswith(codecs.BOM_UTF32_LE)
    path = tmp_path / "u32.csv"
    path.write_bytes(data)
    with pytest.raises(PartitionError):
        load_table(path)
    with pytest.raises(IdfInputError):
        IdfTable.from_file(io.BytesIO(data))


def test_readme_names_the_tracked_esp_idf_release():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"ESP-IDF {ESP_IDF_RELEASE}'s `gen_esp32part.py`" in readme


# -- the same verdict as the oracle on generated tables ------------------------------------------------

FIELD_CHOICES = (
    ["nvs", "otadata", "factory", "ota_0", "app", "data", "x", "a_very_long_partition_name", "", "bootloader", "née"],
    ["app", "data", "data", "0x40", "1", "bootloader", "partition_table", "0xff", "0x100", "APP", ""],
    ["factory", "ota_0", "ota_1", "test", "nvs", "ota", "phy", "fat", "", "0x20", "primary", "recovery", "coredump"],
    ["", "", "", "0x9000", "0x10000", "0x20000", "0x18000", "N/A", "64k", "0x100000000", "-0x1000", "0x8000"],
    ["0x2000", "0x3000", "1M", "24K", "0", "-2M", "N/A", "", "0x1000001", "4K", "64K", "1kk", "0x1800"],
    ["", "", "encrypted", "readonly", "encrypted:readonly", "bogus", "encrypted :readonly"],
)
generated_csv = st.lists(
    st.tuples(*(st.sampled_from(choices) for choices in FIELD_CHOICES)).map(", ".join), min_size=1, max_size=6
).map(lambda rows: "\n".join(rows) + "\n")
generated_options = st.builds(
    TableOptions,
    table_offset=st.sampled_from([0x8000, 0x9000]),
    bootloader_offset=st.sampled_from([None, 0x0, 0x1000]),
    recovery_bootloader_offset=st.sampled_from([None, 0x200000]),
    flash_size=st.sampled_from([None, 4 << 20]),
    secure=st.sampled_from([None, "v1", "v2"]),
    **{name: st.just(TableOptions._field_defaults[name]) for name in ("md5", "verify", "strict", "extra_subtypes")},
)


@given(generated_csv, generated_options)
def test_generated_tables_get_the_oracles_verdict_and_bytes(text, opts):
    try:
        expected = idf_binary(text, opts)
    except (IdfInputError, struct.error, ValueError, TypeError):
        expected = None
    try:
        got = PartitionTable.from_csv(text, options=opts).to_binary()
    except PartitionError as exc:
        assert "\n" not in str(exc)
        got = None
    assert got == expected
