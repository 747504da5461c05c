"""The audit chain: every decision of a policy domain's agents is an ``AuditRecord`` naming the
SHA-256 of the previous record's encoding, so changing, removing or reordering a record breaks
the chain at that point. There is one chain per partition of the domain's inbox (the agents
decide partition by partition, each in order); ``verify`` checks one chain.

Audit records carry ids, agency ids, purposes and field *names*, never case values.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from refmesh import codec
from refmesh.errors import CodecError

GENESIS = "0" * 64


@dataclass(frozen=True)
class Head:
    """Where a chain stands: the next sequence number and the hash of the last record."""

    seq: int = 0
    hash: str = GENESIS

    def to_bytes(self) -> bytes:
        return f"{self.seq}:{self.hash}".encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> "Head":
        if not data:
            return cls()
        seq, digest = data.decode().split(":")
        return cls(int(seq), digest)


def head_after(last: bytes | None) -> Head:
    """Where a chain stands after its last record ``last`` (None: an empty chain)."""
    if last is None:
        return Head()
    _, record = codec.decode(last, expect="AuditRecord")
    return Head(record["seq"] + 1, hashlib.sha256(last).hexdigest())


def append(head: Head, *, at: int, domain: str, event_id: str, decision: str,
           reason: str | None = None, sender: str | None = None, recipient: str | None = None,
           purpose: str | None = None, legal_basis: str | None = None,
           policy_version: str | None = None, fields: tuple[str, ...] = ()) -> tuple[bytes, Head]:
    """The next audit record (single-object encoding) after ``head``, and the new head."""
    record = {"seq": head.seq, "prevHash": head.hash, "at": at, "domain": domain,
              "eventId": event_id, "decision": decision, "reason": reason, "sender": sender,
              "recipient": recipient, "purpose": purpose, "legalBasis": legal_basis,
              "policyVersion": policy_version, "fieldsForwarded": list(fields)}
    data = codec.encode("AuditRecord", record)
    return data, Head(head.seq + 1, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Broken:
    """The first broken link: the position in the list given to ``verify`` and why."""

    index: int
    seq: int | None
    reason: str


def verify(chain: list[bytes]) -> Broken | None:
    """Check one chain from its first record on; return the first broken link, or None."""
    head = Head()
    for index, data in enumerate(chain):
        try:
            _, record = codec.decode(data, expect="AuditRecord")
        except CodecError as exc:
            return Broken(index, None, f"not an audit record ({exc})")
        if record["seq"] != head.seq:
            return Broken(index, record["seq"], f"sequence {record['seq']} where {head.seq} "
                                                "was expected (a record is missing or repeated)")
        if record["prevHash"] != head.hash:
            return Broken(index, record["seq"], "prevHash does not match the previous record "
                                                "(it was changed or removed)")
        head = Head(head.seq + 1, hashlib.sha256(data).hexdigest())
    return None
