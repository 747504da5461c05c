"""Cells: the coarse values a policy domain counts, and nothing else.

Each value is taken from an allow-list (ISO 3166 country codes, the contracts' enum symbols, age
bands computed here); anything else becomes ``UNKNOWN``, so no identifier, free text or typo can
reach the aggregation state. In the Aggregate contract a null dimension means "all values", so
null never stands for "not known".
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache

from refmesh import schemas
from refmesh.errors import AggregateError, ConfigError
from refmesh.minimise import _DATE, DAY_MS, _civil, _valid_date  # one calendar for the core

DIMS = ("reportingCountry", "citizenship", "gender", "ageBand", "exploitationType", "trmStage",
        "recipientRole", "finalStatus")
OUTCOME_DIMS = ("reportingCountry", "recipientRole", "finalStatus")
REQUIRED = ("reportingCountry", "finalStatus")  # every table keeps these two
UNKNOWN = "Unknown"
DECISIONS = ("forwarded", "refused")  # finalStatus of a referral cell: the domain's decision
OUTCOMES = ("accepted", "rejected", "completed", "failed")  # statuses counted as outcomes
AGE_BANDS = ((0, 8), (9, 17), (18, 20), (21, 23), (24, 26), (27, 29), (30, 38), (39, 47),
             (48, None))  # CTDC ageBroad
_COUNTRY = re.compile(r"[A-Z]{2}")
_BAND = re.compile(r"(\d{1,3})\s*(?:-\s*(\d{1,3})|\+)")
_SYMBOLS = {name: frozenset(schemas.symbols(enum)) for name, enum in (
    ("gender", "Gender"), ("exploitationType", "ExploitationType"), ("trmStage", "TrmStage"),
    ("recipientRole", "AgencyRole"))}


def age_broad(age: int | None) -> str:
    """The CTDC ageBroad band of an age in years (``UNKNOWN`` for None or out of range)."""
    if age is None or not 0 <= age <= 130:
        return UNKNOWN
    for low, high in AGE_BANDS:
        if high is None or age <= high:
            return f"{low}-{high}" if high is not None else f"{low}+"
    return UNKNOWN  # not reached


def age_at(birthdate: str | None, now: int) -> int | None:
    """Whole years at ``now`` (epoch ms UTC) of an ISO birth date; None when not a valid date."""
    m = _DATE.fullmatch(birthdate) if isinstance(birthdate, str) else None
    if m is None or not _valid_date(*(int(g) for g in m.groups())):
        return None
    by, bm, bd = (int(g) for g in m.groups())
    ty, tm, td = _civil(now // DAY_MS)
    return ty - by - ((tm, td) < (bm, bd))


def band_from(band: str | None) -> str:
    """The CTDC band holding every age of a record's band ("25-29", "48+"); ``UNKNOWN`` when
    the band straddles two CTDC bands (25-29 holds ages of 24-26 and 27-29) or is not a band."""
    m = _BAND.fullmatch(band.strip()) if isinstance(band, str) else None
    if m is None:
        return UNKNOWN
    low = int(m.group(1))
    high = int(m.group(2)) if m.group(2) is not None else None
    if high is None:
        return age_broad(low) if low >= AGE_BANDS[-1][0] else UNKNOWN
    return age_broad(low) if high >= low and age_broad(low) == age_broad(high) else UNKNOWN


def _first(values) -> object:
    return values[0] if isinstance(values, (list, tuple)) and values else None


def _symbol(name: str, value) -> str:
    return value if isinstance(value, str) and value in _SYMBOLS[name] else UNKNOWN


def _country(value) -> str:
    return value if isinstance(value, str) and _COUNTRY.fullmatch(value) else UNKNOWN


def check_dims(dims) -> tuple[str, ...]:
    """``dims`` in ``DIMS`` order, after checking it names known dimensions including the two
    every table keeps (reportingCountry, finalStatus)."""
    return _checked_dims(tuple(dims))


@lru_cache(maxsize=64)  # a domain has one set of dimensions: checked once, not per referral
def _checked_dims(dims: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(dims) - set(DIMS))
    if unknown or not set(REQUIRED) <= set(dims):
        raise ConfigError(f"table dimensions must be among {', '.join(DIMS)} and include "
                          f"{' and '.join(REQUIRED)}; got {', '.join(dims)}")
    return tuple(d for d in DIMS if d in dims)


def cell_of(referral: dict, decision: str, sender_member: dict, recipient_member: dict,
            now: int, dims: tuple[str, ...] = DIMS) -> dict:
    """The cell a decided referral counts in: coarse values only.

    ``decision`` is the domain's: forwarded or refused. The age is the CTDC band at ``now``
    from the birth date, else from the record's age band when that fits in one CTDC band.
    ``dims``: the dimensions the domain tabulates (default all eight); the others are null,
    which the Aggregate contract reads as "all values". Fewer dimensions mean larger cells:
    with eight, most cells of a month stay below k and are suppressed.
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    dims = check_dims(dims)
    person = referral.get("person") or {}
    victim = referral.get("victim") or {}
    age = age_broad(age_at(person.get("birthdate"), now))
    if age == UNKNOWN:
        age = band_from(person.get("ageBand"))
    cell = {
        "reportingCountry": _country(sender_member.get("jurisdiction")),
        "citizenship": _country(_first(person.get("citizenship"))),
        "gender": _symbol("gender", person.get("gender")),
        "ageBand": age,
        "exploitationType": _symbol("exploitationType", _first(victim.get("typeOfExploitation"))),
        "trmStage": _symbol("trmStage", referral.get("trmStage")),
        "recipientRole": _symbol("recipientRole", recipient_member.get("role")),
        "finalStatus": decision,
    }
    return {d: cell[d] if d in dims else None for d in DIMS}


def outcome_cell(status: dict, recipient_member: dict) -> dict | None:
    """The cell of a referral's outcome (a ReferralStatus in ``OUTCOMES``; None for any other
    state): reportingCountry (the jurisdiction of ``recipient_member``, the agency that set the
    status), recipientRole and finalStatus; the other dimensions are null (all values)."""
    if status.get("state") not in OUTCOMES:
        return None
    cell = dict.fromkeys(DIMS)
    cell.update(reportingCountry=_country(recipient_member.get("jurisdiction")),
                recipientRole=_symbol("recipientRole", recipient_member.get("role")),
                finalStatus=status["state"])
    return cell


def outcome_of(cell: Mapping, state: str) -> dict:
    """The outcome cell of a referral counted in ``cell``: the same coarse values, with the
    outcome (``OUTCOMES``) as finalStatus."""
    if state not in OUTCOMES:
        raise ValueError(f"{state!r} is not one of {', '.join(OUTCOMES)}")
    out = {d: cell.get(d) for d in DIMS}
    out["finalStatus"] = state
    if kind_of(out) != "outcome":
        raise ValueError("not a referral cell")
    return out


def kind_of(cell: Mapping) -> str:
    """What a row of a release is, from its shape alone: total (no dimension set), marginal
    (one), cell (a referral cell: reportingCountry, a decision as finalStatus and any other
    dimensions), outcome (reportingCountry, an outcome as finalStatus and any other
    dimensions: the referral's cell, or only ``OUTCOME_DIMS``); else invalid."""
    set_dims = tuple(d for d in DIMS if cell.get(d) is not None)
    if len(set_dims) < 2:
        return ("total", "marginal")[len(set_dims)]
    status = cell.get("finalStatus")
    if set(REQUIRED) <= set(set_dims) and status in DECISIONS:
        return "cell"
    if set(REQUIRED) <= set(set_dims) and status in OUTCOMES:
        return "outcome"
    return "invalid"


def cell_key(cell: Mapping) -> str:
    """A stable string for a cell's dimensions (JSON list in ``DIMS`` order)."""
    return json.dumps([cell.get(d) for d in DIMS], separators=(",", ":"))


def cell_from_key(key: str) -> dict:
    try:
        values = json.loads(key)
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(DIMS) or not all(
            v is None or isinstance(v, str) for v in values):
        raise AggregateError(f"{key[:80]!r} is not a cell key")
    cell = dict(zip(DIMS, values))
    if kind_of(cell) not in ("cell", "outcome"):
        raise AggregateError(f"{key[:80]!r} is neither a referral nor an outcome cell")
    return cell
