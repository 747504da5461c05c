"""The attackers of THREATS.md, each with only its own powers, on the real brokers: the
``kafka`` fixture (embedded Tansu and Apache Kafka with SASL_SSL and the mesh's ACLs), ``bootstrap``
and ``unique`` come from tests/conftest.py, shared with tests/integration; every test here is
marked ``integration`` (and ``adversary``: ``-m adversary`` runs the attackers alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversary.attacker import Attacker

_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "adversary: an attacker of THREATS.md (tests/adversary)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.adversary)


@pytest.fixture
def attackers(mesh):
    """``attackers(sample_id)``: the rogue member ``sample_id`` of the module's ``mesh`` (one
    per member and test, closed after it)."""
    made: dict[str, Attacker] = {}

    def attacker(sample_id: str) -> Attacker:
        if sample_id not in made:
            made[sample_id] = Attacker(mesh, sample_id)
        return made[sample_id]

    yield attacker
    for a in made.values():
        a.close()
