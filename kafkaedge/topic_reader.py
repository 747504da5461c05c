"""Read a whole topic from its beginning to its current end, without a consumer group (edge I/O
shared by the audit check, the release job and the regional readers)."""
from __future__ import annotations

from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from kafkaedge.waiting import wait_until


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    value: bytes | None = field(repr=False)
    key: bytes | None = field(default=None, repr=False)


def consumer(consumer_config: dict) -> KafkaConsumer:
    """A consumer without group or commits (the reader keeps no position on the broker)."""
    config = {k: v for k, v in consumer_config.items()
              if k not in ("group_id", "enable_auto_commit")}
    return KafkaConsumer(group_id=None, enable_auto_commit=False, **config)


def assign(consumer: KafkaConsumer, topic: str) -> list[TopicPartition] | None:
    """Assign every partition of ``topic`` from its beginning; None when it does not exist."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return None
    parts = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    return parts


def to_end(consumer: KafkaConsumer, parts: list[TopicPartition], topic: str,
           timeout: float) -> list[Message]:
    """Every message up to the end offsets as they are now, in partition order per partition."""
    ends = consumer.end_offsets(parts)
    seen: list[Message] = []

    def done() -> bool:
        for tp, batch in consumer.poll(timeout_ms=200, max_records=5000).items():
            seen.extend(Message(tp.partition, m.offset, m.value, m.key) for m in batch)
        return all(consumer.position(tp) >= ends[tp] for tp in parts)

    wait_until(done, timeout, f"the end of {topic}", interval=0)
    return seen


def read_topic(consumer_config: dict, topic: str, timeout: float = 60.0) -> list[Message] | None:
    """Every message now on ``topic``; None when the topic does not exist."""
    parts = read_partitions(consumer_config, topic, timeout)
    return None if parts is None else [m for p in sorted(parts) for m in parts[p]]


def read_partitions(consumer_config: dict, topic: str,
                    timeout: float = 60.0) -> dict[int, list[Message]] | None:
    """Every message now on ``topic`` by partition (every partition listed, empty or not);
    None when the topic does not exist."""
    reader = consumer(consumer_config)
    try:
        parts = assign(reader, topic)
        if parts is None:
            return None
        out: dict[int, list[Message]] = {tp.partition: [] for tp in parts}
        for m in to_end(reader, parts, topic, timeout):
            out[m.partition].append(m)
        return out
    finally:
        reader.close(autocommit=False)


def latest(messages: list[Message] | None) -> dict[bytes, Message]:
    """A compacted topic's view: the latest message per key (a tombstone removes the key)."""
    view: dict[bytes, Message] = {}
    for m in messages or ():
        if m.value is None:
            view.pop(m.key, None)
        else:
            view[m.key] = m
    return view
