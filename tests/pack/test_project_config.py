"""project_config: espflash.toml and [package.metadata.espflash], command line winning."""

from __future__ import annotations

import pytest

from imgtool.errors import InputError
from imgtool.pack.project_config import ProjectConfig, find_config_files, load_project_config, normalize_freq


@pytest.fixture
def crate(tmp_path):
    """A crate root with Cargo.toml and the ELF where cargo puts it."""
    root = tmp_path / "proj"
    elf_dir = root / "target" / "riscv32imc-unknown-none-elf" / "release"
    elf_dir.mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "blinky"\nversion = "0.1.0"\n')
    elf = elf_dir / "blinky"
    elf.write_bytes(b"\x7fELF")
    return root, elf


def test_no_files_gives_empty_config(crate):
    root, elf = crate
    cfg = load_project_config(elf, cwd=root)
    assert cfg == ProjectConfig(sources=())


def test_espflash4_idf_format_args_and_flash_table(crate):
    root, elf = crate
    (root / "espflash.toml").write_text(
        '[idf_format_args]\npartition_table = "parts.csv"\nbootloader = "boot/bl.bin"\n'
        'partition_table_offset = "0x9000"\ntarget_app_partition = "ota_0"\n'
        '[flash]\nmode = "QIO"\nsize = "8MB"\nfrequency = "80MHz"\n'
    )
    cfg = load_project_config(elf, cwd=root)
    assert cfg.partition_table == str(root / "parts.csv")
    assert cfg.bootloader == str(root / "boot" / "bl.bin")
    assert cfg.partition_table_offset == 0x9000
    assert cfg.target_app_partition == "ota_0"
    assert (cfg.flash_mode, cfg.flash_size, cfg.flash_freq) == ("qio", "8MB", "80m")
    assert cfg.sources == (str(root / "espflash.toml"),)


@pytest.mark.parametrize(
    "text",
    [
        '[idf]\npartition_table = "p.csv"\n',
        '[esp_idf_format_args]\npartition_table = "p.csv"\n',
        'partition_table = "p.csv"\n',  # espflash 2: top level
    ],
)
def test_older_and_aliased_layouts(crate, text):
    root, elf = crate
    (root / "espflash.toml").write_text(text)
    assert load_project_config(elf, cwd=root).partition_table == str(root / "p.csv")


def test_espflash2_freq_key(crate):
    root, elf = crate
    (root / "espflash.toml").write_text('[flash]\nfreq = "40M"\n')
    assert load_project_config(elf, cwd=root).flash_freq == "40m"


def test_cargo_metadata_and_espflash_toml_wins_over_it(crate):
    root, elf = crate
    (root / "Cargo.toml").write_text(
        '[package]\nname = "b"\n[package.metadata.espflash]\npartition_table = "cargo.csv"\nbootloader = "cargo.bin"\n'
    )
    cfg = load_project_config(elf, cwd=root)
    assert cfg.partition_table == str(root / "cargo.csv") and cfg.bootloader == str(root / "cargo.bin")
    (root / "espflash.toml").write_text('[idf_format_args]\npartition_table = "esp.csv"\n')
    cfg = load_project_config(elf, cwd=root)
    assert cfg.partition_table == str(root / "esp.csv")
    assert cfg.bootloader == str(root / "cargo.bin")
    assert len(cfg.sources) == 2


def test_command_line_wins(crate):
    root, elf = crate
    (root / "espflash.toml").write_text('[flash]\nsize = "8MB"\nmode = "qio"\n')
    cfg = load_project_config(elf, cwd=root).merged_with(flash_size="4MB", flash_mode=None, bogus=1)
    assert cfg.flash_size == "4MB" and cfg.flash_mode == "qio"


def test_search_up_from_the_elf_stops_at_the_crate_root(crate, tmp_path):
    root, elf = crate
    (tmp_path / "espflash.toml").write_text('[flash]\nsize = "16MB"\n')  # above the crate: not ours
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    assert load_project_config(elf, cwd=elsewhere).flash_size is None
    esp, cargo = find_config_files(elf, cwd=tmp_path)
    assert esp is None and cargo == root / "Cargo.toml"


def test_nearest_espflash_toml_above_the_elf_beats_the_crates(crate, tmp_path):
    root, elf = crate
    (root / "espflash.toml").write_text('[flash]\nsize = "16MB"\n')
    (elf.parent / "espflash.toml").write_text('[flash]\nsize = "4MB"\nmode = "dout"\n')
    cfg = load_project_config(elf, cwd=tmp_path)
    assert cfg.flash_size == "4MB" and cfg.origin("flash_size") == str(elf.parent / "espflash.toml")


def test_the_working_folders_espflash_toml_wins_as_in_espflash(crate):
    root, elf = crate
    (root / "espflash.toml").write_text('[flash]\nsize = "16MB"\n')
    (elf.parent / "espflash.toml").write_text('[flash]\nsize = "4MB"\nmode = "dout"\n')
    cfg = load_project_config(elf, cwd=root)
    assert cfg.flash_size == "16MB" and cfg.flash_mode == "dout"  # per setting: the other file still counts


def test_search_stops_at_cwd_without_cargo(tmp_path):
    (tmp_path / "espflash.toml").write_text('[flash]\nsize = "16MB"\n')
    work = tmp_path / "w" / "x"
    (work / "sub").mkdir(parents=True)
    elf = work / "sub" / "app.elf"
    elf.write_bytes(b"")
    assert load_project_config(elf, cwd=work).flash_size is None
    assert load_project_config(elf, cwd=tmp_path).flash_size == "16MB"


def test_bad_toml_is_one_line_with_file_and_line(crate):
    root, elf = crate
    (root / "espflash.toml").write_text('[flash]\nsize = "4MB"\nmode = \n')
    with pytest.raises(InputError) as info:
        load_project_config(elf, cwd=root)
    message = str(info.value)
    assert "\n" not in message
    assert str(root / "espflash.toml") in message
    assert "line 3" in message


def test_bad_cargo_toml_is_reported(crate):
    root, elf = crate
    (root / "Cargo.toml").write_text("[package\n")
    with pytest.raises(InputError, match=r"Cargo.toml: invalid TOML: line 1"):
        load_project_config(elf, cwd=root)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[idf_format_args]\npartition_table = 5\n", "partition_table must be a non-empty string"),
        ("[idf_format_args]\npartition_table_offset = \"zz\"\n", "partition_table_offset must be an integer"),
        ("[flash]\nsize = 4\n", r"\[flash\].size must be a non-empty string"),
    ],
)
def test_bad_values(crate, text, match):
    root, elf = crate
    (root / "espflash.toml").write_text(text)
    with pytest.raises(InputError, match=match):
        load_project_config(elf, cwd=root)


def test_not_utf8(crate):
    root, elf = crate
    (root / "espflash.toml").write_bytes(b"\xff\xfe[flash]")
    with pytest.raises(InputError, match="not UTF-8"):
        load_project_config(elf, cwd=root)


@pytest.mark.parametrize("text, want", [("80MHz", "80m"), ("80M", "80m"), ("40m", "40m"), (" 26 MHz", "26m")])
def test_normalize_freq(text, want):
    assert normalize_freq(text) == want
