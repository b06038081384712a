"""What ``pack`` costs beyond the work: no module it does not use (rich among them), each output hashed once, one flush for all files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, corpus_path, make_bootloader

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

#: Modules only packs with data partitions, keys, ``--uf2``/``--hex``, ``--archive`` or a web release use,
#: and ``imgtool verify``'s with the connection options it alone takes.
UNUSED_BY_A_PLAIN_PACK = ("rich", "imgtool.partitions.data_images", "imgtool.security.signing", "imgtool.security.encryption",
                          "imgtool.flash.uf2", "imgtool.flash.ihex", "imgtool.release.web_manifest", "zipfile",
                          "imgtool.cli.verify", "imgtool.cli.connection", "imgtool.device.options")
REPORT_UNUSED = r"""
import atexit, sys
names = sys.argv.pop(1).split(",")
atexit.register(lambda: print("unused loaded:", [m for m in names if m in sys.modules]))
sys.argv = ["imgtool", *sys.argv[1:]]
from imgtool.cli.main import main
main()
"""


def test_a_plain_pack_loads_no_module_it_does_not_use(tmp_path):
    """The pinned bootloader (from the corpus mirror, offline); a bootloader file is checked for signatures."""
    env = {**os.environ, "IMGTOOL_CACHE_DIR": str(tmp_path / "c"), "IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders"))}
    cmd = [sys.executable, "-c", REPORT_UNUSED, ",".join(UNUSED_BY_A_PLAIN_PACK), "pack", str(C3), "-o", str(tmp_path / "out"), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "unused loaded: []"


REPORT_DATACLASSES = r"""
import atexit, sys
def defined():
    return sorted(f"{name}.{attr}" for name, module in list(sys.modules.items()) if name.startswith("imgtool")
                  for attr, obj in vars(module).items()
                  if isinstance(obj, type) and obj.__module__ == name and "__dataclass_fields__" in vars(obj))
atexit.register(lambda: print("dataclasses defined:", defined()))
sys.argv = ["imgtool", *sys.argv[1:]]
from imgtool.cli.main import main
main()
"""
def test_a_plain_pack_defines_its_records_without_dataclasses(tmp_path):
    """Each frozen dataclass costs ~0.5 ms to define at start-up; the pack's records are NamedTuples or plain classes."""
    env = {**os.environ, "IMGTOOL_CACHE_DIR": str(tmp_path / "c"), "IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders"))}
    cmd = [sys.executable, "-c", REPORT_DATACLASSES, "pack", str(C3), "-o", str(tmp_path / "out"), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "dataclasses defined: []"


def test_pack_prints_its_summary_without_rich(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    cmd = [sys.executable, "-c", REPORT_MODULES, "pack", str(C3), "-o", str(tmp_path / "out"), "--bootloader", str(boot)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "IMGTOOL_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 0, done.stderr
    assert "% used" in done.stdout and "write-flash @flash_args" in done.stdout
    assert done.stdout.splitlines()[-1] == "rich loaded: False"


def test_each_output_is_hashed_once(tmp_path, monkeypatch):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    hashed: list[_Counting] = []
    real = hashlib.sha256

    class _Counting:
        """A SHA-256 that tallies the bytes it was given, whether at once or in pieces."""

        def __init__(self, data=b""):
            self.hash, self.length = real(data), len(data)
            hashed.append(self)

        def update(self, data):
            self.length += len(data)
            self.hash.update(data)

        def __getattr__(self, name):
            return getattr(self.hash, name)

    monkeypatch.setattr(flash_outputs.hashlib, "sha256", _Counting)  # hashlib itself: counts every caller
    res = pack(C3, PackOptions(outdir=tmp_path / "out", bootloader=boot, flash_size="4MB", fill_flash_size=True, project_config=False))
    merged_size = 4 * 1024 * 1024 - res.merged.offset
    lengths = [h.length for h in hashed]
    assert res.merged.size == merged_size and lengths.count(merged_size) == 1  # the filled merged image, once
    assert lengths.count(res.app_size) == 1  # the app: its build's pass gives the file's digest too
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
