"""The policy domain's decision for one outbound referral: forward a minimised copy, or refuse.

    decide(referral, consent, directory, policy, now, secret) -> Allow | Deny

Deny by default, in this order: the referral must match its contract and its date fields hold
dates (minimisation would otherwise drop a birth date it cannot read, unsaid), both agencies
must be in the trusted directory, the consent (or an allowed legal basis) must permit the transfer
(``refmesh.consent.check``), and the policy must have a rule for it (``refmesh.minimise.plan``).
The Allow carries the projection (``refmesh.minimise.project``), never the original record.

``explain`` gives the same decision with one line per field (action and deciding rule), for
``refmesh policy explain`` and for operators; ``render`` turns it into text.
"""
from __future__ import annotations

from dataclasses import dataclass

from refmesh import consent as consents
from refmesh import fields as catalogue
from refmesh import minimise, records
from refmesh.decisions import Allow, Decision, Deny
from refmesh.directory import TrustedDirectory
from refmesh.errors import DirectoryError, FieldValueError, RecordError
from refmesh.policy import Policy


@dataclass(frozen=True)
class Line:
    """One field in an explanation: what happens to it, which rule decided, and whether this
    referral has a value there."""

    field: str
    action: str
    rule: str | None
    present: bool
    output: tuple[str, ...]  # the fields it becomes in the forwarded record


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    sender: dict | None
    recipient: dict | None
    lines: tuple[Line, ...]  # empty when refused


def _forwarded(record: dict, plan: minimise.Plan) -> tuple[str, ...]:
    """Dotted names of the fields that carry a value in a projected record."""
    names = []
    for name, section, leaf in plan.outputs:
        holder = record.get(section) if section else record
        if isinstance(holder, dict) and holder.get(leaf) not in (None, ""):
            names.append(name)
    return tuple(names)


def _decide(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
            now: int, secret: bytes):
    """(decision, sender member, recipient member, plan), the last three None when unknown."""
    try:
        records.check("Referral", referral)
        records.check_dates("Referral", referral)
    except FieldValueError as exc:  # name the field, never its value
        return Deny("invalid_referral", f"field {exc.path} holds no date (YYYY-MM-DD)"), \
            None, None, None
    except RecordError as exc:
        return Deny("invalid_referral", f"field {exc.path} does not match the contract"), \
            None, None, None
    try:
        sender = directory.member(referral["senderAgency"])
    except DirectoryError:
        return Deny("unknown_sender", f"{referral['senderAgency']} is not in directory serial "
                                      f"{directory.serial}"), None, None, None
    try:
        recipient = directory.member(referral["recipientAgency"])
    except DirectoryError:
        return Deny("unknown_recipient", f"{referral['recipientAgency']} is not in directory "
                                         f"serial {directory.serial}"), sender, None, None
    if consent is not None:
        try:
            records.check("Consent", consent)
        except RecordError as exc:
            return Deny("consent_missing", f"the consent held for this person is not a valid "
                                           f"Consent record (field {exc.path})"), \
                sender, recipient, None
    refusal = consents.check(referral, consent, recipient, sender, policy, now)
    if refusal is not None:
        return refusal, sender, recipient, None
    basis = referral["legalBasis"]
    categories = frozenset(consent["dataCategories"]) if basis == "Consent" else None
    planned = minimise.plan(policy, referral, sender, recipient, categories)
    if isinstance(planned, Deny):
        return planned, sender, recipient, None
    # The input was checked above, so the projection is valid by construction; the sealing
    # checks it again.
    record = minimise.project(referral, planned, recipient["agencyId"], secret, now, check=False)
    return Allow(record, _forwarded(record, planned), planned.rules, basis), sender, recipient, \
        planned


def decide(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
           now: int, secret: bytes) -> Allow | Deny:
    """Whether ``referral`` may go to its recipient and, if so, the minimised record.

    ``consent``: the Consent dict the domain holds for the referral's subject, or None.
    ``secret``: the domain's pseudonymisation secret (pseudonyms are keyed per recipient).
    """
    return _decide(referral, consent, directory, policy, now, secret)[0]


def explain(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
            now: int, secret: bytes) -> Explanation:
    """The decision with one line per field (in contract order) when it is an Allow."""
    decision, sender, recipient, planned = _decide(referral, consent, directory, policy, now,
                                                   secret)
    if planned is None:
        return Explanation(decision, sender, recipient, ())
    lines = []
    for step in planned.steps:
        sources = catalogue.ADDRESS_FIELDS if step.field == catalogue.ADDRESS else (step.field,)
        present = any(minimise.value_at(referral, s) not in (None, "", []) for s in sources)
        lines.append(Line(step.field, step.action, step.rule, present,
                          catalogue.outputs(step.field, step.action)))
    return Explanation(decision, sender, recipient, tuple(lines))


def describe(line: Line) -> str:
    """What happens to one field, in words: "keep", "generalise -> person.ageBand", "dropped:
    no rule"."""
    if line.rule is None:
        return "dropped: no rule"
    if line.action in ("generalise", "city", "country"):
        return f"{line.action} -> {', '.join(line.output)}"
    return line.action


def render(explanation: Explanation, policy: Policy) -> list[str]:
    """The explanation as text lines, for the CLI (field names and rules, never values)."""
    d = explanation.decision
    out = []
    if isinstance(d, Deny):
        out.append(f"refused: {d.reason}" + (f" ({d.detail})" if d.detail else ""))
        return out
    out.append(f"forward: legal basis {d.basis}; policy {policy.domain} {policy.version}; "
               f"rules {', '.join(d.rules)}")
    width = max(len(line.field) for line in explanation.lines)
    what = max(len(describe(line)) for line in explanation.lines)
    for line in explanation.lines:
        text = f"  {line.field:<{width}}  {describe(line):<{what}}  {line.rule or ''}".rstrip()
        out.append(text + ("" if line.present else "  (empty in this referral)"))
    return out
