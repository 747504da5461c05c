"""The inbox consumer: reads the agency's topic, verifies, opens, validates, deduplicates and
stores each event, then commits the offset (only after the store). An event that fails any check
goes to the agency's dead-letter topic with the reason in a header, never any plaintext, and
consumption goes on.
"""
from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, OffsetAndMetadata
from kafka.errors import KafkaError

from gateways.store import Store
from kafkaedge.directory_gate import gated_poll
from refmesh import envelope, receive, topology
from refmesh.errors import DirectoryError, SealError, failure

log = logging.getLogger("refmesh.inbox")


REJOIN_AFTER_S = 30.0  # no partition held for this long: the consumer is replaced
#: offsets of stored events are committed to the group at most this often while events keep
#: coming, and at once when a poll comes back empty or the consumer closes: an event read
#: again after a crash is found in the store and answered as a duplicate, never stored twice
COMMIT_EVERY_S = 1.0
#: events stored in one commit at most (a poll's, and those gathered after it: ``gather_ms``)
MAX_RECORDS = 200


class Inbox:
    def __init__(self, store: Store, keys, directory_ref, consumer_config: dict, kafka,
                 metrics, on_stored=lambda: None,
                 clock=lambda: int(time.time() * 1000), gather_ms: int = 0,
                 on_closed=lambda keys: None) -> None:
        self.store, self.keys, self.directory_ref = store, keys, directory_ref
        self.consumer_config, self.kafka, self.metrics = consumer_config, kafka, metrics
        self.on_stored, self.clock = on_stored, clock
        self.on_closed = on_closed  # outbox entries closed by a receipt: the relay's timing
        # after a poll that brought events, more are gathered for this long into the same
        # store commit: one fsync for many events under load, at most gather_ms more per event
        # (kafkaedge.profiles: 10 ms on Apache Kafka, 0 on Tansu)
        self.gather_s = gather_ms / 1000
        self.topic = topology.agency_inbox(keys.agency_id)
        self.deadletter_topic = topology.deadletter(keys.agency_id)
        self._stop = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self.lag = 0  # for the consumer-lag gauge; on Tansu an estimate (end offsets are off)
        self.unassigned_since: float | None = time.monotonic()  # None while partitions held
        self._stored: dict = {}  # partition -> offset after its last stored event, uncommitted
        self._committed_at = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="inbox", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.kafka.producer()  # makes sure the topics exist before subscribing
                self.consumer = KafkaConsumer(self.topic, **self.consumer_config)
                self._consume()
            except KafkaError as exc:
                log.warning("inbox consumer lost the broker (%s); reconnecting",
                            type(exc).__name__)
                self._stop.wait(1.0)
            except Exception as exc:  # by its type and place: its message may quote a record
                log.error("inbox consumer failed (%s); restarting it", failure(exc))
                self._stop.wait(1.0)
            finally:
                if self.consumer is not None:
                    try:  # events stored but not committed are read again and found stored
                        self._commit_offsets()
                    except Exception as exc:  # noqa: BLE001 (closing anyway)
                        log.warning("inbox offsets not committed at close (%s); the events "
                                    "after them will be read again", type(exc).__name__)
                    self.consumer.close(autocommit=False)
                    self.consumer = None

    def _consume(self) -> None:
        while not self._stop.is_set():
            # nothing is fetched while the directory in force has expired (kafkaedge)
            batches = self._gather(gated_poll(self.consumer, self.directory_ref,
                                              timeout_ms=500, max_records=MAX_RECORDS))
            if self.consumer.assignment():
                self.unassigned_since = None
            elif self.unassigned_since is None:
                self.unassigned_since = time.monotonic()
            elif self.unassigned_s() > REJOIN_AFTER_S:
                # a consumer whose group forgot it (seen after a broker restart: "member_id
                # was not recognized") can stay out of its group for good: start a new one
                log.warning("inbox consumer held no partition of %s for %.0f s; starting a "
                            "new consumer", self.topic, self.unassigned_s())
                self.unassigned_since = time.monotonic()
                return
            if batches:
                with self.store.batch():  # one store commit for the polled batch
                    for messages in batches.values():
                        for message in messages:
                            self.handle(message)
                for tp, messages in batches.items():  # durable now: the offsets may follow
                    self._stored[tp] = OffsetAndMetadata(messages[-1].offset + 1, None, -1)
            if not batches or time.monotonic() - self._committed_at >= COMMIT_EVERY_S:
                self._commit_offsets()
            self.lag = self._lag()

    def _gather(self, batches: dict) -> dict:
        """``batches`` and whatever more arrives within ``gather_s``, per partition in order."""
        count = sum(len(m) for m in batches.values())
        deadline = time.monotonic() + self.gather_s
        while batches and count < MAX_RECORDS:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = gated_poll(self.consumer, self.directory_ref, timeout_ms=left_ms,
                              max_records=MAX_RECORDS - count)
            if not more:
                break
            for tp, messages in more.items():
                batches[tp] = batches.get(tp, []) + messages
                count += len(messages)
        return batches

    def _commit_offsets(self) -> None:
        """Commit the offsets after the events stored since the last commit (group commit:
        one request for many polls while events keep coming)."""
        self._committed_at = time.monotonic()
        if self._stored:
            stored, self._stored = self._stored, {}
            self.consumer.commit(stored)

    def unassigned_s(self) -> float:
        """How long the inbox consumer has held no partition of its topic (0 while it holds
        some): joining its group, or stuck in it (shared/BROKER.md; docs/development.md, Fault
        drills)."""
        since = self.unassigned_since
        return 0.0 if since is None else time.monotonic() - since

    def _lag(self) -> int:
        """Messages not yet consumed, from the high-water marks of the last fetches (no request;
        computed here because a KafkaConsumer must not be used from another thread)."""
        total = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                total += max(0, high - self.consumer.position(tp))
        return total

    def handle(self, message) -> None:
        """Process one Kafka message; return once it is stored or dead-lettered."""
        where = f"{message.topic}/{message.partition}@{message.offset}"
        directory = self.directory_ref()
        me = self.keys.agency_id
        try:
            opened = envelope.open(message.value or b"", self.keys, directory, self.clock())
            event = receive.Event(opened.header["eventId"], opened.record_type,
                                  opened.header["sender"], opened.record, message.key,
                                  opened.header["createdAt"], opened.inner)
            # the record was checked against its contract when decoded; who may say it is
            # decided with what the store holds (refmesh.receive), in one transaction
            changes = self.store.receive(event, receive.Parties.of(directory, me), self.clock())
        except (SealError, DirectoryError) as exc:
            self._dead_letter(message, exc.reason, where)
            return
        if changes.refused is not None:
            self._dead_letter(message, changes.refused, where, event.event_id)
            return
        self.metrics.received.labels(event.record_type,
                                     "new" if changes.new else "duplicate").inc()
        log.info("stored %s event %s from %s (%s) at %s", event.record_type, event.event_id,
                 event.sender, "new" if changes.new else "duplicate", where)
        if changes.close:
            self.on_closed([close.key for close in changes.close])
        self.on_stored()

    def _dead_letter(self, message, reason: str, where: str, detail: str = "") -> None:
        self.metrics.rejected.labels(reason).inc()
        log.warning("dead-lettered event at %s: %s %s", where, reason, detail)
        # Cut to a size the producer can write: a broker may hold larger events than that, and
        # a dead letter that cannot be written would stop the inbox at this event for good.
        key, value, headers = topology.dead_letter(message.key, message.value, reason, where)
        self.kafka.producer().send(self.deadletter_topic, value=value, key=key,
                                   headers=headers).get(timeout=30)
