"""Bootloaders: the pinned manifest, cache/mirror/offline lookup over a real 127.0.0.1 server, checks and placing."""

from __future__ import annotations

import hashlib
import re
import sys

import pytest
from conftest import CORPUS, corpus_path, esptool, run_cli
from test_download import LocalServer

from imgtool.bootloader.choice import bootloader_for_app
from imgtool.bootloader.download import DownloadSettings
from imgtool.bootloader.pins import Manifest, ManifestEntry, load_manifest, parse_manifest
from imgtool.bootloader.place import load_user_bootloader, place_bootloader
from imgtool.bootloader.store import BootloaderStore
from imgtool.chips.table import CHIPS, FLASH_MODES, FLASH_SIZES, get_chip
from imgtool.environment import ENV_MIRROR
from imgtool.errors import BootloaderError, UsageError
from imgtool.image.format import HEADER_LEN, EspImage, Segment, parse_image

PINNED_COMMIT = "3b3f960bf6166ace5ad06500775db24e7305803b"
PINNED_BASE = f"https://raw.githubusercontent.com/esp-rs/espflash/{PINNED_COMMIT}/espflash/resources/bootloaders/"
FAST = DownloadSettings(timeout=0.3, retries=0, backoff=0.0)
#: (chip, variant, file, default) served by the test server.
TEST_BUILDS = (
    ("esp32", "40mhz", "esp32-bootloader.bin", True),
    ("esp32c3", "default", "esp32c3-bootloader.bin", True),
    ("esp32p4", "v0", "esp32p4-v0-bootloader.bin", False),
    ("esp32p4", "v3", "esp32p4-v3-bootloader.bin", True),
)
#: Revision ranges (major*100+minor) given to generated stand-ins when the corpus is absent.
GENERATED_REVS = {"esp32p4-v0-bootloader.bin": (100, 199), "esp32p4-v3-bootloader.bin": (300, 399)}


def generated_bootloader(chip_name: str, min_rev: int = 0, max_rev: int = 199) -> bytes:
    chip = get_chip(chip_name)
    segments = (
        Segment(0x3FC8_0000, bytes(range(64))),
        Segment(0x4038_0000, bytes(reversed(range(128)))),
    )
    image = EspImage(
        chip_id=chip.image_chip_id,
        entry=0x4038_0004,
        segments=segments,
        flash_size_code=FLASH_SIZES["2MB"],
        min_chip_rev_full=min_rev,
        max_chip_rev_full=max_rev,
    )
    return image.to_bytes()


def build_bytes(chip: str, file: str) -> bytes:
    """The corpus file when the corpus is here, else a generated image for the same chip."""
    real = CORPUS / "bootloaders" / file
    if real.is_file():
        return real.read_bytes()
    return generated_bootloader(chip, *GENERATED_REVS.get(file, (0, 199)))


#: The store library calls in this module fetch through; :func:`isolated` gives each test its own.
STORE = BootloaderStore()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Every test gets its own cache and no mirror, so nothing reaches beyond 127.0.0.1 (the CLI's through the environment)."""
    monkeypatch.setattr(sys.modules[__name__], "STORE", BootloaderStore(cache_dir=tmp_path / "cache"))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    monkeypatch.setenv("CI", "1")


def use_mirror(monkeypatch, mirror: str) -> None:
    """Library fetches in this test go through ``mirror``."""
    monkeypatch.setattr(sys.modules[__name__], "STORE", BootloaderStore(STORE.cache_dir, mirror))


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def builds(server):
    """Bytes per file name, served under /pinned/ and /mirror/."""
    files = {}
    for chip, _variant, file, _default in TEST_BUILDS:
        files[file] = build_bytes(chip, file)
        server.files[f"/pinned/{file}"] = files[file]
        server.files[f"/mirror/{file}"] = files[file]
    return files


@pytest.fixture
def manifest(server, builds) -> Manifest:
    """A manifest like the shipped one whose pinned addresses are the local server's /pinned/."""
    return parse_manifest(
        {
            "schema": 1,
            "bootloaders": [
                {
                    "chip": chip,
                    "variant": variant,
                    "default": default,
                    "file": file,
                    "url": f"{server.url}/pinned/{file}",
                    "sha256": hashlib.sha256(builds[file]).hexdigest(),
                    "size": len(builds[file]),
                    "esp_idf": "release/v5.5",
                }
                for chip, variant, file, default in TEST_BUILDS
            ],
        }
    )


def fetch(manifest, chip="esp32c3", **kwargs):
    return STORE.fetch(chip, manifest=manifest, settings=FAST, quiet=True, **kwargs)


def cache_files(tmp_path) -> list[str]:
    folder = tmp_path / "cache" / "bootloaders"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


# --- the shipped manifest -------------------------------------------------------------------------


#: Chips ESP-IDF v6.1 supports but no Rust HAL does yet: espflash ships no bootloader for them.
NO_PREBUILT_BOOTLOADER = {"esp32h4", "esp32h21"}


def test_shipped_manifest_covers_every_chip_with_a_prebuilt_bootloader_with_one_default():
    shipped = load_manifest()
    assert {e.chip for e in shipped.entries} == set(CHIPS) - NO_PREBUILT_BOOTLOADER
    for chip in set(CHIPS) - NO_PREBUILT_BOOTLOADER:
        assert sum(e.default for e in shipped.variants(chip)) == 1


def test_shipped_manifest_pins_immutable_https_addresses():
    shipped = load_manifest()
    for entry in shipped.entries:
        assert entry.url == PINNED_BASE + entry.file
        # espflash v4.5.0's builds are ESP-IDF release/v5.5, except ESP32-S31's (v5.5 lacks the chip)
        assert entry.esp_idf == ("v6.2-dev-1014-ge9da155a726" if entry.chip == "esp32s31" else "release/v5.5")
        assert re.fullmatch("[0-9a-f]{64}", entry.sha256)


def test_shipped_variants():
    shipped = load_manifest()
    assert shipped.lookup("esp32p4").variant == "v3"
    assert shipped.lookup("esp32p4", "v0").file == "esp32p4-v0-bootloader.bin"
    assert shipped.lookup("ESP32", "26MHz").file == "esp32_26-bootloader.bin"
    assert shipped.lookup("esp32c2", "26mhz").file == "esp32c2_26-bootloader.bin"
    assert shipped.lookup("esp32-c3").file == "esp32c3-bootloader.bin"
    with pytest.raises(UsageError, match="unknown bootloader variant 'v9' for esp32p4; use one of v0, v3"):
        shipped.lookup("esp32p4", "v9")


def test_shipped_manifest_matches_the_corpus():
    folder = corpus_path("bootloaders")
    for entry in load_manifest().entries:
        data = (folder / entry.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256, entry.file
        assert len(data) == entry.size, entry.file
        assert parse_image(data).image.chip_id == get_chip(entry.chip).image_chip_id


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sha256": "abc"}, "sha256"),
        ({"file": "../x.bin"}, "file"),
        ({"size": "big"}, "size"),
        ({"default": False}, "default"),
        ({"url": "ftp://x/y"}, "url"),
        ({"variant": "26mhz"}, "variant"),  # esp32c3 runs from a 40 MHz crystal only
    ],
)
def test_malformed_manifest_names_the_field(change, field):
    entry = {
        "chip": "esp32c3",
        "variant": "default",
        "default": True,
        "file": "b.bin",
        "url": "https://example.com/b.bin",
        "sha256": "0" * 64,
        "size": 1,
        "esp_idf": "release/v5.5",
    }
    with pytest.raises(BootloaderError) as err:
        parse_manifest({"schema": 1, "bootloaders": [{**entry, **change}]})
    assert err.value.field.endswith(field)


# --- getting a bootloader ---------------------------------------------------------------------------


def test_first_run_downloads_and_caches(manifest, builds, server, tmp_path):
    assert fetch(manifest) == builds["esp32c3-bootloader.bin"]
    assert server.requests == ["/pinned/esp32c3-bootloader.bin"]
    entry = manifest.lookup("esp32c3")
    assert STORE.path(entry).read_bytes() == builds["esp32c3-bootloader.bin"]
    assert STORE.path(entry).parent == tmp_path / "cache" / "bootloaders"


def test_second_run_makes_no_request(manifest, builds, server):
    fetch(manifest)
    assert fetch(manifest) == builds["esp32c3-bootloader.bin"]
    assert fetch(manifest, offline=True) == builds["esp32c3-bootloader.bin"]
    assert len(server.requests) == 1


def test_variants_are_cached_separately(manifest, builds, server):
    assert fetch(manifest, "esp32p4") == builds["esp32p4-v3-bootloader.bin"]
    assert fetch(manifest, "esp32p4", variant="v0") == builds["esp32p4-v0-bootloader.bin"]
    assert sorted(server.requests) == ["/pinned/esp32p4-v0-bootloader.bin", "/pinned/esp32p4-v3-bootloader.bin"]


def test_tampered_file_is_refused_and_not_cached(manifest, builds, server, tmp_path):
    good = builds["esp32c3-bootloader.bin"]
    bad = good[:100] + bytes([good[100] ^ 1]) + good[101:]
    server.files["/pinned/esp32c3-bootloader.bin"] = bad
    with pytest.raises(BootloaderError) as err:
        fetch(manifest)
    message = str(err.value)
    assert hashlib.sha256(good).hexdigest() in message
    assert hashlib.sha256(bad).hexdigest() in message
    assert "cannot get the esp32c3 bootloader" in message
    assert cache_files(tmp_path) == []


def test_damaged_cache_is_fetched_again(manifest, builds, server):
    path = STORE.path(manifest.lookup("esp32c3"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xe9 damaged")
    assert fetch(manifest) == builds["esp32c3-bootloader.bin"]
    assert len(server.requests) == 1


def test_stalled_server_times_out_with_a_clear_message(manifest, server, tmp_path):
    server.stall["/pinned/esp32c3-bootloader.bin"] = "body"
    with pytest.raises(BootloaderError, match=r"timed out: http://127\.0\.0\.1:\d+/pinned/esp32c3-bootloader\.bin"):
        fetch(manifest)
    assert cache_files(tmp_path) == []


def test_404_names_the_url(manifest, server):
    del server.files["/pinned/esp32c3-bootloader.bin"]
    with pytest.raises(BootloaderError, match=re.escape(f"{server.url}/pinned/esp32c3-bootloader.bin") + ".*404"):
        fetch(manifest)


def test_mirror_url_replaces_the_pinned_base(manifest, builds, server, monkeypatch):
    use_mirror(monkeypatch, f"{server.url}/mirror/")
    assert fetch(manifest) == builds["esp32c3-bootloader.bin"]
    assert server.requests == ["/mirror/esp32c3-bootloader.bin"]


def test_mirror_url_is_still_checked_against_the_pin(manifest, server, monkeypatch, tmp_path):
    server.files["/mirror/esp32c3-bootloader.bin"] = generated_bootloader("esp32c3", 0, 42)
    use_mirror(monkeypatch, f"{server.url}/mirror")
    with pytest.raises(BootloaderError, match="is pinned; nothing was kept"):
        fetch(manifest)
    assert cache_files(tmp_path) == []


def test_mirror_folder_needs_no_network_and_is_checked(manifest, builds, server, monkeypatch, tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "esp32c3-bootloader.bin").write_bytes(builds["esp32c3-bootloader.bin"])
    (folder / "esp32-bootloader.bin").write_bytes(b"not the pinned bytes")
    use_mirror(monkeypatch, str(folder))
    assert fetch(manifest, offline=True) == builds["esp32c3-bootloader.bin"]
    with pytest.raises(BootloaderError, match="is pinned; nothing was kept"):
        fetch(manifest, "esp32")
    with pytest.raises(BootloaderError, match=f"cannot read esp32p4-v3-bootloader.bin from the {ENV_MIRROR} folder"):
        fetch(manifest, "esp32p4")
    assert server.requests == []
    assert cache_files(tmp_path) == [STORE.path(manifest.lookup("esp32c3")).name]


def test_mirror_that_is_neither_url_nor_folder(manifest, monkeypatch, tmp_path):
    use_mirror(monkeypatch, str(tmp_path / "nowhere"))
    with pytest.raises(BootloaderError, match="neither an http\\(s\\) address nor an existing folder"):
        fetch(manifest)


def test_offline_with_empty_cache_says_what_to_do(manifest, server):
    with pytest.raises(BootloaderError) as err:
        fetch(manifest, "esp32p4", variant="v0", offline=True)
    message = str(err.value)
    assert "not cached" in message
    assert "imgtool bootloader fetch --chip esp32p4 --variant v0" in message
    assert ENV_MIRROR in message
    assert server.requests == []


def test_list_reports_cached_entries(manifest):
    fetch(manifest)
    cached = {(s.entry.chip, s.entry.variant): s.cached for s in STORE.statuses(manifest)}
    assert cached == {
        ("esp32", "40mhz"): False,
        ("esp32c3", "default"): True,
        ("esp32p4", "v0"): False,
        ("esp32p4", "v3"): False,
    }


def test_cache_dir_defaults_to_the_user_cache_whatever_the_environment():
    assert BootloaderStore().cache_dir.name == "imgtool"  # IMGTOOL_CACHE_DIR is set (isolated), and ignored


# --- user bootloaders and placing -------------------------------------------------------------------


def test_user_bootloader_must_be_an_intact_image_for_the_chip(tmp_path):
    good = generated_bootloader("esp32c3")
    path = tmp_path / "bl.bin"
    path.write_bytes(good)
    assert load_user_bootloader(path, "esp32c3") == good
    with pytest.raises(BootloaderError, match="built for esp32c3, not esp32c6") as err:
        load_user_bootloader(path, "esp32c6")
    assert err.value.path == str(path)
    path.write_bytes(good[:40] + bytes([good[40] ^ 0xFF]) + good[41:])
    with pytest.raises(BootloaderError, match="checksum"):
        load_user_bootloader(path, "esp32c3")
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BootloaderError, match="SHA-256 does not match"):
        load_user_bootloader(path, "esp32c3")
    path.write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(Exception, match="is an ELF file, not an ESP bootloader; pass the bootloader .bin"):
        load_user_bootloader(path, "esp32c3")
    path.write_bytes(b"\x00" + bytes(63))
    with pytest.raises(Exception, match="magic 0xE9"):
        load_user_bootloader(path, "esp32c3")


def test_place_patches_only_the_header_and_rehashes():
    original = generated_bootloader("esp32c3")
    placed = place_bootloader(original, "esp32c3", flash_mode="qio", flash_size="8MB", flash_freq="40m")
    parsed = parse_image(placed)
    assert parsed.valid and parsed.hash_valid
    assert parsed.image.flash_mode == FLASH_MODES["qio"]
    assert parsed.image.flash_size_code == FLASH_SIZES["8MB"]
    assert parsed.image.flash_freq_code == get_chip("esp32c3").flash_freq_code("40m")
    assert parsed.image.segments == parse_image(original).image.segments
    assert placed[2:4] != original[2:4]
    assert placed[:2] + placed[4:-32] == original[:2] + original[4:-32]
    assert len(placed) == len(original)


def test_place_drops_bytes_after_the_image():
    original = generated_bootloader("esp32c3")
    placed = place_bootloader(original + b"\xff" * 64, "esp32c3", flash_mode="dio", flash_size="4MB", flash_freq="80m")
    assert len(placed) == len(original)


def test_place_refuses_another_chip():
    with pytest.raises(BootloaderError, match="built for esp32c3, not esp32"):
        place_bootloader(generated_bootloader("esp32c3"), "esp32", flash_mode="dio", flash_size="4MB", flash_freq="40m")


def test_place_refuses_a_damaged_bootloader_instead_of_rehashing_it():
    good = generated_bootloader("esp32c3")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(BootloaderError, match="SHA-256"):
        place_bootloader(bad, "esp32c3", flash_mode="dio", flash_size="4MB", flash_freq="80m")


@pytest.mark.parametrize(
    "app_range, ok",
    [((0, 0xFFFF), True), ((300, 399), True), ((0, 99), False), ((400, 0xFFFF), False), ((399, 399), True)],
)
def test_place_requires_overlapping_chip_revisions(app_range, ok):
    v3 = generated_bootloader("esp32p4", 300, 399)
    kwargs = dict(flash_mode="dio", flash_size="16MB", flash_freq="80m")
    if ok:
        place_bootloader(v3, "esp32p4", app_min_rev_full=app_range[0], app_max_rev_full=app_range[1], **kwargs)
    else:
        with pytest.raises(BootloaderError, match=r"v3\.0.*\(bootloader_check_bootloader_validity\)"):
            place_bootloader(v3, "esp32p4", app_min_rev_full=app_range[0], app_max_rev_full=app_range[1], **kwargs)


def for_app(manifest, chip="esp32p4", **kwargs):
    return bootloader_for_app(chip, store=STORE, manifest=manifest, settings=FAST, quiet=True, **kwargs)


def test_app_for_any_revision_gets_the_default_variant(manifest, builds):
    data, note = for_app(manifest)
    assert data == builds["esp32p4-v3-bootloader.bin"] and note is None


def test_app_for_engineering_samples_gets_the_variant_that_runs_them(manifest, builds):
    data, note = for_app(manifest, app_min_rev_full=100, app_max_rev_full=199)
    assert data == builds["esp32p4-v0-bootloader.bin"]
    assert "variant v0" in note and "v1.0-v1.99" in note and "default v3" in note


def test_named_variant_is_taken_as_given(manifest, builds):
    data, note = for_app(manifest, variant="v0")
    assert data == builds["esp32p4-v0-bootloader.bin"] and note is None
    with pytest.raises(UsageError, match="unknown bootloader variant 'v9'.*v0, v3"):
        for_app(manifest, variant="v9")


def test_no_matching_variant_leaves_the_mismatch_to_place(manifest, builds):
    data, note = for_app(manifest, app_min_rev_full=500, app_max_rev_full=599)
    assert data == builds["esp32p4-v3-bootloader.bin"] and note is None
    with pytest.raises(BootloaderError, match="--bootloader-variant"):
        place_bootloader(data, "esp32p4", flash_mode="dio", flash_size="16MB", flash_freq="80m",
                         app_min_rev_full=500, app_max_rev_full=599)


def test_place_rejects_unknown_flash_parameters():
    data = generated_bootloader("esp32c3")
    with pytest.raises(UsageError, match="--flash-freq"):
        place_bootloader(data, "esp32c3", flash_mode="dio", flash_size="4MB", flash_freq="26m-ish")
    with pytest.raises(UsageError, match="--flash-size"):
        place_bootloader(data, "esp32c3", flash_mode="dio", flash_size="3MB", flash_freq="80m")


def esptool_image_info(path) -> str:
    return esptool("image-info", path).stdout


def segment_lines(report: str) -> list[str]:
    return [line for line in report.splitlines() if re.match(r"\s+\d+\s+0x[0-9a-f]+\s+0x[0-9a-f]+", line)]


@pytest.mark.parametrize(
    "file, chip, mode, size, freq",
    [
        ("esp32-bootloader.bin", "esp32", "dio", "4MB", "40m"),
        ("esp32c3-bootloader.bin", "esp32c3", "qio", "8MB", "40m"),
        ("esp32p4-v3-bootloader.bin", "esp32p4", "dout", "16MB", "80m"),
    ],
)
def test_placed_corpus_bootloader_passes_esptool(tmp_path, file, chip, mode, size, freq):
    source = corpus_path("bootloaders", file)
    original = source.read_bytes()
    placed = place_bootloader(original, chip, flash_mode=mode, flash_size=size, flash_freq=freq)
    out = tmp_path / file
    out.write_bytes(placed)
    report = esptool_image_info(out)
    assert f"Flash size: {size}" in report
    assert f"Flash freq: {freq}" in report
    assert f"Flash mode: {mode.upper()}" in report
    assert re.search(r"Checksum: 0x[0-9a-f]{2} \(valid\)", report)
    assert re.search(r"Validation hash: [0-9a-f]{64} \(valid\)", report)
    assert segment_lines(report) == segment_lines(esptool_image_info(source))
    assert len(segment_lines(report)) == len(parse_image(original).segments)
    assert placed[HEADER_LEN:-32] == original[HEADER_LEN:-32]


# --- the command line -------------------------------------------------------------------------------


def test_cli_list_shows_every_pinned_build():
    result = run_cli("bootloader", "list", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for entry in load_manifest().entries:
        assert entry.sha256[:12] in result.output
    assert "v3 (default)" in result.output


def test_cli_fetch_offline_without_cache_fails_clearly():
    result = run_cli("bootloader", "fetch", "--chip", "esp32c6", "--offline")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("imgtool: error: the esp32c6 bootloader (default) is not cached in ")
    assert "offline mode forbids downloading it; run 'imgtool bootloader fetch --chip esp32c6' while online" in line
    assert f"set {ENV_MIRROR} to a folder holding esp32c6-bootloader.bin" in line


def test_cli_fetch_from_a_mirror_folder_writes_the_pinned_bytes(tmp_path, monkeypatch):
    folder = corpus_path("bootloaders")
    monkeypatch.setenv(ENV_MIRROR, str(folder))
    out = tmp_path / "bl.bin"
    result = run_cli("bootloader", "fetch", "--chip", "esp32", "--variant", "26mhz", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (folder / "esp32_26-bootloader.bin").read_bytes()
    assert str(out) in result.output
    listed = run_cli("bootloader", "list", env={"COLUMNS": "200"})
    assert re.search(r"esp32\s.*26mhz.*yes", listed.output)


def test_manifest_entry_is_a_value():
    entry = ManifestEntry("esp32", "40mhz", True, "f.bin", "https://x/f.bin", "0" * 64, 1, "release/v5.5")
    assert Manifest((entry,)).lookup("esp32") is entry
