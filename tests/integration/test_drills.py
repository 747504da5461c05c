"""The fault drills of bench/drills.py, shorter: a stream of referrals at 10/s, a fault of a few
seconds mid-stream, then every referral checked: nothing lost, nothing delivered twice as two
referrals, nothing at the wrong agency, no planted personal value in clear on any topic.

The drills that need no broker of their own share one mesh on the session broker (each drill
checks only its own referrals); the broker drills each start a broker of their own (the
session broker is never stopped). tests/integration/test_recovery.py covers the same faults
with a handful of referrals and no stream.
"""
from __future__ import annotations

import pytest

from bench.drillkit import Plan
from bench.drills import DRILLS, drill_mesh, own_broker, run_drill

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
def mesh(bootstrap, tmp_path_factory):
    with drill_mesh(tmp_path_factory.mktemp("drills"), bootstrap, RESEND_AFTER_MS,
                    PERSONS) as mesh:
        yield mesh


# two-workers last: it leaves the mesh with the second worker only (the drills after it would
# run as well, on that worker)
@pytest.mark.parametrize("name", ["gateway-kill", "agent-kill", "recipient-down", "disk-full",
                                  "read-only-db", "two-workers"])
def test_drill_on_a_shared_mesh(mesh, name):
    outcome = run_drill(DRILLS[name], mesh, PLAN)
    print(outcome.line())
    _assert_clean(outcome)
    if name in ("disk-full", "read-only-db"):
        assert outcome.refused > 0, outcome.line()  # the API said 503 during the fault


@pytest.mark.parametrize("name", ["broker-restart-s3", "broker-restart-memory"])
def test_broker_restart_drill(name, tmp_path):
    drill = DRILLS[name]
    with own_broker(drill.broker, tmp_path / "logs") as broker, \
            drill_mesh(tmp_path, broker.bootstrap, RESEND_AFTER_MS, PERSONS) as mesh:
        outcome = run_drill(drill, mesh, PLAN, broker)
    print(outcome.line())
    _assert_clean(outcome)
