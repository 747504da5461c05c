"""Shared helpers for integration tests that run a sample mesh (agents and gateways as child
processes) on the session broker."""
from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kafka import KafkaProducer

from kafkaedge import profiles
from kafkaedge import topic_reader
from kafkaedge.audit_reader import read_chains
from kafkaedge.loading import DirectoryRef, keystore_path, load_anchor, now_ms
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import MeshFiles, build, renamed
from devmesh.supervise import wait_until
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import codec, samples, schemas, topology
from refmesh.keys import unlock


@dataclass
class Mesh:
    files: MeshFiles
    running: RunningMesh
    ids: dict  # original sample id -> this test's id
    bootstrap: str

    def id(self, sample_id: str) -> str:
        return self.ids[sample_id]

    def keys(self, sample_id: str):
        path = keystore_path(self.files.keystore, self.id(sample_id))
        return unlock(path.read_bytes(), self.files.env["REFMESH_PASSPHRASE"])

    def directory(self):
        return DirectoryRef(self.files.directory, load_anchor(self.files.anchor))()

    def client(self, sample_id: str):
        return self.running.client(self.id(sample_id))

    def referral(self, n: int, sender: str, recipient: str, **over) -> dict:
        r = samples.referral(referral_id=f"it-{n}-{now_ms()}", sender=self.id(sender),
                             recipient=self.id(recipient), created_at=now_ms(), n=n)
        r.update(over)
        return r

    def consent(self, n: int, controller: str, **over) -> dict:
        """A broad synthetic consent for person ``n`` (every purpose, role and data category,
        across the border to ET), recorded at ``controller``'s gateway."""
        consent = samples.consent(n, controller=self.id(controller), valid_from=now_ms() - 1000)
        consent.update(purposes=schemas.symbols("Purpose"),
                       recipientRoles=schemas.symbols("AgencyRole"),
                       dataCategories=schemas.symbols("DataCategory"), crossBorder=True,
                       crossBorderCountries=["ET"])
        consent.update(over)
        self.client(controller).record_consent(consent)
        return consent

    def database_bytes(self, sample_id: str) -> bytes:
        """The raw bytes of a gateway's SQLite database: the file and its write-ahead log."""
        config = yaml.safe_load(self.files.gateway_config(self.id(sample_id)).read_text())
        path = Path(config["database"])
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())

    def consumer_config(self, group: str = "unused") -> dict:
        return profiles.consumer_config(profiles.EMBEDDED, self.bootstrap, group)

    def audit_chains(self, sample_domain: str) -> dict[int, list[bytes]]:
        """The domain's audit topic, {partition: [record bytes]}."""
        return read_chains(self.consumer_config(), self.id(sample_domain))

    def audit_records(self, sample_domain: str) -> list[dict]:
        """Every audit record of the domain, decoded."""
        return [codec.decode(data, expect="AuditRecord")[1]
                for chain in self.audit_chains(sample_domain).values() for data in chain]

    def producer(self) -> KafkaProducer:
        return KafkaProducer(**profiles.producer_config(profiles.EMBEDDED, self.bootstrap))

    def read_topic(self, topic: str, expect: int, timeout: float = 30.0) -> list:
        """Every message of ``topic`` once at least ``expect`` have arrived."""
        consumer = topic_reader.consumer(self.consumer_config())
        try:
            topic_reader.assign(consumer, topic)
            seen: list = []

            def enough():
                for batch in consumer.poll(timeout_ms=200).values():
                    seen.extend(batch)
                return len(seen) >= expect

            wait_until(enough, timeout, f"{expect} message(s) on {topic}")
            return seen
        finally:
            consumer.close(autocommit=False)


def start_mesh(root: Path, bootstrap: str, suffix: str, gateways: list[str],
               domains: list[str], env: dict | None = None,
               prepare: Callable[[MeshFiles, dict], None] | None = None,
               partitions: int = 4) -> Mesh:
    """``prepare(files, ids)``, if given, runs once the mesh's files are written and before
    any process starts (e.g. to re-sign the directory with a revoked key). Every topic of the
    mesh gets ``partitions`` (and every settings file says so)."""
    agencies = renamed(suffix)
    ids = {a.agency_id.rsplit("-", 1)[0]: a.agency_id for a in agencies}
    files = build(root / "mesh", bootstrap, now_ms(), agencies=agencies, resend_after_ms=1500, scrypt_n=2**10,
                  partitions=partitions)
    files.env.update(env or {})
    if prepare is not None:
        prepare(files, ids)
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
    ensure_topics(profiles.admin_config(profiles.EMBEDDED, bootstrap),
                  [TopicSpec(n, partitions, c) for n, c in topology.mesh_topics(trusted)])
    running = RunningMesh(files, root / "logs")
    try:
        for domain in domains:
            running.start_agents(ids[domain])
        for agency in gateways:
            running.start_gateway(ids[agency], wait=False)
        for agency in gateways:
            running.wait_healthy(ids[agency])
        for domain in domains:
            running.wait_agents_ready(ids[domain])
    except BaseException:
        running.stop()  # never leave child processes behind a failed fixture
        raise
    return Mesh(files, running, ids, bootstrap)


def metrics(client) -> str:
    """A gateway's Prometheus metrics text (the client's token opens /metrics too)."""
    request = urllib.request.Request(client.url + "/metrics",
                                     headers={"Authorization": f"Bearer {client.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()
