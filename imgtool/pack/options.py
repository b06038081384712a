"""What one ``pack`` is asked to do, as one immutable record: :class:`PackOptions`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from imgtool.bootloader.store import BootloaderStore


class PackOptions(NamedTuple):
    """The options of :func:`imgtool.pack.job.pack`; a setting left None comes from the project files.

    A NamedTuple, not a frozen dataclass: it is made on every ``pack`` start-up, where a frozen
    dataclass costs ~0.45 ms to define (issue 23).

    The values the CLI takes from the environment (``store``, ``source_date_epoch``, ``cwd``,
    ``global_config``) are options too, not separate arguments: the library reads no environment
    variable and no working folder itself, so everything one pack depends on is in this one record,
    and a caller (a test, ``flash ELF``) states it in one place.

    - ``outdir``: the output folder (default: the ELF's folder).
    - ``chip``, ``flash_size``, ``flash_mode``, ``flash_freq``: over the project files';
      ``default_flash_size`` stands in for 2MB when neither gives a size (``flash ELF`` passes the board's).
    - ``min_rev_full``, ``max_rev_full``: the app's chip-revision range (major * 100 + minor).
    - ``partition_table`` (file or preset), ``table_offset`` (default 0x8000), ``app_partition``.
    - ``bootloader`` (a file); else the pinned build: ``bootloader_variant``, else the variant that runs
      on the app's revisions (:func:`imgtool.bootloader.choice.bootloader_for_app`) of pinned set
      ``bootloader_set`` (``idf5.5``, the default, or ``idf6.1``), fetched through ``store`` (default:
      the platform's user cache, no mirror); ``offline`` never downloads;
      ``quiet`` prints no download progress.
    - ``sign_keys`` (PEM private keys, up to three) sign the app for Secure Boot V2, and with
      ``sign_bootloader`` the user's bootloader too; ``encrypt_key`` writes every part pre-encrypted
      for flash encryption at its flash address (``flash_crypt_conf``: ESP32's eFuse value). Key files
      are only read.
    - ``data``: ``(label, path)`` pairs filling data partitions (:mod:`imgtool.partitions.data_images`),
      over the project files' ``[data]``.
    - ``formats`` (``"uf2"``, ``"hex"``) adds ``NAME.uf2``/``NAME.hex``; ``archive`` adds
      ``NAME-VERSION-CHIP.zip`` of the other outputs, its members dated ``source_date_epoch`` (seconds,
      as ``SOURCE_DATE_EPOCH`` spells it) or 1980-01-01; ``fill_flash_size`` pads the merged image.
    - ``project_config``: False reads no project file and no esp-idf-sys build. ``cwd`` is the caller's
      working folder: espflash.toml is looked for there and in its parent, the search up from the ELF
      stops there, and result paths are shown relative to it (None: neither, absolute paths).
      ``global_config`` is espflash's global ``espflash.toml``, None for none.
    - ``force`` replaces files in OUTDIR that the earlier pack's ``SHA256SUMS`` does not list.
    """

    outdir: str | os.PathLike | None = None
    chip: str | None = None
    flash_size: str | None = None
    default_flash_size: str | None = None
    flash_mode: str | None = None
    flash_freq: str | None = None
    min_rev_full: int | None = None
    max_rev_full: int | None = None
    partition_table: str | os.PathLike | None = None
    table_offset: int | None = None
    bootloader: str | os.PathLike | None = None
    bootloader_variant: str | None = None
    bootloader_set: str | None = None
    offline: bool = False
    app_partition: str | None = None
    fill_flash_size: bool = False
    quiet: bool = True
    project_config: bool = True
    sign_keys: tuple[str | os.PathLike, ...] = ()
    sign_bootloader: bool = False
    encrypt_key: str | os.PathLike | None = None
    flash_crypt_conf: int | None = None
    data: tuple[tuple[str, str | os.PathLike], ...] = ()
    formats: tuple[str, ...] = ()
    archive: bool = False
    force: bool = False
    store: BootloaderStore | None = None
    source_date_epoch: str | None = None
    cwd: str | os.PathLike | None = None
    global_config: str | os.PathLike | None = None


__all__ = ["PackOptions"]
