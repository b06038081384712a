"""`imgtool manifest`: one esp-web-tools manifest (and optionally an ESP Launchpad TOML) for packs of several chips."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgtool.cli.context import recover_pack_folder
from imgtool.errors import UsageError

@click.command()
@click.argument("packs", nargs=-1, required=True, metavar="OUTDIR...", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), metavar="DIR/manifest.json",
              help="Manifest to write; each pack's files are copied beside it into a folder per chip (DIR/esp32c3/...).")
@click.option("--name", help="Name the web flasher shows [default: the apps' project name].")
@click.option("--version", "version", help="Version the web flasher shows [default: the apps' version].")
@click.option("--launchpad", is_flag=True, help="Also write DIR/launchpad.toml for ESP Launchpad (one image per chip, flashed at 0x0).")
@click.option("--base-url", metavar="URL", help="With --launchpad: the URL DIR is published at (Launchpad's firmware_images_url).")
@click.option("--force", is_flag=True, help="Replace files in the chip folders that no earlier manifest there lists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors.")
def manifest(packs, output, name, version, launchpad, base_url, force, as_json, quiet):
    """Write one web-flasher manifest for packs of several chips (one pack per chip)."""
    from imgtool.release.web_manifest import plan_release, write_release  # 3 ms of start-up

    if launchpad and not base_url:
        raise UsageError(
            "ESP Launchpad downloads images from firmware_images_url + path; pass --base-url with the URL the "
            "manifest folder is published at",
            field="--base-url",
        )
    if base_url and not launchpad:
        raise UsageError("--base-url only sets ESP Launchpad's firmware_images_url; add --launchpad", field="--base-url")
    for folder in packs:
        recover_pack_folder(folder)
    release = plan_release(packs, name=name, version=version, launchpad_base_url=base_url if launchpad else None)
    written = write_release(release, output, force=force)
    if as_json:
        click.echo(json.dumps(release.to_dict(written), indent=2))
    elif not quiet:
        builds = ", ".join(f"{p.family} ({p.folder})" for p in release.packs)
        click.echo(f"wrote {written}: {release.name} {release.version}, {len(release.packs)} build{'s' if len(release.packs) != 1 else ''}: {builds}")
        if launchpad:
            click.echo(f"wrote {written.parent / 'launchpad.toml'} (images from {release.launchpad_base_url})")
