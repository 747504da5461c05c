"""The attackers of THREATS.md, each with only its own powers, on the real brokers: the
``kafka`` fixture (embedded Tansu and Apache Kafka with SASL_SSL and the mesh's ACLs), ``bootstrap``
and ``unique`` come from tests/conftest.py, shared with tests/integration; every test here is
marked ``integration`` (and ``adversary``: ``-m adversary`` runs the attackers alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "adversary: an attacker of THREATS.md (tests/adversary)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.adversary)
