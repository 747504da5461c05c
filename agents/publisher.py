"""``publish`` for the domain's agent over its faust app's producer (agents/forward.py).

Under ``at_least_once`` every record the agent publishes is acknowledged by the broker before
the next step of the event. Under ``exactly_once`` (the apache profile) every record goes into
the transaction of the event's own partition, the transaction its offset commit ends, and the
commit first waits for every record of the transaction to be acknowledged (``acknowledged``).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import faust
from faust.types import TP


class PartitionLost(Exception):
    """The event's partition was revoked while it was being handled (exactly_once): its
    transaction is gone, and the partition's new owner handles the event again."""


class FaustPublisher:
    """``publish`` over a faust app's producer: makes sure each new topic exists (never
    auto-created), sends, and waits for the broker's acknowledgement.

    Under ``exactly_once`` every record goes into the transaction of the event's own partition,
    the one its offset is committed in (faust's transactional id of that partition). faust
    itself picks a transaction by the partition of the record being sent, which only works
    for topics co-partitioned with the source (its changelogs); a record to another topic (an
    agency's inbox, the audit and dead-letter topics) would go out with the plain producer,
    outside any transaction, and a restart would publish it a second time.

    A record sent between events (``source=None``: the audit checkpoints of a timer or of a
    stopping worker, agents/checkpoints.py) goes out with faust's plain producer, outside any
    transaction (under ``exactly_once`` faust makes it idempotent, acks=all), and is visible
    as soon as it is acknowledged.
    """

    def __init__(self, app: faust.App, partitions: int,
                 ensure_topic: Callable[[str], Awaitable[bool]]) -> None:
        self.app, self.partitions, self.ensure_topic = app, partitions, ensure_topic
        self._topics: dict[str, faust.TopicT] = {}
        self._ensured: set[str] = set()
        # under exactly_once: (source partition, acknowledgement future) of records sent in
        # the open transactions, awaited together before their commit (``acknowledged``)
        self._unacked: list[tuple[int, asyncio.Future]] = []

    def known(self, names) -> None:
        """Topics already created (by ``agents.run``): no need to check them again."""
        self._ensured.update(names)

    async def __call__(self, name: str, key, value, headers, partition=None, *,
                       source: tuple[str, int] | None) -> None:
        if name not in self._ensured and await self.ensure_topic(name):
            self._ensured.add(name)
        if source is None:  # between events: faust's plain producer (no transactional id)
            await (await self.app.producer.send(name, key, value, partition, None, headers))
            return
        if self.app.in_transaction:
            await self._send_in_transaction(name, key, value, headers, partition, source)
            return
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.app.topic(
                name, partitions=self.partitions, internal=False)
        # Topic.send returns the producer's future; the second await is the acknowledgement.
        await (await topic.send(key=key, value=value, headers=headers, partition=partition))

    async def _send_in_transaction(self, name, key, value, headers, partition, source) -> None:
        topic, source_partition = source
        if TP(topic, source_partition) not in self.app.consumer.assignment():
            raise PartitionLost(f"{topic}/{source_partition} was revoked")
        # the transactional id faust's TransactionManager commits this partition's offsets in
        transactional_id = (f"{self.app.conf.id}-{self.app.assignor.group_for_topic(topic)}-"
                            f"{source_partition}")
        # not awaited one by one: the records of an event (and of the events sharing its
        # commit) go out together, and the commit waits for them (``acknowledged``); a record
        # that fails makes the transaction fail, so none of them is ever seen
        self._unacked.append((source_partition, await self.app.producer.send(
            name, key, value, partition, None, headers, transactional_id=transactional_id)))

    async def acknowledged(self, partitions: set[int]) -> None:
        """Wait until the broker acknowledged every record sent in the transactions of
        ``partitions`` (the ones about to be committed); raise the first failure. Records of
        other partitions (revoked meanwhile: their transactions are gone) are forgotten."""
        unacked, self._unacked = self._unacked, []
        await asyncio.gather(*(f for p, f in unacked if p in partitions))
