"""The record of access: who viewed, changed or exported what at a gateway, when. Never the data
itself: an entry names the actor (a username, or ``token:<name>``), the action, and the ids of
what it touched (a referral by sender and id, a consent id, an account name).

Entries form a hash chain like the audit chain (refmesh.audit): each names the SHA-256 of the
previous entry's canonical form, so a changed, removed, inserted or reordered entry breaks the
chain at that point. A chain alone does not show a cut tail: ``verify`` can be given a head
written down earlier (an export prints the head it reached) and then says whether the chain
still passes through it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

GENESIS = "0" * 64
#: the fields of an entry, in the order of its canonical form
FIELDS = ("seq", "at", "actor", "action", "kind", "sender", "ref", "prev")
#: what an entry can name (``kind``)
KINDS = ("referral", "consent", "account", "token", "record", "list")


def canonical(entry: dict) -> bytes:
    """The bytes an entry's hash covers: its fields, in order, as compact JSON."""
    return json.dumps([entry[f] for f in FIELDS], ensure_ascii=False,
                      separators=(",", ":")).encode()


def digest(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


@dataclass(frozen=True)
class Head:
    """Where a chain stands: the next sequence number and the hash of the last entry."""

    seq: int = 0
    hash: str = GENESIS

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        try:
            seq, value = text.split(":")
            if len(value) != 64 or int(value, 16) < 0 or int(seq) < 0:
                raise ValueError
            return cls(int(seq), value)
        except ValueError:
            raise ValueError(f"head {text!r} is not SEQ:SHA256 as an export printed it") \
                from None


def entry(head: Head, *, at: int, actor: str, action: str, kind: str, ref: str,
          sender: str = "") -> tuple[dict, Head]:
    """The next entry after ``head`` and the head after it."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    made = {"seq": head.seq, "at": at, "actor": actor, "action": action, "kind": kind,
            "sender": sender, "ref": ref, "prev": head.hash}
    return made, Head(head.seq + 1, digest(made))


@dataclass(frozen=True)
class Broken:
    """The first place the chain does not hold: the entry's position and why."""

    index: int
    seq: int | None
    reason: str


def verify(entries: list[dict], since: Head | None = None) -> tuple[Head, Broken | None]:
    """Check a chain from its first entry; return the head it reached and the first broken
    link (None: intact). ``since``: a head seen earlier, which the chain must pass through
    (else its tail was cut or rewritten after that head was written down)."""
    head = Head()
    passed = since is None or since == head
    for index, item in enumerate(entries):
        if not isinstance(item, dict) or any(f not in item for f in FIELDS):
            return head, Broken(index, None, "not an entry of the record of access")
        seq, prev = item["seq"], item["prev"]
        if seq != head.seq:
            return head, Broken(index, seq, f"sequence {seq} where {head.seq} was expected "
                                            "(an entry is missing or repeated)")
        if prev != head.hash:
            return head, Broken(index, seq, "prev does not match the previous entry (it was "
                                            "changed or removed)")
        head = Head(seq + 1, digest(item))
        passed = passed or head == since
    if not passed:
        return head, Broken(len(entries), None,
                            f"the chain does not pass through the head {since} written down "
                            f"earlier (it ends at {head}): entries were cut or rewritten")
    return head, None
