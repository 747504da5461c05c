"""The aggregation state, as plain values the agents keep in faust tables (JSON bytes, checked
on every load; never pickle): per window, cell key -> count. (The release job's privacy ledger
is refmesh.aggregate.ledger.)"""
from __future__ import annotations

import json
from collections.abc import Mapping

from refmesh.aggregate.cells import cell_from_key, cell_key, kind_of
from refmesh.aggregate.windows import Window
from refmesh.errors import AggregateError

Counts = dict[str, int]  # cell key -> number of referrals (or outcomes)


def count(counts: Mapping[str, int], cell: Mapping, n: int = 1) -> Counts:
    """A new Counts with ``n`` more in ``cell``."""
    if kind_of(cell) not in ("cell", "outcome"):
        raise ValueError("only referral and outcome cells are counted")
    key = cell_key(cell)
    return {**counts, key: counts.get(key, 0) + n}


def add(state: Mapping[Window, Counts], window: Window, cell: Mapping) -> dict:
    """A new state (window -> Counts) with one more in ``cell`` of ``window``."""
    return {**state, window: count(state.get(window, {}), cell)}


def merge(*parts: Mapping[str, int]) -> Counts:
    """The sum of several Counts (e.g. one per partition of the agents' table)."""
    out: Counts = {}
    for part in parts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return out


def dumps(counts: Mapping[str, int]) -> bytes:
    """Counts as bytes for a faust table value (JSON, sorted: never pickle)."""
    return json.dumps(dict(counts), sort_keys=True, separators=(",", ":")).encode()


def _int_map(doc, what: str) -> dict[str, int]:
    if not isinstance(doc, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in doc.values()):
        raise AggregateError(f"{what}: expected an object of counts (integers >= 0)")
    for key in doc:
        cell_from_key(key)
    return doc


def _json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AggregateError(f"{what} is not JSON: {exc}") from None


def loads(data: bytes | None) -> Counts:
    """Counts from ``dumps`` (empty for None), checked: every key a cell, every value >= 0."""
    return {} if not data else _int_map(_json(data, "aggregate counts"), "aggregate counts")
