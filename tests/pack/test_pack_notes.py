"""pack's warnings earn their place: default packs of real ELFs warn about nothing, facts worth knowing are
notes in the summary (gone with -q), a real problem warns once and names the option that fixes it."""

from __future__ import annotations

import json

import pytest
from conftest import CORPUS, corpus_elf_params, corpus_path, run_cli


@pytest.fixture
def mirror_env(tmp_path):
    return {"IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders")), "IMGTOOL_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.parametrize("elf", corpus_elf_params())
def test_default_pack_of_every_corpus_elf_prints_no_warning(elf, tmp_path, mirror_env):
    result = run_cli("pack", elf, "-o", tmp_path / "out", env=mirror_env)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    quiet = run_cli("pack", elf, "-o", tmp_path / "out", "-q", env=mirror_env)
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_the_bootloaders_revision_range_is_a_note_in_the_summary_and_json(tmp_path, mirror_env):
    elf = corpus_path("elf", "esp32c3")
    result = run_cli("pack", elf, "-o", tmp_path / "out", env=mirror_env)
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert notes == ["note: esp32c3 chips before v0.3 do not boot this pack: its bootloader starts on v0.3 and later; "
                     "for older chips pack with --bootloader"]
    doc = json.loads(run_cli("pack", elf, "-o", tmp_path / "out", "--json", env=mirror_env).stdout)
    assert doc["warnings"] == [] and len(doc["notes"]) == 1


def test_p4_default_pack_does_not_warn_about_chips_its_bootloader_refuses(tmp_path, mirror_env):
    """The pinned v3 bootloader checks its own header first, so pre-v3.0 chips never reach the app's loader-code clash."""
    result = run_cli("pack", corpus_path("elf", "esp32p4"), "-o", tmp_path / "out", env=mirror_env)
    assert result.exit_code == 0 and result.stderr == ""
    assert "note: esp32p4 chips before v3.0 do not boot this pack" in result.stdout and "--bootloader-variant" in result.stdout


def test_a_revision_range_the_user_chose_warns_once_naming_the_fix(tmp_path, mirror_env):
    out = tmp_path / "out"
    result = run_cli("pack", corpus_path("elf", "esp32c3"), "-o", out, "--min-rev", "0.0", "--max-rev", "0.99", "-q", env=mirror_env)
    warnings = result.stderr.splitlines()
    assert result.exit_code == 0 and len(warnings) == 1 and "it needs v0.3 or later" in warnings[0]
    assert "pass --min-rev 0.3" in warnings[0]
    followed = run_cli("pack", corpus_path("elf", "esp32c3"), "-o", out, "--min-rev", "0.3", "--max-rev", "0.99", "-q", env=mirror_env)
    assert followed.exit_code == 0 and followed.stderr == ""


def test_revisions_above_the_bootloaders_maximum_are_no_concern(tmp_path, mirror_env):
    """The bootloader does not check its own maximum revision, so an app for any later revision boots: nothing to say."""
    result = run_cli("pack", corpus_path("elf", "esp32"), "-o", tmp_path / "out", env=mirror_env)
    assert result.exit_code == 0 and result.stderr == "" and "note:" not in result.stdout


def test_a_finding_the_image_and_the_pack_both_make_is_said_once(tmp_path, mirror_env):
    elf = corpus_path("elf-history", "esp32c3-814be43c")  # no app descriptor: segment 0 starts with other data
    result = run_cli("pack", elf, "-o", tmp_path / "out", "-q", env=mirror_env)
    warnings = result.stderr.splitlines()
    assert result.exit_code == 0 and warnings and len(warnings) == len(set(warnings))


def test_verify_says_the_same_as_the_pack_and_does_not_warn(tmp_path, mirror_env):
    out = tmp_path / "out"
    assert run_cli("pack", corpus_path("elf", "esp32c3"), "-o", out, "-q", env=mirror_env).exit_code == 0
    result = run_cli("verify", out, env=mirror_env)
    assert result.exit_code == 0 and "warn" not in result.stdout
    assert "esp32c3 chips before v0.3 do not boot this pack" in result.stdout


def _history_elfs():
    """Params over the corpus's past ELFs; at collection, so without the corpus one skipped param."""
    folder = CORPUS / "elf-history"
    return [pytest.param(p, id=p.name) for p in sorted(folder.iterdir())] if folder.is_dir() else corpus_elf_params()


@pytest.mark.parametrize("elf", _history_elfs())
def test_every_line_a_pack_of_a_past_elf_prints_is_printed_once(elf, tmp_path, mirror_env):
    """The app is judged by the image build and again under the chosen bootloader: what both find is said once."""
    result = run_cli("pack", elf, "-o", tmp_path / "out", "-q", env=mirror_env)
    lines = result.stderr.splitlines()
    assert lines and len(lines) == len(set(lines))


def test_warnings_from_every_stage_of_a_pack_are_each_said_once(tmp_path, mirror_env):
    """A project-file warning, the image's and the bootloader judgement's: each once, in the order the stages ran."""
    from imgtool.bootloader.store import BootloaderStore
    from imgtool.pack.job import PackOptions, pack

    (tmp_path / "espflash.toml").write_text('baudrate = 921600\nunknown_key = 1\n')
    elf = corpus_path("elf-history", "esp32c3-814be43c")  # no app descriptor
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    options = PackOptions(outdir=tmp_path / "out", min_rev_full=0, max_rev_full=99, cwd=tmp_path, store=store, offline=True)
    warnings = pack(elf, options).warnings
    assert len(warnings) == 3 and len(set(warnings)) == 3
    assert "unknown_key" in warnings[0] and "no ESP-IDF app descriptor" in warnings[1] and "--min-rev 0.3" in warnings[2]
    result = run_cli("pack", elf, "-o", tmp_path / "cli", "--min-rev", "0.0", "--max-rev", "0.99", "-q", env=mirror_env)
    assert result.stderr.splitlines() == [f"imgtool: warning: {w}" for w in warnings[1:]]
