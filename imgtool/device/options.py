"""How ``imgtool flash`` and the device commands connect: esptool's reset choices, the baud rates and the
options record, without esptool, for the CLI's option declarations (``imgtool --help`` and every device command load them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: The ROM bootloader talks at this rate until told otherwise; the chip is read before switching.
ROM_BAUD = 115200
DEFAULT_BAUD = 460800
#: esp-hal apps print at the ROM's rate: what the monitor opens the port with unless told otherwise.
MONITOR_BAUD = ROM_BAUD
#: The slowest rate imgtool asks a serial port for.
MIN_BAUD = 300
#: esptool's --before and --after choices; the first of each is its default.
DEFAULT_BEFORE = "default-reset"
HARD_RESET = "hard-reset"
BEFORE_MODES = (DEFAULT_BEFORE, "usb-reset", "no-reset", "no-reset-no-sync")
AFTER_MODES = (HARD_RESET, "soft-reset", "no-reset", "no-reset-stub", "watchdog-reset")


class FlashOptions:
    """How to connect and what to do besides writing (espflash's and esptool's option names).

    ``chip`` is what the user said (the pack's chip must match it); ``usb_devices`` are
    espflash_ports.toml's ``[[usb_device]]`` filters; ``choose_port`` asks the user among several unknown
    adapters (a terminal only). A plain class, never changed once made: ``imgtool --help`` and every device
    command define it (for the CLI's option declarations), where a NamedTuple of these fields costs ~0.3 ms.
    """

    __slots__ = (
        "port", "baud", "before", "after", "no_stub", "chip", "merged", "force", "erase_all", "erase_parts",
        "erase_data_parts", "usb_devices", "choose_port",
    )

    def __init__(
        self,
        port: str | None = None,
        baud: int = DEFAULT_BAUD,
        before: str = DEFAULT_BEFORE,
        after: str = HARD_RESET,
        no_stub: bool = False,
        chip: str | None = None,
        merged: bool = False,
        force: bool = False,
        erase_all: bool = False,
        erase_parts: Sequence[str] = (),
        erase_data_parts: Sequence[str] = (),
        usb_devices: tuple[tuple[int, int], ...] = (),
        choose_port: Callable | None = None,
    ):
        self.port = port
        self.baud = baud
        self.before = before
        self.after = after
        self.no_stub = no_stub
        self.chip = chip
        self.merged = merged
        self.force = force
        self.erase_all = erase_all
        self.erase_parts = erase_parts
        self.erase_data_parts = erase_data_parts
        self.usb_devices = usb_devices
        self.choose_port = choose_port


__all__ = ["AFTER_MODES", "BEFORE_MODES", "DEFAULT_BAUD", "DEFAULT_BEFORE", "HARD_RESET", "MIN_BAUD", "MONITOR_BAUD", "ROM_BAUD", "FlashOptions"]
