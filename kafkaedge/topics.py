"""Create the mesh's topics with explicit partition counts, idempotently.

Every topic is pre-created: Tansu auto-creates unknown topics with 4 partitions on first use and
cannot be told not to, and on Apache Kafka auto-creation hides typos. Running ``ensure_topics``
again is a no-op. A topic that already exists with another partition count is an error, not
something to paper over: Tansu cannot add partitions (no CreatePartitions), and on Kafka adding
them moves keys to other partitions.

Tansu accepts ``cleanup.policy=compact`` but never compacts (shared/BROKER.md); the config is
still sent so that production Kafka compacts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from kafkaedge.credentials import admin_client
from refmesh.errors import MeshError

_LEGAL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_POLL_S = 0.05


class TopicError(MeshError, RuntimeError):
    """A topic could not be created, or exists in a shape other than the spec asks for."""


@dataclass(frozen=True)
class TopicSpec:
    """What one topic must look like."""

    name: str
    partitions: int
    compacted: bool = False
    replication: int = 1

    def __post_init__(self) -> None:
        if not _LEGAL_NAME.match(self.name) or self.name in (".", ".."):
            raise ValueError(f"topic name {self.name!r} is not legal in Kafka: use 1-249 of "
                             "letters, digits, '.', '_' and '-'")
        if self.partitions < 1 or self.replication < 1:
            raise ValueError(f"topic {self.name!r}: partitions ({self.partitions}) and "
                             f"replication ({self.replication}) must be at least 1")

    def configs(self) -> dict[str, str]:
        """Topic-level configs sent with CreateTopics."""
        return {"cleanup.policy": "compact"} if self.compacted else {}


def ensure_topics(admin_config: dict, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names it created.

    Topics that already exist are not asked for again, so a client with only the rights to
    describe and use them (a gateway or agent under the broker's ACLs) passes once the operator
    has created them.

    Then wait, up to ``timeout`` seconds, until metadata shows every topic with every partition
    led by a broker, and check that each has the partition count its spec asks for.
    """
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in specs: {sorted(names)}")
    if not specs:
        return []
    deadline = time.monotonic() + timeout
    try:
        admin = admin_client(admin_config)
    except KafkaError as exc:
        raise TopicError(f"cannot reach the brokers {admin_config.get('bootstrap_servers')!r}: "
                         f"{exc!r}; check the bootstrap address and security settings") from exc
    try:
        # Only the missing ones are asked for: a gateway or agent may describe the topics it
        # uses but, under the broker's ACLs, not create them (the operator does).
        present = {topic["name"] for topic in admin.describe_topics(names)
                   if topic["error_code"] == 0}
        missing = [spec for spec in specs if spec.name not in present]
        created = _create(admin, missing, timeout) if missing else []
        _wait_for_partitions(admin, specs, set(created), deadline, timeout)
    finally:
        admin.close()
    return created


def _create(admin: KafkaAdminClient, specs: list[TopicSpec], timeout: float) -> list[str]:
    request = {spec.name: {"num_partitions": spec.partitions,
                           "replication_factor": spec.replication,
                           "configs": spec.configs()} for spec in specs}
    try:
        response = admin.create_topics(request, timeout_ms=int(timeout * 1000),
                                       raise_errors=False)
    except KafkaError as exc:
        raise TopicError(f"CreateTopics for {sorted(request)} failed: {exc!r}; is the "
                         "broker reachable and does this client have the rights?") from exc
    created = []
    for topic in response["topics"]:
        error = for_code(topic["error_code"])
        if topic["error_code"] == 0:
            created.append(topic["name"])
        elif error is not TopicAlreadyExistsError:
            raise TopicError(f"could not create topic {topic['name']!r}: {error.__name__} "
                             f"({topic.get('error_message')})")
    return created


def _wait_for_partitions(admin: KafkaAdminClient, specs: list[TopicSpec], created: set[str],
                         deadline: float, timeout: float) -> None:
    wanted = {spec.name: spec.partitions for spec in specs}
    while True:
        pending = _not_ready(admin.describe_topics(list(wanted)), wanted, created)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"topics not ready after {timeout:.1f}s: {pending}")
        time.sleep(_POLL_S)


def _not_ready(described: list[dict], wanted: dict[str, int], created: set[str]) -> dict[str, str]:
    """Why each wanted topic is not usable yet; raise if an old one has another partition count.

    A topic created just now may still show partial metadata, so only one that already existed
    is judged on its count; it will not change by waiting.
    """
    by_name = {topic["name"]: topic for topic in described}
    pending = {}
    for name, count in wanted.items():
        topic = by_name.get(name)
        if topic is None or topic["error_code"] != 0:
            pending[name] = "not in metadata" if topic is None else for_code(
                topic["error_code"]).__name__
            continue
        partitions = topic["partitions"]
        if name not in created and len(partitions) != count:
            raise TopicError(
                f"topic {name!r} exists with {len(partitions)} partitions but the spec asks for "
                f"{count}; partition counts cannot be changed in place: delete the topic (or "
                "start a fresh broker) or change the spec. Was it auto-created by a client "
                "that used it before ensure_topics ran?")
        if len(partitions) != count or any(p["leader_id"] < 0 for p in partitions):
            pending[name] = "partitions not led yet"
    return pending
