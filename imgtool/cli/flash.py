"""`imgtool flash OUTDIR|ELF`: write a pack to a device; given an ELF, pack it first (a cargo runner)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from imgtool.atomic import scratch_folder
from imgtool.chips.table import FLASH_SIZES
from imgtool.cli.connection import connection_options, flash_options
from imgtool.cli.context import (
    bootloader_store,
    global_config,
    pack_environment,
    quiet_downloads,
    recover_pack_folder,
    working_folder,
)
from imgtool.cli.monitor import elf_for, monitor_options, run_monitor
from imgtool.cli.monitor import monitor_baud as resolve_monitor_baud
from imgtool.cli.options import chip_option
from imgtool.cli.pack import pack_kwargs, pack_options
from imgtool.device import flasher
from imgtool.device.options import DEFAULT_BAUD, HARD_RESET, MIN_BAUD, MONITOR_BAUD
from imgtool.errors import ImgtoolError, UsageError

# Imported where used, start-up that `imgtool --help` and the other commands never pay: espflash.toml
# reading (4 ms) and the pack job (16 ms, and 46 ms more for the image builder).


def _labels(ctx, param, value):
    """``a,b`` and repeated options alike, as one list."""
    return [word.strip() for item in value or () for word in item.split(",") if word.strip()]


@click.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path), metavar="OUTDIR|ELF")
@connection_options
@chip_option("The chip you expect; a pack for another chip is refused (the connected chip is always checked).")
@click.option("--merged", is_flag=True, help="Write the merged image (flash_merged_args): overwrites NVS and every other data partition.")
@click.option("--force", is_flag=True, help="Flash even when the chip's revision, crystal or flash size does not suit the pack.")
@click.option("--erase-all", is_flag=True, help="Erase the whole flash first.")
@click.option("--erase-parts", "erase_parts", multiple=True, callback=_labels, metavar="LABELS", help="Erase these partitions first (comma-separated labels, e.g. nvs,otadata).")
@click.option("--erase-data-parts", "erase_data_parts", multiple=True, callback=_labels, metavar="TYPES", help="Erase every data partition of these subtypes first (e.g. nvs,ota,phy).")
@pack_options
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
@click.option("--monitor", "then_monitor", is_flag=True, help="Then show the app's output, decoded (see 'imgtool monitor').")
@click.option("--monitor-baud", type=click.IntRange(min=MIN_BAUD), help=f"The app's baud rate, for --monitor [default: $MONITOR_BAUD, else {MONITOR_BAUD}].")
@monitor_options
def flash(target, port, baud, chip, merged, force, erase_all, erase_parts, erase_data_parts, before, after, no_stub,
          as_json, then_monitor, monitor_baud, non_interactive, timeout, log_file, all_addresses, **pack_opts):
    """Write a pack output folder to a device, keeping NVS: the parts in flash_args, or the merged image with --merged.

    Given an ELF, packs it into a temporary folder first (with the options and espflash.toml/Cargo.toml
    settings 'pack' uses, and the board's flash size unless one is given), so
    `runner = "imgtool flash --monitor"` in .cargo/config.toml makes `cargo run --release` flash and
    show the app's output, as espflash does. Pack options apply to an ELF only.
    """
    if as_json and then_monitor:
        raise UsageError("--json prints one JSON object and --monitor then prints the app's output; drop one", field="--monitor")
    if then_monitor:  # a bad $MONITOR_BAUD is refused before anything is written
        monitor_rate = resolve_monitor_baud(monitor_baud)
    say = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    baud = resolved_baud(baud, None if target.is_dir() else target, say)
    options = flash_options(
        port, baud, before, after, no_stub, chip=chip, merged=merged, force=force,
        erase_all=erase_all, erase_parts=erase_parts, erase_data_parts=erase_data_parts,
    )  # fmt: skip
    if as_json:  # esptool's progress goes to stderr so standard output stays one JSON object
        with contextlib.redirect_stdout(sys.stderr):
            report = _run(target, options, chip, pack_opts, say, quiet=True)
        _print_json(report)
    else:
        report = _run(target, options, chip, pack_opts, say, quiet=False)
    if then_monitor:
        run_monitor(
            report.port, baud=monitor_rate, elf=elf_for(target, None), reset=after != HARD_RESET,
            non_interactive=non_interactive, timeout=timeout, log_file=log_file, show_all=all_addresses,
        )  # fmt: skip


def resolved_baud(baud: int | None, elf: Path | None, say=None) -> int:
    """``--baud``, else ``baudrate`` from the espflash.toml files ``pack`` reads for ``elf`` (or, for a folder
    already packed, from the working folder's, its parent's and the global one), else DEFAULT_BAUD."""
    # not at the top: imgtool --help loads this module for its command list and reads no espflash.toml (~4 ms)
    from imgtool.pack.project_config import flash_baud, load_project_config

    cfg = load_project_config(elf, working_folder(), global_config())
    value, origin = flash_baud(baud, cfg, DEFAULT_BAUD)
    if origin and say is not None:
        say(f"baud {value} (baudrate from {origin})")
    return value


def _run(target: Path, options, chip, pack_opts: dict, say, *, quiet: bool):
    recover_pack_folder(target)
    if target.is_dir():
        given = [name for name, value in pack_opts.items() if value not in (None, False)]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UsageError(f"{option} is a pack option and {target} is already packed; pack again or flash the ELF", field=option)
        return flasher.flash_folder(target, options, log=say, store=bootloader_store())
    from imgtool.pack.job import PackOptions, pack  # not at the top: flashing a packed folder needs no packer (~21 ms)

    environment = pack_environment()
    with flasher.connect(options, log=say) as connection, scratch_folder("imgtool-flash-") as tmp:
        board_size = connection.flash_size()  # read before packing: the pack is made for this board's flash
        board = flasher.size_text(board_size) if board_size else None
        result = pack(target, PackOptions(
            outdir=tmp / "out", chip=chip, **pack_kwargs(**pack_opts), default_flash_size=board if board in FLASH_SIZES else None,
            quiet=quiet_downloads(quiet), **environment,
        ))  # fmt: skip
        for warning in result.warnings:
            click.echo(f"imgtool: warning: {warning}", err=True)
        say(
            f"packed {target.name} for {result.chip}: app {result.app_size:,} bytes in '{result.app_partition}' "
            f"({result.app_usage * 100:.1f}% used)"
        )
        try:
            return flasher.flash_folder(result.outdir, options, log=say, store=environment["store"], connection=connection)
        except ImgtoolError as exc:
            raise _named_by_elf(exc, result.outdir, target) from None


def _named_by_elf(exc, folder: Path, elf: Path):
    """``exc`` with the temporary pack folder, which is gone once the command ends, named by the ELF it was packed from."""
    temp = os.fspath(folder)
    exc.message = exc.message.replace(f"the pack in {temp}", f"the pack of {elf}").replace(temp, f"the pack of {elf}")
    if exc.path is not None and exc.path.startswith(temp):
        exc.path = os.fspath(elf)
    return exc


def _print_json(report) -> None:
    doc = {
        "chip": report.device.chip,
        "chip_revision": report.device.revision,
        "crystal_mhz": report.device.crystal_mhz,
        "written": [{"offset": off, "offset_hex": f"0x{off:x}", "file": name} for off, name in report.written],
        "erased": [{"offset": off, "offset_hex": f"0x{off:x}", "size": size, "partition": label, "whole_flash": label is None}
                   for off, size, label in report.erased],
        "notes": report.notes,
    }
    click.echo(json.dumps(doc, indent=2))
