"""Shared helpers for integration tests that run a sample mesh (agents and gateways as child
processes) on the session broker."""
from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kafka import KafkaProducer

from devmesh.brokers import LocalBroker
from kafkaedge.acls import apply_acls
from kafkaedge import topic_reader
from kafkaedge.audit_reader import read_chains
from kafkaedge.loading import DirectoryRef, keystore_path, load_anchor, now_ms
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import MeshFiles, build, renamed
from devmesh.supervise import wait_until
from devmesh.testca import TlsFiles, make_tls
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import codec, samples, schemas, topology
from refmesh.access import mesh_grants
from refmesh.keys import unlock


@dataclass
class Mesh:
    files: MeshFiles
    running: RunningMesh
    ids: dict  # original sample id -> this test's id
    kafka: LocalBroker
    tls: TlsFiles | None = None  # the gateways' test CA and certificate, when they serve HTTPS

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

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
        """A consumer as the operator (a super user on a secured broker)."""
        return self.kafka.consumer_config(group)

    def audit_chains(self, sample_domain: str) -> dict[int, list[bytes]]:
        """The domain's audit topic, {partition: [record bytes]}."""
        return read_chains(self.consumer_config(), self.id(sample_domain))

    def audit_records(self, sample_domain: str) -> list[dict]:
        """Every audit record of the domain, decoded."""
        return [codec.decode(data, expect="AuditRecord")[1]
                for chain in self.audit_chains(sample_domain).values() for data in chain]

    def producer(self) -> KafkaProducer:
        return KafkaProducer(**self.kafka.producer_config())

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


def start_mesh(root: Path, kafka: LocalBroker, suffix: str, gateways: list[str],
               domains: list[str], env: dict | None = None,
               prepare: Callable[[MeshFiles, dict], None] | None = None,
               partitions: int = 4, https: bool = False) -> Mesh:
    """``prepare(files, ids)``, if given, runs once the mesh's files are written and before
    any process starts (e.g. to re-sign the directory with a revoked key). With ``https`` every
    gateway serves HTTPS with a certificate of a test CA (``mesh.tls.ca``; the clients trust
    it, nothing else does). On a secured broker
    each gateway and domain gets its own SCRAM user and exactly the ACLs of its role, derived
    from the signed directory as ``refmesh topics acls`` does. Every topic of the mesh gets
    ``partitions`` (and every settings file says so)."""
    agencies = renamed(suffix)
    ids = {a.agency_id.rsplit("-", 1)[0]: a.agency_id for a in agencies}
    files = build(root / "mesh", kafka.bootstrap, now_ms(), agencies=agencies,
                  resend_after_ms=1500, scrypt_n=2**10, broker=kafka.kind,
                  credentials=kafka.credentials, partitions=partitions)
    files.env.update(env or {})
    if prepare is not None:
        prepare(files, ids)
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
    regions = regions_of(files, domains, ids)
    ensure_topics(kafka.admin_config(), [TopicSpec(n, partitions, c) for n, c in
                                         topology.mesh_topics(trusted, regions.values())])
    if kafka.secured:
        apply_acls(kafka.admin_config(), mesh_grants(trusted, regions), prune=False)
    tls = serve_https(files, root / "tls") if https else None
    running = RunningMesh(files, root / "logs", ca_file=tls and tls.ca)
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
    return Mesh(files, running, ids, kafka, tls)


def serve_https(files: MeshFiles, folder: Path) -> TlsFiles:
    """Give every gateway of the mesh ``tls_cert`` and ``tls_key`` from a new test CA."""
    tls = make_tls(folder, name="gateway")
    for config in sorted((files.root / "config").glob("gateway-*.yaml")):
        doc = yaml.safe_load(config.read_text())
        doc.update(tls_cert=str(tls.broker), tls_key=str(tls.broker))
        config.write_text(yaml.safe_dump(doc, sort_keys=True))
    return tls


def metrics(client) -> str:
    """A gateway's Prometheus metrics text (the client's token opens /metrics too)."""
    request = urllib.request.Request(client.url + "/metrics",
                                     headers={"Authorization": f"Bearer {client.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def regions_of(files: MeshFiles, domains: list[str], ids: dict) -> dict[str, str]:
    """{domain: region} of the domains whose settings name a region (after ``prepare``)."""
    regions = {}
    for domain in domains:
        region = yaml.safe_load(files.agents_config(ids[domain]).read_text()).get("region")
        if region:
            regions[ids[domain]] = region
    return regions
