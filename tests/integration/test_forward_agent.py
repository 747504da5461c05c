"""The domain agent as a process (``python -m agents.run``) on the real embedded broker: with
its signed policy, a consent recorded first, a referral forwarded minimised.

The domain topics cannot take the ``unique`` suffix (their names come from the agency ids), so
every test invents its own domain and agencies: BH/GOV/D<8 hex> and friends.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from refmesh.access import ADMIN
from kafkaedge.loading import keystore_path
from devmesh.sample_mesh import sample_policy
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import directory, envelope, keys, minimise, samples, topology

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "integration-test-passphrase"
PSEUDONYM_SECRET = "0f" * 32
PARTITION_SECRET = "0e" * 16  # the domain's secret for Kafka keys (its gateways key with it)
PARTITIONS = 2
START_DEADLINE_S = 25.0  # worker start, group join and the first event
STOP_DEADLINE_S = 10.0
EXTRA_EVENTS = 5  # forwarded one at a time after the first, to see the steady latency


def _now() -> int:
    return int(time.time() * 1000)


def _write_mesh(folder: Path, tag: str) -> dict:
    """Keys, a signed directory and an anchor for one domain with two member agencies."""
    now = _now() - 60_000
    ids = {"domain": f"BH/GOV/D{tag}", "hotline": f"BH/NGO/H{tag}", "shelter": f"BH/NGO/S{tag}"}
    mesh = {name: keys.generate(agency, now) for name, agency in ids.items()}
    draft = directory.empty(ids["domain"])
    draft = directory.add_member(draft, directory.member_entry(
        mesh["domain"], "Committee", "CentralGovernmentOrganisation", "BH", None, now))
    for name in ("hotline", "shelter"):
        draft = directory.add_member(draft, directory.member_entry(
            mesh[name], name.title(), "NGO", "BH", ids["domain"], now))
    signed = directory.sign(draft, mesh["domain"], now)
    anchor = directory.TrustAnchor.of(mesh["domain"])
    (folder / "keys").mkdir()
    keystore_path(folder / "keys", ids["domain"]).write_bytes(
        keys.lock(mesh["domain"], PASSPHRASE, os.urandom(16), os.urandom(12), n=2**12))
    (folder / "directory.bin").write_bytes(signed)
    (folder / "anchor.json").write_text(json.dumps(anchor.to_json()))
    (folder / "policy.signed").write_bytes(sample_policy(ids["domain"], "BH", mesh["domain"], now))
    return {"ids": ids, "keys": mesh, "directory": directory.load(signed, anchor, _now())}


def _start_agent(folder: Path, kafka, domain: str) -> tuple[subprocess.Popen, Path]:
    """The domain's worker, as the operator's super user on a secured broker (ACLs are the
    business of tests/integration/test_acls.py)."""
    security, secret_env = kafka.credentials(ADMIN)
    config = folder / "agents.yaml"
    config.write_text(yaml.safe_dump({
        "keystore": str(folder / "keys"), "directory": str(folder / "directory.bin"),
        "anchor": str(folder / "anchor.json"), "bootstrap": kafka.bootstrap,
        "broker": kafka.kind, "security": security,
        "domain": domain, "data_dir": str(folder / "data"), "partitions": PARTITIONS,
        "policy": str(folder / "policy.signed")}))
    log_path = folder / "agent.log"
    env = {**os.environ, **secret_env, "REFMESH_PASSPHRASE": PASSPHRASE, "PYTHONPATH": str(ROOT),
           "REFMESH_PSEUDONYM_SECRET": PSEUDONYM_SECRET,
           "REFMESH_PARTITION_SECRET": PARTITION_SECRET}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "agents.run", "--config", str(config)],
                                   cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    return process, log_path


def _stop(process: subprocess.Popen) -> int | None:
    """SIGTERM, then wait; returns the exit code, or None if it had to be killed."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
        return None


def _reader(kafka, topic: str) -> KafkaConsumer:
    """A group-less consumer assigned to every partition (no join to wait for)."""
    # Tansu does not answer a waiting fetch as soon as records arrive (delivery latency grows
    # with fetch_max_wait_ms): a short wait keeps this reader out of the latency measured.
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=20,
                             isolation_level=kafka.profile.isolation_level,
                             **kafka.admin_security)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    return consumer


def _wait_for(consumer: KafkaConsumer, count: int, deadline: float, process, log_path) -> list:
    found = []
    while len(found) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(found)} of {count} records after the deadline; agent log:\n"
                        + log_path.read_text(errors="replace")[-4000:])
        if process.poll() is not None:
            pytest.fail(f"agent exited with {process.returncode}; log:\n"
                        + log_path.read_text(errors="replace")[-4000:])
        for batch in consumer.poll(timeout_ms=100).values():
            found.extend(batch)
    return found


def test_agent_forwards_a_referral_to_the_recipients_inbox_and_stops_on_sigterm(
        tmp_path, kafka):
    tag = uuid.uuid4().hex[:8].upper()
    mesh = _write_mesh(tmp_path, tag)
    ids, mesh_keys, trusted = mesh["ids"], mesh["keys"], mesh["directory"]
    inbox, target = topology.domain_inbox(ids["domain"]), topology.agency_inbox(ids["shelter"])
    dead = topology.deadletter(ids["domain"], "domain")
    ensure_topics(kafka.admin_config(),
                  [TopicSpec(name, PARTITIONS) for name in (inbox, target, dead)])

    started = time.monotonic()
    process, log_path = _start_agent(tmp_path, kafka, ids["domain"])
    producer = KafkaProducer(**kafka.producer_config())
    recipient_reader, dead_reader = _reader(kafka, target), _reader(kafka, dead)
    try:
        # the person's consent first, on the same key (so the same partition) as the referral:
        # the keyed hash of the subject id, as a gateway derives it (the agent checks it)
        consent = samples.consent(controller=ids["hotline"])
        key = topology.partition_key(PARTITION_SECRET.encode(), consent["subjectId"])
        producer.send(inbox, key=key, value=envelope.seal(
            "Consent", consent, mesh_keys["hotline"], ids["domain"], trusted, _now()),
        ).get(timeout=10)
        referral = samples.referral(sender=ids["hotline"], recipient=ids["shelter"],
                                    created_at=_now())
        sealed = envelope.seal("Referral", referral, mesh_keys["hotline"], ids["domain"],
                               trusted, _now())
        producer.send(inbox, key=key, value=sealed).get(timeout=10)
        tampered = bytearray(sealed)
        tampered[-1] ^= 1
        producer.send(inbox, key=b"tampered", value=bytes(tampered)).get(timeout=10)

        first = _wait_for(recipient_reader, 1, started + START_DEADLINE_S, process, log_path)
        first_at = time.monotonic() - started
        assert first[0].key == key
        opened = envelope.open(first[0].value, mesh_keys["shelter"], trusted, _now())
        assert opened.record_type == "Referral"
        assert opened.header["sender"] == ids["domain"]
        got = opened.record  # minimised by the sample policy (shelter-services) and consent
        assert got["referralId"] == referral["referralId"]
        assert got["person"]["firstName"] == referral["person"]["firstName"]
        assert got["person"]["identityNumber"] is None and got["person"]["birthdate"] is None
        assert got["subjectId"] == minimise.pseudonym(
            PSEUDONYM_SECRET.encode(), ids["shelter"], "subjectId", referral["subjectId"])

        (dead_letter,) = _wait_for(dead_reader, 1, started + START_DEADLINE_S, process, log_path)
        assert dead_letter.key == b"tampered" and dead_letter.value == bytes(tampered)
        assert dict(dead_letter.headers)["refmesh-reason"] == b"bad_signature"

        latencies = []  # steady state: one event at a time, publish to arrival
        for _ in range(EXTRA_EVENTS):
            one = samples.referral(referral_id=str(uuid.uuid4()), sender=ids["hotline"],
                                   recipient=ids["shelter"], created_at=_now())
            sent_at = time.monotonic()
            producer.send(inbox, key=key, value=envelope.seal(
                "Referral", one, mesh_keys["hotline"], ids["domain"], trusted, _now()))
            producer.flush(timeout=10)
            (got,) = _wait_for(recipient_reader, 1, time.monotonic() + 10, process, log_path)
            latencies.append(time.monotonic() - sent_at)
            assert envelope.open(got.value, mesh_keys["shelter"], trusted,
                                 _now()).record["referralId"] == one["referralId"]
    finally:
        producer.close(timeout=5)
        recipient_reader.close()
        dead_reader.close()
        stop_started = time.monotonic()
        code = _stop(process)
        stopped_in = time.monotonic() - stop_started

    log_text = log_path.read_text(errors="replace")
    joined = re.search(r"joined its group ([0-9.]+) s after start", log_text)
    latencies.sort()
    print(f"\nforward agent: first event forwarded {first_at:.2f} s after process start; "
          f"group joined {joined.group(1) if joined else '?'} s after app build; "
          f"steady latency median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms; SIGTERM to exit {stopped_in:.2f} s")
    assert code is not None, f"agent ignored SIGTERM for {STOP_DEADLINE_S} s:\n{log_text[-4000:]}"
    assert code == 0, log_text[-4000:]
    assert PASSPHRASE not in log_text and PSEUDONYM_SECRET not in log_text  # no secrets
    assert PARTITION_SECRET not in log_text
    assert f"policy 2026-11-28.1 of {ids['domain']} signed with" in log_text
    assert not [name for name in samples.FICTIONAL_GIVEN if name in log_text]
