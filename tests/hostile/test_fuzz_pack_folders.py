"""Fuzzing what reads back imgtool's own outputs, which a user (or an attacker) may have edited: ``sign`` on app
images, ``manifest`` on pack folders (``flasher_args.json``, ``SHA256SUMS``), and ``flash``'s plan reading
(the argument files).

Properties: every call returns or raises ``ImgtoolError``; ``sign`` never signs an image whose checksum or
SHA-256 is wrong; nothing a pack folder names is taken from outside it. The normal run tries a few dozen
inputs per target (the hypothesis profile in conftest.py); IMGTOOL_FUZZ_EXAMPLES=100000 runs a long session.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, mutations
from hypothesis import example, given
from hypothesis import strategies as st

from imgtool.errors import ImgtoolError
from imgtool.flash.pack_folder import read_pack_folder
from imgtool.image.build import build_app_image
from imgtool.image.format import parse_image
from imgtool.pack.job import PackOptions, pack
from imgtool.release.web_manifest import read_pack
from imgtool.security.signing import read_signatures, sign_image

SEED_IMAGE = build_app_image(FIXTURES / "esp32c3-min.elf").data
#: Names a hostile pack folder might give for a file, beside the real ones.
HOSTILE_NAMES = ["../host_secret.txt", "/etc/hostname", "..\\x.bin", "", ".", "..", "a/b.bin", "-e.bin", "x\x7f.bin", "nul\x00.bin"]
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.sampled_from(["0x0", "0x10000", "0x7fffffff", "0x10000000", "zz"]),
                        st.sampled_from(HOSTILE_NAMES), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path_factory.mktemp("fuzzkey") / "k.pem"
    private = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


@given(data=st.one_of(mutations(SEED_IMAGE), st.binary(max_size=128)))
@example(data=SEED_IMAGE)
def test_fuzz_sign(tmp_path_factory, key, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-sign.bin"
    path.write_bytes(data)
    try:
        result = sign_image(path, keys=(key,), chip="esp32c6" if data[:1] == b"\x00" else None)
    except ImgtoolError:
        return
    assert parse_image(data).valid  # only an intact image is ever signed
    signed = parse_image(result.data)
    assert signed.valid
    assert all(info.valid for info in read_signatures(result.data, signed.length))


@pytest.fixture(scope="module")
def pack_folder(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A real esp32c3 pack and its files, restored before each example (examples edit a work copy)."""
    root = tmp_path_factory.mktemp("fuzzpack")
    out = root / "out"
    pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=make_bootloader(root / "bl.bin", "esp32c3"), flash_size="4MB", project_config=False))
    (root / "host_secret.txt").write_text("never read")
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


def _restore(out: Path, files: dict[str, bytes]) -> None:
    for p in out.iterdir():
        if p.name not in files:
            (p.unlink() if not p.is_dir() or p.is_symlink() else shutil.rmtree(p))
    for name, data in files.items():
        (out / name).write_bytes(data)


def _reseal(out: Path) -> None:
    """SHA256SUMS rewritten for the edited files, as anyone editing a pack folder can: the checks behind it must hold too."""
    import hashlib

    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()} *{p.name}" for p in sorted(out.iterdir()) if p.name != "SHA256SUMS"]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _inside(folder: Path, path: Path) -> bool:
    return os.path.dirname(os.path.realpath(path)) == os.path.realpath(folder)


def _edited_args(files: dict[str, bytes], field: str, value) -> bytes:
    doc = json.loads(files["flasher_args.json"])
    target = doc
    *parents, last = field.split(".")
    for part in parents:
        target = target.setdefault(part, {}) if isinstance(target.get(part), dict) else target
    target[last] = value
    return json.dumps(doc).encode()


ARGS_FIELDS = st.sampled_from(["flash_files", "merged", "merged.offset", "merged.file", "app", "app.file",
                               "extra_esptool_args", "extra_esptool_args.chip", "flash_settings", "imgtool"])


@given(field=ARGS_FIELDS, value=JSON_VALUES, reseal=st.booleans(), sums_line=st.one_of(st.none(), st.sampled_from(HOSTILE_NAMES)))
def test_fuzz_manifest_pack_reading(pack_folder, field, value, reseal, sums_line):
    out, files = pack_folder
    _restore(out, files)
    (out / "flasher_args.json").write_bytes(_edited_args(files, field, value))
    if reseal:
        _reseal(out)
    if sums_line is not None:
        with open(out / "SHA256SUMS", "a", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(f"{'0' * 64} *{sums_line}\n")
    try:
        read = read_pack(out)
    except ImgtoolError:
        return
    assert all(_inside(out, out / name) for _, name in read.parts)
    assert _inside(out, out / read.merged_file) and 0 <= read.merged_offset < 0x1000000


ARG_WORDS = st.one_of(st.sampled_from(["0x0", "0x8000", "0x10000", "-fm", "dio", "-fs", "4MB", "'", '"', "@x", "\\"]),
                      st.sampled_from(HOSTILE_NAMES), st.sampled_from(["bootloader.bin", "partitions.bin", "esp32c3-min.bin"]))


@given(which=st.sampled_from(["flash_args", "flash_merged_args"]), words=st.lists(ARG_WORDS, max_size=10),
       args=st.one_of(st.none(), JSON_VALUES), reseal=st.booleans())
def test_fuzz_flash_plan_reading(pack_folder, which, words, args, reseal):
    out, files = pack_folder
    _restore(out, files)
    (out / which).write_text(" ".join(words).replace("\x00", "") + "\n", encoding="utf-8", errors="surrogateescape")
    if args is not None:
        (out / "flasher_args.json").write_bytes(_edited_args(files, "flash_files", args))
    if reseal:
        _reseal(out)
    try:
        plan = read_pack_folder(out)
    except ImgtoolError:
        return
    for _, path in [*plan.parts, *([plan.merged] if plan.merged else [])]:
        assert _inside(out, path)
