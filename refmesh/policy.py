"""The policy domain's minimisation policy: which fields each recipient gets, and how.

A policy is written in YAML by the domain operator, parsed at the edge, and handed here as a
plain dict (``parse``), with a map from key paths to line numbers so that every error names the
file, the line and the key. It is validated against ``SCHEMA`` (below, as data): unknown keys
are refused by name. The result is a frozen ``Policy``.

    domain: BH/GOV/NCCTIP
    version: "2026-11-28.1"
    legal_bases:               # bases other than Consent, and the recipient roles they allow
      LegalObligation: [LawEnforcement]
    rules:                     # national rules: one per recipient role and purpose
      - id: shelter-services
        roles: [CentralGovernmentOrganisation, NGO]
        purposes: [Services]
        fields:
          person.firstName: keep
          person.birthdate: generalise      # to person.ageBand, a 5-year band such as 25-29
          person.address: city              # keep | city | country | drop
          person.identityNumber: pseudonymise
    cross_border:              # on top of the national rule, per jurisdiction pair
      - id: bh-to-et-return
        from: BH
        to: [ET]
        purposes: [Return]
        fields: {...}          # same syntax; the stricter action wins per field

Deny by default: a field no rule names is dropped, a role and purpose without a rule is refused,
and so is a transfer across a border without a cross-border rule. The catalogue of fields (and
what each may be given) is ``refmesh.fields``. Signing and verifying the policy file
(``sign``, ``load_signed``) live in ``refmesh.signed_policy`` and are re-exported here.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from refmesh import fields as catalogue
from refmesh import schemas
from refmesh.directory import AGENCY_ID, ROLES
from refmesh.errors import PolicyError
from refmesh.signed_policy import Signer, load_signed, sign  # noqa: F401 (the policy's API)

PURPOSES = tuple(schemas.symbols("Purpose"))
BASES = tuple(b for b in schemas.symbols("LegalBasis") if b != "Consent")
ACTIONS = ("keep", "generalise", "city", "country", "pseudonymise", "drop")
#: keep < generalise | city | country | pseudonymise < drop: the higher rank wins.
RANK = {"keep": 0, "generalise": 1, "city": 1, "country": 1, "pseudonymise": 1, "drop": 2}

_ROLE = {"type": "enum", "symbols": ROLES, "what": "an agency role"}
_PURPOSE = {"type": "enum", "symbols": PURPOSES, "what": "a purpose"}
_COUNTRY = {"type": "country"}
RULE = {"type": "object", "keys": {
    "id": {"type": "id", "required": True},
    "roles": {"type": "list", "items": _ROLE, "required": True},
    "purposes": {"type": "list", "items": _PURPOSE, "required": True},
    "fields": {"type": "fields", "required": True},
}}
CROSS_BORDER_RULE = {"type": "object", "keys": {
    "id": {"type": "id", "required": True},
    "from": {**_COUNTRY, "required": True},
    "to": {"type": "list", "items": _COUNTRY, "required": True},
    "purposes": {"type": "list", "items": _PURPOSE, "required": True},
    "fields": {"type": "fields", "required": True},
}}
#: The policy's own schema. Types: object (known keys only), map, list (non-empty, no
#: repeats), enum, country (ISO 3166 alpha-2), agency (COUNTRY/CLASS/CODE), id, string, and
#: fields (dotted Referral field -> action, checked against refmesh.fields).
SCHEMA = {"type": "object", "keys": {
    "domain": {"type": "agency", "required": True},
    "version": {"type": "string", "required": True},
    "legal_bases": {"type": "map",
                    "keys": {"type": "enum", "symbols": BASES,
                             "what": "a legal basis other than Consent"},
                    "values": {"type": "list", "items": _ROLE}},
    "rules": {"type": "list", "items": RULE, "required": True, "may_be_empty": True},
    "cross_border": {"type": "list", "items": CROSS_BORDER_RULE, "may_be_empty": True},
}}
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Rule:
    """One rule: national (``roles``) or cross-border (``origin`` -> ``destinations``)."""

    id: str
    purposes: frozenset[str]
    fields: Mapping[str, str]  # nameable field -> action
    roles: frozenset[str] = frozenset()
    origin: str | None = None
    destinations: frozenset[str] = frozenset()

    def action(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(frozen=True)
class Policy:
    domain: str
    version: str
    legal_bases: Mapping[str, frozenset[str]]  # basis -> recipient roles it allows
    rules: tuple[Rule, ...]
    cross_border: tuple[Rule, ...]
    _national: dict = field(init=False, repr=False, compare=False)
    _crossing: dict = field(init=False, repr=False, compare=False)
    _memo: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_national", {
            (role, purpose): r for r in self.rules for role in r.roles for purpose in r.purposes})
        object.__setattr__(self, "_crossing", {
            (r.origin, to, purpose): r for r in self.cross_border
            for to in r.destinations for purpose in r.purposes})
        object.__setattr__(self, "_memo", {})

    def memo(self, key: tuple, make):
        """A value derived from this policy alone (a minimisation plan), made once per key.
        Bounded by the policy: roles x purposes x countries x consent category sets."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
            return value

    def rule_for(self, role: str, purpose: str) -> Rule | None:
        """The national rule for a recipient role and purpose, if any."""
        return self._national.get((role, purpose))

    def cross_border_for(self, origin: str, destination: str, purpose: str) -> Rule | None:
        """The cross-border rule for a jurisdiction pair and purpose, if any."""
        return self._crossing.get((origin, destination, purpose))

    def allows_basis(self, basis: str, role: str) -> bool:
        """Whether the legal basis (other than Consent) is allowed for a recipient role."""
        return role in self.legal_bases.get(basis, ())


def stricter(a: str, b: str) -> str:
    """Combine two actions for one field: the higher rank wins; two different actions of the
    same rank give drop, except city and country (country is city, coarsened further)."""
    if a == b:
        return a
    if RANK[a] != RANK[b]:
        return a if RANK[a] > RANK[b] else b
    return "country" if {a, b} == {"city", "country"} else "drop"


def key_path(parts: tuple | list) -> str:
    """A key path as ``lines`` maps it: rules[2].fields.person.birthdate (indexes from 0)."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse(doc: Any, source: str = "policy", lines: Mapping[str, int] | None = None,
          domain: str | None = None) -> Policy:
    """Validate ``doc`` (the parsed YAML) and build the Policy; raise PolicyError naming
    ``source``, the line (from ``lines``, key path -> line number) and the key. With ``domain``
    the policy must be that domain's (e.g. the signer's)."""
    reader = _Reader(source, lines or {}, doc)
    top = reader.check(SCHEMA, doc, [])
    policy = Policy(
        domain=top["domain"], version=top["version"],
        legal_bases=MappingProxyType({b: frozenset(r) for b, r in
                                      top.get("legal_bases", {}).items()}),
        rules=tuple(_rule(r) for r in top["rules"]),
        cross_border=tuple(_rule(r) for r in top.get("cross_border", ())))
    reader.check_consistency(policy)
    if domain is not None and policy.domain != domain:
        raise reader.fail(["domain"], f"the policy is for {policy.domain}, not {domain}; "
                                      f"use {domain}'s policy", reason="wrong_domain")
    return policy


def _rule(doc: dict) -> Rule:
    crossing = "from" in doc
    return Rule(id=doc["id"], purposes=frozenset(doc["purposes"]), fields=doc["fields"],
                roles=frozenset(doc.get("roles", ())), origin=doc.get("from"),
                destinations=frozenset(doc.get("to", ())) if crossing else frozenset())


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _yaml_hint(value: Any) -> str:
    if isinstance(value, bool):
        return "; quote it: YAML reads NO, no, yes, on and off as true or false"
    if not isinstance(value, (str, list, dict)) and value is not None:
        return "; quote it so that YAML reads it as text"
    return ""


class _Reader:
    """Walks a document against a schema, turning every problem into a located PolicyError."""

    def __init__(self, source: str, lines: Mapping[str, int], doc: Any) -> None:
        self.source, self.lines, self.doc = source, lines, doc

    def fail(self, parts: list, problem: str, reason: str = "invalid",
             at: list | None = None) -> PolicyError:
        """The error for the key at ``parts``; its line is that of ``at`` (default ``parts``),
        or of the nearest enclosing key the line map knows."""
        line, at = None, parts if at is None else at
        for n in range(len(at), -1, -1):
            line = self.lines.get(key_path(at[:n]))
            if line:
                break
        return PolicyError(problem, source=self.source, path=self._shown(parts), line=line,
                           reason=reason)

    def _shown(self, parts: list) -> str:
        """The key path, with the rule's id after its index: rules[2] (shelter-services)."""
        shown = key_path(parts)
        if len(parts) >= 2 and parts[0] in ("rules", "cross_border") and isinstance(
                parts[1], int) and isinstance(self.doc, dict):
            try:
                rule_id = self.doc[parts[0]][parts[1]]["id"]
            except (KeyError, IndexError, TypeError):
                return shown
            if isinstance(rule_id, str):
                head = key_path(parts[:2])
                shown = f"{head} ({rule_id}){shown[len(head):]}"
        return shown

    def check(self, spec: dict, value: Any, parts: list) -> Any:
        return getattr(self, f"_{spec['type']}")(spec, value, parts)

    def _object(self, spec: dict, value: Any, parts: list) -> dict:
        known = spec["keys"]
        if not isinstance(value, dict):
            raise self.fail(parts, f"expected a mapping with keys {', '.join(known)}, got "
                                   f"{_kind(value)}")
        for key in value:
            if key not in known:
                raise self.fail([*parts, str(key)], f"unknown key {key!r}{_suggest(key, known)}"
                                                    f"; allowed: {', '.join(known)}")
        out = {}
        for key, sub in known.items():
            if key in value:
                out[key] = self.check(sub, value[key], [*parts, key])
            elif sub.get("required"):
                raise self.fail(parts, f"{key} is required")
        return out

    def _map(self, spec: dict, value: Any, parts: list) -> dict:
        if not isinstance(value, dict):
            raise self.fail(parts, f"expected a mapping, got {_kind(value)}")
        return {self.check(spec["keys"], k, [*parts, str(k)]):
                self.check(spec["values"], v, [*parts, str(k)]) for k, v in value.items()}

    def _list(self, spec: dict, value: Any, parts: list) -> tuple:
        if not isinstance(value, list):
            raise self.fail(parts, f"expected a list such as [a, b], got {_kind(value)}")
        if not value and not spec.get("may_be_empty"):
            raise self.fail(parts, "the list is empty; name at least one")
        items = tuple(self.check(spec["items"], v, [*parts, i]) for i, v in enumerate(value))
        for i, item in enumerate(items):
            if isinstance(item, str) and item in items[:i]:
                raise self.fail([*parts, i], f"{item} appears twice")
        return items

    def _enum(self, spec: dict, value: Any, parts: list) -> str:
        symbols = spec["symbols"]
        if value not in symbols or not isinstance(value, str):
            raise self.fail(parts, f"{value!r} is not {spec['what']}{_suggest(value, symbols)}; "
                                   f"one of {', '.join(symbols)}")
        return value

    def _country(self, spec: dict, value: Any, parts: list) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
            raise self.fail(parts, f"{value!r} is not an ISO 3166 country code such as BH"
                                   f"{_yaml_hint(value)}")
        return value

    def _agency(self, spec: dict, value: Any, parts: list) -> str:
        if not isinstance(value, str) or not AGENCY_ID.fullmatch(value):
            raise self.fail(parts, f"{value!r} is not an agency id COUNTRY/CLASS/CODE such as "
                                   "BH/GOV/NCCTIP")
        return value

    def _string(self, spec: dict, value: Any, parts: list) -> str:
        if not isinstance(value, str) or not value.strip():
            shown = repr(value) if isinstance(value, str) else f"{_kind(value)} {value}"
            raise self.fail(parts, f"expected non-empty text, got {shown}{_yaml_hint(value)}")
        return value

    def _id(self, spec: dict, value: Any, parts: list) -> str:
        if not isinstance(value, str) or not _RULE_ID.fullmatch(value):
            raise self.fail(parts, f"rule id {value!r} must be 1-64 letters, digits, '.', '_' "
                                   "or '-', such as shelter-services")
        return value

    def _fields(self, spec: dict, value: Any, parts: list) -> Mapping[str, str]:
        if not isinstance(value, dict):
            raise self.fail(parts, "expected a mapping of field: action, such as "
                                   f"person.firstName: keep; got {_kind(value)}")
        out = {}
        for name, action in value.items():
            where = [*parts, str(name)]
            if name not in catalogue.INFO:
                raise self.fail(parts, _unknown_field(name), at=where)
            info = catalogue.INFO[name]
            if action not in info.actions or not isinstance(action, str):
                raise self.fail(where, _bad_action(name, action))
            out[name] = action
        return MappingProxyType(out)

    def check_consistency(self, policy: Policy) -> None:
        seen: dict[str, list] = {}
        national: dict[tuple, Rule] = {}
        crossing: dict[tuple, Rule] = {}
        for kind, rules in (("rules", policy.rules), ("cross_border", policy.cross_border)):
            for i, rule in enumerate(rules):
                if rule.id in seen:
                    raise self.fail([kind, i, "id"], f"rule id {rule.id} is already used by "
                                                     f"{key_path(seen[rule.id])}")
                seen[rule.id] = [kind, i]
                if kind == "cross_border" and rule.origin in rule.destinations:
                    raise self.fail([kind, i, "to"], f"{rule.origin} is the origin itself; a "
                                                     "cross-border rule is between two countries")
                for purpose in sorted(rule.purposes):
                    for other in sorted(rule.roles or rule.destinations):
                        index, key = (national, (other, purpose)) if kind == "rules" else (
                            crossing, (rule.origin, other, purpose))
                        if key in index:
                            raise self.fail([kind, i], f"{' -> '.join(key[:-1])} for {purpose} "
                                            f"is already covered by rule {index[key].id}; one "
                                            "rule per case, so that the outcome never depends "
                                            "on the order of the rules")
                        index[key] = rule


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def _unknown_field(name: Any) -> str:
    if name in catalogue.ALWAYS_KEPT:
        return f"{name} is routing data, always passed; remove it from the rule"
    if name in catalogue.ALWAYS_PSEUDONYMISED:
        return (f"{name} is always pseudonymised per recipient (so that two recipients cannot "
                "join their copies); remove it from the rule")
    if name in catalogue.ADDRESS_FIELDS:
        return (f"{name} is part of {catalogue.ADDRESS}; write {catalogue.ADDRESS}: "
                "keep | city | country | drop")
    section = str(name).split(".", 1)[0] if "." in str(name) else None
    if section in catalogue.SECTION_FIELDS:
        known = [n for n in catalogue.NAMEABLE if n.startswith(f"{section}.")]
        listing = f"{section} has: {', '.join(n.split('.', 1)[1] for n in known)}"
    else:
        listing = ("Referral has: "
                   + ", ".join(n for n in catalogue.NAMEABLE if "." not in n)
                   + ", and the fields of " + ", ".join(catalogue.SECTIONS))
    return f"unknown field {name}{_suggest(name, catalogue.NAMEABLE)}; {listing}"


def _bad_action(name: str, action: Any) -> str:
    if name == catalogue.ADDRESS and action == "generalise":
        return "generalise the address to city or country: write city or country"
    if action not in ACTIONS or not isinstance(action, str):
        return (f"unknown action {action!r}{_suggest(action, ACTIONS)}; actions are keep, "
                f"generalise, pseudonymise, drop (and city, country for {catalogue.ADDRESS})"
                f"{_yaml_hint(action)}")
    why = {"generalise": f"only {catalogue.BIRTHDATE} (to an age band) and "
                         f"{catalogue.ADDRESS} (city, country) can be generalised",
           "pseudonymise": "only short text fields (not free text, enums, numbers or lists) "
                           "can be pseudonymised",
           "city": f"city and country apply to {catalogue.ADDRESS} only",
           "country": f"city and country apply to {catalogue.ADDRESS} only"}.get(action, "")
    return f"{name} cannot be given {action}: {why}; {catalogue.describe(name)}"
