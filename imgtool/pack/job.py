"""``imgtool pack``: ELF → app image, partition table, bootloader, merged image and argument files, in one go.

:func:`pack` runs the stages in order, each a named call: the settings (:mod:`imgtool.pack.settings`),
the app, its signing and encryption keys, the partition table and data images, the bootloader (the
app is judged under it, from the segments it was built from), the flash layout and its files, the
write. Nothing is written until every stage has succeeded: outputs are rendered in memory (the
merged image as its pieces, streamed when written) and handed to the output-folder transaction
(:func:`imgtool.atomic.write_outputs`), so a failure leaves OUTDIR as it was. ``--uf2``/``--hex`` and
the ``--archive`` zip join the same transaction. Settings the CLI takes from the environment arrive
in the options (:class:`imgtool.pack.options.PackOptions`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from imgtool.atomic import read_input, write_outputs
from imgtool.bootloader.choice import bootloader_for_app
from imgtool.bootloader.pins import Manifest, get_set, load_manifest, pinned_entry
from imgtool.bootloader.place import load_user_bootloader, place_bootloader
from imgtool.bootloader.revision_reach import REVISION_RULE, locked_out_below, locked_out_text
from imgtool.bootloader.store import BootloaderStore
from imgtool.chips.table import boot_flash_mode, flash_size_bytes, revision_name, revision_range
from imgtool.errors import InputError, LayoutError, UsageError
from imgtool.flash.archive import archive_name, archive_timestamp, release_archive
from imgtool.flash.formats import FORMATS
from imgtool.flash.layout import FlashLayout, FlashSettings, check_table_offset, plan_layout
from imgtool.flash.outputs import render_files
from imgtool.flash.pack_folder import MAX_SUMS_BYTES, parse_sha256sums
from imgtool.image.boot_rules import BootContext, check_app, revisions_allowed
from imgtool.image.build import AppImage, build_app_image, flash_defaults
from imgtool.image.format import parse_image
from imgtool.image.loader_generations import Generation, LoaderBuild, loader_build
from imgtool.output_names import LEGACY_FILES, OTADATA_FILE, SHA256SUMS_FILE, format_file_name
from imgtool.pack.options import PackOptions
from imgtool.pack.result import PackResult, pack_result, probe_rs_args
from imgtool.pack.settings import PackSettings, pack_settings
from imgtool.partitions.choice import check_app_fits, default_table, load_table
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET, Partition, PartitionTable

if TYPE_CHECKING:
    from imgtool.partitions.data_images import DataImage


def pack(elf_path: str | os.PathLike, options: PackOptions = PackOptions()) -> PackResult:
    """Build and write every output for ``elf_path`` as ``options`` ask (see :class:`PackOptions`).

    The same inputs give the same bytes, except signatures (see README). A file already in the
    output folder that the earlier pack's ``SHA256SUMS`` does not list (a project's own
    ``partitions.csv`` or ``manifest.json``) is refused unless ``options.force``.
    """
    _refuse_conflicts(options)
    # a bad SOURCE_DATE_EPOCH fails before any work
    stamp = archive_timestamp(options.source_date_epoch) if options.archive else None
    elf = Path(elf_path)
    store = options.store or BootloaderStore()
    settings = pack_settings(elf, options)
    warnings: list[str] = list(settings.warnings)  # in the order found; said once (see _layout)
    notes: list[str] = []
    app, flash = _app(elf, settings, options, warnings, notes)
    keys, flash_key, app_data = _security(app, options, warnings)
    parts = _partitions(app, app_data, settings, flash.size, warnings)
    boot = _bootloader(app, app_data, keys, settings, options, store, flash, warnings, notes)
    layout = _layout(elf, app, app_data, boot, parts, flash, options, warnings, flash_key)
    files, archive_file = _files(layout, elf.stem, options, stamp, {layout.app.file: (app.data, app.file_sha256)})
    out = Path(options.outdir) if options.outdir is not None else elf.parent
    _write(out, files, layout, parts.data_images, elf, settings, options, archive_file)
    return _result(layout, files, out, elf, settings, options, keys, flash_key, notes, boot.loader)


def _refuse_conflicts(options: PackOptions) -> None:
    """Options that cannot go together, refused before any file is read."""
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown output format '{unknown[0]}'; use one of {', '.join(FORMATS)}", field="formats")
    if options.sign_bootloader and not options.sign_keys:
        raise UsageError("--sign-bootloader needs at least one --sign-key", field="--sign-bootloader")
    if options.bootloader is not None and options.bootloader_variant is not None:
        raise UsageError(
            "a bootloader file and a pinned variant were both given; drop --bootloader or --bootloader-variant",
            field="--bootloader-variant",
        )
    if options.bootloader is not None and options.bootloader_set is not None:
        raise UsageError(
            "a bootloader file and a pinned set were both given; drop --bootloader or --bootloader-set",
            field="--bootloader-set",
        )


def _app(elf: Path, settings: PackSettings, options: PackOptions, warnings: list[str], notes: list[str]):
    """The app image, built with the merged flash settings; and the settings every later part is written with."""
    cfg = settings.config
    requested_mode, size = flash_defaults(cfg.flash_mode, cfg.flash_size, options.default_flash_size)
    mode = boot_flash_mode(requested_mode)
    app = build_app_image(
        elf,
        chip=cfg.chip,
        flash_mode=mode,
        flash_size=size,
        flash_freq=cfg.flash_freq,
        min_rev_full=options.min_rev_full,
        max_rev_full=options.max_rev_full,
        boot_warnings=False,  # judged by _bootloader, under the chosen bootloader
    )
    warnings.extend(app.warnings)
    if mode != requested_mode:  # what ESP-IDF does too: nothing to fix
        notes.append(
            f"flash mode {requested_mode} is written as {mode} in the headers and flash_args, as ESP-IDF does "
            f"(the ROM boots in {mode}; a bootloader built for {requested_mode.upper()} switches to it itself)"
        )
    return app, FlashSettings(mode=mode, freq=app.flash_freq, size=size)


def _security(app: AppImage, options: PackOptions, warnings: list[str]):
    """The Secure Boot keys, the flash encryption key, and the app as written (signed when there are keys)."""
    keys = _signing_keys(options.sign_keys, app.chip.name, app.image.min_chip_rev_full, warnings)
    flash_key = _flash_key(options.encrypt_key, app.chip.name, options.flash_crypt_conf)
    app_data = _signed_app(app, keys) if keys else app.data
    return keys, flash_key, app_data


class _Partitions:
    """The table, its offset, the app's partition and the data images (a plain class: a NamedTuple costs ~0.2 ms at start-up)."""

    __slots__ = ("table", "table_offset", "app_partition", "data_images")

    def __init__(self, table: PartitionTable, table_offset: int, app_partition: Partition, data_images: list[DataImage]):
        self.table = table
        self.table_offset = table_offset
        self.app_partition = app_partition
        self.data_images = data_images


def _partitions(app: AppImage, app_data: bytes, settings: PackSettings, size: str, warnings: list[str]) -> _Partitions:
    """The partition table (file, preset or default), the app's partition in it, and the data partition images."""
    cfg = settings.config
    toff = cfg.partition_table_offset if cfg.partition_table_offset is not None else DEFAULT_TABLE_OFFSET
    target = app.chip
    check_table_offset(toff, target)
    if cfg.partition_table:
        table = load_table(cfg.partition_table, flash_size=size, table_offset=toff, bootloader_offset=target.bootloader_offset)
        warnings.extend(table.warnings)
    else:
        table = default_table(flash_size_bytes(size), toff, app.mmu_page_size)
    # before any bootloader download
    app_target = check_app_fits(
        table, len(app_data), cfg.target_app_partition, default_table=not cfg.partition_table, mmu_page_size=app.mmu_page_size
    )
    if not settings.data_specs:
        return _Partitions(table, toff, app_target, [])
    # not at the top: a plain pack does not use it (1.1 ms with zlib, -X importtime)
    from imgtool.partitions.data_images import build_data_images

    data_images, data_warnings = build_data_images(settings.data_specs, table)
    warnings.extend(data_warnings)
    return _Partitions(table, toff, app_target, data_images)


class _Bootloader:
    """The bootloader as written, where it came from, whether the user's was kept, and its loader build."""

    __slots__ = ("data", "source", "kept", "loader")

    def __init__(self, data: bytes, source: dict, kept: bool, loader: LoaderBuild):
        self.data = data
        self.source = source
        self.kept = kept
        self.loader = loader


def _bootloader(app, app_data, keys, settings, options, store, flash: FlashSettings, warnings, notes) -> _Bootloader:
    """The bootloader (the user's, or the pinned one for the app's revisions), placed or kept; the app judged under it."""
    cfg, target = settings.config, app.chip
    # a variant or set on the command line wins over a project file's bootloader
    boot_file = cfg.bootloader if options.bootloader_variant is None and options.bootloader_set is None else None
    if options.sign_bootloader and not boot_file:
        raise UsageError(
            "the pinned bootloaders are not Secure Boot builds, so signing one protects nothing; "
            "pass --bootloader with your own Secure Boot bootloader",
            field="--sign-bootloader",
        )
    if keys and not boot_file:
        warnings.append(
            "the pinned ESP-IDF bootloader is not built with Secure Boot: it boots the signed app without checking "
            "the signature; a device only enforces signatures with your own Secure Boot bootloader (--bootloader)"
        )
    manifest = load_manifest(bootloader_set=get_set(cfg.bootloader_set).name)
    raw_boot = _raw_bootloader(app, boot_file, options, store, manifest, notes)
    # a pinned build, even one passed by hand as a file, is described (its crystal is known to `flash`)
    pinned = manifest.entry_for(raw_boot) or (pinned_entry(raw_boot) if boot_file else None)
    boot_source: dict = {"source": "file"} if pinned is None else pinned.describe()
    if pinned is not None and boot_file:
        boot_source["source"] = "file"
    parsed_boot = parse_image(raw_boot, what="bootloader")  # placing rewrites only the header's flash settings
    loader = loader_build(target, parsed_boot)  # the rules the app is judged by come from the bootloader itself
    boot_source.update(loader.as_dict())
    boot_keys = keys if options.sign_bootloader else []
    boot = _kept_signed_bootloader(raw_boot, parsed_boot.length, boot_file, boot_keys, target.name, warnings) if boot_file else None
    kept = boot is not None
    if boot is None:
        boot = place_bootloader(
            raw_boot, target, flash_mode=flash.mode, flash_size=flash.size, flash_freq=flash.freq,
            app_min_rev_full=app.image.min_chip_rev_full, app_max_rev_full=app.image.max_chip_rev_full, path=boot_file,
        )  # fmt: skip
        if boot_keys:
            boot = _signed_bootloader(boot, boot_keys)
    boot_revs = (parsed_boot.image.min_chip_rev_full, parsed_boot.image.max_chip_rev_full)
    boot_warnings, boot_notes = boots_with(
        app, app_data, boot_revs, loader.generation, revisions_chosen=options.min_rev_full is not None or options.max_rev_full is not None,
        other_variants=sum(e.crystal_mhz is None for e in manifest.variants(target.name)) > 1,  # builds by revision
    )
    warnings.extend(boot_warnings)
    notes.extend(boot_notes)
    return _Bootloader(boot, boot_source, kept, loader)


def _raw_bootloader(app: AppImage, boot_file, options: PackOptions, store, manifest: Manifest, notes: list[str]) -> bytes:
    """The user's bootloader file, checked for the chip; else the pinned build for the app's revisions."""
    if boot_file:
        return load_user_bootloader(boot_file, app.chip)
    raw_boot, note = bootloader_for_app(
        app.chip.name,
        app_min_rev_full=app.image.min_chip_rev_full,
        app_max_rev_full=app.image.max_chip_rev_full,
        store=store,
        variant=options.bootloader_variant,
        offline=options.offline,
        quiet=options.quiet,
        manifest=manifest,
    )
    if note:
        notes.append(note)
    return raw_boot


def _layout(elf, app, app_data, boot: _Bootloader, parts: _Partitions, flash, options, warnings, flash_key) -> FlashLayout:
    """Where every part goes in flash (encrypted in place with a flash encryption key)."""
    desc = app.app_desc or {}
    layout = plan_layout(
        app.chip,
        name=elf.stem,
        app=app_data,
        bootloader=boot.data,
        table=parts.table,
        table_offset=parts.table_offset,
        settings=flash,
        app_partition=parts.app_partition,
        fill_flash_size=options.fill_flash_size,
        version=(desc.get("version") or None),
        project_name=(desc.get("project_name") or None),
        warnings=list(dict.fromkeys(warnings)),  # a finding reached by two paths is said once
        bootloader_source=boot.source,
        data_parts=parts.data_images,
        bootloader_kept=boot.kept,
    )
    if flash_key is None:
        return layout
    from imgtool.security.encryption import encrypt_layout  # lazy: ~2.4 ms to import, a plain pack skips it

    return encrypt_layout(layout, flash_key)


def _files(layout: FlashLayout, name: str, options: PackOptions, stamp, known_sha256) -> tuple[dict[str, bytes], str]:
    """Every output file's bytes (with the release archive when asked for), and the archive's name."""
    files = render_files(layout, formats=tuple(options.formats), known_sha256=known_sha256)
    archive_file = archive_name(name, layout.version, layout.chip.name)
    if options.archive:
        files[archive_file] = release_archive(files, stamp)
    return files, archive_file


def _write(out: Path, files, layout: FlashLayout, data_images, elf: Path, settings: PackSettings, options: PackOptions,
           archive_file: str) -> None:
    """Write ``files`` into ``out`` in one transaction, removing what an earlier pack left that no longer belongs."""
    inputs = [*options.sign_keys, *([options.encrypt_key] if options.encrypt_key else []),
              *(i.source for i in data_images if i.kind != "littlefs")]
    _refuse_overwriting_input(out, files, elf, settings.config, inputs)
    stale = LEGACY_FILES + (() if layout.part("otadata") else (OTADATA_FILE,))
    # a format or archive of an earlier pack, not asked for now, would no longer match the folder
    stale += tuple(f for f in (*(format_file_name(elf.stem, fmt) for fmt in FORMATS), archive_file) if f not in files)
    owned = None if options.force else lambda folder: _earlier_pack_files(folder, archive_file)
    write_outputs(out, files, remove=stale, seal=SHA256SUMS_FILE, owned=owned)


def _result(layout, files, out: Path, elf: Path, settings: PackSettings, options: PackOptions, keys, flash_key, notes,
            loader: LoaderBuild) -> PackResult:
    """What the pack wrote, with where its settings came from and what is worth knowing."""

    def shown(file: str) -> str:
        return _display_path(out / file, options.cwd)

    result = pack_result(layout, files, outdir=out, shown=shown)
    # probe-rs would write the plain app it builds from the ELF: only for a pack written plain
    probe_rs = probe_rs_args(layout, _display_path(elf, options.cwd), shown) if not keys and flash_key is None else result.probe_rs_args
    return result._replace(probe_rs_args=probe_rs, config_files=settings.files_read, config_settings=settings.from_files,
                          config_origins=settings.origins, notes=tuple(dict.fromkeys(notes)), bootloader_build=loader.label)


def boots_with(app, app_data: bytes, revs: tuple[int, int], generation: Generation, *, revisions_chosen: bool = False,
               other_variants: bool = False) -> tuple[list[str], list[str]]:
    """Judge the app under the chosen bootloader (``revs``: the chip revisions in its header; ``generation``:
    its loader rules, from its descriptor): refuse what it would not start; return ``(warnings, notes)``
    for the rest (``boot_rules``).

    The bootloader checks its own header's minimum chip revision, not its maximum
    (``bootloader_common_check_chip_validity`` skips it for ESP_IMAGE_BOOTLOADER), so of an app range
    wider than the bootloader's only the chips below the bootloader's minimum fail to boot the pack.
    That is a note when the app's range is the default, and a warning naming the fix when the user
    chose it (``revisions_chosen``: --min-rev/--max-rev).
    """
    # the app as built is judged from its own segments; a signed one is read back (its padding is the signer's)
    parsed_app = app.parsed if app.parsed is not None and app_data is app.data else parse_image(app_data)
    image = parsed_app.image
    findings = check_app(app.chip, parsed_app, BootContext(bootloader_revs=revs, generation=generation))
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
    # lazy: ~6.5 ms to import, a plain pack skips it
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
    from imgtool.security.encryption import load_flash_key  # lazy: ~2.4 ms to import, a plain pack skips it

    return load_flash_key(path, chip, flash_crypt_conf)


def _signed_app(app, keys) -> bytes:
    """The app secure-padded (ending on an MMU page) and followed by its signature sector."""
    # lazy: ~6.5 ms to import, a plain pack skips it
    from imgtool.security.secure_pad import secure_pad
    from imgtool.security.signing import sign_contents

    return sign_contents(secure_pad(app.image, app.mmu_page_size).to_bytes(), keys)


def _signed_bootloader(boot: bytes, keys) -> bytes:
    """The placed bootloader followed by its signature sector."""
    from imgtool.security.signing import sign_contents  # lazy: ~6.5 ms to import, a plain pack skips it

    return sign_contents(boot, keys)


def _kept_signed_bootloader(raw: bytes, length: int, path, keys, chip: str, warnings: list[str]) -> bytes | None:
    """A bootloader that already carries signatures, kept byte for byte (its header is signed); else None.

    ``length`` is its image's length (before any signature sector); ``keys`` add their blocks after the ones it has.
    """
    # lazy: ~6.5 ms to import, a plain pack skips it
    from imgtool.security.keys import check_chip_schemes
    from imgtool.security.signature_block import signature_offset, signature_sector
    from imgtool.security.signing import existing_blocks, sign, signature_block

    blocks = existing_blocks(raw, length)
    if not blocks:
        return None
    check_chip_schemes(chip, keys, existing=len(blocks))
    warnings.append(f"{path}: the bootloader is signed, so it is written unchanged (its header keeps its own flash settings)")
    contents = bytes(raw[: signature_offset(length)])
    return contents + signature_sector([*blocks, *(signature_block(contents, k, sign(contents, k)) for k in keys)])


def _earlier_pack_files(folder: Path, archive_file: str) -> set[str]:
    """The names an earlier pack wrote in ``folder``: what its ``SHA256SUMS`` lists, itself, and the archive it leaves out."""
    sums = folder / SHA256SUMS_FILE
    if not sums.is_file():
        return set()
    try:
        listed = parse_sha256sums(read_input(sums, "checksum file", limit=MAX_SUMS_BYTES).decode("utf-8"))
    except (InputError, UnicodeDecodeError):
        return set()
    return {*listed, SHA256SUMS_FILE, archive_file} if listed else set()


def _refuse_overwriting_input(out: Path, files: dict, elf: Path, cfg, keys=()) -> None:
    inputs = [elf] + [Path(p) for p in (cfg.partition_table, cfg.bootloader, *keys) if p]
    outputs = {name: os.path.realpath(out / name) for name in files}
    for inp in inputs:
        try:
            inp_resolved = os.path.realpath(inp)  # never raises: a symlink loop is named when it is read
        except OSError:  # pragma: no cover
            continue
        for name, resolved in outputs.items():
            if resolved == inp_resolved:
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


__all__ = ["PackOptions", "pack"]
