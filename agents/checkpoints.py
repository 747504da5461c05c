"""Signed checkpoints of the audit chains between events: on a timer and when the worker stops.

The forward agent signs a partition's chain head inside an event (agents/forward.py), so a
partition's last decisions before a quiet spell or a stop would stay unconfirmed until its next
decision. ``Checkpoints.due`` fills that gap: ``create_app`` runs it on a faust timer (every half
``audit_checkpoint_s``) and once more as the worker stops (faust's ``on_before_shutdown``,
while the producer is still open), where every held partition whose head moved is due.

What may be signed between events: only a head whose records are committed, that is the head
after the partition's last event whose offset commit ended (``Forwarder.committed``). Under
``exactly_once`` that commit is the partition's transaction, with the event's audit records in
it; a head of an event still in hand may yet be aborted, and a checkpoint of it would make
``refmesh audit verify`` report the chain as truncated. A head read back from the broker is
never signed either (it could be anyone's): the heads come from this worker's own events.

How it is written: with faust's plain producer, outside any transaction (``source=None``,
agents/publisher.py; under ``exactly_once`` faust makes that producer idempotent). The other
way, writing it into partition p's transaction, would leave it unseen until p's next commit,
which a quiet partition may never make; committing p's transaction from here would cut into an
event in hand. A plain record is visible once acknowledged, and since it only ever covers
records already committed, no reader can see a checkpoint ahead of its chain. The domain's
principal may write the checkpoints topic (refmesh.access), which is all an idempotent
producer needs on Apache Kafka 3 and later.

At a stop, the event in hand (if any) is let finish first, for at most ``STOP_WAIT_S``, and no
new one is started: its records are then covered too. Sends are bounded (``SEND_TIMEOUT_S``):
with the broker away a checkpoint is left for later (the next tick, or the next start's first
audit record), never allowed to hold up the worker.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from refmesh import audit

log = logging.getLogger("refmesh.agents.checkpoints")

#: how long a stopping worker waits for the event it is handling before it signs its heads
STOP_WAIT_S = 5.0
#: how long one checkpoint may take to be acknowledged (faust's producer would wait 20 min)
SEND_TIMEOUT_S = 10.0


class Checkpoints:
    """Write the checkpoints due between events for the partitions ``held()`` returns.
    ``forwarder`` is the agent's ``Forwarder`` (heads, checkpoints written, keys, clock);
    ``publish`` its publisher, called with ``source=None``."""

    def __init__(self, forwarder, publish, held: Callable[[], Iterable[int]], *,
                 seconds: float, settle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.forwarder, self.publish, self.held, self.seconds = forwarder, publish, held, seconds
        self.settle = settle  # commits the events handled and not yet committed (group commit)
        self.stopping = False
        self._busy = asyncio.Lock()  # held by the agent for each event, handled and committed

    @contextlib.asynccontextmanager
    async def event(self) -> AsyncIterator[bool]:
        """Around one event of the agent: yields False once the worker is stopping (the event
        is then left unhandled, its offset uncommitted, for the next owner)."""
        async with self._busy:
            yield not self.stopping

    async def due(self, seconds: float | None = None) -> list[int]:
        """Sign and write every checkpoint due now (``seconds`` old at least; default the
        agent's ``audit_checkpoint_s``); return the partitions written."""
        f = self.forwarder
        held = set(self.held())
        heads = {p: h for p, h in f.heads_committed.items() if p in held}
        now = f.clock()
        written = []
        for partition in audit.checkpoints_due(heads, f.checkpointed, now,
                                               seconds=self.seconds if seconds is None
                                               else seconds):
            head = heads[partition]
            data = audit.checkpoint(head, domain_keys=f.keys, chain=f.audit_topic,
                                    partition=partition, at=now)
            try:
                await asyncio.wait_for(self.publish(f.checkpoint_topic, str(partition).encode(),
                                                    data, None, partition, source=None),
                                       SEND_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 (left for the next tick; logged)
                log.warning("could not write the audit checkpoint of partition %d at seq %d "
                            "(%s); trying again later", partition, head.seq,
                            type(exc).__name__)
                continue
            f.checkpoint_written(partition, head.seq, now)
            written.append(partition)
            log.info("audit checkpoint of partition %d at seq %d written", partition, head.seq)
        return written

    async def tick(self) -> None:
        """The timer's turn; never raises (an error in a faust timer would stop the worker)."""
        try:
            await self.due()
        except Exception as exc:  # noqa: BLE001 (logged; the next tick tries again)
            log.warning("audit checkpoints between events failed (%s)", type(exc).__name__)

    async def stop(self) -> list[int]:
        """The worker stops: let the event in hand finish, start no other, then sign every
        held partition whose head moved since its last checkpoint. Never raises."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._busy.acquire(), STOP_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("stopping with an event still in hand after %.0f s; its records are "
                        "left unconfirmed", STOP_WAIT_S)
            acquired = False
        else:
            acquired = True
        try:
            if acquired and self.settle is not None:
                await self.settle()
            return await self.due(0)
        except Exception as exc:  # noqa: BLE001 (the worker stops anyway)
            log.warning("audit checkpoints at shutdown failed (%s)", type(exc).__name__)
            return []
        finally:
            if acquired:
                self._busy.release()
