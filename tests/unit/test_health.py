"""/healthz says what keeps a gateway from working: a stopped thread, an inbox consumer without
partitions (a stuck consumer group), a database that refuses writes."""
from __future__ import annotations

import pytest

from gateways.api import UNASSIGNED_GRACE_S, problems
from gateways.store import Store, StoreError
from refmesh import samples

TOPIC = "refmesh.agency.BH.GOV.SHELTER.in"


def test_a_working_gateway_has_no_problems():
    assert problems(True, True, 0.0, None, TOPIC) == []
    assert problems(True, True, UNASSIGNED_GRACE_S - 1, None, TOPIC) == []  # joining


@pytest.mark.parametrize("args, words", [
    ((False, True, 0.0, None), "relay thread stopped"),
    ((True, False, 0.0, None), "inbox thread stopped"),
    ((True, True, UNASSIGNED_GRACE_S + 5, None), f"no partition of {TOPIC} for 25 s"),
    ((True, True, 0.0, "OperationalError: disk I/O error"), "database refuses writes "
                                                            "(OperationalError: disk I/O error)"),
])
def test_each_problem_is_named(args, words):
    (found,) = problems(*args, TOPIC)
    assert words in found


def test_the_store_reports_a_refused_write_until_one_works(tmp_path):
    store = Store(str(tmp_path / "gw.db"), "BH/GOV/HOTLINE", "BH/GOV/NCCTIP")
    assert store.write_error is None
    store._db.execute("CREATE TRIGGER full BEFORE INSERT ON referrals "
                      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    referral = samples.referral(sender="BH/GOV/HOTLINE", recipient="BH/GOV/SHELTER", n=1)
    with pytest.raises(StoreError):
        store.submit_referral(referral, b"k", 1)
    assert "database or disk is full" in store.write_error
    store._db.execute("DROP TRIGGER full")
    store.submit_referral(referral, b"k", 1)
    assert store.write_error is None
