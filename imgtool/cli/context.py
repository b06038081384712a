"""What every command takes from the process rather than from its options: the environment and the working folder.

Read here once per run, then passed down to the library as plain values
(:mod:`imgtool.environment` lists the variables).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from imgtool.atomic import recover_outputs
from imgtool.environment import UserEnvironment


def user_environment() -> UserEnvironment:
    """The environment settings of this run, read from ``os.environ`` on first use and kept on the root context."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, UserEnvironment):
        root.obj = UserEnvironment.from_environ(os.environ)
    return root.obj


def quiet_downloads(quiet: bool) -> bool:
    """No download progress when the user asks for quiet, nor on CI (``$CI``), where a progress bar only fills the log."""
    return quiet or user_environment().ci


def bootloader_store():
    """The pinned-bootloader store of this run: ``$IMGTOOL_CACHE_DIR`` (else the user cache) and ``$IMGTOOL_BOOTLOADER_MIRROR``."""
    # not at the top: monitor and manifest load this module and need no store (~3.5 ms, ~30 ms for manifest)
    from imgtool.bootloader.store import BootloaderStore

    env = user_environment()
    return BootloaderStore(cache_dir=env.cache_dir, mirror=env.mirror)  # None: the user cache, looked up when used


def recover_pack_folder(path: Path) -> None:
    """Finish or undo an interrupted pack in ``path`` (a folder) before a command reads it, under the lock pack takes."""
    if path.is_dir():
        recover_outputs(path)


def working_folder() -> Path:
    """The current directory, where project-file searches stop and below which paths are shown relative."""
    return Path.cwd()


def global_config() -> Path | None:
    """espflash's global ``espflash.toml`` for this user (read when it exists)."""
    # not at the top: monitor and manifest load this module and read no espflash.toml here (~3 ms, ~12 ms)
    from imgtool.pack.project_config import global_config_path

    return global_config_path(os.environ)


def pack_environment() -> dict:
    """The fields of :class:`imgtool.pack.options.PackOptions` that come from the environment and the working folder."""
    return {
        "store": bootloader_store(),
        "source_date_epoch": user_environment().source_date_epoch,
        "cwd": working_folder(),
        "global_config": global_config(),
    }
