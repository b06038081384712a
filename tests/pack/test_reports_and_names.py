"""Reports say exactly what was checked, ``info`` and ``verify`` agree on exit codes, and output names are safe
as command-line arguments and zip members."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import FIXTURES, make_bootloader, run_cli

from imgtool.image.format import parse_image
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
APP_AT = 0x10000


@pytest.fixture
def packed(tmp_path):
    out = tmp_path / "out"
    pack(C3, PackOptions(outdir=out, bootloader=make_bootloader(tmp_path / "bl.bin", "esp32c3"), flash_size="4MB", project_config=False))
    return next(out.glob("*.merged.bin"))


def _without_hash(merged: bytes) -> bytes:
    """The merged image with its app rebuilt without an appended SHA-256 (still a valid image)."""
    app = parse_image(merged[APP_AT:])
    plain = app.image._replace(hash_appended=False).to_bytes()
    data = bytearray(merged)
    data[APP_AT : APP_AT + app.length] = plain + b"\xff" * (app.length - len(plain))
    return bytes(data)


def test_verify_says_no_sha256_was_checked_when_there_is_none(packed):
    report = verify(_without_hash(packed.read_bytes()), chip="esp32c3")
    assert report.ok, report.problems
    app = next(c for c in report.checks if c.part.startswith("app"))
    assert "checksum valid (no appended SHA-256)" in app.message and "SHA-256 valid" not in app.message
    boot = next(c for c in report.checks if c.part == "bootloader" and c.ok)
    has_hash = parse_image(packed.read_bytes()).stored_sha256 is not None
    assert ("checksum and SHA-256 valid" in boot.message) == has_hash


def _flip_app_checksum(merged: bytes) -> bytes:
    app = parse_image(merged[APP_AT:])
    data = bytearray(merged)
    data[APP_AT + app.length - 33] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_info_exits_1_on_problems_for_one_image_and_a_merged_one(tmp_path, packed, as_json):
    merged = tmp_path / "bad.merged.bin"
    merged.write_bytes(_flip_app_checksum(packed.read_bytes()))
    app = tmp_path / "bad.bin"
    app.write_bytes(_flip_app_checksum(packed.read_bytes())[APP_AT:])
    extra = ["--json"] if as_json else []
    for image in (merged, app):
        result = run_cli("info", image, *extra)
        assert result.exit_code == 1, (image, result.output)
        assert run_cli("verify", image).exit_code == 1
    good = run_cli("info", packed, *extra)
    assert good.exit_code == 0, good.output
    if as_json:
        assert json.loads(run_cli("info", merged, "--json").stdout)["problems"]


@pytest.mark.parametrize("name", ["-e", "..\\..", "fw\\x", "fw\x7f", "fw\x1b[31m"], ids=["dash", "dotdot-backslash", "backslash", "del", "escape"])
def test_an_elf_name_unsafe_as_an_argument_or_zip_member_is_refused(tmp_path, name):
    elf = tmp_path / name
    shutil.copy(C3, elf)
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", make_bootloader(tmp_path / "bl.bin", "esp32c3"))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "cannot name output files; rename the ELF" in result.stderr
    assert "\x7f" not in result.stderr and "\x1b" not in result.stderr  # shown escaped
    assert not (tmp_path / "out").exists()


def test_a_manifest_name_with_a_control_character_still_makes_valid_toml(tmp_path):
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    out = tmp_path / "c3"
    pack(C3, PackOptions(outdir=out, bootloader=make_bootloader(tmp_path / "bl.bin", "esp32c3"), flash_size="4MB", project_config=False))
    web = tmp_path / "web"
    result = run_cli("manifest", out, "-o", web / "manifest.json", "--name", "blink\x7fy", "--launchpad", "--base-url", "https://example.com/fw/")
    assert result.exit_code == 0, result.output
    doc = tomllib.loads((web / "launchpad.toml").read_text(encoding="utf-8"))
    assert "blink\x7fy" in doc


def test_a_symlink_loop_as_the_elf_or_the_output_is_one_line(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    for args in (["image", loop, "-o", tmp_path / "x.bin"], ["pack", loop, "-o", tmp_path / "out"],
                 ["sign", loop, "--key", loop, "-o", tmp_path / "s.bin"], ["sign", C3, "--key", C3, "-o", loop]):
        result = run_cli(*args)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgtool: error:"), result.stderr
    assert run_cli("image", C3, "-o", loop, "-q").exit_code == 0  # the link is replaced, as a rename replaces it
    assert loop.is_file() and not loop.is_symlink()
