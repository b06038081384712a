"""ESP32-S31 end to end, ESP32-H4 and ESP32-H21 as far as public facts go.

The chip table's new rows are checked against ESP-IDF v6.1's own headers and linker scripts
(``../shared/reference/esp-idf-v6.1/``); the S31 corpus app packs with the pinned S31 bootloader,
verifies, and flashes into the ROM-protocol mock through ``imgtool flash`` and ``esptool
write-flash @flash_args``; synthetic H4 and H21 apps pack with a ``--bootloader`` file, verify, and
flash through ``imgtool flash`` into their mock profiles.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BAUD, CORPUS, ESPTOOL, ESPTOOL_TIMEOUT, corpus_path, flash_holds, make_bootloader, run_cli
from elfbuild import Sym, app_descriptor, build_elf, esp_app_elf, esp_app_sections

from imgtool.chips.security import ECDSA192, RSA3072
from imgtool.chips.table import CHIPS, KiB, Region
from imgtool.elf.chip_detect import detect_chip, resolve_chip
from imgtool.elf.reader import read_elf
from imgtool.inspect.verify import verify
from imgtool.pack.job import PackOptions, pack

NEW_CHIPS = ("esp32s31", "esp32h4", "esp32h21")
REFERENCE = CORPUS.parent / "reference" / "esp-idf-v6.1"
_DEFINE = re.compile(r"^#define\s+(\w+)\s+(\S+)", re.M)
_LD_ASSIGN = re.compile(r"^(\w+)\s*=\s*(0x[0-9a-fA-F]+)\s*;", re.M)


def reference(name: str) -> str:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"ESP-IDF v6.1 reference files not found at {REFERENCE}")
    return path.read_text()


def defines(name: str) -> dict[str, int]:
    """The numeric ``#define``s of a header, names of other defines resolved (``SOC_DROM_LOW SOC_IROM_LOW``)."""
    raw = dict(_DEFINE.findall(reference(name)))
    out: dict[str, int] = {}
    for key, value in raw.items():
        value = raw.get(value, value).strip("()").rstrip("U")
        if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", value):
            out[key] = int(value, 0)
    return out


# --------------------------------------------------------------------------- the chip table


@pytest.mark.parametrize("name", NEW_CHIPS)
def test_new_chip_addresses_match_esp_idf_soc_h(name):
    chip, soc = CHIPS[name], defines(f"soc-{name}.h")
    assert (chip.boot.irom.start, chip.boot.irom.end) == (soc["SOC_IROM_LOW"], soc["SOC_IROM_HIGH"])
    assert (chip.boot.drom.start, chip.boot.drom.end) == (soc["SOC_DROM_LOW"], soc["SOC_DROM_HIGH"])
    (sram,) = chip.ranges(Region.SRAM)
    assert (sram.start, sram.end) == (soc["SOC_IRAM_LOW"], soc["SOC_IRAM_HIGH"]) == (soc["SOC_DRAM_LOW"], soc["SOC_DRAM_HIGH"])
    (lp,) = chip.ranges(Region.RTC_IRAM)
    assert (lp.start, lp.end) == (soc["SOC_RTC_IRAM_LOW"], soc["SOC_RTC_IRAM_HIGH"])
    assert chip.boot.diram.dram == (soc["SOC_DIRAM_DRAM_LOW"], soc["SOC_DIRAM_DRAM_HIGH"])
    if "SOC_EXTRAM_LOW" in soc:  # PSRAM with its own MMU (S31): counted with the flash mappings
        assert chip.boot.extra_mapped == ((soc["SOC_EXTRAM_LOW"], soc["SOC_EXTRAM_HIGH"]),)
    assert chip.boot.bootloader_ram[0].rom_stack_start == soc["SOC_ROM_STACK_START"]


@pytest.mark.parametrize("name", NEW_CHIPS)
def test_new_chip_bootloader_ram_is_the_v6_1_linker_script(name):
    ld = {k: int(v, 16) for k, v in _LD_ASSIGN.findall(reference(f"bootloader-{name}.memory.ld.in"))}
    ram = CHIPS[name].boot.bootloader_ram[0]
    data_end = ld["bootloader_usable_dram_end"] - ld["bootloader_stack_overhead"]
    assert ram.data == (data_end - ld["bootloader_dram_seg_len"], data_end)
    assert ram.loader_text.start == ram.data.start - ld["bootloader_iram_loader_seg_len"]
    assert ram.loader_text.end == ram.data.start


@pytest.mark.parametrize("name", NEW_CHIPS)
def test_new_chip_caps_match_esp_idf_soc_caps_h(name):
    chip, caps = CHIPS[name], defines(f"soc_caps-{name}.h")
    assert (len(chip.mmu_page_sizes) > 1) == bool(caps.get("SOC_MMU_PAGE_SIZE_CONFIGURABLE"))
    assert chip.unified_flash_map == bool(caps.get("SOC_MMU_DI_VADDR_SHARED"))
    assert (chip.boot.max_flash_span == 1 << 32) == bool(caps.get("SOC_SPI_MEM_SUPPORT_CACHE_32BIT_ADDR_MAP"))
    secure = chip.secure_boot
    if not caps.get("SOC_SECURE_BOOT_SUPPORTED"):
        assert secure is None
    else:
        assert (RSA3072 in secure.schemes) == bool(caps["SOC_SECURE_BOOT_V2_RSA"])
        assert (ECDSA192 in secure.schemes) == bool(caps["SOC_SECURE_BOOT_V2_ECC"])
        assert secure.key_slots == caps["SOC_EFUSE_SECURE_BOOT_KEY_DIGESTS"]
    lengths = {32} | ({64} if caps.get("SOC_FLASH_ENCRYPTION_XTS_AES_256") else set())
    assert chip.flash_encryption.xts and set(chip.flash_encryption.key_lengths) == lengths


def test_s31_flash_mmu_page_sizes_are_the_flash_mmus():
    """mmu_ll_set_page_size: the S31 flash MMU has 256/128/64/32 KiB pages (the PSRAM MMU's 64..8 KiB are not the app's)."""
    text = reference("mmu_ll-esp32s31.h")
    flash_branch = text[text.index("mmu_ll_set_page_size") :].split("MMU_LL_PSRAM_MMU_ID")[0]
    sizes = {int(k) * KiB for k in re.findall(r"MMU_PAGE_(\d+)KB", flash_branch)}
    assert set(CHIPS["esp32s31"].mmu_page_sizes) == sizes


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_crystals_match_soc_caps(name):
    caps = defines(f"soc_caps-{name}.h")
    assert set(CHIPS[name].crystals_mhz) == {int(m) for m in re.findall(r"SOC_XTAL_SUPPORT_(\d+)M", " ".join(caps))}


def test_chip_choices_come_from_the_chip_table():
    """Each command's --chip offers exactly the chip table's chips, the new ones among them."""
    for command in ("pack", "image", "flash"):
        result = run_cli(command, "--help", env={"COLUMNS": "400"})
        (choices,) = re.findall(r"--chip \[([a-z0-9|]+)\]", result.output)
        assert set(choices.split("|")) == set(CHIPS) >= set(NEW_CHIPS), command


# --------------------------------------------------------------------------- detection


def _metadata_elf(path: Path, stated: str, crate: str) -> Path:
    """An H21-addressed app whose esp-hal metadata names ``stated`` and whose crate symbols name ``crate``."""
    secs = esp_app_sections("esp32h21")
    meta = next(s for s in secs if s.name == ".espressif.metadata")
    at = meta.data.index(stated.encode())
    symbols = [f"{crate}.0123456789abcdef-cgu.0", Sym("build_info.CHIP_NAME", at, len(stated), "OBJECT", section=meta.name)]
    path.write_bytes(build_elf(secs, entry=secs[0].addr, symbols=symbols))
    return path


def test_build_info_chip_name_decides_between_chips_at_the_same_addresses(tmp_path):
    """H21 and C6 share their RAM and flash addresses; esp-hal's build_info.CHIP_NAME says which it is."""
    elf = read_elf(_metadata_elf(tmp_path / "app", "esp32h21", crate="esp32c6"))
    assert elf.metadata_chip == "esp32h21"
    assert detect_chip(elf).name == "esp32h21"
    warnings: list[str] = []
    assert resolve_chip(elf, "esp32c6", warnings).name == "esp32c6"
    assert warnings == [f"{elf.path}: the ELF is built for esp32h21 (esp-hal's build_info.CHIP_NAME) but --chip is esp32c6"]


def test_s31_corpus_app_is_detected_from_its_addresses():
    elf = read_elf(corpus_path("new-chips", "esp32s31"))
    assert elf.metadata_chip is None  # an ESP-IDF C app: no esp-hal metadata
    assert detect_chip(elf).name == "esp32s31"


# --------------------------------------------------------------------------- packing, verifying, flashing


def test_s31_corpus_app_packs_and_verifies_with_the_pinned_bootloader(tmp_path):
    elf = corpus_path("new-chips", "esp32s31")
    env = {"IMGTOOL_BOOTLOADER_MIRROR": str(corpus_path("bootloaders")), "IMGTOOL_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "s31"
    result = run_cli("pack", elf, "-o", out, env=env)
    assert result.exit_code == 0, result.output
    pinned = (corpus_path("bootloaders") / "esp32s31-bootloader.bin").read_bytes()
    placed = (out / "bootloader.bin").read_bytes()
    assert len(placed) == len(pinned) and placed[8:-32] == pinned[8:-32]  # header patched, SHA-256 re-computed
    assert "0x2000 bootloader.bin" in (out / "flash_args").read_text()
    (build,) = json.loads((out / "manifest.json").read_text())["builds"]
    assert build["chipFamily"] == "ESP32-S31" and build["parts"][0]["offset"] == 0x2000
    checked = run_cli("verify", out, "--elf", elf)
    assert checked.exit_code == 0, checked.output
    assert "ok   elf: all 7 loadable sections of esp32s31" in checked.output


@pytest.mark.parametrize("name", ("esp32h4", "esp32h21"))
def test_h4_and_h21_apps_pack_with_a_bootloader_file_and_verify(tmp_path, name):
    elf = tmp_path / "app"
    elf.write_bytes(esp_app_elf(name))
    boot = make_bootloader(tmp_path / "bootloader.bin", name)
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    assert res.chip == name and res.parts[0].offset == CHIPS[name].bootloader_offset
    report = verify(res.outdir, elf=elf)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize("name", ("esp32h4", "esp32h21"))
def test_h4_and_h21_without_a_bootloader_file_are_refused_in_one_line(tmp_path, name):
    elf = tmp_path / "app"
    elf.write_bytes(esp_app_elf(name))
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--offline")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"imgtool: error: {name}: no prebuilt bootloader is pinned for {name}") and "--bootloader FILE" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def s31_pack(tmp_path_factory):
    """One pack of the S31 corpus app for the module: the tests only read it (flash it, verify it)."""
    tmp_path = tmp_path_factory.mktemp("s31")
    elf = corpus_path("new-chips", "esp32s31")
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=corpus_path("bootloaders", "esp32s31-bootloader.bin"), project_config=False))
    return elf, res


def _read_back(url: str, elf: Path, res) -> None:
    flash_holds("esp32s31", url, res.outdir, *((part.offset, part.file) for part in res.parts))
    report = verify(res.outdir, elf=elf)
    assert report.ok, [str(p) for p in report.problems]


def test_s31_pack_flashes_through_esptool_write_flash_flash_args(s31_pack, mock_port):
    pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")
    elf, res = s31_pack
    url = mock_port("esp32s31")
    cmd = [*ESPTOOL, "--chip", "esp32s31", "--port", url, "--baud", BAUD, "write-flash", "@flash_args"]
    proc = subprocess.run(cmd, cwd=res.outdir, capture_output=True, text=True, timeout=ESPTOOL_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Hash of data verified") == len(res.parts)
    _read_back(url, elf, res)


def test_s31_pack_flashes_through_imgtool_flash(s31_pack, mock_port):
    pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")
    elf, res = s31_pack
    url = mock_port("esp32s31")
    result = run_cli("flash", res.outdir, "--port", url, "--baud", BAUD)
    assert result.exit_code == 0, result.output[-3000:]
    _read_back(url, elf, res)


def _s31_app_with_page(path: Path, log2: int) -> Path:
    secs = esp_app_sections("esp32s31")
    desc = next(s for s in secs if s.name == ".rodata_desc")
    desc.data = app_descriptor(mmu_page_size_log2=log2)
    text = next(s for s in secs if s.name == ".text")
    path.write_bytes(build_elf(secs, entry=text.addr, symbols=["esp32s31.0123456789abcdef-cgu.0"]))
    return path


@pytest.mark.parametrize("log2, app_offset", [(15, 0x10000), (17, 0x20000), (18, 0x40000)])
def test_s31_app_partition_starts_on_the_apps_mmu_page(tmp_path, log2, app_offset):
    """S31's flash MMU has 128 and 256 KiB pages, larger than the 64 KiB app alignment: the default table
    starts the app on its page (verify_segment_header compares flash and load addresses modulo it)."""
    elf = _s31_app_with_page(tmp_path / "app", log2)
    boot = make_bootloader(tmp_path / "bootloader.bin", "esp32s31")
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=boot, project_config=False))
    assert next(p for p in res.parts if p.name == "app").offset == app_offset
    report = verify(res.outdir, elf=elf)
    assert report.ok, [str(p) for p in report.problems]


def test_s31_table_whose_app_partition_misses_the_mmu_page_is_refused_in_one_line(tmp_path):
    elf = _s31_app_with_page(tmp_path / "app", 17)
    boot = make_bootloader(tmp_path / "bootloader.bin", "esp32s31")
    result = run_cli("pack", elf, "-o", tmp_path / "out", "--bootloader", boot, "--partition-table", "single_app")
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert "the app maps 128 KiB MMU pages but partition 'factory' starts at 0x10000, not a multiple of 0x20000" in line
    assert "(verify_segment_header)" in line
    assert not (tmp_path / "out").exists()


def test_build_info_chip_name_is_found_behind_a_longer_name_ending_alike(tmp_path):
    secs = esp_app_sections("esp32h21")
    meta = next(s for s in secs if s.name == ".espressif.metadata")
    at = meta.data.index(b"esp32h21")
    decoy = Sym("my_build_info.CHIP_NAME", 0, 7, "OBJECT", section=meta.name)  # listed first in the string table
    real = Sym("build_info.CHIP_NAME", at, len("esp32h21"), "OBJECT", section=meta.name)
    (tmp_path / "app").write_bytes(build_elf(secs, entry=secs[0].addr, symbols=[decoy, real]))
    assert read_elf(tmp_path / "app").metadata_chip == "esp32h21"


@pytest.mark.parametrize(
    "name, flash_entries, psram",
    [("esp32s31", 1024, (0x5000_0000, 1024)), ("esp32h4", 512, None), ("esp32h21", 256, None)],
)
def test_new_chip_mmu_windows_follow_ext_mem_defs(name, flash_entries, psram):
    """SOC_MMU_ENTRY_NUM and the MMU's virtual base per chip (ext_mem_defs.h); S31's PSRAM MMU is its own and the app's."""
    from imgtool.chips.table import FLASH_MMU_ID, PSRAM_MMU_ID

    boot = CHIPS[name].boot
    flash = boot.mmu_window(boot.irom.start)
    assert (flash.mmu_id, flash.base, flash.first_entry, flash.entries, flash.boot_mapped) == (
        FLASH_MMU_ID, boot.irom.start, 0, flash_entries, True
    )
    if psram is None:
        assert len(boot.mmu_windows()) == 1
    else:
        window = boot.mmu_window(psram[0])
        assert (window.mmu_id, window.base, window.entries, window.boot_mapped) == (PSRAM_MMU_ID, psram[0], psram[1], False)


@pytest.mark.parametrize("name", ("esp32h4", "esp32h21"))
def test_h4_and_h21_packs_flash_through_imgtool_flash(tmp_path, mock_port, name):
    pytest.importorskip("esp32_mock_bootloader", reason="esp32-mock-bootloader is not installed")
    elf = tmp_path / "app"
    elf.write_bytes(esp_app_elf(name))
    res = pack(elf, PackOptions(outdir=tmp_path / "out", bootloader=make_bootloader(tmp_path / "bootloader.bin", name), project_config=False))
    url = mock_port(name)
    result = run_cli("flash", res.outdir, "--port", url, "--baud", BAUD)
    assert result.exit_code == 0, result.output[-3000:]
    flash_holds(name, url, res.outdir, *((part.offset, part.file) for part in res.parts))
