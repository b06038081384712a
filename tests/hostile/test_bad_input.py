"""Hostile and broken input through the CLI: every case ends in one `imgtool: error:` line and changes nothing.

Each case builds its inputs in a fresh folder, runs one command through click's
CliRunner, and checks: a non-zero exit, exactly one ``imgtool: error:`` line naming
the file and the problem, no traceback, and the whole folder (OUTDIR included)
byte-for-byte unchanged, with no temp files left behind.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from conftest import FIXTURES, make_bootloader, run_cli, snapshot

from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
XTENSA = FIXTURES / "esp32-min.elf"


# --------------------------------------------------------------------------- helpers




def elf_bytes(mutate=None, src: Path = C3) -> bytes:
    data = bytearray(src.read_bytes())
    return bytes(mutate(data)) if mutate else bytes(data)


def program_headers(data: bytes) -> list[tuple[int, tuple]]:
    """(file offset of the header, (type, offset, vaddr, paddr, filesz, memsz, flags, align)) per program header."""
    phoff = struct.unpack_from("<I", data, 28)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    return [(phoff + i * phentsize, struct.unpack_from("<8I", data, phoff + i * phentsize)) for i in range(phnum)]


def section_header(data: bytes, name: bytes) -> int:
    """File offset of the section header called ``name``."""
    shoff = struct.unpack_from("<I", data, 32)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 46)
    names_at = struct.unpack_from("<I", data, shoff + shstrndx * shentsize + 16)[0]
    for i in range(shnum):
        at = shoff + i * shentsize
        if data[names_at + struct.unpack_from("<I", data, at)[0] :].split(b"\0", 1)[0] == name:
            return at
    raise KeyError(name)


def _section_field(name: bytes, field: int, value):
    """Set one 32-bit field of a section header (12 addr, 16 offset, 20 size); value may depend on the file."""

    def mutate(d: bytearray) -> bytearray:
        struct.pack_into("<I", d, section_header(d, name) + field, value(d) if callable(value) else value)
        return d

    return mutate


def _overlapping_sections(d: bytearray) -> bytearray:
    desc = struct.unpack_from("<I", d, section_header(d, b".rodata_desc") + 12)[0]
    struct.pack_into("<I", d, section_header(d, b".rodata") + 12, desc + 0x10)  # .rodata inside .rodata_desc
    return d


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


class Work:
    """The case's folder: inputs, a bootloader, an OUTDIR with an older pack in it."""

    def __init__(self, root: Path):
        self.root = root
        self.boot = make_bootloader(root / "bl-c3.bin", "esp32c3")
        self.out = root / "out"

    def elf(self, mutate=None, name="fw.elf", src=C3) -> Path:
        return write(self.root / "src" / name, elf_bytes(mutate, src))

    def packed(self, **kw) -> Path:
        """A good pack in OUTDIR (so 'unchanged' means something); returns the merged image."""
        elf = self.root / "good" / "fw"
        elf.parent.mkdir(exist_ok=True)
        shutil.copy(C3, elf)
        res = pack(elf, PackOptions(outdir=self.out, bootloader=self.boot, project_config=False, **kw))
        return self.out / res.merged.file

    def image(self, mutate) -> Path:
        run_cli("image", str(C3), "-o", str(self.root / "app.bin"), "-q")
        raw = bytearray((self.root / "app.bin").read_bytes())
        (self.root / "app.bin").unlink()
        return write(self.root / "in" / "bad.bin", bytes(mutate(raw)))

    def merged(self, mutate, **kw) -> Path:
        good = self.packed(**kw)
        return write(self.root / "in" / "bad.merged.bin", bytes(mutate(bytearray(good.read_bytes()))))

    def csv(self, text: str, name="parts.csv") -> Path:
        return write(self.root / "in" / name, text)

    def pack_args(self, elf: Path, *extra) -> list:
        return ["pack", elf, "-o", self.out, "--bootloader", self.boot, *extra]


HEAD = "nvs, data, nvs, 0x9000, 0x6000,\nphy_init, data, phy, 0xf000, 0x1000,\n"


def table_case(rows: str, *needles, extra=()):
    """pack with a --partition-table CSV breaking one rule."""

    def build(w: Work):
        w.packed()
        csv = w.csv(rows)
        return w.pack_args(w.elf(), "--partition-table", csv, *extra), [str(csv), *needles]

    return build


def elf_case(mutate, *needles, command="pack"):
    def build(w: Work):
        elf = w.elf(mutate)
        if command == "pack":
            w.packed()
            return w.pack_args(elf), [str(elf), *needles]
        return ["image", elf, "-o", w.root / "app.bin"], [str(elf), *needles]

    return build


def image_case(mutate, *needles):
    def build(w: Work):
        img = w.image(mutate)
        return ["info", img], [str(img), *needles]

    return build


def merged_case(mutate, *needles, extra=(), **kw):
    def build(w: Work):
        bad = w.merged(mutate, **kw)
        return ["verify", bad, *extra], [str(bad), *needles]

    return build


def _flip(pos: int):
    def mutate(d: bytearray) -> bytearray:
        d[pos] ^= 0x01
        return d

    return mutate


def _set(pos: int, value: bytes):
    def mutate(d: bytearray) -> bytearray:
        d[pos : pos + len(value)] = value
        return d

    return mutate


# --------------------------------------------------------------------------- the cases


def _bootloader_for_other_chip(w: Work):
    w.packed()
    boot = make_bootloader(w.root / "bl-esp32.bin", "esp32")
    return ["pack", w.elf(), "-o", w.out, "--bootloader", boot], [str(boot), "esp32"]


def _bootloader_not_an_image(w: Work):
    w.packed()
    boot = write(w.root / "junk.bin", b"not a bootloader" * 10)
    return ["pack", w.elf(), "-o", w.out, "--bootloader", boot], [str(boot), "magic"]


def _bootloader_variant_unknown(w: Work):
    w.packed()
    return ["pack", w.elf(), "-o", w.out, "--bootloader-variant", "v9"], ["--bootloader-variant", "'v9'", "esp32c3"]


def _bootloader_file_and_variant(w: Work):
    w.packed()
    return [*w.pack_args(w.elf()), "--bootloader-variant", "default"], ["--bootloader-variant", "drop"]


def _bootloader_truncated(w: Work):
    w.packed()
    boot = write(w.root / "short.bin", w.boot.read_bytes()[:40])
    return ["pack", w.elf(), "-o", w.out, "--bootloader", boot], [str(boot)]


def _bootloader_hash_flipped(w: Work):
    w.packed()
    raw = bytearray(w.boot.read_bytes())
    raw[-1] ^= 0xFF
    boot = write(w.root / "badhash.bin", bytes(raw))
    return ["pack", w.elf(), "-o", w.out, "--bootloader", boot], [str(boot), "SHA-256"]


def _bootloader_missing(w: Work):
    w.packed()
    return ["pack", w.elf(), "-o", w.out, "--bootloader", w.root / "nope.bin"], ["nope.bin", "no such"]


def _outdir_is_a_file(w: Work):
    target = write(w.root / "out-file", b"i am a file")
    return ["pack", w.elf(), "-o", target, "--bootloader", w.boot], [str(target), "is a file"]


def _outdir_unwritable(w: Work):
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop writes")
    w.packed()
    w.out.chmod(0o500)
    return w.pack_args(w.elf()), [str(w.out)]


def _outdir_parent_unwritable(w: Work):
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop writes")
    locked = w.root / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return ["pack", w.elf(), "-o", locked / "out", "--bootloader", w.boot], [str(locked / "out")]


def _spaces_and_unicode_elf(w: Work):
    elf = write(w.root / "my project ü" / "fïrmware 名.elf", b"\x7fELF" + b"\x00" * 10)
    return ["pack", elf, "-o", w.root / "out dir é", "--bootloader", w.boot], [str(elf), "truncated"]


def _spaces_and_unicode_table(w: Work):
    csv = w.csv(HEAD + "factory, app, factory, 0x10000, 0x800,\n", name="tàble with space.csv")
    return w.pack_args(w.elf(), "--partition-table", csv), [str(csv), "0x800"]


def _missing_elf(w: Work):
    w.packed()
    return w.pack_args(w.root / "nope.elf"), ["nope.elf", "no such"]


def _elf_is_directory(w: Work):
    folder = w.root / "dir.elf"
    folder.mkdir()
    return ["image", folder, "-o", w.root / "x.bin"], [str(folder)]


def _missing_table(w: Work):
    w.packed()
    return w.pack_args(w.elf(), "--partition-table", w.root / "nope.csv"), ["nope.csv", "no such file"]


def _table_not_utf8(w: Work):
    w.packed()
    csv = w.csv("")
    csv.write_bytes(b"nvs, data, nvs, , \xff\xfe\xfd\n")
    return w.pack_args(w.elf(), "--partition-table", csv), [str(csv), "UTF-8"]


def _binary_table_md5(w: Work):
    from imgtool.partitions.choice import default_table

    raw = bytearray(default_table(0x200000).to_binary())
    raw[10] ^= 0x01
    table = write(w.root / "in" / "table.bin", bytes(raw))
    return ["partitions", "show", table], [str(table), "MD5"]


def _binary_table_truncated(w: Work):
    from imgtool.partitions.choice import default_table

    raw = default_table(0x200000).to_binary()[:70]
    table = write(w.root / "in" / "table.bin", raw)
    return ["partitions", "show", table], [str(table), "cut short"]


def _binary_table_no_end(w: Work):
    from imgtool.partitions.choice import default_table

    raw = default_table(0x200000).to_binary()[:32]
    table = write(w.root / "in" / "table.bin", raw)
    return ["partitions", "show", table], [str(table), "end-of-table"]


def _compile_output_into_missing_folder(w: Work):
    csv = w.csv(HEAD + "factory, app, factory, 0x10000, 1M,\n")
    return ["partitions", "compile", csv, "-o", w.root / "no" / "such" / "t.bin"], ["t.bin", "does not exist"]


def _bad_espflash_toml(w: Work):
    w.packed()
    elf = w.elf()
    toml = write(elf.parent / "espflash.toml", "[flash\nsize = 4MB\n")
    return w.pack_args(elf), [str(toml), "invalid TOML"]


def _espflash_toml_bad_size(w: Work):
    w.packed()
    elf = w.elf()
    toml = write(elf.parent / "espflash.toml", '[flash]\nsize = "3MB"\n')
    return w.pack_args(elf), [str(toml), "3MB"]


def _espflash_toml_bad_offset(w: Work):
    w.packed()
    elf = w.elf()
    toml = write(elf.parent / "espflash.toml", '[idf_format_args]\npartition_table_offset = "banana"\n')
    return w.pack_args(elf), [str(toml), "partition_table_offset"]


def _target_partition_missing(w: Work):
    w.packed()
    return w.pack_args(w.elf(), "--target-app-partition", "nope"), ["nope", "no partition named"]


def _verify_empty(w: Work):
    empty = write(w.root / "in" / "empty.bin", b"")
    return ["verify", empty], [str(empty), "empty"]


def _verify_folder_without_image(w: Work):
    folder = w.root / "in"
    folder.mkdir()
    write(folder / "readme.txt", "x")
    return ["verify", folder], [str(folder), "merged.bin"]


def _verify_wrong_chip(w: Work):
    good = w.packed()
    return ["verify", good, "--chip", "esp32"], [str(good), "esp32"]


def _verify_elf_mismatch(w: Work):
    good = w.packed()
    return ["verify", good, "--elf", XTENSA], [str(good), "elf"]


CASES = {
    # ELFs through pack and image
    "elf-empty": elf_case(lambda d: bytearray(), "not an ELF"),
    "elf-wrong-magic": elf_case(lambda d: bytearray(b"\x7fELG") + d[4:], "not an ELF"),
    "elf-truncated-header": elf_case(lambda d: d[:30], "truncated"),
    "elf-truncated-body": elf_case(lambda d: d[: len(d) // 3], "truncated"),
    "elf-truncated-image-cmd": elf_case(lambda d: d[: len(d) // 2], "truncated", command="image"),
    "elf-64-bit": elf_case(lambda d: d[:4] + b"\x02" + d[5:], "64-bit"),
    "elf-arm-machine": elf_case(lambda d: d[:18] + (40).to_bytes(2, "little") + d[20:], "machine EM_ARM"),
    "elf-phnum-huge": elf_case(_set(44, b"\xff\xff")),
    "elf-phoff-past-eof": elf_case(_set(28, b"\x00\x00\xf0\x00")),
    "elf-shnum-huge": elf_case(_set(48, b"\xff\xff"), command="image"),
    "elf-shoff-past-eof": elf_case(_set(32, b"\x00\x00\xf0\x00"), command="image"),
    "elf-section-size-past-eof": elf_case(_section_field(b".text", 20, lambda d: len(d) + 0x1000)),
    "elf-section-offset-past-eof": elf_case(_section_field(b".text", 16, 0xF0_0000), command="image"),
    "elf-section-size-huge": elf_case(_section_field(b".rodata", 20, 0xFFFF_FFF0), command="image"),
    "elf-sections-overlap": elf_case(_overlapping_sections, "overlap"),
    "elf-missing": _missing_elf,
    "elf-is-a-directory": _elf_is_directory,
    "elf-path-spaces-unicode": _spaces_and_unicode_elf,
    # app images through info
    "image-truncated": image_case(lambda d: d[:100], "truncated"),
    "image-wrong-magic": image_case(_set(0, b"\xe8"), "magic"),
    "image-header-only": image_case(lambda d: d[:24]),
    "image-segment-count-huge": image_case(_set(1, b"\xff")),
    "image-segment-length-past-eof": image_case(_set(24 + 4, b"\x00\x00\x00\x7f")),
    # merged images through verify
    "merged-checksum-flipped": merged_case(lambda d: d, "checksum"),  # replaced below: needs the app checksum byte
    "merged-app-hash-flipped": merged_case(lambda d: d, "SHA-256"),  # replaced below
    "merged-bootloader-byte": merged_case(_flip(0x30), "bootloader"),
    "merged-table-md5-broken": merged_case(_flip(0x8000 + 20), "partition table", "MD5"),
    "merged-truncated": merged_case(lambda d: d[:0x8000], "partition table"),
    "merged-empty": _verify_empty,
    "merged-wrong-chip": _verify_wrong_chip,
    "merged-elf-mismatch": _verify_elf_mismatch,
    "verify-folder-without-image": _verify_folder_without_image,
    # partition tables: one rule broken each
    "table-overlap": table_case(HEAD + "factory, app, factory, 0x10000, 1M,\nstorage, data, spiffs, 0x80000, 64K,\n", "overlap"),
    "table-app-misaligned": table_case(HEAD + "factory, app, factory, 0x18000, 1M,\n", "0x18000", "aligned"),
    "table-app-size-unaligned": table_case(HEAD + "factory, app, factory, 0x10000, 0x10800,\n", "0x10800"),
    "table-duplicate-name": table_case(HEAD + "factory, app, factory, 0x10000, 512K,\nnvs, data, spiffs, , 64K,\n", "nvs", "already used"),
    "table-size-overflows-field": table_case(HEAD + "factory, app, factory, 0x10000, 0x100000000,\n", "does not fit"),
    "table-unknown-type": table_case(HEAD + "factory, blob, factory, 0x10000, 1M,\n", "type", "blob"),
    "table-unknown-subtype": table_case(HEAD + "factory, app, turbo, 0x10000, 1M,\n", "subtype", "turbo"),
    "table-unknown-flag": table_case(HEAD + "factory, app, factory, 0x10000, 1M, shiny\n", "shiny"),
    "table-nvs-too-small": table_case("nvs, data, nvs, 0x9000, 0x1000,\nfactory, app, factory, 0x10000, 1M,\n", "nvs", "too small"),
    "table-otadata-wrong-size": table_case(HEAD + "otadata, data, ota, 0x10000, 0x1000,\nota_0, app, ota_0, 0x20000, 1M,\n", "otadata", "0x2000"),
    "table-two-otadata": table_case(HEAD + "o1, data, ota, 0x10000, 8K,\no2, data, ota, 0x12000, 8K,\nf, app, factory, 0x20000, 1M,\n", "o2"),
    "table-flag-with-space": table_case(HEAD + "factory, app, factory, 0x10000, 1M, encrypted: readonly\n", "' readonly'"),
    "table-too-many": table_case("".join(f"p{i}, data, spiffs, , 4K,\n" for i in range(100)) + "factory, app, factory, , 1M,\n", "too many"),
    "table-past-flash-end": table_case(HEAD + "factory, app, factory, 0x10000, 3M,\n", "past the end", extra=("--flash-size", "2MB")),
    "table-bad-number": table_case(HEAD + "factory, app, factory, 0x10000, 1Q,\n", "1Q"),
    "table-unknown-env-var": table_case(HEAD + "factory, app, factory, 0x10000, ${IMGTOOL_NO_SUCH_VAR},\n", "IMGTOOL_NO_SUCH_VAR"),
    "table-inside-table-sector": table_case("nvs, data, nvs, 0x8000, 0x6000,\nfactory, app, factory, 0x10000, 1M,\n", "partition table"),
    "table-out-of-order": table_case(HEAD + "factory, app, factory, 0x100000, 1M,\nstorage, data, spiffs, 0x20000, 64K,\n", "storage"),
    "table-app-too-small": _spaces_and_unicode_table,
    "table-missing-file": _missing_table,
    "table-not-utf8": _table_not_utf8,
    "table-binary-md5": _binary_table_md5,
    "table-binary-truncated": _binary_table_truncated,
    "table-binary-no-end": _binary_table_no_end,
    "table-compile-into-missing-folder": _compile_output_into_missing_folder,
    # bootloaders
    "bootloader-wrong-chip": _bootloader_for_other_chip,
    "bootloader-not-an-image": _bootloader_not_an_image,
    "bootloader-truncated": _bootloader_truncated,
    "bootloader-hash-flipped": _bootloader_hash_flipped,
    "bootloader-missing": _bootloader_missing,
    "bootloader-variant-unknown": _bootloader_variant_unknown,
    "bootloader-file-and-variant": _bootloader_file_and_variant,
    # project files
    "espflash-toml-invalid": _bad_espflash_toml,
    "espflash-toml-bad-size": _espflash_toml_bad_size,
    "espflash-toml-bad-offset": _espflash_toml_bad_offset,
    "target-app-partition-missing": _target_partition_missing,
    # outputs
    "outdir-is-a-file": _outdir_is_a_file,
    "outdir-unwritable": _outdir_unwritable,
    "outdir-parent-unwritable": _outdir_parent_unwritable,
}


def _app_checksum_flipped(d: bytearray) -> bytearray:
    from imgtool.image.format import parse_image

    parsed = parse_image(bytes(d[0x10000:]))
    d[0x10000 + parsed.length - 33] ^= 0x01  # the checksum byte sits just before the 32-byte hash
    return d


def _app_hash_flipped(d: bytearray) -> bytearray:
    from imgtool.image.format import parse_image

    parsed = parse_image(bytes(d[0x10000:]))
    d[0x10000 + parsed.length - 1] ^= 0x01
    return d


CASES["merged-checksum-flipped"] = merged_case(_app_checksum_flipped, "app", "checksum")
CASES["merged-app-hash-flipped"] = merged_case(_app_hash_flipped, "app", "SHA-256")

#: Cases click's own argument checks refuse: the same one-line error, with exit status 2 (usage).
CLICK_USAGE = {"elf-is-a-directory", "outdir-is-a-file"}

#: Cases that show a bug in imgtool (reported, not fixed here): id → reason.
KNOWN_BUGS: dict[str, str] = {
}


def _params():
    for case in sorted(CASES):
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case])] if case in KNOWN_BUGS else []
        yield pytest.param(case, id=case, marks=marks)


def test_there_are_enough_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case, tmp_path):
    work = Work(tmp_path)
    args, needles = CASES[case](work)
    before = snapshot(tmp_path)
    try:
        result = run_cli(*args)
    finally:
        for path in (tmp_path / "out", tmp_path / "locked"):
            if path.exists():
                path.chmod(0o755)
    output = result.output
    assert result.exit_code not in (0, None), output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    if case in CLICK_USAGE:
        assert result.exit_code == 2, output
    lines = [line for line in output.splitlines() if line.startswith("imgtool: error:")]
    assert len(lines) == 1, output
    assert not [line for line in output.splitlines() if line.startswith(("Usage:", "Error:", "Try "))], output
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert snapshot(tmp_path) == before, "the folder changed (outputs or temp files were written)"
