"""Is a policy domain's agent worker ready? The decision, from facts the agent edge observes.

A worker is ready when it holds partitions of the domain's inbox, its tables are restored for
them (faust reads each table's changelog after an assignment before it handles any event),
and its release job, if it runs one, is alive. ``problems`` names what is missing, in words for
an operator (no case data); an empty list means ready. The agents serve it on ``/healthz``
(agents/health.py) in the gateway's shape: ``{"ok": bool, "problems": [...]}``.

Unlike the gateway's liveness check there is no grace period: this is a readiness signal, and
a worker that is still joining its group is not ready yet.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerFacts:
    """What the agent edge saw of its faust worker at one moment."""

    inbox: str  # the domain inbox topic
    joined: bool  # the worker received at least one assignment since it started
    assigned: tuple[int, ...]  # partitions of the inbox it holds now
    rebalancing: bool  # partitions revoked, and the new assignment not yet resumed
    recovering: bool  # reading table changelogs
    release_job: bool | None  # the release job's thread is alive; None: no job in this worker
    halted: tuple[str, ...] = ()  # partitions whose state failed its check (refmesh.statehead)
    # the signed directory: an expired edition (no event is forwarded), a refused file
    directory: tuple[str, ...] = ()


def problems(facts: WorkerFacts) -> list[str]:
    """What keeps the worker from handling the domain's events (and releasing its statistics);
    empty when it is ready."""
    out = list(facts.directory)
    if not facts.joined:
        out.append("no partitions assigned: the worker has not joined its consumer group yet")
    elif not facts.assigned:
        out.append(
            f"no partitions assigned: the consumer group is rebalancing {facts.inbox}"
            if facts.rebalancing else
            f"no partitions assigned: the group gave this worker no partition of {facts.inbox} "
            "(it has more workers than the topic has partitions; this one stands by)")
    elif facts.rebalancing or facts.recovering:
        held = ", ".join(map(str, sorted(facts.assigned)))
        out.append(f"tables recovering: restoring the tables of partition(s) {held} of "
                   f"{facts.inbox} from their changelogs; no event is handled until then")
    out += [f"HALTED: {problem}; nothing is decided on it until an operator has looked "
            "(docs/security-model.md: the domain's state on the broker)"
            for problem in facts.halted]
    if facts.release_job is False:
        out.append("release job stopped: no statistics are released to the region; the log "
                   "says why, restart the worker")
    return out


def report(facts: WorkerFacts) -> tuple[int, dict]:
    """The HTTP status and JSON body of ``/healthz``: 200 when ready, else 503."""
    found = problems(facts)
    body = {"ok": not found, "problems": found, "partitions": sorted(facts.assigned)}
    return (503 if found else 200), body
