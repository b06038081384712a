"""The options commands share (imgtool.cli.options): one parser each, the same answer everywhere."""

from __future__ import annotations

import pytest
from conftest import run_cli


@pytest.mark.parametrize("command", [["pack", "x.elf"], ["partitions", "check", "two_ota"]])
@pytest.mark.parametrize("offset, accepted", [("nope", False), ("-0x1000", False)])
def test_offsets_are_refused_alike(command, offset, accepted):
    option = "--partition-table-offset" if command[0] == "pack" else "--offset"
    result = run_cli(*command, option, offset, "--flash-size", "4MB")
    assert result.exit_code == 2
    assert f"{option}:" in result.output and "use a number such as 0x8000" in result.output


def test_partitions_accepts_the_flash_size_spellings_pack_does():
    for spelling in ("4MB", "4m", "4MiB"):
        result = run_cli("partitions", "check", "two_ota", "--flash-size", spelling)
        assert result.exit_code == 0, result.output
        assert result.output.rstrip().endswith("of 4 MiB")


def test_partitions_chip_is_a_choice_like_every_command():
    ok = run_cli("partitions", "check", "two_ota", "--flash-size", "4MB", "--chip", "ESP32C3")
    assert ok.exit_code == 0, ok.output
    bad = run_cli("partitions", "check", "two_ota", "--flash-size", "4MB", "--chip", "esp99")
    assert bad.exit_code == 2 and "'esp99' is not one of" in bad.output
