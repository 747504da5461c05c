"""/healthz says what keeps a gateway from working: a stopped thread, an inbox consumer without
partitions (a stuck consumer group), a database that refuses writes."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from gateways import inbox as inbox_mod
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


class FakeConsumer:
    """Answers polls with nothing; holds partitions from the ``joins_at``-th poll on."""

    def __init__(self, inbox, joins_at: int, polls: int) -> None:
        self.inbox, self.joins_at, self.polls, self.n = inbox, joins_at, polls, 0
        self.seen: list[float] = []

    def poll(self, timeout_ms, max_records):
        self.n += 1
        if self.n >= self.polls:
            self.inbox._stop.set()
        return {}

    def assignment(self):
        return {("t", 0)} if self.n >= self.joins_at else set()

    def highwater(self, tp):
        return None

    def position(self, tp):
        return 0


def test_the_inbox_reports_how_long_it_has_held_no_partition(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(inbox_mod.time, "monotonic", lambda: clock[0])
    keys = SimpleNamespace(agency_id="BH/GOV/SHELTER")
    inbox = inbox_mod.Inbox(None, keys, None, {}, None, None)
    clock[0] = 130.0
    assert inbox.unassigned_s() == 30.0  # never joined: counted from the start
    inbox.consumer = FakeConsumer(inbox, joins_at=2, polls=3)
    inbox._consume()
    assert inbox.unassigned_s() == 0.0  # joined
    inbox._stop.clear()
    inbox.consumer = FakeConsumer(inbox, joins_at=99, polls=1)  # lost its partitions
    inbox._consume()
    clock[0] = 155.0
    assert inbox.unassigned_s() == 25.0
    assert "no partition of refmesh.agency.BH.GOV.SHELTER.in for 25 s" in problems(
        True, True, inbox.unassigned_s(), None, inbox.topic)[0]
