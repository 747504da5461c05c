"""Imports point one way (STYLE.md, "The house"): the core ``refmesh/`` <- the Kafka edge
``kafkaedge/`` <- ``gateways/`` and ``agents/`` (never each other) <- ``cli/`` and the development
helpers ``devmesh/``. Production modules never import the development helpers. Checked on the
source with ``ast``: nothing is imported or run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("refmesh", "kafkaedge", "gateways", "agents", "cli", "devmesh")
#: what each package may import of the project's own packages (besides itself)
ALLOWED = {
    "refmesh": set(),
    "kafkaedge": {"refmesh"},
    "gateways": {"refmesh", "kafkaedge"},
    "agents": {"refmesh", "kafkaedge"},
    "devmesh": {"refmesh", "kafkaedge", "gateways"},
    "cli": {"refmesh", "kafkaedge", "gateways", "agents", "devmesh"},
}
MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def project_imports(source: str) -> set[str]:
    """The project packages a module's source imports (top-level names, relative ones skipped:
    they stay in their own package)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


def test_every_layer_has_modules():
    assert {p.relative_to(ROOT).parts[0] for p in MODULES} == set(PACKAGES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    wrong = project_imports(path.read_text(encoding="utf-8")) - ALLOWED[package] - {package}
    assert wrong == set(), f"{package}/ must not import {sorted(wrong)}"


def test_the_scanner_sees_each_import_form():
    src = ("import agents.forward\nfrom gateways import store\nfrom cli.common import x\n"
           "from . import sibling\nimport json\n"
           "def late():\n    from devmesh.tansu import TansuBroker\n")
    assert project_imports(src) == {"agents", "gateways", "cli", "devmesh"}
