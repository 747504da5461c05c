"""What a policy domain does with one event from its inbox: pure, effects returned as values.

    handle(event, ctx, view) -> Effects

The faust agent (agents/forward.py) reads bytes, calls ``handle`` and carries the effects out:
publish envelopes, write its two tables, append audit records. Nothing here raises for a bad
event: every outcome, refusals and dead letters included, is a value that gets audited.

- Referral from a member of this domain: consent and minimisation (``refmesh.decide``); Allow
  reseals the *projection* for the next hop and logs the transfer (for erasure after a
  withdrawal); Deny sends a ``refused`` status back to the sender with the reason code.
- Referral from another domain (cross-border, already minimised by the sender's domain under
  its stricter cross-border rule): forwarded to the recipient as received.
- Consent from a member gateway: kept (encrypted for this domain) and receipted; a newly
  withdrawn consent stops forwarding and sends an ``ErasureNotice`` to every agency that
  received data under it.
- Erasure confirmation: audited and receipted. Receipt: ignored.
- Outcome copy (a ReferralStatus accepted, rejected, completed or failed that a member gateway
  set and copied to its domain): counted for the regional statistics and receipted; never
  audited or forwarded (it decides nothing about the person).

Counting is once per delivery key: a re-sent forwarded referral is recognised by the forwarding
log; a refused referral or an outcome copy leaves its keyed hash in the ``counted`` table.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

from refmesh import consent as consents
from refmesh import aggregate, envelope, loop, minimise, records, topology
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


@dataclass(frozen=True)
class Counting:
    """How the domain tabulates referrals for regional statistics (refmesh.aggregate)."""

    unit: str = "month"
    dims: tuple[str, ...] = ("reportingCountry", "citizenship", "gender", "exploitationType",
                             "finalStatus")
    max_late_ms: int = 30 * 86_400_000


@dataclass(frozen=True)
class Context:
    keys: AgencyKeys  # the domain's keys
    directory: TrustedDirectory
    policy: Policy
    secret: bytes  # pseudonymisation secret
    now: int
    counting: Counting = Counting()


@dataclass(frozen=True)
class View:
    """Read access to the agent's tables (protected bytes, or None)."""

    consent: Callable[[bytes], bytes | None]
    log: Callable[[bytes], bytes | None]
    counted: Callable[[bytes], bytes | None] = lambda key: None  # noqa: ARG005


COUNTED_LABEL = b"refmesh-counted-v1\0"


def counted_key(delivery_key: str, secret: bytes) -> bytes:
    """The counted table's key for an event counted once: a keyed hash of its delivery key
    (which names a referral id, a join key across agencies)."""
    mac = hmac.new(secret, COUNTED_LABEL + delivery_key.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[:32].encode()


CONSENT_KEY_LABEL = b"refmesh-consent-key-v1\0"


def consent_key(subject_key: bytes, consent_id: str, secret: bytes) -> bytes:
    """The consent table's key: the subject's key and a keyed hash of the consent id. Table
    keys travel in clear on the changelog topic (the broker is untrusted), and a consent id is
    a join key across the person's referrals, like the subject id (refmesh.fields)."""
    mac = hmac.new(secret, CONSENT_KEY_LABEL + consent_id.encode("utf-8"), hashlib.sha256)
    return subject_key + b"|" + mac.hexdigest()[:32].encode()


def read_consent(ctx: Context, view: View, key: bytes) -> dict | None:
    data = view.consent(key)
    if data is None:
        return None
    consent = json.loads(envelope.unprotect(ctx.keys, b"consent|" + key, data))
    records.check("Consent", consent)  # the fast check: it is read on every referral
    return consent


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


def handle(data: bytes, key: bytes | None, ctx: Context, view: View) -> Effects:
    me = ctx.keys.agency_id
    try:
        opened = envelope.open(data, ctx.keys, ctx.directory, ctx.now)
    except SealError as exc:
        return _dead(exc.reason, None)
    record = opened.record  # checked against its contract when decoded (codec.decode)
    event_id, kind, signer = opened.header["eventId"], opened.record_type, opened.header["sender"]
    try:
        if kind == "Receipt":
            return Effects(event_id)
        if kind == "Referral":
            return _referral(record, key, signer, event_id, ctx, view)
        if kind == "Consent":
            return _consent(record, key or b"", signer, event_id, ctx, view)
        if kind == "ReferralStatus":
            return _outcome(record, key, signer, event_id, ctx, view)
        if kind == "ErasureNotice" and record["kind"] == "Confirmation" \
                and record["requestedBy"] == signer:
            return Effects(event_id, publish=(_receipt(kind, record, event_id, signer, ctx),),
                           audit=(_audit(ctx, event_id, "ErasureConfirmed", sender=signer,
                                         recipient=me),))
    except DirectoryError as exc:
        return _dead(exc.reason, event_id)
    return _dead("unexpected_type", event_id)


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
    problem = origin_problem(referral, signer, ctx.directory, me)
    if problem is not None:
        return _dead(problem, event_id)
    sender, recipient = referral["senderAgency"], referral["recipientAgency"]
    common = {"sender": sender, "recipient": recipient, "purpose": referral["purpose"]}
    if signer != sender:  # arrived from the sender's domain: already decided and minimised
        hop = topology.next_hop(ctx.directory, me, recipient)
        value = envelope.seal("Referral", referral, ctx.keys, hop.seal_for, ctx.directory,
                              ctx.now, event_id=event_id)
        return Effects(event_id, publish=(Publish(hop.topic, key, value),), audit=(_audit(
            ctx, event_id, "Forwarded", reason="decided_by_origin_domain",
            legal_basis=referral["legalBasis"], fields=_present(referral), **common),))
    consent = None
    if referral["consentId"] is not None and key is not None:
        consent = read_consent(ctx, view, consent_key(key, referral["consentId"], ctx.secret))
    decision = decide(referral, consent, ctx.directory, ctx.policy, ctx.now, ctx.secret)
    allowed = isinstance(decision, Allow)
    cell = _cell(referral, "forwarded" if allowed else "refused", ctx)
    entries = read_log(ctx, view, key) if key is not None else []
    logged = _entry(entries, referral["referralId"], recipient) is not None
    # a referral in the forwarding log was counted when it was forwarded: a re-send is not
    # counted again (and needs no counted mark: the log is written anyway)
    counted = None if logged or cell is None else _once(
        loop.delivery_key("Referral", referral), referral["createdAt"], cell, ctx, view,
        mark=key is None or not allowed)
    if not allowed:
        status = {"referralId": referral["referralId"], "state": "refused",
                  "reason": "PolicyRefused", "detail": decision.reason, "setBy": me,
                  "at": ctx.now}
        value = envelope.seal("ReferralStatus", status, ctx.keys, sender, ctx.directory,
                              ctx.now)
        return Effects(event_id, publish=(Publish(topology.agency_inbox(sender), key, value),),
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
        entry = {"recipient": recipient, "referralId": referral["referralId"],
                 "consentId": referral["consentId"], "cell": cell}
        log_put = (key, envelope.protect(ctx.keys, b"log|" + key,
                                         json.dumps([*entries, entry]).encode()))
    return Effects(event_id, publish=(Publish(hop.topic, key, value),), log_put=log_put,
                   counted=counted, audit=(_audit(ctx, event_id, "Forwarded",
                                                  legal_basis=decision.basis,
                                                  fields=decision.fields, **common),))


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


def _once(delivery_key: str, at: int, cell: dict, ctx: Context, view: View,
          mark: bool = True) -> tuple[bytes | None, int, dict] | None:
    key = counted_key(delivery_key, ctx.secret)
    if view.counted(key) is not None:
        return None
    c = ctx.counting
    start, _ = aggregate.window_of(aggregate.event_time(at, ctx.now, c.max_late_ms), c.unit)
    return key if mark else None, start, cell


def _outcome(status: dict, key: bytes | None, signer: str, event_id: str, ctx: Context,
             view: View) -> Effects:
    """A member gateway's copy of an outcome it set: counted once, receipted, not audited.

    Counted in the cell its referral counted in, with the outcome as finalStatus, when the
    forwarding log (the copy travels with the referral's key) still holds that referral's
    cell; else by the recipient's country and role only (``aggregate.outcome_cell``)."""
    me = ctx.keys.agency_id
    if status["setBy"] != signer or topology.domain_of(ctx.directory, signer) != me \
            or signer == me:
        return _dead("sender_mismatch", event_id)
    if status["state"] not in aggregate.OUTCOMES:
        return _dead("not_an_outcome", event_id)
    entry = _entry(read_log(ctx, view, key), status["referralId"], signer) if key else None
    if entry is not None and entry.get("cell"):
        cell = aggregate.outcome_of(entry["cell"], status["state"])
    else:
        cell = aggregate.outcome_cell(status, ctx.directory.member(signer))
    receipt = _receipt("ReferralStatus", status, event_id, signer, ctx)
    return Effects(event_id, publish=(receipt,), counted=_once(
        loop.delivery_key("ReferralStatus", status), status["at"], cell, ctx, view))


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
    if consent["controller"] != signer or topology.domain_of(ctx.directory, signer) != me:
        return _dead("sender_mismatch", event_id)
    table_key = consent_key(key, consent["consentId"], ctx.secret)
    held = read_consent(ctx, view, table_key)
    receipt = _receipt("Consent", consent, event_id, signer, ctx)
    if held is not None and (held["version"], len(held["events"])) >= (
            consent["version"], len(consent["events"])):
        return Effects(event_id, publish=(receipt,))  # a re-send or an older copy: no change
    put = (table_key, envelope.protect(ctx.keys, b"consent|" + table_key,
                                       json.dumps(consent).encode()))
    audits = [_audit(ctx, event_id, "ConsentRecorded", sender=signer)]
    publish = [receipt]
    newly_withdrawn = consents.withdrawn_at(consent) is not None and (
        held is None or consents.withdrawn_at(held) is None)
    if newly_withdrawn:
        by_recipient: dict[str, list[str]] = {}
        for entry in read_log(ctx, view, key):
            if entry["consentId"] == consent["consentId"]:
                by_recipient.setdefault(entry["recipient"], []).append(entry["referralId"])
        for recipient, referral_ids in sorted(by_recipient.items()):
            notice = {"noticeId": str(uuid.uuid5(ERASURE_NS, f"{consent['consentId']}|"
                                                 f"{recipient}")),
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
