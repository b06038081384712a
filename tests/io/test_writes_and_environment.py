"""One I/O module makes every write (staged, whole or not at all, following the umask), and only the CLI reads
the environment and the working folder, passing what it read down."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli

from imgtool import atomic
from imgtool.bootloader.store import BootloaderStore
from imgtool.environment import ENV_CACHE_DIR, ENV_MIRROR, UserEnvironment
from imgtool.errors import OutputError
from imgtool.flash.archive import ZIP_EPOCH, archive_timestamp
from imgtool.pack.job import PackOptions, pack

PACKAGE = Path(atomic.__file__).parent
C3 = FIXTURES / "esp32c3-min.elf"


def sources(*allowed: str) -> dict[str, str]:
    """Package modules (path relative to the package → text), except ``allowed``."""
    return {
        p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8")
        for p in PACKAGE.rglob("*.py")
        if p.relative_to(PACKAGE).as_posix() not in allowed
    }


def test_only_the_io_module_creates_temp_files_or_renames():
    pattern = re.compile(r"os\.replace|os\.rename|\.rename\(|mkstemp|mkdtemp|import tempfile|open\([^)]*[\"']wb[\"']")
    offenders = {name for name, text in sources("atomic.py").items() if pattern.search(text)}
    # data_parts writes into an in-memory LittleFS image, not a user's file
    assert offenders <= {"partitions/data_images.py"}, offenders


def test_only_the_cli_reads_the_environment_or_the_working_folder():
    pattern = re.compile(r"os\.environ|os\.getenv|Path\.cwd|os\.getcwd|os\.chdir")
    offenders = {name for name, text in sources("cli/context.py").items() if pattern.search(text)}
    assert offenders == set(), offenders


def test_environment_is_parsed_once_with_blanks_as_unset():
    env = UserEnvironment.from_environ(
        {ENV_CACHE_DIR: "~/c", ENV_MIRROR: "  https://m/ ", "CI": "", "ESPPORT": "  ", "SOURCE_DATE_EPOCH": "5"}
    )
    assert env.cache_dir == Path("~/c").expanduser() and env.cache() == env.cache_dir
    assert env.mirror == "https://m/" and env.ci is False and env.port is None and env.source_date_epoch == "5"
    empty = UserEnvironment.from_environ({})
    assert empty.cache_dir is None and empty.cache().name == "imgtool" and empty.mirror == ""


def test_library_defaults_ignore_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env-cache"))
    monkeypatch.setenv(ENV_MIRROR, str(tmp_path))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    store = BootloaderStore()
    assert store.cache_dir != tmp_path / "env-cache" and store.mirror == ""
    assert archive_timestamp() == ZIP_EPOCH
    assert archive_timestamp("1700000000") == (2023, 11, 14, 22, 13, 20)


def test_pack_shows_paths_relative_to_the_given_working_folder_only(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    given = pack(C3, PackOptions(outdir=out, bootloader=boot, project_config=False, cwd=tmp_path, store=BootloaderStore(tmp_path / "c")))
    assert given.merged_esptool_args[-1] == os.path.join("out", "esp32c3-min.merged.bin")
    assert given.esptool_args[-1] == os.path.join("out", "esp32c3-min.bin")
    plain = pack(C3, PackOptions(outdir=out, bootloader=boot, project_config=False, store=BootloaderStore(tmp_path / "c")))
    assert Path(plain.merged_esptool_args[-1]).is_absolute() and Path(plain.esptool_args[-1]).is_absolute()


def test_the_output_lock_is_beside_the_folder_not_in_the_cache(tmp_path, monkeypatch):
    """Two packs into one folder lock each other whatever IMGTOOL_CACHE_DIR each has; the lock file goes afterwards."""
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    cache = tmp_path / "cache"
    seen = []
    real = atomic.file_lock

    def spying(path):
        seen.append(atomic.folder_lock_path(Path(path)) if Path(path).is_dir() else Path(path))
        return real(path)

    monkeypatch.setattr(atomic, "file_lock", spying)
    result = run_cli("pack", C3, "-o", tmp_path / "out", "--bootloader", boot, "-q", env={ENV_CACHE_DIR: str(cache)})
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path / f".out{atomic.FOLDER_LOCK_SUFFIX}"]
    assert not seen[0].exists() and not (cache / "locks").exists()
    listed = run_cli("bootloader", "list", "--json", env={ENV_CACHE_DIR: str(cache)})
    assert all(Path(row["path"]).parent == cache / "bootloaders" for row in json.loads(listed.output))


def test_staged_file_replaces_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.staged_file(dest) as fh:
            fh.write(b"half")
            raise RuntimeError("interrupted")
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    with atomic.staged_file(dest) as fh:
        fh.write(b"new")
    assert dest.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_bytes(tmp_path / "one", b"1")
        atomic.write_outputs(tmp_path / "out", {"two": b"2"})
    finally:
        os.umask(old)
    if os.name == "posix":
        assert {(tmp_path / "one").stat().st_mode & 0o777, (tmp_path / "out" / "two").stat().st_mode & 0o777} == {0o640}


def test_write_bytes_names_the_path_on_failure(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        atomic.write_bytes(tmp_path / "missing" / "f", b"")
    with pytest.raises(OutputError, match="is a directory"):
        atomic.write_bytes(tmp_path, b"")


def test_the_seal_leaves_first_and_arrives_last(tmp_path, monkeypatch):
    out = tmp_path / "out"
    files = {"SUMS": b"s", "a": b"a", "b": b"b"}
    atomic.write_outputs(out, files)
    renames: list[tuple[str, str]] = []
    real = os.replace

    def recording(src, dst):
        renames.append((Path(src).parent.name, Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", recording)
    atomic.write_outputs(out, {**files, "SUMS": b"t"}, remove=("gone",), seal="SUMS")
    aside = [name for folder, name in renames if folder == "out"]
    placed = [name for folder, name in renames if folder == "new"]
    assert aside[0] == "SUMS" and placed[-1] == "SUMS" and sorted(placed) == sorted(files)
    assert (out / "SUMS").read_bytes() == b"t" and sorted(p.name for p in out.iterdir()) == sorted(files)


def test_scratch_folder_is_removed_with_everything_in_it():
    with atomic.scratch_folder("imgtool-test-") as tmp:
        (tmp / "out" / "deeper").mkdir(parents=True)
        (tmp / "out" / "deeper" / "f").write_bytes(b"x")
        (tmp / "g").write_bytes(b"y")
    assert not tmp.exists()


def test_cli_passes_espport_and_the_cache_to_the_flasher(tmp_path, monkeypatch):
    import imgtool.device.flasher

    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    pack(C3, PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False, store=BootloaderStore(tmp_path / "c")))
    seen = []
    monkeypatch.setattr(imgtool.device.flasher, "flash_folder", lambda folder, options, log, store: seen.append((options.port, store)))
    env = {"ESPPORT": " /dev/ttyACM7 ", ENV_CACHE_DIR: str(tmp_path / "cache")}
    assert run_cli("flash", tmp_path / "out", env=env).exit_code == 0
    assert run_cli("flash", tmp_path / "out", "--port", "COM3", env=env).exit_code == 0
    assert [port for port, _ in seen] == ["/dev/ttyACM7", "COM3"]
    assert {store.cache_dir for _, store in seen} == {tmp_path / "cache"}
