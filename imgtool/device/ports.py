"""Which serial port a command talks to, chosen as esptool and espflash users expect.

Precedence of an explicit choice (the first one set wins): ``--port``, then ``$ESPFLASH_PORT``,
``$ESPTOOL_PORT``, ``$ESPPORT`` (read by :mod:`imgtool.environment`), then espflash's
``espflash_ports.toml`` ``[connection] serial`` (in the working folder, its parent, then the user's
espflash config folder). A choice may be a port name, a pyserial URL (``socket://host:port``) or
``vid:pid`` in hex (``303a:1001``), which picks among the USB ports with that id; without a choice,
``espflash_ports.toml``'s ``[[usb_device]]`` entries filter the USB serial ports.

The candidates are tried in order, known adapters first (Espressif's USB-Serial/JTAG, CP210x,
CH34x/CH910x, then FTDI with its second interface — the UART of an FT2232 board — before the
first), until one answers; a program that needs one port without connecting (the monitor) takes
the only candidate or the first known adapter, and asks only on a terminal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_config_dir
from serial import SerialException
from serial.tools import list_ports

from imgtool.errors import InputError, UsageError
from imgtool.pack.project_config import load_toml

# Not at the top: esptool (~140 ms; the monitor loads this module and never connects through it) and
# serial.tools.list_ports (~2.5 ms; only when no --port names the port, and looked up as tests replace it).

PORTS_CONFIG_FILE = "espflash_ports.toml"
#: espflash's per-user config folder name (``~/.config/espflash`` on Linux).
ESPFLASH_CONFIG_APP = "espflash"
ESPRESSIF_USB_JTAG = (0x303A, 0x1001)
#: USB bridges dev boards carry, best first: (vid, pid or None for any, name).
KNOWN_ADAPTERS = (
    (0x303A, 0x1001, "Espressif USB-Serial/JTAG"),
    (0x10C4, None, "Silicon Labs CP210x"),
    (0x1A86, None, "WCH CH34x/CH910x"),
    (0x0403, None, "FTDI"),
)
_VID_PID = re.compile(r"([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})")
#: An FTDI dual chip's interface numbers: B (1) carries the UART on ESP-WROVER-KIT and ESP-Prog.
_FTDI_VID = 0x0403


def parse_vid_pid(text: str) -> tuple[int, int] | None:
    m = _VID_PID.fullmatch(text.strip())
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


@dataclass(frozen=True)
class PortsConfig:
    """What an ``espflash_ports.toml`` says."""

    serial: str | None = None
    usb_devices: tuple[tuple[int, int], ...] = ()
    path: Path | None = None


def find_ports_config(cwd: Path, user_dir: Path | None) -> Path | None:
    """espflash's search order: the working folder, its parent (a Cargo workspace), the user's config folder."""
    for folder in (cwd, cwd.parent, user_dir):
        if folder is not None and (folder / PORTS_CONFIG_FILE).is_file():
            return folder / PORTS_CONFIG_FILE
    return None


def espflash_config_dir() -> Path:
    return Path(user_config_dir(ESPFLASH_CONFIG_APP, appauthor=False))


def load_ports_config(path: Path | None) -> PortsConfig:
    if path is None:
        return PortsConfig()
    doc = load_toml(path)
    serial = (doc.get("connection") or {}).get("serial") if isinstance(doc.get("connection"), dict) else None
    if serial is not None and not isinstance(serial, str):
        raise InputError("[connection].serial is not a string; write serial = \"/dev/ttyUSB0\"", path=path)
    devices = []
    for i, entry in enumerate(doc.get("usb_device") or []):
        try:
            devices.append((int(str(entry["vid"]), 16), int(str(entry["pid"]), 16)))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"[[usb_device]] entry {i + 1} needs vid and pid as hex strings, e.g. vid = \"303a\"", path=path) from None
    return PortsConfig(serial.strip() or None if serial else None, tuple(devices), path)


@dataclass(frozen=True)
class Candidate:
    device: str
    vid: int | None = None
    pid: int | None = None
    description: str = ""
    interface: int | None = None

    @property
    def known(self) -> bool:
        return _adapter_rank(self) < len(KNOWN_ADAPTERS)

    def label(self) -> str:
        ids = f" [{self.vid:04x}:{self.pid:04x}]" if self.vid is not None and self.pid is not None else ""
        return f"{self.device} ({self.description}){ids}" if self.description and self.description != "n/a" else f"{self.device}{ids}"


@dataclass(frozen=True)
class PortRequest:
    """The explicit choice (a name, URL or ``vid:pid``), if any, and the config's USB filters."""

    port: str | None = None
    usb_devices: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    @property
    def ids(self) -> tuple[tuple[int, int], ...]:
        wanted = parse_vid_pid(self.port) if self.port else None
        return (wanted,) if wanted else (() if self.port else self.usb_devices)

    @property
    def named(self) -> str | None:
        return self.port if self.port and parse_vid_pid(self.port) is None else None


def port_request(cli_port: str | None, env_port: str | None, config: PortsConfig) -> PortRequest:
    """The choice by precedence: ``--port``, the environment, ``espflash_ports.toml``."""
    return PortRequest(cli_port or env_port or config.serial, config.usb_devices)


def list_candidates(ids: tuple[tuple[int, int], ...] = ()) -> list[Candidate]:
    """The USB serial ports present (those with ``ids`` only, when given), known adapters first."""
    found = []
    for info in list_ports.comports():
        if info.vid is None:
            continue
        if ids and (info.vid, info.pid) not in ids:
            continue
        found.append(Candidate(info.device, info.vid, info.pid, info.description or "", _interface(info)))
    return sorted(found, key=lambda c: (_adapter_rank(c), _ftdi_order(c), c.device))


def _interface(info) -> int | None:
    """The USB interface number a port belongs to, where the platform says (``1-2:1.1`` → 1)."""
    location = getattr(info, "location", None) or ""
    m = re.search(r":\d+\.(\d+)$", location)
    if m:
        return int(m.group(1))
    serial = getattr(info, "serial_number", None) or ""
    return 1 if serial.endswith("B") else 0 if serial.endswith("A") else None  # Windows/macOS FTDI serials end A, B


def _adapter_rank(c: Candidate) -> int:
    for rank, (vid, pid, _name) in enumerate(KNOWN_ADAPTERS):
        if c.vid == vid and (pid is None or c.pid == pid):
            return rank
    return len(KNOWN_ADAPTERS)


def _ftdi_order(c: Candidate) -> int:
    return 0 if c.vid == _FTDI_VID and c.interface == 1 else 1


def answering_port(request: PortRequest, connect, *, log=print, choose=None):
    """``(port, connect(port))`` for the first candidate whose connection succeeds.

    ``connect`` raises on a port that does not answer (esptool's FatalError, a serial error);
    ``choose`` (only given on a terminal) picks among several unknown adapters instead of trying them all.
    """
    import esptool  # not at the top: the monitor loads this module and never needs esptool (~32 ms)

    if request.named:
        return request.named, connect(request.named)
    candidates = _candidates_or_fail(request)
    if choose is not None and len(candidates) > 1 and not any(c.known for c in candidates):
        candidates = [choose(candidates)]
    failures = []
    for cand in candidates:
        try:
            return cand.device, connect(cand.device)
        except (esptool.FatalError, SerialException, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            failures.append(f"{cand.device} ({reason})")
            if len(candidates) > 1:
                log(f"imgtool: {cand.device} did not answer; trying the next port")
    raise UsageError(f"no serial port answered: {'; '.join(failures)}; check the cable and pass --port", field="--port")


def one_port(request: PortRequest, *, choose=None) -> str:
    """One port without connecting (the monitor: an app does not answer the ROM protocol)."""
    if request.named:
        return request.named
    candidates = _candidates_or_fail(request)
    if len(candidates) == 1 or candidates[0].known and not candidates[1].known:
        return candidates[0].device
    if candidates[0].vid == _FTDI_VID and candidates[0].interface == 1 and len(candidates) == 2 and candidates[1].vid == _FTDI_VID:
        return candidates[0].device  # one FT2232: its UART is the second interface
    if choose is not None:
        return choose(candidates).device
    listed = ", ".join(c.label() for c in candidates)
    raise UsageError(f"several serial ports: {listed}; pass --port (a name or vid:pid) or set ESPFLASH_PORT", field="--port")


def _candidates_or_fail(request: PortRequest) -> list[Candidate]:
    candidates = list_candidates(request.ids)
    if candidates:
        return candidates
    if request.ids:
        wanted = ", ".join(f"{v:04x}:{p:04x}" for v, p in request.ids)
        raise UsageError(f"no USB serial port with id {wanted} is connected; connect the board or pass --port", field="--port")
    raise UsageError("no USB serial port found; connect the board, or pass --port or set ESPFLASH_PORT", field="--port")


def uses_usb_jtag(port: str) -> bool:
    """Whether ``port`` is a chip's own USB-Serial/JTAG (its reset sequence differs)."""
    return any((p.vid, p.pid) == ESPRESSIF_USB_JTAG for p in list_ports.comports() if os.path.normcase(p.device) == os.path.normcase(port))


__all__ = [
    "KNOWN_ADAPTERS",
    "PORTS_CONFIG_FILE",
    "Candidate",
    "PortRequest",
    "PortsConfig",
    "answering_port",
    "espflash_config_dir",
    "find_ports_config",
    "list_candidates",
    "load_ports_config",
    "one_port",
    "parse_vid_pid",
    "port_request",
    "uses_usb_jtag",
]
