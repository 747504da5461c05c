"""faust's ``exactly_once`` on Apache Kafka 4 (the apache profile's processing guarantee): the
domain's forward of an event is written inside the transaction that commits the event's offset
(with the records of the events handled before it since the last commit: group commit), so a
worker killed in the middle of an event leaves no forward that a recipient sees, and its
successor handles the event again and forwards it once.

How the worker is stopped in the middle of an event, deterministically: the domain's audit
topic is deleted, so the event's audit record cannot join the open transaction; the agent has
handled the event (its decision logged) and its commit waits for the acknowledgement of the
event's records, which cannot come. The worker is then SIGKILLed and started again
(``agents.run`` creates the audit topic again); the successor's transactional producer fences
the killed one, whose transaction is aborted, and handles the event again: the event is
handled twice and forwarded, as a read_committed reader (a gateway) sees it, once. Whatever
the killed worker's forward reached the log sits in its aborted transaction, behind the last
stable offset while it was open.

With at_least_once (or faust's own exactly_once routing, which sends records for topics
outside the app, such as an agency's inbox, with its plain producer) the forward would be
visible to a read_committed reader at once and a second time after the restart.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from refmesh import envelope, samples, topology
from tests.integration.conftest import apache_only
from tests.integration.test_agent_kill_stress import (PARTITIONS, Recipient, domain_worker,
                                                      person_key)
from tests.integration.test_forward_agent import _now

pytestmark = apache_only
DEADLINE_S = 90.0


def _end_offsets(kafka, topic: str, isolation: str) -> dict[int, int]:
    """Each partition's end as a reader of ``isolation`` sees it: the high watermark, or for
    read_committed the last stable offset (before the first open transaction's records)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, isolation_level=isolation,
                             **kafka.admin_security)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def handled(worker) -> int:
    """Events the worker (and its predecessors, the log is appended to) decided to forward."""
    if not worker.log_path.exists():
        return 0
    return worker.log_path.read_text(errors="replace").count("] Forwarded event ")


def test_a_forward_is_committed_with_its_event_or_not_at_all(tmp_path: Path, kafka) -> None:
    assert kafka.profile.processing_guarantee == "exactly_once"
    deadline = time.monotonic() + DEADLINE_S
    mesh, worker = domain_worker(tmp_path, kafka)
    ids = mesh["ids"]
    inbox, target = topology.domain_inbox(ids["domain"]), topology.agency_inbox(ids["shelter"])
    committed = Recipient(kafka, target, mesh, "read_committed")
    uncommitted = Recipient(kafka, target, mesh, "read_uncommitted")
    producer = KafkaProducer(**kafka.producer_config())
    consent = samples.consent(controller=ids["hotline"])
    key = person_key(consent["subjectId"])

    def send(kind: str, record: dict) -> None:
        producer.send(inbox, key=key, value=envelope.seal(
            kind, record, mesh["keys"]["hotline"], ids["domain"], mesh["directory"], _now()),
        ).get(timeout=30)

    def until(done, what: str) -> None:
        while not done():
            assert time.monotonic() < deadline and worker.alive, (
                f"{what}: not in time; worker log:\n{worker.tail(40)}")
            committed.poll()
            uncommitted.poll()

    first, second = (samples.referral(referral_id=str(uuid.uuid4()), sender=ids["hotline"],
                                      recipient=ids["shelter"], created_at=_now())
                     for _ in range(2))
    try:
        worker.start()
        send("Consent", consent)
        send("Referral", first)
        until(lambda: first["referralId"] in committed.forwards, "the first forward")

        audit = topology.audit(ids["domain"])
        admin = KafkaAdminClient(**kafka.admin_config())
        try:
            admin.delete_topics([audit])
            until(lambda: audit not in admin.list_topics(), "the audit topic's deletion")
        finally:
            admin.close()
        send("Referral", second)
        until(lambda: handled(worker) == 2, "the second event handled")
        # its commit waits for the audit record: whatever of it is in the log is uncommitted
        open_ends = _end_offsets(kafka, target, "read_uncommitted")
        stable_ends = _end_offsets(kafka, target, "read_committed")
        if second["referralId"] in uncommitted.forwards:
            assert stable_ends != open_ends, (
                "the forward is visible to read_committed readers before its event's "
                f"transaction committed: ends {open_ends}, last stable offsets {stable_ends}")
        assert second["referralId"] not in committed.forwards

        worker.kill()
        worker.start()
        until(lambda: second["referralId"] in committed.forwards, "the forward after restart")
        assert worker.stop() == 0, worker.tail(40)
        committed.drain(time.monotonic() + 30)
        uncommitted.drain(time.monotonic() + 30)
    finally:
        producer.close(timeout=5)
        worker.kill()
        committed.close()
        uncommitted.close()

    print(f"\nexactly_once: forwards seen read_committed {dict(committed.forwards)}, "
          f"read_uncommitted {dict(uncommitted.forwards)}")
    assert committed.forwards == {first["referralId"]: 1, second["referralId"]: 1}
    # handled by the killed worker and by its successor: only the successor's forward counts
    assert handled(worker) == 3
    assert uncommitted.forwards[second["referralId"]] in (1, 2)
    log_text = worker.log_path.read_text(errors="replace")
    assert "transactional id refmesh-domain-" in log_text
    assert not [name for name in samples.FICTIONAL_GIVEN if name in log_text]
