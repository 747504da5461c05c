"""The privacy ledger: epsilon and delta spent per region, in total and per window.

Composition rule: **basic composition** (Dwork, McSherry, Nissim and Smith 2006; Dwork and Roth
2014, Theorem 3.16, which holds for adaptively chosen releases too): releases that are
(epsilon_i, delta_i)-DP each are together (sum epsilon_i, sum delta_i)-DP. Every reader of a
region's topic sees every release, so the region is charged every release of the domain, and a
release that would take the region's total past ``budget`` (epsilon) or ``delta_budget`` is
refused. The total bounds what anyone learns about any person from all releases; a person
whose counted events all fall in one window is also covered by that window's sum alone (the
other windows' counts do not depend on them: parallel composition), which the ledger keeps per
window until the window is final.

The ledger lives in the release job's state (encrypted, under the sealed head of
refmesh.statehead, so a rolled-back ledger stops the job instead of buying fresh budget).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping

from refmesh.errors import AggregateError, ConfigError

Ledger = dict[str, dict]  # region -> {"epsilon": e, "delta": d, "windows": {start: [e, d]}}
_TOLERANCE = 1 + 1e-9  # 0.1 + 0.1 + 0.1 must fit a budget of 0.3


def spent(ledger: Mapping[str, dict], region: str) -> tuple[float, float]:
    """(epsilon, delta) the region was charged in total."""
    entry = ledger.get(region) or {}
    return entry.get("epsilon", 0.0), entry.get("delta", 0.0)


def window_spent(ledger: Mapping[str, dict], region: str, start: int) -> tuple[float, float]:
    """(epsilon, delta) the region was charged for the window starting at ``start``."""
    eps, delta = ((ledger.get(region) or {}).get("windows") or {}).get(str(start), (0.0, 0.0))
    return eps, delta


def charge(ledger: Mapping[str, dict], region: str, start: int, epsilon: float, delta: float,
           budget: float | None, delta_budget: float | None) -> tuple[Ledger, str | None]:
    """(new ledger, None) after charging one release of the window starting at ``start``;
    (the ledger unchanged, "epsilon" or "delta") when it would pass that budget."""
    if budget is None or delta_budget is None:
        raise ConfigError("a release with noise needs an epsilon budget and a delta budget "
                          "per region (aggregate_budget, aggregate_delta_budget)")
    eps_total, delta_total = spent(ledger, region)
    eps_total, delta_total = eps_total + epsilon, delta_total + delta
    if eps_total > budget * _TOLERANCE:
        return {**ledger}, "epsilon"
    if delta_total > delta_budget * _TOLERANCE:
        return {**ledger}, "delta"
    eps_w, delta_w = window_spent(ledger, region, start)
    windows = {**((ledger.get(region) or {}).get("windows") or {}),
               str(start): [eps_w + epsilon, delta_w + delta]}
    return {**ledger, region: {"epsilon": eps_total, "delta": delta_total,
                               "windows": windows}}, None


def forget_window(ledger: Mapping[str, dict], region: str, start: int) -> Ledger:
    """The ledger without the per-window entry of a window whose state is deleted (its
    releases stay in the region's total)."""
    entry = ledger.get(region)
    if not entry or str(start) not in (entry.get("windows") or {}):
        return {**ledger}
    windows = {w: v for w, v in entry["windows"].items() if w != str(start)}
    return {**ledger, region: {**entry, "windows": windows}}


def dumps_ledger(ledger: Mapping[str, dict]) -> bytes:
    return json.dumps(dict(ledger), sort_keys=True).encode()


def _amount(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value >= 0


def loads_ledger(data: bytes | None) -> Ledger:
    """The ledger from ``dumps_ledger``, checked; a ledger written before delta was tracked
    (region -> epsilon) is read with delta 0 and no windows."""
    try:
        doc = {} if not data else json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AggregateError(f"privacy ledger is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AggregateError("privacy ledger: expected an object of region -> spent")
    out: Ledger = {}
    for region, entry in doc.items():
        if _amount(entry):  # the old form
            out[str(region)] = {"epsilon": float(entry), "delta": 0.0, "windows": {}}
            continue
        windows = entry.get("windows") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not _amount(entry.get("epsilon")) or not _amount(
                entry.get("delta")) or not isinstance(windows, dict) or not all(
                isinstance(w, str) and w.lstrip("-").isdigit() and isinstance(v, list)
                and len(v) == 2 and all(_amount(x) for x in v) for w, v in windows.items()):
            raise AggregateError(f"privacy ledger: the entry of region {region!r} is not "
                                 "{epsilon, delta, windows}")
        out[str(region)] = {"epsilon": float(entry["epsilon"]), "delta": float(entry["delta"]),
                            "windows": {w: [float(v[0]), float(v[1])]
                                        for w, v in windows.items()}}
    return out
