"""What the release job does with one window, decided from what it holds: pure.

    plan_window(counts, held, ...) -> Plan

The job (agents/releases.py) reads the window's counts and its release state, asks this, and
carries the plan out in order: republish a stored release that never went out (a crash after
storing it: published as stored, never drawn again), then publish or refuse what the release
rule decides once the window is due, audit a refusal the first time only, and delete the
window's state once it is final.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from refmesh.aggregate.rule import Publish, Refused, Release, decide_release
from refmesh.aggregate.windows import Window, due, final


@dataclass(frozen=True)
class Held:
    """What the release state holds of one window."""

    stored: Release | None = None  # the last release stored (published or about to be)
    published: int = -1  # the revision last published, -1 for none
    refused: int = -1  # the revision whose refusal was last audited, -1 for none


@dataclass(frozen=True)
class Plan:
    republish: Release | None = None  # stored but never published: publish it as stored
    outcome: Publish | Refused | None = None  # what the release rule decided (due windows)
    audit_refusal: int | None = None  # the refused revision, when not audited yet
    delete: bool = False  # final: delete the window's counts, marks and release state


def plan_window(counts: Mapping[str, int], held: Held, *, domain: str, region: str,
                window: Window, now: int, ledger: Mapping[str, float], grace_ms: int,
                max_late_ms: int, **rule) -> Plan:
    """The plan for one window; ``rule``: the keywords of ``decide_release`` (k, resolution,
    epsilon, budget, noise, sensitivity, mechanism, delta)."""
    stored = held.stored
    republish = stored if stored is not None and stored.revision > held.published else None
    if not due(window, now, grace_ms):
        return Plan(republish)
    outcome = decide_release(counts, domain=domain, region=region, window=window,
                             previous=stored, ledger=ledger, **rule)
    audit_refusal = None
    if isinstance(outcome, Refused):
        revision = 0 if stored is None else stored.revision + 1
        audit_refusal = revision if held.refused < revision else None
    return Plan(republish, outcome, audit_refusal, final(window, now, max_late_ms))
