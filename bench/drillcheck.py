"""The check at the end of a fault drill (bench/drills.py): every referral the stream submitted
against what each gateway stored, and every topic of the mesh against the planted values; and
what a drill's fault can reach (``Fault``)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.drillkit import DrillMesh, Plan, Stream
from devmesh.brokers import LocalBroker
from devmesh.supervise import ProcessError, wait_until
from refmesh import codec


@dataclass
class Outcome:
    """What one drill counted; ``ok`` when nothing was lost, duplicated, misdelivered or
    leaked and the drill's own checks held (``problems`` empty)."""

    drill: str
    sent: int = 0  # submissions tried
    accepted: int = 0  # answered 202, or held by the hotline although the answer was lost
    refused: int = 0  # answered 503 (or another error): not accepted
    unanswered: int = 0  # no answer and not held (gateway down): not accepted
    delivered: int = 0  # accepted and stored at the shelter
    lost: int = 0
    duplicated: int = 0
    misdelivered: int = 0
    leaked: int = 0
    resends_absorbed: int = 0  # re-sends the shelter dropped as duplicates (expected)
    recovery_s: float = 0.0
    max_latency_s: float = 0.0
    p50_latency_s: float = 0.0
    messages_scanned: int = 0
    # faults within the drill, (what, wall ms), each with its recovery in ``timings``
    events: list[tuple[str, int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # what -> seconds
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.misdelivered or self.leaked
                    or self.problems)

    def line(self) -> str:
        return (f"{self.drill:<22} sent {self.sent:4d} (accepted {self.accepted:4d}, refused "
                f"{self.refused:3d}, unanswered {self.unanswered:2d})  delivered "
                f"{self.delivered:4d}  lost {self.lost}  duplicated {self.duplicated}  "
                f"misdelivered {self.misdelivered}  leaked {self.leaked}  re-sends absorbed "
                f"{self.resends_absorbed:3d}  recovery {self.recovery_s:5.1f} s  (max latency "
                f"{self.max_latency_s:.1f} s)  {'ok' if self.ok else 'FAILED'}")


@dataclass
class Fault:
    """What a drill's fault can reach: the mesh, the plan, the drill's broker (if its own)."""

    mesh: DrillMesh
    plan: Plan
    stream: Stream
    outcome: Outcome
    broker: LocalBroker | None = None


@dataclass
class Before:
    """What the mesh had counted when a drill's stream started."""

    deliveries: dict
    bystanders: int

    @classmethod
    def take(cls, mesh: DrillMesh) -> Before:
        return cls(mesh.deliveries(), mesh.messages_on(mesh.bystander_topics))


def wait_answered(mesh: DrillMesh, stream: Stream, deadline_s: float) -> str | None:
    """Until every accepted referral is answered at the hotline (received, or refused by the
    domain) and stored at the shelter unless refused; None, or what was still missing."""
    ids = set(stream.accepted)
    sql = ("SELECT referral_id, state FROM referrals WHERE direction = 'out' AND "
           "referral_id LIKE ?")
    missing: list[str] = []

    def answered():
        mesh.check_alive()
        states = dict(mesh.query(mesh.hotline, sql, (stream.prefix + "%",)))
        stored = mesh.stored(stream.prefix)
        missing[:] = [r for r in ids if states.get(r, "requested") == "requested"
                      or (r not in stored and states.get(r) != "refused")]
        return not missing

    try:
        wait_until(answered, deadline_s, "every accepted referral to be answered", 0.5)
    except ProcessError as exc:
        if "timed out" not in str(exc):
            raise
        return f"{len(missing)} referral(s) unanswered after {deadline_s:.0f} s, e.g. " \
               f"{sorted(missing)[:3]}"
    return None


def verify(mesh: DrillMesh, stream: Stream, before: Before, fault_end_ms: int,
           plan: Plan, outcome: Outcome) -> Outcome:
    """Check every referral of the stream against what each gateway stored."""
    kept, problems = stream.resolve()
    outcome.problems += problems
    if kept:
        outcome.notes.append(f"{kept} submission(s) without an answer were kept by the hotline "
                             "(counted as accepted)")
    timeout = wait_answered(mesh, stream, plan.deadline_s)
    if timeout:
        outcome.problems.append(timeout)
    prefix, accepted = stream.prefix, stream.accepted
    outcome.sent, outcome.accepted = len(stream.submitted), len(accepted)
    outcome.refused = len(stream.refused)
    outcome.unanswered = len(stream.in_doubt) - kept
    stored = mesh.stored(prefix)
    outcome.delivered = len(set(stored) & set(accepted))
    lost = sorted(set(accepted) - set(stored))
    outcome.lost = len(lost)
    if lost:
        states = dict(mesh.query(mesh.hotline, "SELECT referral_id, state FROM referrals "
                                 "WHERE direction = 'out' AND referral_id LIKE ?",
                                 (prefix + "%",)))
        outcome.notes.append("lost, with their state at the hotline: " + ", ".join(
            f"{r} ({states.get(r)})" for r in lost[:5]) + (" ..." if len(lost) > 5 else ""))
    strays = sorted(set(stored) - set(accepted))
    if strays:
        outcome.problems.append(f"{len(strays)} referral(s) stored at the shelter that the "
                                f"hotline never accepted, e.g. {strays[:3]}")
    # duplicates: the shelter's tables (one row per key), then deliveries as new vs unique ids
    rows = mesh.query(mesh.shelter, "SELECT referral_id, count(*) FROM referrals WHERE "
                      "referral_id LIKE ? GROUP BY referral_id HAVING count(*) > 1",
                      (prefix + "%",))
    rows += mesh.query(mesh.shelter, "SELECT delivery_key, count(*) FROM inbox WHERE "
                       "delivery_key LIKE ? GROUP BY delivery_key HAVING count(*) > 1",
                       (f"referral:{prefix}%",))
    keys = {k for (k,) in mesh.query(mesh.shelter, "SELECT delivery_key FROM inbox WHERE "
                                     "delivery_key LIKE ?", (f"referral:{prefix}%",))}
    if keys != {f"referral:{r}" for r in stored}:
        outcome.problems.append("the shelter's inbox and referrals tables disagree for "
                                f"{len(keys ^ {f'referral:{r}' for r in stored})} referral(s)")
    after = mesh.deliveries()
    delta = {k: after[k] - before.deliveries[k] for k in after}
    new = max(delta["metric_new"], delta["log_new"])
    if delta["metric_new"] != delta["log_new"]:
        outcome.notes.append(f"new referral deliveries: {delta['metric_new']} by /metrics, "
                             f"{delta['log_new']} by the shelter's log")
    outcome.duplicated = sum(n - 1 for _, n in rows) + max(0, new - len(stored))
    outcome.resends_absorbed = max(delta["metric_duplicate"], delta["log_duplicate"])
    # misdelivered: held by an agency that is not the recipient, or from the wrong sender
    at_hotline = mesh.query(mesh.hotline, "SELECT count(*) FROM referrals WHERE direction = "
                            "'in' AND referral_id LIKE ?", (prefix + "%",))[0][0]
    wrong = 0
    for peer, record in mesh.query(mesh.shelter, "SELECT peer, record FROM referrals WHERE "
                                   "direction = 'in' AND referral_id LIKE ?", (prefix + "%",)):
        r = codec.decode(record)[1]
        wrong += (peer != mesh.hotline or r["recipientAgency"] != mesh.shelter
                  or r["senderAgency"] != mesh.hotline)
    elsewhere = mesh.messages_on(mesh.bystander_topics) - before.bystanders
    outcome.misdelivered = at_hotline + wrong + max(0, elsewhere)
    # leaked: every planted value of every submitted referral, searched on every topic
    result = mesh.scan(stream.canaries)
    outcome.leaked, outcome.messages_scanned = len(result.hits), result.messages
    if result.short:
        outcome.notes.append(f"leak scan: {len(result.short)} partition(s) end short of the end "
                             "offset the broker reports (every readable record was scanned), "
                             "e.g. " + ", ".join(f"{t}/{p} at {pos} of {end}"
                                                 for t, p, pos, end in result.short[:2]))
    for topic, part, offset, canary in result.hits[:5]:
        outcome.problems.append(f"LEAK: {canary!r} in clear at {topic}/{part}@{offset}")
    # times: latency of each referral, and recovery after the fault ended
    latency = [stored[r] - accepted[r] for r in accepted if r in stored]
    if latency:
        outcome.max_latency_s = max(latency) / 1000
        outcome.p50_latency_s = statistics.median(latency) / 1000
    outcome.recovery_s = recovery_s(stored, accepted, fault_end_ms)
    for what, at in outcome.events:
        outcome.timings[f"mesh delivering again after {what}"] = recovery_s(stored, accepted, at)
    return outcome


def recovery_s(stored: dict[str, int], accepted: dict[str, int], since_ms: int) -> float:
    """Seconds from ``since_ms`` until the mesh had recovered: the backlog (referrals accepted
    until then) is stored at the shelter, and a referral accepted after it has made it through
    (both stamped in wall ms: ``stored`` when the shelter stored it, ``accepted`` when the
    hotline took it)."""
    backlog = [stored[r] for r, at in accepted.items() if at <= since_ms and r in stored]
    fresh = [stored[r] for r, at in accepted.items() if at > since_ms and r in stored]
    recovery = max(max(backlog, default=since_ms), min(fresh, default=since_ms)) - since_ms
    return max(0, recovery) / 1000
