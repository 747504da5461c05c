"""Publishing a policy domain's statistics to its region: the release job of the agents.

Every ``release_interval_s`` it reads the domain's aggregate-counts table (the changelog of the
agent's faust table: the latest protected counts per partition and window), merges the
partitions, and for every window the schedule has reached asks
``refmesh.aggregate.plan_window`` what to do: publish the scheduled revision (the first when
the window is due, ``aggregate_revisions`` corrections until it is final, each recomputed with
fresh noise), refuse it (the region's epsilon or delta budget would run out), or nothing. Every
window from the job's cursor on is released on that schedule, with or without referrals
(refmesh.aggregate.job): whether a release appears depends on the clock only.

Order, so that a crash never publishes two different noisy versions of one release (which a
reader could average) nor spends budget unrecorded: the ledger is charged and the release
stored first (encrypted, on the compacted ``refmesh.domain.<D>.aggregate-releases``), then the
signed release is published, unencrypted, on ``refmesh.region.<R>.aggregates``, then it is marked
published and audited (ReleasePublished) on the release job's own hash chain,
``refmesh.domain.<D>.release-audit``. A stored release not yet marked published is published
as stored at the next run. A refusal is audited once per window and revision
(ReleaseRefused, reason epsilon_budget_exhausted or delta_budget_exhausted).

Once a window is final (no event can count in it any more: ``aggregate_max_late_ms`` after it
closed) and its last release is out, its counts, its cap slots and its release state are
deleted (tombstones on their compacted topics), and the cursor moves past it.

The ledger, the cursor and the release state sit under a sealed head (refmesh.statehead): a
state rolled back on the broker (to draw fresh noise on budget already spent, or to release a
window again) stops the job before anything is drawn (``halted``, named on /healthz).

One worker runs it: the one that holds partition 0 of the domain's inbox (``leader``).
It reads whole topics rather than faust's partitioned tables so that the release covers every
partition whichever worker runs it.
"""
from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaProducer

from kafkaedge.loading import now_ms
from kafkaedge.topic_reader import Message, latest, read_topic
from agents.state import Marks
from refmesh import aggregate, audit, domain, envelope, statehead, topology
from refmesh.errors import SealError

log = logging.getLogger("refmesh.agents.releases")
RELEASE_CONTEXT = b"aggregate-releases|"
LEDGER = b"ledger"
CURSOR = b"cursor"  # the start of the first window not done (refmesh.aggregate.job)
HEAD = b"state-head"  # the release state's head (refmesh.statehead), on its own topic
SCOPE = "releases"


def noise_source() -> aggregate.Sampler:
    """``draw(noise)``: exact integer noise (discrete Laplace or Gaussian,
    refmesh.aggregate.sampling) from the operating system's cryptographic generator."""
    return aggregate.sampler(secrets.randbelow)


@dataclass
class Run:
    """What one run did, for the log and the tests."""

    published: int = 0
    refused: int = 0
    deleted: int = 0  # windows whose state was deleted


class Releaser:
    def __init__(self, settings, keys, consumer_config: dict, producer_config: dict,
                 clock=now_ms, noise: aggregate.Sampler | None = None,
                 leader: Callable[[], bool] = lambda: True, marks: Marks | None = None) -> None:
        self.settings, self.keys, self.clock, self.leader = settings, keys, clock, leader
        self.consumer_config, self.producer_config = consumer_config, producer_config
        self.noise = noise or noise_source()
        # the noise of every release, calibrated once from the rule (None: no noise)
        self.privacy = settings.aggregate_privacy()
        self.delta_budget = settings.delta_budget()
        self.domain = settings.domain
        self.region = aggregate.check_region(settings.region)
        self.counts_topic = topology.table(self.domain, "aggregate-counts")
        self.counted_topic = topology.table(self.domain, "counted")
        self.state_topic = topology.table(self.domain, topology.RELEASES)
        self.audit_topic = topology.release_audit(self.domain)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="releases", daemon=True)
        self._producer: KafkaProducer | None = None
        # one run's view (run_once): release state, ledger, chain head, counts and marks
        self._state: dict[bytes, bytes] = {}
        self._ledger: aggregate.Ledger = {}
        self._cursor = 0
        self._head = audit.Head()
        self._count_messages: dict[int, list[Message]] = {}
        self._marks: dict[bytes, Message] | None = None
        self._done = Run()
        # the release state's head and this worker's mark of it (refmesh.statehead): a ledger
        # or release state rolled back on the broker stops the job (``halted``)
        self.state_marks = marks or Marks(None)
        self._digest_key = statehead.digest_key(keys)
        self._raw: dict[bytes, bytes] = {}
        self._state_head = statehead.Head(0)
        self.halted: str | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.release_interval_s):
            if not self.leader():
                continue
            if self.halted is not None:
                return  # the thread ends: /healthz names the problem
            try:
                done = self.run_once()
                if done.published or done.refused or done.deleted:
                    log.info("region %s: %d release(s) published, %d refused, %d window(s) "
                             "deleted", self.region, done.published, done.refused, done.deleted)
            except Exception as exc:  # keep trying at the next interval; log without values
                log.warning("release run failed (%s); trying again", type(exc).__name__)
                self._close()

    # --- reading --------------------------------------------------------------------------

    def _read(self, topic: str) -> dict[bytes, Message]:
        return latest(read_topic(self.consumer_config, topic, timeout=30.0))

    def _open(self, key: bytes, value: bytes) -> bytes:
        return envelope.unprotect(self.keys, RELEASE_CONTEXT + key, value)

    # --- writing: each send waits for the broker's acknowledgement -------------------------

    def _send(self, topic: str, key: bytes, value: bytes | None, partition=None) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(**self.producer_config)
        self._producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)

    def _store(self, key: bytes, data: bytes | None) -> None:
        """One write of the release state, with the state's next head: the mark first (what
        is in flight), then the value and the head, then the mark of the new head."""
        value = None if data is None else envelope.protect(self.keys, RELEASE_CONTEXT + key,
                                                           data)
        head, steps = statehead.step(self._state_head,
                                     [(topology.RELEASES, key, self._raw.get(key), value)],
                                     self._digest_key)
        self.state_marks.put(0, statehead.Mark(self._state_head, head, steps))
        self._send(self.state_topic, key, value)
        self._send(self.state_topic, HEAD, statehead.seal(self.keys, SCOPE, head))
        self.state_marks.put(0, statehead.Mark(head))
        self._state_head = head
        if value is None:
            self._raw.pop(key, None)
        else:
            self._raw[key] = value

    def _check(self, raw: dict[bytes, bytes], head_data: bytes | None) -> str | None:
        """Is the release state read back the newest this worker wrote (or a newer one that
        matches its head)? Sets the running head when it is."""
        found = statehead.digests(self._digest_key, [(topology.RELEASES, k, v)
                                                     for k, v in raw.items()])
        mark = self.state_marks.get(0)
        try:
            head = None if head_data is None else statehead.open_head(self.keys, SCOPE,
                                                                       head_data)
        except SealError:
            return "the domain's releases state: its head does not open"
        problem = statehead.problem(SCOPE, head, found, mark, lambda window: False)
        if problem is None:
            seq = head.seq if head is not None else 0 if mark is None else mark.head.seq
            self._state_head = statehead.Head(seq, found)
            self.state_marks.put(0, statehead.Mark(self._state_head))
        return problem

    def _audit(self, release_id: str, decision: str, reason: str | None = None) -> None:
        data, head = audit.append(self._head, at=self.clock(), domain=self.domain,
                                  event_id=release_id, decision=decision, reason=reason,
                                  purpose=f"statistics for region {self.region}")
        self._send(self.audit_topic, b"releases", data, partition=0)
        self._head = head
        # releases are rare (one decision per window and revision): each is signed at once
        self._send(topology.audit_checkpoints(self.domain), b"releases", audit.checkpoint(
            head, domain_keys=self.keys, chain=self.audit_topic, partition=0,
            at=self.clock()), partition=0)

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    # --- one run --------------------------------------------------------------------------

    def run_once(self) -> Run:
        """Read the counts and the release state, then handle every window in time order."""
        now, self._done = self.clock(), Run()
        counts: dict[int, list] = {}
        self._count_messages = {}
        for key, m in self._read(self.counts_topic).items():
            start = int(key.split(b"|")[1])
            counts.setdefault(start, []).append(domain.read_counts(self.keys, key, m.value))
            self._count_messages.setdefault(start, []).append(m)
        raw = {key: m.value for key, m in self._read(self.state_topic).items()}
        problem = self._check(raw, raw.pop(HEAD, None))
        if problem is not None:
            self.halted = problem
            log.error("HALTED %s; no statistics are released until an operator has looked "
                      "(docs/security-model.md)", problem)
            return self._done
        self._raw = raw
        self._state = {key: self._open(key, value) for key, value in raw.items()}
        self._ledger = aggregate.loads_ledger(self._state.get(LEDGER))
        chain = [m for m in read_topic(self.consumer_config, self.audit_topic, timeout=30.0)
                 or () if m.partition == 0]
        self._head = audit.head_after(chain[-1].value if chain else None)
        self._marks = None  # the counted table, read when a window is deleted
        s = self.settings
        held_cursor = self._state.get(CURSOR)
        self._cursor = int(held_cursor) if held_cursor is not None else aggregate.first_cursor(
            now, s.aggregate_unit, s.aggregate_max_late_ms)
        clock = {w[0] for w in aggregate.windows_due(self._cursor, now, s.aggregate_unit,
                                                      s.aggregate_grace_ms)}
        try:
            for start in sorted(clock | set(counts) |
                                {int(k) for k in self._state if k.isdigit()}):
                self._window(start, aggregate.merge(*counts.get(start, [])), now)
            cursor = aggregate.next_cursor(self._cursor, now, s.aggregate_unit,
                                           s.aggregate_max_late_ms)
            if held_cursor is None or cursor != self._cursor:  # after the windows it passes
                self._store(CURSOR, str(cursor).encode())
        finally:
            self._close()
        return self._done

    def _window(self, start: int, counts: dict, now: int) -> None:
        """Carry out ``aggregate.plan_window`` for one window."""
        s = self.settings
        window, skey = aggregate.window_of(start, s.aggregate_unit), str(start).encode()
        held = aggregate.Held(
            aggregate.Release.from_bytes(self._state[skey]) if skey in self._state else None,
            int(self._state.get(b"published|" + skey, b"-1")),
            int(self._state.get(b"refused|" + skey, b"-1")))
        plan = aggregate.plan_window(
            counts, held, domain=self.domain, region=self.region, window=window, now=now,
            ledger=self._ledger, grace_ms=s.aggregate_grace_ms,
            max_late_ms=s.aggregate_max_late_ms, revisions=s.aggregate_revisions,
            releasable=start >= self._cursor, k=s.aggregate_k,
            resolution=s.aggregate_resolution, noise=self.privacy, draw=self.noise,
            budget=s.aggregate_budget, delta_budget=self.delta_budget)
        if plan.republish is not None:
            self._publish(plan.republish, window)
        out = plan.outcome
        if isinstance(out, aggregate.Publish):
            if out.ledger != self._ledger:  # charge first: a crash may overcharge, never under
                self._store(LEDGER, aggregate.dumps_ledger(out.ledger))
                self._ledger = out.ledger
            self._store(skey, out.release.to_bytes())
            self._publish(out.release, window)
        elif isinstance(out, aggregate.Refused):
            self._done.refused += 1
        if plan.audit_refusal is not None:
            self._audit(aggregate.release_id(self.domain, self.region, window,
                                             plan.audit_refusal), "ReleaseRefused", out.reason)
            self._store(b"refused|" + skey, str(plan.audit_refusal).encode())
            log.warning("release of %s for region %s refused: %s", aggregate.label(window),
                        self.region, out.reason)
        if plan.delete:
            if self._marks is None:
                self._marks = self._read(self.counted_topic)
            self._delete(skey, self._count_messages.get(start, []), self._marks)
            ledger = aggregate.forget_window(self._ledger, self.region, start)
            if ledger != self._ledger:  # the region's total keeps what the window spent
                self._store(LEDGER, aggregate.dumps_ledger(ledger))
                self._ledger = ledger
            self._done.deleted += 1

    def _publish(self, rel: aggregate.Release, window) -> None:
        record = aggregate.record_of(rel, domain=self.domain, region=self.region, window=window)
        skey = str(window[0]).encode()
        self._send(aggregate.topic(self.region), skey,
                   aggregate.sign_release(record, self.keys))
        self._store(b"published|" + skey, str(rel.revision).encode())
        self._audit(record["releaseId"], "ReleasePublished")
        self._done.published += 1

    def _delete(self, skey: bytes, count_messages: list[Message],
                marks: dict[bytes, Message]) -> None:
        """Tombstones for a final window: its counts (in the partition each was written to,
        which is where faust restores them from), its cap slots, its release state."""
        for m in count_messages:
            self._send(self.counts_topic, m.key, None, partition=m.partition)
        for key, m in list(marks.items()):
            if m.value == skey:
                self._send(self.counted_topic, key, None, partition=m.partition)
                del marks[key]
        for key in (skey, b"published|" + skey, b"refused|" + skey):
            self._store(key, None)
