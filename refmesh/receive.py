"""What a gateway does with one opened event from its inbox: pure, the changes returned as a value.

    decide(event, parties, view, now) -> Changes

``gateways/store.py`` answers what ``view`` asks inside its transaction and carries out the
changes in that same transaction; ``gateways/inbox.py`` dead-letters a refused event with its
reason. Deny by default (THREATS.md): a signature proves who sent an event, this module decides
whether that party may say it.

- Referral: only from my own policy domain, addressed to me; kept under (its sender, its id),
  so that two agencies choosing the same id never collide and nobody can squat another
  sender's id. Receipted to its sender (Stored or Duplicate), answered with a ``received``
  status.
- ReferralStatus: only from the referral's counterpart, and only a state that the closed loop
  (``refmesh.loop``) lets that role set: the recipient receives, accepts, rejects, progresses,
  completes or fails; the sender revokes; only the sender's own domain refuses, and only a
  referral not yet delivered (a refusal never overrides a receipt). Statuses arrive out of
  order: a later state is applied, an earlier one only goes into the history.
- Receipt: closes an outbox entry only when it comes from that entry's recipient.
- ErasureNotice request: only from the domain that delivered the copies, that is the domain of
  their sender as the directory says; erases those copies, and confirms to the domain (the ids
  it asked about) and to each sender (only that sender's ids).
- ErasureNotice confirmation: only from the agency that held every referral it names.

The erasure of a referral's copies is part of its timeline (``Mark``): a request marks each
copy it erases ``erasure_requested``, a confirmation marks each referral it names
``erasure_confirmed``, so that the case worker (and the change feed) see them beside the
statuses.

Replays (issue 12, item 4; the domain's half is ``refmesh.replay``): the gateway remembers every
event it accepted (stored, or answered as a duplicate) under (signer, origin, event id), with a
digest of its signed content (``replay.digest``), until its envelope is too old to open
(``replay.until``: ``envelope.MAX_AGE_MS``). An id remembered with other content is a replay,
refused ``replay``, unless the event names a delivery already held, (origin, delivery key) in
the inbox: that is a re-send of what is held, answered Duplicate and never stored again (the
domain re-projects a referral it forwards again at its own time, so an age band or a newer
policy may change the content under the sender's event id). The same content again follows
the duplicate path as before. A refused event is not remembered: a status refused
``unknown_referral`` because it overtook its referral is accepted when re-sent. Receipts are
not remembered either: a receipt only closes the one entry it names, from its recipient, which
is idempotent, and a gateway re-arms a lost receipt with a new outcome under its first id.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from refmesh import loop, replay, topology
from refmesh.errors import DirectoryError

RECIPIENT_STATES = frozenset({"received", "accepted", "rejected", "in_progress", "completed",
                              "failed"})
#: who may set each state a peer sends ("requested" is only ever set locally, by the sender)
OWNER = {**{s: "recipient" for s in RECIPIENT_STATES}, "revoked": "sender", "refused": "domain"}


def _closure() -> dict[str, frozenset[str]]:
    reach = {}
    for state in loop.RANK:
        seen, frontier = set(), [state]
        while frontier:
            for nxt in loop.NEXT.get(frontier.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        reach[state] = frozenset(seen)
    return reach


#: the states reachable from each state in one or more steps of the closed loop
REACH = _closure()

#: every reason a gateway refuses an event for (the dead letter's refmesh-reason header)
REASONS = frozenset({
    "misaddressed", "sender_mismatch", "unexpected_type",  # loop.addressing_problem
    "not_a_party",  # a status from an agency that is neither sender nor recipient
    "wrong_role",  # a party setting a state that its role may not set
    "unknown_referral",  # about a referral this gateway does not know (yet)
    "transition_not_allowed",  # a state the closed loop does not reach from the current one
    "missing_reason",  # rejected, failed or refused without a reason code
    "already_delivered",  # a refusal of a referral the recipient already received
    "unknown_delivery",  # a receipt for nothing this gateway waits a receipt for
    "not_the_recipient",  # a receipt from another agency than the entry's recipient
    "not_the_delivering_domain",  # an erasure request for copies another domain delivered
    "not_the_holder",  # an erasure confirmation from an agency that did not hold the copy
    "replay",  # an event id accepted before, now with other content for another delivery
})


@dataclass(frozen=True)
class Event:
    """An opened, validated event (``envelope.open``): what its signed header says."""

    event_id: str
    record_type: str
    sender: str  # the envelope's signer, verified against the signed directory
    record: dict
    kafka_key: bytes | None = None  # unsigned: kept only to route outcome copies, never decides
    created_at: int | None = None  # the signed header's createdAt (None: taken as ``now``)
    # the record's single-object encoding as it arrived (``envelope.Opened.inner``), for
    # ``replay.digest``; empty: encoded again
    inner: bytes = field(default=b"", repr=False, compare=False)


@dataclass(frozen=True)
class Parties:
    """What the signed directory says about agencies, as far as a gateway needs it."""

    me: str
    domain_of: Callable[[str], str]  # an agency's policy domain (a domain's is itself)

    @classmethod
    def of(cls, directory, me: str) -> "Parties":
        return cls(me, lambda agency: topology.domain_of(directory, agency))

    @property
    def my_domain(self) -> str:
        return self.domain_of(self.me)

    def is_domain(self, agency: str) -> bool:
        return self.domain_of(agency) == agency

    def domain_or_none(self, agency: str) -> str | None:
        try:
            return self.domain_of(agency)
        except DirectoryError:  # no longer a member: no domain speaks for it
            return None


@dataclass(frozen=True)
class Held:
    """A referral as the gateway holds it: the referral's sender and id are its key."""

    sender: str
    referral_id: str
    direction: str  # out: this gateway sent it; in: this gateway received it
    peer: str  # the recipient (out) or the sender (in)
    state: str
    consent_id: str | None = None  # as the held copy names it (pseudonymised for us)


@dataclass(frozen=True)
class Entry:
    """An outbox entry: something this gateway sent and may wait a receipt for."""

    delivery_key: str
    recipient: str
    state: str  # pending, confirmed, refused, sent
    needs_receipt: bool = True


@dataclass(frozen=True)
class View:
    """Read access to the gateway's store, inside the transaction that applies the changes."""

    referral: Callable[[str, str], Held | None]  # (sender, referral id)
    copies: Callable[[str], tuple[Held, ...]]  # received referrals with this id, any sender
    received_from: Callable[[str], tuple[str, ...]]  # senders a referral id ever came from
    entry: Callable[[str], Entry | None]  # outbox entry by delivery key
    seen: Callable[[str, str], bool]  # (origin, delivery key) already in the inbox
    # (signer, origin, event id) -> the digest of what was accepted under it, while remembered
    event: Callable[[str, str, str], str | None]


@dataclass(frozen=True)
class Send:
    """Queue a record in the outbox under ``key`` (the key its recipient's receipt names)."""

    record_type: str
    record: dict
    recipient: str
    key: str
    needs_receipt: bool = True


@dataclass(frozen=True)
class Keep:
    """Keep a received referral under (sender, referral id), in state ``received``."""

    sender: str
    referral_id: str
    record: dict
    kafka_key: bytes | None


@dataclass(frozen=True)
class StatusChange:
    """A status for the history of the referral (sender, referral id); ``state`` the state the
    referral moves to, or None when it is only recorded (an earlier state arriving late)."""

    sender: str
    referral_id: str
    status: dict
    state: str | None


#: the timeline entries that are not statuses: the erasure of a referral's copies
ERASURE_REQUESTED, ERASURE_CONFIRMED = "erasure_requested", "erasure_confirmed"


@dataclass(frozen=True)
class Mark:
    """An entry in the timeline of the referral (sender, referral id) that is not a status:
    ``what`` (erasure_requested or erasure_confirmed), ``reason`` (an ErasureReason), ``by``
    (the agency that asked or confirmed) and ``at`` (when it says it did)."""

    sender: str
    referral_id: str
    what: str
    reason: str | None
    by: str
    at: int


@dataclass(frozen=True)
class Close:
    """Close the outbox entry ``key`` if it is in one of ``states``."""

    key: str
    to: str
    states: tuple[str, ...] = ("pending",)


@dataclass(frozen=True)
class Remember:
    """Remember an accepted event until ``until`` (epoch ms): an id seen again with other
    content is then a replay."""

    signer: str
    origin: str  # a referral's sender (vouched for by my domain), else the signer
    event_id: str
    digest: str  # ``replay.digest`` of its type and inner record
    until: int


@dataclass(frozen=True)
class Changes:
    """What to do for one event. ``refused``: the reason, and nothing else happens."""

    refused: str | None = None
    new: bool = False  # stored the first time (False: a duplicate, or refused)
    inbox: tuple[str, str] | None = None  # (origin, delivery key): remember the event
    keep: Keep | None = None
    statuses: tuple[StatusChange, ...] = ()
    close: tuple[Close, ...] = ()
    erase: tuple[tuple[str, str], ...] = ()  # (sender, referral id) of copies to erase
    notice: dict | None = None  # an erasure notice to record
    marks: tuple[Mark, ...] = ()  # timeline entries of erased or confirmed referrals
    send: tuple[Send, ...] = ()
    remember: Remember | None = None  # every accepted event but a receipt


def refuse(reason: str) -> Changes:
    assert reason in REASONS, reason
    return Changes(refused=reason)


def decide(event: Event, parties: Parties, view: View, now: int) -> Changes:
    """The changes one opened event causes at the gateway ``parties.me``."""
    kind, record = event.record_type, event.record
    problem = loop.addressing_problem(kind, record, event.sender, parties.me, parties.my_domain,
                                      parties.is_domain(event.sender))
    if problem is not None:
        return refuse(problem)
    if kind == "Receipt":
        return _receipt(event, view)  # not remembered (see above)
    origin = _origin(event)
    digest = replay.digest(kind, record, event.inner)
    held = view.event(event.sender, origin, event.event_id)
    if held is not None and held != digest and not view.seen(*_inbox(event, origin)):
        return refuse("replay")
    changes = _handle(event, parties, view, now)
    if changes.refused is not None:
        return changes
    created = now if event.created_at is None else event.created_at
    return replace(changes, remember=Remember(event.sender, origin, event.event_id, digest,
                                              replay.until(created, now)))


def _handle(event: Event, parties: Parties, view: View, now: int) -> Changes:
    kind, record = event.record_type, event.record
    if kind == "Referral":
        return _referral(event, parties, view, now)
    if kind == "ReferralStatus":
        return _status(event, parties, view, now)
    if kind == "ErasureNotice" and record["kind"] == "Request":
        return _erasure_request(event, parties, view, now)
    if kind == "ErasureNotice":
        return _confirmation(event, parties, view, now)
    return refuse("unexpected_type")


def _origin(event: Event) -> str:
    """Whose event ids these are: a referral's sender (my domain forwards it under the
    sender's id), else the signer."""
    return event.record["senderAgency"] if event.record_type == "Referral" else event.sender


def receipt(event: Event, origin: str, new: bool, me: str, now: int) -> Send:
    """The receipt that answers an event (to ``origin``, whose outbox waits for it): queued
    once per recipient, re-armed when the event is re-sent (the first receipt was lost)."""
    record = {"deliveryKey": loop.receipt_key(event.record_type, event.record, me),
              "eventId": event.event_id, "outcome": "Stored" if new else "Duplicate",
              "receivedBy": me, "at": now}
    return Send("Receipt", record, origin, loop.queued_key("Receipt", record, origin),
                needs_receipt=False)


def _stored(event: Event, origin: str, me: str, now: int, view: View) -> Changes | None:
    """A Duplicate answer if ``origin`` sent this event before, else None."""
    if view.seen(origin, loop.delivery_key(event.record_type, event.record)):
        return Changes(send=(receipt(event, origin, False, me, now),))
    return None


def _inbox(event: Event, origin: str) -> tuple[str, str]:
    return origin, loop.delivery_key(event.record_type, event.record)


def status_send(status: dict, recipient: str) -> Send:
    """Queue a status for one peer (a receipt from that peer closes that copy alone)."""
    return Send("ReferralStatus", status, recipient,
                loop.queued_key("ReferralStatus", status, recipient))


# --- receipts --------------------------------------------------------------------------------

def _receipt(event: Event, view: View) -> Changes:
    key = event.record["deliveryKey"]
    entry = view.entry(key)
    if entry is None or not entry.needs_receipt:
        return refuse("unknown_delivery")
    if entry.recipient != event.sender:
        return refuse("not_the_recipient")
    # the real recipient's receipt proves delivery: it also closes an entry that a refusal
    # (of a re-send, by a domain that had forwarded the first copy) closed before it
    return Changes(new=True, close=(Close(key, "confirmed", ("pending", "refused")),))


# --- referrals -------------------------------------------------------------------------------

def _referral(event: Event, parties: Parties, view: View, now: int) -> Changes:
    referral = event.record
    origin = referral["senderAgency"]  # vouched for by my domain (domain.origin_problem)
    if origin == parties.me:  # would stand where my own referral with this id stands
        return refuse("sender_mismatch")
    seen = _stored(event, origin, parties.me, now, view)
    if seen is not None:
        return seen
    rid = referral["referralId"]
    status = {"referralId": rid, "state": "received", "reason": None, "detail": None,
              "setBy": parties.me, "at": now}
    return Changes(new=True, inbox=_inbox(event, origin),
                   keep=Keep(origin, rid, referral, event.kafka_key),
                   statuses=(StatusChange(origin, rid, status, "received"),),
                   send=(receipt(event, origin, True, parties.me, now),
                         status_send(status, origin)))


# --- statuses --------------------------------------------------------------------------------

def _status(event: Event, parties: Parties, view: View, now: int) -> Changes:
    status, signer, me = event.record, event.sender, parties.me
    rid, new = status["referralId"], status["state"]
    role = OWNER.get(new)
    if role is None:
        return refuse("transition_not_allowed")
    if new in loop.NEEDS_REASON and not status["reason"]:
        return refuse("missing_reason")
    # the signer's roles: recipient or domain of a referral I sent, sender of one I received
    mine = view.referral(me, rid)
    theirs = view.referral(signer, rid) if signer != me else None
    roles: dict[str, Held] = {}
    if mine is not None and mine.peer == signer:
        roles["recipient"] = mine
    if mine is not None and signer == parties.my_domain:
        roles["domain"] = mine
    if theirs is not None and theirs.direction == "in":
        roles["sender"] = theirs
    held = roles.get(role)
    if held is None:
        if role == "sender" and view.seen(signer, f"referral:{rid}"):
            return _logged_after_erasure(event, me, now, view)
        if roles:
            return refuse("wrong_role")
        if mine is not None or view.copies(rid):
            return refuse("not_a_party")
        return refuse("unknown_referral")
    seen = _stored(event, signer, me, now, view)
    if seen is not None:
        return seen
    moved = _transition(held, new, role, view)
    if isinstance(moved, Changes):
        return moved
    state, close = moved
    return Changes(new=True, inbox=_inbox(event, signer), close=close,
                   statuses=(StatusChange(held.sender, rid, status, state),),
                   send=(receipt(event, signer, True, me, now),))


def _transition(held: Held, new: str, role: str, view: View
                ) -> Changes | tuple[str | None, tuple[Close, ...]]:
    """(state to move to or None to only record it, outbox entries to close), or a refusal."""
    current = held.state
    if role == "domain":  # a refusal: only before delivery, and never over a receipt
        entry = view.entry(loop.delivery_key("Referral", {"referralId": held.referral_id}))
        if current != "requested" or (entry is not None and entry.state == "confirmed"):
            return refuse("already_delivered")
        return new, (Close(f"referral:{held.referral_id}", "refused"),)
    if new in REACH[current]:
        return new, ()
    if current == "refused" and role == "recipient" and new in REACH["requested"]:
        # the recipient has it: the domain refused a re-send, after forwarding the first copy
        return new, ()
    if new == current or current in REACH[new]:
        return None, ()  # an earlier state, arriving late: history only
    if current in loop.TERMINAL and OWNER.get(current) != role:
        return None, ()  # the other party closed it first (a race): recorded, not applied
    return refuse("transition_not_allowed")


def _logged_after_erasure(event: Event, me: str, now: int, view: View) -> Changes:
    """The sender's status about a referral erased here: recorded (the history holds no case
    data) and receipted, so that the sender stops re-sending it."""
    seen = _stored(event, event.sender, me, now, view)
    if seen is not None:
        return seen
    status = event.record
    return Changes(new=True, inbox=_inbox(event, event.sender),
                   statuses=(StatusChange(event.sender, status["referralId"], status, None),),
                   send=(receipt(event, event.sender, True, me, now),))


# --- erasure ---------------------------------------------------------------------------------

def _erasure_request(event: Event, parties: Parties, view: View, now: int) -> Changes:
    notice, domain = event.record, event.sender
    targets: list[Held] = []
    known = False
    for rid in dict.fromkeys(notice["referralIds"]):
        origins = view.received_from(rid)
        ours = {o for o in origins if parties.domain_or_none(o) == domain}
        if origins and not ours:
            return refuse("not_the_delivering_domain")
        known = known or bool(ours)
        held = [c for c in view.copies(rid) if c.sender in ours]
        # two senders of this domain may have used the same id: the copy that relies on the
        # withdrawn consent is the one to erase; if none names it, erase them all (keeping
        # withdrawn data is the worse mistake)
        targets += [c for c in held if c.consent_id == notice["consentId"]] or held
    if not known:
        return refuse("unknown_referral")
    seen = _stored(event, domain, parties.me, now, view)
    if seen is not None:
        return seen
    me = parties.me
    confirmation = {**notice, "kind": "Confirmation", "requestedBy": me, "at": now}
    sends = [receipt(event, domain, True, me, now),
             _confirm(confirmation, domain)]
    by_sender: dict[str, list[str]] = {}
    for copy in targets:
        by_sender.setdefault(copy.sender, []).append(copy.referral_id)
    for sender, rids in sorted(by_sender.items()):
        if sender != domain:  # each sender learns of its own referrals only
            sends.append(_confirm({**confirmation, "referralIds": rids}, sender))
    return Changes(new=True, inbox=_inbox(event, domain), notice=notice,
                   erase=tuple((c.sender, c.referral_id) for c in targets), send=tuple(sends),
                   marks=tuple(Mark(c.sender, c.referral_id, ERASURE_REQUESTED,
                                    notice["reason"], domain, notice["at"]) for c in targets))


def _confirm(confirmation: dict, to: str) -> Send:
    return Send("ErasureNotice", confirmation, to,
                loop.queued_key("ErasureNotice", confirmation, to))


def _confirmation(event: Event, parties: Parties, view: View, now: int) -> Changes:
    notice, holder = event.record, event.sender
    if not notice["referralIds"]:
        return refuse("not_the_holder")
    for rid in notice["referralIds"]:
        mine = view.referral(parties.me, rid)
        if mine is None or mine.peer != holder:
            return refuse("not_the_holder")
    seen = _stored(event, holder, parties.me, now, view)
    if seen is not None:
        return seen
    return Changes(new=True, inbox=_inbox(event, holder), notice=notice,
                   send=(receipt(event, holder, True, parties.me, now),),
                   marks=tuple(Mark(parties.me, rid, ERASURE_CONFIRMED, notice["reason"],
                                    holder, notice["at"])
                               for rid in dict.fromkeys(notice["referralIds"])))
