"""refmesh.access: who may do what on the broker, derived from the signed directory.

The expected table is written here from the roles alone (docs/operators.md: Security on the
broker, and the topic table of docs/protocol.md: Topics), with topic names spelled out, and
compared with ``mesh_grants`` for every principal, every topic of the mesh and each of read,
write, create, delete and describe. The sample mesh of devmesh.sample_mesh, plus one member
whose keys are all revoked.
"""
from __future__ import annotations

import itertools

import pytest

from devmesh.sample_mesh import COORDINATOR, SAMPLE
from refmesh import access, aggregate, directory, keys, topology
from refmesh.access import Grant, allowed, mesh_grants
from refmesh.errors import ConfigError

T0 = 1_790_000_000_000
ET_DOMAIN, HOTLINE, SHELTER, RECEPTION = "ET/GOV/NCC", "BH/GOV/HOTLINE", "BH/GOV/SHELTER", \
    "ET/NGO/RECEPTION"
REVOKED = "BH/NGO/GONE"  # a member of the BH domain whose keys are all revoked
REGIONS = {COORDINATOR: "GCC"}
OPERATIONS = ("READ", "WRITE", "CREATE", "DELETE", "DESCRIBE")
STATE = ("consents", "forwarded", "audit-heads", "aggregate-counts", "counted", "seen",
         "state-heads", "aggregate-releases")


def _dotted(agency_id: str) -> str:
    return agency_id.replace("/", ".")


@pytest.fixture(scope="module")
def agency_keys() -> dict[str, keys.AgencyKeys]:
    return {a: keys.generate(a, T0) for a in [a.agency_id for a in SAMPLE] + [REVOKED]}


def _trusted(agency_keys, leave_out: tuple[str, ...] = ()) -> directory.TrustedDirectory:
    draft = directory.empty(COORDINATOR)
    for a in SAMPLE:
        if a.agency_id not in leave_out:
            draft = directory.add_member(draft, directory.member_entry(
                agency_keys[a.agency_id], a.name, a.role, a.country, a.domain, T0))
    gone = agency_keys[REVOKED]
    draft = directory.add_member(draft, directory.member_entry(
        gone, "Closed NGO (sample)", "NGO", "BH", COORDINATOR, T0))
    for k in (gone.signing, *gone.decryption):
        draft = directory.revoke_key(draft, REVOKED, k.key_id, T0 + 1)
    coordinator = agency_keys[COORDINATOR]
    return directory.load(directory.sign(draft, coordinator, T0 + 2),
                          directory.TrustAnchor.of(coordinator), T0 + 3)


@pytest.fixture(scope="module")
def trusted(agency_keys) -> directory.TrustedDirectory:
    return _trusted(agency_keys)


@pytest.fixture(scope="module")
def grants(trusted) -> list[Grant]:
    return mesh_grants(trusted, REGIONS)


# --- the expected table, from the roles -------------------------------------------------------

DOMAINS = {a.agency_id for a in SAMPLE if a.domain is None}
GATEWAYS = {a.agency_id for a in SAMPLE if a.domain is not None}
HOME = {a.agency_id: a.domain for a in SAMPLE}


def _expected(principal: str, topic: str, operation: str) -> bool:
    """What the table in docs/operators.md says, for the sample mesh (REVOKED takes no part)."""
    if operation in ("CREATE", "DELETE"):
        return False
    if operation == "DESCRIBE":  # Kafka: implied by read and write
        return _expected(principal, topic, "READ") or _expected(principal, topic, "WRITE")
    kind, _, who = principal.partition(".")
    inbox_of_gateway = {f"refmesh.agency.{_dotted(a)}.in" for a in GATEWAYS}
    inbox_of_any = {f"refmesh.agency.{_dotted(a)}.in" for a in GATEWAYS | DOMAINS}
    domain_inboxes = {f"refmesh.domain.{_dotted(d)}.in" for d in DOMAINS}
    if kind == "agency":
        me = next((a for a in GATEWAYS if _dotted(a) == who), None)
        if me is None:  # the revoked member
            return False
        if operation == "READ":
            return topic == f"refmesh.agency.{who}.in"
        return topic in (inbox_of_gateway - {f"refmesh.agency.{who}.in"}) | domain_inboxes | {
            f"refmesh.agency.{who}.deadletter"}
    if kind == "domain":
        me = next(d for d in DOMAINS if _dotted(d) == who)
        state = {f"refmesh.domain.{who}.{name}" for name in STATE}
        if operation == "READ":
            return topic in state | {f"refmesh.domain.{who}.in",
                                     f"refmesh.domain.{who}.release-audit"}
        region = REGIONS.get(me)
        return topic in state | inbox_of_any | (domain_inboxes - {f"refmesh.domain.{who}.in"}) | {
            f"refmesh.domain.{who}.deadletter", f"refmesh.domain.{who}.audit",
            f"refmesh.domain.{who}.release-audit", f"refmesh.domain.{who}.audit-checkpoints",
            *([f"refmesh.region.{region}.aggregates"] if region else [])}
    if kind == "region":
        return (operation == "READ" and who in REGIONS.values()  # a region someone publishes to
                and topic == f"refmesh.region.{who}.aggregates")
    return False  # the operator's super user needs no ACL at all


def _principals() -> list[str]:
    return ([access.agency_principal(a) for a in sorted(GATEWAYS | {REVOKED})]
            + [access.domain_principal(d) for d in sorted(DOMAINS)]
            + [access.region_principal(r) for r in sorted(set(REGIONS.values()))]
            + [access.region_principal("EU"), access.ADMIN])


def _topics(trusted) -> list[str]:
    return [name for name, _ in topology.mesh_topics(trusted)] + [
        aggregate.topic(r) for r in (*REGIONS.values(), "EU")]


def test_every_principal_on_every_topic_gets_exactly_the_table(trusted, grants):
    wrong = [(p, t, op, allowed(grants, p, "TOPIC", t, op))
             for p, t, op in itertools.product(_principals(), _topics(trusted), OPERATIONS)
             if allowed(grants, p, "TOPIC", t, op) != _expected(p, t, op)]
    assert wrong == []


def test_the_table_is_not_empty_for_any_active_role(trusted, grants):
    for principal in _principals():
        rights = [t for t in _topics(trusted) if allowed(grants, principal, "TOPIC", t, "READ")]
        active = principal not in (access.agency_principal(REVOKED), access.ADMIN,
                                   access.region_principal("EU"))
        assert bool(rights) == active, principal


def test_grants_are_sorted_without_duplicates_and_only_literal_read_or_write(grants):
    assert grants == sorted(set(grants))
    # one prefix each: the transactional ids of a domain's agents (exactly_once)
    literal = [g for g in grants if g.resource_type != "TRANSACTIONAL_ID"]
    assert {(g.pattern, g.operation) for g in literal} == {("LITERAL", "READ"),
                                                          ("LITERAL", "WRITE")}
    assert {(g.resource_type, g.pattern, g.operation) for g in grants} - {
        (g.resource_type, g.pattern, g.operation) for g in literal} == {
        ("TRANSACTIONAL_ID", "PREFIXED", "WRITE")}
    assert {g.resource_type for g in grants} == {"TOPIC", "GROUP", "TRANSACTIONAL_ID"}
    assert all(g.name.startswith(("refmesh.", "refmesh-")) for g in grants)


def test_consumer_groups_are_each_principals_own(grants):
    groups = {(g.principal, g.name) for g in grants if g.resource_type == "GROUP"}
    assert groups == {(access.agency_principal(a), f"refmesh.gateway.{_dotted(a)}")
                      for a in GATEWAYS} | {
        (access.domain_principal(d), f"refmesh-domain-{_dotted(d)}") for d in DOMAINS}
    assert allowed(grants, access.agency_principal(HOTLINE), "GROUP",
                   "refmesh.gateway.BH.GOV.HOTLINE", "READ")
    assert not allowed(grants, access.agency_principal(HOTLINE), "GROUP",
                       "refmesh.gateway.BH.GOV.SHELTER", "READ")
    assert not allowed(grants, access.region_principal("GCC"), "GROUP", "anything", "READ")


def test_group_names_are_the_ones_the_gateway_and_the_agents_use():
    from agents.forward import app_id

    assert access.agents_group(ET_DOMAIN) == app_id(ET_DOMAIN) == "refmesh-domain-ET.GOV.NCC"
    assert access.gateway_group(HOTLINE) == "refmesh.gateway.BH.GOV.HOTLINE"


def test_a_member_cannot_read_another_inbox_or_touch_a_domains_state(grants):
    hotline = access.agency_principal(HOTLINE)
    assert not allowed(grants, hotline, "TOPIC", topology.agency_inbox(SHELTER), "READ")
    assert allowed(grants, hotline, "TOPIC", topology.agency_inbox(SHELTER), "WRITE")
    assert not allowed(grants, hotline, "TOPIC", topology.domain_inbox(COORDINATOR), "READ")
    for name in (*topology.TABLES, topology.RELEASES):
        for op in ("READ", "WRITE"):
            assert not allowed(grants, hotline, "TOPIC", topology.table(COORDINATOR, name), op)
            # nor does a domain reach into another domain's state
            assert not allowed(grants, access.domain_principal(ET_DOMAIN), "TOPIC",
                               topology.table(COORDINATOR, name), op)
    assert not allowed(grants, hotline, "TOPIC", topology.audit(COORDINATOR), "READ")
    assert not allowed(grants, hotline, "TOPIC", aggregate.topic("GCC"), "READ")


def test_nobody_may_create_delete_or_alter(trusted, grants):
    for principal, topic in itertools.product(_principals(), _topics(trusted)):
        for op in ("CREATE", "DELETE", "ALTER", "ALTER_CONFIGS"):
            assert not allowed(grants, principal, "TOPIC", topic, op)


def test_a_revoked_member_gets_nothing_and_nobody_writes_to_it(trusted, grants):
    assert REVOKED in trusted.members and not access.active(trusted.member(REVOKED))
    assert [g for g in grants if g.principal == access.agency_principal(REVOKED)] == []
    assert [g for g in grants if _dotted(REVOKED) in g.name] == []


def test_a_removed_member_loses_its_grants(agency_keys, grants):
    without = mesh_grants(_trusted(agency_keys, leave_out=(SHELTER,)), REGIONS)
    shelter = access.agency_principal(SHELTER)
    assert [g for g in without if g.principal == shelter or _dotted(SHELTER) in g.name] == []
    assert set(without) < set(grants)
    assert {g for g in set(grants) - set(without)} == {
        g for g in grants if g.principal == shelter or _dotted(SHELTER) in g.name}


def test_regions(trusted):
    two = mesh_grants(trusted, {COORDINATOR: "GCC", ET_DOMAIN: "AU"})
    assert allowed(two, access.domain_principal(ET_DOMAIN), "TOPIC", aggregate.topic("AU"),
                   "WRITE")
    assert not allowed(two, access.domain_principal(ET_DOMAIN), "TOPIC",
                       aggregate.topic("GCC"), "WRITE")
    assert not allowed(two, access.region_principal("AU"), "TOPIC", aggregate.topic("GCC"),
                       "READ")
    assert not allowed(two, access.region_principal("AU"), "TOPIC", aggregate.topic("AU"),
                       "WRITE")
    none = mesh_grants(trusted, {})
    assert [g for g in none if "region" in g.name or g.principal.startswith("region.")] == []


@pytest.mark.parametrize("regions, named", [
    ({HOTLINE: "GCC"}, HOTLINE),          # a member, not a domain
    ({"XX/GOV/NOBODY": "GCC"}, "XX/GOV/NOBODY"),  # not in the directory
    ({COORDINATOR: "G C C"}, "G C C"),    # not a region code
])
def test_a_wrong_region_is_named(trusted, regions, named):
    with pytest.raises(ConfigError, match=named):
        mesh_grants(trusted, regions)


def test_exactly_once_adds_the_faust_transactional_id_prefix(trusted):
    grants = mesh_grants(trusted, REGIONS)  # the apache profile's agents run exactly_once
    et = access.domain_principal(ET_DOMAIN)
    tid = "refmesh-domain-ET.GOV.NCC-0-0"  # faust: <app id>-<topic group>-<partition>
    assert allowed(grants, et, "TRANSACTIONAL_ID", tid, "WRITE")
    assert allowed(grants, et, "TRANSACTIONAL_ID", tid, "DESCRIBE")
    assert not allowed(grants, access.domain_principal(COORDINATOR), "TRANSACTIONAL_ID", tid,
                       "WRITE")
    assert not allowed(mesh_grants(trusted, REGIONS, exactly_once=False), et,
                       "TRANSACTIONAL_ID", tid, "WRITE")


# --- allowed, as Kafka's authorizer decides -----------------------------------------------------

def test_literal_matches_the_exact_name_and_star_every_name():
    exact = [Grant("u", "TOPIC", "refmesh.a", "LITERAL", "READ")]
    assert allowed(exact, "u", "TOPIC", "refmesh.a", "READ")
    assert not allowed(exact, "u", "TOPIC", "refmesh.ab", "READ")
    assert not allowed(exact, "v", "TOPIC", "refmesh.a", "READ")
    assert not allowed(exact, "u", "GROUP", "refmesh.a", "READ")
    star = [Grant("u", "TOPIC", "*", "LITERAL", "READ")]
    assert allowed(star, "u", "TOPIC", "anything", "READ")


def test_prefixed_matches_names_starting_with_it():
    grants = [Grant("u", "GROUP", "refmesh-domain-X-", "PREFIXED", "READ")]
    assert allowed(grants, "u", "GROUP", "refmesh-domain-X-", "READ")
    assert allowed(grants, "u", "GROUP", "refmesh-domain-X-topic-3", "READ")
    assert not allowed(grants, "u", "GROUP", "refmesh-domain-X", "READ")
    assert not allowed(grants, "u", "GROUP", "refmesh-domain-Y-topic-3", "READ")


@pytest.mark.parametrize("granted, asked, expected", [
    ("READ", "DESCRIBE", True), ("WRITE", "DESCRIBE", True), ("DELETE", "DESCRIBE", True),
    ("ALTER", "DESCRIBE", True), ("CREATE", "DESCRIBE", False), ("READ", "WRITE", False),
    ("WRITE", "READ", False), ("DESCRIBE", "READ", False), ("ALL", "DELETE", True),
    ("ALTER_CONFIGS", "DESCRIBE_CONFIGS", True), ("READ", "DESCRIBE_CONFIGS", False),
])
def test_operations_imply_as_in_kafka(granted, asked, expected):
    assert allowed([Grant("u", "TOPIC", "t", "LITERAL", granted)], "u", "TOPIC", "t",
                   asked) is expected


@pytest.mark.parametrize("field, value", [
    ("resource_type", "CLUSTER"), ("pattern", "MATCH"), ("operation", "ANY"),
    ("principal", ""), ("name", ""),
])
def test_a_grant_names_a_wrong_field(field, value):
    fields = {"principal": "u", "resource_type": "TOPIC", "name": "t", "pattern": "LITERAL",
              "operation": "READ", field: value}
    with pytest.raises(ConfigError, match=field.split("_")[0] if value else "needs"):
        Grant(**fields)
