"""The fault drills of bench/drills.py, shorter: a stream of referrals at 10/s, a fault of a few
seconds mid-stream, then every referral checked: nothing lost, nothing delivered twice as two
referrals, nothing at the wrong agency, no planted personal value in clear on any topic.

On both brokers, the drills that need no broker of their own share one mesh on the session
broker (each drill checks only its own referrals). The broker drills each start a broker of
their own (the session broker is never stopped): Tansu on s3:// and on memory storage, Apache
Kafka on one node killed with SIGKILL and restarted on its own log. The three-node drill starts
a KRaft cluster of its own, so it runs once, not once per broker kind.
tests/integration/test_recovery.py covers the same faults with a handful of referrals and no
stream.
"""
from __future__ import annotations

import pytest

from bench.drillkit import Plan
from bench.drills import DRILLS, drill_mesh, own_broker, run_drill
from tests.integration.conftest import KINDS

PLAN = Plan(rate=10, before_s=1.5, fault_s=3, after_s=1.5, deadline_s=150)
PERSONS = 5  # consents recorded before the drills (referral i is of person i % 5)
RESEND_AFTER_MS = 1500  # as tests/integration/meshfix.py: quicker recovery than the default 3 s


def _assert_clean(outcome) -> None:
    report = "\n".join([outcome.line(), *outcome.notes, *outcome.problems])
    assert outcome.accepted > 0, report
    assert (outcome.lost, outcome.duplicated, outcome.misdelivered, outcome.leaked) == \
        (0, 0, 0, 0), report
    assert outcome.delivered == outcome.accepted, report
    assert outcome.problems == [], report


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    with drill_mesh(tmp_path_factory.mktemp(f"drills-{kafka.kind}"), kafka, RESEND_AFTER_MS,
                    PERSONS) as mesh:
        yield mesh


# two-workers last: it leaves the mesh with the second worker only (the drills after it would
# run as well, on that worker)
@pytest.mark.parametrize("name", ["gateway-kill", "agent-kill", "recipient-down", "disk-full",
                                  "read-only-db", "two-workers"])
def test_drill_on_a_shared_mesh(mesh, name):
    outcome = run_drill(DRILLS[name], mesh, PLAN)
    print(mesh.kafka.kind, outcome.line())
    _assert_clean(outcome)
    if name in ("disk-full", "read-only-db"):
        assert outcome.refused > 0, outcome.line()  # the API said 503 during the fault


# the session broker of the drill's kind is only asked for its security (the drill's own
# broker is secured as it is); the kind of each drill is fixed, so each runs once
@pytest.mark.parametrize("kafka,name", [("embedded", "broker-restart-s3"),
                                        ("embedded", "broker-restart-memory"),
                                        ("apache", "broker-kill-log")], indirect=["kafka"])
def test_broker_restart_drill(kafka, name, tmp_path):
    drill = DRILLS[name]
    assert drill.kinds == (kafka.kind,)
    with own_broker(drill.own, tmp_path / "logs", kafka.secured) as broker, \
            drill_mesh(tmp_path, broker, RESEND_AFTER_MS, PERSONS) as mesh:
        outcome = run_drill(drill, mesh, PLAN, broker)
    print(outcome.line(), *outcome.notes, sep="\n    ")
    _assert_clean(outcome)


@pytest.mark.skipif("apache" not in KINDS, reason="the Apache Kafka half is not run (see the "
                                                  "NOTE at the end of the session)")
@pytest.mark.timeout(480)
def test_three_node_cluster_survives_a_broker_and_the_controller_killed(tmp_path):
    """Replication factor 3 (checked on every mesh topic), min.insync.replicas 2, acks=all: a
    broker killed with SIGKILL mid-stream and restarted, then the active controller; nothing
    lost, doubled, misdelivered or leaked, and every step recovered within its deadline."""
    drill = DRILLS["three-node"]
    with own_broker(drill.own, tmp_path / "logs") as cluster, \
            drill_mesh(tmp_path, cluster, RESEND_AFTER_MS, PERSONS) as mesh:
        assert cluster.replication == 3
        outcome = run_drill(drill, mesh, PLAN, cluster)
    print(outcome.line(), *[f"{k}: {v:.1f} s" for k, v in outcome.timings.items()],
          *outcome.notes, sep="\n    ")
    _assert_clean(outcome)
    assert len(outcome.events) == 2, outcome.notes  # both kills happened
    assert any("SIGKILL of the active controller" in k for k in outcome.timings), outcome.timings
