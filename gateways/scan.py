"""The leak scanner: read every topic of a mesh from the beginning and report any canary value
(a planted personal value) found in clear in a record's value, key or headers.

A partition is read up to the end offset the broker reports. The embedded broker can report an
end offset past its last readable record (seen after a restart with memory storage: a
partition of 22 records reported as ending at 48), so a partition that yields nothing more for
``idle_s`` seconds is given up and listed in ``ScanResult.short`` instead of waiting out the
timeout.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import TopicPartition

from kafkaedge import topic_reader
from kafkaedge.waiting import wait_until


@dataclass
class ScanResult:
    topics: int = 0
    messages: int = 0
    bytes: int = 0
    hits: list[tuple[str, int, int, str]] = field(default_factory=list)  # topic, part, offset, canary
    # partitions whose reported end was not reached: topic, partition, position, end offset
    short: list[tuple[str, int, int, int]] = field(default_factory=list)


def scan(consumer_config: dict, canaries: list[str], topic_prefix: str | tuple[str, ...] = "",
         timeout: float = 60.0, idle_s: float = 15.0) -> ScanResult:
    """Read every topic (whose name starts with ``topic_prefix``, or with one of several) up to
    its current end."""
    needles = [(c, c.encode("utf-8")) for c in canaries if c]
    consumer = topic_reader.consumer(consumer_config)
    result = ScanResult()
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(topic_prefix))
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or ())]
        result.topics = len(topics)
        if not parts:
            return result
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        todo = {tp for tp in parts if ends[tp] > 0}
        progress = [time.monotonic()]

        def drained():
            for tp, messages in consumer.poll(timeout_ms=200, max_records=2000).items():
                progress[0] = time.monotonic()
                for m in messages:
                    _check(m, needles, result)
            for tp in list(todo):
                if consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
            if todo and time.monotonic() - progress[0] > idle_s:
                result.short = sorted((tp.topic, tp.partition, consumer.position(tp), ends[tp])
                                      for tp in todo)
                return True
            return not todo

        wait_until(drained, timeout, "the scan to reach the end of every topic", interval=0)
    finally:
        consumer.close(autocommit=False)
    return result


def _check(message, needles, result: ScanResult) -> None:
    result.messages += 1
    blobs = [message.value or b"", message.key or b""]
    blobs += [v or b"" for _, v in (message.headers or [])]
    result.bytes += sum(len(b) for b in blobs)
    for canary, raw in needles:
        if any(raw in blob for blob in blobs):
            result.hits.append((message.topic, message.partition, message.offset, canary))
