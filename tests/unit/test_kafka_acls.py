"""kafkaedge.acls without a broker: Grant -> kafka-python ACL, what ``apply_acls`` creates and
removes (only ALLOW ACLs on refmesh resources), idempotence, and one clear error per refusal,
over a fake admin client that behaves as kafka-python 3's does."""
from __future__ import annotations

import pytest
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
    ScramMechanism,
)
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaTimeoutError,
    NoError,
    SecurityDisabledError,
    UnsupportedVersionError,
)

from kafkaedge import acls
from kafkaedge.acls import AclError, apply_acls, plan, scram_users, to_acl
from refmesh.access import Grant

READ_INBOX = Grant("agency.BH.GOV.HOTLINE", "TOPIC", "refmesh.agency.BH.GOV.HOTLINE.in",
                   "LITERAL", "READ")
GROUP = Grant("agency.BH.GOV.HOTLINE", "GROUP", "refmesh.gateway.BH.GOV.HOTLINE", "LITERAL",
              "READ")
TXN = Grant("domain.BH.GOV.NCCTIP", "TRANSACTIONAL_ID", "refmesh-domain-BH.GOV.NCCTIP-",
            "PREFIXED", "WRITE")
CONFIG = {"bootstrap_servers": "kafka.example:9093", "sasl_plain_username": "agency.X"}


def _acl(principal, rtype, name, operation, pattern=ACLResourcePatternType.LITERAL,
         permission=ACLPermissionType.ALLOW, host="*") -> ACL:
    return ACL(principal, host, operation, permission, ResourcePattern(rtype, name, pattern))


# --- the pure part -----------------------------------------------------------------------------

def test_a_grant_becomes_an_allow_acl_for_its_user_from_any_host():
    acl = to_acl(READ_INBOX)
    assert acl == _acl("User:agency.BH.GOV.HOTLINE", ResourceType.TOPIC,
                       "refmesh.agency.BH.GOV.HOTLINE.in", ACLOperation.READ)
    assert to_acl(GROUP).resource_pattern.resource_type is ResourceType.GROUP
    txn = to_acl(TXN)
    assert (txn.resource_pattern.resource_type, txn.resource_pattern.pattern_type,
            txn.operation) == (ResourceType.TRANSACTIONAL_ID, ACLResourcePatternType.PREFIXED,
                               ACLOperation.WRITE)


def test_kafka_python_builds_its_requests_from_them():
    creation = KafkaAdminClient._convert_create_acls_resource_request(to_acl(TXN))
    assert (creation.resource_type, creation.resource_name, creation.resource_pattern_type,
            creation.principal, creation.host, creation.operation, creation.permission_type) == (
        5, "refmesh-domain-BH.GOV.NCCTIP-", 4, "User:domain.BH.GOV.NCCTIP", "*", 4, 3)


def test_plan_creates_what_is_missing_and_removes_only_stale_refmesh_allows():
    stale = _acl("User:agency.BH.NGO.GONE", ResourceType.TOPIC, "refmesh.domain.BH.in",
                 ACLOperation.WRITE)
    stale_group = _acl("User:domain.X", ResourceType.GROUP, "refmesh-domain-X",
                       ACLOperation.READ)
    others = [
        _acl("User:someone", ResourceType.TOPIC, "payments", ACLOperation.READ),
        _acl("User:x", ResourceType.TOPIC, "refmesh.", ACLOperation.DESCRIBE,
             permission=ACLPermissionType.DENY),
        _acl("User:x", ResourceType.CLUSTER, "kafka-cluster", ACLOperation.ALTER),
    ]
    create, remove = plan([READ_INBOX, GROUP], [to_acl(GROUP), stale, stale_group, *others])
    assert create == [to_acl(READ_INBOX)]
    assert sorted(remove, key=acls.acl_key) == sorted([stale, stale_group], key=acls.acl_key)
    assert plan([READ_INBOX, GROUP], [stale], prune=False)[1] == []
    assert plan([READ_INBOX, GROUP], [to_acl(GROUP), to_acl(READ_INBOX)]) == ([], [])


def test_an_acl_for_another_host_is_not_the_granted_one():
    elsewhere = _acl("User:agency.BH.GOV.HOTLINE", ResourceType.TOPIC,
                     "refmesh.agency.BH.GOV.HOTLINE.in", ACLOperation.READ, host="10.0.0.9")
    assert plan([READ_INBOX], [elsewhere]) == ([to_acl(READ_INBOX)], [elsewhere])


# --- over a fake admin client -------------------------------------------------------------------

class FakeAdmin:
    """The ACL calls of kafka-python 3's KafkaAdminClient, on a set of ACLs."""

    def __init__(self, present=(), fail: Exception | None = None, refuse: bool = False):
        self.acls = list(present)
        self.fail, self.refuse, self.closed, self.scram = fail, refuse, False, []

    def _maybe_fail(self):
        if self.fail is not None:
            raise self.fail

    def describe_acls(self, acl_filter):
        self._maybe_fail()
        assert acl_filter.resource_pattern.resource_type is ResourceType.ANY
        assert acl_filter.permission_type is ACLPermissionType.ALLOW
        return list(self.acls), NoError

    def create_acls(self, new):
        if self.refuse:
            return {"succeeded": [], "failed": [ClusterAuthorizationFailedError] * len(new)}
        self.acls += new
        return {"succeeded": list(new), "failed": []}

    def delete_acls(self, filters):
        out = []
        for f in filters:
            assert isinstance(f, ACLFilter)
            matched = [a for a in self.acls if a == f]
            self.acls = [a for a in self.acls if a != f]
            out.append((f, matched, NoError))
        return out

    def alter_user_scram_credentials(self, alterations):
        self._maybe_fail()
        self.scram += alterations
        return {a.user: None for a in alterations}

    def close(self):
        self.closed = True


@pytest.fixture
def admin(monkeypatch):
    holder = {"admin": FakeAdmin()}
    monkeypatch.setattr(acls, "admin_client", lambda config: holder["admin"])
    return holder


def test_apply_is_idempotent_and_prunes_a_revoked_members_rights(admin):
    gone = _acl("User:agency.BH.NGO.GONE", ResourceType.TOPIC, "refmesh.agency.BH.NGO.GONE.in",
                ACLOperation.READ)
    admin["admin"] = fake = FakeAdmin([gone])
    created, removed = apply_acls(CONFIG, [READ_INBOX, GROUP])
    assert (len(created), removed) == (2, [gone]) and fake.closed
    assert sorted(fake.acls, key=acls.acl_key) == sorted(map(to_acl, [READ_INBOX, GROUP]),
                                                         key=acls.acl_key)
    assert apply_acls(CONFIG, [READ_INBOX, GROUP]) == ([], [])


def test_without_prune_nothing_is_removed(admin):
    other_mesh = _acl("User:agency.BH.GOV.HOTLINE-T2", ResourceType.TOPIC,
                      "refmesh.agency.BH.GOV.HOTLINE-T2.in", ACLOperation.READ)
    admin["admin"] = fake = FakeAdmin([other_mesh])
    assert apply_acls(CONFIG, [READ_INBOX], prune=False) == ([to_acl(READ_INBOX)], [])
    assert other_mesh in fake.acls


@pytest.mark.parametrize("error, words", [
    (SecurityDisabledError("No Authorizer is configured"), "have no authorizer"),
    (ClusterAuthorizationFailedError(), "do not let 'agency.X'"),
    (UnsupportedVersionError(), "need Apache Kafka 3"),
    (KafkaTimeoutError(), "retry"),
])
def test_a_refusal_is_one_error_naming_the_brokers_and_the_fix(admin, error, words):
    admin["admin"] = fake = FakeAdmin(fail=error)
    with pytest.raises(AclError, match=words) as caught:
        apply_acls(CONFIG, [READ_INBOX])
    assert "kafka.example:9093" in str(caught.value) and fake.closed
    assert caught.value.__cause__ is error


def test_refused_creations_name_the_first_acl(admin):
    admin["admin"] = FakeAdmin(refuse=True)
    with pytest.raises(AclError, match=r"do not let .*1 of 1 refused.*HOTLINE\.in"):
        apply_acls(CONFIG, [READ_INBOX])


def test_scram_users_are_upserted_as_sha_512(admin):
    assert scram_users(CONFIG, {"region.GCC": "pw-1", "agency.A": "pw-2"}) == [
        "agency.A", "region.GCC"]
    assert [(a.user, a.mechanism) for a in admin["admin"].scram] == [
        ("agency.A", ScramMechanism.SCRAM_SHA_512), ("region.GCC", ScramMechanism.SCRAM_SHA_512)]
    with pytest.raises(AclError, match="non-empty"):
        scram_users(CONFIG, {"agency.A": ""})
    admin["admin"] = FakeAdmin(fail=SecurityDisabledError())
    with pytest.raises(AclError, match="set SCRAM users"):
        scram_users(CONFIG, {"agency.A": "pw"})
