"""The domain's table state after N forwarded referrals, made without pushing N referrals
through the mesh (bench/scale.py, the restore benchmark).

A domain worker that forwarded a referral wrote, in its event's partition, what
agents/forward.py's ``Forwarder.handle`` writes for it: the person's forwarding log
(``forwarded``), a slot of the person's cap and the window's counts (``counted``,
``aggregate-counts``), the audit chain's head (``audit-heads``), the replay memory (``seen``,
for events younger than the envelope's maximum age) and the partition's sealed state head
(``state-heads``); a consent event wrote the consent (``consents``). This module makes the same
writes with the same core functions (refmesh.domain, aggregate, audit, replay) and carries
them out through the worker's own ``agents.state.StateGuard`` over dict tables, so the heads are
the ones a worker would have sealed and a fresh worker's take-up check accepts the state.

What is left out, on purpose: the envelopes (nothing is sealed or opened: the referral never
has to exist as an event, only the records the domain keeps of it), the audit topic itself
(only its heads are table state) and the release job's deletion of final windows (their counts
and cap slots stay: more to restore, never less). The result is the tables' final value per
key, as a compacted changelog holds them; ``changelog`` lists them as records to produce, each
with the partition a worker writes it to (its event's partition).

The timeline: ``persons`` people, each with one consent and ``per_person`` referrals, their
events spread evenly over ``spread_ms`` up to ``now``, every referral forwarded to
``recipient``. Person j is ``subj-{j:06d}`` with consent ``consent-{j:06d}``, as
refmesh.samples names them, so a real referral of person j (samples.referral(n=j)) finds its
consent after the restore.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from agents.state import HEADS, Marks, StateGuard
from refmesh import aggregate, audit, domain, envelope, records, replay, samples, schemas, topology
from refmesh.directory import TrustedDirectory
from refmesh.keys import AgencyKeys

NS = uuid.UUID("3d0f6a52-7a4e-4c1e-9a55-0b6a4f1c2e77")  # synthetic referral and event ids
DAY_MS = 86_400_000


def broad_consent(n: int, controller: str, valid_from: int) -> dict:
    """Person ``n``'s consent to every purpose, role and data category, as the pipeline
    benchmark records it (bench/pipeline_mesh.Bench.consent), checked against its contract."""
    consent = samples.consent(n, controller=controller, valid_from=valid_from)
    consent.update(purposes=schemas.symbols("Purpose"),
                   recipientRoles=schemas.symbols("AgencyRole"),
                   dataCategories=schemas.symbols("DataCategory"), crossBorder=True,
                   crossBorderCountries=["ET"])
    return records.Consent.from_dict(consent).to_dict()


@dataclass
class State:
    """The tables (name -> key -> value), the partition each key lives in, and counts."""

    tables: dict[str, dict[bytes, bytes]]
    where: dict[tuple[str, bytes], int]
    partitions: int
    events: dict[int, int] = field(default_factory=dict)  # partition -> events applied
    persons: int = 0
    referrals: int = 0

    def records(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def changelog(self) -> Iterator[tuple[str, int, bytes, bytes]]:
        """(table name, partition, key, value) of every live entry: what a compacted
        changelog holds."""
        for name, table in self.tables.items():
            for key, value in table.items():
                partition = int(key) if name in (HEADS, "audit-heads") else \
                    self.where[(name, key)]
                yield name, partition, key, value

    def person_in(self, partition: int, partition_secret: bytes) -> int:
        """A person whose events live in ``partition`` (for a probe referral)."""
        for j in range(self.persons):
            key = topology.partition_key(partition_secret, f"subj-{j:06d}")
            if topology.partition_of(key, self.partitions) == partition:
                return j
        raise LookupError(f"no generated person lives in partition {partition}")


def generate(keys: AgencyKeys, directory: TrustedDirectory, *, sender: str, recipient: str,
             secret: bytes, partition_secret: bytes, partitions: int, now: int,
             referrals: int, per_person: int = 2, spread_ms: int = 365 * DAY_MS,
             policy_version: str | None = None, legal_basis: str = "Consent",
             fields: tuple[str, ...] = ("referralId", "subjectId", "senderAgency",
                                        "recipientAgency", "purpose", "legalBasis"),
             counting: domain.Counting = domain.Counting(),
             progress: Callable[[int], None] | None = None) -> State:
    """The state of a domain (``keys``) that recorded one consent per person and forwarded
    ``referrals`` referrals from ``sender`` to ``recipient`` (``per_person`` per person).
    ``secret`` is the domain's pseudonymisation secret (its table keys and state digests),
    ``partition_secret`` the one its gateways key a person's events with."""
    me = keys.agency_id
    persons = -(-referrals // per_person)
    tables: dict[str, dict[bytes, bytes]] = {name: {} for name in topology.TABLES}
    guard = StateGuard(keys, secret, tables, Marks(None), final=lambda start: False)
    for p in range(partitions):
        guard.ready(p)  # an empty partition, adopted as a fresh worker adopts it
    # every referral counts in the same coarse cell (one sample person's values)
    template = samples.referral(sender=sender, recipient=recipient, created_at=now)
    cell = aggregate.cell_of(template, "forwarded", directory.member(sender),
                             directory.member(recipient), now, counting.dims)
    consent0 = broad_consent(0, sender, now)
    counts: dict[bytes, dict] = {}  # counts table key -> counts, kept in clear here
    total = persons * (1 + per_person)
    step = spread_ms / max(total, 1)
    start = now - spread_ms
    recent = now - envelope.MAX_AGE_MS  # events from then on are still in the replay memory
    event = 0
    done = 0
    for j in range(persons):
        subject = f"subj-{j:06d}"
        key = topology.partition_key(partition_secret, subject)
        p = topology.partition_of(key, partitions)
        # the consent event
        at = int(start + event * step)
        event += 1
        consent = dict(consent0, consentId=f"consent-{j:06d}", subjectId=subject,
                       validFrom=at, events=[dict(consent0["events"][0], at=at)])
        table_key = domain.consent_key(key, sender, consent["consentId"], secret)
        writes = [("consents", table_key, domain.protect_consent(keys, table_key, consent))]
        writes += _audit(tables, p, at, me, str(uuid.uuid5(NS, f"c{j}")),
                         {"decision": "ConsentRecorded", "sender": sender,
                          "policy_version": policy_version})
        if at >= recent:
            writes += _seen(keys, tables, secret, sender, sender, str(uuid.uuid5(NS, f"c{j}")),
                            "Consent", consent, "ConsentRecorded", p, at)
        guard.apply(p, writes)
        entries: list[dict] = []
        for r in range(per_person):
            if done == referrals:
                break
            at = int(start + event * step)
            event += 1
            referral_id = str(uuid.uuid5(NS, f"r{done}"))
            event_id = str(uuid.uuid5(NS, f"e{done}"))
            window, _ = aggregate.window_of(aggregate.event_time(at, at, counting.max_late_ms),
                                            counting.unit)
            slot = aggregate.free_slot(tables["counted"].get, secret, key, window, "decision",
                                       counting.max_per_person)
            entries.append({"recipient": recipient, "referralId": referral_id,
                            "consentId": consent["consentId"], "sender": sender,
                            "cell": cell if slot is not None else None})
            writes = [("forwarded", key, envelope.protect(keys, b"log|" + key,
                                                          json.dumps(entries).encode()))]
            if slot is not None:  # Forwarder._count: the counts, then the slot
                counts_key = f"{p}|{window}".encode()
                counts[counts_key] = aggregate.count(counts.get(counts_key, {}), cell)
                writes += [("aggregate-counts", counts_key,
                            domain.protect_counts(keys, counts_key, counts[counts_key])),
                           ("counted", slot, str(window).encode())]
            writes += _audit(tables, p, at, me, event_id, {
                "decision": "Forwarded", "sender": sender, "recipient": recipient,
                "purpose": template["purpose"], "legal_basis": legal_basis,
                "policy_version": policy_version, "fields": fields})
            if at >= recent:
                referral = dict(template, referralId=referral_id, subjectId=subject,
                                consentId=consent["consentId"], createdAt=at)
                writes += _seen(keys, tables, secret, sender, sender, event_id, "Referral",
                                referral, "Forwarded", p, at)
            guard.apply(p, writes)
            done += 1
            if progress is not None and done % 50_000 == 0:
                progress(done)
    events = {p: head.seq for p, head in guard.running.items()}
    where = {k: v for k, v in guard.written.items()}
    return State(tables, where, partitions, events, persons, done)


def _audit(tables: dict, partition: int, at: int, me: str, event_id: str,
           entry: dict) -> list[tuple[str, bytes, bytes]]:
    """Forwarder._audit's table write: the partition's chain head after the event's record."""
    head_key = str(partition).encode()
    head = audit.Head.from_bytes(tables["audit-heads"].get(head_key))
    _, head = audit.append(head, at=at, domain=me, event_id=event_id, **entry)
    return [("audit-heads", head_key, head.to_bytes())]


def _seen(keys: AgencyKeys, tables: dict, secret: bytes, signer: str, origin: str,
          event_id: str, kind: str, record: dict, outcome: str, partition: int,
          at: int) -> list[tuple[str, bytes, bytes | None]]:
    """domain.handle's replay memory writes for an accepted event."""
    seen_key = replay.entry_key(secret, signer, origin, event_id)
    seen = replay.Seen(replay.digest(kind, record), outcome, None, replay.until(at, at))
    return [("seen", k, v) for k, v in replay.remember(keys, tables["seen"].get, seen_key,
                                                       seen, partition, at)]
