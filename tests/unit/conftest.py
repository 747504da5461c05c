"""Fixtures shared by the web page's unit tests (tests/unit/webfix.py)."""
from tests.unit.webfix import hotline, mesh_files, shelter  # noqa: F401
