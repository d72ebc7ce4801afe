"""docs/decisions/0006: tillpoints keeps its generic top-level import names and
owns its virtual environment, so each name must come from this distribution
alone."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import site
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAMES = ("agent", "drivers", "sync", "tillpoints", "ui")


def test_the_wheel_has_exactly_the_design_cards_top_level_packages() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]
    assert sorted({name.split(".")[0] for name in packages}) == sorted(NAMES)
    assert sorted(project["tool"]["mypy"]["packages"]) == sorted(NAMES)


def test_each_name_is_provided_by_tillpoints_alone() -> None:
    providers = importlib.metadata.packages_distributions()
    assert {name: sorted(set(providers.get(name, []))) for name in NAMES} == {
        name: ["tillpoints"] for name in NAMES
    }


def _owned_files() -> set[Path]:
    dist = importlib.metadata.distribution("tillpoints")
    return {Path(str(dist.locate_file(file))).resolve() for file in dist.files or []}


def test_each_name_imports_from_this_distribution() -> None:
    """Installed from a wheel, the package's ``__init__.py`` is one of the
    distribution's files; installed editable (``make``), it is this checkout's."""
    owned = _owned_files()
    for name in NAMES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin).resolve()
        assert origin in owned or origin.is_relative_to(REPO), (name, origin)


def test_no_other_copy_of_a_name_lies_in_site_packages() -> None:
    """A package dropped into the venv without metadata is caught too."""
    owned = _owned_files()
    folders = {Path(p) for p in (*site.getsitepackages(), *sys.path) if "site-packages" in p}
    strays = [
        str(path)
        for folder in folders
        for name in NAMES
        for path in (folder / name, folder / f"{name}.py")
        if path.exists()
        and (path / "__init__.py" if path.is_dir() else path).resolve() not in owned
    ]
    assert strays == []
