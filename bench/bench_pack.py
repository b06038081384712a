#!/usr/bin/env python3
"""Benchmark: ``imgtool pack`` against the esptool route, both from a wheel of this checkout.

What users get is a wheel, so the bench builds one of the checkout as it is (a copy of the tree,
so the checkout gains no build folders), installs it into a fresh venv (its dependencies come from
pip's configured index; no editable install, whose per-run recompiling would be measured instead),
and runs every command from that venv as a fresh process:

- imgtool: ``imgtool pack ELF -o DIR --chip CHIP --flash-size SIZE -q`` (``--fill-flash-size`` for
  the full-flash case);
- the esptool route: ``esptool --chip CHIP elf2image`` (sections, or ``--use-segments`` when
  esptool converts the ELF only that way) then ``esptool --chip CHIP merge-bin`` of the bootloader,
  partition table and app at the offsets of imgtool's own ``flash_args`` (``--pad-to-size`` for the
  full-flash case), so both routes merge the same parts;
- the import floor: ``python -c 'import click, construct, elftools.elf.structs'``, the libraries
  one pack cannot do without; no pack is faster than that. Python alone is timed for scale.

Cases: the small pack (a corpus ELF, ``--elf``, at 4MB), a 4 MiB app (an esp32 ELF built here
with ``tests/elfbuild.py``: 2 MiB of rodata and 2 MiB of code, at 8MB), and the small ELF filling
a 16MB flash. Every command runs once per round; the order rotates from round to round
(round-robin), so a load change on the machine hits all of them alike. Reported per case: both
routes' medians, the ratio, the peak RSS of each child (the larger of the esptool route's two), the
floor as a share of the esptool route, and how far imgtool's median is above the floor.

Bootloaders come from ``IMGTOOL_BOOTLOADER_MIRROR`` (default: the corpus's ``bootloaders/``) into a
fresh cache, warmed before timing, so nothing is downloaded. ``--profile`` adds, for the small pack
and the 4 MiB app on the same install, the ``-X importtime`` top entries of one pack process and a
cProfile of two packs in one process (the first with its lazy imports, the second the work alone).

    python bench/bench_pack.py [--rounds 15] [--elf esp32] [--corpus ../shared/corpus] [--profile]

Always exits 0 unless the setup fails (it is a report, not a test). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("IMGTOOL_CORPUS", REPO.parent / "shared" / "corpus"))
MiB = 1 << 20
#: The libraries a pack cannot do without; importing them alone is the floor.
FLOOR_IMPORT = "import click, construct, elftools.elf.structs"
#: Issue 23's goals: ratio to the esptool route per case, and peak RSS.
RATIO_GOALS = {"small": 0.35, "4 MiB app": 0.35, "16MB fill": 0.45}
RSS_GOAL_MIB = 60
#: The 4 MiB app's flash data: rodata and code, each this long.
BIG_APP_HALF = 2 * MiB
#: Not copied into the wheel's build tree.
BUILD_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".venv", "venv", ".tox"
)


class Case(NamedTuple):
    name: str
    chip: str
    elf: Path
    flash_size: str
    fill: bool


class Sample(NamedTuple):
    seconds: float
    rss_mib: float | None
    code: int
    err: str


class Install(NamedTuple):
    python: Path
    imgtool: Path
    esptool: Path
    wheel: str


def run(argv: list, env: dict, cwd: Path) -> Sample:
    """Wall time, peak RSS (this child's own rusage; None where ``os.wait4`` is missing), exit status, last stderr line."""
    start = time.perf_counter()
    proc = subprocess.Popen([os.fspath(a) for a in argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    if hasattr(os, "wait4"):
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss / (MiB if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB elsewhere
    else:
        proc.wait()
        seconds, rss = time.perf_counter() - start, None
    proc.stderr.close()
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return Sample(seconds, rss, proc.returncode, lines[-1] if lines else "")


def checked(argv: list, what: str, **kwargs) -> None:
    result = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"bench: {what} failed:\n{result.stdout}{result.stderr}")


# --------------------------------------------------------------------------- setup


def build_wheel(tmp: Path) -> Path:
    """A wheel of the checkout as it is now, built from a copy so the checkout is left untouched."""
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=BUILD_IGNORE)
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src]
    try:  # the build needs setuptools>=77; use ours when we have it, else pip fetches it from the index
        from importlib.metadata import version

        if int(version("setuptools").split(".")[0]) >= 77:
            argv.insert(4, "--no-build-isolation")
    except Exception:
        pass
    checked(argv, "building the wheel")
    return next((tmp / "dist").glob("esp_imgtool-*.whl"))


def install(tmp: Path, wheel: Path) -> Install:
    """A fresh venv with the wheel installed (dependencies from pip's configured index)."""
    home = tmp / "venv"
    venv.create(home, with_pip=True)
    scripts = home / ("Scripts" if os.name == "nt" else "bin")
    python = scripts / ("python.exe" if os.name == "nt" else "python")
    checked([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], "installing the wheel")
    where = subprocess.run([python, "-c", "import imgtool; print(imgtool.__file__)"], capture_output=True, text=True, cwd=tmp)
    if not where.stdout.strip().startswith(os.fspath(home)):
        sys.exit(f"bench: imgtool in the venv is not the installed wheel: {where.stdout}{where.stderr}")

    def script(name: str) -> Path:
        found = shutil.which(name, path=os.fspath(scripts))
        if found is None:
            sys.exit(f"bench: the venv has no {name} command")
        return Path(found)

    return Install(python, script("imgtool"), script("esptool"), wheel.name)


def build_big_app(path: Path) -> Path:
    """An esp32 app ELF with 4 MiB of flash data (rodata behind the app descriptor, and code),
    built with the tests' ELF writer; one PT_LOAD covers descriptor and rodata, as a linker makes it."""
    sys.path.insert(0, os.fspath(REPO / "tests"))
    from elfbuild import EM_XTENSA, Seg, build_elf, esp_app_sections

    rnd = random.Random(23)  # fixed bytes: the same app every run
    secs = esp_app_sections("esp32", rodata=rnd.randbytes(BIG_APP_HALF), text=rnd.randbytes(BIG_APP_HALF))
    merged = (".rodata_desc", ".rodata")
    segs = [Seg(sections=merged)] + [Seg(sections=(s.name,)) for s in secs if s.alloc and s.mem_size and s.name not in merged]
    text = next(s for s in secs if s.name == ".text")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_elf(secs, machine=EM_XTENSA, entry=text.addr, symbols=["esp32.bench-cgu.0"], program_headers=segs))
    return path


# --------------------------------------------------------------------------- the routes


def imgtool_argv(inst: Install, case: Case, out: Path) -> list:
    return [
        inst.imgtool, "pack", case.elf, "-o", out, "--chip", case.chip, "--flash-size", case.flash_size, "-q",
        *(["--fill-flash-size"] if case.fill else []),
    ]


def flash_parts(outdir: Path) -> list[str]:
    """``OFFSET FILE`` pairs of imgtool's ``flash_args`` (bootloader, table, app), files made absolute."""
    lines = (outdir / "flash_args").read_text(encoding="utf-8").splitlines()[1:]
    parts = []
    for line in lines:
        offset, name = line.split(maxsplit=1)
        parts += [offset, os.fspath(outdir / name)]
    return parts


def esptool_argvs(inst: Install, case: Case, work: Path, ref: Path, segments: bool) -> list[list]:
    app = work / "app.bin"
    parts = flash_parts(ref)
    parts[-1] = os.fspath(app)  # the app is the one this route made
    esptool = [inst.esptool, "--chip", case.chip]
    image = [*esptool, "elf2image", *(["--use-segments"] if segments else []), "--flash-mode", "dio",
             "--flash-size", case.flash_size, "-o", app, case.elf]
    merge = [*esptool, "merge-bin", "-o", work / "merged.bin", "--flash-mode", "dio", "--flash-size", case.flash_size,
             *(["--pad-to-size", case.flash_size] if case.fill else []), *parts]
    return [image, merge]


def run_route(argvs: list[list], env: dict, cwd: Path) -> Sample:
    total, peak = 0.0, None
    for argv in argvs:
        s = run(argv, env, cwd)
        total += s.seconds
        peak = s.rss_mib if peak is None else max(peak, s.rss_mib or 0)
        if s.code:
            return Sample(total, peak, s.code, s.err)
    return Sample(total, peak, 0, "")


class Prepared(NamedTuple):
    case: Case
    ref: Path
    segments: bool | None  # None: esptool converts this ELF neither way
    note: str


def prepare(inst: Install, case: Case, tmp: Path, env: dict) -> Prepared:
    """One untimed run of each route: warms the bootloader cache and the OS's file cache, gives the
    reference outputs for merge-bin, and finds how esptool converts the ELF."""
    ref = tmp / f"ref-{case.name.replace(' ', '-')}"
    s = run(imgtool_argv(inst, case, ref), env, tmp)
    if s.code:
        sys.exit(f"bench: imgtool pack failed on {case.name} ({case.elf}): {s.err}")
    for segments in (False, True):
        work = tmp / "warm"
        work.mkdir()
        ok = run_route(esptool_argvs(inst, case, work, ref, segments), env, tmp).code == 0
        shutil.rmtree(work)
        if ok:
            return Prepared(case, ref, segments, "--use-segments" if segments else "")
    return Prepared(case, ref, None, "esptool elf2image refuses this ELF: no ratio")


# --------------------------------------------------------------------------- rounds


def measure(inst: Install, prepared: list[Prepared], tmp: Path, env: dict, rounds: int) -> dict:
    """Samples per job, every job once a round, the order rotated each round."""
    jobs = [("python", None), ("floor", None)]
    for p in prepared:
        jobs.append(("imgtool", p))
        if p.segments is not None:
            jobs.append(("esptool", p))
    samples: dict[tuple, list[Sample]] = {(kind, p.case.name if p else None): [] for kind, p in jobs}
    for r in range(rounds):
        for kind, p in jobs[r % len(jobs):] + jobs[: r % len(jobs)]:
            work = tmp / "round"
            work.mkdir()
            if kind == "python":
                s = run([inst.python, "-c", "pass"], env, tmp)
            elif kind == "floor":
                s = run([inst.python, "-c", FLOOR_IMPORT], env, tmp)
            elif kind == "imgtool":
                s = run(imgtool_argv(inst, p.case, work / "out"), env, tmp)
            else:
                s = run_route(esptool_argvs(inst, p.case, work, p.ref, p.segments), env, tmp)
            shutil.rmtree(work)
            if s.code:
                sys.exit(f"bench: {kind} failed in round {r + 1}{f' ({p.case.name})' if p else ''}: {s.err}")
            samples[(kind, p.case.name if p else None)].append(s)
    return samples


def median(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def peak(samples: list[Sample]) -> float | None:
    values = [s.rss_mib for s in samples if s.rss_mib is not None]
    return max(values) if values else None


def report(inst: Install, prepared: list[Prepared], samples: dict, rounds: int) -> None:
    def mib(v):
        return "n/a" if v is None else f"{v:.1f}"

    python_s, floor_s = median(samples[("python", None)]), median(samples[("floor", None)])
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"imgtool pack vs esptool elf2image + merge-bin: {inst.wheel} in a fresh venv, Python "
          f"{sys.version.split()[0]}, median of {rounds} rounds, fresh processes, order rotated each round{load}")
    print(f"import floor ({FLOOR_IMPORT!r}): {floor_s:.3f} s; Python alone {python_s:.3f} s")
    print()
    header = f"{'case':<28} {'imgtool':>8} {'esptool':>8} {'ratio':>6} {'goal':>5} {'peak MiB im/es':>15} {'floor/es':>9} {'im - floor':>11}  note"
    print(header)
    verdicts = []
    for p in prepared:
        im = samples[("imgtool", p.case.name)]
        es = samples.get(("esptool", p.case.name))
        im_s = median(im)
        es_s = median(es) if es else None
        ratio = im_s / es_s if es_s else None
        goal = RATIO_GOALS[p.case.name]
        label = f"{p.case.name} ({p.case.elf.name}, {p.case.flash_size})"
        print(
            f"{label:<28} {im_s:>7.3f}s {'n/a' if es_s is None else f'{es_s:.3f}s':>8} "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x':>6} {goal:>4.2f}x "
            f"{mib(peak(im)) + ' / ' + mib(peak(es) if es else None):>15} "
            f"{'n/a' if es_s is None else f'{floor_s / es_s:.2f}x':>9} {(im_s - floor_s) * 1000:>+9.0f}ms  {p.note}"
        )
        if ratio is not None:
            verdicts.append(f"{p.case.name} {ratio:.2f}x {'<=' if ratio <= goal else '>'} {goal:.2f}x")
        if peak(im) is not None:
            verdicts.append(f"{p.case.name} peak {peak(im):.1f} MiB {'<=' if peak(im) <= RSS_GOAL_MIB else '>'} {RSS_GOAL_MIB}")
    print()
    print("goals (issue 23): " + "; ".join(verdicts))


# --------------------------------------------------------------------------- --profile


PROFILE_WORK = """
import cProfile, os, pstats, sys, sysconfig, time
second_out, argv = sys.argv[1], sys.argv[2:]
import imgtool.cli.main  # the CLI shell first: what is profiled is the command's run

def once(args):
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    try:
        imgtool.cli.main.main(args, standalone_mode=False)
    finally:
        profile.disable()
    return (time.perf_counter() - start) * 1000, pstats.Stats(profile)

first_ms, first = once(argv)
first_out = argv[argv.index("-o") + 1]
second_ms, second = once([second_out if a == first_out else a for a in argv])
roots = sorted({sysconfig.get_paths()[k] for k in ("purelib", "stdlib")}, key=len, reverse=True)

def short(path):
    for root in roots:
        if path.startswith(root):
            return os.path.relpath(path, root)
    return path

def top(stats, key, n=18):
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][key])[:n]
    for (path, line, func), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = f"{short(path)}:{line}({func})" if line else func
        print(f"  {tottime * 1000:8.2f} {cumtime * 1000:8.2f} {calls:7d}  {where}")

print(f"in one process, under cProfile: first run {first_ms:.1f} ms (its lazy imports and first-time costs "
      f"included), second run {second_ms:.1f} ms (the work alone)")
print("first run by cumulative time (ms self, ms cumulative, calls):")
top(first, 3)
print("second run (the work) by self time (ms self, ms cumulative, calls):")
top(second, 2)
"""


def importtime_table(stderr: str, top: int = 20) -> str:
    """``-X importtime`` output as: top-level imports by cumulative time, then self time per package."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        rows.append((int(self_us), int(cumulative_us), name.rstrip()))
    total = sum(r[0] for r in rows)
    out = [f"all imports: {total / 1000:.1f} ms self time in {len(rows)} modules"]
    out.append(f"top-level imports by cumulative time (first {top}):")
    top_level = sorted((r for r in rows if not r[2].startswith("  ")), key=lambda r: -r[1])[:top]
    out += [f"  {cum / 1000:7.2f} ms  {name.strip()}" for _s, cum, name in top_level]
    by_package: dict[str, int] = {}
    for self_us, _c, name in rows:
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0) + self_us
    out.append(f"self time by top-level package (first {top}):")
    out += [f"  {us / 1000:7.2f} ms  {pkg}" for pkg, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(out)


def profile(inst: Install, case: Case, tmp: Path, env: dict) -> None:
    """``-X importtime`` of one pack process, then cProfile of two packs in one process (the second is the work)."""
    print()
    print(f"--- where one pack's time goes ({case.name}: {case.elf.name}, {case.flash_size}; the same wheel install)")
    outs = [tmp / "profile-1", tmp / "profile-2"]
    argv = imgtool_argv(inst, case, outs[0])[1:]
    imports = subprocess.run([inst.python, "-X", "importtime", "-m", "imgtool", *argv], env=env, cwd=tmp,
                             capture_output=True, text=True)
    print(importtime_table(imports.stderr))
    shutil.rmtree(outs[0], ignore_errors=True)
    work = subprocess.run([inst.python, "-c", PROFILE_WORK, outs[1], *argv], env=env, cwd=tmp, capture_output=True, text=True)
    print(work.stdout + "\n".join(line for line in work.stderr.splitlines() if "warning:" not in line))
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--elf", default="esp32", help="the corpus ELF of the small and 16MB cases [default: esp32]")
    parser.add_argument("--profile", action="store_true", help="also -X importtime and cProfile of one small pack")
    args = parser.parse_args()

    small = args.corpus / "elf" / args.elf
    if not small.is_file():
        sys.exit(f"bench: no corpus ELF {small} (set --corpus or IMGTOOL_CORPUS)")
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "VIRTUAL_ENV"):
        env.pop(name, None)  # the venv's own interpreter and its installed bytecode, nothing else
    env.setdefault("IMGTOOL_BOOTLOADER_MIRROR", os.fspath(args.corpus / "bootloaders"))
    with tempfile.TemporaryDirectory(prefix="imgtool-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env["IMGTOOL_CACHE_DIR"] = os.fspath(tmp / "cache")
        print("building the wheel and its venv ...", flush=True)
        inst = install(tmp, build_wheel(tmp))
        chip = args.elf
        cases = [
            Case("small", chip, small, "4MB", False),
            Case("4 MiB app", "esp32", build_big_app(tmp / "big" / "esp32"), "8MB", False),
            Case("16MB fill", chip, small, "16MB", True),
        ]
        prepared = [prepare(inst, case, tmp, env) for case in cases]
        print(f"timing {args.rounds} rounds ...", flush=True)
        samples = measure(inst, prepared, tmp, env, args.rounds)
        print()
        report(inst, prepared, samples, args.rounds)
        if args.profile:
            for case in cases[:2]:
                profile(inst, case, tmp, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
