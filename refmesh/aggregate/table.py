"""What a regional body makes of verified releases: the newest revision of each window, rows
with HTCDS/CTDC-style column names, CSV and JSON, and the series the report charts.

Pure shaping of values ``wire.verify_release`` returned; reading the topic is the edge's job
(gateways/aggregates_reader.py) and so is drawing (gateways/aggregates_report.py).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from refmesh.aggregate.cells import DECISIONS, DIMS, OUTCOMES, kind_of
from refmesh.aggregate.windows import iso, label
from refmesh.aggregate.wire import verify_release
from refmesh.directory import TrustedDirectory
from refmesh.errors import AggregateError
from refmesh.minimise import DAY_MS, _civil

#: Export columns: CTDC names where CTDC has the field (yearOfRegistration, citizenship,
#: gender, ageBroad), HTCDS names otherwise (typeOfExploitation after vic_TypeOfExploitation).
#: Then the rule and, with noise, the claim a reader can check (Aggregate v3): the threshold,
#: the mechanism and its parameters, and the budget spent on the window and left to the region.
COLUMNS = ("yearOfRegistration", "monthOfRegistration", "period", "windowStart", "windowEnd",
           "domain", "region", "revision", "finalRevision", "cellType", "reportingCountry",
           "citizenship", "gender", "ageBroad", "typeOfExploitation", "trmStage",
           "recipientRole", "finalStatus", "count", "k", "resolution", "threshold", "epsilon",
           "noise", "delta", "maxPerPerson", "sensitivityL1", "sensitivityL2", "noiseScale",
           "rho", "windowEpsilon", "windowDelta", "epsilonRemaining", "deltaRemaining")
CLAIM = ("threshold", "finalRevision", "maxPerPerson", "sensitivityL1", "sensitivityL2",
         "noiseScale", "rho", "windowEpsilon", "windowDelta", "epsilonRemaining",
         "deltaRemaining")  # null in releases older than v3
COLUMN_OF = {"ageBand": "ageBroad", "exploitationType": "typeOfExploitation"}
_KIND_ORDER = {"total": 0, "marginal": 1, "cell": 2, "outcome": 3}


class Latest:
    """The highest revision of each (domain, window) seen so far."""

    def __init__(self) -> None:
        self.by_window: dict[tuple[str, int, int], dict] = {}

    def offer(self, aggregate: dict) -> bool:
        """Keep ``aggregate`` if it is newer than what is held for its window; say whether."""
        where = (aggregate["domain"], aggregate["windowStart"], aggregate["windowEnd"])
        held = self.by_window.get(where)
        if held is not None and held["revision"] >= aggregate["revision"]:
            return False
        self.by_window[where] = aggregate
        return True

    def releases(self) -> list[dict]:
        return [self.by_window[w] for w in sorted(self.by_window, key=lambda w: (w[1], w[2], w[0]))]


@dataclass(frozen=True)
class Rejected:
    """A message that is not a trustworthy release of this region: where it was and why."""

    where: str
    reason: str
    detail: str


def accept(messages: Iterable[tuple[str, bytes | None]], directory: TrustedDirectory, now: int,
           region: str, latest: Latest) -> tuple[list[dict], list[Rejected]]:
    """Verify each (where, bytes) and offer it to ``latest``; return the releases it kept (in
    order, newer revisions of one window after older ones) and the rejected messages."""
    kept, rejected = [], []
    for where, data in messages:
        try:
            agg = verify_release(data or b"", directory, now)  # a tombstone: rejected
        except AggregateError as exc:
            rejected.append(Rejected(where, exc.reason, str(exc)))
            continue
        if agg["region"] != region:
            rejected.append(Rejected(where, "wrong_region", f"release {agg['releaseId']} of "
                                     f"{agg['domain']} is for region {agg['region']}"))
        elif latest.offer(agg):
            kept.append(agg)
    return kept, rejected


def rows(aggregates: Iterable[dict]) -> list[dict]:
    """One row per released cell, marginal and total, in ``COLUMNS``; null means all values."""
    out = []
    for agg in aggregates:
        y, m, _ = _civil(agg["windowStart"] // DAY_MS)
        common = {"yearOfRegistration": y, "monthOfRegistration": m,
                  "period": label((agg["windowStart"], agg["windowEnd"])),
                  "windowStart": iso(agg["windowStart"]), "windowEnd": iso(agg["windowEnd"]),
                  "domain": agg["domain"], "region": agg["region"],
                  "revision": agg["revision"], "k": agg["k"], "resolution": agg["resolution"],
                  "epsilon": agg["epsilon"], "noise": agg.get("mechanism"),
                  "delta": agg.get("delta"), **{name: agg.get(name) for name in CLAIM}}
        cells = sorted(agg["cells"], key=lambda c: (_KIND_ORDER.get(kind_of(c), 9),
                                                    [c[d] or "" for d in DIMS]))
        for cell in cells:
            row = {**common, "cellType": kind_of(cell), "count": cell["count"]}
            row.update({COLUMN_OF.get(d, d): cell[d] for d in DIMS})
            out.append({c: row[c] for c in COLUMNS})
    return out


def to_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: "" if row[c] is None else row[c] for c in COLUMNS})
    return buffer.getvalue()


def to_json(table: list[dict]) -> str:
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


def _marginals(aggregates: Iterable[dict], dim: str):
    for agg in aggregates:
        for cell in agg["cells"]:
            if kind_of(cell) == "marginal" and cell[dim] is not None:
                yield agg, cell[dim], cell["count"]


def trend(aggregates: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Per calendar month (of the window start): released referrals by decision."""
    months: dict[str, dict[str, int]] = {}
    aggregates = list(aggregates)
    for agg in aggregates:  # every released month appears, even with nothing released
        y, m, _ = _civil(agg["windowStart"] // DAY_MS)
        months.setdefault(f"{y:04d}-{m:02d}", dict.fromkeys(DECISIONS, 0))
    for agg, value, n in _marginals(aggregates, "finalStatus"):
        if value in DECISIONS:
            y, m, _ = _civil(agg["windowStart"] // DAY_MS)
            months[f"{y:04d}-{m:02d}"][value] += n
    return dict(sorted(months.items()))


def breakdown(aggregates: Iterable[dict], dim: str) -> dict[str, int]:
    """Released count per value of one dimension over all releases, largest first."""
    sums: dict[str, int] = {}
    for _, value, n in _marginals(aggregates, dim):
        sums[value] = sums.get(value, 0) + n
    return dict(sorted(sums.items(), key=lambda item: (-item[1], item[0])))


def outcomes(aggregates: Iterable[dict]) -> dict[str, int]:
    """Released outcomes (accepted, rejected, completed, failed) over all releases."""
    found = breakdown(aggregates, "finalStatus")
    return {state: found[state] for state in OUTCOMES if state in found}


def claim(agg: dict) -> str:
    """The privacy claim of a release in one line, from its own fields ("" without noise)."""
    if agg["epsilon"] is None:
        return ""
    parts = [f"{agg.get('mechanism') or 'laplace'} epsilon={agg['epsilon']:g}"]
    if agg.get("delta") is not None:
        parts.append(f"delta={agg['delta']:.3g}")
    if agg.get("sensitivityL1") is not None:
        parts.append(f"m={agg['maxPerPerson']} L1={agg['sensitivityL1']} "
                     f"L2={agg['sensitivityL2']:.3g} scale={agg['noiseScale']:.4g}")
    if agg.get("rho") is not None:
        parts.append(f"rho={agg['rho']:.4g}")
    if agg.get("windowEpsilon") is not None:
        parts.append(f"window spent epsilon={agg['windowEpsilon']:g} "
                     f"delta={agg['windowDelta']:.3g}; region left "
                     f"epsilon={agg['epsilonRemaining']:g} delta={agg['deltaRemaining']:.3g}")
    return " ".join(parts)


def describe(agg: dict) -> list[str]:
    """A few lines for a terminal: the release and its claim, then its released cells and
    outcomes."""
    total = next((c["count"] for c in agg["cells"] if kind_of(c) == "total"), 0)
    last = agg.get("finalRevision")
    corrected = f"  corrected (revision {agg['revision']}" + (
        f" of {last})" if last is not None else ")") if agg["revision"] else ""
    threshold = f" threshold={agg['threshold']}" if agg.get("threshold") is not None else ""
    head = (f"{agg['domain']}  {label((agg['windowStart'], agg['windowEnd']))}  "
            f"k={agg['k']} resolution={agg['resolution']}{threshold}  total {total}{corrected}")
    lines = [head]
    if claim(agg):
        lines.append(f"  {claim(agg)}")
    for cell in agg["cells"]:
        if kind_of(cell) in ("cell", "outcome"):
            values = " ".join(cell[d] or "*" for d in DIMS)
            lines.append(f"  {cell['count']:>6}  {values}")
    return lines
