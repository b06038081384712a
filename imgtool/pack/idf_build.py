"""What an esp-idf-sys (std) build made beside the app: its own bootloader, partition table and sdkconfig.

esp-idf-sys runs ESP-IDF's CMake build inside cargo's build folder,
``target/<triple>/<profile>/build/esp-idf-sys-<hash>/out/``: ``build/bootloader/bootloader.bin``,
``build/partition_table/partition-table.bin`` and ``sdkconfig`` (flat in ``out/build/`` is read too).
The bootloader there is built for the app's configuration (flash size, rollback, Secure Boot), so
``pack`` uses it, and the sdkconfig's flash settings, instead of the pinned no_std bootloader and
the default table, as cargo-espflash does (esp-rs/espflash#186). Project files and the command
line still win.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imgtool.chips.table import normalize_flash_mode, normalize_flash_size
from imgtool.errors import InputError, UsageError
from imgtool.pack.project_config import normalize_freq

#: The build-script folder esp-idf-sys's outputs are in, below cargo's ``build/``.
ESP_IDF_SYS_GLOB = "esp-idf-sys-*"
#: Each output, by the paths ESP-IDF's CMake build gives it below ``out/`` (first found wins).
BOOTLOADER_PATHS = ("build/bootloader/bootloader.bin", "build/bootloader.bin")
PARTITION_TABLE_PATHS = ("build/partition_table/partition-table.bin", "build/partition-table.bin")
SDKCONFIG_PATHS = ("sdkconfig", "build/sdkconfig")
#: sdkconfig keys → the pack settings they give.
SDKCONFIG_KEYS = {
    "CONFIG_ESPTOOLPY_FLASHSIZE": "flash_size",
    "CONFIG_ESPTOOLPY_FLASHMODE": "flash_mode",
    "CONFIG_ESPTOOLPY_FLASHFREQ": "flash_freq",
    "CONFIG_PARTITION_TABLE_OFFSET": "partition_table_offset",
}
#: An sdkconfig line; a pattern compiled (by ``re``'s cache) where an sdkconfig is read, which a plain pack
#: never does (~0.15 ms to compile).
_LINE = r'^(CONFIG_[A-Z0-9_]+)=(?:"(.*)"|(\S+))\s*$'
#: An sdkconfig is a few hundred KiB at most; anything far larger is not one.
MAX_SDKCONFIG_BYTES = 4 * 1024 * 1024


class IdfBuild:
    """One esp-idf-sys build's outputs and the pack settings its sdkconfig gives.

    ``folder`` is the build script's ``out/`` folder; ``settings`` holds flash_size / flash_mode / flash_freq
    (esptool spellings) / partition_table_offset (int). A plain class: a NamedTuple costs ~0.2 ms at a pack's start-up.
    """

    __slots__ = ("folder", "bootloader", "partition_table", "sdkconfig", "settings")

    def __init__(self, folder: Path, bootloader: Path, partition_table: Path, sdkconfig: Path, settings: dict):
        self.folder = folder
        self.bootloader = bootloader
        self.partition_table = partition_table
        self.sdkconfig = sdkconfig
        self.settings = settings


def find_idf_build(elf_path: str | os.PathLike) -> IdfBuild | None:
    """The esp-idf-sys build beside ``elf_path`` (the newest, when cargo kept several), or None.

    cargo puts a binary in ``target/<triple>/<profile>/`` (an example one level deeper, in
    ``examples/``) and build-script outputs in that profile folder's ``build/``.
    """
    elf = Path(os.path.realpath(elf_path))  # realpath: a symlink loop is named when the ELF is read
    found = []
    for profile in (elf.parent, elf.parent.parent):
        build_root = profile / "build"
        if not build_root.is_dir():
            continue
        for out in build_root.glob(f"{ESP_IDF_SYS_GLOB}/out"):
            parts = [_first(out, paths) for paths in (BOOTLOADER_PATHS, PARTITION_TABLE_PATHS, SDKCONFIG_PATHS)]
            if all(parts):
                found.append((parts[0].stat().st_mtime, out, parts))
        if found:
            break
    if not found:
        return None
    _, out, (bootloader, table, sdkconfig) = max(found, key=lambda item: item[0])
    return IdfBuild(out, bootloader, table, sdkconfig, sdkconfig_settings(sdkconfig))


def _first(folder: Path, paths: tuple[str, ...]) -> Path | None:
    return next((folder / p for p in paths if (folder / p).is_file()), None)


def sdkconfig_settings(path: Path) -> dict:
    """The flash settings an sdkconfig sets, spelled as imgtool's options take them."""
    try:
        if path.stat().st_size > MAX_SDKCONFIG_BYTES:
            raise InputError(f"is larger than {MAX_SDKCONFIG_BYTES} bytes; this is not an sdkconfig", path=path)
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=path) from None
    out: dict = {}
    line_re = re.compile(_LINE)
    for number, line in enumerate(text.splitlines(), 1):
        match = line_re.match(line.strip())
        if not match or match.group(1) not in SDKCONFIG_KEYS:
            continue
        key, value = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
        setting = SDKCONFIG_KEYS[key]
        try:
            if setting == "flash_size":
                out[setting] = normalize_flash_size(value)
            elif setting == "flash_mode":
                out[setting] = normalize_flash_mode(value)
            elif setting == "flash_freq":
                out[setting] = normalize_freq(value)
            else:
                out[setting] = int(value, 0)
        except (UsageError, ValueError):
            raise InputError(f"line {number}: {key}={value} is not a value imgtool understands", path=path, field=key) from None
    return out


__all__ = ["IdfBuild", "find_idf_build", "sdkconfig_settings"]
