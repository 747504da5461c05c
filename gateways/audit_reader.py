"""Read a policy domain's audit topic, partition by partition (edge I/O for refmesh.audit)."""
from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition

from gateways.supervise import wait_until
from refmesh import topology


def read_chains(consumer_config: dict, domain: str, timeout: float = 60.0) -> dict[int, list]:
    """Every record of ``domain``'s audit topic, as {partition: [record bytes in order]}."""
    topic = topology.audit(domain)
    config = {k: v for k, v in consumer_config.items()
              if k not in ("group_id", "enable_auto_commit")}
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **config)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return {}
        parts = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        chains: dict[int, list] = {tp.partition: [] for tp in parts}

        def done():
            for tp, batch in consumer.poll(timeout_ms=200, max_records=5000).items():
                chains[tp.partition].extend(m.value for m in batch)
            return all(consumer.position(tp) >= ends[tp] for tp in parts)

        wait_until(done, timeout, f"the end of {topic}", interval=0)
        return chains
    finally:
        consumer.close(autocommit=False)
