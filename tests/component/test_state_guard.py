"""The agent's state check (agents/state.py, refmesh.statehead) in the faust app's test context:
each event's writes carry the partition's sealed head and move the worker's marks file; a
value put back under the agent's feet is found when the partition is taken up again (as after
a rebalance or a restart), the partition is halted and /healthz names it, while the other
partitions go on."""
from __future__ import annotations

import asyncio
import json
import stat
import types

import pytest

from agents.state import Marks, PartitionHalted
from refmesh import health, statehead
from tests.component.test_forward_agent import (BH, HOTLINE, KEY, RecordingProducer, consent,
                                                make_app, put_all, seal, withdrawn)
from tests import policy_samples as S


@pytest.fixture(scope="module")
def mesh():
    return S.signed_mesh(S.NOW)


def message(value: bytes, partition: int = 0):
    return types.SimpleNamespace(topic="inbox", partition=partition, offset=99, key=KEY,
                                 value=value)


def test_writes_carry_the_head_and_a_value_put_back_halts_the_partition(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")),
                  (KEY, seal(mesh, withdrawn(), HOTLINE, BH, "Consent"))])
    tables, state = app.refmesh_tables, app.forwarder.state
    (key,) = tables.consents.keys()
    # what an outsider reading the changelog saw: the consent as first recorded
    recorded, latest = [v for topic, k, v, _ in producer.changelog
                        if topic.endswith(".consents") and k == key]
    assert tables.consents[key] == latest != recorded

    head = statehead.open_head(mesh.keys[BH], 0, tables.state_heads[b"0"])
    assert head.seq == 2 and "consents" in head.digests
    marks = tmp_path / "1" / "state-marks.json"
    assert stat.S_IMODE(marks.stat().st_mode) == 0o600
    last = [json.loads(line) for line in marks.read_text().splitlines()][-1]
    assert (last["p"], last["m"]["head"]["seq"], last["m"]["pending"]) == (0, 2, None)

    # the recorded consent comes back from the changelog, the withdrawal gone
    tables.consents.data[key] = recorded
    state.reset()  # as at the next assignment
    with pytest.raises(PartitionHalted, match="consents"):
        asyncio.run(app.forwarder.handle(message(b"anything")))
    assert "partition 0" in state.halted[0]
    facts = health.WorkerFacts("inbox", True, (0, 1), False, False, None,
                               halted=tuple(state.halted.values()))
    status, body = health.report(facts)
    assert status == 503 and body["problems"][0].startswith("HALTED: partition 0")
    # another partition is taken up as usual
    assert state.ready(1) is None


def test_a_restarted_worker_checks_against_its_marks_file(tmp_path, mesh):
    app = make_app(tmp_path, mesh, RecordingProducer())
    put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent"))])
    tables = app.refmesh_tables
    heads = dict(tables.state_heads.items())
    # a second worker process on the same data dir, whose tables were restored without the
    # consent and without its head: the marks say version 1 was written
    again = make_app(tmp_path, mesh, RecordingProducer())
    assert "head is gone" in again.forwarder.state.ready(0)
    # with the head back but the consent still missing
    for k, v in heads.items():
        again.refmesh_tables.state_heads.data[k] = v
    again.forwarder.state.reset()
    assert "consents" in again.forwarder.state.ready(0)


def test_the_marks_log_survives_a_half_written_line_and_is_compacted(tmp_path):
    path = tmp_path / "state-marks.json"
    marks = Marks(path)
    for seq in range(1, 4):
        marks.put(seq % 2, statehead.Mark(statehead.Head(seq, {"consents": seq})))
    assert len(path.read_text().splitlines()) == 3
    with open(path, "ab") as f:  # a process killed in the middle of an append
        f.write(b'{"p":0,"m":{"head":{"seq":9')
    again = Marks(path)
    assert again.get(0).head.seq == 2 and again.get(1).head.seq == 3
    assert len(path.read_text().splitlines()) == 2  # rewritten with the newest marks only
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again.COMPACT_BYTES = 1
    again.put(0, statehead.Mark(statehead.Head(4)))
    assert len(path.read_text().splitlines()) == 2 and Marks(path).get(0).head.seq == 4


def test_an_expired_directory_holds_the_event_until_a_newer_edition_is_in_force(tmp_path, mesh):
    """The agent neither decides nor dead-letters an event while the directory is expired
    (kafkaedge.directory_gate): it waits with it, and decides it once an edition is in force."""
    app = make_app(tmp_path, mesh, RecordingProducer())
    expired = ["signed directory serial 1 expired"]

    class Ref:
        def __call__(self):
            return mesh.directory

        def stop_reason(self):
            return expired[0] if expired else None

    app.forwarder.directory_ref = Ref()
    sealed = seal(mesh, consent(), HOTLINE, BH, "Consent")

    async def go():
        async with app.agents["forward"].test_context() as agent:
            put = asyncio.ensure_future(agent.put(sealed, key=KEY, partition=0))
            with pytest.raises(asyncio.TimeoutError):  # the agent holds the event
                await asyncio.wait_for(asyncio.shield(put), 0.2)
            held = not put.done() and app.forwarder.counts["ConsentRecorded"] == 0
            expired.clear()
            await asyncio.wait_for(put, 10)
            return held, agent.results[0]

    held, effects = asyncio.run(go())
    assert held
    assert effects.deadletter is None and app.forwarder.counts["ConsentRecorded"] == 1


def _guard(mesh):
    from agents.state import HEADS, StateGuard
    tables = {HEADS: {}, "consents": {}, "forwarded": {}}
    return StateGuard(mesh.keys[BH], S.SECRET, tables, Marks(None), final=lambda start: False), \
        tables


def _copy(tables: dict) -> dict:
    return {name: dict(table) for name, table in tables.items()}


def _at(tables: dict, snapshot: dict) -> None:
    for name, table in tables.items():
        table.clear()
        table.update(snapshot[name])


def test_a_transaction_of_several_events_aborted_or_committed_is_no_rollback(mesh):
    """Under exactly_once several events share one transaction (group commit): a worker that
    dies before the commit leaves the state at the last committed head, a worker that dies
    right after it at the newest one; neither is a rollback. Older than the last commit is."""
    guard, tables = _guard(mesh)
    assert guard.ready(0) is None
    guard.apply(0, [("consents", b"k1", b"v1")])
    guard.committed(0)
    older = _copy(tables)
    guard.apply(0, [("consents", b"k1", b"v1b")])
    guard.committed(0)
    committed = _copy(tables)
    # one transaction of three events, in two tables
    guard.apply(0, [("forwarded", b"f1", b"log1")])
    guard.apply(0, [("consents", b"k2", b"v2")])
    guard.apply(0, [("consents", b"k3", b"v3")])
    newest = _copy(tables)

    _at(tables, committed)  # aborted: the changelogs end at the last commit
    guard.reset()
    assert guard.ready(0) is None
    guard.apply(0, [("forwarded", b"f1", b"log1")])  # the same three events again
    guard.apply(0, [("consents", b"k2", b"v2")])
    guard.apply(0, [("consents", b"k3", b"v3")])
    assert tables == newest
    guard.reset()  # committed, the worker gone before it noted it: the newest head
    assert guard.ready(0) is None

    _at(tables, older)  # an earlier committed state put back
    guard.reset()
    assert "rolled back" in guard.ready(0)


def test_while_a_transaction_is_pending_a_state_older_than_the_last_commit_halts(mesh):
    """The broker's attacker (THREATS.md: it may rewrite and delete records, not read or seal
    the domain's state) puts an older committed state back, with its head, while the worker
    has events of an open transaction: the tolerance for that transaction (the committed head
    or the pending one) does not cover it."""
    guard, tables = _guard(mesh)
    assert guard.ready(0) is None
    guard.apply(0, [("consents", b"k1", b"given")])
    guard.committed(0)
    older = _copy(tables)  # what the attacker kept from the changelog
    guard.apply(0, [("consents", b"k1", b"withdrawn")])
    guard.committed(0)
    guard.apply(0, [("forwarded", b"f1", b"log1")])  # a transaction still open
    guard.apply(0, [("consents", b"k2", b"v2")])
    _at(tables, older)
    guard.reset()
    assert "rolled back" in guard.ready(0)
