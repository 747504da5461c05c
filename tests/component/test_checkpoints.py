"""Audit checkpoints between events (agents/checkpoints.py) in the faust app's test context: a
partition's last decisions before a quiet spell are signed once its last checkpoint is
``audit_checkpoint_s`` old, those before a stop at once; only heads whose event was committed
are signed, with faust's plain producer (no transaction)."""
from __future__ import annotations

import asyncio

import pytest

from agents.checkpoints import Checkpoints
from refmesh import audit, codec, topology
from tests import policy_samples as S
from tests.component.test_forward_agent import (BH, HOTLINE, KEY, RecordingProducer, consent,
                                                make_app, put_all, referral, seal)

NOW = S.NOW
CHAIN, CHECKPOINTS = topology.audit(BH), topology.audit_checkpoints(BH)


@pytest.fixture(scope="module")
def mesh():
    return S.signed_mesh(NOW)


def three_decisions(app, mesh, more=()) -> None:
    """A consent, a referral and a forged event on partition 0 (then ``more``): three audit
    records, the first signed in its event (the partition's first after a start). One call
    per app: the agent's offset guard takes a second call's events for ones handled."""
    good = seal(mesh, referral(), HOTLINE, BH)
    put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")), (KEY, good),
                  (b"other-key", good[:-1] + bytes([good[-1] ^ 1])), *more])


def signed(producer) -> list[dict]:
    return [codec.decode(m.value, expect="AuditCheckpoint")[1]
            for m in producer.to(CHECKPOINTS)]


def findings(mesh, producer) -> list[audit.Finding]:
    return audit.findings([m.value for m in producer.to(CHAIN) if m.partition == 0],
                          [m.value for m in producer.to(CHECKPOINTS)], directory=mesh.directory,
                          domain=BH, chain=CHAIN, partition=0)


def test_a_quiet_partition_is_signed_once_its_last_checkpoint_is_old(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer, audit_checkpoint_s=60)
    three_decisions(app, mesh)
    assert [c["seq"] for c in signed(producer)] == [1]
    assert [f.kind for f in findings(mesh, producer)] == ["unconfirmed"]

    assert asyncio.run(app.checkpoints.due()) == []  # the checkpoint at seq 1 is 0 s old
    app.forwarder.clock = lambda: NOW + 59_999
    assert asyncio.run(app.checkpoints.due()) == []
    app.forwarder.clock = lambda: NOW + 60_000
    assert asyncio.run(app.checkpoints.due()) == [0]
    last = producer.to(CHECKPOINTS)[-1]
    assert (last.partition, last.key) == (0, b"0")
    assert signed(producer)[-1]["seq"] == 3 and signed(producer)[-1]["at"] == NOW + 60_000
    assert findings(mesh, producer) == []
    assert app.forwarder.checkpointed[0] == (3, NOW + 60_000)
    app.forwarder.clock = lambda: NOW + 600_000
    assert asyncio.run(app.checkpoints.due()) == []  # the head has not moved since
    assert asyncio.run(app.checkpoints.stop()) == []


def test_a_stopping_worker_signs_its_last_committed_heads_and_starts_no_new_event(
        tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer, audit_checkpoint_s=3600)
    # a fourth event whose offset commit does not end (as if the worker were stopped in its
    # middle): its records may yet be aborted, so its head is not signed, although the
    # table holds it
    calls, committed = [], app.forwarder.committed

    def all_but_the_fourth(partition: int) -> None:
        calls.append(partition)
        if len(calls) != 4:
            committed(partition)

    app.forwarder.committed = all_but_the_fourth
    three_decisions(app, mesh, more=[(KEY, b"junk")])
    assert len(calls) == 4
    assert audit.Head.from_bytes(app.refmesh_tables.heads[b"0"]).seq == 4

    assert asyncio.run(app.checkpoints.stop()) == [0]
    assert [c["seq"] for c in signed(producer)] == [1, 3]

    async def next_event() -> bool:
        async with app.checkpoints.event() as go:
            return go
    assert asyncio.run(next_event()) is False


def test_only_held_partitions_are_signed(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    three_decisions(app, mesh)
    elsewhere = Checkpoints(app.forwarder, app.publisher, lambda: {1, 2}, seconds=60)
    assert asyncio.run(elsewhere.stop()) == []
    app.forwarder.reassigned()  # a rebalance: partition 0 may have moved on elsewhere
    assert asyncio.run(app.checkpoints.stop()) == []
    assert [c["seq"] for c in signed(producer)] == [1]


def test_a_checkpoint_the_broker_does_not_take_is_tried_again_at_the_next_tick(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer, audit_checkpoint_s=1)
    three_decisions(app, mesh)
    app.forwarder.clock = lambda: NOW + 1_000
    producer.fail = 1
    asyncio.run(app.checkpoints.tick())  # logged, not raised
    assert [c["seq"] for c in signed(producer)] == [1]
    asyncio.run(app.checkpoints.tick())
    assert [c["seq"] for c in signed(producer)] == [1, 3]
