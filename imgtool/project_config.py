"""Pack options a project already declares for espflash, so ``imgtool pack`` agrees with ``cargo espflash``.

Sources, lowest priority first:

1. ``[package.metadata.espflash]`` in the nearest ``Cargo.toml`` (espflash 1.x/2.x keys
   ``partition_table``, ``bootloader``, ``partition_table_offset``, ``target_app_partition``);
2. the nearest ``espflash.toml`` (espflash 4: ``[idf_format_args]`` (alias ``[idf]``) with
   ``bootloader``, ``partition_table``, ``partition_table_offset``, ``target_app_partition``;
   espflash 3: ``[esp_idf_format_args]``; espflash 2: the same keys at top level) and
   ``[flash]`` with ``mode``, ``size``, ``frequency`` (espflash 2 called it ``freq``);
3. the command line, which always wins.

Either file may also declare data partition images (imgtool's own key, see :mod:`imgtool.data_parts`):
a ``[data]`` table in ``espflash.toml`` or ``[package.metadata.espflash.data]`` in ``Cargo.toml``,
``LABEL = "path"`` per partition; ``espflash.toml`` wins per label, ``pack --data LABEL=PATH`` over both.

Files are searched from the ELF's folder upwards, stopping at the first folder with a
``Cargo.toml`` (the crate root), at the caller's working folder (the CLI passes the current
directory), or at the filesystem root.
Relative paths in a file are relative to that file's folder.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from imgtool.chips import normalize_flash_mode, normalize_flash_size
from imgtool.errors import InputError, UsageError

ESPFLASH_TOML = "espflash.toml"
CARGO_TOML = "Cargo.toml"
_SECTION_ALIASES = ("idf_format_args", "idf", "esp_idf_format_args")
_PATH_KEYS = ("partition_table", "bootloader")


@dataclass(frozen=True)
class ProjectConfig:
    """Options found in project files (None: not set). ``sources`` lists the files read."""

    partition_table: str | None = None
    bootloader: str | None = None
    partition_table_offset: int | None = None
    target_app_partition: str | None = None
    flash_mode: str | None = None
    flash_size: str | None = None
    flash_freq: str | None = None
    chip: str | None = None
    #: ``(label, path)`` per data partition image, paths made absolute.
    data: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = field(default=())

    def merged_with(self, **cli) -> ProjectConfig:
        """These options with every non-None command-line value put over them."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in cli.items() if v is not None and k in known})


#: Project files (espflash.toml, Cargo.toml, launchpad.toml) are a few kilobytes; larger is not one.
MAX_TOML_BYTES = 1 << 20


def load_toml(path: Path) -> dict:
    """A UTF-8 TOML file as a dict; unreadable or invalid files raise a one-line ``InputError``."""
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


def load_project_config(elf_path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> ProjectConfig:
    """Options from ``[package.metadata.espflash]`` and ``espflash.toml`` for the project holding ``elf_path``."""
    espflash, cargo = find_config_files(elf_path, cwd)
    values: dict = {}
    sources: list[str] = []
    data: dict[str, str] = {}
    if cargo is not None:
        doc = load_toml(cargo)
        meta = doc.get("package")
        for key in ("metadata", "espflash"):
            meta = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(meta, dict):
            values.update(_from_table(meta, cargo, "[package.metadata.espflash]"))
            data.update(_data_table(meta.get("data"), cargo, "[package.metadata.espflash.data]"))
            sources.append(os.fspath(cargo))
    if espflash is not None:
        doc = load_toml(espflash)
        found = _from_table(doc, espflash, "")
        for section in _SECTION_ALIASES:
            sub = doc.get(section)
            if isinstance(sub, dict):
                found.update(_from_table(sub, espflash, f"[{section}]"))
        flash = doc.get("flash")
        if isinstance(flash, dict):
            found.update(_flash_table(flash, espflash))
        values.update(found)
        data.update(_data_table(doc.get("data"), espflash, "[data]"))
        sources.append(os.fspath(espflash))
    return ProjectConfig(**values, data=tuple(data.items()), sources=tuple(sources))


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


__all__ = ["ProjectConfig", "find_config_files", "load_project_config", "load_toml", "normalize_freq"]
