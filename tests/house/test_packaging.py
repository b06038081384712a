"""Packaging promises: both licences ship, esptool's major version is bounded, `esp-imgtool` is a command too,
every subpackage of the source tree goes into the wheel."""

from __future__ import annotations

import sys

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_licences_are_in_the_repo_and_the_metadata():
    meta = project()
    assert meta["license"] == "MIT OR Apache-2.0"
    assert meta["license-files"] == ["LICENSE-MIT", "LICENSE-APACHE"]
    assert "MIT License" in (REPO / "LICENSE-MIT").read_text(encoding="utf-8")
    assert "Apache License" in (REPO / "LICENSE-APACHE").read_text(encoding="utf-8")
    assert any(c.startswith("Topic ::") for c in meta["classifiers"])


def test_esptool_major_version_is_bounded():
    (spec,) = [d for d in project()["dependencies"] if d.startswith("esptool")]
    assert "<6" in spec  # flash calls esptool's Python API, which may change with a major version


def test_esp_imgtool_console_script():
    assert project()["scripts"] == {"imgtool": "imgtool.cli.main:run", "esp-imgtool": "imgtool.cli.main:run"}


def test_every_subpackage_is_in_the_wheel():
    """setuptools lists packages by name here: a subpackage missing from the list is missing from the wheel
    (an editable install hides that), so every folder of imgtool/ with an ``__init__.py`` must be listed."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    in_tree = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "imgtool").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert in_tree <= set(tool["packages"]), sorted(in_tree - set(tool["packages"]))
