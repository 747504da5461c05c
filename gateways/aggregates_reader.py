"""Read a region's aggregate topic (edge I/O for refmesh.aggregate): to its end, or following it.

Only bytes come out; verifying signatures and keeping the newest revision is the core's job
(``refmesh.aggregate.verify_release``, ``refmesh.aggregate.table.Latest``).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from gateways.supervise import wait_until
from refmesh import aggregate


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    value: bytes = field(repr=False)


def _consumer(consumer_config: dict) -> KafkaConsumer:
    config = {k: v for k, v in consumer_config.items()
              if k not in ("group_id", "enable_auto_commit")}
    return KafkaConsumer(group_id=None, enable_auto_commit=False, **config)


def _assign(consumer: KafkaConsumer, topic: str) -> list[TopicPartition] | None:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return None
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    return parts


def _to_end(consumer: KafkaConsumer, parts: list[TopicPartition], topic: str,
            timeout: float) -> list[Message]:
    ends = consumer.end_offsets(parts)
    seen: list[Message] = []

    def done() -> bool:
        for tp, batch in consumer.poll(timeout_ms=200, max_records=5000).items():
            seen.extend(Message(tp.partition, m.offset, m.value or b"") for m in batch)
        return all(consumer.position(tp) >= ends[tp] for tp in parts)

    wait_until(done, timeout, f"the end of {topic}", interval=0)
    return seen


def read_all(consumer_config: dict, region: str, timeout: float = 60.0) -> list[Message] | None:
    """Every message now on the region's aggregate topic; None when the topic does not exist."""
    topic = aggregate.topic(region)
    consumer = _consumer(consumer_config)
    try:
        parts = _assign(consumer, topic)
        return None if parts is None else _to_end(consumer, parts, topic, timeout)
    finally:
        consumer.close(autocommit=False)


def follow(consumer_config: dict, region: str, timeout: float = 60.0,
           poll_ms: int = 500) -> Iterator[list[Message]] | None:
    """None when the topic does not exist; else batches of messages: first everything on the
    topic now (possibly empty), then each new batch as it arrives, until the caller stops."""
    topic = aggregate.topic(region)
    consumer = _consumer(consumer_config)
    try:
        parts = _assign(consumer, topic)
    except BaseException:
        consumer.close(autocommit=False)
        raise
    if parts is None:
        consumer.close(autocommit=False)
        return None

    def batches() -> Iterator[list[Message]]:
        try:
            yield _to_end(consumer, parts, topic, timeout)
            while True:
                batch = [Message(tp.partition, m.offset, m.value or b"")
                         for tp, records in consumer.poll(timeout_ms=poll_ms).items()
                         for m in records]
                if batch:
                    yield batch
        finally:
            consumer.close(autocommit=False)

    return batches()
