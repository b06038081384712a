"""Each layout rule lives in one place: the planner, ``partitions`` and ``pack`` refuse the same tables and
offsets with the same words, a chosen partition is not checked again, and the report is made from the plan."""

from __future__ import annotations

import pytest
from conftest import bootloader_image

import imgtool.flash.layout as flash_layout
from imgtool.chips.table import get_chip, parse_revision, revision_name
from imgtool.errors import LayoutError, PartitionError, UsageError
from imgtool.flash.layout import FlashSettings, check_table_offset, plan_layout
from imgtool.flash.outputs import render_files
from imgtool.pack.result import pack_result
from imgtool.partitions.choice import check_app_fits, default_table, load_table

C3 = get_chip("esp32c3")
MiB = 1024 * 1024


def _plan(table, app=b"\x00" * 0x100, size="4MB", **kw):
    return plan_layout(
        C3, name="fw", app=app, bootloader=bootloader_image("esp32c3"), table=table,
        settings=FlashSettings("dio", "80m", size), **kw,
    )  # fmt: skip


def test_a_chosen_partition_is_not_checked_again(monkeypatch):
    table = default_table(4 * MiB)
    target = check_app_fits(table, 0x100)
    monkeypatch.setattr(flash_layout, "check_app_fits", lambda *a, **k: pytest.fail("checked twice"))
    lay = _plan(table, app_partition=target)
    assert lay.app.offset == target.offset and lay.app_partition_name == target.name


@pytest.mark.parametrize("flash_mib, table_mib", [(2, 4), (4, 4), (4, 2), (1, 2)])
def test_table_fits_flash_is_one_rule(tmp_path, flash_mib, table_mib):
    """`partitions` (compiling against a flash size) and the planner refuse the same tables."""
    table = default_table(table_mib * MiB)
    csv = tmp_path / "t.csv"
    csv.write_text(table.to_csv(), encoding="utf-8")
    size = f"{flash_mib}MB"
    try:
        load_table(csv, flash_size=size)
        compiles = True
    except PartitionError:
        compiles = False
    assert compiles == (table.past_flash_end(flash_mib * MiB) is None) == (flash_mib >= table_mib)
    if compiles:
        assert _plan(table, size=size).flash_bytes == flash_mib * MiB
    else:
        with pytest.raises(LayoutError, match="past the end of the"):
            _plan(table, size=size)


@pytest.mark.parametrize("offset", [0x8100, C3.bootloader_offset, 0x0])
def test_table_offset_rule_is_the_same_for_pack_and_planner(offset):
    with pytest.raises(UsageError) as direct:
        check_table_offset(offset, C3)
    with pytest.raises(UsageError) as planned:
        _plan(default_table(4 * MiB, 0x9000), table_offset=offset)
    assert str(direct.value) == str(planned.value)


def test_report_is_made_from_the_plan_and_its_files():
    lay = _plan(default_table(4 * MiB))
    files = render_files(lay)
    res = pack_result(lay, files)
    assert res.files == tuple(files) and res.sha256 == {k: v for k, v in files.sha256.items() if k != "SHA256SUMS"}
    assert [p.offset for p in res.parts] == [p.offset for p in lay.parts]


@pytest.mark.parametrize("full", [0, 1, 99, 100, 301, 9999])
def test_revision_parse_is_the_inverse_of_its_name(full):
    assert parse_revision(revision_name(full), "--min-rev") == full
    assert parse_revision(str(full), "--min-rev") == full

