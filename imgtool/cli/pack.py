"""`imgtool pack`: ELF → everything needed to flash and ship (`imgtool verify` is :mod:`imgtool.cli.verify`).

Heavy imports (the image builder) happen inside the commands; the summary is plain text, without rich.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from imgtool.bootloader.pins import DEFAULT_SET
from imgtool.chips.security import DEFAULT_FLASH_CRYPT_CONF
from imgtool.chips.table import DEFAULT_FLASH_MODE
from imgtool.cli.context import pack_environment, quiet_downloads, working_folder
from imgtool.cli.options import (
    TABLE_OFFSET_TEXT,
    chip_option,
    flash_freq_option,
    flash_mode_option,
    flash_size_option,
    parse_offset,
    revision_options,
)
from imgtool.output_names import CORE_PARTS, format_file_name

# Not at the top (imgtool --help and flash load this module): imgtool.pack.job (~30 ms, the pipeline),
# imgtool.inspect.verify, imgtool.security (cryptography), imgtool.partitions.data_images (~4 ms) and the
# archive and format modules (~2.5 ms); imgtool.cli.device imports this module (through imgtool.cli.flash),
# so it is imported where it is used.

#: ``--flash-crypt-conf``'s default as its help spells it.
FLASH_CRYPT_CONF_TEXT = f"0x{DEFAULT_FLASH_CRYPT_CONF:x}"


def _parse_data(ctx, param, value):
    """``LABEL=PATH`` options as ``(label, path)`` pairs; None when none are given (so `flash OUTDIR` sees no pack option)."""
    if not value:
        return None
    # not at the top: a plain pack does not use it (1.1 ms with zlib, -X importtime)
    from imgtool.partitions.data_images import parse_data_option

    return tuple(parse_data_option(item) for item in value)


#: The options `pack` and `flash ELF` share, in the order `-h` lists them (each sets a field of imgtool.pack.options.PackOptions).
PACK_OPTIONS = (
    flash_size_option,
    flash_mode_option(f"SPI flash mode [default: {DEFAULT_FLASH_MODE}]; qio and qout are written as dio, as ESP-IDF does."),
    flash_freq_option,
    revision_options,
    click.option("--partition-table", metavar="CSV|BIN|PRESET", help="Partition table file or preset name [default: nvs, phy_init, factory app filling the flash]."),
    click.option("--partition-table-offset", callback=parse_offset, metavar="OFFSET", help=f"Where the partition table goes [default: {TABLE_OFFSET_TEXT}]."),
    click.option("--bootloader", type=click.Path(dir_okay=False, path_type=Path), help="Use this bootloader .bin instead of the pinned ESP-IDF one."),
    click.option("--bootloader-variant", metavar="VARIANT", help="Pinned bootloader build, e.g. 26mhz or v0 [default: the one for the app's chip revisions; see 'bootloader list']."),
    click.option("--bootloader-set", metavar="SET",
                 help=f"Pinned bootloader set: idf5.5 (espflash v4.5.0's ESP-IDF v5.5 builds) or idf6.1 (ESP-IDF release/v6.1) [default: {DEFAULT_SET}]."),
    click.option("--offline", is_flag=True, help="Never download; use the bootloader cache or $IMGTOOL_BOOTLOADER_MIRROR folder."),
    click.option("--target-app-partition", metavar="NAME", help="App partition to place the app in [default: factory, else ota_0]."),
    click.option("--data", multiple=True, callback=_parse_data, metavar="LABEL=PATH",
                 help="Fill data partition LABEL: a .csv becomes an NVS image, a folder a LittleFS, any other file is written as it is (repeatable)."),
)


def pack_options(command):
    """Decorate ``command`` with :data:`PACK_OPTIONS`."""
    for option in reversed(PACK_OPTIONS):
        command = option(command)
    return command


def pack_kwargs(*, flash_size, flash_mode, flash_freq, min_rev, max_rev, partition_table, partition_table_offset,
                bootloader, bootloader_variant, offline, target_app_partition, data=None, bootloader_set=None) -> dict:
    """The click values of :data:`PACK_OPTIONS` as fields of :class:`imgtool.pack.options.PackOptions`."""
    return dict(
        flash_size=flash_size,
        flash_mode=flash_mode,
        flash_freq=flash_freq,
        min_rev_full=min_rev,
        max_rev_full=max_rev,
        partition_table=partition_table,
        table_offset=partition_table_offset,
        bootloader=bootloader,
        bootloader_variant=bootloader_variant,
        bootloader_set=bootloader_set,
        offline=offline,
        app_partition=target_app_partition,
        data=data or (),
    )


@click.command()
@click.argument("elf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), help="Output folder [default: the ELF's folder].")
@chip_option()
@pack_options
@click.option("--fill-flash-size", is_flag=True, help="Pad the merged image with 0xFF to the full flash size.")
@click.option("--sign-key", "sign_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="KEY.pem",
              help="Sign the app for Secure Boot V2 with this PEM private key (repeat for up to three keys).")
@click.option("--sign-bootloader", is_flag=True, help="Also sign the --bootloader file with the --sign-key keys.")
@click.option("--encrypt-key", type=click.Path(dir_okay=False, path_type=Path), metavar="KEY.bin",
              help="Write the parts pre-encrypted with this flash encryption key (for a device in release mode).")
@click.option("--flash-crypt-conf", callback=parse_offset, metavar="N",
              help=f"ESP32 only: the FLASH_CRYPT_CONFIG eFuse value the parts are encrypted for [default: {FLASH_CRYPT_CONF_TEXT}].")
@click.option("--uf2", is_flag=True, help="Also write NAME.uf2 (= esptool merge-bin --format uf2 @flash_args).")
@click.option("--hex", "intel_hex", is_flag=True, help="Also write NAME.hex (= esptool merge-bin --format hex @flash_args).")
@click.option("--archive", is_flag=True,
              help="Also write NAME-VERSION-CHIP.zip of the outputs (fixed timestamps: 1980-01-01 or $SOURCE_DATE_EPOCH).")
@click.option("--force", is_flag=True, help="Replace files in the output folder that no earlier pack wrote there.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors (no summary, no notes).")
def pack(elf, outdir, chip, flash_size, flash_mode, flash_freq, min_rev, max_rev, partition_table, partition_table_offset,
         bootloader, bootloader_variant, bootloader_set, offline, target_app_partition, data, fill_flash_size, sign_keys,
         sign_bootloader, encrypt_key, flash_crypt_conf, uf2, intel_hex, archive, force, as_json, quiet):
    """Build the app image, partition table, bootloader, merged image and esptool argument files for ELF."""
    # not at the top: `imgtool verify` shares this module and skips the packer (~5 ms, -X importtime)
    from imgtool.pack.job import PackOptions
    from imgtool.pack.job import pack as do_pack  # the command is named pack too

    result = do_pack(elf, PackOptions(
        outdir=outdir,
        chip=chip,
        **pack_kwargs(
            flash_size=flash_size, flash_mode=flash_mode, flash_freq=flash_freq, min_rev=min_rev, max_rev=max_rev,
            partition_table=partition_table,
            partition_table_offset=partition_table_offset, bootloader=bootloader, bootloader_variant=bootloader_variant,
            bootloader_set=bootloader_set, offline=offline, target_app_partition=target_app_partition, data=data,
        ),
        fill_flash_size=fill_flash_size,
        quiet=quiet_downloads(quiet or as_json),
        sign_keys=tuple(sign_keys),
        sign_bootloader=sign_bootloader,
        encrypt_key=encrypt_key,
        flash_crypt_conf=flash_crypt_conf,
        formats=tuple(fmt for fmt, wanted in (("uf2", uf2), ("hex", intel_hex)) if wanted),
        archive=archive,
        force=force,
        **pack_environment(),
    ))
    for warning in result.warnings:
        click.echo(f"imgtool: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        print_summary(result)


def print_summary(result) -> None:
    """The human summary: plain text through click (no rich: its import is a large share of a whole ``pack``).

    click drops the bold when standard output is not a terminal.
    """
    # not at the top: loaded with the packer, which `imgtool verify` skips
    from imgtool.flash.archive import ARCHIVE_SUFFIX
    from imgtool.flash.formats import FORMATS

    f = result.flash
    from_files = ""
    if result.config_settings:
        by_file: dict[str, list[str]] = {}
        for setting in result.config_settings:
            by_file.setdefault(result.config_origins.get(setting) or "", []).append(_setting_name(setting))
        from_files = "  ({})".format(
            "; ".join(f"{', '.join(names)} from {_shown_path(file)}" for file, names in by_file.items())
        )
    click.echo(f"{click.style(result.chip, bold=True)}  flash {f.size}, {f.mode}, {f.freq}  →  {result.outdir or '.'}{from_files}")
    m = result.merged
    rows = [(p.name, f"0x{p.offset:x}", f"{p.size:,}", p.file) for p in result.parts]
    rows.append(("merged", f"0x{m.offset:x}", f"{m.size:,}", m.file))
    for line in _columns(("Part", "Offset", "Size", "File"), rows, right=(1, 2)):
        click.echo(line)
    # outputs beyond the parts and the merged image (--uf2, --hex, --archive), listed under the table
    release_suffixes = (*(format_file_name("", fmt) for fmt in FORMATS), ARCHIVE_SUFFIX)
    extras = [f for f in result.files if f.endswith(release_suffixes)]
    if extras:
        click.echo(f"also: {', '.join(extras)}")
    if result.bootloader_build:
        click.echo(f"bootloader: {result.bootloader_build}")
    click.echo(
        f"app: {result.app_size:,} of {result.app_partition_size:,} bytes in '{result.app_partition}' "
        f"({result.app_usage * 100:.1f}% used)"
    )
    outdir = str(result.outdir or ".")
    kept = "keeps NVS" if all(p.name in CORE_PARTS for p in result.parts) else "keeps other data partitions"
    click.echo(f"flash with ({kept}; --merged writes the merged image):")
    click.echo(f"  imgtool flash {shlex.quote(outdir)} --port PORT")
    click.echo(f"  or, from {outdir}: esptool --chip {result.chip} write-flash @flash_args")
    if result.probe_rs_command:
        click.echo(f"  or, with a debug probe: {result.probe_rs_command}")
    for note in result.notes:
        click.echo(f"note: {note}")


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]], *, right: tuple[int, ...] = ()) -> list[str]:
    """Rows as aligned text columns two spaces apart; columns in ``right`` are right-justified."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in table
    ]


def _shown_path(file: str) -> str:
    """A project file as the user would type it: relative to the working folder when below it."""
    try:
        return os.fspath(Path(file).resolve().relative_to(working_folder().resolve()))
    except ValueError:
        return file


def _setting_name(setting: str) -> str:
    """``partition_table`` → ``partition-table``; ``data.LABEL`` keeps the label as it is spelled."""
    key, dot, label = setting.partition(".")
    return key.replace("_", "-") + dot + label
