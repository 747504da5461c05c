"""The scale benchmark's meshes (bench/scale.py): the pipeline benchmark's sample mesh
(bench/pipeline_mesh.Bench) with more member agencies in its directory, each setup step timed,
and the domain run with several agent workers."""
from __future__ import annotations

import time
from pathlib import Path

from bench.pipeline_mesh import Bench, broker_pid
from devmesh.brokers import LocalBroker
from devmesh.mesh import RunningMesh
from devmesh.sample_mesh import COORDINATOR, SAMPLE, Agency, build, renamed
from devmesh.supervise import wait_until
from gateways.client import health_report
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import access, topology

TOPIC_CHUNK = 250  # topics per CreateTopics request (a request of thousands can time out)


def synthetic_agencies(count: int) -> tuple[Agency, ...]:
    """``count`` synthetic member agencies of the sample's domain (BH/NGO/A0001, ...), beside
    the sample's eight."""
    return tuple(Agency(f"BH/NGO/A{i:04d}", f"Synthetic member {i} (sample)", "NGO", "BH",
                        COORDINATOR) for i in range(1, count + 1))


class ScaleBench(Bench):
    """``Bench`` with ``members`` agencies in the directory (the sample's eight and synthetic
    ones up to that count; at least the sample), and the setup timed: ``setup_s`` (keys,
    keystores, settings files and the signed directory; topics), ``directory_bytes``,
    ``topics`` created and ``grants`` (broker ACL entries the directory gives,
    refmesh.access.mesh_grants; applied only on a secured broker)."""

    def __init__(self, root: Path, kafka: LocalBroker, suffix: str, members: int = 0) -> None:
        # Bench.__init__'s steps, each timed, with the directory grown (see the class doc)
        self.kafka, self.setup_s = kafka, {}
        self.broker_pid = broker_pid(kafka)
        extra = synthetic_agencies(max(0, members - len(SAMPLE)))
        agencies = renamed(suffix, SAMPLE + extra)
        self.ids = {a.agency_id.rsplit("-", 1)[0]: a.agency_id for a in agencies}
        self.hotline, self.shelter, self.domain = (self.ids["BH/GOV/HOTLINE"],
                                                   self.ids["BH/GOV/SHELTER"],
                                                   self.ids["BH/GOV/NCCTIP"])
        t0 = time.monotonic()
        self.files = build(root / "mesh", kafka.bootstrap, now_ms(), agencies=agencies,
                           scrypt_n=2**10, broker=kafka.kind,
                           credentials=kafka.credentials if kafka.secured else None)
        self.setup_s["keys, keystores, settings and the signed directory"] = \
            time.monotonic() - t0
        self.directory = DirectoryRef(self.files.directory, load_anchor(self.files.anchor))
        self.directory_bytes = self.files.directory.stat().st_size
        trusted = self.directory()
        self.members = len(trusted.members)
        specs = [TopicSpec(n, 4, c) for n, c in topology.mesh_topics(trusted)]
        self.topics = len(specs)
        self.grants = len(access.mesh_grants(trusted, {})) if hasattr(access, "mesh_grants") \
            else None
        t0 = time.monotonic()
        for i in range(0, len(specs), TOPIC_CHUNK):
            ensure_topics(kafka.admin_config(), specs[i:i + TOPIC_CHUNK], timeout=300)
        self.setup_s["topics pre-created"] = time.monotonic() - t0
        if kafka.secured:
            from kafkaedge.acls import apply_acls
            t0 = time.monotonic()
            apply_acls(kafka.admin_config(), access.mesh_grants(trusted, {}), prune=False)
            self.setup_s["ACLs applied"] = time.monotonic() - t0
        self.mesh = RunningMesh(self.files, root / "logs")
        self.workers = ["1"]
        self.start_s: dict[str, float] = {}

    def start(self, workers: int = 1) -> None:
        """Start the domain's workers and both gateways one after the other, each timed from
        its process start to its /healthz answering 200 (the agents: holding partitions with
        their tables restored). With several workers, wait until the four partitions are
        spread, each worker holding some."""
        t0 = time.monotonic()
        self.mesh.start_agents(self.domain)
        self.mesh.wait_agents_ready(self.domain, timeout=300)
        self.start_s["domain agents (worker 1)"] = time.monotonic() - t0
        for agency, name in ((self.hotline, "hotline gateway"), (self.shelter,
                                                                 "shelter gateway")):
            t0 = time.monotonic()
            self.mesh.start_gateway(agency, wait=False)
            self.mesh.wait_healthy(agency, timeout=300)
            self.start_s[name] = time.monotonic() - t0
        self.workers = [str(k) for k in range(1, workers + 1)]
        if workers > 1:
            t0 = time.monotonic()
            for wid in self.workers[1:]:
                self.mesh.start_agents(self.domain, wid)
            wait_until(self._spread, 180, f"{workers} workers of {self.domain} each holding "
                       "partitions, all ready", 0.2)
            self.start_s[f"workers 2-{workers} (until the partitions are spread)"] = \
                time.monotonic() - t0
        self._clients()

    def _spread(self) -> bool:
        held = self.partitions_by_worker()
        return all(held.values()) and sum(len(p) for p in held.values()) == 4

    def partitions_by_worker(self) -> dict[str, list[int]]:
        """worker id -> the inbox partitions it holds (empty unless its /healthz says ready)."""
        out = {}
        for wid in self.workers:
            report = health_report(self.mesh.agents_url(self.domain, wid))
            out[wid] = report.get("partitions", []) if report.get("ok") else []
        return out

    def worker_pids(self) -> dict[str, int]:
        return {f"agent worker {wid}": self.mesh.agents[
            self.domain if wid == "1" else f"{self.domain}-w{wid}"].popen.pid
            for wid in self.workers}

    def pids(self) -> dict[str, int]:
        pids = super().pids()
        if len(self.workers) > 1:
            del pids["domain agents"]
            pids.update(self.worker_pids())
        return pids


