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
    free_slot(counted, secret, person, start, stage, m)   the person's cap (``cap``)
    calibrate(epsilon=, delta=, ...)                       the noise of a release (``privacy``)
    decide_release(counts, ...)                            -> Publish | Refused
    windows_due(cursor, now, ...) / plan_window(...)       what the release job does now
    sign_release(record, keys)                             bytes for topic(region)

Rooms: ``cells`` (coarse values only), ``windows`` (calendar arithmetic), ``state`` (the
agents' table values), ``cap`` (what one person may add to a window's counts), ``sampling``
(exact integer noise), ``privacy`` (sensitivity, noise scale, threshold and delta of a
release), ``rule`` (suppression, rounding, marginals, noise; its module doc states the release
rule and its guarantees), ``ledger`` (epsilon and delta per region and window, basic
composition), ``job`` (the revision schedule and the release job's plan for one window),
``wire`` (topic, record, signing), ``table`` (what a regional body makes of verified releases).
"""
from refmesh.aggregate.cap import STAGE_OF, free_slot, slot_keys
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
from refmesh.aggregate.job import (
    Held,
    Plan,
    check_schedule,
    first_cursor,
    next_cursor,
    open_windows,
    plan_window,
    schedule,
    scheduled_revision,
    windows_due,
)
from refmesh.aggregate.ledger import Ledger, charge, dumps_ledger, forget_window, loads_ledger
from refmesh.aggregate.privacy import MECHANISMS, Noise, accuracy_bound, calibrate, sampler
from refmesh.aggregate.rule import (
    BUDGET_EXHAUSTED,
    DELTA_BUDGET_EXHAUSTED,
    Publish,
    Refused,
    Release,
    Sampler,
    check_rule,
    covers,
    decide_release,
    release,
    with_marginals,
)
from refmesh.aggregate.state import Counts, add, count, dumps, loads, merge
from refmesh.aggregate.windows import UNITS, Window, due, event_time, final, label, window_of
from refmesh.aggregate.wire import (
    check_region,
    record_of,
    release_id,
    sign_release,
    topic,
    verify_release,
)
from refmesh.errors import AggregateError

__all__ = [
    "AGE_BANDS", "BUDGET_EXHAUSTED", "DECISIONS", "DELTA_BUDGET_EXHAUSTED", "DIMS",
    "MECHANISMS", "OUTCOMES", "OUTCOME_DIMS", "REQUIRED", "STAGE_OF", "UNITS", "UNKNOWN",
    "AggregateError", "Counts", "Held", "Ledger", "Noise", "Plan", "Publish", "Refused",
    "Release", "Sampler", "Window", "accuracy_bound", "add", "age_at", "age_broad", "band_from",
    "calibrate", "cell_from_key", "cell_key", "cell_of", "charge", "check_dims", "check_region",
    "check_rule", "check_schedule", "count", "covers", "decide_release", "due", "dumps",
    "dumps_ledger", "event_time", "final", "first_cursor", "forget_window", "free_slot",
    "kind_of", "label", "loads", "loads_ledger", "merge", "next_cursor", "open_windows",
    "outcome_cell", "outcome_of", "plan_window", "record_of", "release", "release_id",
    "sampler", "schedule", "scheduled_revision", "sign_release", "slot_keys", "topic",
    "verify_release", "window_of", "windows_due", "with_marginals",
]
