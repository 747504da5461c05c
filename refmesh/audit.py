"""The audit chain: every decision of a policy domain's agents is an ``AuditRecord`` naming the
SHA-256 of the previous record's encoding, so changing, removing or reordering a record breaks
the chain at that point. There is one chain per partition of the domain's inbox (the agents
decide partition by partition, each in order); ``verify`` checks one chain.

Audit records carry ids, agency ids, purposes and field *names*, never case values.

A hash chain alone shows a changed record, not a cut tail or a record appended by whoever can
write the topic (anyone can compute SHA-256). So the domain also signs its chain heads: an
``AuditCheckpoint`` (chain, partition, seq, head hash, time) every N records or T seconds and at
shutdown, on its own topic. ``findings`` compares a chain with its checkpoints: a valid
checkpoint the chain does not reach or does not match is a truncation, a checkpoint that does not
verify against the domain's key in the signed directory is forged, and records after the last
matching checkpoint are an unconfirmed tail.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from refmesh import codec, keys
from refmesh.errors import CodecError, DirectoryError

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


# --- signed checkpoints of chain heads ----------------------------------------------------------

def checkpoint(head: Head, *, domain_keys: keys.AgencyKeys, chain: str, partition: int,
               at: int) -> bytes:
    """The signed ``AuditCheckpoint`` of ``head`` (records 0 .. head.seq-1 of ``chain`` in
    ``partition``). The signature covers the encoding with an empty signature, which starts
    with the AuditCheckpoint fingerprint and so cannot be taken for another signed record."""
    body = {"domain": domain_keys.agency_id, "chain": chain, "partition": partition,
            "seq": head.seq, "headHash": head.hash, "at": at,
            "signerKeyId": domain_keys.signing.key_id, "signature": b""}
    signature = keys.sign(domain_keys.signing, codec.encode("AuditCheckpoint", body))
    return codec.encode("AuditCheckpoint", {**body, "signature": signature})


def checkpoint_due(head: Head, last: tuple[int, int] | None, now: int, *, every: int,
                   seconds: float) -> bool:
    """Whether a chain at ``head`` needs a new checkpoint: ``last`` is (seq, at) of the last
    one written (None: none yet); due after ``every`` more records, or ``seconds`` after the
    last one when records were added since."""
    if last is None:
        return head.seq > 0
    seq, at = last
    return head.seq >= seq + every or (head.seq > seq and now - at >= seconds * 1000)


def checkpoints_due(heads: Mapping[int, Head], last: Mapping[int, tuple[int, int]], now: int,
                    *, seconds: float) -> list[int]:
    """The partitions whose chains need a checkpoint between events (a timer; at shutdown
    ``seconds`` is 0), in order. ``heads``: each partition's head whose records are known
    to be committed; ``last``: (seq, at) of each partition's last checkpoint. Due: the head
    moved since that checkpoint (or there is none and the chain is not empty), and that
    checkpoint is at least ``seconds`` old."""
    due = []
    for partition, head in sorted(heads.items()):
        seq, at = last.get(partition, (0, None))
        if head.seq > seq and (at is None or now - at >= seconds * 1000):
            due.append(partition)
    return due


@dataclass(frozen=True)
class Finding:
    """One thing ``findings`` reports about a chain. ``kind``: ``changed`` (a broken link),
    ``truncated`` (the chain ends before, or differs from, a valid checkpoint), ``forged`` (a
    checkpoint that does not verify), ``unconfirmed`` (records after the last matching
    checkpoint). All but ``unconfirmed`` mean the audit was tampered with."""

    kind: str
    seq: int | None
    message: str

    @property
    def fatal(self) -> bool:
        return self.kind != "unconfirmed"


def changed(broken: Broken) -> Finding:
    """The finding of a broken link (the position in the chain is its offset on a topic that
    was never truncated by retention)."""
    return Finding("changed", broken.seq, f"at record {broken.index} (offset {broken.index}, "
                                          f"seq {broken.seq}): {broken.reason}")


def _checked(data: bytes, directory, domain: str, chain: str, partition: int
             ) -> tuple[dict | None, str | None]:
    """(checkpoint, None) when ``data`` is a checkpoint of this chain signed by ``domain``'s
    key; (None, None) when it is a genuine-looking record about another chain; (record or None,
    reason) when it is forged."""
    try:
        writer, cp = codec.decode_as_written(data, expect="AuditCheckpoint")
    except CodecError as exc:
        return None, f"not an audit checkpoint ({exc})"
    if (cp["chain"], cp["partition"]) != (chain, partition):
        return None, None
    if cp["domain"] != domain:
        return cp, f"names domain {cp['domain']}, not {domain}"
    try:
        # the key must have been valid when the checkpoint was signed
        public = directory.signing_key(domain, cp["signerKeyId"], cp["at"])
    except DirectoryError as exc:
        return cp, f"signer key {cp['signerKeyId']}: {exc}"
    if not keys.verify(public, cp["signature"],
                       codec.encode_with(writer, {**cp, "signature": b""})):
        return cp, "the signature does not verify against the domain's key"
    return cp, None


def findings(records: list[bytes], checkpoints: list[bytes], *, directory, domain: str,
             chain: str, partition: int) -> list[Finding]:
    """Everything wrong with one chain (``records`` in order) given every record read from the
    domain's checkpoint topic (``checkpoints``; those about other chains are ignored): a changed
    record, a truncation, a forged checkpoint, an unconfirmed tail. [] when the chain is intact
    and its last record is covered by a valid checkpoint."""
    out: list[Finding] = []
    broken = verify(records)
    if broken is not None:
        out.append(changed(broken))
    hashes = [GENESIS] + [hashlib.sha256(r).hexdigest() for r in records]
    confirmed, short, differ = 0, [], []
    for data in checkpoints:
        cp, forged = _checked(data, directory, domain, chain, partition)
        if forged is not None:
            out.append(Finding("forged", cp["seq"] if cp else None,
                               f"checkpoint{' at seq ' + str(cp['seq']) if cp else ''} "
                               f"is forged: {forged}"))
        elif cp is None:
            continue
        elif cp["seq"] > len(records):
            short.append(cp)
        elif hashes[cp["seq"]] != cp["headHash"]:
            differ.append(cp)
        else:
            confirmed = max(confirmed, cp["seq"])
    if short:
        top = max(c["seq"] for c in short)
        out.append(Finding("truncated", len(records),
                           f"truncated: the chain ends at seq {len(records)} but a signed "
                           f"checkpoint covers {top} records"))
    if differ:
        low = min(c["seq"] for c in differ)
        out.append(Finding("truncated", low,
                           f"truncated or rewritten: the head hash at seq {low} differs from "
                           f"the signed checkpoint ({len(differ)} checkpoint(s) differ)"))
    if len(records) > confirmed:
        n = len(records) - confirmed
        out.append(Finding("unconfirmed", confirmed,
                           f"unconfirmed tail of {n} record{'s' if n != 1 else ''} after "
                           f"checkpoint seq {confirmed}"))
    return out
