"""`imgtool partitions`: compile, decompile, show and check ESP-IDF partition tables."""

from __future__ import annotations

import click

from imgtool.errors import UsageError

FLASH_SIZE_HELP = "Flash size (e.g. 4MB); partitions must end within it."
OFFSET_HELP = "Flash offset of the partition table (default 0x8000)."
CHIP_HELP = "Chip, to place a primary 'bootloader' entry and keep the table clear of the bootloader."


def _offset(ctx, param, value):
    if value is None:
        return None
    from imgtool.errors import PartitionError
    from imgtool.partitions import parse_int

    try:
        return parse_int(value, what="offset")
    except PartitionError:
        raise UsageError(f"'{value}' is not an offset; use a number such as 0x8000", field="--offset") from None


def _flash_size(ctx, param, value):
    if value is None:
        return None
    from imgtool.chips import flash_size_bytes

    return flash_size_bytes(value)


def _chip_bootloader_offset(chip: str | None) -> int | None:
    if chip is None:
        return None
    from imgtool.chips import get_chip

    return get_chip(chip).bootloader_offset


def table_options(func):
    """The options every sub-command that reads a table shares."""
    func = click.option("--chip", default=None, help=CHIP_HELP)(func)
    func = click.option("--offset", "table_offset", default=None, callback=_offset, help=OFFSET_HELP)(func)
    return func


def _load(source, flash_size, table_offset, chip):
    from imgtool.partitions import DEFAULT_TABLE_OFFSET
    from imgtool.table_choice import load_table

    return load_table(
        source,
        flash_size=flash_size,
        table_offset=DEFAULT_TABLE_OFFSET if table_offset is None else table_offset,
        bootloader_offset=_chip_bootloader_offset(chip),
    )


@click.group()
def partitions():
    """ESP-IDF partition tables: CSV ⇄ binary, presets and ESP-IDF's layout rules."""


@partitions.command("compile")
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Binary table to write.")
@click.option("--flash-size", default=None, callback=_flash_size, help=FLASH_SIZE_HELP)
@table_options
def compile_(source, output, flash_size, table_offset, chip):
    """Compile a CSV (or preset) to the 0xC00-byte binary table ESP-IDF's bootloader reads."""
    from imgtool.atomic import write_bytes

    table = _load(source, flash_size, table_offset, chip)
    write_bytes(output, table.to_binary())
    click.echo(f"wrote {output}: {len(table)} partitions")


@partitions.command("decompile")
@click.argument("source")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="CSV to write (default: stdout).")
@table_options
def decompile(source, output, table_offset, chip):
    """Turn a binary table (or a CSV or preset) into ESP-IDF CSV."""
    table = _load(source, None, table_offset, chip)
    if output is None:
        click.echo(table.to_csv(), nl=False)
        return
    from imgtool.atomic import write_bytes

    write_bytes(output, table.to_csv())
    click.echo(f"wrote {output}: {len(table)} partitions")


@partitions.command("show")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--flash-size", default=None, callback=_flash_size, help="Flash size, to show the free space at the end.")
@table_options
def show(source, as_json, flash_size, table_offset, chip):
    """Show a binary table, CSV or preset: one row per partition and the free space after the last."""
    table = _load(source, flash_size, table_offset, chip)
    free = flash_size - table.end if flash_size is not None else None
    if as_json:
        import json

        click.echo(json.dumps(_as_dict(table, flash_size, free), indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    from imgtool.partitions import human_size

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
@click.option("--flash-size", required=True, callback=_flash_size, help=FLASH_SIZE_HELP)
@table_options
def check(source, flash_size, table_offset, chip):
    """Check a table against ESP-IDF's rules and the flash size; print 'ok' or the first problem."""
    from imgtool.partitions import human_size

    table = _load(source, flash_size, table_offset, chip)
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
