"""The catalogue of Referral fields that minimisation knows: which are routing data, which a
policy rule may name and how each may be treated, and the consent data category of each.

Derived from ``schemas/Referral.avsc`` (the source of truth) plus the classification below.
Names are dotted: top-level fields as in the contract (``caseRef``), section fields with their
section (``person.firstName``), and one pseudo-field, ``person.address``, for the five mailing
fields taken together (keep, city, country or drop).

A field the contract gains later and nobody classifies here is nameable, has no data category
(so consent never covers it) and is dropped until a rule names it: deny by default. A unit test
fails until it is classified.
"""
from __future__ import annotations

from dataclasses import dataclass

from refmesh import schemas

REFERRAL = schemas.contract("Referral").raw
SECTIONS = ("service", "person", "victim", "needs")

#: Routing and service data, not case data: passed as they are to every recipient.
ALWAYS_KEPT = (
    "referralId", "senderAgency", "recipientAgency", "trmStage", "purpose", "legalBasis",
    "consentVersion", "createdAt", "service.reason", "service.services", "service.urgency",
    "service.dueDate",
)
#: Passed only as a keyed hash per recipient, whatever the policy says: two recipients can
#: never join their copies on them. consentId is here (not among the routing fields) because
#: it is shared by every referral of one person, so it would be a join key like subjectId.
ALWAYS_PSEUDONYMISED = ("subjectId", "consentId")
#: Free text (HTCDS comment and detail fields): dropped unless a rule names it.
FREE_TEXT = frozenset({"service.details", "victim.caseComment", "needs.objectives",
                       "needs.medicalNotes"})

ADDRESS = "person.address"
ADDRESS_FIELDS = ("person.mailingStreet", "person.mailingCity", "person.mailingState",
                  "person.mailingPostalCode", "person.mailingCountry")
#: What each address action passes on.
ADDRESS_LEVELS = {
    "keep": ADDRESS_FIELDS,
    "city": ("person.mailingCity", "person.mailingCountry"),
    "country": ("person.mailingCountry",),
    "drop": (),
}
BIRTHDATE, AGE_BAND = "person.birthdate", "person.ageBand"

#: Consent.avsc DataCategory of every field a rule may name.
CATEGORY = {
    "caseRef": "ReferralDetails", "senderCaseWorker": "ReferralDetails",
    "service.details": "ReferralDetails",
    **{f"person.{n}": "Identity" for n in (
        "firstName", "middleName", "secondName", "birthdate", "ageBand", "identityNumber")},
    **{f"person.{n}": "Contact" for n in ("email", "mobilePhone", "homePhone")},
    ADDRESS: "Contact",
    **{f"person.{n}": "Demographics" for n in (
        "gender", "citizenship", "primaryLanguage", "secondaryLanguage", "maritalStatus",
        "numberOfChildren")},
    **{f"victim.{n}": "VictimContext" for n in (
        "traffickingStatus", "traffickingStatusDecisionMakingOrg", "relationshipToTrafficker",
        "ageWhenTrafficked", "methodOfRecruitment", "methodsOfControl", "typeOfExploitation",
        "forcedLabourIndustry", "typeOfSexExploitation", "countryOfExploitation",
        "cityOfExploitation")},
    "victim.caseComment": "ReferralDetails",
    **{f"needs.{n}": "SupportNeeds" for n in (
        "supportTypes", "objectives", "interpreterLanguage", "safetyRisk")},
    "needs.medicalNotes": "Health",
}


def _kind(avro_type) -> str:
    """string, int, long, enum, array or record, for a field type (nullable unions unwrapped)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return _kind(branches[0]) if len(branches) == 1 else "union"
    return avro_type if isinstance(avro_type, str) else avro_type["type"]


def _record_of(avro_type) -> dict | None:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return next((t for t in branches if isinstance(t, dict) and t["type"] == "record"), None)


def _leaves() -> dict[str, str]:
    """Every leaf field of the contract (dotted name -> kind), in contract order."""
    out: dict[str, str] = {}
    for f in REFERRAL["fields"]:
        record = _record_of(f["type"])
        if record is None:
            out[f["name"]] = _kind(f["type"])
            continue
        for g in record["fields"]:
            out[f"{f['name']}.{g['name']}"] = _kind(g["type"])
    return out


#: dotted name -> kind, for every leaf field of the Referral contract.
LEAVES = _leaves()
#: Section name -> its field names (short), for building records.
SECTION_FIELDS = {
    f["name"]: tuple(g["name"] for g in _record_of(f["type"])["fields"])
    for f in REFERRAL["fields"] if _record_of(f["type"]) is not None
}
#: Sections that may be null (withheld as a whole).
NULLABLE_SECTIONS = frozenset(f["name"] for f in REFERRAL["fields"]
                              if _record_of(f["type"]) is not None and isinstance(f["type"], list))


def _planned() -> tuple[str, ...]:
    names: list[str] = []
    for name in LEAVES:
        if name in ADDRESS_FIELDS:
            if ADDRESS not in names:
                names.append(ADDRESS)
            continue
        names.append(name)
    return tuple(names)


#: Every entry of a plan, in contract order: the leaf fields, with person.address for the
#: five mailing fields.
PLANNED = _planned()
#: Fields (and the address pseudo-field) a policy rule may name, in contract order.
NAMEABLE = tuple(n for n in PLANNED
                 if n not in ALWAYS_KEPT and n not in ALWAYS_PSEUDONYMISED)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: str  # string, int, long, enum, array, or "group" for person.address
    category: str | None
    free_text: bool
    actions: tuple[str, ...]  # the actions a rule may give it


def _actions(name: str, kind: str) -> tuple[str, ...]:
    if name == ADDRESS:
        return ("keep", "city", "country", "drop")
    if name == BIRTHDATE:
        return ("keep", "generalise", "pseudonymise", "drop")
    if kind == "string" and name not in FREE_TEXT:  # a keyed hash of free text says nothing
        return ("keep", "pseudonymise", "drop")
    return ("keep", "drop")


INFO = {
    name: FieldInfo(name, "group" if name == ADDRESS else LEAVES[name], CATEGORY.get(name),
                    name in FREE_TEXT, _actions(name, "group" if name == ADDRESS else LEAVES[name]))
    for name in NAMEABLE
}


def describe(name: str) -> str:
    """What a rule may do with ``name``, for error messages."""
    info = INFO[name]
    text = "free text" if info.free_text else info.kind
    return f"{name} ({text}) takes {', '.join(info.actions)}"


def outputs(name: str, action: str) -> tuple[str, ...]:
    """The leaf fields a plan entry writes into the projected record."""
    if name == ADDRESS:
        return ADDRESS_LEVELS[action]
    if action == "drop":
        return ()
    if name == BIRTHDATE and action == "generalise":
        return (AGE_BAND,)
    return (name,)
