"""Apps are judged by the loader generation of the bootloader actually in the image, read from its
``esp_bootloader_desc_t``; the segment-0 eFuse-block check and disjoint revision ranges are refused."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, corpus_path

from imgtool.chips.table import CHIPS, chip_by_image_id
from imgtool.errors import LayoutError
from imgtool.image.boot_rules import BootContext, check_app, efuse_blk_fields
from imgtool.image.build import build_app_image
from imgtool.image.format import (
    BOOTLOADER_DESC_LEN,
    BootloaderDescriptor,
    EspImage,
    Segment,
    parse_bootloader_descriptor,
    parse_image,
)
from imgtool.image.loader_generations import DEFAULT_GENERATION, V5, V6, generation_for_version, loader_build
from imgtool.image.segments import PADDING_ADDR

C3_NO_DESC = ("elf-history", "esp32c3-814be43c")


def _descriptor(idf_ver: bytes) -> bytes:
    return BootloaderDescriptor.build(
        dict(reserved=b"\0\0", secure_version=0, version=1, idf_ver=idf_ver.ljust(32, b"\0"), date_time=b"\0" * 24, reserved2=b"\0" * 16)
    )


def _bootloader(chip_name: str, first_data: bytes) -> EspImage:
    chip = CHIPS[chip_name]
    dram = chip.boot.bootloader_ram[0].data.start
    return EspImage(chip.image_chip_id, dram, (Segment(dram, first_data),))


def test_descriptor_declaration_is_esp_idf_size():
    assert BOOTLOADER_DESC_LEN == 80
    assert parse_bootloader_descriptor(_descriptor(b"v6.1")).idf_ver.rstrip(b"\0") == b"v6.1"
    assert parse_bootloader_descriptor(b"\x51" + bytes(79)) is None


@pytest.mark.parametrize(
    ("version", "expected"),
    [("v5.5.1-838-gd66ebb86d2e", V5), ("v5.4", V5), ("v6.1-beta1-497-g14f663f003e", V6), ("v6.2-dev-1014", V6), ("v7.0", V6)],
)
def test_generation_from_the_version_major(version, expected):
    assert generation_for_version(version) == expected


def test_older_or_unreadable_versions_get_no_generation_of_their_own():
    assert generation_for_version("v4.4.7") is None and generation_for_version("master") is None


def test_bootloader_without_descriptor_gets_the_default_generation():
    build = loader_build(CHIPS["esp32c3"], parse_image(_bootloader("esp32c3", bytes(96)).to_bytes()))
    assert build.generation == DEFAULT_GENERATION and build.idf_ver is None
    assert "default" in build.label


def test_descriptor_in_the_first_dram_segment_decides():
    build = loader_build(CHIPS["esp32c3"], parse_image(_bootloader("esp32c3", _descriptor(b"v6.1-rc1") + bytes(16)).to_bytes()))
    assert build == (V6, "v6.1-rc1")


@pytest.mark.parametrize("folder", ["bootloaders", "bootloaders-idf6.1"])
def test_every_corpus_bootloader_names_its_generation(folder):
    """The generation comes from each file's descriptor, not from the set it is pinned in."""
    for path in sorted(corpus_path(folder).glob("*.bin")):
        parsed = parse_image(path.read_bytes())
        build = loader_build(chip_by_image_id(parsed.image.chip_id), parsed)
        if folder == "bootloaders-idf6.1" or path.name == "esp32s31-bootloader.bin":  # espflash v4.5.0's S31 is v6.2-dev
            assert build.generation == V6, (path.name, build)
        else:
            assert build.generation == V5, (path.name, build)
        assert build.idf_ver is not None


# --------------------------------------------------------------------------- segment 0's eFuse-block fields


def test_app_without_descriptor_gets_a_zeroed_segment_zero():
    app = build_app_image(corpus_path(*C3_NO_DESC))
    first = app.image.segments[0]
    assert first.addr == PADDING_ADDR and first.data == bytes(256)
    assert efuse_blk_fields(parse_image(app.data)) == (0, 0)
    assert not [f for f in check_app(app.chip, parse_image(app.data)) if f.rule == "bootloader_common_check_efuse_blk_validity"]


def test_old_layout_of_the_descriptorless_c3_app_is_refused(monkeypatch):
    """Laid out as before (code at segment 0's +0xB0), every ESP32-C3 refuses it: "requires efuse blk rev >= v106.60"."""
    import imgtool.image.build

    monkeypatch.setattr(imgtool.image.build, "APP_DESC_LEN", 0)
    with pytest.raises(LayoutError) as err:
        build_app_image(corpus_path(*C3_NO_DESC))
    assert "v106.60" in err.value.message and "bootloader_common_check_efuse_blk_validity" in err.value.message


def test_descriptorless_c3_app_packs_and_verifies_under_both_generations(tmp_path):
    from imgtool.bootloader.store import BootloaderStore
    from imgtool.inspect.verify import verify
    from imgtool.pack.job import PackOptions, pack

    elf = corpus_path(*C3_NO_DESC)
    for folder in ("bootloaders", "bootloaders-idf6.1"):
        out = tmp_path / folder
        boot = corpus_path(folder, "esp32c3-bootloader.bin")
        pack(elf, PackOptions(outdir=out, bootloader=boot, store=BootloaderStore(cache_dir=tmp_path / "cache")))
        report = verify(out, elf=elf)
        assert report.ok, [str(p) for p in report.problems]


def _with_first(image: EspImage, first: bytes) -> EspImage:
    return EspImage(image.chip_id, image.entry, (Segment(PADDING_ADDR, first), *image.segments))


def _efuse_verdicts(chip_name: str, image: EspImage):
    findings = check_app(CHIPS[chip_name], parse_image(image.to_bytes()))
    return [(f.fatal, f.message) for f in findings if f.rule == "bootloader_common_check_efuse_blk_validity"]


def test_small_efuse_limits_in_code_bytes_are_a_warning():
    base = build_app_image(FIXTURES / "esp32c3-min.elf").image
    first = bytearray(256)
    first[0xB0:0xB4] = (101).to_bytes(2, "little") + (199).to_bytes(2, "little")
    image = EspImage(base.chip_id, base.entry, (Segment(PADDING_ADDR, bytes(first)), *base.segments[1:]))
    verdicts = _efuse_verdicts("esp32c3", image)
    assert verdicts and verdicts[0][0] is False and "v1.1–v1.99" in verdicts[0][1]


def test_esp32_reads_no_efuse_block_fields():
    base = build_app_image(FIXTURES / "esp32-min.elf").image
    first = bytearray(256)
    first[0xB0:0xB2] = (10660).to_bytes(2, "little")
    assert _efuse_verdicts("esp32", _with_first(base, bytes(first))) == []


# --------------------------------------------------------------------------- disjoint revision ranges


def _revision_findings(min_rev: int, max_rev: int, boot_revs: tuple[int, int]):
    base = build_app_image(FIXTURES / "esp32c3-min.elf").image
    image = EspImage(base.chip_id, base.entry, base.segments, min_chip_rev_full=min_rev, max_chip_rev_full=max_rev)
    findings = check_app(CHIPS["esp32c3"], parse_image(image.to_bytes()), BootContext(bootloader_revs=boot_revs))
    return [f for f in findings if "revision" in f.message]


def test_app_above_the_bootloaders_build_range_is_refused():
    (finding,) = _revision_findings(900, 0xFFFF, (0, 99))
    assert finding.fatal and finding.rule == "bootloader_check_bootloader_validity"
    assert "maximum is not enforced" in finding.message


def test_app_below_the_bootloaders_minimum_is_refused():
    (finding,) = _revision_findings(0, 2, (3, 199))
    assert finding.fatal and finding.rule == "bootloader_check_bootloader_validity"
    assert "no chip boots" in finding.message


def test_overlapping_revision_mismatch_stays_a_warning():
    (finding,) = _revision_findings(0, 0xFFFF, (3, 199))
    assert not finding.fatal and finding.rule == "bootloader_common_check_chip_revision_validity"


def test_pack_refuses_a_disjoint_revision_range(tmp_path):
    from imgtool.errors import BootloaderError
    from imgtool.pack.job import PackOptions, pack

    with pytest.raises(BootloaderError) as err:
        pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=tmp_path / "o", min_rev_full=900, bootloader=corpus_path("bootloaders", "esp32c3-bootloader.bin")))
    assert "bootloader_check_bootloader_validity" in err.value.message
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- rules that differ by generation


def test_p4_v61_loader_code_reaches_lower():
    """v6.1's iram_loader_seg is 0x8000 bytes (bootloader-esp32p4.memory.ld.in), v5.5's 0x7000."""
    chip = CHIPS["esp32p4"]
    v6 = chip.boot.ram_for(300, V6.name).loader_text
    v5 = chip.boot.ram_for(300).loader_text
    assert v6.start < v5.start
    image = EspImage(chip.image_chip_id, v6.start, (Segment(v6.start, bytes(0x40)),), min_chip_rev_full=300)
    parsed = parse_image(image.to_bytes())

    def load_fatal(generation):
        findings = check_app(chip, parsed, BootContext(bootloader_revs=(300, 399), generation=generation))
        return [f for f in findings if f.rule == "verify_load_addresses" and f.fatal]

    assert load_fatal(V6) and not load_fatal(V5)


def test_c61_v61_bootloader_data_moved_down():
    chip = CHIPS["esp32c61"]
    assert chip.boot.ram_for(0, V6.name).data.end == chip.boot.ram_for(0).data.end - 0x400


def test_short_segment_zero_is_judged_alike_by_both_generations(monkeypatch):
    """The v6.1 reference loader (release/v6.1 at 14f663f003e) reads segment 0 as v5.5 does: neither
    ``process_segment_data`` nor ``verify_segment_header`` sets a minimum length for it, so an app whose
    segment 0 is 200 bytes (the eFuse-block fields at +0xB0 inside it) boots under both."""
    import imgtool.image.build

    monkeypatch.setattr(imgtool.image.build, "APP_DESC_LEN", 200)
    app = build_app_image(corpus_path(*C3_NO_DESC))
    parsed = parse_image(app.data)
    assert len(parsed.segments[0].segment.data) == 200
    for generation in (V5, V6):
        assert not [f for f in check_app(app.chip, parsed, BootContext(generation=generation)) if f.fatal], generation


# --------------------------------------------------------------------------- every descriptor-less corpus ELF


@pytest.mark.parametrize("name", ["esp32c2-550cfff7", "esp32c6-4f5d44c7", "esp32h2-3107c716"])
def test_descriptorless_apps_on_configurable_page_chips_are_refused(name):
    """``verify_segment_header`` reads the MMU page size from segment 0's descriptor on these chips and fails
    without its magic (v5.5 and v6.1 alike): no segment-0 layout helps, so the pack is refused in one line."""
    with pytest.raises(LayoutError) as err:
        build_app_image(corpus_path("elf-history", name))
    message = str(err.value)
    assert "verify_segment_header" in message and "app descriptor" in message and "\n" not in message


@pytest.mark.parametrize("name", ["esp32c3-814be43c", "esp32s2-51f29f96"])
def test_descriptorless_apps_on_fixed_page_chips_boot_with_a_zeroed_segment_zero(name):
    app = build_app_image(corpus_path("elf-history", name))
    assert app.image.segments[0] == Segment(PADDING_ADDR, bytes(256))
    parsed = parse_image(app.data)
    for generation in (V5, V6):
        assert not [f for f in check_app(app.chip, parsed, BootContext(generation=generation)) if f.fatal]


def test_verify_fails_a_merged_image_whose_app_needs_revisions_the_bootloader_is_not_built_for(tmp_path):
    """The pack is made for any revision, then the app's header is changed to need v9.0 (hash renewed)."""
    from imgtool.bootloader.store import BootloaderStore
    from imgtool.inspect.verify import verify
    from imgtool.pack.job import PackOptions, pack

    out = tmp_path / "o"
    result = pack(FIXTURES / "esp32c3-min.elf", PackOptions(outdir=out, bootloader=corpus_path("bootloaders", "esp32c3-bootloader.bin"),
                  store=BootloaderStore(cache_dir=tmp_path / "cache")))
    merged = bytearray((out / result.merged.file).read_bytes())
    app_at = result.app_partition_offset - result.merged.offset
    app = parse_image(bytes(merged[app_at:]))
    patched = app.image._replace(min_chip_rev_full=900, min_chip_rev=9).to_bytes()
    assert len(patched) == app.length
    merged[app_at : app_at + app.length] = patched
    report = verify(bytes(merged), chip="esp32c3")
    assert not report.ok
    (problem,) = [p for p in report.problems if "revision" in p.message]
    assert "bootloader_check_bootloader_validity" in problem.message and "v9.0" in problem.message


def test_an_app_judged_without_its_bootloader_is_refused_only_for_what_every_generation_refuses():
    """Inside the v5.5 ESP32-C61 bootloader's stack but above v6.1's (SOC_ROM_STACK_START is 0x400 lower
    there): the app alone gets a warning naming v5.5."""
    from imgtool.image.boot_rules import check_app_for_any_loader

    chip = CHIPS["esp32c61"]
    start = chip.boot.ram_for(0, V6.name).rom_stack_start
    assert start + 0x40 <= chip.boot.ram_for(0).rom_stack_start
    image = EspImage(chip.image_chip_id, start, (Segment(start, bytes(0x40)),))
    parsed = parse_image(image.to_bytes())
    load = [f for f in check_app_for_any_loader(chip, parsed) if f.rule == "verify_load_addresses"]
    assert len(load) == 1 and not load[0].fatal and "under the v5.5 loader only" in load[0].message
    assert [f for f in check_app(chip, parsed, BootContext(generation=V5)) if f.rule == "verify_load_addresses" and f.fatal]
    assert not [f for f in check_app(chip, parsed, BootContext(generation=V6)) if f.rule == "verify_load_addresses"]


@pytest.mark.parametrize(("fields", "verdict"), [((0xFFFF, 0xFFFF), None), ((0xFFFF, 0), None), ((0, 0), None), ((500, 0), True), ((3, 2), True)])
def test_efuse_block_fields_unset_values_follow_is_field_set(fields, verdict):
    base = build_app_image(FIXTURES / "esp32c3-min.elf").image
    first = bytearray(256)
    first[0xB0:0xB4] = fields[0].to_bytes(2, "little") + fields[1].to_bytes(2, "little")
    image = EspImage(base.chip_id, base.entry, (Segment(PADDING_ADDR, bytes(first)), *base.segments[1:]))
    found = _efuse_verdicts("esp32c3", image)
    assert (found[0][0] if found else None) is verdict, found


@pytest.mark.parametrize("chip_name", sorted(CHIPS))
def test_descriptorless_app_on_every_chip(tmp_path, chip_name):
    """Without an app descriptor: a zeroed 256-byte segment 0 where the chip reads eFuse-block fields (not on
    ESP32), still exactly two flash segments on shared-bus chips, and a one-line refusal where the chip
    reads the MMU page size from the descriptor; the same verdict under both generations."""
    from synthetic_apps import base_sections, build

    chip = CHIPS[chip_name]
    sections, _ = base_sections(chip_name)
    sections = [s for s in sections if s.name != ".rodata_desc"]
    if len(chip.mmu_page_sizes) > 1:
        with pytest.raises(LayoutError, match="verify_segment_header") as err:
            build(tmp_path, chip_name, sections)
        assert "\n" not in str(err.value)
        return
    app = build(tmp_path, chip_name, sections)
    first = app.image.segments[0]
    assert (first == Segment(PADDING_ADDR, bytes(256))) is chip.boot.efuse_blk_check
    parsed = parse_image(app.data)
    if chip.unified_flash_map:
        assert len([ps for ps in parsed.segments if chip.is_flash_mapped(ps.segment.addr)]) == 2
    for generation in (V5, V6):
        assert not [f for f in check_app(chip, parsed, BootContext(generation=generation)) if f.fatal], generation
