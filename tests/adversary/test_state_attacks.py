"""An outsider on the broker against the policy domain's own state (THREATS.md: state read back
is the newest version this process wrote; refmesh.statehead, agents/state.py), on the real
brokers.

The attacker writes the domain's changelog topics, as whoever can write them may (on Apache
Kafka: the operator's super user, standing for a misconfigured broker or a hostile operator;
the mesh's ACLs give members no right there). It has no refmesh keys: it can only put back
records it read before, or write tombstones. Then the domain's agents restart (or the
partition moves), faust restores the tables from the changelogs, and the worker must notice:
the partition is halted, /healthz names it, none of its events is decided on the rolled-back
state, and the other partitions go on.
"""
from __future__ import annotations

import itertools
import uuid

import pytest
from kafka import KafkaProducer

from devmesh.supervise import wait_until
from gateways.client import GatewayError, health_report
from kafkaedge import topic_reader
from refmesh import topology
from tests.integration.meshfix import Mesh, start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
PARTITIONS = 4
DEADLINE_S = 60
PERSON = itertools.count(700)


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("state-attacks"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC], partitions=PARTITIONS)
    m.halted = set()  # partitions this module's attacks halted
    yield m
    m.running.stop()


def subject_key(mesh: Mesh, n: int) -> bytes:
    secret = mesh.files.env["REFMESH_PARTITION_SECRET"].encode()
    return topology.partition_key(secret, mesh.referral(n, HOTLINE, SHELTER)["subjectId"])


def person(mesh: Mesh) -> tuple[int, int]:
    """A new person in a partition no attack halted: (n, partition)."""
    while True:
        n = next(PERSON)
        partition = topology.partition_of(subject_key(mesh, n), PARTITIONS)
        if partition not in mesh.halted:
            return n, partition


def changelog(mesh: Mesh, table: str, partition: int) -> list:
    """Every record of a table's changelog partition, oldest first (what an outsider reads)."""
    topic = topology.table(mesh.id(NCC), table)
    return [m for m in topic_reader.read_topic(mesh.consumer_config(), topic) or []
            if m.partition == partition]


def latest(mesh: Mesh, table: str, partition: int, prefix: bytes) -> list:
    return [m for m in changelog(mesh, table, partition) if m.key.startswith(prefix)]


def delivered(mesh: Mesh, rid: str) -> bool:
    try:
        mesh.client(SHELTER).show(rid)
        return True
    except GatewayError as exc:
        assert exc.status == 404, exc
        return False


def send(mesh: Mesh, n: int) -> str:
    return mesh.client(HOTLINE).submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]


def forwarded(mesh: Mesh, n: int) -> str:
    """Person ``n`` consents at the hotline, which refers her to the shelter: delivered."""
    mesh.consent(n, HOTLINE)
    rid = send(mesh, n)
    wait_until(lambda: delivered(mesh, rid), DEADLINE_S, f"{rid} at the shelter")
    return rid


def put_back(mesh: Mesh, table: str, partition: int, records: list[tuple[bytes, bytes | None]]
             ) -> None:
    producer = KafkaProducer(**mesh.kafka.producer_config())
    try:
        for key, value in records:
            producer.send(topology.table(mesh.id(NCC), table), key=key, value=value,
                          partition=partition).get(timeout=30)
    finally:
        producer.close()


def restart_agents(mesh: Mesh) -> str:
    domain = mesh.id(NCC)
    assert mesh.running.agents[domain].stop() == 0
    mesh.running.start_agents(domain)
    return mesh.running.agents_url(domain)


def halted(mesh: Mesh, url: str, partition: int, what: str) -> list[str]:
    """Wait until the agents' /healthz names the partition as halted, for ``what``."""
    def named():
        problems = health_report(url)["problems"]
        return [p for p in problems if p.startswith(f"HALTED: partition {partition} ")] \
            or None
    (problem,) = wait_until(named, 120, f"/healthz to name partition {partition} as halted")
    assert what in problem, problem
    mesh.halted.add(partition)
    return problem


def others_go_on_and_the_halted_partition_decides_nothing(mesh: Mesh, victim: int) -> None:
    """A referral of the rolled-back partition's person is not forwarded, while a genuine
    referral in another partition, sent after it, is."""
    held_back = send(mesh, victim)
    n, _ = person(mesh)
    forwarded(mesh, n)
    assert not delivered(mesh, held_back)


def test_a_withdrawn_consent_put_back_with_its_head_halts_the_partition(mesh):
    """The strongest rollback an outsider can make: the consent as it was before the
    withdrawal, and the partition's head as it was then, both re-appended."""
    n, partition = person(mesh)
    consent = mesh.consent(n, HOTLINE)
    key = subject_key(mesh, n)
    (before,) = wait_until(lambda: latest(mesh, "consents", partition, key), DEADLINE_S,
                           "the consent in the domain's consents")
    head_before = latest(mesh, "state-heads", partition, str(partition).encode())[-1]

    mesh.client(HOTLINE).withdraw_consent(consent["consentId"])
    wait_until(lambda: len(latest(mesh, "consents", partition, key)) == 2, DEADLINE_S,
               "the withdrawal in the domain's consents")

    put_back(mesh, "consents", partition, [(before.key, before.value)])
    put_back(mesh, "state-heads", partition, [(head_before.key, head_before.value)])
    url = restart_agents(mesh)
    halted(mesh, url, partition, "rolled back")
    others_go_on_and_the_halted_partition_decides_nothing(mesh, n)


def test_a_tombstoned_forwarding_log_halts_the_partition(mesh):
    n, partition = person(mesh)
    forwarded(mesh, n)
    key = subject_key(mesh, n)
    assert latest(mesh, "forwarded", partition, key)
    put_back(mesh, "forwarded", partition, [(key, None)])
    url = restart_agents(mesh)
    halted(mesh, url, partition, "forwarded")
    others_go_on_and_the_halted_partition_decides_nothing(mesh, n)
