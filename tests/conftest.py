"""Fixtures for tests that talk to a real Kafka-protocol broker: tests/integration and
tests/adversary (the attackers of THREATS.md, on the real brokers).

Every such test runs on both brokers: the embedded Tansu broker and a local Apache Kafka 4
(KRaft, SASL_SSL with SCRAM-SHA-512 and ACLs on), each started once for the whole session and
shared, so each test names its own topics and groups with the ``unique`` suffix. The Apache Kafka
half needs Java 17+ and Maven (its jars come from Maven Central, resolved by broker/pom.xml);
without them it is not run, and the session says so in a NOTE at the end. REFMESH_BROKERS=embedded
(or apache) runs one half only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from devmesh import brokers

_HERE = Path(__file__).parent
#: the folders whose tests need a broker (marked ``integration``: ``-m "not integration"``)
ON_BROKERS = (_HERE / "integration", _HERE / "adversary")


def _kinds() -> tuple[list[str], str | None]:
    """The broker kinds to run, and the NOTE to print if the Apache Kafka half is left out."""
    wanted = [k.strip() for k in os.environ.get("REFMESH_BROKERS", "embedded,apache").split(",")
              if k.strip()]
    unknown = sorted(set(wanted) - set(brokers.KINDS))
    if unknown or not wanted:
        raise pytest.UsageError(f"REFMESH_BROKERS={os.environ['REFMESH_BROKERS']!r}: use "
                                f"{', '.join(brokers.KINDS)} (comma-separated)")
    if "apache" in wanted and (problem := brokers.apache_available()):
        return [k for k in wanted if k != "apache"], (
            f"NOTE: the Apache Kafka half of the integration tests was NOT run: {problem}")
    if "apache" not in wanted:
        return wanted, "NOTE: the Apache Kafka half of the integration tests was not run " \
                       "(REFMESH_BROKERS leaves it out)"
    return wanted, None


KINDS, NOTE = _kinds()
_collected = {"on_brokers": False}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration and tests/adversary, so ``-m "not integration"``
    skips them all; leave out the tests pinned to a broker kind that this run does not start
    (the NOTE at the end says which and why)."""
    kept, left_out = [], []
    for item in items:
        if any(folder in item.path.parents for folder in ON_BROKERS):
            item.add_marker(pytest.mark.integration)
            _collected["on_brokers"] = True
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("kafka") if callspec else None
        (left_out if kind is not None and kind not in KINDS else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


#: Modules whose tests one pytest-xdist worker runs one after the other (each demo run checks
#: that no demo process is left anywhere).
ONE_WORKER = ("tests/integration/test_demo.py",)
#: Tests that start Apache Kafka clusters of their own: run in the Apache Kafka unit, so never
#: beside another Apache Kafka test (three JVMs and a mesh beside the other half's brokers left
#: 112 referrals unanswered after 150 s in one run on 2 cores, all of them delivered).
WITH_APACHE = ("tests/integration/test_drills.py::"
               "test_three_node_cluster_survives_a_broker_and_the_controller_killed",)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs two pytest-xdist workers: the tests of one broker kind (a ``kafka``
    id of ``brokers.KINDS`` in their parameters) go to one worker as one unit, so each session
    broker is started by one worker only and the two halves run side by side; the modules of
    ``ONE_WORKER`` are a unit each, the tests of ``WITH_APACHE`` join the Apache Kafka unit;
    every other test goes to whichever worker is free.

    (pytest-xdist's own ``--dist loadgroup`` marks groups by renaming the test's node id,
    which pytest 9 no longer reads: the grouping is done here, from the node id.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByBroker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ByBroker(config, log)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist (see above)."""
    path, _, params = nodeid.partition("[")
    module = path.partition("::")[0]
    if module in ONE_WORKER:
        return module
    if path in WITH_APACHE:
        return "broker-apache"
    kinds = set(params.rstrip("]").split("-")) & set(brokers.KINDS)
    return f"broker-{kinds.pop()}" if len(kinds) == 1 else nodeid


#: Pins a test to Apache Kafka (security, ACLs, transactions: what Tansu cannot do).
apache_only = pytest.mark.parametrize("kafka", ["apache"], indirect=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if NOTE and (_collected["on_brokers"] or _workers_ran_broker_tests(terminalreporter)):
        terminalreporter.write_line(NOTE, yellow=True, bold=True)


def _workers_ran_broker_tests(terminalreporter) -> bool:
    """Under pytest-xdist the workers collect, not this process: whether any test they
    reported ran from a broker folder."""
    return any(Path(str(report.fspath)).resolve().is_relative_to(folder)
               for reports in terminalreporter.stats.values() for report in reports
               if getattr(report, "fspath", None) for folder in ON_BROKERS)


@pytest.fixture(scope="session", params=KINDS)
def kafka(request, tmp_path_factory) -> brokers.LocalBroker:
    """The session's broker of each kind (tests using it run once per kind)."""
    folder = tmp_path_factory.mktemp(f"broker-{request.param}")
    with brokers.start(request.param, folder) as broker:
        yield broker


@pytest.fixture(scope="session")
def bootstrap(kafka) -> str:
    """``host:port`` of the session broker of this test's kind."""
    return kafka.bootstrap


@pytest.fixture
def unique() -> str:
    """A short suffix that makes this test's topic and group names its own."""
    return uuid.uuid4().hex[:8]
