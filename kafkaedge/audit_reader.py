"""Read a policy domain's audit chains (edge I/O for refmesh.audit): the decisions of its
agents, one chain per partition of ``topology.audit``, and its release job's chain on
``topology.release_audit``."""
from __future__ import annotations

from kafkaedge.topic_reader import read_partitions
from refmesh import topology


def read_chains(consumer_config: dict, domain: str, timeout: float = 60.0,
                topic: str | None = None) -> dict[int, list]:
    """Every record of one of ``domain``'s audit topics (default: the agents' decisions), as
    {partition: [record bytes in order]}; {} when the topic does not exist."""
    parts = read_partitions(consumer_config, topic or topology.audit(domain), timeout)
    return {p: [m.value for m in messages] for p, messages in (parts or {}).items()}


def read_checkpoints(consumer_config: dict, domain: str, timeout: float = 60.0) -> list[bytes]:
    """Every record of ``domain``'s audit-checkpoints topic, any partition ([] when the topic
    does not exist): refmesh.audit.findings picks each chain's own from the signed content."""
    parts = read_partitions(consumer_config, topology.audit_checkpoints(domain), timeout)
    return [m.value for _, messages in sorted((parts or {}).items()) for m in messages]
