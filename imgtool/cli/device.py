"""Device commands over one connection each: `board-info`, `erase-flash`, `erase-parts`, `read-flash`."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from imgtool.atomic import write_bytes
from imgtool.cli.connection import connection_options, flash_options
from imgtool.cli.context import recover_pack_folder
from imgtool.cli.flash import resolved_baud
from imgtool.cli.options import TABLE_OFFSET_TEXT, parse_offset
from imgtool.device.commands import erase_partitions, partitions_named, read_back, read_table
from imgtool.device.commands import read_flash as read
from imgtool.device.flasher import connect
from imgtool.errors import UsageError
from imgtool.flash.pack_folder import read_pack_folder

# Imported where used, start-up that `imgtool --help` never pays: esptool (about 100 ms) and the board
# reader (2 ms).


def _connection(port, baud, before, after, no_stub):
    say = lambda text: click.echo(text, err=True)  # noqa: E731 - standard output is the command's result
    return connect(flash_options(port, resolved_baud(baud, None, say), before, after, no_stub), log=say)


def _reset(connection, after: str) -> None:
    from esptool import cmds  # not at the top: imgtool --help loads this module for its command list; ~35 ms

    cmds.reset_chip(connection.esp, after)


@click.command("board-info")
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
def board_info(port, baud, before, after, no_stub, as_json):
    """Show the connected chip, its revision and crystal, flash id and size, MAC, PSRAM and features, and
    the Secure Boot and flash-encryption state."""
    from imgtool.device.board import read_board  # not at the top: as esptool (~1.3 ms on imgtool --help)

    with contextlib.redirect_stdout(sys.stderr), _connection(port, baud, before, after, no_stub) as connection:
        info = read_board(connection)
        _reset(connection, after)
    if as_json:
        click.echo(json.dumps({"port": connection.port, **info.to_dict()}, indent=2))
    else:
        for line in info.lines(connection.port):
            click.echo(line)


@click.command("erase-flash")
@connection_options
@click.option("--force", is_flag=True, help="Erase even where esptool refuses (e.g. flash encryption enabled).")
def erase_flash(port, baud, before, after, no_stub, force):
    """Erase the whole flash (NVS, every partition, the bootloader)."""
    from esptool import cmds  # not at the top: imgtool --help loads this module for its command list; ~35 ms

    with _connection(port, baud, before, after, no_stub) as connection:
        cmds.erase_flash(connection.ready(), force=force)
        _reset(connection, after)
    click.echo(f"erased the whole flash of the {connection.device.chip} on {connection.port}")


@click.command("erase-parts")
@click.argument("labels", nargs=-1, required=True, metavar="LABEL...")
@connection_options
@click.option("--pack", "outdir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="OUTDIR",
              help="Take the partition table from this pack output folder [default: the one on the device].")
@click.option("--partition-table-offset", callback=parse_offset, default=TABLE_OFFSET_TEXT, show_default=True, metavar="OFFSET")
@click.option("--force", is_flag=True, help="Erase even where esptool refuses.")
def erase_parts(labels, port, baud, before, after, no_stub, outdir, partition_table_offset, force):
    """Erase the partitions with these labels (e.g. nvs otadata), found in the pack's table or the device's."""
    names = [w for item in labels for w in item.split(",") if w]
    table = None
    if outdir is not None:
        recover_pack_folder(outdir)
        table = read_pack_folder(outdir).partition_table()
        partitions_named(table, names)  # an unknown label is refused before connecting
    with _connection(port, baud, before, after, no_stub) as connection:
        if table is None:
            table = read_table(connection, partition_table_offset)
        erased = erase_partitions(connection, table, names, force=force)
        _reset(connection, after)
    for offset, size, label in erased:
        click.echo(f"erased '{label}' (0x{offset:x}, {size:,} bytes)")


@click.command("read-flash")
@connection_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE", help="Where to write the dump.")
@click.option("--offset", callback=parse_offset, default="0", show_default=True, help="Where to start reading.")
@click.option("--size", callback=parse_offset, help="How many bytes [default: to the end of the flash, as the board reports its size].")
def read_flash(port, baud, before, after, no_stub, output, offset, size):
    """Read the flash into FILE (the whole flash by default): a dump 'imgtool verify' checks as the chip would boot it."""
    with _connection(port, baud, before, after, no_stub) as connection:
        if size is None:
            total = connection.flash_size()
            if total is None:
                raise UsageError("the board's flash id names no size; pass --size", field="--size")
            size = total - offset
        if size <= 0:
            raise UsageError(f"nothing to read from 0x{offset:x}; check --offset and --size", field="--size")
        data = read(connection, offset, size)
        _reset(connection, after)
    write_bytes(output, data)
    click.echo(f"read {len(data):,} bytes from 0x{offset:x} into {output}")


def device_dump(port, baud, before, after, no_stub, chip, table_offset: int) -> tuple[bytes, str, str]:
    """For ``verify`` without a file: what the connected device's bootloader would read, its chip and port."""
    with contextlib.redirect_stdout(sys.stderr), _connection(port, baud, before, after, no_stub) as connection:
        if chip is not None and connection.device.chip != chip:
            raise UsageError(f"the connected chip is {connection.device.chip}, not {chip}; drop --chip or connect a {chip}", field="--chip")
        dump = read_back(connection, table_offset, log=lambda text: click.echo(text, err=True))
        _reset(connection, after)
    return dump, connection.device.chip, connection.port
