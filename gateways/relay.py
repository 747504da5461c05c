"""The outbox relay: seals due outbox entries and publishes them with kafka-python.

A broker acknowledgement never closes an entry that needs a receipt: the entry is re-sent with
exponential backoff until the recipient's gateway answers with a Receipt (or the policy domain
with a refusal). The backoff is scheduled *before* the send, so a crash mid-send only means one
more re-send, which the recipient deduplicates.

Logs name an entry by its record type and event id, never by its delivery key, which holds a
consent's id for a consent (and the exception of a failure by its type: its message may quote
the record).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from kafka.errors import KafkaError

from gateways.store import Store, StoreError
from kafkaedge.directory_gate import stop_reason
from refmesh import envelope, resend, topology
from refmesh.errors import DirectoryError, MeshError, failure

log = logging.getLogger("refmesh.relay")


#: first sends remembered for their receipt delay (oldest forgotten first: no sample from them)
FIRST_SENT_MAX = 100_000


def backoff_ms(attempts: int, first_ms: int, ceiling_ms: int) -> int:
    """Delay before the next re-send: first_ms, 2x, 4x, ... up to ceiling_ms."""
    return min(ceiling_ms, first_ms * (2 ** min(attempts, 20)))


class Relay:
    def __init__(self, store: Store, keys, directory_ref, kafka, metrics, settings,
                 clock=lambda: int(time.time() * 1000)) -> None:
        self.store, self.keys, self.directory_ref = store, keys, directory_ref
        self.kafka, self.metrics, self.settings, self.clock = kafka, metrics, settings, clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        # fire-and-forget entries the broker acknowledged, marked sent in the next tick's
        # commit (one commit per tick, not two): a crash before that re-sends them once, and
        # their recipient drops the copy by delivery key
        self._acknowledged: list[str] = []
        # the re-send timeout follows the receipts' delay (refmesh.resend): first sends of this
        # process (delivery key -> when), the delays the inbox reports, under one lock
        self._first_sent: OrderedDict[str, int] = OrderedDict()
        self._estimate = resend.Estimate()
        self._timing = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Send now instead of at the next tick (a submission just arrived)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.tick()
            except Exception as exc:  # keep relaying; the entry stays pending and is retried
                log.error("relay tick failed: %s", failure(exc))
                busy = False
            if not busy:
                self._wake.wait(self.settings.poll_interval_ms / 1000)
                self._wake.clear()

    def closed(self, delivery_keys) -> None:
        """Entries closed by their receipts (the inbox's thread): each one sent once by this
        relay gives a receipt delay (Karn: an entry sent twice gives none)."""
        now = self.clock()
        with self._timing:
            for key in delivery_keys:
                sent = self._first_sent.pop(key, None)
                if sent is not None and now >= sent:
                    self._estimate = resend.observe(self._estimate, now - sent)

    def timeout_ms(self) -> int:
        """The re-send timeout now: resend_after_ms, or longer while receipts come slower."""
        with self._timing:
            estimate = self._estimate
        return resend.timeout_ms(estimate, self.settings.resend_after_ms,
                                 self.settings.max_resend_after_ms)

    def _sent_once(self, entry, now: int) -> None:
        with self._timing:
            if entry.attempts:  # a re-send: its receipt could answer either copy
                self._first_sent.pop(entry.delivery_key, None)
                return
            self._first_sent[entry.delivery_key] = now
            while len(self._first_sent) > FIRST_SENT_MAX:
                self._first_sent.popitem(last=False)

    def tick(self) -> bool:
        """Publish every due entry once, in order; return True if there was work and the broker
        took it (False makes the relay wait a poll interval before trying again). Nothing is
        sent while the directory in force has expired: the entries wait, unattempted."""
        if stop_reason(self.directory_ref) is not None:
            return False
        now = self.clock()
        done, self._acknowledged = self._acknowledged, []
        skip = set(done)
        timeout = self.timeout_ms()
        due, later = [], []
        for entry in self.store.due(now):
            if entry.delivery_key in skip:
                continue
            with self._timing:
                first = self._first_sent.get(entry.delivery_key)
            wait = resend.due(first, now, timeout) if entry.attempts == 1 else None
            (due.append(entry) if wait is None else later.append((entry.delivery_key, wait)))
        if due:
            try:
                producer = self.kafka.producer()
            except (KafkaError, MeshError) as exc:
                self.metrics.send_failures.inc()
                log.warning("no broker to publish %d due event(s) to (%s); retrying",
                            len(due), type(exc).__name__)
                self._acknowledged = done  # marked sent with the next tick that commits
                return False
        if done or later or due:
            with self.store.batch():  # the last tick's acknowledgements, the postponed first
                for key in done:  # re-sends and this tick's re-send times: one commit
                    self.store.sent(key, now)
                for key, at in later:  # slow receipts, not lost events: no copy yet
                    self.store.reschedule(key, at)
                for entry in due:
                    self.store.attempted(entry.delivery_key, now + backoff_ms(
                        entry.attempts, timeout, self.settings.max_resend_after_ms))
        if not due:
            return False
        pending, failed = [], False
        for index, entry in enumerate(due):
            try:
                directory = self.directory_ref()
                hop = topology.first_hop(directory, self.keys.agency_id, entry.record_type,
                                         entry.recipient)
                data = envelope.seal(entry.record_type, entry.record, self.keys, hop.seal_for,
                                     directory, now, event_id=entry.event_id)
                future = producer.send(hop.topic, key=entry.partition_key or
                                            entry.event_id.encode(), value=data)
                pending.append((entry, future))
            except (DirectoryError, MeshError, StoreError) as exc:
                # a directory error names agencies only; another may quote the record
                log.error("cannot send %s event %s: %s", entry.record_type, entry.event_id,
                          exc if isinstance(exc, DirectoryError) else type(exc).__name__)
            except KafkaError as exc:
                self.metrics.send_failures.inc()
                log.warning("broker refused %s event %s: %s; retrying later",
                            entry.record_type, entry.event_id, type(exc).__name__)
                for unsent in due[index:]:  # keep their places for the next try
                    self.store.retry_soon(unsent.delivery_key)
                self.kafka.reset()
                failed = True
                break
        acknowledged = []
        for entry, future in pending:
            try:
                future.get(timeout=self.settings.resend_after_ms / 1000 + 10)
            except KafkaError as exc:
                self.metrics.send_failures.inc()
                log.warning("%s event %s not acknowledged: %s; retrying later",
                            entry.record_type, entry.event_id, type(exc).__name__)
                self.store.retry_soon(entry.delivery_key)
                self.kafka.reset()
                failed = True
                continue
            self.metrics.sent.labels(entry.record_type).inc()
            acknowledged.append(entry)
            if entry.needs_receipt:
                self._sent_once(entry, now)
            log.info("published %s event %s (attempt %d)", entry.record_type, entry.event_id,
                     entry.attempts + 1)
        self._acknowledged = [e.delivery_key for e in acknowledged if not e.needs_receipt]
        return not failed
