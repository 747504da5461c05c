"""`refmesh scan`: finds a planted value in clear on any topic, and exits 1 when it does."""
from __future__ import annotations

import uuid

from click.testing import CliRunner
from kafka import KafkaProducer

from cli import cli
from kafkaedge.topics import TopicSpec, ensure_topics


def test_scan_reports_a_canary_in_clear_and_passes_when_there_is_none(kafka, tmp_path):
    prefix = f"scan-test-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.plain"
    ensure_topics(kafka.admin_config(), [TopicSpec(topic, 2)])
    canary = f"CANARY-{uuid.uuid4().hex}"
    producer = KafkaProducer(**kafka.producer_config())
    producer.send(topic, value=b"nothing to see").get(timeout=10)
    producer.send(topic, key=b"k", value=f"name: {canary}".encode()).get(timeout=10)
    producer.close()
    canaries = tmp_path / "canaries.txt"
    canaries.write_text(f"{canary}\n\nnever-planted\n")
    args = ["scan", "--config", str(kafka.client_file()), "--canaries",
            str(canaries), "--prefix", prefix]
    found = CliRunner().invoke(cli, args)
    assert found.exit_code == 1
    assert f"LEAK {topic}/" in found.output and canary in found.output
    assert "scanned 2 messages" in found.output and "1 found" in found.output
    canaries.write_text("never-planted\n")
    clean = CliRunner().invoke(cli, args)
    assert clean.exit_code == 0 and "0 found" in clean.output
