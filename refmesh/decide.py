"""The policy domain's decision for one outbound referral: forward a minimised copy, or refuse.

    decide(referral, consent, directory, policy, now, secret) -> Allow | Deny

Deny by default, in this order: the referral must match its contract and its date fields hold
dates (minimisation would otherwise drop a birth date it cannot read, unsaid), both agencies
must be in the trusted directory, the consent (or an allowed legal basis) must permit the transfer
(``refmesh.consent.check``), and the policy must have a rule for it (``refmesh.minimise.plan``).
The Allow carries the projection (``refmesh.minimise.project``), never the original record.

``explain`` gives the same decision with one line per field (action and deciding rule), for
``refmesh policy explain`` and for operators; ``render`` turns it into text. A line also says
when the recipient gets, in its field, a value generalised from another field: the age band
computed from the birth date replaces the band the sender filled, or fills it if the sender left
it empty, whatever the rule for ``person.ageBand``; and when a generalisation yields nothing (no
age band from a birth date in the future or more than 130 years ago).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

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
    # the field whose generalised value the recipient gets in this one (person.birthdate for
    # person.ageBand): it replaces what the sender filled here (``present``), or fills it
    generalised_from: str | None = None
    empty: bool = False  # a generalisation of a value present that yields nothing


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    sender: dict | None
    recipient: dict | None
    lines: tuple[Line, ...]  # empty when refused


def _decide(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
            now: int, secret: bytes, checked: bool = False):
    """(decision, sender member, recipient member, plan), the last three None when unknown."""
    try:
        if not checked:
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
    if consent is not None and not checked:
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
    return Allow(record, planned.carried(record), planned.rules, basis), sender, recipient, \
        planned


def decide(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
           now: int, secret: bytes, *, checked: bool = False) -> Allow | Deny:
    """Whether ``referral`` may go to its recipient and, if so, the minimised record.

    ``consent``: the Consent dict the domain holds for the referral's subject, or None.
    ``secret``: the domain's pseudonymisation secret (pseudonyms are keyed per recipient).
    ``checked``: both dicts were checked against their contracts already (``codec.decode``
    checks what it decodes, ``domain.read_consent`` what it reads), so not again here.
    """
    return _decide(referral, consent, directory, policy, now, secret, checked)[0]


def explain(referral: dict, consent: dict | None, directory: TrustedDirectory, policy: Policy,
            now: int, secret: bytes) -> Explanation:
    """The decision with one line per field (in contract order) when it is an Allow."""
    decision, sender, recipient, planned = _decide(referral, consent, directory, policy, now,
                                                   secret)
    if planned is None:
        return Explanation(decision, sender, recipient, ())
    lines = []
    into: dict[str, str] = {}  # an output field -> the field generalised into it
    for step in planned.steps:
        sources = catalogue.ADDRESS_FIELDS if step.field == catalogue.ADDRESS else (step.field,)
        present = any(minimise.value_at(referral, s) not in (None, "", []) for s in sources)
        empty = False
        if step.action == "generalise" and present:  # person.birthdate, the only one
            empty = minimise.age_band(minimise.value_at(referral, step.field), now) is None
            if not empty:
                into[catalogue.AGE_BAND] = step.field
        lines.append(Line(step.field, step.action, step.rule, present,
                          catalogue.outputs(step.field, step.action), empty=empty))
    lines = [replace(line, generalised_from=into.get(line.field)) for line in lines]
    return Explanation(decision, sender, recipient, tuple(lines))


def describe(line: Line) -> str:
    """What happens to one field, in words: "keep", "generalise -> person.ageBand", "dropped:
    no rule", "keep, replaced by person.birthdate generalised"."""
    if line.rule is None:
        text = "dropped: no rule"
    elif line.action in ("generalise", "city", "country"):
        text = f"{line.action} -> {', '.join(line.output)}"
        if line.empty:
            text += " (none: no age band from this date)"
    else:
        text = line.action
    if line.generalised_from:
        text += (", replaced by " if line.present else ", filled with ") + \
            f"{line.generalised_from} generalised"
    return text


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
