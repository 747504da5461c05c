"""The local brokers, the client profiles and topic set-up, against a real broker of each kind.

No mocks and no sleeps: every wait is a poll or a future with a deadline.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from devmesh.tansu import BrokerError, EmbeddedBroker, port_is_free
from kafkaedge.profiles import EMBEDDED, admin_config, consumer_config, producer_config
from kafkaedge.topics import TopicError, TopicSpec, ensure_topics

N_RECORDS = 200
DEADLINE_S = 30.0


def _consume(consumer: KafkaConsumer, count: int, timeout: float) -> list[bytes]:
    """Poll until ``count`` values arrived or ``timeout`` passed; return what arrived.

    Every poll's records are kept, including those of the polls that complete the group join.
    """
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(record.value for record in records)
    return values


def _partition_counts(kafka, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(**kafka.admin_config())
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


# (a) produce and consume through a consumer group with the broker kind's profile

def test_group_reads_back_exactly_what_was_produced(kafka, unique):
    topic = f"it-roundtrip-{unique}"
    ensure_topics(kafka.admin_config(), [TopicSpec(topic, partitions=3)])
    sent = [f"record-{i}".encode() for i in range(N_RECORDS)]

    producer = KafkaProducer(**kafka.producer_config())
    try:
        futures = [producer.send(topic, key=value, value=value) for value in sent]
        producer.flush(timeout=DEADLINE_S)
        partitions = {future.get(timeout=DEADLINE_S).partition for future in futures}
    finally:
        producer.close()
    assert partitions == {0, 1, 2}

    consumer = KafkaConsumer(topic, **kafka.consumer_config(f"it-g-{unique}"))
    try:
        received = _consume(consumer, N_RECORDS, DEADLINE_S)
        assert sorted(received) == sorted(sent)  # no loss, no duplicates
        tps = [TopicPartition(topic, p) for p in range(3)]
        # Right on Tansu only because EMBEDDED sends one record per batch (its end-offset bug).
        assert sum(consumer.end_offsets(tps).values()) == N_RECORDS
        consumer.commit()
        assert sum(consumer.committed(tp) for tp in tps) == N_RECORDS
    finally:
        consumer.close()


# (b) topics

def test_ensure_topics_twice_is_a_no_op_with_requested_partitions(kafka, unique):
    config = kafka.admin_config()
    specs = [TopicSpec(f"it-three-{unique}", 3), TopicSpec(f"it-one-{unique}", 1, compacted=True),
             TopicSpec(f"it-six-{unique}", 6)]
    names = [spec.name for spec in specs]

    assert sorted(ensure_topics(config, specs)) == sorted(names)
    assert ensure_topics(config, specs) == []
    assert _partition_counts(kafka, names) == {spec.name: spec.partitions for spec in specs}


def test_ensure_topics_refuses_an_existing_topic_with_other_partitions(kafka, unique):
    config = kafka.admin_config()
    name = f"it-shape-{unique}"
    ensure_topics(config, [TopicSpec(name, 2)])
    with pytest.raises(TopicError, match=rf"{name}.*2 partitions.*asks for 3"):
        ensure_topics(config, [TopicSpec(name, 3)])


# (c) the broker process

def test_stop_ends_the_process_frees_the_port_and_is_idempotent():
    broker = EmbeddedBroker()
    port = int(broker.start().rsplit(":", 1)[1])
    pid = broker.pid
    assert broker.running and not port_is_free(port)

    broker.stop()
    assert not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert port_is_free(port)
    broker.stop()

    with EmbeddedBroker(port=port) as again:  # a restart drill reuses the port
        assert again.bootstrap == f"127.0.0.1:{port}"
    with pytest.raises(BrokerError, match="not running"):
        again.bootstrap


def test_start_on_a_port_in_use_says_so():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerError, match=rf"port {port} .*already in use.*port=None"):
            broker.start()
        assert not broker.running


def test_a_broker_that_dies_at_start_is_reported_with_exit_code_and_output():
    broker = EmbeddedBroker(storage="nonsense://nowhere/")
    with pytest.raises(BrokerError, match=r"(?s)exited with code 1.*UnsupportedStorageUrl"):
        broker.start(timeout=10)
    assert not broker.running


def test_a_broker_that_misses_the_deadline_is_stopped_and_reported():
    broker = EmbeddedBroker()
    with pytest.raises(BrokerError, match=r"(?s)did not answer .* within 0.0s.*exit code"):
        broker.start(timeout=0)
    assert not broker.running


# (d) security options are checked by name

@pytest.mark.parametrize("build", [
    lambda s: producer_config(EMBEDDED, "127.0.0.1:9092", s),
    lambda s: consumer_config(EMBEDDED, "127.0.0.1:9092", "g", s),
], ids=["producer", "consumer"])
def test_unknown_security_key_is_rejected(build):
    with pytest.raises(ValueError, match=r"'ssl_ca_file'.*allowed: .*ssl_cafile"):
        build({"security_protocol": "SSL", "ssl_ca_file": "/etc/ca.pem"})
