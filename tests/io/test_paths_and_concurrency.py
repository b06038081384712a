"""Awkward paths and concurrent or interrupted runs.

(a) spaces and non-ASCII in the ELF's and OUTDIR's paths through the command line (esptool
    ``write-flash @flash_args`` from such a folder is in test_e2e_flash.py);
(b) two ``pack`` processes into one OUTDIR leave one complete, consistent set;
(c) processes fetching the same pinned bootloader share the cache safely (mirror folder and http);
(d) a ``pack`` killed with SIGKILL or interrupted with Ctrl-C at any step of its swap leaves OUTDIR with the
    old pack or the new one, once the next run has undone an unfinished swap; no temp files in it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli, snapshot

from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
TIMEOUT = 120




def check_consistent(outdir: Path) -> dict[str, str]:
    """OUTDIR holds one complete set: SHA256SUMS lists every other file and every hash matches."""
    assert (outdir / "SHA256SUMS").is_file(), sorted(p.name for p in outdir.iterdir())
    listed = {}
    for line in (outdir / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(" *", 1)
        listed[name] = digest
    present = {p.name for p in outdir.iterdir()}
    assert present == set(listed) | {"SHA256SUMS"}, (sorted(present), sorted(listed))
    for name, digest in listed.items():
        assert hashlib.sha256((outdir / name).read_bytes()).hexdigest() == digest, name
    return listed


def no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".part"))]
    assert not leftovers, leftovers


def pack_cmd(elf: Path, outdir: Path, boot: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imgtool", "pack", str(elf), "-o", str(outdir), "--bootloader", str(boot), "-q", *extra]


# --------------------------------------------------------------------------- (a) paths


def test_cli_pack_and_verify_with_non_ascii_paths(tmp_path):
    folder = tmp_path / "dossier été" / "名 前"
    folder.mkdir(parents=True)
    elf = folder / "app ü.elf"
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = folder / "out ✓"
    done = subprocess.run(pack_cmd(elf, out, boot), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    listed = check_consistent(out)
    assert "app ü.merged.bin" in listed
    args = (out / "flash_merged_args").read_text(encoding="utf-8").splitlines()
    assert args[-1] == "0x0 'app ü.merged.bin'"
    assert (out / "flash_args").read_text(encoding="utf-8").splitlines()[-1] == "0x10000 'app ü.bin'"
    done = subprocess.run([sys.executable, "-m", "imgtool", "verify", str(out), "--elf", str(elf)], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- (b) concurrent packs


def test_two_identical_packs_race_into_one_outdir(tmp_path):
    """Two packs of the same ELF race into one OUTDIR: one complete, consistent set, at least one success."""
    elf = tmp_path / "src" / "fw"
    elf.parent.mkdir()
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    for _ in range(3):
        procs = [
            subprocess.Popen(pack_cmd(elf, out, boot, "--flash-size", "4MB"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(p.wait(timeout=TIMEOUT), p.stderr.read()) for p in procs]
        for p in procs:
            p.stderr.close()
        assert any(code == 0 for code, _ in results), results
        for code, err in results:
            assert code == 0 or (err.count("imgtool: error:") == 1 and "Traceback" not in err), err
        check_consistent(out)
        no_temp_files(out)
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        assert verify(out).ok


PAUSE_MID_PLACEMENT = r"""
import os, sys, time
from pathlib import Path
from imgtool.pack.job import PackOptions, pack
real = os.replace
placed = [0]
flag = Path(sys.argv[4])
def replace(src, dst):
    real(src, dst)
    if "new" in Path(src).parts:
        placed[0] += 1
        if placed[0] == 5:  # half the new files are in OUTDIR: let the other pack run now
            flag.with_suffix(".paused").touch()
            deadline = time.monotonic() + 60
            while not flag.with_suffix(".go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
os.replace = replace
pack(sys.argv[1], PackOptions(outdir=sys.argv[2], bootloader=sys.argv[3], flash_size="2MB", project_config=False))
"""


def test_two_different_packs_interleaved(tmp_path):
    """Pack A (2MB) stops after placing half its files while pack B (4MB) starts; then A finishes.

    Without the output lock this interleaving left a mixed set; with it B waits for A, and the
    folder ends with one complete set whatever the timing.
    """
    elf = tmp_path / "src" / "fw"
    elf.parent.mkdir()
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    flag = tmp_path / "flag"
    a = subprocess.Popen([sys.executable, "-c", PAUSE_MID_PLACEMENT, str(elf), str(out), str(boot), str(flag)])
    try:
        deadline = time.monotonic() + TIMEOUT
        while not flag.with_suffix(".paused").exists():
            assert a.poll() is None and time.monotonic() < deadline, "pack A never reached the pause"
            time.sleep(0.02)
        b = subprocess.Popen(
            pack_cmd(elf, out, boot, "--flash-size", "4MB"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(0.5)  # long enough for B to stage its files and reach the lock
    finally:
        flag.with_suffix(".go").touch()
        a.wait(timeout=TIMEOUT)
    _out, b_err = b.communicate(timeout=TIMEOUT)
    assert a.returncode == 0 and b.returncode == 0, b_err
    check_consistent(out)


# --------------------------------------------------------------------------- (c) shared bootloader cache

FETCH_SCRIPT = r"""
import hashlib, json, os, sys
from imgtool.bootloader.store import BootloaderStore
from imgtool.bootloader.download import DownloadSettings
from imgtool.environment import UserEnvironment
from imgtool.bootloader.pins import parse_manifest
env = UserEnvironment.from_environ(os.environ)  # this script is the caller: it reads the environment, as the CLI does
manifest = parse_manifest(json.load(open(sys.argv[1])), sys.argv[1])
data = BootloaderStore(cache_dir=env.cache(), mirror=env.mirror).fetch(
    "esp32c3", manifest=manifest, quiet=True, offline=sys.argv[2] == "offline",
    settings=DownloadSettings(timeout=10, retries=2, backoff=0.05))
print(hashlib.sha256(data).hexdigest())
"""


def _manifest(tmp_path: Path, payload: bytes, url: str) -> Path:
    doc = {
        "schema": 1,
        "bootloaders": [
            {
                "chip": "esp32c3", "variant": "default", "default": True, "file": "esp32c3-bootloader.bin",
                "url": url, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), "esp_idf": "test",
            }
        ],
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    return path


def _run_fetchers(n: int, manifest: Path, mode: str, env: dict) -> list[str]:
    procs = [
        subprocess.Popen([sys.executable, "-c", FETCH_SCRIPT, str(manifest), mode], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def _cache_is_clean(cache: Path, payload: bytes) -> None:
    files = sorted(p.name for p in (cache / "bootloaders").iterdir())
    assert len([f for f in files if f.endswith(".bin")]) == 1, files
    assert all(f.endswith((".bin", ".lock")) for f in files), files  # no .part / temp left behind
    binfile = next((cache / "bootloaders").glob("*.bin"))
    assert binfile.read_bytes() == payload


def test_processes_share_the_cache_from_a_mirror_folder(tmp_path):
    payload = make_bootloader(tmp_path / "payload.bin", "esp32c3").read_bytes()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "esp32c3-bootloader.bin").write_bytes(payload)
    manifest = _manifest(tmp_path, payload, "https://example.invalid/esp32c3-bootloader.bin")
    want = hashlib.sha256(payload).hexdigest()
    for round_no in range(3):
        cache = tmp_path / f"cache{round_no}"
        env = {**os.environ, "IMGTOOL_CACHE_DIR": str(cache), "IMGTOOL_BOOTLOADER_MIRROR": str(mirror)}
        assert _run_fetchers(4, manifest, "offline", env) == [want] * 4
        _cache_is_clean(cache, payload)


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        for i in range(0, len(self.payload), 512):  # slowly, so the fetchers really overlap
            self.wfile.write(self.payload[i : i + 512])
            time.sleep(0.01)

    def log_message(self, *args):
        pass


def test_threads_and_processes_share_the_cache_over_http(tmp_path):
    from imgtool.bootloader.download import DownloadSettings, download

    payload = make_bootloader(tmp_path / "payload.bin", "esp32c3", fill=7).read_bytes()
    handler = type("Handler", (_SlowHandler,), {"payload": payload, "hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/esp32c3-bootloader.bin"
        sha = hashlib.sha256(payload).hexdigest()
        # threads through the library
        dest = tmp_path / "cache-threads" / "bootloaders" / "bl.bin"
        settings = DownloadSettings(timeout=10, retries=1, backoff=0.05)
        with ThreadPoolExecutor(4) as pool:
            paths = list(pool.map(lambda _: download(url, dest, sha256=sha, settings=settings, quiet=True), range(4)))
        assert paths == [dest] * 4 and dest.read_bytes() == payload
        assert handler.hits == 1  # the lock made the others wait, then find the file in place
        assert sorted(p.name for p in dest.parent.iterdir()) == ["bl.bin", "bl.bin.lock"]
        # processes through get_bootloader
        manifest = _manifest(tmp_path, payload, url)
        cache = tmp_path / "cache-procs"
        env = {**os.environ, "IMGTOOL_CACHE_DIR": str(cache)}
        env.pop("IMGTOOL_BOOTLOADER_MIRROR", None)
        assert _run_fetchers(4, manifest, "online", env) == [sha] * 4
        assert handler.hits == 2
        _cache_is_clean(cache, payload)
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- (d) SIGKILL


KILL_AT = r"""
import os, signal, sys
import imgtool.atomic
import imgtool.pack.job
def die(step):
    if step == sys.argv[4]:
        os.kill(os.getpid(), signal.SIGKILL)
# staged: every new file is written beside OUTDIR, none moved in yet; committed: all moved in, cleanup not done
imgtool.atomic.step_hook = die
imgtool.pack.job.pack(sys.argv[1], imgtool.pack.job.PackOptions(outdir=sys.argv[2], bootloader=sys.argv[3], flash_size="4MB", fill_flash_size=True,
                  project_config=False))
"""


def _old_pack(tmp_path: Path, out: Path | None = None) -> tuple[Path, Path, Path]:
    """An ELF, a bootloader and OUTDIR holding a 2MB pack of it (the one an interrupted 4MB pack must not lose)."""
    elf = tmp_path / "src" / "fw"
    elf.parent.mkdir(exist_ok=True)
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = out or tmp_path / "out"
    pack(elf, PackOptions(outdir=out, bootloader=boot, flash_size="2MB", project_config=False))
    return elf, boot, out


def _staging_left(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.imgtool-")]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
@pytest.mark.parametrize(("point", "outcome"), [("staged", "untouched"), ("committed", "complete")])
def test_pack_killed_mid_way(tmp_path, point, outcome):
    """A pack SIGKILLed into a folder holding an older pack leaves it as it was, or complete; no temp files in it.

    The staging folder beside OUTDIR survives the kill (nothing can remove it then); the next run removes it.
    """
    from imgtool.atomic import recover_outputs

    elf, boot, out = _old_pack(tmp_path)
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "-c", KILL_AT, str(elf), str(out), str(boot), point], timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    for _ in range(2):  # as killed, then after the next run
        if outcome == "untouched":
            assert snapshot(out) == before
        else:
            check_consistent(out)
            assert '"flash_size": "4MB"' in (out / "flasher_args.json").read_text()
        no_temp_files(out)
        if _staging_left(out):
            recover_outputs(out)
    assert not _staging_left(out)


KILL_IN_MOVE_PHASE = r"""
import os, signal, sys
from imgtool.pack.job import PackOptions, pack
real = os.replace
count = [0]
def replace(src, dst):
    real(src, dst)
    count[0] += 1
    if count[0] == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)  # as if killed between two renames
os.replace = replace
pack(sys.argv[1], PackOptions(outdir=sys.argv[2], bootloader=sys.argv[3], flash_size="4MB", project_config=False))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
@pytest.mark.parametrize("after", [3, 13], ids=["while-moving-old-files-aside", "while-placing-new-files"])
def test_pack_killed_between_renames(tmp_path, after):
    """Killed between two renames, OUTDIR is mixed only until the next imgtool run on it, which restores the old pack."""
    elf, boot, out = _old_pack(tmp_path)
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "-c", KILL_IN_MOVE_PHASE, str(elf), str(out), str(boot), str(after)], timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert _staging_left(out)
    done = subprocess.run([sys.executable, "-m", "imgtool", "verify", str(out)], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == before
    check_consistent(out)
    assert not _staging_left(out)


#: Runs in a fresh interpreter (no threads, so fork is safe): captures one pack's write_outputs call, then for
#: each swap step forks a child that repeats it into its own copy of the old pack and is SIGKILLed at that step.
KILL_AT_EVERY_STEP = r"""
import json, os, shutil, signal, sys
from pathlib import Path
import imgtool.atomic as atomic
import imgtool.pack.job
elf, base, boot, work = sys.argv[1:5]
call = {}
imgtool.pack.job.write_outputs = lambda out, files, **kw: call.update(files=files, kw=kw)
imgtool.pack.job.pack(elf, imgtool.pack.job.PackOptions(outdir=base, bootloader=boot, flash_size="4MB", project_config=False))
steps = []
probe = Path(work) / "probe" / "out"
shutil.copytree(base, probe)
atomic.step_hook = steps.append
atomic.write_outputs(probe, call["files"], **call["kw"])
for i, step in enumerate(steps):
    out = Path(work) / str(i) / "out"
    shutil.copytree(base, out)
    pid = os.fork()
    if pid == 0:
        def die(now, step=step):
            if now == step:
                os.kill(os.getpid(), signal.SIGKILL)
        atomic.step_hook = die
        atomic.write_outputs(out, call["files"], **call["kw"])
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or step == "cleaned", (step, status)
print(json.dumps(steps))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="SIGKILL and fork are POSIX")
def test_sigkill_at_every_step_of_the_swap_leaves_the_old_or_the_new_pack(tmp_path):
    """A kill at any step, then the next run: OUTDIR holds the old pack (before the commit) or the new one, nothing else."""
    from imgtool.atomic import recover_outputs

    elf, boot, out = _old_pack(tmp_path)
    before = snapshot(out)
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-c", KILL_AT_EVERY_STEP, str(elf), str(out), str(boot), str(work)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)
    assert steps[0] == "staged" and steps[-2:] == ["committed", "cleaned"]
    assert any(s.startswith("aside ") for s in steps) and any(s.startswith("placed ") for s in steps)
    new = snapshot(work / "probe" / "out")
    for i, step in enumerate(steps):
        folder = work / str(i) / "out"
        recover_outputs(folder)
        assert snapshot(folder) == (new if step in ("committed", "cleaned") else before), step
        assert not _staging_left(folder), step


@pytest.mark.parametrize("at", ["staged", "journal", "aside SHA256SUMS", "aside fw.bin", "placed fw.bin",
                                "placed SHA256SUMS", "committed"])
def test_ctrl_c_at_any_step_of_the_swap_leaves_the_old_or_the_new_pack(tmp_path, at, monkeypatch):
    """KeyboardInterrupt (what SIGINT raises) at a step is undone at once, with no staging folder left behind."""
    import imgtool.atomic as atomic

    elf, boot, out = _old_pack(tmp_path)
    before = snapshot(out)

    def interrupt(step):
        if step == at:
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "step_hook", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pack(elf, PackOptions(outdir=out, bootloader=boot, flash_size="4MB", project_config=False))
    if at == "committed":
        check_consistent(out)
        assert '"flash_size": "4MB"' in (out / "flasher_args.json").read_text()
    else:
        assert snapshot(out) == before
    assert not _staging_left(out)


def test_staging_folders_left_by_killed_runs_are_removed_by_the_next(tmp_path):
    """Kills leave staging folders beside OUTDIR; the next pack removes them, except files an old imgtool moved aside."""
    elf, boot, out = _old_pack(tmp_path)
    for i in range(3):
        (tmp_path / f".out.imgtool-{i}-0000000{i}" / "new").mkdir(parents=True)
        (tmp_path / f".out.imgtool-{i}-0000000{i}" / "new" / "fw.bin").write_bytes(b"staged")
        (tmp_path / f".out.imgtool-{i}-0000000{i}" / "old").mkdir()
    legacy = tmp_path / ".out.imgtool-9-00000009" / "old"
    legacy.mkdir(parents=True)
    (legacy / "fw.bin").write_bytes(b"the only copy")
    neighbour = tmp_path / ".out.imgtool-x.imgtool-5-00000005"  # a staging folder of the folder 'out.imgtool-x'
    neighbour.mkdir()
    (neighbour / "journal.json").write_text('{"names": [], "aside": ["fw.bin"], "seal": null}')
    pack(elf, PackOptions(outdir=out, bootloader=boot, flash_size="4MB", project_config=False))
    check_consistent(out)
    assert sorted(_staging_left(out)) == [".out.imgtool-9-00000009", neighbour.name]
    assert (legacy / "fw.bin").read_bytes() == b"the only copy" and (neighbour / "journal.json").exists()


def test_a_users_own_file_in_the_output_folder_is_refused_unless_force(tmp_path):
    """The ELF's folder is the default OUTDIR: a project's own partitions.csv there is not replaced without --force."""
    elf = tmp_path / "fw"
    shutil.copy(C3, elf)
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    mine = tmp_path / "partitions.csv"
    mine.write_text("# my own table, not an input of this pack\n")
    before = snapshot(tmp_path)
    done = run_cli("pack", elf, "--bootloader", boot, "-q")
    assert done.exit_code == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"imgtool: error: {mine}: is not a file imgtool wrote")
    assert "--force" in done.stderr
    assert snapshot(tmp_path) == before
    done = run_cli("pack", elf, "--bootloader", boot, "-q", "--force")
    assert done.exit_code == 0, done.stderr
    assert mine.read_text() != "# my own table, not an input of this pack\n"
    # from now on the folder holds a pack whose SHA256SUMS lists partitions.csv: a re-pack needs no --force
    pack(elf, PackOptions(outdir=None, bootloader=boot, project_config=False))


def test_a_users_file_beside_an_earlier_pack_is_refused(tmp_path):
    """A name the earlier pack's SHA256SUMS does not list is the user's, even in a folder imgtool packed into."""
    elf, boot, out = _old_pack(tmp_path)
    (out / "fw.uf2").write_bytes(b"my own uf2")
    from imgtool.errors import OutputError

    with pytest.raises(OutputError, match="fw.uf2: is not a file imgtool wrote"):
        pack(elf, PackOptions(outdir=out, bootloader=boot, project_config=False, formats=("uf2",)))
    assert (out / "fw.uf2").read_bytes() == b"my own uf2"
    pack(elf, PackOptions(outdir=out, bootloader=boot, project_config=False, formats=("uf2",), force=True))
    check_consistent(out)


def test_an_interrupted_first_pack_leaves_no_folder(tmp_path, monkeypatch):
    import imgtool.atomic as atomic

    def interrupt(step):
        if step == "placed SHA256SUMS":
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "step_hook", interrupt)
    out = tmp_path / "new-out"
    with pytest.raises(KeyboardInterrupt):
        pack(C3, PackOptions(outdir=out, bootloader=make_bootloader(tmp_path / "bl.bin", "esp32c3"), project_config=False))
    assert not out.exists() and not _staging_left(out)
