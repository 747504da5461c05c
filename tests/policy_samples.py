"""Shared test data for the consent and minimisation core: the sample mesh's members, its two
policies (gateways/sample_policy*.yaml), consents, and referrals with a canary in every string.
All synthetic."""
from __future__ import annotations

import types
from pathlib import Path

import yaml

from refmesh import directory as directories
from refmesh import fields, keys, policy, records, samples, schemas
from refmesh.directory import TrustedDirectory

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_POLICY = ROOT / "devmesh" / "sample_policy.yaml"
SAMPLE_POLICY_ET = ROOT / "devmesh" / "sample_policy_et.yaml"
NOW = 1_790_000_000_000  # 2026-09-21
DAY = 86_400_000
SECRET = b"\x01" * 32

# (agency, role, jurisdiction, domain) of devmesh/sample_mesh.py
AGENCIES = (
    ("BH/GOV/NCCTIP", "CentralGovernmentOrganisation", "BH", None),
    ("BH/GOV/HOTLINE", "CentralGovernmentOrganisation", "BH", "BH/GOV/NCCTIP"),
    ("BH/GOV/MOI-ATU", "LawEnforcement", "BH", "BH/GOV/NCCTIP"),
    ("BH/GOV/SHELTER", "CentralGovernmentOrganisation", "BH", "BH/GOV/NCCTIP"),
    ("BH/NGO/PSYCH", "HealthServiceOrganisation", "BH", "BH/GOV/NCCTIP"),
    ("BH/IO/IOM", "IntergovernmentalOrganisation", "BH", "BH/GOV/NCCTIP"),
    ("ET/GOV/NCC", "CentralGovernmentOrganisation", "ET", None),
    ("ET/NGO/RECEPTION", "NGO", "ET", "ET/GOV/NCC"),
)
HOTLINE, POLICE, SHELTER, PSYCH, IOM, RECEPTION = (
    "BH/GOV/HOTLINE", "BH/GOV/MOI-ATU", "BH/GOV/SHELTER", "BH/NGO/PSYCH", "BH/IO/IOM",
    "ET/NGO/RECEPTION")
ALL_CATEGORIES = schemas.symbols("DataCategory")


def member(agency_id: str, role: str, jurisdiction: str, domain: str | None = None) -> dict:
    return {"agencyId": agency_id, "name": f"{agency_id} (sample)", "role": role,
            "jurisdiction": jurisdiction, "domain": domain, "keys": []}


MEMBERS = {a: member(a, r, j, d) for a, r, j, d in AGENCIES}


def directory() -> TrustedDirectory:
    """The sample mesh's members, unsigned (decide only looks members up)."""
    return TrustedDirectory({"serial": 1, "coordinator": "BH/GOV/NCCTIP", "issuedAt": 0,
                             "expiresAt": NOW + 365 * DAY, "members": list(MEMBERS.values())})


def signed_mesh(now: int = NOW) -> types.SimpleNamespace:
    """The sample mesh with real keys: ``keys`` (agency -> AgencyKeys) and ``directory`` (the
    TrustedDirectory signed by BH/GOV/NCCTIP), for tests that seal and open envelopes."""
    made = {agency: keys.generate(agency, now - 1000) for agency, *_ in AGENCIES}
    draft = directories.empty(AGENCIES[0][0])
    for agency, role, jurisdiction, domain in AGENCIES:
        draft = directories.add_member(draft, directories.member_entry(
            made[agency], f"{agency} (sample)", role, jurisdiction, domain, now - 1000))
    coordinator = made[AGENCIES[0][0]]
    trusted = directories.load(directories.sign(draft, coordinator, now - 1000),
                               directories.TrustAnchor.of(coordinator), now)
    return types.SimpleNamespace(keys=made, directory=trusted)


def load(path: Path = SAMPLE_POLICY) -> policy.Policy:
    return policy.parse(yaml.safe_load(path.read_text()), path.name)


def referral(sender: str = HOTLINE, recipient: str = SHELTER, purpose: str = "Services",
             **overrides) -> dict:
    return samples.referral(sender=sender, recipient=recipient, purpose=purpose, **overrides)


def consent(**overrides) -> dict:
    """A consent for samples.referral()'s subject covering every role, purpose and category
    inside Bahrain; overrides narrow it."""
    value = samples.consent(
        controller=HOTLINE, valid_from=NOW - 30 * DAY,
        purposes=list(policy.PURPOSES), recipientRoles=list(schemas.symbols("AgencyRole")),
        dataCategories=list(ALL_CATEGORIES))
    value.update(overrides)
    return value


# --- canaries --------------------------------------------------------------------------------

def _string_fields() -> dict[str, str]:
    """Dotted name -> "string" or "array" for every field of Referral that holds text."""
    out = {}
    for f in schemas.contract("Referral").raw["fields"]:
        for name, t in _flatten(f["name"], f["type"]):
            branches = [b for b in (t if isinstance(t, list) else [t]) if b != "null"]
            b = branches[0]
            if b == "string":
                out[name] = "string"
            elif isinstance(b, dict) and b["type"] == "array" and b["items"] == "string":
                out[name] = "array"
    return out


def _flatten(name: str, t):
    branches = t if isinstance(t, list) else [t]
    record = next((b for b in branches if isinstance(b, dict) and b["type"] == "record"), None)
    if record is None:
        return [(name, t)]
    return [(f"{name}.{g['name']}", g["type"]) for g in record["fields"]]


STRING_FIELDS = _string_fields()
#: the string fields documented as dates: their canaries are dates too (a referral with a
#: birth date that is no date is refused), of years so long ago that no age band comes of them
DATE_FIELDS = frozenset(".".join(p) for p in records.DATES["Referral"])


def canaried(recipient: str = "cnry-recipient-zz", tag: str = "",
             **overrides) -> tuple[dict, dict[str, str]]:
    """samples.referral() with a distinct canary in every string field (two in each string
    list), and the map canary -> field. recipientAgency keeps ``recipient`` (pseudonyms are
    keyed by it). ``tag`` goes into every canary but the dates', to tell several referrals'
    canaries apart; a date field gets a date of the 1800s, one per field."""
    value = samples.referral(**overrides)
    canaries: dict[str, str] = {}
    for i, (name, kind) in enumerate(sorted(STRING_FIELDS.items())):
        section, _, leaf = name.rpartition(".")
        holder = value[section] if section else value
        if name == "recipientAgency":
            holder[leaf] = recipient
            canaries[recipient] = name
            continue
        if name in DATE_FIELDS:
            holder[leaf] = f"18{i % 100:02d}-{i % 9 + 1:02d}-{i % 19 + 10}"
            canaries[holder[leaf]] = name
        elif kind == "string":
            holder[leaf] = f"cnry{tag}{i:03d}s{'x' * 6}"
            canaries[holder[leaf]] = name
        else:
            holder[leaf] = [f"cnry{tag}{i:03d}a{j}{'x' * 5}" for j in range(2)]
            canaries.update({c: name for c in holder[leaf]})
    return value, canaries


def kept_strings(pol: policy.Policy, role: str, purpose: str, origin: str = "BH",
                 destination: str = "BH") -> set[str]:
    """The string fields (of STRING_FIELDS) whose value a recipient of ``role`` gets unchanged,
    read straight from the rules' ``keep`` entries of ``pol`` (an oracle that does not use
    refmesh.minimise): routing fields, fields the national rule keeps and, across a border,
    the cross-border rule keeps too, and the mailing fields of the address level both allow.
    Assumes a consent covering every data category."""
    national = pol.rule_for(role, purpose)
    crossing = pol.cross_border_for(origin, destination, purpose) \
        if origin != destination else None
    rules = [national] + ([crossing] if crossing else [])
    kept = {name for name in STRING_FIELDS if name in fields.ALWAYS_KEPT}
    kept |= {name for name in STRING_FIELDS
             if all(rule.action(name) == "keep" for rule in rules)}
    levels = [set(fields.ADDRESS_LEVELS[rule.action(fields.ADDRESS) or "drop"])
              for rule in rules]
    return kept | (set.intersection(*levels) & set(STRING_FIELDS))
