"""A pack imports only what it uses: no filelock, and no platformdirs when no cache is used."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import FIXTURES, make_bootloader

C3 = FIXTURES / "esp32c3-min.elf"
REPORT_MODULES = r"""
import atexit, sys
atexit.register(lambda: print("loaded:", sorted(m for m in ("filelock", "platformdirs") if m in sys.modules)))
sys.argv = ["imgtool", *sys.argv[1:]]
from imgtool.cli.main import main
main()
"""


def test_a_pack_with_its_own_bootloader_imports_no_lock_or_cache_library(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    env = {k: v for k, v in os.environ.items() if k != "IMGTOOL_CACHE_DIR"}
    env["HOME"] = str(tmp_path / "home")  # should anything look for the user cache, it finds an empty one
    cmd = [sys.executable, "-c", REPORT_MODULES, "pack", str(C3), "-o", str(tmp_path / "out"), "--bootloader", str(boot), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "loaded: []"
    assert not (tmp_path / "home").exists()
