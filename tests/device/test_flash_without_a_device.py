"""imgtool flash without a device: reading a pack folder, the chip checks, erase regions, port choice,
and the whole flow against a stand-in for esptool's API (the real esptool runs in test_e2e_flash)."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, corpus_path, make_bootloader, run_cli

from imgtool.device.flasher import FlashOptions, flash_folder
from imgtool.device.preflight import (
    DeviceInfo,
    FlashCheckError,
    check_chip,
    check_crystal,
    erase_regions,
    revision_problems,
)
from imgtool.errors import ImgtoolError, InputError, UsageError
from imgtool.flash.pack_folder import parse_args_file, read_pack_folder
from imgtool.pack.job import PackOptions, pack

C3 = FIXTURES / "esp32c3-min.elf"
ESP32 = FIXTURES / "esp32-min.elf"
CRYSTALS = {40: "40mhz", 26: "26mhz"}


@pytest.fixture
def c3_pack(tmp_path):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    pack(C3, PackOptions(outdir=out, bootloader=boot, flash_size="4MB", partition_table="factory_two_ota", project_config=False))
    return out


def reseal(folder) -> None:
    """Rewrite SHA256SUMS for the files now in ``folder``, as a pack of them would (flash checks it first)."""
    import hashlib

    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()} *{p.name}" for p in sorted(folder.iterdir()) if p.name != "SHA256SUMS"]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_read_pack_folder(c3_pack):
    folder = read_pack_folder(c3_pack)
    assert folder.chip == "esp32c3" and folder.settings.size == "4MB"
    assert [(off, p.name) for off, p in folder.parts] == [
        (0x0, "bootloader.bin"), (0x8000, "partitions.bin"), (0xD000, "ota_data_initial.bin"), (0x10000, "esp32c3-min.bin")
    ]  # fmt: skip
    assert folder.merged == (0x0, c3_pack / "esp32c3-min.merged.bin")
    assert folder.bootloader_source == {"source": "file", "idf_ver": None, "rules": "v5.5"}


def test_argument_file_with_quoted_names(tmp_path):
    args = tmp_path / "flash_args"
    args.write_text("-fm dio -ff 80m -fs 4MB\n0x0 'my boot.bin'\n0x10000 \"it's.bin\"\n", encoding="utf-8")
    settings, pairs = parse_args_file(args)
    assert settings == {"mode": "dio", "freq": "80m", "size": "4MB"}
    assert pairs == [(0, tmp_path / "my boot.bin"), (0x10000, tmp_path / "it's.bin")]
    args.write_text("-fm dio\nbogus app.bin\n", encoding="utf-8")
    with pytest.raises(InputError, match="'bogus' is not an offset"):
        parse_args_file(args)


def test_folder_without_pack_outputs_is_refused(tmp_path):
    with pytest.raises(InputError, match="run 'imgtool pack' into this folder first"):
        read_pack_folder(tmp_path)


def test_chip_mismatch_is_refused_whatever_chip_says(c3_pack):
    folder = read_pack_folder(c3_pack)
    with pytest.raises(FlashCheckError, match="connected chip is esp32, but the pack .* is for esp32c3"):
        check_chip(folder, device_chip="esp32")
    with pytest.raises(UsageError, match="--chip says esp32"):
        check_chip(folder, device_chip="esp32c3", requested_chip="esp32")


def test_revision_outside_the_app_range(c3_pack):
    folder = read_pack_folder(c3_pack)
    folder.app_revisions = (3, 199)  # v0.3 to v1.99
    assert revision_problems(folder, DeviceInfo("esp32c3", 3)) == []
    (problem,) = revision_problems(folder, DeviceInfo("esp32c3", 2))
    assert "revision v0.2 but the app runs on v0.3 to v1.99" in problem
    folder.bootloader_revisions = (300, 0xFFFF)
    assert len(revision_problems(folder, DeviceInfo("esp32c3", 2))) == 2


@pytest.mark.parametrize(
    ("source", "crystal", "expect"),
    [
        ({"source": "pinned", "variant": "40mhz", "crystal_mhz": 40}, 40, None),
        ({"source": "pinned", "variant": "40mhz", "crystal_mhz": 40}, 26, "variant:26mhz"),
        ({"source": "file"}, 40, None),
        ({"source": "file"}, 26, "problem:unknown crystal"),
        ({"source": "file", "variant": "40mhz", "crystal_mhz": 40}, 26, "problem:built for a 40 MHz crystal"),
        ({"source": "file", "variant": "26mhz", "crystal_mhz": 26}, 26, None),
    ],
)
def test_crystal_check(c3_pack, source, crystal, expect):
    folder = read_pack_folder(c3_pack)
    folder.chip, folder.bootloader_source = "esp32", source
    decision = check_crystal(folder, DeviceInfo("esp32", 300, crystal), CRYSTALS)
    if expect is None:
        assert decision.variant is None and decision.problem is None
    elif expect.startswith("variant:"):
        assert decision.variant == expect.split(":")[1] and "26 MHz crystal" in decision.note
    else:
        assert expect.split(":")[1] in decision.problem and "--bootloader-variant 26mhz" in decision.problem
    assert check_crystal(folder, DeviceInfo("esp32c3", 3, 26), {}).problem is None  # one build for every crystal


def test_erase_regions(c3_pack):
    folder = read_pack_folder(c3_pack)
    assert erase_regions(folder, ["nvs"], []) == [(0x9000, 0x4000, "nvs")]
    assert [r[2] for r in erase_regions(folder, ["nvs"], ["ota", "nvs"])] == ["nvs", "otadata"]
    with pytest.raises(UsageError, match="no partition is labelled 'wifi'.*labels: nvs, otadata"):
        erase_regions(folder, ["wifi"], [])
    with pytest.raises(UsageError, match="no data partition of type 'spiffs'"):
        erase_regions(folder, [], ["spiffs"])


def test_flow_parts_erase_and_reset(c3_pack, fake_esptool):
    opts = FlashOptions(port="socket://x", erase_data_parts=["nvs"], after="no-reset", no_stub=True, baud=115200)
    report = flash_folder(c3_pack, opts, log=lambda _: None)
    calls = fake_esptool.calls
    assert ("stub",) not in calls and ("baud", 115200) not in calls
    assert ("erase", 0x9000, 0x4000) in calls and calls[-1] == ("reset", "no-reset")
    (write,) = [c for c in calls if c[0] == "write"]
    assert [o for o, _ in write[1]] == [0x0, 0x8000, 0xD000, 0x10000] and write[2] is False
    assert report.device.chip == "esp32c3" and report.written[-1] == (0x10000, "esp32c3-min.bin")


def test_flow_refuses_a_revision_the_app_does_not_run_on_unless_forced(tmp_path, fake_esptool):
    boot = make_bootloader(tmp_path / "bl.bin", "esp32c3")
    out = tmp_path / "out"
    pack(C3, PackOptions(outdir=out, bootloader=boot, project_config=False))
    meta = json.loads((out / "flasher_args.json").read_text())
    app = out / meta["app"]["file"]
    from imgtool.image.build import build_app_image

    app.write_bytes(build_app_image(C3, min_rev_full=101).data)  # needs v1.1
    reseal(out)
    with pytest.raises(FlashCheckError, match="revision v0.4 but the app runs on v1.1 and later.*--force"):
        flash_folder(out, FlashOptions(port="p"), log=lambda _: None)
    assert not [c for c in fake_esptool.calls if c[0] == "write"]
    said = []
    flash_folder(out, FlashOptions(port="p", force=True), log=said.append)
    assert "--force" in said[0] and fake_esptool.calls[-2][2] is True  # esptool's own checks are skipped too


def test_flow_swaps_in_the_pinned_crystal_variant(tmp_path, fake_esptool):
    from imgtool.bootloader.store import BootloaderStore

    mirror = corpus_path("bootloaders")
    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(mirror))
    out = tmp_path / "out"
    pack(ESP32, PackOptions(outdir=out, project_config=False, offline=True, store=store))
    assert json.loads((out / "flasher_args.json").read_text())["imgtool"]["bootloader"]["variant"] == "40mhz"
    fake_esptool.CHIP_NAME, fake_esptool.revision, fake_esptool.crystal = "ESP32", 300, 26
    from imgtool.bootloader.place import place_bootloader

    expected = place_bootloader((mirror / "esp32_26-bootloader.bin").read_bytes(), "esp32", flash_mode="dio", flash_size="2MB", flash_freq="40m")
    for merged in (False, True):
        said = []
        report = flash_folder(out, FlashOptions(port="p", merged=merged), log=said.append, store=store)
        assert said == ["imgtool: the connected esp32 has a 26 MHz crystal: writing the pinned 26mhz bootloader instead of the pack's 40mhz"]
        (offset, data) = [c for c in fake_esptool.calls if c[0] == "write"][-1][1][0]
        assert offset == 0x1000 and data[: len(expected)] == expected
        assert report.notes and (out / "bootloader.bin").read_bytes() != expected  # the pack itself is unchanged


def test_cli_refuses_pack_options_with_a_folder(c3_pack):
    result = run_cli("flash", str(c3_pack), "--port", "p", "--flash-size", "8MB")
    assert result.exit_code == 2
    assert "--flash-size is a pack option" in result.output


def test_cli_chip_option_for_another_chip_fails_before_connecting(c3_pack):
    result = run_cli("flash", str(c3_pack), "--port", "socket://127.0.0.1:1", "--chip", "esp32")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"imgtool: error: --chip: the pack in {c3_pack} is for esp32c3, but --chip says esp32; pack the ELF for esp32 or drop --chip"
    ]


def test_cli_merged_without_flash_merged_args(c3_pack, fake_esptool):
    (c3_pack / "flash_merged_args").unlink()
    reseal(c3_pack)
    result = run_cli("flash", str(c3_pack), "--port", "p", "--merged")
    assert result.exit_code == 1 and "has no flash_merged_args" in result.output
    assert isinstance(result.exception, SystemExit)
    assert not issubclass(InputError, UsageError) and issubclass(FlashCheckError, ImgtoolError)


def test_flow_swaps_in_the_crystal_variant_of_the_packs_own_set(tmp_path, fake_esptool):
    """A pack made with the v6.1 set gets the v6.1 26 MHz build, not the v5.5 one (the set is in flasher_args.json)."""
    from imgtool.bootloader.place import place_bootloader
    from imgtool.bootloader.store import BootloaderStore

    store = BootloaderStore(cache_dir=tmp_path / "cache", mirror=str(corpus_path("bootloaders")))
    out = tmp_path / "out"
    pack(ESP32, PackOptions(outdir=out, project_config=False, offline=True, store=store, bootloader_set="idf6.1"))
    assert json.loads((out / "flasher_args.json").read_text())["imgtool"]["bootloader"]["set"] == "idf6.1"
    fake_esptool.CHIP_NAME, fake_esptool.revision, fake_esptool.crystal = "ESP32", 300, 26
    raw = corpus_path("bootloaders-idf6.1", "esp32_26-bootloader.bin").read_bytes()
    expected = place_bootloader(raw, "esp32", flash_mode="dio", flash_size="2MB", flash_freq="40m")
    flash_folder(out, FlashOptions(port="p"), log=lambda _: None, store=store)
    (offset, data) = [c for c in fake_esptool.calls if c[0] == "write"][-1][1][0]
    assert offset == 0x1000 and data[: len(expected)] == expected


# --------------------------------------------------------------------------- a pack folder is checked before use


def _point_flash_args_at(folder, name: str) -> None:
    args = folder / "flash_args"
    lines = args.read_text().splitlines()
    args.write_text("\n".join([*lines, f"0x300000 {name}"]) + "\n")


def _hostile_secret(c3_pack):
    secret = c3_pack.parent / "host_secret.txt"
    secret.write_text("not for the device")
    _point_flash_args_at(c3_pack, "../host_secret.txt")


def _hostile_link(c3_pack):
    secret = c3_pack.parent / "host_secret.txt"
    secret.write_text("not for the device")
    (c3_pack / "leak.bin").symlink_to(secret)
    _point_flash_args_at(c3_pack, "leak.bin")
    reseal(c3_pack)


def _unlisted(c3_pack):
    (c3_pack / "extra.bin").write_bytes(b"\x00" * 16)
    _point_flash_args_at(c3_pack, "extra.bin")
    reseal(c3_pack)
    sums = c3_pack / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if "extra.bin" not in line))


def _changed_part(c3_pack):
    (c3_pack / "partitions.bin").write_bytes(b"\x00" * 16)


def _no_sums(c3_pack):
    (c3_pack / "SHA256SUMS").unlink()


def _deep_json(c3_pack):
    (c3_pack / "flasher_args.json").write_text("[" * 100_000 + "]" * 100_000)


HOSTILE_PACKS = {
    "part-outside-the-folder": (_hostile_secret, "'../host_secret.txt', which is not a file in the pack folder"),
    "part-linking-outside": (_hostile_link, "'leak.bin', a link that leads outside the pack folder"),
    "part-not-in-sha256sums": (_unlisted, "'extra.bin', which SHA256SUMS does not list"),
    "part-changed": (_changed_part, "partitions.bin does not match its SHA256SUMS entry"),
    "no-sha256sums": (_no_sums, "has no SHA256SUMS"),
    "deep-flasher-args": (_deep_json, "nested too deeply"),
}


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("case", sorted(HOSTILE_PACKS))
def test_a_hostile_pack_folder_is_refused_before_connecting(c3_pack, monkeypatch, case, force):
    """``--force`` overrides chip checks, never these: nothing is read outside the folder, nothing unvouched is written."""
    from esptool import cmds

    connected = []
    monkeypatch.setattr(cmds, "detect_chip", lambda *args, **kwargs: connected.append(args))
    spoil, words = HOSTILE_PACKS[case]
    spoil(c3_pack)
    result = run_cli("flash", c3_pack, "--port", "p", *(["--force"] if force else []))
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("imgtool: error:") and words in result.stderr, result.stderr
    assert connected == []
