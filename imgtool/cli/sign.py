"""`imgtool sign`: add Secure Boot V2 signatures to an existing image (OTA files, user bootloaders)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from imgtool.atomic import write_bytes
from imgtool.cli.options import chip_option
from imgtool.errors import UsageError

_pem = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Signed image to write.")
@click.option("--key", "keys", multiple=True, type=_pem, metavar="KEY.pem", help="PEM private key to sign with (repeat for up to three).")
@click.option("--pub-key", "pub_keys", multiple=True, type=_pem, metavar="PUB.pem",
              help="Public key of a signature made elsewhere (pairs with --signature, in order).")
@click.option("--signature", "signatures", multiple=True, type=_pem, metavar="SIG.bin",
              help="Signature made elsewhere over the padded image: RSA-PSS raw, or ECDSA DER or r||s.")
@click.option("--pad-only", is_flag=True, help="Only write the secure-padded image: the exact bytes a remote signer signs.")
@click.option("--no-pad", is_flag=True, help="Do not secure-pad (for bootloaders and other non-app images).")
@chip_option("Chip whose Secure Boot checks the image [default: from the image header].")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors.")
def sign(image, output, keys, pub_keys, signatures, pad_only, no_pad, chip, quiet):
    """Sign an app image for Secure Boot V2, or append a signature made by an HSM or signing server."""
    from imgtool.security.signing import pad_image, sign_image  # 21 ms of start-up

    inputs = [*keys, *pub_keys, *signatures]
    if any(os.path.realpath(output) == os.path.realpath(p) for p in inputs):  # realpath: never raises on a symlink loop
        raise UsageError("the output would overwrite a key or signature file; choose another -o", path=output, field="--output")
    if pad_only:
        if inputs:
            raise UsageError("--pad-only writes the bytes to sign; it takes no keys or signatures", field="--pad-only")
        data = pad_image(image, chip=chip)
        write_bytes(output, data)
        if not quiet:
            click.echo(f"wrote {output} ({len(data):,} bytes to sign)")
        return
    result = sign_image(image, keys=keys, pub_keys=pub_keys, signatures=signatures, chip=chip, pad=not no_pad)
    write_bytes(output, result.data)
    for warning in result.warnings:
        click.echo(f"imgtool: warning: {warning}", err=True)
    if not quiet:
        click.echo(
            f"{result.chip}: wrote {output} ({len(result.data):,} bytes, {result.blocks} signature block"
            f"{'s' if result.blocks != 1 else ''}, {result.added} added)"
        )
