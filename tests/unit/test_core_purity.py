"""The core stays pure (STYLE.md, "The house" and habits 1-3): refmesh/ imports no Kafka, HTTP,
faust or CLI module, does not read the clock, the environment, the network or randomness modules,
only keys.py and envelope.py touch cryptography.hazmat, and only schemas.py reads files (the
package's own contracts). Checked on the source with ``ast``, so nothing is imported or run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "refmesh"
MODULES = sorted(p for p in CORE.rglob("*.py"))

FORBIDDEN = {
    "kafka", "aiokafka", "faust", "aiohttp", "requests", "socket", "urllib", "http",
    "subprocess", "asyncio", "time", "datetime", "os", "random", "secrets", "sqlite3", "click",
    "importlib",  # would hide any of the above
    "yaml",  # policy and settings files are parsed at the edge; the core gets dicts
}
HAZMAT_ALLOWED = {"keys.py", "envelope.py"}
FILE_READERS_ALLOWED = {"schemas.py"}
# the package's own contracts, as its resources (they ship in the wheel); importlib itself stays
# forbidden
RESOURCES = {"importlib.resources", "importlib.resources.files",
             "importlib.resources.abc", "importlib.resources.abc.Traversable"}
FILE_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes"}


def _imports(tree: ast.AST) -> set[str]:
    """Dotted names imported by a module (relative imports resolved inside refmesh)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside refmesh
                base = "refmesh" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _binds_open(tree: ast.Module) -> bool:
    """Whether the module defines its own top-level ``open`` (envelope.open does)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "open":
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "open" for t in node.targets):
            return True
    return False


def _file_access(tree: ast.Module) -> list[str]:
    found = []
    own_open = _binds_open(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "open" and not own_open:
            found.append(f"open() at line {node.lineno}")
        if isinstance(f, ast.Name) and f.id == "__import__":
            found.append(f"__import__() at line {node.lineno}")
        if isinstance(f, ast.Attribute) and f.attr in FILE_METHODS:
            found.append(f".{f.attr}() at line {node.lineno}")
    return found


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _forbidden(imported: set[str]) -> set[str]:
    return {name for name in imported if name.split(".")[0] in FORBIDDEN}


def test_core_modules_are_found():
    names = {p.name for p in MODULES}
    assert {"codec.py", "records.py", "keys.py", "directory.py", "envelope.py",
            "schemas.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_no_io_clock_or_framework_imports(path):
    imported = _imports(_parse(path))
    if path.name in FILE_READERS_ALLOWED:
        imported -= RESOURCES
    assert _forbidden(imported) == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_only_keys_and_envelope_import_hazmat(path):
    imported = _imports(_parse(path))
    hazmat = {n for n in imported if n.startswith("cryptography.hazmat")}
    if path.name in HAZMAT_ALLOWED:
        assert hazmat, f"{path.name} was expected to be one of the hazmat rooms"
    else:
        assert hazmat == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_no_file_access_outside_schemas(path):
    found = _file_access(_parse(path))
    if path.name not in FILE_READERS_ALLOWED:
        assert found == [], f"{path.name}: {found}"


# --- the checks themselves can fail -------------------------------------------------------------

def test_import_scanner_catches_forbidden_imports():
    src = ("import os.path\nfrom time import monotonic\nimport kafka as k\n"
           "from urllib.request import urlopen\nfrom . import codec\nimport json\n")
    found = _forbidden(_imports(ast.parse(src)))
    assert {n.split(".")[0] for n in found} == {"os", "time", "kafka", "urllib"}
    assert "refmesh.codec" in _imports(ast.parse(src))


def test_hazmat_scanner_sees_both_import_forms():
    for src in ("from cryptography.hazmat.primitives import hashes\n",
                "import cryptography.hazmat.primitives.hashes\n",
                "from cryptography import hazmat\n"):
        assert any(n.startswith("cryptography.hazmat") for n in _imports(ast.parse(src)))


def test_open_scanner_tells_the_builtin_from_a_def():
    assert _file_access(ast.parse("def f():\n    return open('x').read()\n"))
    assert _file_access(ast.parse("from pathlib import Path\nPath('x').read_text()\n"))
    assert _file_access(ast.parse("__import__('os')\n"))
    own = "def open(data):\n    return data\n\ndef g():\n    return open(b'')\n"
    assert _file_access(ast.parse(own)) == []
    assert _file_access(ast.parse("import refmesh.envelope as e\ne.open(b'', 1, 2, 3)\n")) == []
