"""The domain's state on the broker cannot be rolled back unnoticed (THREATS.md: state read
back is the newest version this process wrote, or a newer one it can verify).

The agents keep their tables (consents, forwarding log, counts, counted marks, accepted event
ids, audit heads) in compacted changelog topics on the untrusted broker. Their values are
encrypted and bound to their key, so nobody without the domain's keys can forge one; but
whoever can write a changelog can put an older value back, or a tombstone.

So each partition of the domain's state has a **head**: a version number that every event's
writes increase by one, and for each group of entries (a table, or a table's time window) a
digest of every live entry, a sum modulo 2**256 of keyed hashes of (group, key, value)
(a multiset hash; keyed with the domain's secret, so nobody else can compute or aim at one).
The head is encrypted and authenticated for the domain with its partition bound in (the table
``state-heads``), and written with the event's other writes, in its transaction under
``exactly_once``. Outside the broker, each worker keeps a **mark** per partition: the newest
head it wrote or verified, and while an event's writes are in flight, the digests after each
of them.

When a worker takes up a partition (after a restart or a rebalance, once faust restored the
tables), ``problem`` compares what was restored with the head and the mark:
- a value that is not the newest, an entry removed by a tombstone the domain did not write, or
  an entry put back: the group's digest does not match the head;
- the whole state, head included, rolled back to an older head: its version is below the mark;
- the head tombstoned: no head, but a mark.
A crash between an event's writes (no transactions on the embedded broker) leaves, per group,
a prefix of that event's writes (one changelog partition keeps their order): accepted only
while the mark says that event was not committed. A newer head written by another worker is
accepted when the state matches it exactly. Windows of counts that are final (the release job
deletes them) are not checked.
"""
from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from refmesh import envelope
from refmesh.keys import AgencyKeys

ENTRY_LABEL = b"refmesh-state-entry-v1\0"
HEAD_CONTEXT = b"state-head|"
MODULUS = 1 << 256
WINDOWED = ("aggregate-counts", "counted")  # tables whose entries belong to a time window

Write = tuple[str, bytes, "bytes | None", "bytes | None"]  # (table, key, old value, new value)
Entry = tuple[str, bytes, bytes]  # (table, key, value)


@dataclass(frozen=True)
class Head:
    """A partition's state as the domain last wrote it."""

    seq: int
    digests: dict[str, int] = field(default_factory=dict)  # group -> digest (0: empty)

    def to_json(self) -> dict:
        return {"seq": self.seq, "digests": {g: f"{d:064x}" for g, d in self.digests.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> "Head":
        return cls(int(doc["seq"]), {g: int(d, 16) for g, d in doc["digests"].items()})


@dataclass(frozen=True)
class Mark:
    """What a worker keeps outside the broker for one partition: the newest head it committed
    or verified and, while events are not committed, the last one's head (``pending``) and the
    digests of each group after each of its writes. Under exactly_once the events since the
    commit share one transaction: the state is then the committed head or the pending one."""

    head: Head
    pending: Head | None = None
    steps: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"head": self.head.to_json(),
                "pending": None if self.pending is None else self.pending.to_json(),
                "steps": {g: [f"{d:064x}" for d in s] for g, s in self.steps.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> "Mark":
        pending = doc.get("pending")
        return cls(Head.from_json(doc["head"]),
                   None if pending is None else Head.from_json(pending),
                   {g: [int(d, 16) for d in s] for g, s in doc.get("steps", {}).items()})


def group_of(table: str, key: bytes, value: bytes) -> str:
    """The group an entry counts in: its table, or for counts and counted marks, the table
    and the window (counts: key ``<partition>|<window start>``; counted: value the window
    start)."""
    if table == "aggregate-counts":
        return f"{table}|{key.rsplit(b'|', 1)[-1].decode()}"
    if table == "counted":
        return f"{table}|{value.decode()}"
    return table


def window_of(group: str) -> int | None:
    table, _, window = group.partition("|")
    return int(window) if table in WINDOWED and window else None


def entry_hash(secret: bytes, group: str, key: bytes, value: bytes) -> int:
    data = b"".join((ENTRY_LABEL, group.encode(), b"\0", len(key).to_bytes(4, "big"), key,
                     value))
    return int.from_bytes(hmac.digest(secret, data, "sha256"), "big")


def digests(secret: bytes, entries: Iterable[Entry]) -> dict[str, int]:
    """The digest of each group of a partition's live entries."""
    out: dict[str, int] = {}
    for table, key, value in entries:
        group = group_of(table, key, value)
        out[group] = (out.get(group, 0) + entry_hash(secret, group, key, value)) % MODULUS
    return {g: d for g, d in out.items() if d}


def step(head: Head, writes: Iterable[Write], secret: bytes) -> tuple[Head, dict[str, list[int]]]:
    """The head after an event's ``writes`` (in the order they are sent, old values as they
    were before each), and each touched group's digest after each of its writes."""
    current = dict(head.digests)
    steps: dict[str, list[int]] = {}

    def move(group: str, delta: int) -> None:
        current[group] = (current.get(group, 0) + delta) % MODULUS
        steps.setdefault(group, []).append(current[group])

    for table, key, old, new in writes:
        if old is not None:
            group = group_of(table, key, old)
            move(group, -entry_hash(secret, group, key, old))
        if new is not None:
            group = group_of(table, key, new)
            move(group, entry_hash(secret, group, key, new))
    return Head(head.seq + 1, {g: d for g, d in current.items() if d}), steps


def drop_final(head: Head, final: Callable[[int], bool]) -> Head:
    """``head`` without the groups of final windows (the release job deletes them)."""
    return Head(head.seq, {g: d for g, d in head.digests.items() if not _final(g, final)})


def digest_key(keys: AgencyKeys) -> bytes:
    """A key for ``entry_hash`` that only the domain's keys give (for the release job, which
    holds the keys but not the domain's secret): the deterministic authenticated encryption
    of nothing under a label of its own."""
    return envelope.protect(keys, b"state-digest-key", b"")


def seal(keys: AgencyKeys, partition: int | str, head: Head) -> bytes:
    """``partition``: a partition of the agents' tables, or a name (``releases``)."""
    return envelope.protect(keys, HEAD_CONTEXT + str(partition).encode(),
                            json.dumps(head.to_json(), sort_keys=True).encode())


def open_head(keys: AgencyKeys, partition: int | str, data: bytes) -> Head:
    """The head of ``partition``; SealError if it was not sealed by the domain for it."""
    return Head.from_json(json.loads(envelope.unprotect(
        keys, HEAD_CONTEXT + str(partition).encode(), data)))


def problem(partition: int | str, head: Head | None, found: dict[str, int], mark: Mark | None,
            final: Callable[[int], bool]) -> str | None:
    """What is wrong with a partition's restored state (``found``: its digests, ``head`` its
    restored head), given this worker's ``mark``; None when it is the newest this worker
    wrote, or a newer one that matches its head. In words for an operator, no case data.
    ``partition`` may be a name (``releases``: the release job's state)."""
    where = f"partition {partition} of the domain's state" if isinstance(partition, int) \
        else f"the domain's {partition} state"
    if head is None:
        if mark is None:
            return None  # first start (or state written before heads existed): adopted
        if mark.head.seq == 0:  # adopted without a head, none written since (or not landed)
            if _within(found, mark, final, mark.head.digests):
                return None
            return f"{where} changed since this worker adopted it, without a head"
        return (f"{where}: its head is gone (a tombstone the domain did not write) while this "
                f"worker last saw version {mark.head.seq}")
    checked = {g: d for g, d in found.items() if not _final(g, final)}
    if mark is not None and mark.pending is not None and \
            head.seq in (mark.head.seq, mark.pending.seq):
        # events since the last commit were not committed: the state is at the committed head
        # or the pending one (exactly_once), or holds a prefix of the last event's writes
        if _within(found, mark, final, mark.head.digests):
            return None
        return (f"{where} matches neither version {mark.head.seq} nor any part of the "
                f"uncommitted version {mark.pending.seq}: an older value or a tombstone the "
                "domain did not write")
    if mark is not None and head.seq < mark.head.seq:
        return (f"{where} was rolled back: version {head.seq} on the broker, version "
                f"{mark.head.seq} written or verified by this worker")
    if mark is not None and head.seq == mark.head.seq and \
            drop_final(head, final).digests != drop_final(mark.head, final).digests:
        return f"{where}: version {head.seq} on the broker is not the one this worker wrote"
    wrong = sorted(g for g in set(checked) | set(drop_final(head, final).digests)
                   if checked.get(g, 0) != head.digests.get(g, 0))
    if wrong:
        return (f"{where} does not match its version {head.seq}: {', '.join(wrong)} "
                "hold an older value, a tombstone the domain did not write, or an entry put "
                "back")
    return None


def _final(group: str, final: Callable[[int], bool]) -> bool:
    window = window_of(group)
    return window is not None and final(window)


def _within(found: dict[str, int], mark: Mark, final: Callable[[int], bool],
            before: dict[str, int]) -> bool:
    """Each group holds its digest at the committed head, after one of the last pending event's
    writes, or at the pending head (the last event of a transaction of several)."""
    pending = mark.pending
    groups = set(found) | set(before) | set(mark.steps) | \
        (set(pending.digests) if pending is not None else set())
    for group in groups:
        if _final(group, final):
            continue
        allowed = {before.get(group, 0), *mark.steps.get(group, ())}
        if pending is not None:
            allowed.add(pending.digests.get(group, 0))
        if found.get(group, 0) not in allowed:
            return False
    return True
