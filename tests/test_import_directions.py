"""DESIGN.md's import directions, read from the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level?) of every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def _package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_predictors_never_import_supernet_or_studies() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _package_files("predictors")
        for module, _ in _imports(path)
        if module.split(".")[0] in ("supernet", "studies")
    ]
    assert offenders == []


def test_the_core_imports_torch_only_inside_functions() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for package in ("eqsearch", "predictors")
        for path in _package_files(package)
        for module, top_level in _imports(path)
        if top_level and module.split(".")[0] in ("torch", "supernet", "torchvision")
    ]
    assert offenders == []


def test_nothing_imports_studies_but_studies_and_the_cli() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for package in ("eqsearch", "predictors", "supernet")
        for path in _package_files(package)
        for module, _ in _imports(path)
        if module.split(".")[0] == "studies" and "commands" not in path.parts
    ]
    assert offenders == []


def test_the_library_reports_bad_input_as_input_error() -> None:
    """A plain ``ValueError`` exits 1 as a bug; validations raise ``InputError`` (exit 2)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("eqsearch", "predictors", "supernet", "studies")
        for path in _package_files(package)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "raise ValueError(" in line
    ]
    assert offenders == []
