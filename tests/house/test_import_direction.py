"""The package's folders are the pipeline's stages: a module imports only from its own stage or earlier ones,
wherever the import sits (module level or a function body). (Repeated imports: test_imports.py.)"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

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


@functools.lru_cache(maxsize=None)
def imports(path: Path) -> list[tuple[int, str, bool]]:
    """Every module ``path`` imports: (line, dotted name, at module level)."""
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_body: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, not in_body) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert not child.level, f"{path}:{child.lineno}: relative import; the house spells imports in full"
                # ``from imgtool import x`` names the module imgtool.x; ``from imgtool.x import y`` names imgtool.x
                names = [f"{child.module}.{a.name}" if child.module == "imgtool" else child.module for a in child.names]
                out.extend((child.lineno, name, not in_body) for name in names)
            else:
                visit(child, in_body or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def test_every_module_belongs_to_a_stage():
    """A new room must be placed in the stage order before it can be checked against it."""
    unplaced = sorted(m for m in MODULES if m not in EXEMPT and stage(m) is None)
    assert not unplaced, f"add these to STAGES: {unplaced}"


def test_imports_come_from_the_same_or_an_earlier_stage():
    later = [
        f"{MODULES[module].relative_to(REPO)}:{line}: {name} ({STAGES[stage(name)][0]} comes after {STAGES[stage(module)][0]})"
        for module in sorted(set(MODULES) - EXEMPT)
        for line, name, _ in imports(MODULES[module])
        if stage(name) is not None and stage(name) > stage(module)
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
