"""`imgtool partitions`: compile, decompile, show and check ESP-IDF partition tables."""

from __future__ import annotations

import json

import click

from imgtool.atomic import write_bytes
from imgtool.chips.table import flash_size_bytes, get_chip
from imgtool.cli.options import TABLE_OFFSET_TEXT, chip_option, parse_flash_size, parse_offset
from imgtool.partitions.choice import load_table
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, SECURE_MODES, SECURE_V1, TableOptions, human_size

FLASH_SIZE_HELP = "Flash size (e.g. 4MB); partitions must end within it."
OFFSET_HELP = f"Flash offset of the partition table (default {TABLE_OFFSET_TEXT})."
CHIP_HELP = "Chip, whose bootloader offset places 'bootloader' rows (as --primary-bootloader-offset)."


def table_options(func):
    """gen_esp32part's options, shared by every sub-command that reads a table."""
    options = [
        chip_option(CHIP_HELP),
        click.option("--offset", "table_offset", default=None, callback=parse_offset, help=OFFSET_HELP),
        click.option(
            "--primary-bootloader-offset", default=None, callback=parse_offset,
            help="Offset of the primary bootloader, for 'bootloader' rows (default: from --chip).",
        ),
        click.option(
            "--recovery-bootloader-offset", default=None, callback=parse_offset,
            help="Offset of the recovery bootloader, for 'bootloader, recovery' rows.",
        ),
        click.option(
            "--secure", type=click.Choice(SECURE_MODES), is_flag=False, flag_value=SECURE_V1, default=None,
            help="Require app partitions to suit secure boot (v1 when given without a version).",
        ),
        click.option("--disable-md5sum", is_flag=True, help="Write (and expect) no MD5 entry."),
        click.option("--no-verify", is_flag=True, help="Skip ESP-IDF's verification of the table, as gen_esp32part does."),
        click.option(
            "--extra-partition-subtypes", multiple=True, metavar="'TYPE, NAME, HEX'",
            help="Extra subtype keyword, e.g. 'data, my_store, 0x40' (repeatable).",
        ),
        click.option("--strict", is_flag=True, help="Treat imgtool's warnings as errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _flash_size_bytes(ctx, param, value) -> int | None:
    """``--flash-size`` in any spelling :func:`~imgtool.cli.options.parse_flash_size` takes, as bytes."""
    name = parse_flash_size(ctx, param, value)
    if name is None:
        return None
    return flash_size_bytes(name)


def _load(source, flash_size: int | None, opts):
    bootloader_offset = opts["primary_bootloader_offset"]
    if bootloader_offset is None and opts["chip"] is not None:
        bootloader_offset = get_chip(opts["chip"]).bootloader_offset
    options = TableOptions(
        table_offset=DEFAULT_TABLE_OFFSET if opts["table_offset"] is None else opts["table_offset"],
        bootloader_offset=bootloader_offset,
        recovery_bootloader_offset=opts["recovery_bootloader_offset"],
        flash_size=flash_size,
        secure=opts["secure"],
        md5=not opts["disable_md5sum"],
        verify=not opts["no_verify"],
        strict=opts["strict"],
        extra_subtypes=tuple(opts["extra_partition_subtypes"]),
    )
    table = load_table(source, options=options)
    for warning in table.warnings:
        click.echo(f"imgtool: warning: {warning}", err=True)
    return table


@click.group()
def partitions():
    """ESP-IDF partition tables: CSV ⇄ binary, presets and ESP-IDF's layout rules."""


@partitions.command("compile")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Binary table to write.")
@click.option("--flash-size", default=None, callback=_flash_size_bytes, help=FLASH_SIZE_HELP)
@table_options
def compile_(source, output, flash_size, **opts):
    """Compile a CSV (or preset) to the 0xC00-byte binary table ESP-IDF's bootloader reads."""
    table = _load(source, flash_size, opts)
    write_bytes(output, table.to_binary())
    click.echo(f"wrote {output}: {len(table)} partitions")


@partitions.command("decompile")
@click.argument("source")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="CSV to write (default: stdout).")
@click.option("--flash-size", default=None, callback=_flash_size_bytes, help=FLASH_SIZE_HELP)
@table_options
def decompile(source, output, flash_size, **opts):
    """Turn a binary table (or a CSV or preset) into ESP-IDF CSV, as gen_esp32part writes it."""
    table = _load(source, flash_size, opts)
    if output is None:
        click.echo(table.to_csv(), nl=False)
        return
    write_bytes(output, table.to_csv())
    click.echo(f"wrote {output}: {len(table)} partitions")


@partitions.command("show")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--flash-size", default=None, callback=_flash_size_bytes, help="Flash size, to show the free space at the end.")
@table_options
def show(source, as_json, flash_size, **opts):
    """Show a binary table, CSV or preset: one row per partition and the free space after the last."""
    table = _load(source, flash_size, opts)
    free = flash_size - table.end if flash_size is not None else None
    if as_json:
        click.echo(json.dumps(_as_dict(table, flash_size, free), indent=2))
        return
    # not at the top: rich (~23 ms) only for a table on the terminal, not for --json nor the other commands
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"{table.source} (table at 0x{table.table_offset:x})")
    for column in ("Name", "Type", "SubType", "Offset", "Size", "Flags"):
        view.add_column(column, justify="right" if column in ("Offset", "Size") else "left")
    for p in table:
        size = f"0x{p.size:x} ({human_size(p.size)})"
        view.add_row(p.name, p.type_name, p.subtype_name, f"0x{p.offset:x}", size, ":".join(p.flags))
    # Names and paths are user text, never rich markup.
    console = Console(soft_wrap=True, markup=False, highlight=False)
    console.print(view)
    if free is None:
        console.print(f"last partition ends at 0x{table.end:x}; pass --flash-size to see the free space after it")
    else:
        console.print(f"free after the last partition: 0x{free:x} ({human_size(free)}) of {human_size(flash_size)} flash")


@partitions.command("check")
@click.argument("source")
@click.option("--flash-size", required=True, callback=_flash_size_bytes, help=FLASH_SIZE_HELP)
@table_options
def check(source, flash_size, **opts):
    """Check a table against ESP-IDF's rules and the flash size; print 'ok' or the first problem."""
    table = _load(source, flash_size, opts)
    free = flash_size - table.end
    click.echo(
        f"ok: {table.source}: {_count(len(table), 'partition')}, {_count(len(table.apps), 'app')}, "
        f"ends at 0x{table.end:x}, {human_size(free)} free of {human_size(flash_size)}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _as_dict(table, flash_size, free) -> dict:
    return {
        "source": table.source,
        "table_offset": table.table_offset,
        "flash_size": flash_size,
        "end": table.end,
        "free": free,
        "partitions": [
            {
                "name": p.name,
                "type": p.type_name,
                "subtype": p.subtype_name,
                "type_id": p.type,
                "subtype_id": p.subtype,
                "offset": p.offset,
                "size": p.size,
                "flags": p.flags,
            }
            for p in table
        ],
    }
