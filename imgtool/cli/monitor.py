"""`imgtool monitor [ELF|OUTDIR]`: the app's serial output, crash addresses and defmt frames decoded in process."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from imgtool.atomic import input_kind
from imgtool.cli.connection import monitor_port, port_option
from imgtool.cli.context import recover_pack_folder, user_environment
from imgtool.decode.app_elf import find_app_elf
from imgtool.device.options import MIN_BAUD, MONITOR_BAUD
from imgtool.device.keyboard import open_keyboard
from imgtool.environment import ENV_MONITOR_BAUD
from imgtool.errors import ImgtoolError, OutputError, UsageError

# Imported where a monitor runs, start-up that `imgtool flash` without --monitor and `imgtool --help` never
# pay: pyserial (2 ms), the serial monitor (12 ms), the ELF symbolizer (4 ms) and the defmt decoder (8 ms).

END_MESSAGES = {
    "eof": "the port closed",
    "timeout": "time limit reached",
    "exit": "Ctrl+C",
    "interrupt": "interrupted",
}


def monitor_options(func):
    """The monitor's own options, shared with ``flash --monitor``."""
    func = click.option("--all-addresses", is_flag=True, help="Also list code addresses that are not in the app (ROM, other images).")(func)
    func = click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Also append everything shown to FILE.")(func)
    func = click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Stop monitoring after SECONDS.")(func)
    func = click.option(
        "--non-interactive", is_flag=True, help="No keyboard: stop when the port closes or at --timeout (automatic when stdin is not a terminal)."
    )(func)
    return func


@click.command()
@click.argument("target", required=False, type=click.Path(exists=True, path_type=Path), metavar="[ELF|OUTDIR]")
@port_option
@click.option("--baud", "-b", type=click.IntRange(min=MIN_BAUD), help=f"The app's baud rate [default: $MONITOR_BAUD, else {MONITOR_BAUD}].")
@click.option("--elf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The app's ELF, for decoding when TARGET is a pack folder [default: the one beside it whose SHA-256 the app records].")
@click.option("--no-reset", is_flag=True, help="Do not reset the chip when the monitor starts.")
@monitor_options
def monitor(target, port, baud, elf, no_reset, non_interactive, timeout, log_file, all_addresses):
    """Show what the app prints, with crash addresses as functions and source lines and defmt frames as log lines.

    Given the app's ELF (the one cargo built), every code address in the output is looked up in its
    debug info, and esp-println's defmt frames are decoded with its defmt table. Keys go to the
    device; Ctrl+R resets the chip, Ctrl+C exits.
    """
    run_monitor(
        monitor_port(port), baud=monitor_baud(baud), elf=elf_for(target, elf), reset=not no_reset, non_interactive=non_interactive,
        timeout=timeout, log_file=log_file, show_all=all_addresses,
    )  # fmt: skip


def monitor_baud(baud: int | None) -> int:
    """``--baud``, else ``$MONITOR_BAUD`` (espflash's variable), else MONITOR_BAUD."""
    if baud is not None:
        return baud
    text = user_environment().monitor_baud
    if text is None:
        return MONITOR_BAUD
    if not text.isdigit() or int(text) < MIN_BAUD:
        raise UsageError(f"'{text}' is not a baud rate; set a number such as 115200 or unset it", field=ENV_MONITOR_BAUD)
    return int(text)


def elf_for(target: Path | None, elf: Path | None) -> Path | None:
    """The ELF to decode with: given, or for a pack folder the one beside it whose hash the app records."""
    if target is None or not target.is_dir() or elf is not None:
        return elf or target
    recover_pack_folder(target)
    found = find_app_elf(target)
    if found is None:
        click.echo(f"imgtool: note: no ELF matching the app in {target} beside it; pass --elf APP.elf to decode addresses and defmt", err=True)
    return found


def run_monitor(port: str, *, baud: int, elf: Path | None, reset: bool, non_interactive: bool, timeout: float | None,
                log_file: Path | None, show_all: bool, keyboard=None) -> str:
    """Monitor ``port`` until Ctrl+C, the port closing or ``timeout``; returns why it ended.

    ``keyboard`` overrides the terminal's key reader (tests); without one, keys are read only when
    stdin is a terminal and ``non_interactive`` is not set.
    """
    # not at the top: flash loads this module and needs the monitor only with --monitor (~19 ms)
    from serial import SerialException

    from imgtool.device.monitor import AppOutput, Monitor, app_reset, open_port  # not at the top: as above

    symbols, table = _decoders(elf)
    try:
        link = open_port(port, baud)
    except (SerialException, OSError, ValueError) as exc:
        if symbols is not None:
            symbols.close()
        raise ImgtoolError(f"cannot open the port ({_first_line(exc)})", path=port) from None
    interactive = not non_interactive and (keyboard is not None or sys.stdin.isatty())
    keys_help = "Ctrl+R resets, Ctrl+C exits" if interactive else "no keyboard"
    click.echo(f"imgtool: monitoring {port} at {baud} baud ({keys_help})", err=True)
    with contextlib.ExitStack() as stack:
        stack.callback(link.close)
        if symbols is not None:
            stack.callback(symbols.close)
        keys = None
        if interactive:
            keys = stack.enter_context(keyboard if keyboard is not None else open_keyboard())
        log = stack.enter_context(_open_log(log_file)) if log_file is not None else None
        if reset:
            try:
                app_reset(link, port)
            except (SerialException, OSError) as exc:
                raise ImgtoolError(f"cannot reset the chip ({_first_line(exc)}); pass --no-reset", path=port) from None
        output = AppOutput(symbols, table, show_all=show_all)
        out = sys.stdout.buffer
        result = Monitor(link, output, out, keys=keys, log=log, reset=lambda: app_reset(link, port), timeout=timeout).run()
    click.echo(f"imgtool: monitor ended ({END_MESSAGES[result.reason]}; {result.received:,} bytes received)", err=True)
    return result.reason


def _decoders(elf: Path | None):
    """The ELF's symbols and defmt table (None for each it lacks)."""
    if elf is None:
        return None, None
    # not at the top: the decoders are for an ELF only (~22 ms with pyelftools)
    from imgtool.decode.defmt import Table, log_format
    from imgtool.decode.symbols import Symbolizer

    input_kind(elf, "ELF file", pipes=False)  # a FIFO or device would block or never end
    table = Table.from_elf(elf)
    if table is None and log_format(elf) == "defmt":
        click.echo(f"imgtool: warning: {elf} says its log format is defmt but has no .defmt table; defmt frames show as raw bytes", err=True)
    return Symbolizer(elf), table


def _open_log(path: Path):
    try:
        return open(path, "ab")
    except OSError as exc:
        raise OutputError(f"cannot open the log file ({exc.strerror})", path=path) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
