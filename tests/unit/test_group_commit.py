"""Group commit of the API's submissions (gateways/commits.py): requests waiting together share
one commit, a refused change rolls back alone with its own error, and a failed commit fails
every request of its batch."""
from __future__ import annotations

import asyncio
import contextlib

from gateways.commits import GroupCommit
from gateways.store import Store, StoreError
from refmesh import codec, samples
from refmesh.loop import TransitionError

NOW = 1_790_000_000_000
HOTLINE = "BH/GOV/HOTLINE"


class Counting:
    """A store whose outermost batches are counted (each would be one commit)."""

    def __init__(self, fail: bool = False) -> None:
        self.commits, self.depth, self.fail = 0, 0, fail

    @contextlib.contextmanager
    def batch(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0:
            if self.fail:
                raise StoreError("the gateway database refused the write: disk full")
            self.commits += 1


def run(*coroutines):
    async def main():
        return await asyncio.gather(*coroutines, return_exceptions=True)
    return asyncio.run(main())


def test_requests_waiting_together_share_one_commit():
    store = Counting()
    group = GroupCommit(lambda: store)
    try:
        assert run(*(group.run(lambda n: n * 2, n) for n in range(5))) == [0, 2, 4, 6, 8]
    finally:
        group.close()
    assert store.commits == 1


def test_a_failed_commit_fails_every_request_of_its_batch():
    group = GroupCommit(lambda: Counting(fail=True))
    try:
        results = run(*(group.run(lambda: "kept?") for _ in range(3)))
    finally:
        group.close()
    assert [type(r) for r in results] == [StoreError] * 3


def test_a_refused_change_rolls_back_alone(tmp_path):
    store = Store(str(tmp_path / "gw.db"), HOTLINE, "BH/GOV/NCCTIP")
    group = GroupCommit(lambda: store)
    first = samples.referral(sender=HOTLINE, recipient="BH/GOV/SHELTER", n=1)
    second = samples.referral(sender=HOTLINE, recipient="BH/GOV/SHELTER", n=2)

    def submit(referral, then_fail=False):
        store.submit_referral(referral, b"k", NOW)
        if then_fail:  # its referral written, then the request fails: nothing of it stays
            raise ValueError("refused after writing")
        return referral["referralId"]

    try:
        results = run(group.run(submit, first), group.run(submit, first),
                      group.run(submit, second, True))
    finally:
        group.close()
    assert results[0] == first["referralId"]
    assert isinstance(results[1], TransitionError)  # the id exists already
    assert isinstance(results[2], ValueError)
    ids = [codec.decode(r[0])[1]["referralId"] for r in store._db.execute(
        "SELECT record FROM referrals")]
    assert ids == [first["referralId"]]
    assert [d.record["referralId"] for d in store.due(NOW + 1)] == [first["referralId"]]


def test_a_request_is_answered_only_after_its_commit():
    order = []

    class Recording(Counting):
        @contextlib.contextmanager
        def batch(self):
            with super().batch():
                yield
            if self.depth == 0:
                order.append("commit")

    store = Recording()
    group = GroupCommit(lambda: store)

    async def request():
        value = await group.run(lambda: order.append("change") or "ok")
        order.append("answer")
        return value

    try:
        assert run(request()) == ["ok"]
    finally:
        group.close()
    assert order == ["change", "commit", "answer"]


def test_a_request_after_close_is_refused():
    group = GroupCommit(lambda: Counting())
    assert run(group.run(lambda: 1)) == [1]
    group.close()
    # after close (the API app's cleanup) a late request is refused, never left waiting
    assert [type(r) for r in run(group.run(lambda: 2))] == [RuntimeError]


def test_a_change_the_database_refuses_leaves_its_error_on_health(tmp_path):
    """A change the database refuses (as every one on a read-only file) fails its request, and
    the store keeps saying so (/healthz: 'database refuses writes') although the batch's own
    transaction, left with nothing in it, commits."""
    store = Store(str(tmp_path / "gw.db"), HOTLINE, "BH/GOV/NCCTIP")
    group = GroupCommit(lambda: store)

    def refused():
        with store.write() as db:
            db.execute("INSERT INTO no_such_table VALUES (1)")

    try:
        results = run(group.run(refused))
    finally:
        group.close()
    assert [type(r) for r in results] == [StoreError]
    assert store.write_error is not None and "no_such_table" in store.write_error
