"""What ``pack`` costs beyond the work: no rich on its path, each output hashed once, one flush for all files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, make_bootloader

import imgtool.atomic as atomic
import imgtool.flash.outputs as flash_outputs
from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
REPORT_MODULES = r"""
import atexit, sys
atexit.register(lambda: print("rich loaded:", "rich" in sys.modules))
sys.argv = ["imgtool", *sys.argv[1:]]
from imgtool.cli.main import main
main()
"""


def test_pack_prints_its_summary_without_rich(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    cmd = [sys.executable, "-c", REPORT_MODULES, "pack", str(C3), "-o", str(tmp_path / "out"), "--bootloader", str(boot)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "IMGTOOL_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 0, done.stderr
    assert "% used" in done.stdout and "write-flash @flash_args" in done.stdout
    assert done.stdout.splitlines()[-1] == "rich loaded: False"


def test_each_output_is_hashed_once(tmp_path, monkeypatch):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    hashed: list[int] = []
    real = hashlib.sha256

    def counting(data=b""):
        hashed.append(len(data))
        return real(data)

    monkeypatch.setattr(flash_outputs.hashlib, "sha256", counting)  # hashlib itself: counts every caller
    res = pack(C3, PackOptions(outdir=tmp_path / "out", bootloader=boot, flash_size="4MB", fill_flash_size=True, project_config=False))
    merged_size = 4 * 1024 * 1024 - res.merged.offset
    assert res.merged.size == merged_size and hashed.count(merged_size) == 1  # the filled merged image, once
    sums = (tmp_path / "out" / "SHA256SUMS").read_text()
    assert all(f"{digest} *{name}" in sums for name, digest in res.sha256.items())


def test_outputs_are_flushed_once_then_the_folder_synced(tmp_path, monkeypatch):
    """One flush for the staged files; then the staging folder (its journal), OUTDIR (the renames), the commit."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(atomic, "sync_files", lambda paths: calls.append(("files", len(paths))))
    monkeypatch.setattr(atomic, "fsync_dir", lambda path: calls.append(("folder", Path(path).name)))
    res = pack(C3, PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    staging = calls[1][1]
    assert staging.startswith(".out.imgtool-")
    assert calls == [("files", len(res.files)), ("folder", staging), ("folder", "out"), ("folder", staging)]
