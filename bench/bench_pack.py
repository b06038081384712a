#!/usr/bin/env python3
"""Benchmark: whole-process ``imgtool pack`` against the esptool route doing the same work.

The esptool route is ``esptool --chip X elf2image [--use-segments]`` (ELF → app .bin) followed by
``esptool --chip X merge-bin`` of bootloader, partition table and app (the bootloader and table
are taken from imgtool's own output, so both routes merge the same parts). imgtool additionally
writes the CSV, argument files, manifest and SHA256SUMS.

Both run as fresh processes (what a user or CI job pays). imgtool's bootloader cache is warmed
from the corpus mirror first, so no network is used. Reports the median wall time over N runs and
the peak RSS of each process (``os.wait4`` rusage of that child), then a 4 MB flash image
(``--fill-flash-size`` / ``merge-bin --pad-to-size 4MB``) for memory.

    python bench/bench_pack.py [--runs 5] [--corpus ../shared/corpus]

Goals: imgtool median <= 0.5x the esptool route; peak RSS <= 60 MiB for the 4 MB image.
Always exits 0 (it is a report, not a test).
"""

from __future__ import annotations

import argparse
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
TIME_GOAL = 0.5
RSS_GOAL_MIB = 60


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


def imgtool_argv(elf: Path, outdir: Path, *extra: str) -> list[str]:
    # --chip, as the esptool route is told the chip too
    return [
        sys.executable, "-m", "imgtool", "pack", str(elf), "-o", str(outdir),
        "--chip", elf.name, "--flash-size", FLASH_SIZE, "-q", *extra,
    ]


def esptool_argvs(
    chip: str, elf: Path, work: Path, ref: Path, *, pad: bool = False, segments: bool = True
) -> list[list[str]]:
    from imgtool.chips import get_chip

    boot_off = get_chip(chip).bootloader_offset
    esptool = [sys.executable, "-m", "esptool", "--chip", chip]
    app = work / "app.bin"
    merge = [
        *esptool, "merge-bin", "-o", str(work / "merged.bin"),
        "--flash-mode", "dio", "--flash-size", FLASH_SIZE,
        *(["--pad-to-size", FLASH_SIZE] if pad else []),
        hex(boot_off), str(ref / "bootloader.bin"), "0x8000", str(ref / "partitions.bin"), "0x10000", str(app),
    ]
    image = [*esptool, "elf2image", *(["--use-segments"] if segments else []), "--flash-mode", "dio", "--flash-size", FLASH_SIZE, "-o", str(app), str(elf)]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    elfs = sorted(p for p in (args.corpus / "elf").glob("*") if p.is_file())
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

        rows = []
        for elf in elfs:
            chip = elf.name if elf.suffix == "" else elf.stem
            ref = tmp / f"ref-{chip}"
            secs, _rss, code, err = run(imgtool_argv(elf, ref), env)  # warms the bootloader cache and bytecode
            work = tmp / f"warm-{chip}"
            work.mkdir()
            # esptool converts some ELFs only from program headers, others only from sections.
            segments = route(esptool_argvs(chip, elf, work, ref), env)[2] == 0  # also warms bytecode
            if code != 0:
                rows.append((chip, None, None, None, None, f"imgtool failed: {err}"))
                continue
            im_t, im_rss, es_t, es_rss = [], [], [], []
            note = ""
            for i in range(args.runs):
                s, r, _c, _e = run(imgtool_argv(elf, tmp / f"im-{chip}-{i}"), env)
                im_t.append(s)
                im_rss.append(r)
                work = tmp / f"es-{chip}-{i}"
                work.mkdir()
                s, r, c, e = route(esptool_argvs(chip, elf, work, ref, segments=segments), env)
                if c != 0:
                    note = f"esptool route fails: {e[:70]}"
                    es_t = []
                    break
                es_t.append(s)
                es_rss.append(r)
            rows.append(
                (
                    chip,
                    statistics.median(im_t),
                    max(im_rss),
                    statistics.median(es_t) if es_t else None,
                    max(es_rss) if es_rss else None,
                    note,
                )
            )

        # memory for a full 4 MB flash image
        elf = elfs[0]
        fill_chip = chip = elf.name
        s_im, rss_im, c_im, e_im = run(imgtool_argv(elf, tmp / "fill-im", "--fill-flash-size"), env)
        work = tmp / "fill-es"
        work.mkdir()
        s_es, rss_es, c_es, e_es = route(esptool_argvs(chip, elf, work, tmp / f"ref-{chip}", pad=True), env)

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}" if unit == "s" else f"{v:.1f}{unit}"

    print(f"imgtool pack vs esptool elf2image + merge-bin  (median of {args.runs} runs, {FLASH_SIZE} flash, fresh processes)")
    print(f"{'chip':<9} {'imgtool':>9} {'esptool':>9} {'ratio':>6} {'imgtool RSS':>12} {'esptool RSS':>12}  note")
    ratios = []
    for chip, it, irss, et, erss, note in rows:
        ratio = (it / et) if (it and et) else None
        if ratio is not None:
            ratios.append(ratio)
        print(
            f"{chip:<9} {fmt(it, 's'):>9} {fmt(et, 's'):>9} {fmt(ratio) if ratio is None else f'{ratio:.2f}':>6} "
            f"{fmt(irss, ' MiB'):>12} {fmt(erss, ' MiB'):>12}  {note}"
        )
    print()
    print(
        f"4 MB image ({fill_chip}, --fill-flash-size / --pad-to-size): imgtool {s_im:.3f}s peak {rss_im:.1f} MiB"
        + ("" if c_im == 0 else f" (FAILED: {e_im})")
        + f"; esptool route {s_es:.3f}s peak {rss_es:.1f} MiB"
        + ("" if c_es == 0 else f" (FAILED: {e_es})")
    )
    if ratios:
        worst = max(ratios)
        print(f"time goal (<= {TIME_GOAL}x esptool): worst ratio {worst:.2f} -> {'met' if worst <= TIME_GOAL else 'NOT met'}")
    print(f"memory goal (<= {RSS_GOAL_MIB} MiB for 4 MB image): {rss_im:.1f} MiB -> {'met' if rss_im <= RSS_GOAL_MIB else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
