"""Decisions are values (shared/STYLE.md, habit 6): the policy domain's answer for one referral
is an ``Allow`` carrying the minimised record, or a ``Deny`` with a stable reason code. Agents
write both to the audit stream and turn a Deny into a refusal status; nothing is raised.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Stable refusal codes (audit records, refusal statuses, metrics).
REASONS = (
    "invalid_referral",  # the referral does not match its contract, or a date field holds no date
    "unknown_sender", "unknown_recipient",  # not in the trusted directory
    "legal_basis_not_allowed",  # a basis other than Consent the policy does not allow here
    "consent_missing", "consent_mismatch", "consent_version", "consent_withdrawn",
    "consent_not_yet_valid", "consent_expired",
    "consent_not_controller",  # a referral relies only on a consent its own sender recorded
    "purpose_not_consented", "recipient_not_consented", "cross_border_not_consented",
    "no_rule", "no_cross_border_rule",  # the policy has no rule for this transfer
)


@dataclass(frozen=True)
class Deny:
    """Do not forward. ``detail`` explains in words; it names roles, purposes, countries,
    versions and times, never a value of the case."""

    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown refusal reason {self.reason!r}")


@dataclass(frozen=True)
class Allow:
    """Forward ``record`` (the minimised Referral, a new dict) instead of the original.

    ``fields``: dotted names of the fields that carry a value in ``record`` (for the audit
    record; names, never values). ``rules``: the ids of the policy rules that decided (plus
    ``consent:categories`` when the consent's data categories withheld a field). ``basis``:
    the legal basis relied on (Consent, or an allowed LegalObligation / VitalInterest).
    """

    record: dict = field(repr=False, hash=False)
    fields: tuple[str, ...]
    rules: tuple[str, ...]
    basis: str


Decision = Allow | Deny
