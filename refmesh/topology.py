"""Topic names and routing. Topics are per agency and per policy domain so that a production
Kafka can restrict each agency to its own topics with prefixed ACLs (docs/protocol.md:
Topics).
Record keys never carry anything about the person: where events are partitioned by person, the
key is a keyed hash (HMAC-SHA256) of the pseudonymous subject id under a domain secret."""
from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from refmesh.aggregate.wire import topic as aggregate_topic
from refmesh.directory import TrustedDirectory

PREFIX = "refmesh"


def _safe(agency_id: str) -> str:
    return agency_id.replace("/", ".")


def agency_inbox(agency_id: str) -> str:
    """Events sealed for one agency's gateway."""
    return f"{PREFIX}.agency.{_safe(agency_id)}.in"


def domain_inbox(domain_id: str) -> str:
    """Events sealed for a policy domain's agents (from its members or other domains)."""
    return f"{PREFIX}.domain.{_safe(domain_id)}.in"


def deadletter(owner_id: str, kind: str = "agency") -> str:
    """Where an agency's gateway or a domain's agents put events that failed a check."""
    return f"{PREFIX}.{kind}.{_safe(owner_id)}.deadletter"


#: The most of a refused event a dead letter keeps. A broker may hold events far larger than a
#: producer may write (the embedded broker takes 8 MiB; kafka-python and aiokafka refuse to
#: send more than 1 MiB by default), and a dead letter that cannot be written would stop its
#: consumer at that event for good.
DEADLETTER_MAX_VALUE = 512 * 1024
DEADLETTER_MAX_KEY = 1024


def dead_letter(key: bytes | None, value: bytes | None, reason: str,
                source: str) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter for a refused event: the event as it came, cut
    to a size any producer can write, with the reason, the source (topic/partition@offset)
    and, when cut, the original sizes."""
    headers = [("refmesh-reason", reason.encode()), ("refmesh-source", source.encode())]
    if value is not None and len(value) > DEADLETTER_MAX_VALUE:
        headers.append(("refmesh-value-size", str(len(value)).encode()))
        value = value[:DEADLETTER_MAX_VALUE]
    if key is not None and len(key) > DEADLETTER_MAX_KEY:
        headers.append(("refmesh-key-size", str(len(key)).encode()))
        key = key[:DEADLETTER_MAX_KEY]
    return key, value, headers


def audit(domain_id: str) -> str:
    """The domain's audit chain (one chain per partition)."""
    return f"{PREFIX}.domain.{_safe(domain_id)}.audit"


def release_audit(domain_id: str) -> str:
    """The audit chain of the domain's release job (one chain, in partition 0): every release
    published to the region, and every release refused because the epsilon budget ran out."""
    return f"{PREFIX}.domain.{_safe(domain_id)}.release-audit"


def audit_checkpoints(domain_id: str) -> str:
    """The domain's signed checkpoints of its audit chains' heads (refmesh.audit.checkpoint):
    the checkpoint of partition p of either audit topic lives in partition p."""
    return f"{PREFIX}.domain.{_safe(domain_id)}.audit-checkpoints"


def table(domain_id: str, name: str) -> str:
    """Changelog topic of one of the domain agents' tables (consents, forwarded, audit-heads):
    compacted, values encrypted for the domain, keys keyed hashes."""
    return f"{PREFIX}.domain.{_safe(domain_id)}.{name}"


TABLES = ("consents", "forwarded", "audit-heads", "aggregate-counts", "counted", "seen",
          "state-heads")
RELEASES = "aggregate-releases"  # the last release of each window (compacted, encrypted)


def partition_key(secret: bytes, subject_id: str) -> bytes:
    """Kafka record key for events about one person: co-partitions them without naming them."""
    return hmac.digest(secret, subject_id.encode("utf-8"), "sha256").hex()[:32].encode()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts a record with ``key`` in (murmur2 of the
    key, as the Java client, kafka-python and aiokafka compute it), of ``partitions``."""
    return (_murmur2(key) & 0x7FFFFFFF) % partitions


def _murmur2(data: bytes) -> int:
    """MurmurHash2 with Kafka's seed (org.apache.kafka.common.utils.Utils.murmur2)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little") * m & mask
        k = (k ^ (k >> 24)) * m & mask
        h = (h * m & mask) ^ k
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = h * m & mask
    h = (h ^ (h >> 13)) * m & mask
    return h ^ (h >> 15)


def domain_of(directory: TrustedDirectory, agency_id: str) -> str:
    """The policy domain that forwards for ``agency_id`` (itself when it has none)."""
    return directory.member(agency_id)["domain"] or agency_id


@dataclass(frozen=True)
class Hop:
    seal_for: str  # the agency (gateway or domain) whose key the event is sealed with
    topic: str


def first_hop(directory: TrustedDirectory, sender: str, record_type: str,
              recipient: str) -> Hop:
    """Where a gateway publishes: referrals go to the sender's policy domain, never straight to
    another agency; statuses, receipts and erasure confirmations go gateway to gateway."""
    if record_type in ("Referral", "Consent"):
        domain = domain_of(directory, sender)
        return Hop(domain, domain_inbox(domain))
    if is_domain(directory, recipient):  # e.g. an erasure confirmation for the domain's audit
        return Hop(recipient, domain_inbox(recipient))
    return Hop(recipient, agency_inbox(recipient))


def is_domain(directory: TrustedDirectory, agency_id: str) -> bool:
    """Whether ``agency_id`` is a policy domain (runs agents) rather than a member gateway."""
    return directory.member(agency_id)["domain"] is None


def next_hop(directory: TrustedDirectory, domain: str, recipient: str) -> Hop:
    """Where a domain forwards a referral: to the recipient's gateway when the recipient is in
    this domain, else to the recipient's own domain (domain to domain, as in a TRM)."""
    target = domain_of(directory, recipient)
    if target == domain:
        return Hop(recipient, agency_inbox(recipient))
    return Hop(target, domain_inbox(target))


def mesh_topics(directory: TrustedDirectory,
                regions: Iterable[str] = ()) -> list[tuple[str, bool]]:
    """Every topic of the mesh as (name, compacted), with the aggregate topic of each region
    that a domain publishes to (the operator creates them all: under the broker's ACLs nobody
    else may)."""
    names: list[tuple[str, bool]] = [(aggregate_topic(r), False) for r in sorted(set(regions))]
    for agency_id, member in sorted(directory.members.items()):
        names += [(agency_inbox(agency_id), False), (deadletter(agency_id), False)]
        if member["domain"] is None:
            names += [(domain_inbox(agency_id), False), (deadletter(agency_id, "domain"), False),
                      (audit(agency_id), False), (release_audit(agency_id), False),
                      (audit_checkpoints(agency_id), False)]
            names += [(table(agency_id, name), True) for name in (*TABLES, RELEASES)]
    return names
