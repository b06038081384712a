"""`imgtool pack` (ELF → everything needed to flash and ship) and `imgtool verify`.

Heavy imports (the image builder) happen inside the commands; the summary is plain text, without rich.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import click

from imgtool.atomic import read_input
from imgtool.bootloader.pins import DEFAULT_SET
from imgtool.chips.security import DEFAULT_FLASH_CRYPT_CONF
from imgtool.chips.table import DEFAULT_FLASH_MODE, get_chip
from imgtool.cli.connection import connection_options
from imgtool.cli.context import pack_environment, quiet_downloads, recover_pack_folder, working_folder
from imgtool.cli.options import (
    chip_option,
    flash_freq_option,
    flash_mode_option,
    flash_size_option,
    parse_offset,
    revision_options,
)
from imgtool.elf.reader import ELF_MAGIC
from imgtool.errors import InputError, UsageError
from imgtool.flash.pack_folder import clear_ranges, has_encrypted_parts
from imgtool.output_names import CORE_PARTS, format_file_name
from imgtool.partitions.table import DEFAULT_TABLE_OFFSET

# Not at the top (imgtool --help and flash load this module): imgtool.pack.job (~30 ms, the pipeline),
# imgtool.inspect.verify, imgtool.security (cryptography), imgtool.partitions.data_images (~4 ms) and the
# archive and format modules (~2.5 ms); imgtool.cli.device imports this module (through imgtool.cli.flash),
# so it is imported where it is used.

#: The table offset as the options' help and default spell it.
TABLE_OFFSET_TEXT = f"0x{DEFAULT_TABLE_OFFSET:x}"
#: ``--flash-crypt-conf``'s default as its help spells it.
FLASH_CRYPT_CONF_TEXT = f"0x{DEFAULT_FLASH_CRYPT_CONF:x}"


def _parse_data(ctx, param, value):
    """``LABEL=PATH`` options as ``(label, path)`` pairs; None when none are given (so `flash OUTDIR` sees no pack option)."""
    if not value:
        return None
    # not at the top: a plain pack does not use it (1.1 ms with zlib, -X importtime)
    from imgtool.partitions.data_images import parse_data_option

    return tuple(parse_data_option(item) for item in value) or None


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


@click.command()
@click.argument("target", required=False, type=click.Path(exists=True, path_type=Path), metavar="[OUTDIR|MERGED]")
@connection_options
@click.option("--elf", type=click.Path(dir_okay=False, path_type=Path), help="Also check every loadable ELF section is intact in the app.")
@chip_option()
@click.option("--partition-table-offset", callback=parse_offset, default=TABLE_OFFSET_TEXT, show_default=True, metavar="OFFSET")
@click.option("--key", "--pub-key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="KEY.pem",
              help="Require an app signature made with this key (PEM, public or private; repeatable).")
@click.option("--encrypt-key", type=click.Path(dir_okay=False, path_type=Path), metavar="KEY.bin",
              help="Decrypt a pre-encrypted merged image (pack --encrypt-key) with this key before checking it.")
@click.option("--flash-crypt-conf", callback=parse_offset, metavar="N", help=f"ESP32 only: FLASH_CRYPT_CONFIG [default: {FLASH_CRYPT_CONF_TEXT}].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless verification fails.")
def verify(target, port, baud, before, after, no_stub, elf, chip, partition_table_offset, keys, encrypt_key, flash_crypt_conf, as_json, quiet):
    """Check a pack output folder, merged image or flash dump the way the chip would boot it.

    Without TARGET, reads the connected device back (--port and the other connection options, as
    'imgtool flash' takes them) and checks what is really in its flash.
    """
    # not at the top: `imgtool pack` shares this module and skips the checker (~4.5 ms, -X importtime)
    from imgtool.inspect.verify import verify as do_verify
    from imgtool.security.keys import load_trusted_keys

    if target is not None:
        recover_pack_folder(target)
        _refuse_elf(target)
    trusted = load_trusted_keys(keys)
    if target is None:
        from imgtool.cli.device import device_dump  # not at the top: cli.device imports cli.flash, which imports this module

        source, chip, device_port = device_dump(port, baud, before, after, no_stub, chip, partition_table_offset)
    else:
        source = target
        if encrypt_key is not None or _has_encrypted_parts(target):
            source, chip = _decrypted_image(target, chip, encrypt_key, flash_crypt_conf, partition_table_offset)
    report = do_verify(source, chip=chip, elf=elf, table_offset=partition_table_offset, keys=trusted)
    if target is None:
        report.source = f"flash of the device on {device_port}"
    elif source is not target:
        report.source = os.fspath(target)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet:
        click.echo(f"{report.source}: {report.kind} for {report.chip or 'unknown chip'}")
        for check in report.checks:
            click.echo(f"  {check.status:4} {check}")
    report.raise_for_problems()


def _refuse_elf(target: Path) -> None:
    """An ELF is what ``pack`` reads, not what the chip boots: say so, with the two steps that check it."""
    if target.is_file():
        with open(target, "rb") as f:
            head = f.read(len(ELF_MAGIC))
        if head == ELF_MAGIC:
            raise InputError(
                f"is an ELF file, not a pack; pack it first, then verify the pack: 'imgtool pack {target} -o OUTDIR' "
                f"and 'imgtool verify OUTDIR --elf {target}'",
                path=target,
            )


def _has_encrypted_parts(target: Path) -> bool:
    return target.is_dir() and has_encrypted_parts(target)


def _decrypted_image(target: Path, chip, encrypt_key, flash_crypt_conf, table_offset: int):
    """The merged image in clear (the chip's view of its flash), and the chip it is for."""
    # not at the top: only an encrypted pack needs them (cryptography's ciphers ~7 ms)
    from imgtool.inspect.verify import resolve_input
    from imgtool.security.encryption import AES_BLOCK, decrypt_written, keep_plain_partitions, load_flash_key

    if encrypt_key is None:
        raise UsageError(
            "holds parts encrypted for flash encryption; pass --encrypt-key with the key they were packed with",
            path=target,
            field="--encrypt-key",
        )
    file, hints = resolve_input(target)
    chip = chip or hints.get("chip")
    if chip is None:
        raise UsageError("pass --chip to decrypt this image (flash encryption depends on the chip)", field="--chip")
    key = load_flash_key(encrypt_key, get_chip(chip).name, flash_crypt_conf)
    data = read_input(file, "flash image")
    base = get_chip(chip).bootloader_offset
    clear = decrypt_written(key, data[: len(data) - len(data) % AES_BLOCK], base, clear_ranges(target))
    return keep_plain_partitions(clear, data, base, table_offset) + data[len(clear) :], chip
