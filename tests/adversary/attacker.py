"""An attacker with only a member's powers (THREATS.md, "malicious member agency"): the signing
and encryption keys of one agency (or policy domain) of the sample mesh, and a Kafka producer
logged in as that member's own principal. Under the mesh's ACLs (Apache Kafka) a member may
write to its domain's inbox and to its peers' inboxes, a domain to every inbox: exactly what the
attacker uses. On the embedded broker the producer has no credentials, as every client there.

And what a test needs to see the result: the dead letter that answers an attacking event
(found by its source, ``topic/partition@offset``), and what a gateway holds.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from kafka import KafkaProducer

from devmesh.supervise import wait_until
from gateways.store import query_file
from kafkaedge import profiles, topic_reader
from kafkaedge.loading import now_ms
from refmesh import envelope, topology
from refmesh.access import agency_principal, domain_principal
from tests.integration.meshfix import Mesh


class Attacker:
    """``sample_id`` of the mesh, with its keys and its own broker principal."""

    def __init__(self, mesh: Mesh, sample_id: str) -> None:
        self.mesh, self.agency = mesh, mesh.id(sample_id)
        self.keys = mesh.keys(sample_id)
        directory = mesh.directory()
        principal = (domain_principal if topology.is_domain(directory, self.agency)
                     else agency_principal)(self.agency)
        config = profiles.producer_config(mesh.kafka.profile, mesh.bootstrap,
                                          mesh.kafka.security_for(principal))
        self.producer = KafkaProducer(**{**config, "enable_idempotence": False})

    def send(self, record_type: str, record: dict, to: str, topic: str | None = None,
             event_id: str | None = None, suite: str | None = None) -> str:
        """Seal ``record`` with the attacker's keys for ``to`` (a sample id) and write it to
        ``to``'s inbox (or ``topic``), under ``event_id`` if given (else a new one), with
        ``suite`` if given (else the directory's choice); return its source, as a dead letter
        names it."""
        recipient = self.mesh.id(to)
        topic = topic or topology.agency_inbox(recipient)
        sealed = envelope.seal(record_type, record, self.keys, recipient, self.mesh.directory(),
                               now_ms(), event_id=event_id, suite=suite)
        sent = self.producer.send(topic, value=sealed, key=b"attack").get(timeout=30)
        return f"{topic}/{sent.partition}@{sent.offset}"

    def close(self) -> None:
        self.producer.close()


def dead_letter_reason(mesh: Mesh, sample_id: str, source: str, timeout: float = 60.0,
                       kind: str = "agency") -> str:
    """The reason of the dead letter that ``sample_id``'s gateway (or with ``kind`` "domain",
    its agents) wrote for the event at ``source``; fails if there is none within ``timeout``."""
    consumer = topic_reader.consumer(mesh.consumer_config())
    found: dict[str, str] = {}
    topic = topology.deadletter(mesh.id(sample_id), kind)
    try:
        topic_reader.assign(consumer, topic)

        def there() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    headers = dict(message.headers)
                    if headers.get("refmesh-source", b"").decode() == source:
                        found["reason"] = headers["refmesh-reason"].decode()
            return "reason" in found

        wait_until(there, timeout, f"the dead letter of {source} on {topic}")
        return found["reason"]
    finally:
        consumer.close(autocommit=False)


def database(mesh: Mesh, sample_id: str) -> Path:
    config = yaml.safe_load(mesh.files.gateway_config(mesh.id(sample_id)).read_text())
    return Path(config["database"])


def holdings(mesh: Mesh, sample_id: str) -> dict:
    """What a gateway holds, read-only: events remembered, referrals with their state and
    history, outbox entries with their state, erasure notices (not the relay's bookkeeping of
    re-send times, which moves by itself)."""
    path = str(database(mesh, sample_id))
    queries = {
        "inbox": "SELECT origin, delivery_key, record_type, length(record) FROM inbox",
        "referrals": "SELECT sender, referral_id, direction, peer, state FROM referrals",
        "history": "SELECT sender, referral_id, state, set_by FROM history",
        "outbox": "SELECT delivery_key, recipient, state FROM outbox",
        "erasures": "SELECT notice_id, kind, requested_by, referral_ids FROM erasures",
        "referral_keys": "SELECT sender, referral_id FROM referral_keys",
    }
    return {name: sorted(query_file(path, sql)) for name, sql in queries.items()}


def settled(mesh: Mesh, sample_id: str, pending_ok: frozenset[str] = frozenset()) -> bool:
    """Whether a gateway's outbox is quiet: nothing pending but the keys in ``pending_ok``."""
    rows = query_file(str(database(mesh, sample_id)),
                      "SELECT delivery_key FROM outbox WHERE state = 'pending'")
    return {key for (key,) in rows} <= pending_ok
