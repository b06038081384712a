"""Pack options a project already declares for espflash, so ``imgtool pack`` agrees with ``cargo espflash``.

Sources, lowest priority first (each setting comes from the highest source that sets it):

1. the global ``espflash.toml`` (espflash's user config folder: ``$XDG_CONFIG_HOME/espflash`` or
   ``~/.config/espflash`` on Linux, ``~/Library/Application Support/rs.esp.espflash`` on macOS,
   ``%APPDATA%\\esp\\espflash\\config`` on Windows; the CLI passes it, see :func:`global_config_path`);
2. ``[package.metadata.espflash]`` in the ELF's own crate's ``Cargo.toml`` (espflash 1.x/2.x keys
   ``partition_table``, ``bootloader``, ``partition_table_offset``, ``target_app_partition``);
3. ``espflash.toml`` in the folder of the ELF's own crate, then the nearest one above the ELF
   (searched up to the crate root or the working folder);
4. ``espflash.toml`` in the working folder's parent, then in the working folder itself (where
   espflash looks: the parent is a Cargo workspace's root when run from a member);
5. the command line, which always wins.

``espflash.toml`` holds (espflash 4) ``baudrate``, ``[idf_format_args]`` (alias ``[idf]``) with
``bootloader``, ``partition_table``, ``partition_table_offset``, ``target_app_partition``, and
``[flash]`` with ``mode``, ``size``, ``frequency``; older layouts are read too (espflash 3:
``[esp_idf_format_args]``; espflash 2: the same keys at top level, ``freq``), with a warning, as
espflash 4.5 refuses any other top-level key.

The ELF's own crate is found without running cargo: from the ELF's folder and from the working
folder upwards, the first ``Cargo.toml`` whose ``[package] name`` (or a ``[[bin]] name``) is the
ELF's file name, looking into ``[workspace] members`` on the way; so a workspace member and a
shared ``CARGO_TARGET_DIR`` both lead to it.

Either file may also choose the pinned bootloader set (imgtool's own key, ``bootloader_set = "idf6.1"``
beside ``bootloader`` in the same tables; see :data:`imgtool.bootloader.pins.BOOTLOADER_SETS`).

Either file may also declare data partition images (imgtool's own key, see :mod:`imgtool.partitions.data_images`):
a ``[data]`` table in ``espflash.toml`` or ``[package.metadata.espflash.data]`` in ``Cargo.toml``,
``LABEL = "path"`` per partition; ``espflash.toml`` wins per label, ``pack --data LABEL=PATH`` over both.
Relative paths in a file are relative to that file's folder.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

from imgtool.chips.table import normalize_flash_mode, normalize_flash_size
from imgtool.errors import InputError, UsageError

ESPFLASH_TOML = "espflash.toml"
CARGO_TOML = "Cargo.toml"
_SECTION_ALIASES = ("idf_format_args", "idf", "esp_idf_format_args")
_PATH_KEYS = ("partition_table", "bootloader")
_IDF_KEYS = (*_PATH_KEYS, "partition_table_offset", "target_app_partition")
#: The top-level keys espflash 4.5 accepts in espflash.toml (cli/config.rs refuses the file otherwise).
ESPFLASH_TOP_LEVEL_KEYS = ("baudrate", "idf", "idf_format_args", "flash")


class ProjectConfig(NamedTuple):
    """Options found in project files (None: not set). ``sources`` lists the files read.

    A NamedTuple, not a frozen dataclass: it is defined on every pack's start-up (issue 23).
    """

    partition_table: str | None = None
    bootloader: str | None = None
    bootloader_set: str | None = None
    partition_table_offset: int | None = None
    target_app_partition: str | None = None
    flash_mode: str | None = None
    flash_size: str | None = None
    flash_freq: str | None = None
    chip: str | None = None
    #: espflash's flashing baud rate (``baudrate``); ``flash`` uses it unless ``--baud`` is given.
    baudrate: int | None = None
    #: ``(label, path)`` per data partition image, paths made absolute.
    data: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    #: ``(setting, file)`` for each setting above that a file set (``data.LABEL`` for data images).
    origins: tuple[tuple[str, str], ...] = ()
    #: Keys a file holds that espflash 4.5 would refuse, each naming the fix.
    warnings: tuple[str, ...] = ()

    def origin(self, setting: str) -> str | None:
        """The file ``setting`` was taken from, or None."""
        return dict(self.origins).get(setting)

    def merged_with(self, **cli) -> ProjectConfig:
        """These options with every non-None command-line value put over them."""
        return self._replace(**{k: v for k, v in cli.items() if v is not None and k in self._fields})


#: Project files (espflash.toml, Cargo.toml, launchpad.toml) are a few kilobytes; larger is not one.
MAX_TOML_BYTES = 1 << 20


def load_toml(path: Path) -> dict:
    """A UTF-8 TOML file as a dict; unreadable or invalid files raise a one-line ``InputError``."""
    # lazy: tomllib ~4 ms and imgtool.atomic ~5.5 ms to import, for the --flash-freq spelling and port lookups that read no file
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    from imgtool.atomic import read_input

    try:
        text = read_input(path, "TOML file", limit=MAX_TOML_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text; TOML files must be UTF-8", path=path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(_toml_message(exc), path=path) from None


def _toml_message(exc) -> str:
    """One line: 'line N, column M: what' (tomllib puts the position in the message text)."""
    msg = str(exc).splitlines()[0] if str(exc) else "invalid TOML"
    lineno = getattr(exc, "lineno", None)
    colno = getattr(exc, "colno", None)
    if lineno is None:
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            lineno, colno = int(m.group(1)), int(m.group(2))
    msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
    where = f"line {lineno}, column {colno}: " if lineno is not None else ""
    return f"invalid TOML: {where}{msg}"


def global_config_path(environ, platform: str = sys.platform) -> Path | None:
    """Where espflash keeps its global ``espflash.toml`` (its ``ProjectDirs("rs", "esp", "espflash")`` config folder)."""
    if platform == "win32":
        base = environ.get("APPDATA")
        return Path(base, "esp", "espflash", "config", ESPFLASH_TOML) if base else None
    home = environ.get("HOME")
    if platform == "darwin":
        return Path(home, "Library", "Application Support", "rs.esp.espflash", ESPFLASH_TOML) if home else None
    config = environ.get("XDG_CONFIG_HOME") or (os.path.join(home, ".config") if home else None)
    return Path(config, "espflash", ESPFLASH_TOML) if config else None


def _package_names(doc: dict) -> set[str]:
    """The names a crate's binaries get: its package name and each ``[[bin]] name``."""
    names = set()
    package = doc.get("package")
    if isinstance(package, dict) and isinstance(package.get("name"), str):
        names.add(package["name"])
    bins = doc.get("bin")
    for entry in bins if isinstance(bins, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            names.add(entry["name"])
    return names


def _members(root: Path, doc: dict) -> list[Path]:
    """The member folders a ``[workspace]`` lists (glob patterns allowed, ``exclude`` honoured).

    A pattern no folder can match (absolute, empty, with a NUL) is skipped: cargo would say what is wrong with it.
    """
    workspace = doc.get("workspace")
    if not isinstance(workspace, dict):
        return []
    patterns = [m for m in workspace.get("members", ()) if isinstance(m, str)] if isinstance(workspace.get("members"), list) else []
    excluded = workspace.get("exclude") if isinstance(workspace.get("exclude"), list) else []
    skip = set()
    for entry in excluded:
        try:
            skip.add(Path(os.path.realpath(root / entry)))
        except (TypeError, ValueError, OSError):
            continue
    folders = []
    for pattern in patterns:
        try:
            matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
            folders += [f for f in matches if Path(os.path.realpath(f)) not in skip and (f / CARGO_TOML).is_file()]
        except (ValueError, NotImplementedError, OSError):
            continue
    return folders


def find_crate(elf_path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> Path | None:
    """The ``Cargo.toml`` of the crate that built ``elf_path``: the first, from the ELF's folder and then
    from ``cwd`` upwards, whose package or ``[[bin]]`` is named like the ELF (workspace members included)."""
    wanted = {Path(elf_path).name, Path(elf_path).stem}
    starts = [Path(os.path.realpath(elf_path)).parent, *([Path(os.path.realpath(cwd))] if cwd is not None else [])]
    seen: set[Path] = set()
    for start in starts:
        for folder in (start, *start.parents):
            cargo = folder / CARGO_TOML
            if cargo in seen or not cargo.is_file():
                continue
            seen.add(cargo)
            doc = load_toml(cargo)
            if _package_names(doc) & wanted:
                return cargo
            for member in _members(folder, doc):
                member_cargo = member / CARGO_TOML
                if member_cargo not in seen:
                    seen.add(member_cargo)
                    if _package_names(load_toml(member_cargo)) & wanted:
                        return member_cargo
    return None


def find_config_files(elf_path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> tuple[Path | None, Path | None]:
    """The nearest ``espflash.toml`` and ``Cargo.toml`` above ``elf_path`` (either may be None).

    The search stops at ``cwd`` (the caller's working folder, which the CLI passes) when the ELF
    is below it, else at the filesystem root.
    """
    start = Path(os.path.realpath(elf_path)).parent  # realpath: a symlink loop is named when the ELF is read
    stop = Path(os.path.realpath(cwd)) if cwd is not None else None
    espflash = cargo = None
    for folder in (start, *start.parents):
        if espflash is None and _present(folder / ESPFLASH_TOML):
            espflash = folder / ESPFLASH_TOML
        if _present(folder / CARGO_TOML):
            cargo = folder / CARGO_TOML
            break
        if folder == stop:
            break
    return espflash, cargo


def _present(path: Path) -> bool:
    """A project file is there (any kind but a folder: a FIFO or device is then refused when it is read)."""
    return os.path.lexists(path) and not os.path.isdir(path)


def espflash_files(elf_path: str | os.PathLike | None, cwd: str | os.PathLike | None = None,
                   global_config: str | os.PathLike | None = None) -> tuple[list[Path], Path | None]:
    """The ``espflash.toml`` files that apply, lowest priority first, and the crate's ``Cargo.toml``."""
    candidates: list[Path] = []  # highest priority first
    if cwd is not None:
        here = Path(os.path.realpath(cwd))
        candidates += [here / ESPFLASH_TOML, here.parent / ESPFLASH_TOML]
    cargo = None
    if elf_path is not None:
        nearest, cargo_above = find_config_files(elf_path, cwd)
        crate = find_crate(elf_path, cwd)
        if nearest is not None:
            candidates.append(nearest)
        if crate is not None:
            candidates.append(crate.parent / ESPFLASH_TOML)
        cargo = crate or cargo_above
    if global_config is not None:
        candidates.append(Path(global_config))
    found: list[Path] = []
    for path in candidates:
        if _present(path) and all(os.path.realpath(path) != os.path.realpath(f) for f in found):
            found.append(path)
    return found[::-1], cargo


def load_project_config(elf_path: str | os.PathLike | None, cwd: str | os.PathLike | None = None,
                        global_config: str | os.PathLike | None = None) -> ProjectConfig:
    """Options from ``espflash.toml`` files and ``[package.metadata.espflash]`` for the project holding ``elf_path``.

    ``elf_path`` None (flashing a folder already packed) reads only the working folder's, its parent's and
    the global file; ``global_config`` None reads no global file (the CLI passes :func:`global_config_path`).
    """
    files, cargo = espflash_files(elf_path, cwd, global_config)
    layers: list[tuple[Path, dict, dict]] = []  # (file, settings, data), lowest priority first
    warnings: list[str] = []
    if global_config is not None and files and os.path.realpath(files[0]) == os.path.realpath(global_config):
        layers.append(_espflash_layer(files.pop(0), warnings))
    if cargo is not None:
        doc = load_toml(cargo)
        meta = doc.get("package")
        for key in ("metadata", "espflash"):
            meta = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(meta, dict):
            layers.append((cargo, _from_table(meta, cargo, "[package.metadata.espflash]"),
                           _data_table(meta.get("data"), cargo, "[package.metadata.espflash.data]")))
    layers += [_espflash_layer(path, warnings) for path in files]
    values: dict = {}
    data: dict[str, str] = {}
    origins: dict[str, str] = {}
    for path, found, found_data in layers:
        values.update(found)
        data.update(found_data)
        origins.update({key: os.fspath(path) for key in found})
        origins.update({f"data.{label}": os.fspath(path) for label in found_data})
    return ProjectConfig(**values, data=tuple(data.items()), sources=tuple(os.fspath(p) for p, _, _ in layers),
                         origins=tuple(origins.items()), warnings=tuple(warnings))


def _espflash_layer(path: Path, warnings: list[str]) -> tuple[Path, dict, dict]:
    doc = load_toml(path)
    found = _from_table(doc, path, "")
    for section in _SECTION_ALIASES:
        sub = doc.get(section)
        if isinstance(sub, dict):
            found.update(_from_table(sub, path, f"[{section}]"))
    flash = doc.get("flash")
    if isinstance(flash, dict):
        found.update(_flash_table(flash, path))
    if "baudrate" in doc:
        found["baudrate"] = _baud(doc["baudrate"], path)
    warnings += _espflash_refusals(doc, path)
    return path, found, _data_table(doc.get("data"), path, "[data]")


def _espflash_refusals(doc: dict, path: Path) -> list[str]:
    """What espflash 4.5 would refuse in this espflash.toml, each with the change that keeps both tools reading it."""
    out = []
    for key in doc:
        if key in ESPFLASH_TOP_LEVEL_KEYS:
            continue
        if key in _IDF_KEYS:
            fix = "move it under [idf]"
        elif key == "esp_idf_format_args":
            fix = "rename the table to [idf]"
        elif key in ("data", "chip"):
            fix = f"move it to [package.metadata.espflash{'.data' if key == 'data' else ''}] in Cargo.toml, which imgtool reads too"
        else:
            fix = "imgtool ignores it too; remove it"
        out.append(f"{path}: espflash 4.5 refuses the top-level key '{key}' (it reads only baudrate, [idf] and [flash]); {fix}")
    flash = doc.get("flash")
    if isinstance(flash, dict) and "freq" in flash:
        out.append(f"{path}: [flash].freq is espflash 2's name, which espflash 4.5 ignores; rename it to frequency")
    return out


def flash_baud(cli_baud: int | None, cfg: ProjectConfig, default: int) -> tuple[int, str | None]:
    """The flashing baud rate: ``--baud``, else ``baudrate`` from the project files, else ``default``;
    with the file it came from (None when not from a file). ``flash`` and ``monitor`` share it."""
    if cli_baud is not None:
        return cli_baud, None
    if cfg.baudrate is not None:
        return cfg.baudrate, cfg.origin("baudrate")
    return default, None


def _baud(value, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError("baudrate must be a positive integer such as 460800", path=path, field="baudrate")
    return value


def _data_table(table, path: Path, where: str) -> dict[str, str]:
    """``LABEL = "path"`` entries, paths relative to the file's folder."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table of LABEL = \"path\" entries", path=path)
    out = {}
    for label, value in table.items():
        value = _string(value, path, f"{where}.{label}")
        out[label] = _beside(path, value)
    return out


def _beside(path: Path, value: str) -> str:
    """A path from the project file ``path``: relative ones are taken from its folder."""
    return value if os.path.isabs(value) else os.fspath(path.parent / value)


def _from_table(table: dict, path: Path, where: str) -> dict:
    out: dict = {}
    for key in _PATH_KEYS:
        if key in table:
            value = _string(table[key], path, f"{where}{'.' if where else ''}{key}")
            out[key] = _beside(path, value)
    if "partition_table_offset" in table:
        out["partition_table_offset"] = _offset(table["partition_table_offset"], path, f"{where}.partition_table_offset")
    if "target_app_partition" in table:
        out["target_app_partition"] = _string(table["target_app_partition"], path, f"{where}.target_app_partition")
    if "chip" in table:
        out["chip"] = _string(table["chip"], path, f"{where}.chip")
    if "bootloader_set" in table:
        key = f"{where}{'.' if where else ''}bootloader_set"
        from imgtool.bootloader.pins import get_set  # lazy: ~5.5 ms to import, only a file naming a set needs it

        out["bootloader_set"] = _checked(lambda v: get_set(v).name, _string(table["bootloader_set"], path, key), path, key)
    return out


def _flash_table(table: dict, path: Path) -> dict:
    out: dict = {}
    if "mode" in table:
        out["flash_mode"] = _checked(normalize_flash_mode, _string(table["mode"], path, "[flash].mode"), path, "[flash].mode")
    if "size" in table:
        out["flash_size"] = _checked(normalize_flash_size, _string(table["size"], path, "[flash].size"), path, "[flash].size")
    for key in ("frequency", "freq"):
        if key in table:
            out["flash_freq"] = normalize_freq(_string(table[key], path, f"[flash].{key}"))
    return out


def _checked(normalize, value: str, path: Path, field: str) -> str:
    """Validate a value now, so a bad one is blamed on the config file rather than on a command-line option."""
    try:
        return normalize(value)
    except UsageError as exc:
        raise InputError(exc.message, path=path, field=field) from None


def normalize_freq(text: str) -> str:
    """espflash writes ``80MHz`` / ``80M``; esptool and imgtool use ``80m``."""
    t = text.strip().lower().replace(" ", "")
    for suffix in ("mhz", "m"):
        if t.endswith(suffix):
            t = t[: -len(suffix)]
            break
    return f"{t}m"


def _string(value, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{key} must be a non-empty string", path=path)
    return value.strip()


def _offset(value, path: Path, key: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{key} must be an integer or a hex string like \"0x8000\"", path=path)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            pass
    raise InputError(f"{key} must be an integer or a hex string like \"0x8000\"", path=path)


__all__ = [
    "ProjectConfig",
    "espflash_files",
    "find_config_files",
    "find_crate",
    "flash_baud",
    "global_config_path",
    "load_project_config",
    "load_toml",
    "normalize_freq",
]
