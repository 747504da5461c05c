"""The broker enforces each principal's role: the whole principal x topic x operation table.

On the session's secured Apache Kafka, the sample mesh's agencies, domains and a regional body
each get their own SCRAM user and the ACLs ``refmesh.access.mesh_grants`` derives from the
signed directory (applied with ``kafkaedge.acls.apply_acls``, as ``refmesh topics acls`` does).
Then each principal, with only its own credentials, tries to read, write, create and delete
every topic of the mesh: what the table allows works, and everything else gets the broker's
authorization error. The role rules are restated here, apart from ``mesh_grants``, so that a
wrong derivation cannot pass by agreeing with itself.
"""
from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from devmesh.sample_mesh import build, renamed
from kafkaedge import profiles
from kafkaedge.acls import apply_acls
from kafkaedge.loading import DirectoryRef, load_anchor, now_ms
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import topology
from refmesh.access import (agency_principal, agents_group, domain_principal, gateway_group,
                            mesh_grants, region_principal)
from refmesh.aggregate import topic as aggregate_topic
from tests.integration.conftest import apache_only

pytestmark = apache_only
AUTHORIZATION_FAILED = 29  # TOPIC_AUTHORIZATION_FAILED


def expected(principal: str, topic: str, operation: str, trusted, domain: str,
             region: str) -> bool:
    """The table of roles in docs/operators.md, written from the topology (not from mesh_grants)."""
    if operation in ("CREATE", "DELETE"):
        return False
    kind, who = principal.split(".", 1)
    if kind == "region":
        return operation == "READ" and topic == aggregate_topic(region)
    agency = next(a for a in trusted.members if a.replace("/", ".") == who)
    if kind == "agency":
        if operation == "READ":
            return topic == topology.agency_inbox(agency)
        member_inboxes = {topology.agency_inbox(a) for a in trusted.members
                          if trusted.members[a]["domain"] is not None and a != agency}
        domain_inboxes = {topology.domain_inbox(a) for a in trusted.members
                          if trusted.members[a]["domain"] is None}
        return topic in member_inboxes | domain_inboxes | {topology.deadletter(agency)}
    state = {topology.table(agency, t) for t in (*topology.TABLES, topology.RELEASES)}
    if operation == "READ":
        return topic in state | {topology.domain_inbox(agency), topology.release_audit(agency)}
    own = {topology.deadletter(agency, "domain"), topology.audit(agency),
           topology.release_audit(agency), topology.audit_checkpoints(agency)}
    others = {topology.domain_inbox(a) for a in trusted.members
              if trusted.members[a]["domain"] is None and a != agency}
    inboxes = {topology.agency_inbox(a) for a in trusted.members}
    published = {aggregate_topic(region)} if agency == domain else set()
    return topic in state | own | others | inboxes | published


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    suffix = uuid.uuid4().hex[:6]
    files = build(tmp_path_factory.mktemp("acls"), kafka.bootstrap, now_ms(),
                  agencies=renamed(suffix), scrypt_n=2**10, broker=kafka.kind,
                  credentials=kafka.credentials)
    trusted = DirectoryRef(files.directory, load_anchor(files.anchor))()
    domain = next(a for a, m in trusted.members.items()
                  if m["domain"] is None and a.startswith("BH/"))
    region = f"R{suffix}"
    topics = [name for name, _ in topology.mesh_topics(trusted)] + [aggregate_topic(region)]
    ensure_topics(kafka.admin_config(), [TopicSpec(name, 1) for name in topics])
    grants = mesh_grants(trusted, {domain: region})
    apply_acls(kafka.admin_config(), grants, prune=False)
    principals = sorted({g.principal for g in grants})
    kafka.principals([region_principal(region)])
    return trusted, domain, region, topics, principals


def _client(kafka, principal: str) -> dict:
    return profiles.admin_config(kafka.profile, kafka.bootstrap, kafka.security_for(principal))


def test_the_table_covers_every_actor(mesh):
    trusted, domain, region, topics, principals = mesh
    assert len(principals) == len(trusted.members) + 1  # every agency and domain, one region
    assert region_principal(region) in principals
    # 8 agencies x (inbox, dead letters) + 2 domains x (inbox, dead letters, audit, release
    # audit, audit checkpoints, one changelog per table, the release state) + the region's
    assert len(topics) == 8 * 2 + 2 * (5 + len(topology.TABLES) + 1) + 1


def test_each_principal_can_do_exactly_what_its_role_allows(kafka, mesh):
    trusted, domain, region, topics, principals = mesh
    wrong = []
    for principal in principals:
        config = _client(kafka, principal)
        admin = KafkaAdminClient(**config)
        try:
            described = {t["name"]: t["error_code"] for t in admin.describe_topics(topics)}
            created = admin.create_topics({t: {"num_partitions": 1, "replication_factor": 1}
                                           for t in topics}, raise_errors=False)
            deleted = admin.delete_topics(topics, raise_errors=False)
        finally:
            admin.close()
        refused = {("CREATE", t["name"]) for t in created["topics"]
                   if t["error_code"] == AUTHORIZATION_FAILED}
        refused |= {("DELETE", t["name"]) for t in deleted["topics"]
                    if t["error_code"] == AUTHORIZATION_FAILED}
        could = {(op, name) for op in ("CREATE", "DELETE") for name in topics} - refused
        could |= _writes(config, topics) | _reads(config, topics, described)
        for operation in ("READ", "WRITE", "CREATE", "DELETE"):
            for name in topics:
                want = expected(principal, name, operation, trusted, domain, region)
                if ((operation, name) in could) != want:
                    wrong.append(f"{principal} {operation} {name}: broker "
                                 f"{'allows' if not want else 'refuses'}")
    assert wrong == []


def _writes(config: dict, topics: list[str]) -> set[tuple[str, str]]:
    """The topics this principal could write: a plain producer (an idempotent one is left in
    error by its first refusal) sends one record to each."""
    producer = KafkaProducer(**{k: v for k, v in config.items() if k != "request_timeout_ms"},
                             enable_idempotence=False, acks="all", max_block_ms=10000,
                             allow_auto_create_topics=False)
    done = set()
    try:
        for name in topics:
            try:
                producer.send(name, b"acl-probe").get(timeout=10)
                done.add(("WRITE", name))
            except TopicAuthorizationFailedError:
                pass
    finally:
        producer.close()
    return done


def _reads(config: dict, topics: list[str], described: dict) -> set[tuple[str, str]]:
    """The topics this principal could read. Where even DESCRIBE is refused, the metadata
    answer is already the broker's authorization error; elsewhere a fetch from the start
    either returns or raises it."""
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", **config)
    done = set()
    try:
        for name in topics:
            if described[name] == AUTHORIZATION_FAILED:
                continue
            consumer.assign([TopicPartition(name, 0)])
            consumer.seek_to_beginning()
            try:
                consumer.poll(timeout_ms=500)
                done.add(("READ", name))
            except TopicAuthorizationFailedError:
                pass
    finally:
        consumer.close()
    return done


def test_a_principal_may_use_only_its_own_consumer_group(kafka, mesh):
    trusted, domain, region, topics, principals = mesh
    hotline = next(a for a in trusted.members if a.startswith("BH/GOV/HOTLINE"))
    shelter = next(a for a in trusted.members if a.startswith("BH/GOV/SHELTER"))
    config = _client(kafka, agency_principal(hotline))
    inbox = topology.agency_inbox(hotline)

    def join(group: str) -> None:
        consumer = KafkaConsumer(inbox, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", session_timeout_ms=6000,
                                 heartbeat_interval_ms=1000, **config)
        try:
            consumer.poll(timeout_ms=3000)
            consumer.commit()
        finally:
            consumer.close(autocommit=False)

    join(gateway_group(hotline))  # its own: no error
    for group in (gateway_group(shelter), agents_group(domain)):
        with pytest.raises(GroupAuthorizationFailedError):
            join(group)
    assert domain_principal(domain) in principals
