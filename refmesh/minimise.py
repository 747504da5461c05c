"""Minimisation: which fields a recipient gets (``plan``) and the record it gets (``project``).

``plan`` combines the national rule for the recipient's role and the referral's purpose with,
across a border, the cross-border rule for the jurisdiction pair (the stricter action wins per
field), then drops every field whose data category the consent does not cover. ``project``
builds a NEW Referral from the fields the plan names: an allow-list projection, never a copy
with deletions, so a field added to the contract later stays behind until a rule names it.

Transformations:
- generalise ``person.birthdate``: the 5-year age band (``25-29``) at ``now`` in
  ``person.ageBand``; a missing or invalid birth date gives null;
- ``person.address``: keep (all five mailing fields), city (city and country), country;
- pseudonymise: ``ps-`` and 16 hex digits of HMAC-SHA256 under a key derived from the domain's
  secret and the recipient's id. Stable for one recipient (it can link its own referrals of one
  person), different across recipients (two recipients cannot join their copies). subjectId
  and consentId are always pseudonymised.
"""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import groupby

from refmesh import fields as catalogue
from refmesh import binary, records
from refmesh.decisions import Deny
from refmesh.policy import Policy, Rule, stricter

PSEUDONYM_LABEL = b"refmesh-pseudonym-v1\0"
CATEGORY_RULE = "consent:categories"
ROUTING_RULE, ALWAYS_RULE = "routing", "always"
DAY_MS = 86_400_000
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class Step:
    """What happens to one field: ``action`` (keep, generalise, city, country, pseudonymise,
    drop) and the ``rule`` that decided it (a rule id, routing, always, consent:categories), or
    None for a field no rule names (dropped)."""

    field: str
    action: str
    rule: str | None


def _split(name: str) -> tuple[str, str]:
    section, _, leaf = name.rpartition(".")
    return section, leaf


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]  # one per field of refmesh.fields.PLANNED, in that order
    rules: tuple[str, ...]  # the rule ids applied: national, cross-border, consent:categories

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.field == name)

    @cached_property
    def copies(self) -> tuple[tuple[str, str, str, str], ...]:
        """(action, field, section, leaf) of every source field the projection reads: the
        steps that pass something, with person.address expanded to its mailing fields."""
        out = []
        for s in self.steps:
            if s.field == catalogue.ADDRESS:
                out += [("keep", part, *_split(part)) for part in
                        catalogue.ADDRESS_LEVELS[s.action]]
            elif s.action != "drop":
                out.append((s.action, s.field, *_split(s.field)))
        return tuple(out)

    @cached_property
    def layout(self) -> tuple[tuple[str, tuple | None, str | None], ...]:
        """What ``project`` writes, per field of the Referral contract in its order: (name,
        None, action or None) for a top-level field, (name, ((leaf, action or None, dotted
        name), ...), None) for a section; None: the field is withheld."""
        action = {name: a for a, name, _, _ in self.copies}
        out = []
        for f in catalogue.REFERRAL["fields"]:
            name = f["name"]
            leaves = catalogue.SECTION_FIELDS.get(name)
            if leaves is None:
                out.append((name, None, action.get(name)))
            else:
                out.append((name, tuple((leaf, action.get(f"{name}.{leaf}"), f"{name}.{leaf}")
                                        for leaf in leaves), None))
        return tuple(out)

    @cached_property
    def projector(self) -> Callable:
        """``project``'s work for this plan, compiled at its first use (``_compile_projector``)."""
        return _compile_projector(self.layout)

    @cached_property
    def outputs(self) -> tuple[tuple[str, str, str], ...]:
        """(field, section, leaf) of every field of the projection that may carry a value."""
        names = [n for s in self.steps for n in catalogue.outputs(s.field, s.action)]
        return tuple((n, *_split(n)) for n in dict.fromkeys(names))

    @cached_property
    def carried(self) -> Callable:
        """(projected record) -> the dotted names of the ``outputs`` that carry a value in it
        (neither null nor empty), compiled at its first use."""
        code = ["def carried(o):", "n = []"]
        for section, outputs in groupby(self.outputs, key=lambda output: output[1]):
            holder = "o"
            if section:
                code += [f"h = o.get({section!r})", "if not isinstance(h, dict): h = _EMPTY"]
                holder = "h"
            code += [f"if {holder}.get({leaf!r}) not in (None, ''): n.append({name!r})"
                     for name, _, leaf in outputs]
        code.append("return tuple(n)")
        return binary.define("carried", code, {"_EMPTY": {}})


def plan(policy: Policy, referral: dict, sender_member: dict, recipient_member: dict,
         consent_categories: set | frozenset | None) -> Plan | Deny:
    """The plan for sending ``referral`` to ``recipient_member``; Deny (no_rule,
    no_cross_border_rule) when the policy has no rule for it. ``consent_categories`` is the
    consent's dataCategories, or None when the legal basis is not consent."""
    role, purpose = recipient_member["role"], referral["purpose"]
    national = policy.rule_for(role, purpose)
    if national is None:
        return Deny("no_rule", f"policy {policy.version} has no rule for {role} and {purpose}")
    origin, destination = sender_member["jurisdiction"], recipient_member["jurisdiction"]
    crossing = None
    if origin != destination:
        crossing = policy.cross_border_for(origin, destination, purpose)
        if crossing is None:
            return Deny("no_cross_border_rule", f"policy {policy.version} has no cross-border "
                                                f"rule from {origin} to {destination} for "
                                                f"{purpose}")
    key = ("plan", national.id, crossing and crossing.id,
           None if consent_categories is None else frozenset(consent_categories))
    return policy.memo(key, lambda: _plan(national, crossing, consent_categories))


def _plan(national: Rule, crossing: Rule | None, consent_categories) -> Plan:
    steps = []
    used = [national.id] + ([crossing.id] if crossing else [])
    for name in catalogue.PLANNED:
        if name in catalogue.ALWAYS_KEPT:
            steps.append(Step(name, "keep", ROUTING_RULE))
            continue
        if name in catalogue.ALWAYS_PSEUDONYMISED:
            steps.append(Step(name, "pseudonymise", ALWAYS_RULE))
            continue
        action, rule = national.action(name), national.id
        if action is None:
            steps.append(Step(name, "drop", None))
            continue
        if crossing is not None:
            other = crossing.action(name) or "drop"  # a cross-border rule is an allow-list too
            combined = stricter(action, other)
            if combined != action:
                rule = crossing.id if combined == other else f"{national.id}+{crossing.id}"
            action = combined
        if action != "drop" and consent_categories is not None and \
                catalogue.INFO[name].category not in consent_categories:
            action, rule = "drop", CATEGORY_RULE
            if CATEGORY_RULE not in used:
                used.append(CATEGORY_RULE)
        steps.append(Step(name, action, rule))
    return Plan(tuple(steps), tuple(used))


# --- the projection -----------------------------------------------------------------------------

def pseudonym(secret: bytes, recipient_id: str, field: str, value: str) -> str:
    """The pseudonym of ``value`` (of ``field``) for one recipient."""
    mac = hmac.digest(_recipient_key(secret, recipient_id),
                      field.encode("utf-8") + b"\0" + value.encode("utf-8"), "sha256")
    return "ps-" + mac.hex()[:16]


@lru_cache(maxsize=256)
def _recipient_key(secret: bytes, recipient_id: str) -> bytes:
    return hmac.digest(secret, PSEUDONYM_LABEL + recipient_id.encode("utf-8"), "sha256")


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number since 1970-01-01 (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def age_band(birthdate: str | None, now: int) -> str | None:
    """The 5-year age band (e.g. "25-29") at ``now`` (epoch ms, UTC) of an ISO birth date;
    None when the date is missing, invalid, in the future or more than 130 years ago."""
    m = _DATE.fullmatch(birthdate) if isinstance(birthdate, str) else None
    if m is None:
        return None
    by, bm, bd = (int(g) for g in m.groups())
    if not _valid_date(by, bm, bd):
        return None
    ty, tm, td = _civil(now // DAY_MS)
    age = ty - by - ((tm, td) < (bm, bd))
    if not 0 <= age <= 130:
        return None
    low = age - age % 5
    return f"{low}-{low + 4}"


def value_at(referral: dict, name: str):
    """The value of a dotted field in a Referral dict; None when it or its section is absent."""
    section, _, leaf = name.rpartition(".")
    holder = referral.get(section) if section else referral
    return holder.get(leaf) if isinstance(holder, dict) else None


def project(referral: dict, plan: Plan, recipient_id: str, secret: bytes, now: int, *,
            check: bool = True) -> dict:
    """The minimised copy of ``referral`` for ``recipient_id``: a new Referral dict holding only
    what ``plan`` passes. ``referral`` must be valid against the contract; the projection then
    is too (checked before it is returned unless ``check`` is False, for a caller that checked
    the input, as ``decide`` does: the sealing checks the output again anyway).

    Every field is written: withheld ones as null (or, for caseRef, empty: the contract
    requires it, and the recipient refers to the case by referralId); a nullable section that
    passes nothing is null. The plan's projection is compiled once (``Plan.projector``)."""
    if referral.get("recipientAgency") != recipient_id:
        raise ValueError("project: the referral is addressed to another recipient than the "
                         "one its pseudonyms would be keyed for")
    out = plan.projector(referral, recipient_id, secret, now)
    if check:
        records.check("Referral", out)
    return out


def _compile_projector(layout) -> Callable:
    """``project``'s work for one plan as a Python function (r, rid, secret, now) -> dict,
    generated from the plan's ``layout``: one dict display per section and one for the record,
    withheld fields as constants, no loop or branch on actions left for each referral."""
    code = ["def projector(r, rid, secret, now):", "band = None"]
    top = []
    for name, leaves, action in layout:
        if leaves is None:
            withheld = '""' if name == "caseRef" else "None"
            top.append(f"{name!r}: " + (withheld if action is None else
                                         _passed(action, "r", name, name)))
            continue
        passed = [leaf for leaf, act, _ in leaves if act not in (None, "generalise")]
        if name in catalogue.NULLABLE_SECTIONS and not passed and name != "person":
            top.append(f"{name!r}: None")  # nothing of it passes: withheld whole
            continue
        code += [f"h = r.get({name!r})", "if not isinstance(h, dict): h = _EMPTY"]
        items = []
        for leaf, act, dotted in leaves:
            if act == "generalise":  # person.birthdate, the only field that takes it
                code.append(f"band = age_band(h.get({leaf!r}), now)")
            items.append(f"{leaf!r}: " + ("None" if act in (None, "generalise") else
                                          _passed(act, "h", leaf, dotted)))
        code.append(f"s_{name} = {{{', '.join(items)}}}")
        if name == "person":
            code.append("if band is not None: s_person['ageBand'] = band")
            passed.append("ageBand")
        if name in catalogue.NULLABLE_SECTIONS:
            given = " or ".join(f"s_{name}[{leaf!r}] is not None"
                                for leaf in dict.fromkeys(passed))
            code.append(f"if not ({given}): s_{name} = None")
        top.append(f"{name!r}: s_{name}")
    code += ["if s_service['services'] is None: s_service['services'] = []",
             f"return {{{', '.join(top)}}}"]
    return binary.define("projector", code, {"_kept": _kept, "age_band": age_band,
                                             "pseudonym": pseudonym, "_EMPTY": {}})


def _passed(action: str, holder: str, leaf: str, dotted: str) -> str:
    """The expression of what a field of ``action`` passes, read from ``holder``."""
    value = f"{holder}.get({leaf!r})"
    if action == "keep":  # an array is copied, never shared with the sender's record
        return f"_kept({value})" if catalogue.LEAVES.get(dotted) == "array" else value
    if action == "pseudonymise":
        return f"(None if (v := {value}) is None else pseudonym(secret, rid, {dotted!r}, v))"
    return "None"  # no other action passes a value as it is (an address level is kept parts)


def _kept(value):
    return list(value) if isinstance(value, (list, tuple)) else value


