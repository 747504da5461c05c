"""Fixtures for tests that talk to a real Kafka-protocol broker.

One embedded Tansu broker serves the whole session (its memory only grows, and it starts in
well under a second); set REFMESH_BOOTSTRAP=host:port to run the same tests against another
broker instead. Tests share the broker, so each one names its own topics and groups with the
``unique`` suffix.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from devmesh.tansu import EmbeddedBroker

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration, so ``-m "not integration"`` skips them all."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap():
    """``host:port`` of the broker: $REFMESH_BOOTSTRAP, or an embedded broker for the session."""
    external = os.environ.get("REFMESH_BOOTSTRAP")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def unique() -> str:
    """A short suffix that makes this test's topic and group names its own."""
    return uuid.uuid4().hex[:8]
