"""Read a region's aggregate topic (edge I/O for refmesh.aggregate): to its end, or following it.

Only bytes come out; verifying signatures and keeping the newest revision is the core's job
(``refmesh.aggregate.verify_release``, ``refmesh.aggregate.table.Latest``).
"""
from __future__ import annotations

from collections.abc import Iterator

from kafkaedge.topic_reader import Message, assign, consumer, read_topic, to_end
from refmesh import aggregate


def read_all(consumer_config: dict, region: str, timeout: float = 60.0) -> list[Message] | None:
    """Every message now on the region's aggregate topic; None when the topic does not exist."""
    return read_topic(consumer_config, aggregate.topic(region), timeout)


def follow(consumer_config: dict, region: str, timeout: float = 60.0,
           poll_ms: int = 500) -> Iterator[list[Message]] | None:
    """None when the topic does not exist; else batches of messages: first everything on the
    topic now (possibly empty), then each new batch as it arrives, until the caller stops."""
    topic = aggregate.topic(region)
    reader = consumer(consumer_config)
    try:
        parts = assign(reader, topic)
    except BaseException:
        reader.close(autocommit=False)
        raise
    if parts is None:
        reader.close(autocommit=False)
        return None

    def batches() -> Iterator[list[Message]]:
        try:
            yield to_end(reader, parts, topic, timeout)
            while True:
                batch = [Message(tp.partition, m.offset, m.value, m.key)
                         for tp, records in reader.poll(timeout_ms=poll_ms).items()
                         for m in records]
                if batch:
                    yield batch
        finally:
            reader.close(autocommit=False)

    return batches()
