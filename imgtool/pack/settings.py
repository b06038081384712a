"""The settings one pack runs with: the command line over the project files over an esp-idf-sys build, merged here only.

Priority, highest first: :class:`imgtool.pack.options.PackOptions`; the espflash project files
(:mod:`imgtool.pack.project_config`); the bootloader, table and sdkconfig of an esp-idf-sys build
beside the ELF (:mod:`imgtool.pack.idf_build`). The result also says which settings came from which
file, for the summary.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgtool.pack.idf_build import find_idf_build
from imgtool.pack.options import PackOptions
from imgtool.pack.project_config import ProjectConfig, load_project_config


class PackSettings:
    """The merged settings, the data partition images to build, and where the settings came from.

    A plain class: a NamedTuple costs ~0.2 ms at a pack's start-up.
    """

    __slots__ = ("config", "data_specs", "from_files", "origins", "files_read", "warnings")

    def __init__(
        self,
        config: ProjectConfig,
        data_specs: dict,
        from_files: tuple[str, ...],
        origins: dict,
        files_read: tuple[str, ...],
        warnings: tuple[str, ...],
    ):
        self.config = config
        self.data_specs = data_specs
        #: The settings a file set (the command line did not), ``data.LABEL`` for data images.
        self.from_files = from_files
        #: setting -> the file (or esp-idf-sys build folder) it was taken from.
        self.origins = origins
        #: The project files and sdkconfig read.
        self.files_read = files_read
        #: What the project files hold that espflash would refuse.
        self.warnings = warnings


def pack_settings(elf: Path, options: PackOptions) -> PackSettings:
    """Merge ``options`` over the project files and the esp-idf-sys build of ``elf`` (none with ``project_config`` False)."""
    read_files = options.project_config
    file_cfg = load_project_config(elf, options.cwd, options.global_config) if read_files else ProjectConfig()
    cli = _command_line(options)
    cfg = file_cfg.merged_with(**cli)
    from_files = tuple(k for k, v in cli.items() if v is None and getattr(file_cfg, k) is not None)
    origins = {s: file_cfg.origin(s) for s in from_files}
    build = find_idf_build(elf) if read_files else None
    if build is not None:  # esp-idf-sys's own bootloader, table and sdkconfig, under the files and the command line
        given = {"bootloader": os.fspath(build.bootloader), "partition_table": os.fspath(build.partition_table), **build.settings}
        if options.bootloader_variant is not None:
            given.pop("bootloader")
        taken = {k: v for k, v in given.items() if getattr(cfg, k) is None}
        cfg = cfg._replace(**taken)
        from_files += tuple(taken)
        origins.update({k: os.fspath(build.folder) for k in taken})
    data_specs = _data_specs(dict(file_cfg.data), options.data)
    given_labels = {label for label, _ in options.data}
    from_data = tuple(f"data.{label}" for label, _ in file_cfg.data if label not in given_labels)
    origins.update({s: file_cfg.origin(s) for s in from_data})
    files_read = (*file_cfg.sources, *((os.fspath(build.sdkconfig),) if build is not None else ()))
    return PackSettings(cfg, data_specs, from_files + from_data, origins, files_read, file_cfg.warnings)


def _command_line(options: PackOptions) -> dict:
    """The options a project file can also set, by :class:`ProjectConfig`'s names (None: not given)."""
    table, boot = options.partition_table, options.bootloader
    return dict(
        chip=options.chip,
        flash_size=options.flash_size,
        flash_mode=options.flash_mode,
        flash_freq=options.flash_freq,
        partition_table=os.fspath(table) if table is not None else None,
        partition_table_offset=options.table_offset,
        bootloader=os.fspath(boot) if boot is not None else None,
        bootloader_set=options.bootloader_set,
        target_app_partition=options.app_partition,
    )


def _data_specs(from_files: dict, given) -> dict:
    """The data partitions to fill, label → path: the project files' with the command line's over them."""
    if not from_files and not given:
        return {}
    # not at the top: a plain pack does not use it (1.1 ms with zlib, -X importtime)
    from imgtool.partitions.data_images import merge_data_specs

    return merge_data_specs(from_files, given)


__all__ = ["PackSettings", "pack_settings"]
