"""The house plan, as a test: public surfaces resolve and imports point down only.

Like trio's ``test_exports.py``, this guards the layout described where each package opens
(``supervisor/__init__.py``): the engine at the root of ``gateway.supervisor``; ``services``,
``symphony`` and ``agents`` above it; ``gateway.http`` on top. A move that breaks a promise
fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import gateway.http.routes
import gateway.http.schemas
import gateway.supervisor

ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR = ROOT / "supervisor"
HTTP = ROOT / "http"
#: The engine's own modules (flat at the root of gateway.supervisor).
ENGINE = {
    "engine", "spec", "proctree", "logs", "table", "store", "statedir", "errors", "placement", "heap",
    "__init__",
}  # fmt: skip


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "static" not in p.parts)


def _packages() -> list[str]:
    names = []
    for pkg in (gateway.supervisor, gateway.http.routes, gateway.http.schemas):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
            if info.ispkg:
                names.append(info.name)
    return names


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every ``from X import a, b`` of the file, with X made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    top = "gateway.supervisor" if rel.parts[0] == "supervisor" else "gateway.http"
    here = [top, *rel.parts[1:-1]]  # the package the module is in (for __init__: itself)
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


@pytest.mark.parametrize("package", _packages())
def test_public_surface_resolves(package: str) -> None:
    mod = importlib.import_module(package)
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{package}.__all__ names {name!r}, which does not resolve"


def test_no_private_name_crosses_a_module() -> None:
    bad = [
        f"{path.relative_to(ROOT)}: from {module} import {name}"
        for path in _modules(SUPERVISOR) + _modules(HTTP)
        for module, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_services_never_import_symphony() -> None:
    bad = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _modules(SUPERVISOR / "services")
        for module, _names in _imports(path)
        if module.startswith("gateway.supervisor.symphony")
    ]
    assert not bad, "services/ imports symphony/:\n" + "\n".join(bad)


def test_supervisor_never_imports_the_front() -> None:
    bad = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _modules(SUPERVISOR)
        for module, _names in _imports(path)
        if module.startswith("gateway.http")
    ]
    assert not bad, "gateway.supervisor imports gateway.http:\n" + "\n".join(bad)


def test_engine_imports_only_the_engine() -> None:
    floors = ("gateway.supervisor.services", "gateway.supervisor.symphony", "gateway.supervisor.agents")
    bad = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(SUPERVISOR.glob("*.py"))
        if path.stem in ENGINE
        for module, _names in _imports(path)
        if module.startswith(floors)
    ]
    assert not bad, "the engine imports a floor above it:\n" + "\n".join(bad)


def test_agents_import_neither_services_nor_symphony() -> None:
    floors = ("gateway.supervisor.services", "gateway.supervisor.symphony")
    bad = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _modules(SUPERVISOR / "agents")
        for module, _names in _imports(path)
        if module.startswith(floors)
    ]
    assert not bad, "agents/ imports a floor above it:\n" + "\n".join(bad)


def test_http_has_no_init() -> None:
    """``http/`` is a namespace portion, so it never shadows the standard library's ``http``."""
    assert not (HTTP / "__init__.py").exists()
    import http

    assert Path(http.__file__).parent != HTTP


def test_every_package_is_in_the_wheel() -> None:
    """``pyproject.toml`` lists packages by hand (the folders are mapped onto ``gateway.*``), so a new
    package that is not listed works in an editable checkout and is missing from a real install."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = set()
    for dotted, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([dotted, *rel.parts]))
        if not (ROOT / folder / "__init__.py").exists():
            on_disk.add(dotted)  # a namespace root (gateway, gateway.http) is listed too
    assert on_disk - listed == set(), "packages missing from pyproject.toml"
    assert listed - on_disk == set(), "pyproject.toml lists packages that do not exist"
