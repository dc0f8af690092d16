"""The import-linter contracts in pyproject.toml cover every module of the core package."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _core_modules() -> set[str]:
    package = ROOT / "eqsearch"
    found = set()
    for path in package.iterdir():
        is_module = path.suffix == ".py" and path.stem not in ("__init__", "__main__")
        is_package = path.is_dir() and (path / "__init__.py").exists() and path.name != "app"
        if is_module or is_package:
            found.add(f"eqsearch.{path.stem if is_module else path.name}")
    return found


def test_every_core_module_is_in_the_lowest_layer() -> None:
    (layers,) = [
        c["layers"]
        for c in _contracts()
        if c["type"] == "layers" and str(c["name"]).startswith("layers:")
    ]
    assert isinstance(layers, list)
    lowest = {name.strip() for name in str(layers[-1]).split(":")}
    assert lowest == _core_modules()
    assert layers[:3] == ["studies", "eqsearch.app", "predictors | supernet"]


def test_supernets_folders_are_layered_and_each_is_named() -> None:
    (layers,) = [
        c["layers"]
        for c in _contracts()
        if c["type"] == "layers" and str(c["name"]).startswith("supernet's folders")
    ]
    assert isinstance(layers, list)
    named = {name.strip() for layer in layers for name in str(layer).split("|")}
    root = Path(__file__).parent.parent / "supernet"
    folders = {
        f"supernet.{path.name}" for path in root.iterdir() if (path / "__init__.py").exists()
    }
    modules = {f"supernet.{path.stem}" for path in root.glob("*.py") if path.stem != "__init__"}
    assert named == folders | modules


def test_every_package_is_checked_for_cycles() -> None:
    (acyclic,) = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert set(acyclic["ancestors"]) == {"eqsearch", "supernet", "predictors", "studies"}  # type: ignore[arg-type]
