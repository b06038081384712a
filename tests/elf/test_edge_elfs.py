"""Edge-case ELFs built in Python: what the image stage must load intact, and what it must refuse."""

from __future__ import annotations

import pytest
from elfbuild import EM_RISCV, EM_XTENSA, MiB, Sec, Seg, app_descriptor, build_elf, esp_app_sections, metadata_section

from imgtool.elf.reader import read_elf
from imgtool.errors import ElfError, LayoutError
from imgtool.image.boot_rules import image_cpu_view
from imgtool.image.build import build_app_image
from imgtool.image.format import APP_DESC_ELF_SHA256_OFFSET, parse_image
from imgtool.image.memory import elf_mismatches
from imgtool.image.segments import PADDING_ADDR, flash_data_offsets

PAGE = 0x10000

#: Where the esp32c6 preset of elfbuild puts .text (entry point).
C6_TEXT = next(sec.addr for sec in esp_app_sections("esp32c6") if sec.name == ".text")


def write(tmp_path, sections, name="fw.elf", **kwargs):
    path = tmp_path / name
    path.write_bytes(build_elf(sections, **kwargs))
    return path


def c3(tmp_path, extra=(), drop=(), **kwargs):
    sections = [s for s in esp_app_sections("esp32c3") if s.name not in drop] + list(extra)
    return write(tmp_path, sections, machine=EM_RISCV, entry=0x4201_0020, **kwargs)


def assert_loads_intact(path, **kwargs):
    result = build_app_image(path, **kwargs)
    img = parse_image(result.data)
    assert img.checksum_valid and img.hash_valid
    elf = read_elf(path)
    desc = elf.find_app_descriptor(elf.read_all())
    cpu = image_cpu_view(result.chip, img, result.data)
    assert elf_mismatches(img.image.segments, elf, app_desc_addr=desc.addr if desc else None, memory=cpu) == []
    for seg, off in zip(img.image.segments, flash_data_offsets(list(img.image.segments))):
        if seg.addr != PADDING_ADDR and result.chip.is_flash_mapped(seg.addr):
            assert off % PAGE == seg.addr % PAGE
    return result


def test_corpus_like_layouts_convert(tmp_path):
    for chip, machine, entry in (("esp32c3", EM_RISCV, 0x42010020), ("esp32c6", EM_RISCV, C6_TEXT), ("esp32", EM_XTENSA, 0x400D0020)):
        path = write(tmp_path, esp_app_sections(chip), name=f"{chip}.elf", machine=machine, entry=entry)
        assert assert_loads_intact(path).chip.name == chip


def test_empty_sections_are_ignored(tmp_path):
    path = c3(tmp_path, extra=[Sec(".rodata.wifi", 0x3C00_0200, b"", flags="A"), Sec(".rtc.text", 0x5000_0000, b"", flags="AX")])
    assert_loads_intact(path)


def test_nobits_sections_are_not_written(tmp_path):
    result = assert_loads_intact(c3(tmp_path, extra=[Sec(".big_bss", 0x3FC9_0000, size=0x20000, flags="WA", type="NOBITS")]))
    assert all(s.addr != 0x3FC9_0000 for s in result.image.segments)
    assert len(result.data) < 0x20000 + 0x10000


def test_sections_sharing_a_page_become_one_segment(tmp_path):
    extra = [Sec(".rodata2", 0x3C00_4000, b"R2" * 64, flags="A")]
    result = assert_loads_intact(c3(tmp_path, extra=extra))
    first = result.image.segments[0]
    assert first.addr == 0x3C00_0020 and first.addr + len(first.data) >= 0x3C00_4080


def test_section_straddling_a_page_boundary(tmp_path):
    # rodata reaching into page 1 moves the code to page 2, as esp-hal's .rotext_dummy does: on esp32c3 a
    # DROM page and the IROM page with its index share one MMU entry (test_mmu.py has the refusal)
    extra = [Sec(".rodata_big", 0x3C00_FF00, bytes(range(256)) * 4, flags="A"), Sec(".text", 0x4202_0020, b"\x01\x00" * 32, flags="AX")]
    sections = [s for s in esp_app_sections("esp32c3") if s.name not in (".text", ".rotext_dummy")] + extra
    assert_loads_intact(write(tmp_path, sections, machine=EM_RISCV, entry=0x4202_0020))


def test_huge_flash_section(tmp_path):
    big = Sec(".text", 0x4201_0020, size=3 * MiB, data=b"\x13\x00\x00\x00" * 1024, flags="AX")
    sections = [s for s in esp_app_sections("esp32c3") if s.name != ".text"] + [big]
    path = write(tmp_path, sections, machine=EM_RISCV, entry=0x4201_0020)
    result = assert_loads_intact(path, flash_size="4MB")
    assert len(result.data) > 3 * MiB
    with pytest.raises(LayoutError, match="more than the 2MB flash"):
        build_app_image(path, flash_size="2MB")


def test_no_app_descriptor_warns(tmp_path):
    result = assert_loads_intact(c3(tmp_path, drop={".rodata_desc"}))
    assert result.app_desc is None
    assert any("no ESP-IDF app descriptor" in w for w in result.warnings)


def test_section_outside_memory_is_refused(tmp_path):
    path = c3(tmp_path, extra=[Sec(".stray", 0x1000_0000, b"oops", flags="A")])
    with pytest.raises(LayoutError, match=r"\.stray.*outside every memory region of esp32c3"):
        build_app_image(path, chip="esp32c3")


def test_program_headers_are_used_when_there_are_no_section_headers(tmp_path):
    path = c3(tmp_path, section_headers=False)
    result = build_app_image(path, chip="esp32c3")
    assert parse_image(result.data).valid



def test_descriptor_sharing_a_program_header_with_rodata_gets_the_elf_sha_and_keeps_the_rodata(tmp_path):
    import hashlib

    rodata = bytes(range(256)) * 64
    secs = esp_app_sections("esp32c3", rodata=rodata)
    merged = (".rodata_desc", ".rodata")
    segs = [Seg(sections=merged)] + [Seg(sections=(s.name,)) for s in secs if s.alloc and s.mem_size and s.name not in merged]
    path = write(tmp_path, secs, machine=EM_RISCV, entry=0x4201_0020, program_headers=segs, section_headers=False)
    result = assert_loads_intact(path, chip="esp32c3")
    first = result.image.segments[0]
    assert first.data[APP_DESC_ELF_SHA256_OFFSET : APP_DESC_ELF_SHA256_OFFSET + 32] == hashlib.sha256(path.read_bytes()).digest()
    desc_len = next(s for s in secs if s.name == ".rodata_desc").mem_size
    assert rodata in first.data[desc_len:]

def test_chip_detection_needs_hints_where_memory_maps_coincide(tmp_path):
    plain = [s for s in esp_app_sections("esp32c6") if s.name != ".espressif.metadata"]
    path = write(tmp_path, plain, name="anon.elf", machine=EM_RISCV, entry=C6_TEXT)
    with pytest.raises(ElfError, match=r"could be .*esp32c6.*esp32h2.*pass --chip"):
        build_app_image(path)
    assert build_app_image(path, chip="esp32h2").chip.name == "esp32h2"
    named = write(tmp_path, plain, name="named.elf", machine=EM_RISCV, entry=C6_TEXT, symbols=["esp32h2.abc-cgu.0"])
    assert build_app_image(named).chip.name == "esp32h2"


def test_chip_hint_disagreeing_with_chip_option_warns(tmp_path):
    path = write(tmp_path, esp_app_sections("esp32c6"), machine=EM_RISCV, entry=C6_TEXT)
    result = build_app_image(path, chip="esp32h2")
    assert any("mentions esp32c6" in w for w in result.warnings)


def test_overlapping_sections_are_refused(tmp_path):
    path = c3(tmp_path, extra=[Sec(".clash", 0x3FC8_0094, b"XXXXXXXX", flags="WA")])
    with pytest.raises(LayoutError, match="overlap"):
        build_app_image(path)


def test_descriptor_page_size_must_exist_on_the_chip(tmp_path):
    desc = Sec(".rodata_desc", 0x4200_0020, app_descriptor(mmu_page_size_log2=12), flags="A")
    sections = [desc if s.name == ".rodata_desc" else s for s in esp_app_sections("esp32c6")]
    path = write(tmp_path, sections, machine=EM_RISCV, entry=C6_TEXT)
    with pytest.raises(ElfError, match="4 KiB MMU page"):
        build_app_image(path)


def test_descriptor_page_size_is_ignored_where_the_page_is_fixed(tmp_path):
    desc = Sec(".rodata_desc", 0x3C00_0020, app_descriptor(mmu_page_size_log2=13), flags="A")
    sections = [desc if s.name == ".rodata_desc" else s for s in esp_app_sections("esp32c3")]
    result = build_app_image(write(tmp_path, sections, machine=EM_RISCV, entry=0x4201_0020))
    assert result.mmu_page_size == 0x10000
    assert any("always maps 64 KiB pages" in w for w in result.warnings)


def test_smaller_mmu_page_from_descriptor_is_honoured(tmp_path):
    desc = Sec(".rodata_desc", 0x4200_0020, app_descriptor(mmu_page_size_log2=15), flags="A")
    sections = [desc if s.name == ".rodata_desc" else s for s in esp_app_sections("esp32c6")]
    path = write(tmp_path, sections, machine=EM_RISCV, entry=C6_TEXT)
    assert build_app_image(path).mmu_page_size == 0x8000


def test_metadata_section_alone_identifies_the_chip(tmp_path):
    sections = [s for s in esp_app_sections("esp32c6") if s.name != ".espressif.metadata"] + [metadata_section("esp32h2")]
    path = write(tmp_path, sections, machine=EM_RISCV, entry=C6_TEXT)
    assert build_app_image(path).chip.name == "esp32h2"


ALIASES = 1000
ALIAS_SIZE = 4 * MiB
#: Peak memory a whole ``imgtool image`` run of the aliasing ELF may take (Python itself is most of it).
ALIAS_RSS_LIMIT = 100 * MiB


def _aliasing_elf(tmp_path, *, same_address: bool):
    """A 4 MiB ELF whose 1000 sections all claim the same 4 MiB of file bytes (one section header, repeated)."""
    import struct

    base = 0x3C00_0000
    extra = [Sec(f".a{i}", base + i * 4, b"\0" * 4, flags="A") for i in range(ALIASES - 1)]
    path = c3(tmp_path, extra=[Sec(".big", base, b"", size=ALIAS_SIZE, flags="A"), *extra], program_headers=False)
    data = bytearray(path.read_bytes())
    shoff, = struct.unpack_from("<I", data, 0x20)
    shnum, = struct.unpack_from("<H", data, 0x30)
    headers = [shoff + i * 40 for i in range(shnum)]
    big = next(h for h in headers if struct.unpack_from("<III", data, h + 12)[0] == base and struct.unpack_from("<I", data, h + 20)[0] == ALIAS_SIZE)
    big_offset = struct.unpack_from("<I", data, big + 16)[0]
    # 4 MiB slots of the address space clear of the app's own sections (0x3c000000..0x44000000)
    free_slots = iter([slot * ALIAS_SIZE for slot in range(1 << 10) if not base <= slot * ALIAS_SIZE < 0x4400_0000])
    for h in [x for x in headers if x != big and base <= struct.unpack_from("<I", data, x + 12)[0] < base + ALIAS_SIZE]:
        addr = base if same_address else next(free_slots, None)
        if addr is None:  # out of free slots: the rest loads nothing
            struct.pack_into("<I", data, h + 20, 0)
            continue
        struct.pack_into("<III", data, h + 12, addr, big_offset, ALIAS_SIZE)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="peak memory is read with the POSIX resource module")
@pytest.mark.parametrize("same_address", [True, False], ids=["same-address", "consecutive-addresses"])
def test_a_thousand_aliasing_sections_are_refused_before_they_are_read(tmp_path, same_address):
    import subprocess
    import sys

    path = _aliasing_elf(tmp_path, same_address=same_address)
    assert path.stat().st_size < 5 * MiB
    probe = (
        "import resource, sys\n"
        "from imgtool.cli.main import main\n"
        "try:\n    main(['image', sys.argv[1], '-o', sys.argv[2]])\n"
        "except SystemExit as e:\n    code = e.code\n"
        # VmHWM is this process's own peak (ru_maxrss on Linux keeps the parent's across fork and exec)
        "status = open('/proc/self/status').read() if sys.platform.startswith('linux') else ''\n"
        "hwm = [int(l.split()[1]) for l in status.splitlines() if l.startswith('VmHWM:')]\n"
        "print(hwm[0] * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == 'darwin' else 1024))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path), str(tmp_path / "x.bin")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and ("overlap" in done.stderr if same_address else "more than an app image" in done.stderr)
    assert int(done.stdout) < ALIAS_RSS_LIMIT
