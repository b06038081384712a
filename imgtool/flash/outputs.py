"""The text outputs that describe a planned layout, rendered from values only: a library, no CLI, no printing.

From a :class:`imgtool.flash.layout.FlashLayout` this renders every output file
(name → bytes) that lets plain esptool, ESP-IDF tooling and esp-web-tools flash it:

- ``flash_args``: esptool argument file, flash settings then one ``OFFSET FILE`` line per
  part (ESP-IDF's meaning: flashing it leaves NVS and other data partitions alone, except the
  data partition images ``pack --data`` made, which follow the app as in ESP-IDF);
- ``flash_merged_args``: the same settings and the merged image at its offset;
- ``flasher_args.json``: ESP-IDF's machine-readable flashing description, plus the merged
  image and which bootloader build the pack placed (``imgtool flash`` checks the crystal with it);
- ``manifest.json``: an esp-web-tools manifest listing the parts (a web update keeps NVS);
- ``SHA256SUMS``: ``sha256sum -c`` format over every other output (``NAME.uf2``/``NAME.hex``
  from :mod:`imgtool.flash.formats` included when asked for).

Both argument files are run from the output folder (``esptool write-flash @flash_args``)
and use the short flash options ``-fm/-ff/-fs``, which esptool 4.x and 5.x both accept
without a deprecation warning. Every text is rendered in a fixed order (no time, path or
random name), so the same layout always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex

from imgtool.flash.formats import format_files
from imgtool.flash.layout import FlashLayout
from imgtool.output_names import (
    BOOTLOADER_FILE,
    FLASH_ARGS_FILE,
    FLASH_MERGED_ARGS_FILE,
    FLASHER_ARGS_JSON_FILE,
    MANIFEST_FILE,
    OTADATA_FILE,
    PARTITIONS_BIN_FILE,
    PARTITIONS_CSV_FILE,
    SHA256SUMS_FILE,
    UNVERSIONED,
)

#: write-flash options leaving the bytes as they are (esptool patches a header it finds at the bootloader offset).
KEEP_FLASH_ARGS = ("-fm", "keep", "-ff", "keep", "-fs", "keep")


def write_flash_args(layout: FlashLayout) -> list[str]:
    """Flash settings for esptool: ``keep`` when the layout :attr:`~FlashLayout.keeps_headers`."""
    return list(KEEP_FLASH_ARGS) if layout.keeps_headers else layout.settings.esptool_args()


def esptool_args(layout: FlashLayout, merged_path: str | None = None) -> list[str]:
    """argv (after ``esptool``) writing the merged image; ``merged_path`` defaults to the bare file name."""
    return [
        "--chip",
        layout.chip.name,
        "write-flash",
        *write_flash_args(layout),
        f"0x{layout.start:x}",
        merged_path or layout.merged_file,
    ]


def esptool_parts_args(layout: FlashLayout, shown=None) -> list[str]:
    """argv (after ``esptool``) writing the parts, as ``flash_args`` does (NVS and other data partitions kept);
    ``shown`` maps a file name to the path to print (default: the bare name)."""
    shown = shown or (lambda name: name)
    pairs = [item for p in layout.parts for item in (f"0x{p.offset:x}", shown(p.file))]
    return ["--chip", layout.chip.name, "write-flash", *write_flash_args(layout), *pairs]


def flash_args_text(layout: FlashLayout) -> str:
    """esptool argument file with one line per part, ESP-IDF's ``flash_args`` (``esptool write-flash @flash_args``)."""
    lines = [_join(write_flash_args(layout))]
    lines += [_join([f"0x{p.offset:x}", p.file]) for p in layout.parts]
    return "\n".join(lines) + "\n"


def flash_merged_args_text(layout: FlashLayout) -> str:
    """esptool argument file writing the merged image (``esptool write-flash @flash_merged_args``)."""
    return f"{_join(write_flash_args(layout))}\n{_join([f'0x{layout.start:x}', layout.merged_file])}\n"


def flasher_args(layout: FlashLayout) -> dict:
    """ESP-IDF's ``flasher_args.json`` content, plus ``merged`` and ``imgtool`` (ignored by ESP-IDF tools)."""
    doc: dict = {
        "write_flash_args": write_flash_args(layout),
        "flash_settings": layout.settings.to_dict(),
        "flash_files": {f"0x{p.offset:x}": p.file for p in layout.parts},
    }
    for p in layout.parts:
        doc[p.name] = _file_entry(p.offset, p.file, p.encrypted)
    doc["merged"] = _file_entry(layout.start, layout.merged_file, False)
    doc["extra_esptool_args"] = {
        "after": "hard-reset",
        "before": "default-reset",
        "stub": True,
        "chip": layout.chip.name,
    }
    doc["imgtool"] = {"bootloader": dict(layout.bootloader_source)}
    return doc


def web_manifest(layout: FlashLayout) -> dict:
    """esp-web-tools manifest writing the parts, so an update keeps NVS (offsets are integers, as it requires)."""
    return esp_web_tools_manifest(
        layout.project_name or layout.name,
        layout.version or UNVERSIONED,
        [(layout.chip.esp_web_tools_family, [(p.file, p.offset) for p in layout.parts])],
    )


def esp_web_tools_manifest(name: str, version: str, builds) -> dict:
    """An esp-web-tools manifest: ``builds`` are ``(chipFamily, [(path, offset), ...])``, one per chip family."""
    return {
        "name": name,
        "version": version,
        "new_install_prompt_erase": True,
        "builds": [
            {"chipFamily": family, "parts": [{"path": path, "offset": offset} for path, offset in parts]}
            for family, parts in builds
        ],
    }


def render_files(layout: FlashLayout, formats=()) -> OutputFiles:
    """Every output file, name → bytes, in a stable order; ``SHA256SUMS`` last, covering the rest.

    ``formats`` adds ``NAME.uf2``/``NAME.hex`` (:mod:`imgtool.flash.formats`) before ``SHA256SUMS``.
    """
    out: dict[str, bytes] = {}
    app = layout.app
    out[app.file] = app.data
    for p in layout.parts:
        if p.name != "app":
            out[p.file] = p.data
    out[PARTITIONS_CSV_FILE] = layout.partitions_csv.encode("utf-8")
    # keep the documented order: app, bootloader, table (csv, bin), otadata, merged, texts
    order = [app.file, BOOTLOADER_FILE, PARTITIONS_CSV_FILE, PARTITIONS_BIN_FILE, OTADATA_FILE]
    ordered = {k: out[k] for k in order if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    ordered[layout.merged_file] = layout.merged_bytes()
    ordered[FLASH_ARGS_FILE] = flash_args_text(layout).encode("utf-8")
    ordered[FLASH_MERGED_ARGS_FILE] = flash_merged_args_text(layout).encode("utf-8")
    ordered[FLASHER_ARGS_JSON_FILE] = json_bytes(flasher_args(layout))
    ordered[MANIFEST_FILE] = json_bytes(web_manifest(layout))
    ordered.update(format_files(layout, formats))
    rendered = OutputFiles(ordered, {name: hashlib.sha256(data).hexdigest() for name, data in ordered.items()})
    rendered[SHA256SUMS_FILE] = sha256sums_text(rendered.sha256).encode("utf-8")
    return rendered


# --------------------------------------------------------------------------- text helpers


def _join(words) -> str:
    """One argument-file line that esptool's reader (``shlex.split`` per line) splits back into ``words``."""
    return " ".join(shlex.quote(str(w)) for w in words)


def _file_entry(offset: int, file: str, encrypted: bool) -> dict:
    return {"offset": f"0x{offset:x}", "file": file, "encrypted": "true" if encrypted else "false"}


def marks_encrypted_parts(doc: dict) -> bool:
    """Whether a ``flasher_args.json`` document, as :func:`flasher_args` writes it, marks any part encrypted."""
    return any(isinstance(v, dict) and v.get("encrypted") == "true" for v in doc.values())


def json_bytes(doc: dict) -> bytes:
    """A JSON output as the pack writes it: 4-space indent, UTF-8, a final newline."""
    return (json.dumps(doc, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


def sha256sums(files: dict[str, bytes]) -> str:
    """``sha256sum`` output (binary mode) for ``files``; names with ``\\`` or newlines are escaped as GNU does."""
    return sha256sums_text(digests(files))


def sha256sums_text(digests: dict[str, str]) -> str:
    """``sha256sum`` output for already computed hex digests (name → digest), ``SHA256SUMS`` itself left out."""
    lines = []
    for name, digest in digests.items():
        if name == SHA256SUMS_FILE:
            continue
        if "\\" in name or "\n" in name or "\r" in name:
            escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"\\{digest} *{escaped}")
        else:
            lines.append(f"{digest} *{name}")
    return "\n".join(lines) + "\n"


#: ``sha256sum``'s escapes in a name (a line starting with a backslash), and what each stands for.
_GNU_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_GNU_UNESCAPED = {"n": "\n", "r": "\r", "\\": "\\"}


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` lines (text or binary mode, GNU escapes) as name → hex digest."""
    out = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        digest, _, name = line.removeprefix("\\").partition(" ")
        name = name.removeprefix("*").removeprefix(" ")
        if escaped:
            name = _GNU_ESCAPE.sub(lambda m: _GNU_UNESCAPED.get(m.group(1), m.group(0)), name)
        if digest and name:
            out[name] = digest.lower()
    return out


class OutputFiles(dict):
    """Output name → bytes, carrying each file's SHA-256 (``sha256``: name → hex) from when it was rendered.

    ``SHA256SUMS`` and the pack result both need every digest; a 16 MB merged image costs
    milliseconds to hash, so it is hashed once. Replacing a file drops its digest.
    """

    def __init__(self, files: dict[str, bytes], sha256: dict[str, str] | None = None):
        super().__init__(files)
        self.sha256 = dict(sha256 or {})

    def __setitem__(self, name: str, data: bytes) -> None:
        self.sha256.pop(name, None)
        super().__setitem__(name, data)

    def update(self, *args, **kwargs) -> None:
        for name, data in dict(*args, **kwargs).items():
            self[name] = data


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """Hex SHA-256 of every file but ``SHA256SUMS``: the ones :func:`render_files` computed, else now."""
    known = getattr(files, "sha256", None) or {}
    return {
        name: known[name] if name in known else hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name != SHA256SUMS_FILE
    }


__all__ = [
    "KEEP_FLASH_ARGS",
    "OutputFiles",
    "digests",
    "esp_web_tools_manifest",
    "esptool_args",
    "flash_args_text",
    "flash_merged_args_text",
    "flasher_args",
    "json_bytes",
    "marks_encrypted_parts",
    "render_files",
    "sha256sums",
    "sha256sums_text",
    "web_manifest",
    "write_flash_args",
]
