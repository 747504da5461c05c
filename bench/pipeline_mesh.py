"""The pipeline benchmark's mesh: a fresh sample mesh per run, driven through the hotline's
API and watched through read-only views of both gateways' databases, plus what /proc says about
each process (resident memory, CPU time). Used by bench/pipeline.py, on either broker kind
(devmesh.brokers.LocalBroker): on a secured Apache Kafka each gateway and the domain get their
own SCRAM user and the ACLs of their role, as tests/integration/meshfix.py gives them."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from devmesh.brokers import LocalBroker
from kafkaedge.loading import DirectoryRef, keystore_path, load_anchor, now_ms
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import build, renamed
from gateways.store import query_file
from devmesh.supervise import wait_until
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import samples, schemas, topology
from refmesh.keys import unlock

HOTLINE, SHELTER, DOMAIN = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
TICK = os.sysconf("SC_CLK_TCK")


def wall_ms() -> float:
    """The clock the gateways stamp ``created_ms`` with (time.time), in float milliseconds."""
    return time.time() * 1000


# --- processes: memory and CPU, read from /proc ----------------------------------------------

def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def broker_pid(kafka: LocalBroker) -> int:
    """The broker's process id (the Tansu process, or the single Apache Kafka node's java)."""
    if kafka.kind == "embedded":
        return kafka.process.pid
    # ApacheBroker has no public pid: it keeps its node processes by node id (one node here)
    return kafka.process._procs[1].pid


def acls_available() -> str | None:
    """None if this tree can give a secured broker the mesh's ACLs (kafkaedge.acls and
    refmesh.access.mesh_grants), else what is missing."""
    import importlib.util

    from refmesh import access
    missing = [name for name, there in (
        ("kafkaedge.acls", importlib.util.find_spec("kafkaedge.acls") is not None),
        ("refmesh.access.mesh_grants", hasattr(access, "mesh_grants"))) if not there]
    return f"{' and '.join(missing)} not in this tree yet" if missing else None


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


class RssSampler(threading.Thread):
    """Samples VmRSS of some processes every ``interval`` seconds; ``peak`` in kB."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids, self.interval = pids, interval
        self.peak = {name: 0 for name in pids}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_kb(pid))
            self._halt.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join(5)
        return self.peak


# --- the mesh under test ----------------------------------------------------------------------

class Bench:
    """One run's mesh: files, processes, API clients and read-only views of both databases."""

    def __init__(self, root: Path, kafka: LocalBroker, suffix: str) -> None:
        self.kafka, self.broker_pid = kafka, broker_pid(kafka)
        agencies = renamed(suffix)
        self.ids = {a.agency_id.rsplit("-", 1)[0]: a.agency_id for a in agencies}
        self.hotline, self.shelter, self.domain = (self.ids[HOTLINE], self.ids[SHELTER],
                                                   self.ids[DOMAIN])
        self.files = build(root / "mesh", kafka.bootstrap, now_ms(), agencies=agencies,
                           scrypt_n=2**10, broker=kafka.kind,
                           credentials=kafka.credentials if kafka.secured else None)
        self.directory = DirectoryRef(self.files.directory, load_anchor(self.files.anchor))
        trusted = self.directory()
        ensure_topics(kafka.admin_config(),
                      [TopicSpec(n, 4, c) for n, c in topology.mesh_topics(trusted)])
        if kafka.secured:
            from kafkaedge.acls import apply_acls  # being written; acls_available() checks
            from refmesh.access import mesh_grants
            apply_acls(kafka.admin_config(), mesh_grants(trusted, {}), prune=False)
        self.mesh = RunningMesh(self.files, root / "logs")

    def keys(self, agency: str):
        path = keystore_path(self.files.keystore, agency)
        return unlock(path.read_bytes(), self.files.env["REFMESH_PASSPHRASE"])

    def start(self) -> None:
        self.mesh.start_agents(self.domain)
        for agency in (self.hotline, self.shelter):
            self.mesh.start_gateway(agency, wait=False)
        for agency in (self.hotline, self.shelter):
            self.mesh.wait_healthy(agency)
        self.mesh.wait_agents_ready(self.domain)
        self._clients()

    def _clients(self) -> None:
        """Once the processes are up: API clients, database paths, the re-send setting."""
        self.api = {a: self.mesh.client(a) for a in (self.hotline, self.shelter)}
        config = {a: yaml.safe_load(self.files.gateway_config(a).read_text())
                  for a in (self.hotline, self.shelter)}
        self.db = {a: c["database"] for a, c in config.items()}
        self.resend_after_ms = config[self.hotline].get("resend_after_ms")

    def pids(self) -> dict[str, int]:
        """The mesh's processes (not the broker's: ``broker_pid``)."""
        return {"hotline gateway": self.mesh.gateways[self.hotline].popen.pid,
                "shelter gateway": self.mesh.gateways[self.shelter].popen.pid,
                "domain agents": self.mesh.agents[self.domain].popen.pid}

    def check_alive(self) -> None:
        for proc in [*self.mesh.gateways.values(), *self.mesh.agents.values()]:
            proc.check_alive()

    def query(self, agency: str, sql: str, args=()) -> list[tuple]:
        return query_file(self.db[agency], sql, args, timeout=5)

    def referral(self, rid: str, n: int) -> dict:
        """A full synthetic referral of person ``n`` (who must have consented first)."""
        return samples.referral(referral_id=rid, sender=self.hotline, recipient=self.shelter,
                                created_at=now_ms(), n=n)

    def consent(self, n: int) -> dict:
        """Person ``n``'s broad consent (every purpose, role and data category), as the
        integration tests' meshfix records it: the domain then allows the referral, and
        minimises it under the sample policy."""
        consent = samples.consent(n, controller=self.hotline, valid_from=now_ms() - 60_000)
        consent.update(purposes=schemas.symbols("Purpose"),
                       recipientRoles=schemas.symbols("AgencyRole"),
                       dataCategories=schemas.symbols("DataCategory"), crossBorder=True,
                       crossBorderCountries=["ET"])
        return consent

    def record_consents(self, count: int, threads: int) -> float:
        """Record the consents of persons 0..count-1 at the hotline and wait until the domain
        holds them all (every consent confirmed by the domain's receipt); return consents/s."""
        client = self.api[self.hotline]
        start = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(client.record_consent, [self.consent(n) for n in range(count)]))
        self.wait_quiet(timeout=60 + count / 20)
        return count / (time.monotonic() - start)

    def stored(self, prefix: str) -> int:
        return self.query(self.shelter, "SELECT count(*) FROM referrals WHERE direction = 'in' "
                          "AND referral_id LIKE ?", (prefix + "%",))[0][0]

    def wait_stored(self, prefix: str, count: int, timeout: float) -> None:
        def done():
            self.check_alive()
            return self.stored(prefix) >= count
        wait_until(done, timeout, f"{count} referrals {prefix}* stored at the shelter", 0.02)

    def wait_quiet(self, timeout: float) -> None:
        """Until the closed loop is complete: no pending outbox entry at either gateway (every
        referral and status confirmed by a receipt, every receipt acknowledged)."""
        sql = "SELECT count(*) FROM outbox WHERE state = 'pending'"

        def quiet():
            self.check_alive()
            return all(self.query(a, sql)[0][0] == 0 for a in (self.hotline, self.shelter))
        wait_until(quiet, timeout, "both outboxes to empty (closed loop complete)", 0.05)

    def stored_at(self, prefix: str) -> dict[str, int]:
        """referral id -> created_ms at the shelter, from GET /v1/inbox."""
        return {r["referral_id"]: r["created_ms"] for r in self.api[self.shelter].inbox()
                if r["referral_id"].startswith(prefix)}

    def loop_closed_at(self, prefix: str) -> int:
        """When the hotline saw the last "received" status for these referrals (its clock)."""
        return self.query(self.hotline, "SELECT max(updated_ms) FROM referrals WHERE "
                          "direction = 'out' AND referral_id LIKE ?", (prefix + "%",))[0][0]

    def resends(self, prefix: str) -> int:
        """Referral sends beyond the first (the relay re-sends until a receipt arrives)."""
        return self.query(self.hotline, "SELECT coalesce(sum(attempts) - count(*), 0) FROM "
                          "outbox WHERE delivery_key LIKE ?", (f"referral:{prefix}%",))[0][0]

    def stop(self) -> None:
        self.mesh.stop()


def submit_all(bench: Bench, referrals: list[dict], threads: int) -> dict[str, float]:
    """POST every referral from ``threads`` client threads; referral id -> submit time (ms)."""
    client = bench.api[bench.hotline]
    submitted: dict[str, float] = {}

    def one(referral: dict) -> None:
        submitted[referral["referralId"]] = wall_ms()
        client.submit(referral)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, referrals))
    return submitted
