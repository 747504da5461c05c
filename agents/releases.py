"""Publishing a policy domain's statistics to its region: the release job of the agents.

Every ``release_interval_s`` it reads the domain's aggregate-counts table (the changelog of the
agent's faust table: the latest protected counts per partition and window), merges the
partitions, and for every window that is due (closed at least ``aggregate_grace_ms`` ago) asks
``refmesh.aggregate.decide_release`` what to publish: the first release, a correction after
late events (only cells that moved by at least k change), or nothing. A release is signed by
the domain and published, unencrypted, on ``refmesh.region.<R>.aggregates``; the release state
(what was published, for the next correction) is kept, encrypted, on the compacted topic
``refmesh.domain.<D>.aggregate-releases``.

It reads whole topics rather than faust's partitioned table so that the release covers every
partition whichever worker runs it; two workers publishing the same release is harmless (the
release id is stable and readers keep one per window and revision).
"""
from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.forward import COUNTS_CONTEXT
from gateways.loading import now_ms
from gateways.supervise import wait_until
from refmesh import aggregate, envelope, topology

log = logging.getLogger("refmesh.agents.releases")
RELEASE_CONTEXT = b"aggregate-releases|"


def read_latest(consumer_config: dict, topic: str, timeout: float = 30.0) -> dict[bytes, bytes]:
    """The latest value per key on ``topic`` (a compacted table's view), read to its end."""
    config = {k: v for k, v in consumer_config.items()
              if k not in ("group_id", "enable_auto_commit")}
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **config)
    latest: dict[bytes, bytes] = {}
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                          or ())]
        if not parts:
            return latest
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)

        def done():
            for batch in consumer.poll(timeout_ms=200, max_records=5000).values():
                for m in batch:
                    if m.value is None:
                        latest.pop(m.key, None)
                    else:
                        latest[m.key] = m.value
            return all(consumer.position(tp) >= ends[tp] for tp in parts)

        wait_until(done, timeout, f"the end of {topic}", interval=0)
        return latest
    finally:
        consumer.close(autocommit=False)


class Releaser:
    def __init__(self, settings, keys, consumer_config: dict, producer_config: dict,
                 clock=now_ms) -> None:
        self.settings, self.keys, self.clock = settings, keys, clock
        self.consumer_config, self.producer_config = consumer_config, producer_config
        self.domain = settings.domain
        self.region = aggregate.check_region(settings.region)
        self.counts_topic = topology.table(self.domain, "aggregate-counts")
        self.state_topic = topology.table(self.domain, topology.RELEASES)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="releases", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.release_interval_s):
            try:
                published = self.run_once()
                if published:
                    log.info("published %d release(s) for region %s", published, self.region)
            except Exception as exc:  # keep trying at the next interval; log without values
                log.warning("release run failed (%s); trying again", type(exc).__name__)

    def run_once(self) -> int:
        now = self.clock()
        windows: dict[int, list] = {}
        for key, value in read_latest(self.consumer_config, self.counts_topic).items():
            start = int(key.split(b"|")[1])
            counts = aggregate.loads(envelope.unprotect(self.keys, COUNTS_CONTEXT + key, value))
            windows.setdefault(start, []).append(counts)
        previous = {}
        for key, value in read_latest(self.consumer_config, self.state_topic).items():
            data = envelope.unprotect(self.keys, RELEASE_CONTEXT + key, value)
            previous[int(key)] = aggregate.Release.from_bytes(data)
        published = 0
        producer = None
        for start, parts in sorted(windows.items()):
            window = aggregate.window_of(start, self.settings.aggregate_unit)
            if not aggregate.due(window, now, self.settings.aggregate_grace_ms):
                continue
            out = aggregate.decide_release(
                aggregate.merge(*parts), domain=self.domain, region=self.region, window=window,
                previous=previous.get(start), k=self.settings.aggregate_k,
                resolution=self.settings.aggregate_resolution)
            if not isinstance(out, aggregate.Publish):
                continue
            producer = producer or KafkaProducer(**self.producer_config)
            producer.send(aggregate.topic(self.region), key=str(start).encode(),
                          value=aggregate.sign_release(out.record, self.keys)).get(timeout=30)
            key = str(start).encode()
            producer.send(self.state_topic, key=key, value=envelope.protect(
                self.keys, RELEASE_CONTEXT + key, out.release.to_bytes())).get(timeout=30)
            published += 1
        if producer is not None:
            producer.close(timeout=5)
        return published
