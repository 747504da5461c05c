"""Statistics for regional bodies: what a policy domain counts, and what it may release.

Pure, like all of refmesh: no clock (``now`` is passed in), no randomness (the noise source is
injected), no I/O. The domain's agents call, per event and per window:

    cell_of(referral, decision, sender, recipient, now)   a referral was decided -> cell
    outcome_of(cell, state)                                an outcome in its referral's cell
    outcome_cell(status, setter)                           ... or by the setter alone -> cell|None
    window_of(event_time(ts, now, late), unit)             the window an event counts in
    count(counts, cell)                                    one more in the window's counts
    dumps(counts) / loads(bytes)                           the faust table value
    due(window, now, grace_ms)                             may the window be released?
    final(window, now, late)                               may its state be deleted?
    decide_release(counts, ...)                            -> Publish | Refused | None
    plan_window(counts, held, ...)                         what the release job does now
    sign_release(record, keys)                             bytes for topic(region)

Rooms: ``cells`` (coarse values only), ``windows`` (calendar arithmetic), ``state`` (the
agents' table values), ``rule`` (suppression, rounding, marginals, noise, corrections, the
epsilon ledger; its module doc states the release rule and its guarantees), ``job`` (the
release job's plan for one window), ``wire`` (topic, record, signing), ``table`` (what a
regional body makes of verified releases).
"""
from refmesh.aggregate.cells import (
    AGE_BANDS,
    DECISIONS,
    DIMS,
    OUTCOME_DIMS,
    OUTCOMES,
    REQUIRED,
    UNKNOWN,
    age_at,
    age_broad,
    band_from,
    cell_from_key,
    cell_key,
    cell_of,
    check_dims,
    kind_of,
    outcome_cell,
    outcome_of,
)
from refmesh.aggregate.job import Held, Plan, plan_window
from refmesh.aggregate.rule import (
    BUDGET_EXHAUSTED,
    MECHANISMS,
    Publish,
    Refused,
    Release,
    charge,
    covers,
    decide_release,
    laplace,
    noise_scale,
    release,
)
from refmesh.aggregate.state import (
    Counts,
    Ledger,
    add,
    count,
    dumps,
    dumps_ledger,
    loads,
    loads_ledger,
    merge,
)
from refmesh.aggregate.windows import UNITS, Window, due, event_time, final, label, window_of
from refmesh.aggregate.wire import (
    check_region,
    record_of,
    release_id,
    sign_release,
    topic,
    verify_release,
)

__all__ = [
    "AGE_BANDS", "BUDGET_EXHAUSTED", "DECISIONS", "DIMS", "MECHANISMS", "OUTCOMES",
    "OUTCOME_DIMS", "REQUIRED", "UNITS", "UNKNOWN", "Counts", "Held", "Ledger", "Plan",
    "Publish", "Refused",
    "Release", "Window", "add", "age_at", "age_broad", "band_from", "cell_from_key", "cell_key",
    "cell_of", "charge", "check_dims", "check_region", "count", "covers", "decide_release",
    "due", "dumps", "dumps_ledger", "event_time", "final", "kind_of", "label", "laplace",
    "loads", "loads_ledger", "merge", "noise_scale", "outcome_cell", "outcome_of", "plan_window", "record_of",
    "release", "release_id", "sign_release", "topic", "verify_release", "window_of",
]
