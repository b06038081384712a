"""Write a pack output folder to a device through esptool's Python API, in process.

One connection does everything: read the chip (model, revision, crystal), check it against
the pack (:mod:`imgtool.device.preflight`), then stub, baud, erase and write as ``esptool
write-flash @flash_args`` would. esptool is imported here only, so other commands never pay for it; the
option declarations and :class:`FlashOptions` are :mod:`imgtool.device.options`, which ``imgtool --help`` loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgtool.atomic import read_input
from imgtool.bootloader.pins import BOOTLOADER_SETS, DEFAULT_SET, load_manifest
from imgtool.chips.table import ERASED, MAX_FLASH_BYTES, KiB, MiB, flash_size_bytes
from imgtool.device.options import ROM_BAUD, FlashOptions
from imgtool.device.preflight import (
    FORCE_HINT,
    DeviceInfo,
    FlashCheckError,
    check_chip,
    check_crystal,
    erase_regions,
    revision_problems,
)
from imgtool.errors import ImgtoolError, InputError
from imgtool.flash.pack_folder import PackFolder, read_pack_folder
from imgtool.image.format import parse_image
from imgtool.output_names import MERGED_SUFFIX

if TYPE_CHECKING:
    # for types only: imgtool --help loads this module (through cli/flash and cli/device) and no store (~3 ms)
    from imgtool.bootloader.store import BootloaderStore

@dataclass
class FlashReport:
    device: DeviceInfo
    written: list[tuple[int, str]]
    erased: list[tuple[int, int, str | None]]  # (offset, size, partition label); label None: the whole flash (--erase-all)
    notes: list[str]
    port: str | None = None
    flash_size: int | None = None  # bytes, as the board's flash id says


class Connection:
    """One open link to a chip in its ROM bootloader, for everything a command does on it.

    Made by :func:`connect`; the chip's facts are read at the ROM baud rate on connecting, the
    stub, the faster baud rate and the flash attach happen once, on first need (:meth:`ready`).
    """

    def __init__(self, esp, port: str, options: FlashOptions):
        self.esp, self.port, self.options = esp, port, options
        self.device = read_device(esp)
        self._ready = False
        self._flash_size: int | None = None

    def ready(self):
        """The loader, with the stub running (unless ``no_stub``), at ``options.baud``, flash attached."""
        from esptool import cmds  # not at the top: as in connect (~35 ms)

        if not self._ready:
            if not self.options.no_stub:
                self.esp = cmds.run_stub(self.esp)
            if self.options.baud != ROM_BAUD:
                self.esp.change_baud(self.options.baud)
            cmds.attach_flash(self.esp)
            self._ready = True
        return self.esp

    def flash_size(self) -> int | None:
        """The flash chip's size in bytes as its JEDEC id says, or None when the id is not a known size."""
        # not at the top: as in connect (~35 ms)
        import esptool
        from esptool import cmds

        if self._flash_size is None:
            esp = self.ready()
            try:
                name = None if getattr(esp, "secure_download_mode", False) else cmds.detect_flash_size(esp)
            except esptool.FatalError:  # no flash id to read (secure download mode, an unsupported flash)
                name = None
            self._flash_size = size_in_bytes(name) if name else 0
        return self._flash_size or None


def size_in_bytes(name: str) -> int:
    """esptool's flash size text (``4MB``, ``512KB``) in bytes."""
    text = name.strip().upper()
    unit = MiB if text.endswith("MB") else KiB if text.endswith("KB") else 1
    return int(text.rstrip("MKB")) * unit


def size_text(size: int) -> str:
    """Bytes as a flash size name: ``4MB`` (or ``512KB``)."""
    return f"{size // MiB}MB" if size % MiB == 0 else f"{size // KiB}KB"


@contextmanager
def connect(options: FlashOptions, *, log=print) -> Iterator[Connection]:
    """A :class:`Connection` to the port ``options`` names (else the one that answers); esptool and
    serial failures inside the ``with`` become one-line errors (:class:`ImgtoolError`)."""
    # not at the top: imgtool --help loads this module (through cli/flash and cli/device) for the command list,
    # and esptool (~35 ms) and the port finder (~13 ms) are for talking to a board
    import esptool
    from esptool import cmds
    from serial import SerialException

    from imgtool.device.ports import PortRequest, answering_port  # not at the top: as above

    request = PortRequest(options.port, options.usb_devices)
    port = request.named
    esp = None
    try:
        port, esp = answering_port(
            request, lambda p: cmds.detect_chip(p, baud=ROM_BAUD, connect_mode=options.before), log=log, choose=options.choose_port
        )
        connection = Connection(esp, port, options)
        yield connection
        esp = connection.esp
    except (esptool.FatalError, SerialException, OSError) as exc:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        raise ImgtoolError(f"esptool: {message}", path=port) from None
    finally:
        if esp is not None:
            try:
                esp._port.close()
            except Exception:  # pragma: no cover - closing a port that already failed
                pass


def flash_folder(
    folder: str | os.PathLike, options: FlashOptions, *, log=print, store: BootloaderStore | None = None, connection: Connection | None = None
) -> FlashReport:
    """Check the connected chip against the pack in ``folder`` and write it (parts, or the merged image).

    A crystal-variant bootloader swap fetches through ``store`` (default: the user cache, no mirror).
    ``connection`` is an open one (``flash ELF`` reads the flash size before packing); else one is made.
    """
    pack = read_pack_folder(folder)
    check_chip(pack, device_chip=pack.chip, requested_chip=options.chip)  # --chip first: no connection needed
    regions = erase_regions(pack, options.erase_parts, options.erase_data_parts)
    writes = _writes(pack, merged=options.merged)
    if connection is not None:
        return _flash(connection, pack, options, regions, writes, log, store)
    with connect(options, log=log) as connection:
        return _flash(connection, pack, options, regions, writes, log, store)


def _flash(connection: Connection, pack: PackFolder, options: FlashOptions, regions, writes, log, store) -> FlashReport:
    # not at the top: as in connect (esptool ~35 ms, the bootloader store ~3 ms)
    from esptool import cmds

    from imgtool.bootloader.store import BootloaderStore  # not at the top: as above

    device = connection.device
    check_chip(pack, device_chip=device.chip)
    notes = _check(pack, device, options, writes, log, store or BootloaderStore())
    notes += _check_flash_size(pack, connection.flash_size(), options, log)
    esp = connection.ready()
    esp.flash_set_parameters(flash_size_bytes(pack.settings.size))
    if options.erase_all:
        cmds.erase_flash(esp, force=options.force)
        whole = connection.flash_size() or flash_size_bytes(pack.settings.size)  # as detected, else the pack's size
        regions = [(0, whole, None), *regions]
    for offset, size, label in regions:
        if label is None:
            continue  # the whole flash, erased above
        cmds.erase_region(esp, offset, size, force=options.force)
    cmds.write_flash(esp, [(off, data) for off, data, _ in writes], force=options.force)
    cmds.reset_chip(esp, options.after)
    return FlashReport(device, [(off, name) for off, _, name in writes], regions, notes, port=connection.port, flash_size=connection.flash_size())


def _check_flash_size(pack: PackFolder, board_size: int | None, options: FlashOptions, log) -> list[str]:
    """Refuse a pack made for more flash than the board has (unless ``--force``); say when the board has more."""
    if board_size is None:
        return []
    packed = flash_size_bytes(pack.settings.size)
    board = size_text(board_size)
    if packed > board_size:
        problem = f"the pack in {pack.path} is for {pack.settings.size} of flash but the board has {board}; pack with --flash-size {board}"
        if not options.force:
            raise FlashCheckError(f"{problem}, or {FORCE_HINT}")
        log(f"imgtool: warning: {problem} (--force: flashing anyway)")
        return []
    if packed < board_size:
        note = f"the board has {board} of flash; the pack uses {pack.settings.size} (pack with --flash-size {board} to use it all)"
        log(f"imgtool: {note}")
        return [note]
    return []


def read_device(esp) -> DeviceInfo:
    """Model, revision and crystal of a connected chip (at the ROM baud rate, where the crystal reading is right)."""
    name = esp.CHIP_NAME.lower().replace("-", "")
    try:
        revision = esp.get_chip_revision()
    except Exception:  # an esptool without revision support for this chip: no revision check
        revision = None
    try:
        crystal = int(esp.get_crystal_freq())
    except Exception:
        crystal = None
    try:
        description = esp.get_chip_description()
    except Exception:
        description = esp.CHIP_NAME
    return DeviceInfo(chip=name, revision=revision if revision is not None else -1, crystal_mhz=crystal, description=description)


def _check(pack: PackFolder, device: DeviceInfo, options: FlashOptions, writes: list, log, store: BootloaderStore) -> list[str]:
    """Revision and crystal checks; refuses unless ``--force``, and swaps in a pinned crystal variant."""
    notes: list[str] = []
    recorded = pack.bootloader_source.get("set")  # the pinned set the pack's bootloader came from
    manifest = load_manifest(bootloader_set=recorded if recorded in {s.name for s in BOOTLOADER_SETS} else DEFAULT_SET)
    fix = _bootloader_fix(pack, device.revision, manifest, store) if device.revision >= 0 else None
    problems = revision_problems(pack, device, fix) if device.revision >= 0 else []
    crystal_variants = {e.crystal_mhz: e.variant for e in manifest.variants(pack.chip) if e.crystal_mhz is not None}
    decision = check_crystal(pack, device, crystal_variants)
    if decision.problem:
        problems.append(decision.problem)
    if problems:
        if not options.force:
            message = "; also, ".join(problems)
            raise FlashCheckError(message if "--force" in message else f"{message}; or {FORCE_HINT}")
        for problem in problems:
            log(f"imgtool: warning: {problem} (--force: flashing anyway)")
    if decision.variant:
        _swap_bootloader(pack, decision.variant, writes, manifest, store)
        notes.append(decision.note)
        log(f"imgtool: {decision.note}")
    return notes


def _bootloader_fix(pack: PackFolder, revision: int, manifest, store: BootloaderStore) -> str | None:
    """The pack option that gives a bootloader starting on ``revision``: a pinned variant (read from the
    cache or mirror only), else a bootloader file of the user's; None when the pack's bootloader starts on it."""
    if revision >= pack.bootloader_revisions[0]:
        return None
    for entry in manifest.variants(pack.chip):
        if entry.crystal_mhz is not None or entry.variant == pack.bootloader_source.get("variant"):
            continue
        try:
            data = store.fetch(pack.chip, variant=entry.variant, offline=True, quiet=True, manifest=manifest)
        except ImgtoolError:
            about = f" ({entry.note})" if entry.note else ""
            return (f"pack the ELF again with --bootloader-variant {entry.variant}{about} if that is this revision, "
                    "or with --bootloader FILE built for it")
        if parse_image(data).image.min_chip_rev_full <= revision:
            return f"pack the ELF again with --bootloader-variant {entry.variant}, the pinned build that starts on it"
    return ("no pinned bootloader starts on this revision; pack the ELF again with --bootloader FILE, "
            "an ESP-IDF bootloader built for it")


def _swap_bootloader(pack: PackFolder, variant: str, writes: list, manifest, store: BootloaderStore) -> None:
    """Replace the bootloader bytes in ``writes`` (a part, or the start of the merged image) with ``variant``."""
    from imgtool.bootloader.place import place_bootloader  # not at the top: as the store in _flash (~3 ms)

    raw = store.fetch(pack.chip, variant=variant, manifest=manifest, quiet=True)
    boot = place_bootloader(
        raw,
        pack.chip,
        flash_mode=pack.settings.mode,
        flash_size=pack.settings.size,
        flash_freq=pack.settings.freq,
        app_min_rev_full=pack.app_revisions[0],
        app_max_rev_full=pack.app_revisions[1],
    )
    start = pack.bootloader_offset
    room = min((off for off, _ in pack.parts if off > start), default=start + len(boot)) - start
    if len(boot) > room:
        raise FlashCheckError(
            f"the pinned {variant} bootloader ({len(boot)} bytes) does not fit before 0x{start + room:x}; "
            f"pack with --bootloader-variant {variant}"
        )
    for i, (off, data, name) in enumerate(writes):
        if off == start:
            if name.endswith(MERGED_SUFFIX):
                data = bytearray(data)
                data[: room] = boot + ERASED * (room - len(boot))
                writes[i] = (off, bytes(data), name)
            else:
                writes[i] = (off, boot, f"{variant} bootloader")
            return


def _writes(pack: PackFolder, *, merged: bool) -> list[tuple[int, bytes, str]]:
    """``(offset, bytes, file name)`` to write, read now so a missing file fails before connecting."""
    if merged:
        if pack.merged is None:
            raise InputError("has no flash_merged_args; pack again with this imgtool", path=pack.path)
        pairs = [pack.merged]
    else:
        pairs = pack.parts
    return [(offset, read_input(path, "pack part", limit=MAX_FLASH_BYTES), Path(path).name) for offset, path in pairs]


__all__ = ["Connection", "FlashReport", "connect", "flash_folder", "size_in_bytes", "size_text"]
