"""The gateway's inbox replaces a consumer that its group left out for good (seen after a
broker restart: the coordinator no longer knew the member, and it never held a partition
again): after REJOIN_AFTER_S without a partition, _consume returns and _run makes a new one."""
from __future__ import annotations

import time

from gateways import inbox as inbox_module
from gateways.inbox import Inbox


class Stuck:
    """A consumer that polls nothing and holds no partition."""

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, **_):
        self.polls += 1
        return {}

    def assignment(self):
        return set()


class Keys:
    agency_id = "BH/GOV/HOTLINE"


def test_a_consumer_without_partitions_past_the_limit_is_given_up():
    inbox = Inbox(None, Keys(), lambda: None, {}, None, None)
    inbox.consumer = Stuck()
    inbox.unassigned_since = time.monotonic() - inbox_module.REJOIN_AFTER_S - 1
    inbox._consume()  # returns instead of polling for ever
    assert inbox.consumer.polls == 1
    assert inbox.unassigned_s() < inbox_module.REJOIN_AFTER_S  # the new consumer's clock


def test_a_consumer_still_joining_is_left_alone():
    inbox = Inbox(None, Keys(), lambda: None, {}, None, None)
    inbox.consumer = Stuck()
    inbox.unassigned_since = time.monotonic()
    polls = []

    def poll(**_):
        polls.append(1)
        if len(polls) == 3:
            inbox._stop.set()
        return {}

    inbox.consumer.poll = poll
    inbox._consume()  # ends only because the inbox was stopped
    assert len(polls) == 3


class Batches:
    """A consumer handing out two non-empty polls of partition 0, then empty ones."""

    def __init__(self, inbox) -> None:
        from types import SimpleNamespace
        self.inbox, self.commits, self.polls = inbox, [], 0
        self.tp = ("refmesh.agency.x", 0)
        self.batches = [{self.tp: [SimpleNamespace(offset=o)]} for o in (7, 8)]
        self.ns = SimpleNamespace

    def poll(self, **_):
        self.polls += 1
        if self.polls == 4:
            self.inbox._stop.set()
        return self.batches.pop(0) if self.batches else {}

    def assignment(self):
        return {self.tp}

    def highwater(self, tp):
        return None

    def commit(self, offsets):
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})


class Store:
    import contextlib

    @contextlib.contextmanager
    def batch(self):
        yield


def test_stored_offsets_are_committed_once_the_polls_run_dry():
    """The second poll's event is gathered into the first's store commit (gather_ms)."""
    inbox = Inbox(Store(), Keys(), lambda: None, {}, None, None, gather_ms=10)
    inbox.handle = lambda message: None
    consumer = inbox.consumer = Batches(inbox)
    inbox.unassigned_since = None
    inbox._consume()
    # not after each of the two busy polls: once, after the first empty one, the last offset
    assert consumer.commits == [{consumer.tp: 9}]
