"""The closed referral loop (Primero, HL7 FHIR Task) and delivery keys.

requested -> received -> accepted | rejected -> in_progress -> completed | failed; the sender may
revoke an open referral; the policy domain may refuse one before it is delivered.
"""
from __future__ import annotations

from refmesh.errors import MeshError

TERMINAL = frozenset({"rejected", "completed", "failed", "revoked", "refused"})
NEXT = {
    "requested": {"received", "refused", "revoked"},
    "received": {"accepted", "rejected", "revoked"},
    "accepted": {"in_progress", "completed", "failed", "revoked"},
    "in_progress": {"completed", "failed", "revoked"},
}
RANK = {"requested": 0, "received": 1, "accepted": 2, "in_progress": 3,
        **{s: 4 for s in sorted(TERMINAL)}}
SET_BY_SENDER = frozenset({"revoked"})
SET_BY_DOMAIN = frozenset({"refused"})
NEEDS_REASON = frozenset({"rejected", "failed", "refused"})


class TransitionError(MeshError, ValueError):
    """A status change the closed loop does not allow."""


def check_transition(current: str, new: str, role: str, reason: str | None) -> None:
    """Raise TransitionError unless ``role`` (sender, recipient, domain) may move current->new."""
    allowed = NEXT.get(current, set())
    if new not in allowed:
        options = ", ".join(sorted(allowed)) or "none (the referral is closed)"
        raise TransitionError(f"a {current} referral cannot become {new}; allowed: {options}")
    who = "sender" if new in SET_BY_SENDER else "domain" if new in SET_BY_DOMAIN else "recipient"
    if who != role:
        raise TransitionError(f"only the {who} may set {new}, not the {role}")
    if new in NEEDS_REASON and not reason:
        raise TransitionError(f"{new} needs a reason code")


def supersedes(current: str, incoming: str) -> bool:
    """Whether a status arriving from a peer moves the local copy forward (statuses can arrive
    out of order or twice: a later state is applied, an earlier or equal one is only logged)."""
    return current not in TERMINAL and RANK[incoming] > RANK[current]


def delivery_key(record_type: str, record: dict) -> str:
    """The key a recipient deduplicates on: the same across re-sends and re-seals."""
    if record_type == "Referral":
        return f"referral:{record['referralId']}"
    if record_type == "ReferralStatus":
        return f"status:{record['referralId']}:{record['state']}"
    if record_type == "Consent":  # a withdrawal adds an event without a new version
        return f"consent:{record['consentId']}:{record['version']}:{len(record['events'])}"
    if record_type == "ErasureNotice":
        return f"erasure:{record['noticeId']}:{record['kind']}"
    if record_type == "Receipt":
        return f"receipt:{record['deliveryKey']}:{record['eventId']}"
    raise ValueError(f"no delivery key for {record_type}")


def queued_key(record_type: str, record: dict, recipient: str) -> str:
    """The delivery key of a record queued once per recipient (a status to a peer, an outcome
    copy to the member's domain, an erasure confirmation to every agency concerned, a
    receipt): it names the recipient, whose receipt closes that copy alone. A status names
    only a referral id, which is unique per sender: a recipient answering two senders that
    chose the same id queues two statuses, not one."""
    return f"{delivery_key(record_type, record)}:{recipient}"


def receipt_key(record_type: str, record: dict, receiver: str,
                receiver_is_domain: bool = False) -> str:  # noqa: ARG001 (callers name it)
    """The delivery key ``receiver``'s receipt answers with: ``queued_key`` for the records
    their senders queue per recipient (statuses, erasure confirmations), the plain delivery
    key for the others (a referral: its id is the sender's own; a consent)."""
    per_recipient = (record_type == "ErasureNotice" and record["kind"] == "Confirmation") or (
        record_type == "ReferralStatus")
    return queued_key(record_type, record, receiver) if per_recipient else \
        delivery_key(record_type, record)


def addressing_problem(record_type: str, record: dict, envelope_sender: str, me: str,
                       my_domain: str, sender_is_domain: bool = False) -> str | None:
    """Why an opened event is not for ``me`` or not from who it claims, or None if it is fine.

    A referral must name ``me`` as recipient (a domain that forwards it to the wrong agency is
    caught here) and reach me through my own policy domain; a status must be set by its
    envelope's sender, or be a refusal by my policy domain; an erasure request must come from
    a policy domain, a confirmation from the agency that erased.
    """
    if record_type == "Referral":
        if record["recipientAgency"] != me:
            return "misaddressed"
        if envelope_sender != my_domain:
            return "sender_mismatch"
    elif record_type == "ReferralStatus":
        by_domain = envelope_sender == my_domain and record["state"] == "refused"
        if record["setBy"] != envelope_sender and not by_domain:
            return "sender_mismatch"
    elif record_type == "Receipt":
        if record["receivedBy"] != envelope_sender:
            return "sender_mismatch"
    elif record_type == "ErasureNotice":
        # Requests come from the policy domain that forwarded the data (ours, or the sender's
        # domain across a border); confirmations from the agency that erased.
        if record["requestedBy"] != envelope_sender:
            return "sender_mismatch"
        if record["kind"] == "Request" and not sender_is_domain:
            return "sender_mismatch"
    elif record_type == "Consent":
        return "unexpected_type"  # consents go to policy domains, never to a gateway
    return None
