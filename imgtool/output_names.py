"""The names of the files a pack writes: one place, read by the planner, the renderer, ``verify`` and ``flash``.

An ELF's name becomes the app and merged image names, so it is checked here
against every fixed name (and against what esptool's argument files can hold).
"""

from __future__ import annotations

from imgtool.errors import UsageError

BOOTLOADER_FILE = "bootloader.bin"
PARTITIONS_CSV_FILE = "partitions.csv"
PARTITIONS_BIN_FILE = "partitions.bin"
OTADATA_FILE = "ota_data_initial.bin"
FLASH_ARGS_FILE = "flash_args"
FLASH_MERGED_ARGS_FILE = "flash_merged_args"
#: Written by imgtool 0.1 (the parts, when flash_args held the merged image); a re-pack removes it.
LEGACY_FILES = ("flash_parts_args",)
FLASHER_ARGS_JSON_FILE = "flasher_args.json"
#: The esp-web-tools manifest of one pack (``imgtool manifest`` writes a release's under the same name).
WEB_MANIFEST_FILE = "manifest.json"
SHA256SUMS_FILE = "SHA256SUMS"
FIXED_FILES = (
    BOOTLOADER_FILE,
    PARTITIONS_CSV_FILE,
    PARTITIONS_BIN_FILE,
    OTADATA_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    WEB_MANIFEST_FILE,
    SHA256SUMS_FILE,
)

#: The version a pack gives an app whose descriptor names none: in manifest.json and in the archive's name.
UNVERSIONED = "0.0.0"

#: The parts every pack writes (flasher_args.json's keys for them); any other part is a data partition image.
CORE_PARTS = ("bootloader", "partition-table", "otadata", "app")


def app_file_name(name: str) -> str:
    return f"{name}.bin"


#: The merged image is ``NAME`` + this.
MERGED_SUFFIX = ".merged.bin"


def merged_file_name(name: str) -> str:
    return f"{name}{MERGED_SUFFIX}"


def data_file_name(label: str) -> str:
    """``LABEL.bin``: the image ``pack --data`` makes for a data partition."""
    return f"{label}.bin"


def format_file_name(name: str, fmt: str) -> str:
    """``NAME.uf2`` / ``NAME.hex`` (``pack --uf2/--hex``)."""
    return f"{name}.{fmt}"


def unusable_name(name: str, also: str = "") -> bool:
    """Whether ``name`` cannot begin an output file's name: empty, ``.``/``..``, starting with ``-`` (esptool
    and shells would read it as an option), or holding a folder separator (``/``, or ``\\``, which Windows and
    zip readers take as one) or a control character (a line break cannot be quoted away in an argument file
    esptool reads line by line; DEL and the rest break TOML and terminals); ``also`` adds characters to refuse."""
    return (
        not name
        or name in (".", "..")
        or name.startswith("-")
        or any(c in name for c in "/\\" + also)
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    )


def check_output_name(name: str) -> None:
    """Refuse a name that cannot name output files or would overwrite a fixed one."""
    if unusable_name(name):
        raise UsageError(f"{name!r} cannot name output files; rename the ELF", field="name")  # repr: one line, even for a line break
    for fixed in FIXED_FILES:
        if app_file_name(name) == fixed or merged_file_name(name) == fixed:
            raise UsageError(
                f"an ELF named '{name}' would write its app image over {fixed}; rename the ELF",
                field="name",
            )


__all__ = [
    "BOOTLOADER_FILE",
    "CORE_PARTS",
    "FIXED_FILES",
    "FLASHER_ARGS_JSON_FILE",
    "FLASH_ARGS_FILE",
    "FLASH_MERGED_ARGS_FILE",
    "LEGACY_FILES",
    "MERGED_SUFFIX",
    "OTADATA_FILE",
    "PARTITIONS_BIN_FILE",
    "PARTITIONS_CSV_FILE",
    "SHA256SUMS_FILE",
    "UNVERSIONED",
    "WEB_MANIFEST_FILE",
    "app_file_name",
    "check_output_name",
    "unusable_name",
    "data_file_name",
    "format_file_name",
    "merged_file_name",
]
