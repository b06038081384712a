#!/usr/bin/env python3
"""Benchmark: whole-process ``imgtool pack`` against the esptool route doing the same work.

The esptool route is ``esptool --chip X elf2image [--use-segments]`` (ELF → app .bin) followed by
``esptool --chip X merge-bin`` of bootloader, partition table and app (the bootloader and table
are taken from imgtool's own output, so both routes merge the same parts). imgtool additionally
writes the CSV, argument files, manifest and SHA256SUMS.

Both run as fresh processes, side by side in each round (what a user or CI job pays). imgtool's
bootloader cache is warmed from the corpus mirror first, so no network is used. Reports, per corpus
ELF, the median wall time over N rounds, the ratio, and the peak RSS of each process (``os.wait4``
rusage of that child); then the same for a full 16 MB flash image (``--fill-flash-size`` /
``merge-bin --pad-to-size 16MB``). esptool 5.6 ``elf2image`` refuses several esp-hal ELFs ("lands
in same 64 KB flash mapping"); those rows show imgtool alone and count for no ratio.

In the first case's rounds it also times the start-up floor: Python alone, and Python importing
only the modules of installed packages (click, construct, pyelftools, filelock, ...) that one pack
was seen to load, with no imgtool code and no work; then that import without each package in turn.
No pack can be faster than that floor while it uses those packages.

    python bench/bench_pack.py [--runs 7] [--corpus ../shared/corpus] [--chips esp32,esp32s2]

Goals: imgtool median <= 0.35x the esptool route; peak RSS <= 80 MiB for the 16 MB image.
Always exits 0 (it is a report, not a test). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("IMGTOOL_CORPUS", REPO.parent / "shared" / "corpus"))
FLASH_SIZE = "4MB"
FILL_FLASH_SIZE = "16MB"
TIME_GOAL = 0.35
RSS_GOAL_MIB = 80


def run(argv: list[str], env: dict, cwd: Path | None = None) -> tuple[float, float, int, str]:
    """(seconds, peak RSS MiB, exit status, stderr tail) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss // 1024
    tail = stderr.decode("utf-8", "replace").strip().splitlines()
    return elapsed, rss_kib / 1024, proc.returncode, tail[-1] if tail else ""


def imgtool_argv(elf: Path, outdir: Path, *extra: str, size: str = FLASH_SIZE) -> list[str]:
    # --chip, as the esptool route is told the chip too
    return [
        sys.executable, "-m", "imgtool", "pack", str(elf), "-o", str(outdir),
        "--chip", elf.name, "--flash-size", size, "-q", *extra,
    ]


def esptool_argvs(
    chip: str, elf: Path, work: Path, ref: Path, *, pad: bool = False, segments: bool = True, size: str = FLASH_SIZE
) -> list[list[str]]:
    from imgtool.chips import get_chip

    boot_off = get_chip(chip).bootloader_offset
    esptool = [sys.executable, "-m", "esptool", "--chip", chip]
    app = work / "app.bin"
    merge = [
        *esptool, "merge-bin", "-o", str(work / "merged.bin"),
        "--flash-mode", "dio", "--flash-size", size,
        *(["--pad-to-size", size] if pad else []),
        hex(boot_off), str(ref / "bootloader.bin"), "0x8000", str(ref / "partitions.bin"), "0x10000", str(app),
    ]
    image = [*esptool, "elf2image", *(["--use-segments"] if segments else []), "--flash-mode", "dio", "--flash-size", size, "-o", str(app), str(elf)]
    return [image, merge]


def route(argvs: list[list[str]], env: dict) -> tuple[float, float, int, str]:
    total, peak = 0.0, 0.0
    for argv in argvs:
        secs, rss, code, err = run(argv, env)
        total += secs
        peak = max(peak, rss)
        if code != 0:
            return total, peak, code, err
    return total, peak, 0, ""


STACK_PROBE = """
import atexit, json, sys, sysconfig
from pathlib import Path

LISTING = Path(sys.argv.pop(1))

def _installed():
    roots = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    names = []
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and name.split(".")[0] not in ("imgtool", "_distutils_hack") and not name.startswith("__editable__"):
            if any(root in Path(path).resolve().parents for root in roots):
                names.append(name)
    LISTING.write_text(json.dumps(sorted(names)))

atexit.register(_installed)
sys.argv[0] = "imgtool"
from imgtool.cli import run
sys.exit(run())
"""


def importing(names: list[str]) -> list[str]:
    """A Python process that imports ``names`` and does nothing else."""
    return [sys.executable, "-c", ("import " + ", ".join(names)) if names else "pass"]


def stack_modules(elf: Path, tmp: Path, env: dict) -> list[str]:
    """The modules of installed packages (click, construct, filelock, ...) that one ``pack`` loads;
    empty when the probe fails or they do not import on their own (a failing import is no floor)."""
    listing = tmp / "stack-modules.json"
    argv = imgtool_argv(elf, tmp / "stack-probe")
    run([sys.executable, "-c", STACK_PROBE, str(listing), *argv[3:]], env)  # argv[3:]: after "-m imgtool"
    modules = json.loads(listing.read_text()) if listing.exists() else []
    return modules if modules and run(importing(modules), env)[2] == 0 else []


def packages_of(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules})


def floor_argvs(modules: list[str]) -> list[list[str]]:
    """Python alone; Python importing just the installed modules a pack loads (no imgtool code, no
    work); then the same without each package in turn (what leaving that package out would save)."""
    without = [importing([m for m in modules if m.split(".")[0] != pkg]) for pkg in packages_of(modules)]
    return [importing([]), importing(modules), *without]


def compare(
    elf: Path, tmp: Path, env: dict, runs: int, *, size: str = FLASH_SIZE, fill: bool = False, floors: list[list[str]] = ()
) -> tuple:
    """(imgtool median s, imgtool peak MiB, esptool median s | None, esptool peak MiB | None, note, floor medians s).

    ``floors`` are extra commands timed in the same rounds (the start-up floor), so they see the same load.
    """
    chip = elf.name
    tag = f"{chip}-{size}{'-fill' if fill else ''}"
    extra = ("--fill-flash-size",) if fill else ()
    ref = tmp / f"ref-{tag}"
    _s, _r, code, err = run(imgtool_argv(elf, ref, *extra, size=size), env)  # warms the bootloader cache and bytecode
    if code != 0:
        return None, None, None, None, f"imgtool failed: {err}", ()
    # esptool converts some ELFs only from program headers, others only from sections; this also warms bytecode
    segments = None
    for use_segments in (False, True):
        work = tmp / f"warm-{tag}-{use_segments}"
        work.mkdir()
        if route(esptool_argvs(chip, elf, work, ref, pad=fill, segments=use_segments, size=size), env)[2] == 0:
            segments = use_segments
            break
    im_t, im_rss, es_t, es_rss = [], [], [], []
    floor_t = [[] for _ in floors]
    note = "" if segments is not None else "esptool elf2image refuses this ELF"
    for i in range(runs):  # side by side: one of each per round, so load changes hit both alike
        s, r, _c, _e = run(imgtool_argv(elf, tmp / f"im-{tag}-{i}", *extra, size=size), env)
        im_t.append(s)
        im_rss.append(r)
        for argv, times in zip(floors, floor_t):
            times.append(run(argv, env)[0])
        if segments is None:
            continue
        work = tmp / f"es-{tag}-{i}"
        work.mkdir()
        s, r, c, e = route(esptool_argvs(chip, elf, work, ref, pad=fill, segments=segments, size=size), env)
        if c != 0:
            return statistics.median(im_t), max(im_rss), None, None, f"esptool route fails: {e[:70]}", ()
        es_t.append(s)
        es_rss.append(r)
    return (
        statistics.median(im_t),
        max(im_rss),
        statistics.median(es_t) if es_t else None,
        max(es_rss) if es_rss else None,
        note,
        tuple(statistics.median(t) for t in floor_t),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--chips", help="comma-separated corpus ELF names [default: all]")
    args = parser.parse_args()

    elfs = sorted(p for p in (args.corpus / "elf").glob("*") if p.is_file())
    if args.chips:
        elfs = [p for p in elfs if p.name in args.chips.split(",")]
    if not elfs:
        print(f"no corpus ELFs in {args.corpus / 'elf'}; nothing to measure")
        return 0
    with tempfile.TemporaryDirectory(prefix="imgtool-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ)
        env["IMGTOOL_BOOTLOADER_MIRROR"] = str(args.corpus / "bootloaders")
        env["IMGTOOL_CACHE_DIR"] = str(tmp / "cache")
        # Installed packages (esptool, pyelftools, ...) ship compiled bytecode; an editable checkout
        # gets it on first import. Let both routes use bytecode, kept in the temp dir so the
        # checkout is not touched (and whatever PYTHONDONTWRITEBYTECODE the caller has is ignored).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")

        # the start-up floor is timed in the first case's rounds, beside both routes
        stack = stack_modules(elfs[0], tmp, env)
        rows = [
            (elf.name, FLASH_SIZE, *compare(elf, tmp, env, args.runs, floors=floor_argvs(stack) if i == 0 and stack else ()))
            for i, elf in enumerate(elfs)
        ]
        # a full 16 MB image, for time and memory: the first ELF esptool converts
        fill_elf = next((elf for elf, row in zip(elfs, rows) if row[4] is not None), elfs[0])
        rows.append((f"{fill_elf.name} fill", FILL_FLASH_SIZE, *compare(fill_elf, tmp, env, args.runs, size=FILL_FLASH_SIZE, fill=True)))

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}" if unit == "s" else f"{v:.1f}{unit}"

    print(f"imgtool pack vs esptool elf2image + merge-bin  (median of {args.runs} rounds, fresh processes, side by side)")
    print(f"{'case':<13} {'flash':>5} {'imgtool':>8} {'esptool':>8} {'ratio':>6} {'imgtool RSS':>12} {'esptool RSS':>12}  note")
    ratios = []
    for case, size, it, irss, et, erss, note, _floors in rows:
        ratio = (it / et) if (it and et) else None
        if ratio is not None:
            ratios.append(ratio)
        print(
            f"{case:<13} {size:>5} {fmt(it, 's'):>8} {fmt(et, 's'):>8} {'n/a' if ratio is None else f'{ratio:.2f}':>6} "
            f"{fmt(irss, ' MiB'):>12} {fmt(erss, ' MiB'):>12}  {note}"
        )
    print()
    if ratios:
        worst = max(ratios)
        print(f"time goal (<= {TIME_GOAL}x esptool): worst ratio {worst:.2f} -> {'met' if worst <= TIME_GOAL else 'NOT met'}")
    first = rows[0]
    if not first[7]:
        print("start-up floor: not measured (the first case did not run, or the module probe found nothing that imports on its own)")
    else:
        packages = packages_of(stack)
        python_s, stack_s, *without_s = first[7]
        esptool_s = first[4]
        print(f"start-up floor ({first[0]} rounds): python alone {python_s:.3f}s; python importing only the installed "
              f"modules a pack loads ({len(stack)} modules of {', '.join(packages)}) {stack_s:.3f}s"
              + (f" = {stack_s / esptool_s:.2f}x the esptool route" if esptool_s else ""))
        print("  the floor without one package: " + ", ".join(
            f"{pkg} {t:.3f}s ({t - stack_s:+.3f}s)" for pkg, t in zip(packages, without_s)))
    fill_rss = rows[-1][3]
    if fill_rss is not None:
        print(f"memory goal (<= {RSS_GOAL_MIB} MiB for the {FILL_FLASH_SIZE} image): {fill_rss:.1f} MiB -> "
              f"{'met' if fill_rss <= RSS_GOAL_MIB else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
