"""The three-node drill of bench/drills.py: a KRaft cluster of three Apache Kafka nodes
(devmesh.apache; replication factor 3, min.insync.replicas 2, the producers' acks=all) under the
drill's stream of referrals. A broker that is not the active controller is killed with SIGKILL
mid-stream and restarted; once it is back in every ISR, the active controller likewise. Besides
the drill's usual counts it records how long each step took to recover: a new controller, a
live leader for every partition, the restarted node answering and back in every ISR, and the
mesh delivering again (bench/drillcheck.py, ``Outcome.events``)."""
from __future__ import annotations

import signal
import time
from collections.abc import Callable

from kafka.errors import KafkaError

from bench.drillcheck import Fault, Outcome
from bench.drillkit import DrillMesh, pause, wall_ms
from devmesh.brokers import LocalBroker
from devmesh.tansu import HOST, BrokerError
from devmesh.supervise import ProcessError, wait_until
from kafkaedge.credentials import admin_client


class ClusterWatch:
    """Leaders and in-sync replicas of the mesh's topics (and of the group coordinator's
    ``__consumer_offsets``) on a cluster, as the operator's admin client sees them."""

    def __init__(self, kafka: LocalBroker, topics: list[str]) -> None:
        self.kafka, self.topics = kafka, [*topics, "__consumer_offsets"]
        self.nodes = [n.node_id for n in kafka.process.nodes]

    def partitions(self) -> list[dict]:
        """Every partition of the watched topics (a fresh admin client each time: the one
        before may have been connected to the broker just killed)."""
        admin = admin_client(self.kafka.admin_config())
        try:
            described = admin.describe_topics(self.topics)
        finally:
            admin.close()
        bad = [t["name"] for t in described if t["error_code"] != 0]
        if bad or len(described) != len(self.topics):
            raise KafkaError(f"topics not described: {bad}")
        return [p for t in described for p in t["partitions"]]

    def leads(self) -> dict[int, int]:
        """Node id -> how many of the watched partitions it leads."""
        count = dict.fromkeys(self.nodes, 0)
        for p in self.partitions():
            count[p["leader_id"]] = count.get(p["leader_id"], 0) + 1
        return count

    def _holds(self, check: Callable[[list[dict]], bool]) -> bool:
        try:
            return check(self.partitions())
        except KafkaError:
            return False  # the metadata is moving: ask again

    def led_without(self, node: int) -> bool:
        """Every watched partition has a leader, and it is not ``node``."""
        return self._holds(lambda parts: all(p["leader_id"] not in (-1, node) for p in parts))

    def in_sync(self) -> bool:
        """Every replica of every watched partition is in sync."""
        return self._holds(lambda parts: all(sorted(p["isr_nodes"]) == sorted(p["replica_nodes"])
                                             for p in parts))

    def answers(self, node: int) -> bool:
        """``node`` itself answers a metadata request on its own address (the cluster's
        answers say little here: it lists a killed broker until its session times out)."""
        address = next(f"{HOST}:{n.port}" for n in self.kafka.process.nodes if n.node_id == node)
        try:
            admin_client({**self.kafka.admin_config(), "bootstrap_servers": address,
                          "bootstrap_timeout_ms": 1000}).close()
            return True
        except KafkaError:
            return False

    def controller_other_than(self, node: int) -> bool:
        """The running nodes agree on an active controller, and it is not ``node``."""
        try:
            return self.kafka.process.active_controller() != node
        except BrokerError:
            return False  # an election is under way

    def replication(self) -> set[int]:
        """The replication factors of the mesh's topics' partitions."""
        mesh = set(self.topics) - {"__consumer_offsets"}
        admin = admin_client(self.kafka.admin_config())
        try:
            described = admin.describe_topics(sorted(mesh))
        finally:
            admin.close()
        return {len(p["replica_nodes"]) for t in described for p in t["partitions"]}


def check_replication(mesh: DrillMesh, outcome: Outcome) -> None:
    """The mesh's topics on the cluster: three replicas of every partition, all in sync."""
    watch = ClusterWatch(mesh.kafka, list(mesh.topics))
    factors = watch.replication()
    if factors != {mesh.kafka.replication}:
        raise ProcessError(f"the mesh's topics were created with replication factor(s) "
                           f"{sorted(factors)}, not {mesh.kafka.replication}")
    wait_until(watch.in_sync, 60, "every replica of the mesh's topics in sync")
    outcome.notes.append(f"{len(mesh.topics)} mesh topics, every partition with "
                         f"{mesh.kafka.replication} replicas in sync before the stream; "
                         f"partitions led per node {watch.leads()}")


def _timed(outcome: Outcome, what: str, check: Callable[[], bool], mesh: DrillMesh,
           since: float, timeout: float = 120.0) -> None:
    """Wait until ``check()``; record the seconds since ``since`` (monotonic) as ``what``."""
    def done():
        mesh.check_alive()
        return check()
    wait_until(done, timeout, what, 0.1)
    outcome.timings[what] = round(time.monotonic() - since, 1)


def _kill_and_restart(f: Fault, watch: ClusterWatch, node: int, role: str) -> None:
    """SIGKILL ``node``; time the cluster's recovery (the mesh's is timed by the check at the
    end, from ``Outcome.events``); restart it ``fault_s`` after every partition has a live
    leader again, and time its return into every ISR."""
    cluster, out = f.broker.process, f.outcome
    killed, since = wall_ms(), time.monotonic()
    cluster.kill(node, signal.SIGKILL)
    out.events.append((f"SIGKILL of {role}", killed))
    out.notes.append(f"SIGKILL of {role}: node {node}")
    if role == "the active controller":
        _timed(out, "new active controller elected after SIGKILL of the active controller",
               lambda: watch.controller_other_than(node), f.mesh, since)
    _timed(out, f"every partition led by a live broker after SIGKILL of {role}",
           lambda: watch.led_without(node), f.mesh, since)
    pause(f.plan.fault_s)
    since = time.monotonic()
    cluster.restart(node, timeout=120)
    _timed(out, f"{role} answering on its own address after its restart",
           lambda: watch.answers(node), f.mesh, since)
    _timed(out, f"{role} back in every ISR after its restart", watch.in_sync, f.mesh, since)


def cluster_faults(f: Fault) -> int:
    """The three-node drill: SIGKILL the broker that leads the most watched partitions among
    those that are not the active controller, restart it ``fault_s`` later; once it is back in
    every ISR and the stream has run ``before_s`` more, the same with the active controller."""
    cluster = f.broker.process
    watch = ClusterWatch(f.broker, list(f.mesh.topics))
    controller, leads = cluster.active_controller(), watch.leads()
    broker = max((n for n in watch.nodes if n != controller), key=lambda n: leads.get(n, 0))
    _kill_and_restart(f, watch, broker, "a broker")
    pause(f.plan.before_s)
    _kill_and_restart(f, watch, cluster.active_controller(), "the active controller")
    return wall_ms()
