"""``imgtool pack``: ELF → app image, partition table, bootloader, merged image and argument files, in one go.

Nothing is written until every stage has succeeded: outputs are rendered in
memory and handed to the output-folder transaction (:func:`imgtool.atomic.write_outputs`),
so a failure leaves OUTDIR as it was. ``--uf2``/``--hex`` and the ``--archive`` zip join
the same transaction. Settings the CLI takes from the environment (cache folder, mirror,
``SOURCE_DATE_EPOCH``, the working folder) arrive as parameters.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from imgtool.atomic import write_outputs
from imgtool.errors import InputError, UsageError
from imgtool.flash.formats import FORMATS
from imgtool.flash.layout import FlashSettings, check_table_offset, plan_layout
from imgtool.flash.outputs import render_files
from imgtool.output_names import LEGACY_FILES, OTADATA_FILE, SHA256SUMS_FILE, format_file_name
from imgtool.pack.result import PackResult, pack_result, probe_rs_args
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET

if TYPE_CHECKING:
    from imgtool.bootloader.store import BootloaderStore


def pack(
    elf_path: str | os.PathLike,
    outdir: str | os.PathLike | None = None,
    *,
    chip: str | None = None,
    flash_size: str | None = None,
    default_flash_size: str | None = None,
    flash_mode: str | None = None,
    flash_freq: str | None = None,
    min_rev_full: int | None = None,
    max_rev_full: int | None = None,
    partition_table: str | os.PathLike | None = None,
    table_offset: int | None = None,
    bootloader: str | os.PathLike | None = None,
    bootloader_variant: str | None = None,
    bootloader_set: str | None = None,
    offline: bool = False,
    app_partition: str | None = None,
    fill_flash_size: bool = False,
    quiet: bool = True,
    project_config: bool = True,
    sign_keys: tuple[str | os.PathLike, ...] = (),
    sign_bootloader: bool = False,
    encrypt_key: str | os.PathLike | None = None,
    flash_crypt_conf: int | None = None,
    data: tuple[tuple[str, str | os.PathLike], ...] = (),
    formats: tuple[str, ...] = (),
    archive: bool = False,
    store: BootloaderStore | None = None,
    source_date_epoch: str | None = None,
    cwd: str | os.PathLike | None = None,
    global_config: str | os.PathLike | None = None,
    force: bool = False,
) -> PackResult:
    """Build and write every output for ``elf_path``; options left None come from espflash project files.

    ``default_flash_size`` stands in for 2MB when neither ``flash_size`` nor the project files give
    one (``flash ELF`` passes the board's). ``table_offset`` defaults to 0x8000; ``outdir`` to the ELF's folder. Without a bootloader file
    the pinned build is used: ``bootloader_variant``, else the variant that runs on the app's chip
    revisions (see :func:`imgtool.bootloader.choice.bootloader_for_app`) of pinned set ``bootloader_set``
    (``idf5.5``, the default, or ``idf6.1``), fetched through ``store`` (default: the platform's user
    cache, no mirror), which also keeps OUTDIR's lock.

    ``sign_keys`` (PEM private keys, up to three) sign the app for Secure Boot V2, and with
    ``sign_bootloader`` the user's bootloader too; ``encrypt_key`` writes every part pre-encrypted
    for flash encryption at its flash address. Key files are only read.

    ``data`` pairs ``(label, path)`` fill data partitions (:mod:`imgtool.partitions.data_images`: a CSV becomes
    NVS, a folder LittleFS, another file is written raw); they override the project files' ``[data]``.
    ``formats`` (``"uf2"``, ``"hex"``) adds ``NAME.uf2``/``NAME.hex`` as esptool merge-bin writes them
    from ``flash_args``; ``archive`` adds ``NAME-VERSION-CHIP.zip`` of every other output (not listed in
    ``SHA256SUMS``, which it holds), its members dated ``source_date_epoch`` (seconds, as the
    ``SOURCE_DATE_EPOCH`` convention spells it) or 1980-01-01. The same inputs give the same bytes,
    except signatures (see README).

    ``cwd`` is the caller's working folder: espflash.toml is looked for there and in its parent, the
    search up from the ELF stops there, and the result shows the merged image's path relative to it;
    None reads neither and shows absolute paths. ``global_config`` is espflash's global
    ``espflash.toml`` (the CLI passes :func:`imgtool.pack.project_config.global_config_path`), None for none.

    A file already in the output folder that the earlier pack's ``SHA256SUMS`` does not list (a
    project's own ``partitions.csv`` or ``manifest.json``) is refused unless ``force``.
    """
    from imgtool.bootloader.choice import bootloader_for_app
    from imgtool.bootloader.pins import get_set, load_manifest, pinned_entry
    from imgtool.bootloader.place import load_user_bootloader, place_bootloader
    from imgtool.bootloader.store import BootloaderStore
    from imgtool.chips.table import (
        DEFAULT_FLASH_MODE,
        DEFAULT_FLASH_SIZE,
        boot_flash_mode,
        flash_size_bytes,
        normalize_flash_mode,
        normalize_flash_size,
    )
    from imgtool.image.build import build_app_image
    from imgtool.pack.idf_build import find_idf_build
    from imgtool.pack.project_config import ProjectConfig, load_project_config
    from imgtool.partitions.choice import check_app_fits, default_table, load_table
    from imgtool.partitions.data_images import build_data_images, merge_data_specs

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown output format '{unknown[0]}'; use one of {', '.join(FORMATS)}", field="formats")
    if sign_bootloader and not sign_keys:
        raise UsageError("--sign-bootloader needs at least one --sign-key", field="--sign-bootloader")
    if bootloader is not None and bootloader_variant is not None:
        raise UsageError(
            "a bootloader file and a pinned variant were both given; drop --bootloader or --bootloader-variant",
            field="--bootloader-variant",
        )
    if bootloader is not None and bootloader_set is not None:
        raise UsageError(
            "a bootloader file and a pinned set were both given; drop --bootloader or --bootloader-set",
            field="--bootloader-set",
        )
    from imgtool.flash.archive import archive_name, archive_timestamp, release_archive

    stamp = archive_timestamp(source_date_epoch) if archive else None  # a bad SOURCE_DATE_EPOCH fails before any work
    elf = Path(elf_path)
    store = store or BootloaderStore()
    file_cfg = load_project_config(elf, cwd, global_config) if project_config else ProjectConfig()
    cli = dict(
        chip=chip,
        flash_size=flash_size,
        flash_mode=flash_mode,
        flash_freq=flash_freq,
        partition_table=os.fspath(partition_table) if partition_table is not None else None,
        partition_table_offset=table_offset,
        bootloader=os.fspath(bootloader) if bootloader is not None else None,
        bootloader_set=bootloader_set,
        target_app_partition=app_partition,
    )
    cfg = file_cfg.merged_with(**cli)
    from_files = tuple(k for k, v in cli.items() if v is None and getattr(file_cfg, k) is not None)
    origins = {s: file_cfg.origin(s) for s in from_files}
    build = find_idf_build(elf) if project_config else None
    if build is not None:  # esp-idf-sys's own bootloader, table and sdkconfig, under the files and the command line
        given = {"bootloader": os.fspath(build.bootloader), "partition_table": os.fspath(build.partition_table), **build.settings}
        if bootloader_variant is not None:
            given.pop("bootloader")
        taken = {k: v for k, v in given.items() if getattr(cfg, k) is None}
        cfg = replace(cfg, **taken)
        from_files += tuple(taken)
        origins.update({k: os.fspath(build.folder) for k in taken})
    data_specs = merge_data_specs(dict(file_cfg.data), data)
    given_labels = {label for label, _ in data}
    from_data = tuple(f"data.{label}" for label, _ in file_cfg.data if label not in given_labels)
    from_files += from_data
    origins.update({s: file_cfg.origin(s) for s in from_data})
    requested_mode = normalize_flash_mode(cfg.flash_mode or DEFAULT_FLASH_MODE)
    mode = boot_flash_mode(requested_mode)
    size = normalize_flash_size(cfg.flash_size or default_flash_size or DEFAULT_FLASH_SIZE)
    toff = cfg.partition_table_offset if cfg.partition_table_offset is not None else DEFAULT_TABLE_OFFSET

    app = build_app_image(
        elf,
        chip=cfg.chip,
        flash_mode=mode,
        flash_size=size,
        flash_freq=cfg.flash_freq,
        min_rev_full=min_rev_full,
        max_rev_full=max_rev_full,
        boot_warnings=False,  # judged below, under the chosen bootloader
    )
    notes: list[str] = []
    app.warnings[:0] = file_cfg.warnings
    if mode != requested_mode:  # what ESP-IDF does too: nothing to fix
        notes.append(
            f"flash mode {requested_mode} is written as {mode} in the headers and flash_args, as ESP-IDF does "
            f"(the ROM boots in {mode}; a bootloader built for {requested_mode.upper()} switches to it itself)"
        )
    target = app.chip
    freq = (cfg.flash_freq or target.default_flash_freq).lower()
    target.flash_freq_code(freq)  # validates
    keys = _signing_keys(sign_keys, target.name, app.image.min_chip_rev_full, app.warnings)
    flash_key = _flash_key(encrypt_key, target.name, flash_crypt_conf)
    app_data = _signed_app(app, keys) if keys else app.data
    check_table_offset(toff, target)

    if cfg.partition_table:
        table = load_table(cfg.partition_table, flash_size=size, table_offset=toff, bootloader_offset=target.bootloader_offset)
        app.warnings.extend(table.warnings)
    else:
        table = default_table(flash_size_bytes(size), toff, app.mmu_page_size)
    # before any bootloader download
    app_target = check_app_fits(
        table, len(app_data), cfg.target_app_partition, default_table=not cfg.partition_table, mmu_page_size=app.mmu_page_size
    )
    data_images, data_warnings = build_data_images(data_specs, table)
    app.warnings.extend(data_warnings)

    # a variant or set on the command line wins over a project file's bootloader
    boot_file = cfg.bootloader if bootloader_variant is None and bootloader_set is None else None
    if sign_bootloader and not boot_file:
        raise UsageError(
            "the pinned bootloaders are not Secure Boot builds, so signing one protects nothing; "
            "pass --bootloader with your own Secure Boot bootloader",
            field="--sign-bootloader",
        )
    if keys and not boot_file:
        app.warnings.append(
            "the pinned ESP-IDF bootloader is not built with Secure Boot: it boots the signed app without checking "
            "the signature; a device only enforces signatures with your own Secure Boot bootloader (--bootloader)"
        )
    manifest = load_manifest(bootloader_set=get_set(cfg.bootloader_set).name)
    if boot_file:
        raw_boot = load_user_bootloader(boot_file, target)
    else:
        raw_boot, note = bootloader_for_app(
            target.name,
            app_min_rev_full=app.image.min_chip_rev_full,
            app_max_rev_full=app.image.max_chip_rev_full,
            store=store,
            variant=bootloader_variant,
            offline=offline,
            quiet=quiet,
            manifest=manifest,
        )
        if note:
            notes.append(note)
    # a pinned build, even one passed by hand as a file, is described (its crystal is known to `flash`)
    pinned = manifest.entry_for(raw_boot) or (pinned_entry(raw_boot) if boot_file else None)
    boot_source: dict = {"source": "file"} if pinned is None else pinned.describe()
    if pinned is not None and boot_file:
        boot_source["source"] = "file"
    from imgtool.image.loader_generations import loader_build_of

    loader = loader_build_of(target, raw_boot)  # the rules the app is judged by come from the bootloader itself
    boot_source.update(loader.as_dict())
    boot_keys = keys if sign_bootloader else []
    boot = _kept_signed_bootloader(raw_boot, boot_file, boot_keys, target.name, app.warnings) if boot_file else None
    bootloader_kept = boot is not None
    if boot is None:
        boot = place_bootloader(
            raw_boot,
            target,
            flash_mode=mode,
            flash_size=size,
            flash_freq=freq,
            app_min_rev_full=app.image.min_chip_rev_full,
            app_max_rev_full=app.image.max_chip_rev_full,
            path=boot_file,
        )
        if boot_keys:
            from imgtool.security.signing import sign_contents

            boot = sign_contents(boot, boot_keys)
    boot_warnings, boot_notes = boots_with(
        app, app_data, boot, revisions_chosen=min_rev_full is not None or max_rev_full is not None,
        other_variants=sum(e.crystal_mhz is None for e in manifest.variants(target.name)) > 1,  # builds by revision
    )
    app.warnings.extend(boot_warnings)
    notes.extend(boot_notes)

    desc = app.app_desc or {}
    name = elf.stem
    layout = plan_layout(
        target,
        name=name,
        app=app_data,
        bootloader=boot,
        table=table,
        table_offset=toff,
        settings=FlashSettings(mode=mode, freq=freq, size=size),
        app_partition=app_target,
        fill_flash_size=fill_flash_size,
        version=(desc.get("version") or None),
        project_name=(desc.get("project_name") or None),
        warnings=list(dict.fromkeys(app.warnings)),  # a finding reached by two paths is said once
        bootloader_source=boot_source,
        data_parts=data_images,
        bootloader_kept=bootloader_kept,
    )
    if flash_key is not None:
        from imgtool.security.encryption import encrypt_layout

        layout = encrypt_layout(layout, flash_key)
    files = render_files(layout, formats=tuple(formats))
    archive_file = archive_name(name, layout.version, target.name)
    if archive:
        files[archive_file] = release_archive(files, stamp)

    out = Path(outdir) if outdir is not None else elf.parent
    inputs = [*sign_keys, *([encrypt_key] if encrypt_key else []), *(i.source for i in data_images if i.kind != "littlefs")]
    _refuse_overwriting_input(out, files, elf, cfg, inputs)
    stale = LEGACY_FILES + (() if layout.part("otadata") else (OTADATA_FILE,))
    # a format or archive of an earlier pack, not asked for now, would no longer match the folder
    stale += tuple(f for f in (*(format_file_name(name, fmt) for fmt in FORMATS), archive_file) if f not in files)
    owned = None if force else lambda folder: _earlier_pack_files(folder, archive_file)
    write_outputs(out, files, remove=stale, seal=SHA256SUMS_FILE, owned=owned, cache_dir=store.cache_dir)

    def shown(file: str) -> str:
        return _display_path(out / file, cwd)

    result = pack_result(layout, files, outdir=out, shown=shown)
    if not keys and flash_key is None:  # probe-rs would write the plain app it builds from the ELF
        result = replace(result, probe_rs_args=probe_rs_args(layout, _display_path(elf, cwd), shown))
    read = (*file_cfg.sources, *((os.fspath(build.sdkconfig),) if build is not None else ()))
    return replace(result, config_files=read, config_settings=from_files,
                   config_origins=origins, notes=tuple(dict.fromkeys(notes)), bootloader_build=loader.label)


def boots_with(app, app_data: bytes, bootloader: bytes, *, revisions_chosen: bool = False,
               other_variants: bool = False) -> tuple[list[str], list[str]]:
    """Judge the app under the chosen bootloader (its RAM layout and revisions): refuse what it would not
    start; return ``(warnings, notes)`` for the rest (``boot_rules``).

    The bootloader checks its own header's minimum chip revision, not its maximum
    (``bootloader_common_check_chip_validity`` skips it for ESP_IMAGE_BOOTLOADER), so of an app range
    wider than the bootloader's only the chips below the bootloader's minimum fail to boot the pack.
    That is a note when the app's range is the default, and a warning naming the fix when the user
    chose it (``revisions_chosen``: --min-rev/--max-rev).
    """
    from imgtool.bootloader.revision_reach import REVISION_RULE, locked_out_below, locked_out_text
    from imgtool.chips.table import revision_name, revision_range
    from imgtool.errors import LayoutError
    from imgtool.image.boot_rules import BootContext, check_app, revisions_allowed
    from imgtool.image.format import parse_image
    from imgtool.image.loader_generations import loader_build

    parsed_boot = parse_image(bootloader, what="bootloader")
    boot = parsed_boot.image
    generation = loader_build(app.chip, parsed_boot).generation
    revs = (boot.min_chip_rev_full, boot.max_chip_rev_full)
    image = parse_image(app_data).image
    findings = check_app(app.chip, parse_image(app_data), BootContext(bootloader_revs=revs, generation=generation))
    warnings, notes = [], []
    for finding in findings:
        if finding.fatal:
            raise LayoutError(
                f"the {app.chip.name} bootloader for {revision_range(*revisions_allowed(*revs))} would not start this app "
                f"({generation.name} loader rules): {finding}",
                path=app.elf.path,
            )
        if finding.rule != REVISION_RULE:
            warnings.append(f"{app.elf.path}: {finding}")
            continue
        boot_lo = locked_out_below((image.min_chip_rev_full, image.max_chip_rev_full), revs)
        if boot_lo is None:
            continue  # only revisions above the bootloader's maximum, which it does not check on itself
        app_lo, _ = revisions_allowed(image.min_chip_rev_full, image.max_chip_rev_full)
        first = revision_name(boot_lo)
        other = "--bootloader-variant (see 'imgtool bootloader list') or --bootloader" if other_variants else "--bootloader"
        if revisions_chosen:
            warnings.append(
                f"{app.elf.path}: --min-rev {revision_name(app_lo)} allows {app.chip.name} chips the bootloader does not "
                f"start on (it needs {first} or later; bootloader_common_check_chip_validity); pass --min-rev "
                f"{first.lstrip('v')}, or pack with {other} built for the older chips"
            )
        else:
            notes.append(f"{locked_out_text(app.chip.name, boot_lo)}; for older chips pack with {other}")
    return warnings, notes


def _signing_keys(paths, chip: str, min_rev_full: int, warnings: list[str]) -> list:
    """The Secure Boot V2 keys, refused unless the chip verifies their scheme."""
    if not paths:
        return []
    from imgtool.security.keys import check_chip_schemes, load_key, revision_warning

    keys = [load_key(p) for p in paths]
    warnings.extend(check_chip_schemes(chip, keys))
    note = revision_warning(chip, min_rev_full)
    if note:
        warnings.append(note)
    return keys


def _flash_key(path, chip: str, flash_crypt_conf: int | None):
    if path is None:
        if flash_crypt_conf is not None:
            raise UsageError("--flash-crypt-conf needs --encrypt-key", field="--flash-crypt-conf")
        return None
    from imgtool.security.encryption import load_flash_key

    return load_flash_key(path, chip, flash_crypt_conf)


def _signed_app(app, keys) -> bytes:
    """The app secure-padded (ending on an MMU page) and followed by its signature sector."""
    from imgtool.security.secure_pad import secure_pad
    from imgtool.security.signing import sign_contents

    return sign_contents(secure_pad(app.image, app.mmu_page_size).to_bytes(), keys)


def _kept_signed_bootloader(raw: bytes, path, keys, chip: str, warnings: list[str]) -> bytes | None:
    """A bootloader that already carries signatures, kept byte for byte (its header is signed); else None.

    ``keys`` add their blocks after the ones it has.
    """
    from imgtool.image.format import parse_image
    from imgtool.security.keys import check_chip_schemes
    from imgtool.security.signature_block import signature_offset, signature_sector
    from imgtool.security.signing import existing_blocks, sign, signature_block

    length = parse_image(raw, path, what="bootloader").length
    blocks = existing_blocks(raw, length)
    if not blocks:
        return None
    check_chip_schemes(chip, keys, existing=len(blocks))
    warnings.append(f"{path}: the bootloader is signed, so it is written unchanged (its header keeps its own flash settings)")
    contents = bytes(raw[: signature_offset(length)])
    return contents + signature_sector([*blocks, *(signature_block(contents, k, sign(contents, k)) for k in keys)])


#: A ``SHA256SUMS`` larger than this is not one a pack wrote (a few lines per output file).
MAX_SHA256SUMS_BYTES = 1 << 20


def _earlier_pack_files(folder: Path, archive_file: str) -> set[str]:
    """The names an earlier pack wrote in ``folder``: what its ``SHA256SUMS`` lists, itself, and the archive it leaves out."""
    from imgtool.atomic import read_input
    from imgtool.flash.outputs import parse_sha256sums

    sums = folder / SHA256SUMS_FILE
    if not sums.is_file():
        return set()
    try:
        listed = parse_sha256sums(read_input(sums, "checksum file", limit=MAX_SHA256SUMS_BYTES).decode("utf-8"))
    except (InputError, UnicodeDecodeError):
        return set()
    return {*listed, SHA256SUMS_FILE, archive_file} if listed else set()


def _refuse_overwriting_input(out: Path, files: dict, elf: Path, cfg, keys=()) -> None:
    inputs = [elf] + [Path(p) for p in (cfg.partition_table, cfg.bootloader, *keys) if p]
    for inp in inputs:
        try:
            inp_resolved = os.path.realpath(inp)  # never raises: a symlink loop is named when it is read
        except OSError:  # pragma: no cover
            continue
        for name in files:
            if os.path.realpath(out / name) == inp_resolved:
                raise UsageError(
                    f"writing {name} into {out} would overwrite the input {inp}; choose another -o OUTDIR",
                    field="-o",
                )


def _display_path(path: Path, cwd: str | os.PathLike | None) -> str:
    """``path`` relative to ``cwd`` when it is below it, else absolute."""
    absolute = Path(os.path.realpath(path))
    if cwd is not None:
        try:
            return os.fspath(absolute.relative_to(os.path.realpath(cwd)))
        except ValueError:
            pass
    return os.fspath(absolute)


__all__ = ["pack"]
