"""What a policy domain does with one event from its inbox: pure, effects returned as values.

    handle(event, key, ctx, view, partition) -> Effects

The faust agent (agents/forward.py) reads bytes, calls ``handle`` and carries the effects out:
publish envelopes, write its tables, append audit records. Nothing here raises for a bad
event: every outcome, refusals and dead letters included, is a value that gets audited.

Before any of the below, deny by default (docs/security-model.md): the signer must be allowed
to send this event (a referral's sender or its domain, a consent's controller, an outcome's
setter, a confirmation's eraser); a referral or consent must arrive under the Kafka key and in
the partition that the keyed hash of its signed subject id gives (``topology.partition_key``
with the domain's partition secret), since the key is unsigned and chooses the person's
tables; and an event id accepted before must come with the same content (a re-send, answered
as the first time without a second decision: ``_again``) or it is a replay
(``refmesh.replay``). Headers, offsets and Kafka timestamps decide nothing.

- Referral from a member of this domain: consent and minimisation (``refmesh.decide``); Allow
  reseals the *projection* for the next hop and logs the transfer (for erasure after a
  withdrawal); Deny sends a ``refused`` status back to the sender with the reason code.
- Referral from another domain (cross-border, already minimised by the sender's domain under
  its stricter cross-border rule): forwarded to the recipient as received.
- Consent from a member gateway, its controller: kept (encrypted for this domain) under
  (person, controller, consent id) and receipted, if it is newer than the one held
  (``consent.change_problem``); a newly withdrawn consent stops forwarding and sends an
  ``ErasureNotice`` to every agency that received data from the controller under it, naming
  only those referrals. A referral relies only on a consent its own sender controls.
- Erasure confirmation: audited and receipted. Receipt: ignored.
- Outcome copy (a ReferralStatus accepted, rejected, completed or failed that a member gateway
  set and copied to its domain): counted for the regional statistics and receipted; never
  audited or forwarded (it decides nothing about the person).

Counting (``Counting``; refmesh.aggregate.cap): a decision on a member's referral counts in its
window, an outcome in the window it was set, and per person (the checked Kafka key) and window
at most ``max_per_person`` decisions, responses (accepted, rejected) and ends (completed,
failed), each taking a slot in the ``counted`` table. An outcome counts only for a referral
whose decision was counted (its forwarding-log entry holds the cell), at most one response and
one end per referral (the entry records the stages counted). A re-send is never counted again:
``_again`` answers it from the replay memory, and a forwarded referral re-sent under a new
event id is recognised by the forwarding log.
"""
from __future__ import annotations

import hmac
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable

from refmesh import consent as consents
from refmesh import aggregate, codec, envelope, loop, minimise, records, replay, topology
from refmesh.decide import Allow, decide
from refmesh.directory import TrustedDirectory
from refmesh.errors import DirectoryError, SealError
from refmesh.keys import AgencyKeys
from refmesh.policy import Policy

ERASURE_NS = uuid.UUID("6f1c5d2e-8a3b-4c7d-9e0f-1a2b3c4d5e6f")


@dataclass(frozen=True)
class Publish:
    topic: str
    key: bytes | None
    value: bytes = field(repr=False)


@dataclass(frozen=True)
class Effects:
    """What to do for one event; ``audit`` holds keyword arguments for ``audit.append``."""

    event_id: str | None = None
    publish: tuple[Publish, ...] = ()
    audit: tuple[dict, ...] = ()
    consent_put: tuple[bytes, bytes] | None = None  # (table key, protected Consent)
    log_put: tuple[bytes, bytes] | None = None  # (subject key, protected forwarding log)
    # (counted mark to write or None, window start, coarse cell) for the statistics
    counted: tuple[bytes | None, int, dict] | None = None
    deadletter: str | None = None
    # writes to the seen table (refmesh.replay): (key, protected value, or None to delete)
    seen_put: tuple[tuple[bytes, bytes | None], ...] = ()


@dataclass(frozen=True)
class Counting:
    """How the domain tabulates referrals for regional statistics (refmesh.aggregate)."""

    unit: str = "month"
    dims: tuple[str, ...] = ("reportingCountry", "citizenship", "gender", "exploitationType",
                             "finalStatus")
    max_late_ms: int = 30 * 86_400_000
    # m: events counted per person, window and stage (refmesh.aggregate.cap); the release
    # job's noise is calibrated to it (AgentSettings.aggregate_max_referrals_per_person)
    max_per_person: int = 2


@dataclass(frozen=True)
class Context:
    keys: AgencyKeys  # the domain's keys
    directory: TrustedDirectory
    policy: Policy
    secret: bytes  # pseudonymisation secret
    now: int
    counting: Counting = Counting()
    # the secret of the person's Kafka key (the domain's, shared with its gateways); without
    # it no referral or consent of a member is accepted (key_unverifiable)
    partition_secret: bytes | None = None
    partitions: int | None = None  # of the domain inbox: the partition is checked when given


@dataclass(frozen=True)
class View:
    """Read access to the agent's tables (protected bytes, or None)."""

    consent: Callable[[bytes], bytes | None]
    log: Callable[[bytes], bytes | None]
    counted: Callable[[bytes], bytes | None] = lambda key: None  # noqa: ARG005
    seen: Callable[[bytes], bytes | None] = lambda key: None  # noqa: ARG005


CONSENT_KEY_LABEL = b"refmesh-consent-key-v1\0"


def consent_key(subject_key: bytes, controller: str, consent_id: str, secret: bytes) -> bytes:
    """The consent table's key: the subject's key and a keyed hash of (controller, consent id).
    A consent belongs to the agency that recorded it: another agency using the same id has
    another consent, and cannot amend or withdraw this one. Table keys travel in clear on the
    changelog topic (the broker is untrusted), and a consent id is a join key across the
    person's referrals, like the subject id (refmesh.fields)."""
    name = f"{controller}\0{consent_id}".encode("utf-8")
    mac = hmac.digest(secret, CONSENT_KEY_LABEL + name, "sha256")
    return subject_key + b"|" + mac.hex()[:32].encode()


CONSENT_CONTEXT = b"consent|"  # associated data of a protected consent, with its table key


def protect_consent(keys: AgencyKeys, table_key: bytes, consent: dict) -> bytes:
    """A consent as the consent table keeps it: its Avro single-object encoding (checked as it
    is written), encrypted for the domain and bound to its table key."""
    return envelope.protect(keys, CONSENT_CONTEXT + table_key, codec.encode("Consent", consent))


def read_consent(ctx: Context, view: View, key: bytes) -> dict | None:
    """The consent held under ``key``, checked against its contract (it is read on every
    referral: the compiled codec decodes and checks in one pass, in the current contract
    whatever version wrote it), or None. A value an older refmesh wrote as JSON is read too."""
    data = view.consent(key)
    if data is None:
        return None
    plain = envelope.unprotect(ctx.keys, CONSENT_CONTEXT + key, data)
    if plain[:1] == b"{":  # JSON, as written before 2026-12-05
        consent = json.loads(plain)
        records.check("Consent", consent)
        return consent
    return codec.decode(plain, "Consent")[1]


COUNTS_CONTEXT = b"aggregate-counts|"  # associated data of a window's protected counts


def read_counts(keys: AgencyKeys, table_key: bytes, value: bytes | None) -> aggregate.Counts:
    """A window's counts from the counts table (empty for None), checked."""
    return aggregate.loads(None if value is None else envelope.unprotect(
        keys, COUNTS_CONTEXT + table_key, value))


def protect_counts(keys: AgencyKeys, table_key: bytes, counts: aggregate.Counts) -> bytes:
    """A window's counts as the counts table keeps them: encrypted for the domain, bound to
    their table key."""
    return envelope.protect(keys, COUNTS_CONTEXT + table_key, aggregate.dumps(counts))


def read_log(ctx: Context, view: View, key: bytes) -> list[dict]:
    data = view.log(key)
    return [] if data is None else json.loads(envelope.unprotect(ctx.keys, b"log|" + key, data))


def handle(data: bytes, key: bytes | None, ctx: Context, view: View,
           partition: int = 0) -> Effects:
    """Decide one event of the domain inbox: ``data`` as read, with its Kafka ``key`` and
    ``partition`` (checked against the signed content, never trusted)."""
    try:
        opened = envelope.open(data, ctx.keys, ctx.directory, ctx.now)
    except SealError as exc:
        return _dead(exc.reason, None)
    record = opened.record  # checked against its contract when decoded (codec.decode)
    event_id, kind, signer = opened.header["eventId"], opened.record_type, opened.header["sender"]
    if kind == "Receipt":
        return Effects(event_id)  # nothing to do, nothing to remember
    try:
        problem = _authority(kind, record, signer, ctx) or \
            _arrival(kind, record, key, partition, signer, ctx)
        if problem is not None:
            return _dead(problem, event_id)
        origin = record["senderAgency"] if kind == "Referral" else signer
        seen_key = replay.entry_key(ctx.secret, signer, origin, event_id)
        digest = replay.digest(kind, record, opened.inner)
        held = replay.read(ctx.keys, view.seen, seen_key, ctx.now)
        if held is not None:
            if held.digest != digest:
                return _dead("replay", event_id)
            return _again(kind, record, key, signer, event_id, opened.header["createdAt"],
                          held, ctx, view)
        effects = _HANDLERS[kind](record, key, signer, event_id, ctx, view)
    except DirectoryError as exc:
        return _dead(exc.reason, event_id)
    if effects.deadletter is not None:
        return effects
    first = effects.audit[0] if effects.audit else {"decision": kind}
    seen = replay.Seen(digest, first["decision"], first.get("reason"),
                       replay.until(opened.header["createdAt"], ctx.now))
    return replace(effects, seen_put=replay.remember(ctx.keys, view.seen, seen_key, seen,
                                                     partition, ctx.now))


def _authority(kind: str, record: dict, signer: str, ctx: Context) -> str | None:
    """Why ``signer`` may not send this event to this domain, or None."""
    me = ctx.keys.agency_id
    if kind == "Referral":
        return origin_problem(record, signer, ctx.directory, me)
    if kind == "Consent":  # only the controller, a member of this domain, speaks for it
        if record["controller"] != signer or topology.domain_of(ctx.directory, signer) != me:
            return "sender_mismatch"
        return None
    if kind == "ReferralStatus":  # a member's copy of an outcome it set
        if record["setBy"] != signer or topology.domain_of(ctx.directory, signer) != me \
                or signer == me:
            return "sender_mismatch"
        return None if record["state"] in aggregate.OUTCOMES else "not_an_outcome"
    if kind == "ErasureNotice" and record["kind"] == "Confirmation" \
            and record["requestedBy"] == signer:
        return None
    return "unexpected_type"


def _arrival(kind: str, record: dict, key: bytes | None, partition: int, signer: str,
             ctx: Context) -> str | None:
    """Why a member's referral or consent came under the wrong Kafka key or partition, or
    None. The key chooses the person's consents and forwarding log, and the partition which
    worker and which table partition hold them; neither is signed, so both must be what the
    signed subject id gives. (A referral handed over by another domain carries that domain's
    key, which this one cannot derive: it decides nothing here, see ``_hand_over``.)"""
    if kind == "Consent" or (kind == "Referral" and signer == record["senderAgency"]):
        if ctx.partition_secret is None:
            return "key_unverifiable"
        expected = topology.partition_key(ctx.partition_secret, record["subjectId"])
        if key is None or not hmac.compare_digest(key, expected):
            return "key_mismatch"
        if ctx.partitions and topology.partition_of(expected, ctx.partitions) != partition:
            return "partition_mismatch"
    return None


def _again(kind: str, record: dict, key: bytes | None, signer: str, event_id: str,
           created_at: int, held: replay.Seen, ctx: Context, view: View) -> Effects:
    """A re-send of an event accepted before (same sender, id and content): answered as the
    first copy was, never decided, audited or counted again. A consent, an outcome copy or an
    erasure confirmation gets its receipt again; a refused referral its refusal again; a
    forwarded referral is forwarded again, so that its recipient answers with its receipt
    again (recipients drop the duplicate by delivery key), but only while it may still go:
    after the consent was withdrawn (or no longer allows it) it is dead-lettered and audited,
    and the sender, who had the recipient's receipt, gets no refusal (a refusal never
    overrides a receipt)."""
    if kind != "Referral":
        return Effects(event_id, publish=(_receipt(kind, record, event_id, signer, ctx),))
    if held.outcome == "Refused":
        return Effects(event_id, publish=(_refusal(record, held.reason or "refused", key,
                                                   ctx),))
    if signer != record["senderAgency"]:
        return Effects(event_id, publish=(_hand_over(record, key, event_id, ctx),))
    consent = _consent_of(record, key, ctx, view)
    withdrawn = None if consent is None else consents.withdrawn_at(consent)
    if withdrawn is not None and created_at < withdrawn <= ctx.now:
        return _dead("sealed_before_withdrawal", event_id)
    decision = decide(record, consent, ctx.directory, ctx.policy, ctx.now, ctx.secret,
                      checked=True)
    if not isinstance(decision, Allow):
        return _dead(decision.reason, event_id)
    hop = topology.next_hop(ctx.directory, ctx.keys.agency_id, record["recipientAgency"])
    value = envelope.seal("Referral", decision.record, ctx.keys, hop.seal_for, ctx.directory,
                          ctx.now, event_id=event_id)
    return Effects(event_id, publish=(Publish(hop.topic, key, value),))


def _dead(reason: str, event_id: str | None) -> Effects:
    return Effects(event_id, deadletter=reason, audit=({
        "event_id": event_id or "unknown", "decision": "DeadLettered", "reason": reason},))


def _audit(ctx: Context, event_id: str, decision: str, **fields) -> dict:
    return {"event_id": event_id, "decision": decision, "policy_version": ctx.policy.version,
            **fields}


def origin_problem(referral: dict, signer: str, directory: TrustedDirectory,
                   domain: str) -> str | None:
    """Why the envelope's signer may not speak for the referral's sender, or None.

    The domain re-signs what it forwards, so it must not launder a forgery: it takes a referral
    from its own sender when that agency belongs to this domain (first hop), or from the
    sender's domain when that is another domain (domain to domain); from nobody else.
    """
    claimed = referral["senderAgency"]
    try:
        home = topology.domain_of(directory, claimed)
    except DirectoryError:
        return "unknown_sender"
    if signer == claimed and home == domain:
        return None
    if signer == home and home != domain:
        return None
    return "sender_mismatch"


def _referral(referral: dict, key: bytes | None, signer: str, event_id: str, ctx: Context,
              view: View) -> Effects:
    me = ctx.keys.agency_id
    sender, recipient = referral["senderAgency"], referral["recipientAgency"]
    common = {"sender": sender, "recipient": recipient, "purpose": referral["purpose"]}
    if signer != sender:  # arrived from the sender's domain: already decided and minimised
        return Effects(event_id, publish=(_hand_over(referral, key, event_id, ctx),),
                       audit=(_audit(ctx, event_id, "Forwarded",
                                     reason="decided_by_origin_domain",
                                     legal_basis=referral["legalBasis"],
                                     fields=_present(referral), **common),))
    consent = _consent_of(referral, key, ctx, view)
    decision = decide(referral, consent, ctx.directory, ctx.policy, ctx.now, ctx.secret,
                      checked=True)
    allowed = isinstance(decision, Allow)
    cell = _cell(referral, "forwarded" if allowed else "refused", ctx)
    entries = read_log(ctx, view, key) if key is not None else []
    logged = _entry(entries, referral["referralId"], recipient) is not None
    # a referral in the forwarding log was decided (and counted, if it was) when it was
    # forwarded: a re-send is not counted again
    counted = None if logged or cell is None or key is None else _counted(
        key, "decision", referral["createdAt"], cell, ctx, view)
    if not allowed:
        return Effects(event_id, publish=(_refusal(referral, decision.reason, key, ctx),),
                       counted=counted, audit=(_audit(ctx, event_id, "Refused",
                                                      reason=decision.reason,
                                                      legal_basis=referral["legalBasis"],
                                                      **common),))
    hop = topology.next_hop(ctx.directory, me, recipient)
    value = envelope.seal("Referral", decision.record, ctx.keys, hop.seal_for, ctx.directory,
                          ctx.now, event_id=event_id)
    log_put = None
    if key is not None and not logged:
        # the coarse cell rides along, encrypted, so that the recipient's outcome is counted
        # in the same cell (refmesh.aggregate: outcome_of)
        # (None when the person's decisions of the window are all counted: its outcomes
        # are then not counted either)
        entry = {"recipient": recipient, "referralId": referral["referralId"],
                 "consentId": referral["consentId"], "sender": sender,
                 "cell": cell if counted is not None else None}
        log_put = (key, envelope.protect(ctx.keys, b"log|" + key,
                                         json.dumps([*entries, entry]).encode()))
    return Effects(event_id, publish=(Publish(hop.topic, key, value),), log_put=log_put,
                   counted=counted, audit=(_audit(ctx, event_id, "Forwarded",
                                                  legal_basis=decision.basis,
                                                  fields=decision.fields, **common),))


def _consent_of(referral: dict, key: bytes | None, ctx: Context, view: View) -> dict | None:
    """The consent a member's referral relies on: the one its sender controls under the id
    it names, of the person its (checked) key stands for; None if none is held."""
    if referral["consentId"] is None or key is None:
        return None
    return read_consent(ctx, view, consent_key(key, referral["senderAgency"],
                                               referral["consentId"], ctx.secret))


def _refusal(referral: dict, reason: str, key: bytes | None, ctx: Context) -> Publish:
    """The ``refused`` status back to the referral's sender, the refusal code as detail."""
    me, sender = ctx.keys.agency_id, referral["senderAgency"]
    status = {"referralId": referral["referralId"], "state": "refused",
              "reason": "PolicyRefused", "detail": reason, "setBy": me, "at": ctx.now}
    value = envelope.seal("ReferralStatus", status, ctx.keys, sender, ctx.directory, ctx.now)
    return Publish(topology.agency_inbox(sender), key, value)


def _hand_over(referral: dict, key: bytes | None, event_id: str, ctx: Context) -> Publish:
    """A referral from another domain (decided and minimised there) on to its recipient, as
    received. The other domain's Kafka key decides nothing here: it goes on under this
    domain's key for the subject id it carries, if the domain has its partition secret."""
    hop = topology.next_hop(ctx.directory, ctx.keys.agency_id, referral["recipientAgency"])
    value = envelope.seal("Referral", referral, ctx.keys, hop.seal_for, ctx.directory, ctx.now,
                          event_id=event_id)
    if ctx.partition_secret is not None:
        key = topology.partition_key(ctx.partition_secret, referral["subjectId"])
    return Publish(hop.topic, key, value)


def _entry(entries: list[dict], referral_id: str, recipient: str) -> dict | None:
    """The forwarding log's entry for a referral to a recipient, or None."""
    return next((e for e in entries
                 if e["referralId"] == referral_id and e["recipient"] == recipient), None)


def _cell(referral: dict, decision: str, ctx: Context) -> dict | None:
    """The coarse cell a decided referral counts in: only these coarse values reach the
    aggregation state, never an identifier (refmesh.aggregate.cell_of). None when an agency is
    not in the directory (the decision then refused it)."""
    try:
        sender = ctx.directory.member(referral["senderAgency"])
        recipient = ctx.directory.member(referral["recipientAgency"])
    except DirectoryError:
        return None
    return aggregate.cell_of(referral, decision, sender, recipient, ctx.now, ctx.counting.dims)


def _counted(person: bytes, stage: str, at: int, cell: dict, ctx: Context,
             view: View) -> tuple[bytes, int, dict] | None:
    """(slot, window start, cell) when the event counts: the person still has a free slot
    for ``stage`` in the window of ``at`` (refmesh.aggregate.cap); None when they have not."""
    c = ctx.counting
    start, _ = aggregate.window_of(aggregate.event_time(at, ctx.now, c.max_late_ms), c.unit)
    slot = aggregate.free_slot(view.counted, ctx.secret, person, start, stage,
                               c.max_per_person)
    return None if slot is None else (slot, start, cell)


def _outcome(status: dict, key: bytes | None, signer: str, event_id: str, ctx: Context,
             view: View) -> Effects:
    """A member gateway's copy of an outcome it set: receipted, not audited, and counted when
    its referral's decision was counted.

    The copy travels with the referral's key, which (unsigned) only says which forwarding log
    to search: the entry must name the signed referral id and the signer as its recipient, and
    hold the referral's cell (its decision was counted). The outcome counts in that cell with
    the outcome as finalStatus, in the window of its own time, once per referral and stage
    (the entry records the stages counted) and within the person's cap; else not at all."""
    receipt = _receipt("ReferralStatus", status, event_id, signer, ctx)
    entries = read_log(ctx, view, key) if key is not None else []
    entry = _entry(entries, status["referralId"], signer)
    stage = aggregate.STAGE_OF[status["state"]]
    if entry is None or not entry.get("cell") or stage in entry.get("counted", ()):
        return Effects(event_id, publish=(receipt,))
    cell = aggregate.outcome_of(entry["cell"], status["state"])
    counted = _counted(key, stage, status["at"], cell, ctx, view)
    if counted is None:
        return Effects(event_id, publish=(receipt,))
    entries = [{**e, "counted": [*e.get("counted", ()), stage]} if e is entry else e
               for e in entries]
    log_put = (key, envelope.protect(ctx.keys, b"log|" + key, json.dumps(entries).encode()))
    return Effects(event_id, publish=(receipt,), log_put=log_put, counted=counted)


def _present(record: dict, prefix: str = "") -> tuple[str, ...]:
    names = []
    for name, value in record.items():
        if isinstance(value, dict):
            names += _present(value, f"{prefix}{name}.")
        elif value not in (None, "", []):
            names.append(prefix + name)
    return tuple(names)


def _receipt(kind: str, record: dict, event_id: str, to: str, ctx: Context) -> Publish:
    receipt = {"deliveryKey": loop.receipt_key(kind, record, ctx.keys.agency_id, True),
               "eventId": event_id, "outcome": "Stored", "receivedBy": ctx.keys.agency_id,
               "at": ctx.now}
    value = envelope.seal("Receipt", receipt, ctx.keys, to, ctx.directory, ctx.now)
    return Publish(topology.agency_inbox(to), None, value)


def _consent(consent: dict, key: bytes, signer: str, event_id: str, ctx: Context,
             view: View) -> Effects:
    me = ctx.keys.agency_id
    table_key = consent_key(key, signer, consent["consentId"], ctx.secret)
    held = read_consent(ctx, view, table_key)
    problem = consents.change_problem(held, consent)
    if problem is not None:  # an older or equal version, or a rewritten history
        return _dead(problem, event_id)
    receipt = _receipt("Consent", consent, event_id, signer, ctx)
    put = (table_key, protect_consent(ctx.keys, table_key, consent))
    audits = [_audit(ctx, event_id, "ConsentRecorded", sender=signer)]
    publish = [receipt]
    newly_withdrawn = consents.withdrawn_at(consent) is not None and (
        held is None or consents.withdrawn_at(held) is None)
    if newly_withdrawn:
        for (recipient, alone), referral_ids in sorted(_erasures(consent, read_log(
                ctx, view, key)).items()):
            name = f"{signer}|{consent['consentId']}|{recipient}" + (
                f"|{alone}" if alone else "")
            notice = {"noticeId": str(uuid.uuid5(ERASURE_NS, name)),
                      "kind": "Request",  # the consent id as this recipient's copy names it
                      "consentId": minimise.pseudonym(ctx.secret, recipient, "consentId",
                                                      consent["consentId"]),
                      "referralIds": referral_ids, "reason": "ConsentWithdrawn",
                      "requestedBy": me, "at": ctx.now}
            value = envelope.seal("ErasureNotice", notice, ctx.keys, recipient, ctx.directory,
                                  ctx.now)
            publish.append(Publish(topology.agency_inbox(recipient), key, value))
            audits.append(_audit(ctx, event_id, "ErasureSent", recipient=recipient,
                                 reason="consent_withdrawn"))
    return Effects(event_id, publish=tuple(publish), audit=tuple(audits), consent_put=put)


def _erasures(consent: dict, entries: list[dict]) -> dict[tuple[str, str], list[str]]:
    """{(recipient, ""): referral ids} to erase after a withdrawal: what the controller sent
    under this consent, one notice per recipient, naming only the controller's referrals (a
    notice and its confirmations must not tell one sender's referral ids to another). An
    entry logged before entries named their sender gets a notice of its own (key: its id)."""
    out: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        if entry["consentId"] != consent["consentId"]:
            continue
        sender = entry.get("sender")
        if sender is not None and sender != consent["controller"]:
            continue  # another sender's referral, under a consent of its own with this id
        group = (entry["recipient"], "" if sender is not None else entry["referralId"])
        out.setdefault(group, []).append(entry["referralId"])
    return out


def _confirmed(record: dict, key: bytes | None, signer: str, event_id: str,  # noqa: ARG001
               ctx: Context, view: View) -> Effects:  # noqa: ARG001 (one signature for all)
    """An erasure confirmation from the agency that erased: audited and receipted."""
    return Effects(event_id, publish=(_receipt("ErasureNotice", record, event_id, signer, ctx),),
                   audit=(_audit(ctx, event_id, "ErasureConfirmed", sender=signer,
                                 recipient=ctx.keys.agency_id),))


#: what handles each kind of event once ``handle`` has checked who sent it, how and whether
#: it is new (receipts need nothing)
_HANDLERS = {"Referral": _referral, "Consent": _consent, "ReferralStatus": _outcome,
             "ErasureNotice": _confirmed}
