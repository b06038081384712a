"""The package's folders are the pipeline's stages: a module imports only from its own stage or earlier ones,
wherever the import sits (module level or a function body), and names each module it needs once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "imgtool"
#: The stages in data-flow order; each top-level module or subpackage of ``imgtool`` belongs to one.
STAGES = (
    ("errors", "environment", "output_names", "atomic"),
    ("chips",),
    ("elf",),
    ("image",),
    ("partitions",),
    ("bootloader",),
    ("security",),
    ("flash",),
    ("pack",),
    ("inspect",),
    ("release",),
    ("decode",),
    ("device",),
    ("cli",),
)
STAGE_OF = {name: rank for rank, names in enumerate(STAGES) for name in names}
#: The package's front door and ``python -m imgtool``: they may reach any stage.
EXEMPT = {"imgtool", "imgtool.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def stage(dotted: str) -> int | None:
    """The stage rank of ``imgtool.<room>...``; None outside the package or for the package itself."""
    parts = dotted.split(".")
    return STAGE_OF.get(parts[1]) if parts[0] == "imgtool" and len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """Every module ``path`` imports: (line, dotted name, at module level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_body = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import; the house spells imports in full"
            # ``from imgtool import x`` names the module imgtool.x; ``from imgtool.x import y`` names imgtool.x
            names = [f"{node.module}.{a.name}" if node.module == "imgtool" else node.module for a in node.names]
        else:
            continue
        out += [(node.lineno, name, id(node) not in in_body) for name in names]
    return out


def test_every_module_belongs_to_a_stage():
    """A new room must be placed in the stage order before it can be checked against it."""
    unplaced = sorted(m for m in MODULES if m not in EXEMPT and stage(m) is None)
    assert not unplaced, f"add these to STAGES: {unplaced}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - EXEMPT))
def test_imports_come_from_the_same_or_an_earlier_stage(module):
    own = stage(module)
    later = [
        f"{MODULES[module].relative_to(REPO)}:{line}: {name} ({STAGES[stage(name)][0]} comes after {STAGES[own][0]})"
        for line, name, _ in imports(MODULES[module])
        if stage(name) is not None and stage(name) > own
    ]
    assert not later, "\n".join(later)


def test_the_direction_check_sees_imports_in_function_bodies(tmp_path):
    """The checker itself: a later stage reached from inside a function counts, as one at the top does."""
    fake = tmp_path / "reader.py"
    fake.write_text("import os\nfrom imgtool.chips.table import CHIPS\n\ndef f():\n    from imgtool.image.format import X\n")
    assert imports(fake) == [(1, "os", True), (2, "imgtool.chips.table", True), (5, "imgtool.image.format", False)]
    assert stage("imgtool.image.format") > stage("imgtool.elf.reader") > stage("imgtool.chips.table")
    assert stage("imgtool.atomic") == stage("imgtool.errors") == 0


def test_the_flash_plan_does_not_import_its_rendering():
    """Within ``flash/`` the plan comes first: the layout is rendered into files, never the other way round."""
    assert "imgtool.flash.outputs" not in {name for _, name, _ in imports(MODULES["imgtool.flash.layout"])}


#: Modules that import a module again in a function body that they already import at the top; the
#: imports-at-the-top work of issue 21 (item 6) removes these, and each then passes and must leave this list.
REPEATS_LEFT = {
    "imgtool.atomic",
    "imgtool.bootloader.store",
    "imgtool.cli.device",
    "imgtool.cli.flash",
    "imgtool.cli.monitor",
    "imgtool.cli.options",
    "imgtool.device.commands",
    "imgtool.device.flasher",
    "imgtool.device.ports",
    "imgtool.image.boot_rules",
    "imgtool.image.loader_generations",
    "imgtool.inspect.flash_contents",
    "imgtool.inspect.verify",
    "imgtool.pack.idf_build",
    "imgtool.pack.job",
    "imgtool.partitions.table",
    "imgtool.release.web_manifest",
    "imgtool.security.signing",
}


REPEAT_PARAMS = [
    pytest.param(module, id=module, marks=[pytest.mark.xfail(strict=True, reason="imports a module twice (item 6)")])
    if module in REPEATS_LEFT
    else pytest.param(module, id=module)
    for module in sorted(MODULES)
]


@pytest.mark.parametrize("module", REPEAT_PARAMS)
def test_no_module_imports_a_module_it_already_imports_at_the_top(module):
    found = imports(MODULES[module])
    at_top = {name for _, name, top in found if top}
    again = [f"{MODULES[module].relative_to(REPO)}:{line}: {name}" for line, name, top in found if not top and name in at_top]
    assert not again, "imported at the top already:\n" + "\n".join(again)
