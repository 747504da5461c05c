"""The broker fixtures (``kafka`` on both brokers, ``bootstrap``, ``unique``) live in
tests/conftest.py, shared with tests/adversary; the names tests import from here stay."""

from __future__ import annotations

from tests.conftest import KINDS, NOTE, apache_only  # noqa: F401 (imported by test modules)
