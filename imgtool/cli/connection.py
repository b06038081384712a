"""The connection options every command that talks to a board takes, declared once, and the port
choice they resolve to (``--port``, the environment, ``espflash_ports.toml``; see :mod:`imgtool.device.ports`)."""

from __future__ import annotations

import sys

import click

from imgtool.cli.context import user_environment, working_folder
from imgtool.device.options import AFTER_MODES, BEFORE_MODES, DEFAULT_BAUD, DEFAULT_BEFORE, HARD_RESET, MIN_BAUD, FlashOptions

PORT_HELP = (
    "Serial port, pyserial URL (socket://host:port) or USB vid:pid (303a:1001) "
    "[default: $ESPFLASH_PORT, $ESPTOOL_PORT, $ESPPORT, espflash_ports.toml, else the USB port that answers]."
)


def port_option(func):
    return click.option("--port", "-p", help=PORT_HELP)(func)


def connection_options(func):
    """--port, --baud, --before, --after, --no-stub: as ``imgtool flash`` and esptool take them."""
    func = click.option("--no-stub", is_flag=True, help="Talk to the ROM bootloader only (esptool --no-stub).")(func)
    func = click.option("--after", type=click.Choice(AFTER_MODES), default=HARD_RESET, show_default=True, help="Reset after the command (esptool --after).")(func)
    func = click.option("--before", type=click.Choice(BEFORE_MODES), default=DEFAULT_BEFORE, show_default=True, help="Reset before connecting (esptool --before).")(func)
    func = click.option(
        "--baud", "-b", type=click.IntRange(min=MIN_BAUD), help=f"Baud rate once connected [default: baudrate in espflash.toml, else {DEFAULT_BAUD}]."
    )(func)
    return port_option(func)


def ports_config():
    """The ``espflash_ports.toml`` in force (working folder, its parent, the user's espflash folder), read."""
    # not at the top: imgtool --help loads this module for its options, only a board needs the ports (~9 ms)
    from imgtool.device.ports import espflash_config_dir, find_ports_config, load_ports_config

    return load_ports_config(find_ports_config(working_folder(), espflash_config_dir()))


def choose_on_terminal():
    """A chooser among several ports when a person is at the terminal, else None (try each in turn)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def choose(candidates):
        for i, cand in enumerate(candidates, 1):
            click.echo(f"  {i}: {cand.label()}", err=True)
        number = click.prompt("Which port?", type=click.IntRange(1, len(candidates)), err=True)
        return candidates[number - 1]

    return choose


def flash_options(port, baud, before, after, no_stub, **more) -> FlashOptions:
    """The :class:`FlashOptions` for these connection options, the port chosen by precedence."""
    from imgtool.device.ports import port_request  # not at the top: as in ports_config (~9 ms)

    request = port_request(port, user_environment().port, ports_config())
    return FlashOptions(
        port=request.port, baud=baud, before=before, after=after, no_stub=no_stub,
        usb_devices=request.usb_devices, choose_port=choose_on_terminal(), **more,
    )  # fmt: skip


def monitor_port(port: str | None) -> str:
    """The one port the monitor opens (it cannot try ports: an app does not answer the ROM protocol)."""
    from imgtool.device.ports import one_port, port_request  # not at the top: as in ports_config (~9 ms)

    return one_port(port_request(port, user_environment().port, ports_config()), choose=choose_on_terminal())


__all__ = ["PORT_HELP", "choose_on_terminal", "connection_options", "flash_options", "monitor_port", "port_option", "ports_config"]
