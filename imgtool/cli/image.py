"""`imgtool image` (ELF → app .bin) and `imgtool info` (what an image holds)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from imgtool.atomic import STDOUT, write_output
from imgtool.chips.table import revision_range
from imgtool.cli.console import plain_console, styled
from imgtool.cli.options import (
    chip_option,
    flash_freq_option,
    flash_mode_option,
    flash_size_option,
    revision_options,
)
from imgtool.errors import UsageError


def echo_warnings(warnings) -> None:
    for warning in warnings:
        click.echo(f"imgtool: warning: {warning}", err=True)


def print_size_report(report, console) -> None:
    from rich.table import Table  # not at the top: image --json and info --json draw no table (~10 ms)

    table = Table(title="Memory use", title_justify="left")
    table.add_column("Region")
    table.add_column("Used", justify="right")
    table.add_column("Capacity", justify="right")
    table.add_column("%", justify="right")
    for row in report.rows:
        table.add_row(
            row.name,
            f"{row.used:,}",
            f"{row.capacity:,}" if row.capacity else "-",
            f"{row.percent:.1f}" if row.percent is not None else "-",
        )
    console.print(table)


@click.command()
@click.argument("elf", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output image, - for standard output [default: ELF name + .bin].")
@chip_option("Target chip (detected from the ELF when omitted).")
@flash_mode_option()
@flash_size_option
@flash_freq_option
@revision_options
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but warnings and errors.")
def image(elf, output, chip, flash_mode, flash_size, flash_freq, min_rev, max_rev, as_json, quiet):
    """Convert a firmware ELF into a bootable ESP app image."""
    from imgtool.image.build import build_app_image  # not at the top: info loads this module too (~16 ms)

    result = build_app_image(
        elf,
        chip=chip,
        flash_mode=flash_mode,
        flash_size=flash_size,
        flash_freq=flash_freq,
        min_rev_full=min_rev,
        max_rev_full=max_rev,
    )
    target = output or elf.with_suffix(".bin")
    to_stdout = str(target) == STDOUT
    if to_stdout and as_json:
        raise UsageError("-o - puts the image on standard output, where --json would go too; drop one", field="--json")
    if not to_stdout and os.path.realpath(target) == os.path.realpath(elf):  # realpath: a symlink loop is no traceback
        raise UsageError("the output would overwrite the ELF; pass -o with another name", path=elf, field="--output")
    write_output(target, result.data)
    echo_warnings(result.warnings)
    if as_json:
        doc = {
            "chip": result.chip.name,
            "output": str(target),
            "size": len(result.data),
            "segments": len(result.image.segments),
            "rom_loaded": result.rom_loaded,
            "memory": result.size_report.as_dict(),
            "warnings": list(result.warnings),
        }
        click.echo(json.dumps(doc, indent=2))
    elif not quiet:
        console = plain_console(stderr=to_stdout)  # the image itself is on standard output
        console.print(f"{result.chip.name}: wrote {target} ({len(result.data):,} bytes, {len(result.image.segments)} segments)")
        if result.rom_loaded:
            console.print("every section is in RAM: built as the ROM loads it (no app descriptor, no flash mapping)")
        print_size_report(result.size_report, console)


#: ``info`` exits with this when the report lists problems (text or JSON, one image or a merged one), as ``verify`` does.
PROBLEMS_EXIT = 1


@click.command()
@click.argument("image_file", metavar="IMAGE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--key", "--pub-key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="KEY.pem",
              help="Say whether a signature block was made with this key (PEM, public or private; repeatable).")
def info(image_file, as_json, keys):
    """Show what an ESP image holds (header, segments, checksum and hash, app descriptor, signatures), or every part of a merged image or flash dump."""
    # not at the top: imgtool image loads this module too and reads no image (~6 ms)
    from imgtool.inspect.flash_contents import describe_flash
    from imgtool.inspect.image_info import describe
    from imgtool.security.keys import load_trusted_keys

    flash = describe_flash(image_file)
    if flash is not None:
        _print_flash(flash, as_json)
        if flash["problems"]:
            raise SystemExit(PROBLEMS_EXIT)
        return
    report = describe(image_file, load_trusted_keys(keys))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        if report["problems"]:
            raise SystemExit(PROBLEMS_EXIT)
        return
    # not at the top: --json draws no table (~10 ms)
    from rich.table import Table
    from rich.text import Text

    console = plain_console()
    console.print(Text.assemble(styled(str(image_file), "bold"), f" — {report['chip'] or 'unknown chip'} image, {report['size']:,} bytes"))
    console.print(
        f"entry 0x{report['entry']:08x}, flash {report['flash_mode']} {report['flash_size']} {report['flash_freq']}, "
        f"chip revision {revision_range(report['min_rev_full'], report['max_rev_full'])}"
    )
    table = Table(title="Segments", title_justify="left")
    for col in ("#", "Load address", "Length", "File offset", "Memory"):
        table.add_column(col, justify="right" if col != "Memory" else "left")
    for seg in report["segments"]:
        table.add_row(
            str(seg["index"]), f"0x{seg['addr']:08x}", f"0x{seg['length']:x}", f"0x{seg['data_offset']:x}", seg["memory"]
        )
    console.print(table)
    console.print(f"checksum 0x{report['checksum']['stored']:02x} ({'valid' if report['checksum']['valid'] else 'INVALID'})")
    if report["sha256"] is not None:
        console.print(f"sha256 {report['sha256']['stored']} ({'valid' if report['sha256']['valid'] else 'INVALID'})")
    desc = report["app_desc"]
    if desc:
        console.print(
            f"app: {desc['project_name']} {desc['version']} built {desc['date']} {desc['time']}"
            f"{', ELF sha256 ' + desc['app_elf_sha256'] if desc['app_elf_sha256'].strip('0') else ''}"
        )
    if report["app_rules"]:
        console.print(
            f"judged by the {' and '.join(report['app_rules'])} loader rules (an app image does not name its bootloader)"
        )
    build = report["bootloader_build"]
    if build:
        built = f"bootloader built with ESP-IDF {build['idf_ver']}" if build["idf_ver"] else "no bootloader descriptor"
        console.print(f"{built}: apps it starts are judged by the {build['rules']} loader rules")
    for note in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {note}", markup=True, highlight=False)
    for sig in report["signatures"]:
        state = "valid" if sig["valid"] else "INVALID"
        if sig["trusted"] is not None:
            state += ", made with the given key" if sig["trusted"] else ", made with another key"
        console.print(f"signature block {sig['index']}: {sig['scheme'] or 'unknown scheme'}, key digest {sig['key_digest']} ({state})")
    for note in report["problems"]:
        console.print(Text.assemble(styled("problem:", "red"), f" {note}"))
    if report["problems"]:
        raise SystemExit(PROBLEMS_EXIT)


def _print_flash(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    # not at the top: --json draws no table (~10 ms)
    from rich.table import Table
    from rich.text import Text

    console = plain_console()
    console.print(
        Text.assemble(
            styled(report["source"], "bold"),
            f" — {report['kind']} for {report['chip']}, {report['size']:,} bytes from flash 0x{report['base']:x}",
        )
    )
    table = Table(title="Parts", title_justify="left")
    for col in ("Part", "Type", "Offset", "Size", "Content"):
        table.add_column(col, justify="right" if col in ("Offset", "Size") else "left")
    for part in report["parts"]:
        kind = f"{part['type']}/{part['subtype']}" if "type" in part else ""
        size = f"{part['size']:,}" if part["size"] is not None else ""
        table.add_row(part["name"], kind, f"0x{part['offset']:x}", size, part["content"])
    console.print(table)
    if report.get("boot_partition"):
        console.print(f"boots: '{report['boot_partition']}' ({report['boot_reason']})", soft_wrap=True)
    if report["problems"]:
        console.print(f"{len(report['problems'])} problem(s); 'imgtool verify {report['source']}' checks every part")
