"""The agent's guard against events faust never hands over: ``refmesh.offsets`` decides, this
carries it out.

Per assigned partition of the domain inbox the guard knows the next offset the agent expects.
After every assignment it forgets them all and, at a partition's first event, asks the broker
for the group's committed offset (or the partition's first offset when nothing was committed).
An event further along than expected makes it read the missing range itself, with a consumer of
its own in the domain's group that never joins the group (assign and seek only), and the agent
handles those events first, in order. The agent then commits the guard's next expected offset
(agents/forward.py). Logs name the topic, partition and offsets only, never a payload.

Why not seek faust's own consumer back: faust's fetch loop keeps a read position per partition
and drops every fetched event below it; a seek from the agent races with the batch the loop is
iterating, which moves that position forward again, so the re-read events would be dropped too.
"""
from __future__ import annotations

import asyncio
import logging
import time

from faust.types.tuples import Message
from kafka import KafkaConsumer, TopicPartition

from refmesh import offsets

log = logging.getLogger("refmesh.agents.offsets")

READ_DEADLINE_S = 30.0  # one attempt to read a missing range; retried after a pause


class ReadError(Exception):
    """A missing range could not be read in time (the broker is away); the agent retries."""


class PartitionReader:
    """Blocking reads of the domain's group offsets and of ranges of a partition
    (kafka-python; called off the event loop). ``config`` are KafkaConsumer keywords with the
    domain's group id; the consumer is made at first use and never subscribes."""

    def __init__(self, config: dict) -> None:
        self.config = dict(config)
        self._consumer: KafkaConsumer | None = None

    def _get(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(**self.config)
        return self._consumer

    def first_expected(self, topic: str, partition: int) -> int:
        tp = TopicPartition(topic, partition)
        consumer = self._get()
        committed = consumer.committed(tp)
        first = consumer.beginning_offsets([tp])[tp]
        return offsets.expected_after_assignment(committed, first)

    def read(self, topic: str, partition: int, start: int, stop: int) -> list:
        """The events at offsets ``start`` to ``stop - 1`` (fewer where offsets hold no event:
        transaction markers, aborted or compacted records)."""
        tp = TopicPartition(topic, partition)
        consumer = self._get()
        consumer.assign([tp])
        consumer.seek(tp, start)
        found, deadline = [], time.monotonic() + READ_DEADLINE_S
        while consumer.position(tp) < stop:
            if time.monotonic() > deadline:
                raise ReadError(f"{topic}/{partition}: offsets {start}..{stop - 1} not read "
                                f"within {READ_DEADLINE_S:.0f} s (at {consumer.position(tp)})")
            for record in consumer.poll(timeout_ms=200).get(tp, ()):
                if start <= record.offset < stop:
                    found.append(record)
        consumer.assign([])
        return found

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None


def to_message(record) -> Message:
    """A faust Message for a kafka-python record, handled like any event faust hands over."""
    return Message(record.topic, record.partition, record.offset, record.timestamp / 1000,
                   record.timestamp_type, list(record.headers or ()), record.key, record.value,
                   None)


class OffsetGuard:
    """The next expected offset per (topic, partition), and the reads that fill a gap."""

    def __init__(self, reader, *, retry_s: float = 1.0) -> None:
        self.reader, self.retry_s = reader, retry_s
        self.expected: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        """After an assignment: every partition starts again from the group's committed offset
        (faust seeks there too)."""
        self.expected.clear()

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def step(self, message) -> offsets.Step:
        key = (message.topic, message.partition)
        if key not in self.expected:
            self.expected[key] = await self._retrying(
                self.reader.first_expected, message.topic, message.partition)
        return offsets.next_step(self.expected[key], message.offset)

    def handled(self, message) -> None:
        self.expected[(message.topic, message.partition)] = message.offset + 1

    def expected_at(self, message) -> int:
        """The next offset expected in ``message``'s partition: the one to commit."""
        return self.expected[(message.topic, message.partition)]

    async def reread(self, message, step: offsets.Reread) -> list[Message]:
        found = await self._retrying(self.reader.read, message.topic, message.partition,
                                     step.start, step.stop)
        log.warning("%s/%d: expected offset %d but was handed %d; re-read %d event(s) of "
                    "offsets %d..%d from the broker to handle them first", message.topic,
                    message.partition, step.start, step.stop, len(found), step.start,
                    step.stop - 1)
        return [to_message(record) for record in found]

    async def _retrying(self, fn, *args):
        while True:
            try:
                return await self._call(fn, *args)
            except Exception as exc:  # noqa: BLE001 (the broker away: retry, never skip)
                log.warning("reading offsets of %s/%d failed (%s); retrying in %.1f s",
                            args[0], args[1], type(exc).__name__, self.retry_s)
                await asyncio.sleep(self.retry_s)

    def close(self) -> None:
        self.reader.close()
