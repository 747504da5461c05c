"""What every fault drill (bench/drills.py) is made of: a sample mesh on a local broker of either
kind (devmesh.brokers: embedded Tansu or Apache Kafka), a steady stream of synthetic referrals
into it, and the check of every referral against what the recipient stored.

- ``DrillMesh``: the gateways of BH/GOV/HOTLINE (the sender) and BH/GOV/SHELTER (the recipient)
  and the agents of their policy domain BH/GOV/NCCTIP as child processes, agency codes suffixed
  so that several meshes share one broker; consents of ``persons`` people recorded first (and
  held by the domain), one warm-up referral delivered before a drill starts. The operator (a
  super user on a secured broker) creates every topic of the mesh with one copy per broker node
  and, on a secured broker, gives each gateway and the domain its own SCRAM user and exactly
  the ACLs of its role (refmesh.access.mesh_grants), as ``refmesh topics`` does.
- ``Stream``: a background thread that POSTs a referral to the hotline ``rate`` times a second
  and records what the API answered: accepted (202), refused (503 and its message), or in doubt
  (no answer: the gateway was down or died during the request; resolved afterwards by asking
  the gateway whether it kept the referral: the ids are chosen by the client).

bench/drillcheck.py checks every referral afterwards; bench/s3storage.py gives the broker a
durable log.

Progress is read from the gateways' SQLite files opened read-only (WAL lets readers in without
blocking the writer) and from their HTTP API and /metrics; nothing here changes a gateway.
"""
from __future__ import annotations

import re
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from kafka import TopicPartition

from devmesh.brokers import LocalBroker
from kafkaedge import profiles, topic_reader
from kafkaedge.acls import apply_acls
from kafkaedge.credentials import admin_client
from gateways.client import GatewayError
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import build, renamed
from gateways.scan import scan
from gateways.store import query_file
from devmesh.supervise import Proc, ProcessError, wait_until
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import samples, schemas, topology
from refmesh.access import mesh_grants

HOTLINE, SHELTER, DOMAIN = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
_STORED = re.compile(r"stored Referral event \S+ from \S+ \((new|duplicate)\)")
_METRIC = re.compile(r'^refmesh_events_received_total\{([^}]*)\} ([0-9.e+]+)$', re.MULTILINE)
_ASSIGNED = re.compile(r"joined its group .*?; (\d+) partitions assigned")


def pause(seconds: float) -> None:
    """Part of a drill's timeline (the stream runs meanwhile), not a wait for a condition."""
    threading.Event().wait(seconds)


def wall_ms() -> int:
    """The clock the gateways stamp ``created_ms`` with (time.time), in milliseconds."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Plan:
    """The shape of one drill: a stream of ``rate`` referrals/s for ``before_s``, the fault
    (``fault_s`` long where it has a length), the stream for ``after_s`` more, then at most
    ``deadline_s`` for every accepted referral to be answered (an upper bound, not a sleep)."""

    rate: float = 10.0
    before_s: float = 10.0
    fault_s: float = 20.0
    after_s: float = 10.0
    deadline_s: float = 300.0


# --- the mesh --------------------------------------------------------------------------------

class DrillMesh:
    """One sample mesh on the broker ``kafka``; ``start()`` runs it, ``stop()`` ends every
    process."""

    def __init__(self, root: Path, kafka: LocalBroker, resend_after_ms: int = 3000,
                 persons: int = 20) -> None:
        self.root, self.kafka, self.persons = Path(root), kafka, persons
        self.tag = uuid.uuid4().hex[:6]
        agencies = renamed(self.tag)
        self.ids = {a.agency_id.rsplit("-", 1)[0]: a.agency_id for a in agencies}
        self.hotline, self.shelter, self.domain = (self.ids[HOTLINE], self.ids[SHELTER],
                                                   self.ids[DOMAIN])
        self.files = build(self.root / "mesh", kafka.bootstrap, now_ms(), agencies=agencies,
                           resend_after_ms=resend_after_ms, scrypt_n=2**10, broker=kafka.kind,
                           credentials=kafka.credentials)
        self.trusted = DirectoryRef(self.files.directory, load_anchor(self.files.anchor))()
        self.topic_specs = [TopicSpec(n, 4, c, replication=kafka.replication)
                            for n, c in topology.mesh_topics(self.trusted)]
        self.topics = tuple(s.name for s in self.topic_specs)
        # inboxes of the agencies and the domain that no referral of a drill may ever reach
        self.bystander_topics = [topology.agency_inbox(a.agency_id) for a in agencies
                                 if a.agency_id not in (self.hotline, self.shelter)
                                 and a.domain is not None] + \
            [topology.domain_inbox(a.agency_id) for a in agencies
             if a.domain is None and a.agency_id != self.domain]
        self.running = RunningMesh(self.files, self.root / "logs")
        self.workers: list[Proc] = []  # the domain's agent workers; [0] is the first one
        self.carry: Counter = Counter()  # shelter /metrics of its gateway's earlier runs
        self.full_assignment = 0  # partitions one worker holds alone (two-workers drill)
        self.db = {a: yaml.safe_load(self.files.gateway_config(a).read_text())["database"]
                   for a in (self.hotline, self.shelter)}

    # processes

    def start(self) -> DrillMesh:
        try:
            if self.kafka.secured:
                # faust's transactional ids need their own grants under exactly_once
                guarantee = profiles.faust_broker_settings(self.kafka.profile)[
                    "processing_guarantee"]
                exactly_once = guarantee == "exactly_once"
                apply_acls(self.kafka.admin_config(),
                           mesh_grants(self.trusted, {}, exactly_once=exactly_once), prune=False)
            ensure_topics(self.kafka.admin_config(), self.topic_specs)
            if self.kafka.replication > 1:
                wait_every_node(self.kafka, self.topic_specs)
            self.workers = [self.running.start_agents(self.domain)]
            for agency in (self.hotline, self.shelter):
                self.running.start_gateway(agency, wait=False)
            for agency in (self.hotline, self.shelter):
                self.running.wait_healthy(agency)
            self.wait_joined(self.workers[0])
            self._record_consents()
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in [*self.running.gateways.values(), *self.workers]:
            proc.stop()

    def check_alive(self) -> None:
        for proc in self.running.gateways.values():
            proc.check_alive()
        if not any(w.alive for w in self.workers):
            raise ProcessError(f"no agent worker of {self.domain} is running")

    def gateway(self, agency: str) -> Proc:
        return self.running.gateways[agency]

    def stop_gateway(self, agency: str, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) a gateway; the shelter's counters are kept for the sums."""
        if agency == self.shelter and self.gateway(agency).alive:
            try:
                self.carry.update(self.metrics(agency))
            except GatewayError:
                pass  # not answering: the log still counts every delivery
        proc = self.gateway(agency)
        proc.kill() if kill else proc.stop()

    def start_gateway(self, agency: str, wrapper: list[str] | None = None,
                      timeout: float = 90.0) -> dict:
        """Start a gateway and wait until it is healthy; returns its /healthz report."""
        proc = self.gateway(agency)
        proc.wrapper = list(wrapper or ())
        proc.start()
        self.running.wait_healthy(agency, timeout)
        return self.running.client(agency).health()

    def start_faulty_gateway(self, agency: str, wrapper: list[str], expect: str,
                             timeout: float = 90.0) -> dict:
        """Start a gateway under a fault and wait until /healthz answers 503 naming ``expect``
        (a gateway that cannot write is never healthy: its inbox fails to store at once)."""
        proc = self.gateway(agency)
        proc.wrapper = list(wrapper)
        proc.start()
        client = self.running.client(agency)

        def reported():
            proc.check_alive()
            report = client.health()
            return report if any(expect in p for p in report["problems"]) else None
        return wait_until(reported, timeout, f"gateway {agency} to report {expect!r}")

    def worker_config(self, worker_id: str) -> Path:
        """A settings file for another agent worker of the domain: own worker_id, data_dir and
        web port."""
        return self.running.worker_config(self.domain, worker_id)

    def add_worker(self, worker_id: str) -> Proc:
        proc = Proc(f"agents-{self.domain}-w{worker_id}", "agents.run",
                    ["--config", str(self.worker_config(worker_id))], self.files.env,
                    self.running.log_dir).start()
        self.workers.append(proc)
        return proc

    def wait_joined(self, proc: Proc, timeout: float = 120.0) -> None:
        def joined():
            proc.check_alive()
            return "joined its group" in proc.log_text()
        wait_until(joined, timeout, f"{proc.name} to join its group")

    @staticmethod
    def assigned(proc: Proc) -> list[int]:
        """Partitions assigned to a worker at each (re)balance of its current run, in order."""
        return [int(n) for n in _ASSIGNED.findall(proc.log_text())]

    # reading

    def api(self, agency: str):
        return self.running.client(agency)

    def query(self, agency: str, sql: str, args=()) -> list[tuple]:
        return query_file(self.db[agency], sql, args)

    def metrics(self, agency: str) -> Counter:
        """``refmesh_events_received_total`` of the gateway's current run, by (type, outcome)."""
        client = self.api(agency)
        request = urllib.request.Request(client.url + "/metrics",
                                         headers={"Authorization": f"Bearer {client.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
        except OSError as exc:
            raise GatewayError(f"no /metrics from {agency}: {exc}") from None
        out: Counter = Counter()
        for labels, value in _METRIC.findall(text):
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            out[(pairs.get("type"), pairs.get("outcome"))] += int(float(value))
        return out

    def deliveries(self) -> dict[str, int]:
        """Referrals the shelter's gateway stored as new / dropped as duplicates, over all its
        runs, counted twice: from /metrics (earlier runs carried over at each stop) and from
        its log (one line per stored event; the log file spans every run)."""
        current = self.metrics(self.shelter) if self.gateway(self.shelter).alive else Counter()
        both = self.carry + current
        log = Counter(_STORED.findall(self.gateway(self.shelter).log_path.read_text(
            errors="replace")))
        return {"metric_new": both[("Referral", "new")],
                "metric_duplicate": both[("Referral", "duplicate")],
                "log_new": log["new"], "log_duplicate": log["duplicate"]}

    def messages_on(self, topics: list[str]) -> int:
        """How many messages the topics hold (0 for a topic the broker does not know)."""
        config = self.kafka.consumer_config()
        config["request_timeout_ms"] = 60_000  # a slow broker (s3 storage) is not an error here
        consumer = topic_reader.consumer(config)
        try:
            known = consumer.topics()
            parts = [TopicPartition(t, p) for t in topics if t in known
                     for p in consumer.partitions_for_topic(t) or ()]
            return sum(consumer.end_offsets(parts, timeout_ms=60_000).values()) if parts else 0
        finally:
            consumer.close(autocommit=False)

    def scan(self, canaries: list[str]):
        """gateways.scan over every topic of this mesh, from the beginning."""
        config = self.kafka.consumer_config()
        # str.startswith takes a tuple: exactly this mesh's topics, not other meshes' on the
        # same broker
        return scan(config, canaries, topic_prefix=self.topics, timeout=300)

    # setup

    def referral(self, rid: str, i: int) -> tuple[dict, list[str]]:
        """A full synthetic referral of person ``i % persons`` with personal values unique to
        it (planted: the leak scan searches every topic for them); returns (referral, values)."""
        token = f"{self.tag}{rid.rsplit('-', 1)[-1]}{uuid.uuid4().hex[:4]}"
        r = samples.referral(referral_id=rid, sender=self.hotline, recipient=self.shelter,
                             created_at=now_ms(), n=i % self.persons)
        r["caseRef"] = f"HL-{token}"
        r["person"].update(firstName=f"Given{token}", secondName=f"Family{token}",
                           identityNumber=f"ID{token}", email=f"p{token}@example.invalid")
        return r, [r["caseRef"], f"Given{token}", f"Family{token}", f"ID{token}",
                   r["person"]["email"]]

    def _record_consents(self) -> None:
        """Broad consents (every purpose, role and category) of persons 0..persons-1, recorded
        at the hotline; waits until the domain confirmed each one with its receipt."""
        client = self.api(self.hotline)
        for n in range(self.persons):
            consent = samples.consent(n, controller=self.hotline, valid_from=now_ms() - 60_000)
            consent.update(purposes=schemas.symbols("Purpose"),
                           recipientRoles=schemas.symbols("AgencyRole"),
                           dataCategories=schemas.symbols("DataCategory"), crossBorder=True,
                           crossBorderCountries=["ET"])
            client.record_consent(consent)
        sql = "SELECT count(*) FROM outbox WHERE record_type = 'Consent' AND state = 'pending'"
        wait_until(lambda: self.query(self.hotline, sql)[0][0] == 0, 120,
                   "the domain to confirm every consent")

    def _warm_up(self) -> None:
        rid = f"warm-{self.tag}-0"
        self.api(self.hotline).submit(self.referral(rid, 0)[0])
        wait_until(lambda: self.stored(rid[:-1]), 120, "the warm-up referral at the shelter")

    def stored(self, prefix: str) -> dict[str, int]:
        """Referral id -> created_ms of the referrals ``prefix*`` the shelter holds."""
        return dict(self.query(self.shelter, "SELECT referral_id, created_ms FROM referrals "
                               "WHERE direction = 'in' AND referral_id LIKE ?", (prefix + "%",)))


def wait_every_node(kafka: LocalBroker, specs: list[TopicSpec], timeout: float = 60.0) -> None:
    """On a cluster, wait until every node holds its replica of every partition of ``specs``
    (one on each node): it has then applied the metadata records that created them, and the
    ACLs written before them. A node that lags behind would tell a gateway or agent starting
    now that its topic is missing or forbidden (seen: an agent that exited on 'could not create
    topic ... TopicAuthorizationFailedError' right after the operator made topic and ACLs)."""
    nodes = [n.node_id for n in kafka.process.nodes]
    wanted = {(s.name, p) for s in specs for p in range(s.partitions)}
    admin = admin_client(kafka.admin_config())
    lagging: list[int] = []

    def everywhere():
        lagging[:] = []
        for answer in admin.describe_log_dirs([s.name for s in specs], brokers=nodes):
            held = {(t["name"], p["partition_index"]) for d in answer["log_dirs"]
                    for t in d["topics"] for p in t["partitions"]}
            if not wanted <= held:
                lagging.append(answer["broker"])
        return not lagging

    try:
        wait_until(everywhere, timeout, "every node to hold the mesh's topics")
    except ProcessError as exc:
        raise ProcessError(f"{exc}; lagging: nodes {lagging}") from None
    finally:
        admin.close()


# --- the stream --------------------------------------------------------------------------------

class Stream(threading.Thread):
    """Submit referrals ``prefix00000``, ``prefix00001``... at ``rate``/s to the hotline."""

    def __init__(self, mesh: DrillMesh, prefix: str, rate: float) -> None:
        super().__init__(name=f"stream-{prefix}", daemon=True)
        self.mesh, self.prefix, self.period = mesh, prefix, 1.0 / rate
        self.submitted: dict[str, int] = {}  # id -> when it was submitted (wall ms)
        self.accepted: dict[str, int] = {}
        self.refused: dict[str, tuple[int, str]] = {}  # id -> (HTTP status, message)
        self.in_doubt: dict[str, str] = {}  # id -> error; no answer from the gateway
        self.canaries: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        client = self.mesh.api(self.mesh.hotline)
        due, i = time.monotonic(), 0
        while not self._halt.is_set():
            rid = f"{self.prefix}{i:05d}"
            referral, planted = self.mesh.referral(rid, i)
            self.canaries += planted
            self.submitted[rid] = wall_ms()
            try:
                client.submit(referral)
                self.accepted[rid] = self.submitted[rid]
            except GatewayError as exc:
                if exc.status == 0:
                    self.in_doubt[rid] = str(exc)
                else:
                    self.refused[rid] = (exc.status, str(exc))
            except Exception as exc:  # noqa: BLE001 (the stream must go on; resolved later)
                self.in_doubt[rid] = f"{type(exc).__name__}: {exc}"
            i += 1
            due = max(due + self.period, time.monotonic())  # late: no burst to catch up
            self._halt.wait(due - time.monotonic())

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def resolve(self) -> tuple[int, list[str]]:
        """Ask the hotline about every referral without a 202: one it holds was accepted (the
        answer was lost, e.g. SIGKILL mid-request); a refused one must not be held. Returns
        (in-doubt ones kept, problems)."""
        client, kept, problems = self.mesh.api(self.mesh.hotline), 0, []
        for rid in [*self.in_doubt, *self.refused]:
            try:
                client.show(rid)
            except GatewayError as exc:
                if exc.status == 404:
                    continue
                raise
            if rid in self.refused:
                problems.append(f"{rid} was refused ({self.refused[rid][0]}) but is held by "
                                "the hotline")
            kept += rid in self.in_doubt
            self.accepted[rid] = self.submitted[rid]
        return kept, problems
