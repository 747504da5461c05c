"""Who is who on the broker: the Kafka principal of every actor of the mesh.

Each agency's gateway, each policy domain's agents and each regional reader authenticates to
Apache Kafka as its own SCRAM user, so that the broker's ACLs can give each exactly the rights
its role needs (docs/operators.md: Security on the broker). The names are derived here, once,
from the agency ids of the signed directory and the region codes, and so are the rights:
``mesh_grants`` returns every ALLOW ACL of the mesh as ``Grant`` values (kafkaedge.acls applies
them), and ``allowed`` answers, as Kafka's authorizer would, whether a principal may do an
operation.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from refmesh import topology
from refmesh.aggregate.wire import check_region
from refmesh.aggregate.wire import topic as aggregate_topic
from refmesh.directory import TrustedDirectory, check_agency_id
from refmesh.errors import ConfigError

#: The operator's principal: creates topics and ACLs; a super user on the broker.
ADMIN = "admin"


def _safe(agency_id: str) -> str:
    return check_agency_id(agency_id).replace("/", ".")


def agency_principal(agency_id: str) -> str:
    """SCRAM user name of an agency's gateway, e.g. ``agency.BH.GOV.HOTLINE``."""
    return f"agency.{_safe(agency_id)}"


def domain_principal(domain_id: str) -> str:
    """SCRAM user name of a policy domain's agents, e.g. ``domain.BH.GOV.NCCTIP``."""
    return f"domain.{_safe(domain_id)}"


def region_principal(region: str) -> str:
    """SCRAM user name of a regional body's reader, e.g. ``region.GCC``."""
    return f"region.{check_region(region)}"


def gateway_group(agency_id: str) -> str:
    """The consumer group of an agency's inbox consumer (gateways.gateway)."""
    return f"refmesh.gateway.{_safe(agency_id)}"


def agents_group(domain_id: str) -> str:
    """The faust app id of a domain's agents, which is also their consumer group
    (agents.forward.app_id)."""
    return f"refmesh-domain-{_safe(domain_id)}"


# --- the rights of each role, as values -----------------------------------------------------

RESOURCE_TYPES = ("TOPIC", "GROUP", "TRANSACTIONAL_ID")
PATTERNS = ("LITERAL", "PREFIXED")
#: Kafka's ACL operations (kafka-acls --operation), by the names kafka-python gives them.
OPERATIONS = ("ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION",
              "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE")
#: What Kafka's authorizer lets each granted operation imply besides itself.
IMPLIES = {"READ": {"DESCRIBE"}, "WRITE": {"DESCRIBE"}, "DELETE": {"DESCRIBE"},
           "ALTER": {"DESCRIBE"}, "ALTER_CONFIGS": {"DESCRIBE_CONFIGS"},
           "ALL": set(OPERATIONS)}


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` (a SCRAM user name, without ``User:``) may do
    ``operation`` on the resource(s) of ``resource_type`` named ``name`` (exactly, for LITERAL,
    or every name starting with it, for PREFIXED), from any host."""

    principal: str
    resource_type: str
    name: str
    pattern: str
    operation: str

    def __post_init__(self) -> None:
        for field, value, allowed_values in (("resource_type", self.resource_type, RESOURCE_TYPES),
                                             ("pattern", self.pattern, PATTERNS),
                                             ("operation", self.operation, OPERATIONS)):
            if value not in allowed_values:
                raise ConfigError(f"grant {field} {value!r} is not one of "
                                  f"{', '.join(allowed_values)}")
        if not self.principal or not self.name:
            raise ConfigError(f"grant needs a principal and a resource name, got "
                              f"{self.principal!r} and {self.name!r}")

    def covers(self, resource_type: str, name: str, operation: str) -> bool:
        """Whether this grant allows ``operation`` on that resource, as Kafka decides it:
        LITERAL matches the exact name (or every name, for ``*``), PREFIXED every name that
        starts with it, and READ, WRITE, DELETE or ALTER imply DESCRIBE."""
        if resource_type != self.resource_type:
            return False
        if self.pattern == "LITERAL" and self.name not in (name, "*"):
            return False
        if self.pattern == "PREFIXED" and not name.startswith(self.name):
            return False
        return operation == self.operation or operation in IMPLIES.get(self.operation, ())


def allowed(grants: Iterable[Grant], principal: str, resource_type: str, name: str,
            operation: str) -> bool:
    """Whether ``principal`` may do ``operation`` on the resource under ``grants`` (ALLOW only:
    without a matching grant, Kafka with ``allow.everyone.if.no.acl.found=false`` denies)."""
    return any(g.principal == principal and g.covers(resource_type, name, operation)
               for g in grants)


def active(member: dict) -> bool:
    """Whether a directory member still takes part: it has a key that is not revoked. A member
    whose keys are all revoked can neither sign nor be sealed for, so it needs no broker rights
    and nobody needs rights on its topics."""
    return any(k["revokedAt"] is None for k in member["keys"])


def mesh_grants(directory: TrustedDirectory, regions: Mapping[str, str], *,
                exactly_once: bool = True) -> list[Grant]:
    """Every broker right of the mesh, derived from the signed directory: sorted, no duplicates.

    ``regions`` maps each policy domain that publishes statistics to its region code; each
    region mentioned gets a regional reader. Members that are not ``active`` (every key revoked)
    and members no longer in the directory get nothing, and nobody keeps rights on their topics.
    ``exactly_once`` adds the transactional ids faust uses under processing_guarantee
    exactly_once (``<app id>-<topic group>-<partition>``), as the apache profile runs the
    agents; ``exactly_once=False`` leaves them out for agents that run at_least_once (the
    embedded profile, whose broker enforces no ACLs anyway). Nobody may create, delete or alter anything: the operator (``ADMIN``, a
    super user) does that.
    """
    members = {a: m for a, m in directory.members.items() if active(m)}
    domains = sorted(a for a, m in members.items() if m["domain"] is None)
    for domain, region in sorted(regions.items()):
        if directory.members.get(domain, {"domain": ""})["domain"] is not None:
            raise ConfigError(f"region {domain}={region}: {domain} is not a policy domain of "
                              f"directory serial {directory.serial}; name a domain (an agency "
                              "with no domain of its own) that publishes to the region")
        check_region(region)
    grants: set[Grant] = set()
    for agency_id in sorted(set(members) - set(domains)):
        grants |= _gateway(directory, agency_id, members)
    for domain in domains:
        grants |= _agents(directory, domain, members, regions.get(domain), exactly_once)
    for region in sorted(set(regions.values())):
        grants.add(Grant(region_principal(region), "TOPIC", aggregate_topic(region), "LITERAL",
                         "READ"))
    return sorted(grants)


def _topic(principal: str, name: str, *operations: str) -> set[Grant]:
    return {Grant(principal, "TOPIC", name, "LITERAL", op) for op in operations}


def _gateway(directory: TrustedDirectory, agency_id: str, members: Mapping) -> set[Grant]:
    """An agency's gateway: read its inbox in its own group, write its dead letters and every
    first hop it may publish to (referrals and consents to its domain; statuses, receipts and
    erasure confirmations to peers' inboxes or, for a domain, to the domain's inbox)."""
    who = agency_principal(agency_id)
    grants = _topic(who, topology.agency_inbox(agency_id), "READ")
    grants |= _topic(who, topology.deadletter(agency_id), "WRITE")
    grants.add(Grant(who, "GROUP", gateway_group(agency_id), "LITERAL", "READ"))
    for recipient in members:
        if recipient == agency_id:
            continue
        # first_hop tells apart only referrals and consents from everything else
        for record_type in ("Referral", "Receipt"):
            hop = topology.first_hop(directory, agency_id, record_type, recipient)
            if hop.seal_for in members:
                grants |= _topic(who, hop.topic, "WRITE")
    return grants


def _agents(directory: TrustedDirectory, domain: str, members: Mapping, region: str | None,
            exactly_once: bool) -> set[Grant]:
    """A domain's agents: read its inbox in its own group; read and write its state (table
    changelogs and releases); write its dead letters and audit chains and read back the release
    job's chain; write every next hop and every member's inbox (refusals and receipts to its
    members, erasure requests to any recipient: agents.forward.sink_topics); write its
    region's aggregate topic."""
    who = domain_principal(domain)
    grants = _topic(who, topology.domain_inbox(domain), "READ")
    grants.add(Grant(who, "GROUP", agents_group(domain), "LITERAL", "READ"))
    for name in (*topology.TABLES, topology.RELEASES):
        grants |= _topic(who, topology.table(domain, name), "READ", "WRITE")
    for name in (topology.deadletter(domain, "domain"), topology.audit(domain),
                 topology.release_audit(domain), topology.audit_checkpoints(domain)):
        grants |= _topic(who, name, "WRITE")
    grants |= _topic(who, topology.release_audit(domain), "READ")
    for recipient in members:
        hop = topology.next_hop(directory, domain, recipient)
        if hop.seal_for in members:
            grants |= _topic(who, hop.topic, "WRITE")
        grants |= _topic(who, topology.agency_inbox(recipient), "WRITE")
    if region is not None:
        grants |= _topic(who, aggregate_topic(region), "WRITE")
    if exactly_once:
        grants.add(Grant(who, "TRANSACTIONAL_ID", f"{agents_group(domain)}-", "PREFIXED",
                         "WRITE"))
    return grants
