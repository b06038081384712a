"""`imgtool verify`: a pack output folder, merged image, flash dump or the connected device, checked the way the chip boots it.

Its own module so that `imgtool pack` does not build this command's options or load the connection
options (imgtool.cli.connection and imgtool.device.options) it alone of the two takes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from imgtool.atomic import read_input
from imgtool.chips.table import get_chip
from imgtool.cli.connection import connection_options
from imgtool.cli.context import recover_pack_folder
from imgtool.cli.options import TABLE_OFFSET_TEXT, chip_option, parse_offset
from imgtool.cli.pack import FLASH_CRYPT_CONF_TEXT
from imgtool.elf.reader import ELF_MAGIC
from imgtool.errors import InputError, UsageError
from imgtool.flash.pack_folder import clear_ranges, has_encrypted_parts


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
    # not at the top: `imgtool -h` imports this module to list the command and skips the checker (~12 ms, -X importtime)
    from imgtool.inspect.verify import verify as do_verify
    from imgtool.security.keys import load_trusted_keys

    if target is not None:
        recover_pack_folder(target)
        _refuse_elf(target)
    trusted = load_trusted_keys(keys)
    if target is None:
        from imgtool.cli.device import device_dump  # not at the top: only a device read-back needs it (~6 ms, -X importtime)

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
    target_chip = get_chip(chip)
    key = load_flash_key(encrypt_key, target_chip.name, flash_crypt_conf)
    data = read_input(file, "flash image")
    base = target_chip.bootloader_offset
    clear = decrypt_written(key, data[: len(data) - len(data) % AES_BLOCK], base, clear_ranges(target))
    return keep_plain_partitions(clear, data, base, table_offset) + data[len(clear) :], chip
