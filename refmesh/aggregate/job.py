"""What the release job does with one window, decided from what it holds and the clock: pure.

    windows_due(cursor, now, ...)          every window the schedule has reached, from the cursor
    schedule(window, ...)                  when each revision of a window is published
    plan_window(counts, held, ...) -> Plan what to do for one window now

**The schedule.** Revision 0 of a window is published when the window is due (it closed
``grace_ms`` ago); then ``revisions`` corrections at fixed times spread evenly until the window
is final (``max_late_ms`` after it closed, when no event can count in it any more): the last
correction is published then, with every event of the window in it. Each revision recomputes
every cell from the counts of that moment, with fresh noise. A job that was stopped publishes,
when it is back, the latest revision the schedule has reached (the ones it missed are skipped:
fewer releases, never more).

**Every window is released.** The job releases each window from its cursor on (the first
window that was not final when the job first ran), with or without referrals: whether a release
exists, and when, depends on the clock alone, never on the counts. Windows before the cursor
are done: their state is deleted and they are never released again (a window's counts found
there, say after a crash during a deletion, are deleted unreleased).

The job (agents/releases.py) reads the window's counts and its release state, asks
``plan_window``, and carries the plan out in order: republish a stored release that never went
out (a crash after storing it: published as stored, never drawn again), then publish or refuse
the scheduled revision, audit a refusal the first time only, and delete the window's state once
it is final.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from refmesh.aggregate.rule import Publish, Refused, Release, decide_release
from refmesh.aggregate.windows import Window, due, final, window_of
from refmesh.errors import ConfigError

MAX_OPEN_WINDOWS = 1000  # windows between due and final, at most (aggregate_max_late_ms)


@dataclass(frozen=True)
class Held:
    """What the release state holds of one window."""

    stored: Release | None = None  # the last release stored (published or about to be)
    published: int = -1  # the revision last published, -1 for none
    refused: int = -1  # the revision whose refusal was last audited, -1 for none


@dataclass(frozen=True)
class Plan:
    republish: Release | None = None  # stored but never published: publish it as stored
    outcome: Publish | Refused | None = None  # the scheduled revision, when one is due
    audit_refusal: int | None = None  # the refused revision, when not audited yet
    delete: bool = False  # final: delete the window's counts, marks and release state


def check_schedule(grace_ms: int, max_late_ms: int, revisions: int) -> None:
    if not 0 <= grace_ms <= max_late_ms:
        raise ConfigError(f"a window must be due (aggregate_grace_ms {grace_ms}) no later than "
                          f"it is final (aggregate_max_late_ms {max_late_ms}), and not before "
                          "it closed")
    if isinstance(revisions, bool) or not isinstance(revisions, int) or revisions < 0:
        raise ConfigError(f"the corrections per window must be an integer >= 0, not "
                          f"{revisions!r}")


def open_windows(unit: str, max_late_ms: int) -> int:
    """How many windows a run may have to visit at most: those not final yet."""
    start = window_of(0, unit)
    if unit == "month":
        return max_late_ms // (28 * 86_400_000) + 2
    return max_late_ms // (start[1] - start[0]) + 1


def schedule(window: Window, grace_ms: int, max_late_ms: int, revisions: int) -> list[int]:
    """When each revision of ``window`` is due: revision 0 when the window is due, the last
    (``revisions``) when it is final, the others evenly in between."""
    check_schedule(grace_ms, max_late_ms, revisions)
    first, last = window[1] + grace_ms, window[1] + max_late_ms
    if revisions == 0:
        return [first]
    return [first + (last - first) * i // revisions for i in range(revisions)] + [last]


def scheduled_revision(window: Window, now: int, grace_ms: int, max_late_ms: int,
                       revisions: int) -> int | None:
    """The latest revision of ``window`` the schedule has reached at ``now`` (None: not due)."""
    reached = [i for i, at in enumerate(schedule(window, grace_ms, max_late_ms, revisions))
               if now >= at]
    return reached[-1] if reached else None


def first_cursor(now: int, unit: str, max_late_ms: int) -> int:
    """The cursor of a job's first run: the start of the oldest window not final ``now``."""
    return window_of(now - max_late_ms, unit)[0]


def windows_due(cursor: int, now: int, unit: str, grace_ms: int) -> list[Window]:
    """Every window from the one starting at ``cursor`` that is due ``now``."""
    out, window = [], window_of(cursor, unit)
    while due(window, now, grace_ms):
        out.append(window)
        window = window_of(window[1], unit)
    return out


def next_cursor(cursor: int, now: int, unit: str, max_late_ms: int) -> int:
    """The start of the first window from ``cursor`` on that is not final ``now`` (those before
    it are done once this run has handled them)."""
    window = window_of(cursor, unit)
    while final(window, now, max_late_ms):
        window = window_of(window[1], unit)
    return window[0]


def plan_window(counts: Mapping[str, int], held: Held, *, domain: str, region: str,
                window: Window, now: int, ledger: Mapping[str, dict], grace_ms: int,
                max_late_ms: int, revisions: int = 1, releasable: bool = True,
                **rule) -> Plan:
    """The plan for one window; ``rule``: the keywords of ``decide_release`` (k, resolution,
    noise, draw, budget, delta_budget). ``releasable``: False for a window before the cursor
    (done: deleted, never released again)."""
    stored = held.stored
    republish = stored if stored is not None and stored.revision > held.published else None
    target = scheduled_revision(window, now, grace_ms, max_late_ms, revisions)
    if target is None:
        return Plan(republish)
    outcome, audit_refusal = None, None
    if releasable and target > (-1 if stored is None else stored.revision):
        outcome = decide_release(counts, domain=domain, region=region, window=window,
                                 revision=target, final_revision=revisions, ledger=ledger,
                                 **rule)
        if isinstance(outcome, Refused) and held.refused < target:
            audit_refusal = target
    return Plan(republish, outcome, audit_refusal, final(window, now, max_late_ms))
