"""Import placement: a module imported at the top of a file is not imported again inside one of its functions
(issue 21: a body import is kept only for a measured start-up cost, and then the top has no copy)."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "imgtool"

def imported_module(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.module and node.level == 0 else []
    return [alias.name for alias in node.names]


def repeated_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, module)`` of each import inside a function of a module the file imports at its top."""
    top = {name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for name in imported_module(node)}
    in_functions = {
        node
        for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    }
    return sorted((node.lineno, name) for node in in_functions for name in imported_module(node) if name in top)


def test_repeats_are_found_in_nested_functions_and_methods():
    source = "import os\nfrom a.b import c\nclass K:\n    def f(self):\n        def g():\n            from a.b import d\n        import os\n"
    assert sorted(repeated_imports(ast.parse(source))) == [(6, "a.b"), (7, "os")]


def test_a_body_import_of_a_module_not_at_the_top_is_no_repeat():
    source = "import os\nif True:\n    import sys\ndef f():\n    import sys\n    from os import path as p\n"
    assert repeated_imports(ast.parse(source)) == [(6, "os")]


def test_no_module_imports_in_a_function_what_it_imports_at_the_top():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"imgtool/{name}:{line} imports {module} again" for line, module in repeated_imports(tree)]
    assert found == []
