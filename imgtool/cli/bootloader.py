"""`imgtool bootloader fetch|list`: the pinned prebuilt bootloaders and the local cache."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgtool.atomic import write_bytes
from imgtool.bootloader.pins import BOOTLOADER_SETS, DEFAULT_SET, get_set, load_manifest
from imgtool.chips.table import CHIPS
from imgtool.cli.console import plain_console
from imgtool.cli.context import bootloader_store, quiet_downloads
from imgtool.errors import UsageError

#: Hex digits of the SHA-256 shown in the table: enough to compare by eye.
SHA_PREFIX_DIGITS = 12


@click.group()
def bootloader():
    """Prebuilt ESP-IDF bootloaders pinned by SHA-256, fetched once and cached."""


CHIP_CHOICE = click.Choice(sorted(CHIPS), case_sensitive=False)


@bootloader.command()
@click.argument("chip_arg", metavar="[CHIP]", required=False, type=CHIP_CHOICE)
@click.option("--chip", type=CHIP_CHOICE, help="Target chip (or give it as the argument).")
@click.option("--variant", help="Build variant, e.g. 26mhz or v0 [default: the chip's default; see 'bootloader list'].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Also copy the bootloader here.")
@click.option("--set", "bootloader_set", metavar="SET", help=f"Pinned set: {' or '.join(s.name for s in BOOTLOADER_SETS)} [default: {DEFAULT_SET}].")
@click.option("--offline", is_flag=True, help="Never use the network: only the cache or a mirror folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")
def fetch(chip_arg, chip, variant, bootloader_set, output, offline, quiet):
    """Download (or find in the cache) the pinned bootloader for CHIP."""
    if chip_arg and chip and chip_arg.lower() != chip.lower():
        raise UsageError(f"two chips given ({chip_arg} and --chip {chip}); give one", field="--chip")
    chip = chip or chip_arg
    if not chip:
        raise UsageError(f"which chip? e.g. 'imgtool bootloader fetch esp32c3' (one of {', '.join(sorted(CHIPS))})", field="CHIP")

    manifest = load_manifest(bootloader_set=get_set(bootloader_set, option="--set").name)
    entry = manifest.lookup(chip, variant)
    store = bootloader_store()
    data = store.fetch(entry.chip, variant=entry.variant, offline=offline, quiet=quiet_downloads(quiet), manifest=manifest)
    where = store.path(entry)
    if output is not None:
        where = write_bytes(output, data)
    if not quiet:
        click.echo(
            f"{entry.chip} bootloader ({entry.variant}, set {entry.bootloader_set}, ESP-IDF {entry.esp_idf}, {len(data)} bytes): {where}"
        )


@bootloader.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as one JSON array.")
def list_(as_json):
    """Show every pinned bootloader of both sets (idf5.5, the default, and idf6.1) and whether it is cached."""
    from rich.table import Table  # rich costs 30 ms of start-up; only this listing draws a table

    store = bootloader_store()
    sets = ", ".join(f"{s.name}{' (default)' if s.name == DEFAULT_SET else ''}" for s in BOOTLOADER_SETS)
    table = Table(title=f"Pinned bootloaders, sets {sets} (cache: {store.cache_dir})", title_justify="left")
    for name, justify in (
        ("Set", "left"),
        ("Chip", "left"),
        ("Variant", "left"),
        ("ESP-IDF", "left"),
        ("Size", "right"),
        ("SHA-256", "left"),
        ("Cached", "left"),
        ("For", "left"),  # the crystal or chip revisions a variant is built for, so a hint naming this list leads somewhere
    ):
        table.add_column(name, justify=justify)
    manifests = [load_manifest(bootloader_set=s.name) for s in BOOTLOADER_SETS]
    statuses = [(manifest, status) for manifest in manifests for status in store.statuses(manifest)]
    if as_json:
        rows = [
            {**s.entry._asdict(), "crystal_mhz": s.entry.crystal_mhz, "cached": s.cached, "path": str(s.path)}
            for _, s in statuses
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for manifest, status in statuses:
        entry = status.entry
        several = len(manifest.variants(entry.chip)) > 1
        variant = f"{entry.variant} (default)" if entry.default and several else entry.variant
        table.add_row(
            entry.bootloader_set,
            entry.chip,
            variant,
            entry.esp_idf,
            f"{entry.size:,}",
            entry.sha256[:SHA_PREFIX_DIGITS],
            "yes" if status.cached else "no",
            entry.note.replace("; the default", ""),
        )
    plain_console().print(table)
