"""Cost of the authorization, freshness and integrity checks of issue 12, each against the same
work without it, measured in the same run (paired: every run times both sides back to back, the
order alternating), in one process (no faust, no Kafka).

1. The domain's decision, ``refmesh.domain.handle``, for a member's referral whose consent is
   held: with the replay memory (the ``seen`` table and ``replay.remember``'s writes) against
   the same events with it switched off. ``handle`` has no switch for it, so the benchmark
   builds the "without" side itself: a view whose ``seen`` returns None, and ``domain.replay``
   replaced for the duration by a stand-in that computes no key, digest or writes. The replay
   pieces and the party and key checks are also timed alone, as a share of ``handle``.
2. The domain's state heads (``agents.state.StateGuard.apply`` and ``committed``: the head's
   step, its seal and two writes of the marks file, to a temporary directory) against the
   same event's table writes into plain dicts; and the one-off check when a worker takes up a
   partition (``refmesh.statehead.digests`` over N entries).
3. The gateway: ``refmesh.receive.decide`` with the store's view (SQLite) against the same view
   whose ``event`` (the replay memory's look-up) returns None; ``gateways.store.Store.receive``
   against a subclass without the replay memory (no look-up, ``_remember`` does nothing), in
   batches of 100 events per commit as the inbox consumer runs it; and the ``events`` insert
   timed alone.
4. The envelope's suite check (``suite_downgrade``): ``envelope.open`` of a hybrid referral
   against the same with ``envelope.suite_problem`` replaced for the time of the run by one that
   finds nothing; and the check alone. Without such a check in ``refmesh/envelope.py`` the
   benchmark says so and skips it.

Usage: python bench/checks.py [--runs 7] [--quick]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.state import Marks, StateGuard  # noqa: E402
from bench.results import spread, write_section  # noqa: E402
from gateways.store import Store  # noqa: E402
from refmesh import (aggregate, audit, domain, envelope, receive, replay, samples,  # noqa: E402
                     statehead, topology)
from tests.policy_samples import NOW, SECRET, load, signed_mesh  # noqa: E402

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
PARTITION_SECRET = b"\x02" * 16
BATCH = 100  # events per SQLite commit (the inbox consumer commits once per polled batch)
MEMORY_ROWS = 10_000  # event ids in the gateway's replay memory before each run


def per_op(fn, items) -> float:
    """Microseconds per item of ``fn`` over ``items``."""
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1e6


@contextmanager
def replay_off():
    """``refmesh.domain`` without its replay memory: no entry key, digest, look-up or writes."""
    real = domain.replay
    domain.replay = types.SimpleNamespace(
        entry_key=lambda *a: b"", digest=lambda *a: "", read=lambda *a: None,
        remember=lambda *a: (), Seen=real.Seen, until=real.until)
    try:
        yield
    finally:
        domain.replay = real


@contextmanager
def suite_check_off():
    """``envelope.open`` without its suite check: no recipient's entry is a downgrade."""
    real = envelope.suite_problem
    envelope.suite_problem = lambda *a: None
    try:
        yield
    finally:
        envelope.suite_problem = real


def suite_check_on() -> bool:
    return hasattr(envelope, "suite_problem") and \
        "suite_downgrade" in inspect.getsource(envelope.open)


class WithoutReplayMemory(Store):
    """The gateway's store as before the replay memory: no look-up, nothing remembered."""

    def _view(self, db, now):
        return replace(super()._view(db, now), event=lambda *a: None)

    def _remember(self, db, remember, now):
        pass


def apply_writes(table: dict, writes) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


class Domain:
    """The domain's side: sealed referrals of distinct people, each with its consent held."""

    def __init__(self, mesh, n: int) -> None:
        self.keys = mesh.keys[NCC]
        self.ctx = domain.Context(self.keys, mesh.directory, load(), SECRET, NOW,
                                  partition_secret=PARTITION_SECRET)
        self.consents: dict[bytes, bytes] = {}
        self.batch = []
        for i in range(n):
            consent = samples.consent(i, controller=HOTLINE, valid_from=NOW - 1000)
            consent["recipientRoles"] = ["CentralGovernmentOrganisation"]
            key = topology.partition_key(PARTITION_SECRET, consent["subjectId"])
            ckey = domain.consent_key(key, HOTLINE, consent["consentId"], SECRET)
            self.consents[ckey] = domain.protect_consent(self.keys, ckey, consent)
            referral = samples.referral(referral_id=f"c-{i}", sender=HOTLINE,
                                        recipient=SHELTER, created_at=NOW, n=i)
            self.batch.append((envelope.seal("Referral", referral, mesh.keys[HOTLINE], NCC,
                                             mesh.directory, NOW), key))
        self.opened = [envelope.open(d, self.keys, mesh.directory, NOW) for d, _ in self.batch]

    def seen_table(self, ids: int) -> dict[bytes, bytes]:
        """The ``seen`` table of partition 0 in steady state: its cursor at the current bucket,
        and ``ids`` event ids already listed in the bucket this run's events expire in (in
        chunks of ``replay.CHUNK``, as ``replay.remember`` writes them)."""
        cursor, index = b"c|0", b"x|0|%d" % (replay.until(NOW, NOW) // replay.BUCKET_MS)
        table = {cursor: self._protect(cursor, NOW // replay.BUCKET_MS)}
        names = [f"e|{i:032x}" for i in range(ids)]
        chunks = [names[i:i + replay.CHUNK] for i in range(0, ids, replay.CHUNK)]
        if chunks:
            table[index] = self._protect(index, len(chunks))
        for n, chunk in enumerate(chunks):
            table[index + b"|%d" % n] = self._protect(index + b"|%d" % n, chunk)
        return table

    def _protect(self, key: bytes, value) -> bytes:
        return envelope.protect(self.keys, replay.CONTEXT + key, json.dumps(value).encode())

    def handle(self, seen: dict | None, items=None) -> float:
        """µs per ``handle``; ``seen`` None: the replay memory switched off."""
        items = items or self.batch
        view = domain.View(consent=self.consents.get, log={}.get,
                           seen=(seen if seen is not None else {}).get)

        def one(item):
            effects = domain.handle(item[0], item[1], self.ctx, view)
            if seen is not None:
                apply_writes(seen, effects.seen_put)

        if seen is not None:
            return per_op(one, items)
        with replay_off():
            return per_op(one, items)

    def replay_pieces(self, seen: dict) -> float:
        """µs per event of what ``handle`` does for the replay memory, alone."""
        def one(opened):
            record, header = opened.record, opened.header
            key = replay.entry_key(SECRET, header["sender"], record["senderAgency"],
                                   header["eventId"])
            digest = replay.digest("Referral", record)
            assert replay.read(self.keys, seen.get, key, NOW) is None
            held = replay.Seen(digest, "Forwarded", None, replay.until(header["createdAt"], NOW))
            apply_writes(seen, replay.remember(self.keys, seen.get, key, held, 0, NOW))
        return per_op(one, self.opened)

    def party_checks(self) -> float:
        """µs per event of the signer's authority and the Kafka key's check, alone."""
        def one(pair):
            (_, key), opened = pair
            signer = opened.header["sender"]
            assert domain._authority("Referral", opened.record, signer, self.ctx) is None
            assert domain._arrival("Referral", opened.record, key, 0, signer, self.ctx) is None
        return per_op(one, list(zip(self.batch, self.opened)))

    def open(self, with_check: bool) -> float:
        """µs per ``envelope.open`` of a referral sealed with the hybrid suite."""
        def one(item):
            envelope.open(item[0], self.keys, self.ctx.directory, NOW)
        if with_check:
            return per_op(one, self.batch)
        with suite_check_off():
            return per_op(one, self.batch)

    def suite_check(self) -> float:
        """µs per event of the suite check alone, as ``envelope.open`` makes it."""
        kind = envelope.SUITES[envelope.HYBRID][0]
        members, me = self.ctx.directory.members, self.keys.agency_id

        def one(_):
            entry = members.get(me, {"agencyId": me, "keys": []})
            assert envelope.suite_problem(entry, kind) is None
        return per_op(one, self.batch)

    def event_writes(self) -> list[list[tuple[str, bytes, bytes | None]]]:
        """Each event's table writes as the agent makes them (agents/forward.py)."""
        seen, counts, head, out = self.seen_table(0), {}, audit.Head(), []
        view = domain.View(consent=self.consents.get, log={}.get, seen=seen.get)
        for data, key in self.batch:
            effects = domain.handle(data, key, self.ctx, view)
            assert effects.publish and effects.deadletter is None, effects.deadletter
            writes = [("forwarded", *effects.log_put)]
            once, start, cell = effects.counted
            ck = f"0|{start}".encode()
            counts[ck] = domain.protect_counts(self.keys, ck, aggregate.count(
                domain.read_counts(self.keys, ck, counts.get(ck)), cell))
            writes.append(("aggregate-counts", ck, counts[ck]))
            if once is not None:
                writes.append(("counted", once, str(start).encode()))
            for entry in effects.audit:
                _, head = audit.append(head, at=NOW, domain=NCC, **entry)
            writes.append(("audit-heads", b"0", head.to_bytes()))
            writes += [("seen", k, v) for k, v in effects.seen_put]
            apply_writes(seen, effects.seen_put)
            out.append(writes)
        return out


def heads(keys, writes, tmp: Path, with_heads: bool) -> float:
    """µs per event of its table writes, with or without the state head and marks."""
    tables = {name: {} for name in topology.TABLES}
    if not with_heads:
        return per_op(lambda ws: [apply_writes(tables[n], [(k, v)]) for n, k, v in ws], writes)
    path = tmp / "state-marks.json"
    path.unlink(missing_ok=True)
    guard = StateGuard(keys, SECRET, tables, Marks(path), final=lambda window: False)
    assert guard.ready(0) is None

    def one(ws):
        guard.apply(0, ws)
        guard.committed(0)
    return per_op(one, writes)


def head_pieces(keys, writes, tmp: Path) -> dict[str, float]:
    """µs per event of the step, the seal and the two marks-file writes, each alone."""
    tables, full = {}, []
    for ws in writes:
        event = []
        for name, key, value in ws:
            event.append((name, key, tables.get((name, key)), value))
            tables[(name, key)] = value
        full.append(event)
    heads_, steps, head = [], [], statehead.Head(0, {})
    start = time.perf_counter()
    for event in full:
        head, step = statehead.step(head, event, SECRET)
        heads_.append(head)
        steps.append(step)
    out = {"step": (time.perf_counter() - start) / len(full) * 1e6}
    out["seal"] = per_op(lambda h: statehead.seal(keys, 0, h), heads_)
    marks = Marks(tmp / "pieces-marks.json")
    prev = [statehead.Head(0, {}), *heads_[:-1]]

    def put(i):
        marks.put(0, statehead.Mark(prev[i], heads_[i], steps[i]))
        marks.put(0, statehead.Mark(heads_[i]))
    out["marks"] = per_op(put, range(len(full)))
    return out


def take_up_entries(n: int) -> list[tuple[str, bytes, bytes]]:
    """A partition's live entries: half accepted event ids, a quarter each consents and
    forwarding logs, of about their real sizes."""
    kinds = (("seen", 160), ("consents", 720), ("seen", 160), ("forwarded", 330))
    return [(kinds[i % 4][0], b"k|%032x" % i, os.urandom(kinds[i % 4][1])) for i in range(n)]


class Gateway:
    """The shelter's gateway receiving referrals from its domain."""

    def __init__(self, mesh, n: int, tmp: Path) -> None:
        self.tmp = tmp
        self.parties = receive.Parties.of(mesh.directory, SHELTER)
        self.events = []
        for i in range(n):
            referral = samples.referral(referral_id=f"g-{i}", sender=HOTLINE, recipient=SHELTER,
                                        created_at=NOW, n=i)
            self.events.append(receive.Event(str(uuid.uuid4()), "Referral", NCC, referral,
                                             topology.partition_key(PARTITION_SECRET,
                                                                    referral["subjectId"]), NOW))
        self.rows = [(NCC, HOTLINE, str(uuid.uuid4()), "0" * 64, NOW + envelope.MAX_AGE_MS)
                     for _ in range(MEMORY_ROWS)]
        self.reader = self.store(Store)  # decide only reads: one store for every run
        self.commits: dict[bool, list[float]] = {False: [], True: []}

    def store(self, cls) -> Store:
        path = self.tmp / f"gw-{uuid.uuid4().hex}.db"
        store = cls(str(path), SHELTER, NCC)
        with store._tx() as db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", self.rows)
        return store

    def decide(self, with_memory: bool) -> float:
        with self.reader._tx() as db:
            view = self.reader._view(db, NOW)
            if not with_memory:
                view = replace(view, event=lambda *a: None)
            return per_op(lambda e: receive.decide(e, self.parties, view, NOW), self.events)

    def receive(self, with_memory: bool) -> float:
        """µs per event of ``Store.receive`` and its share of the commits (kept in
        ``self.commits``: the replay memory's rows also make each commit write more pages)."""
        store = self.store(Store if with_memory else WithoutReplayMemory)
        committing = 0.0
        try:
            start = time.perf_counter()
            for i in range(0, len(self.events), BATCH):
                batch = store.batch()
                batch.__enter__()
                for event in self.events[i:i + BATCH]:
                    changes = store.receive(event, self.parties, NOW)
                    assert changes.new and changes.refused is None
                before = time.perf_counter()
                batch.__exit__(None, None, None)
                committing += time.perf_counter() - before
            total = (time.perf_counter() - start) / len(self.events) * 1e6
            self.commits[with_memory].append(committing / len(self.events) * 1e6)
            return total
        finally:
            store.close()

    def memory_writes(self) -> dict[str, float]:
        """µs per event of the replay memory's row alone: the ``events`` insert statement
        (as in ``Store._remember``), and ``Store._remember`` whole (prune, count, insert)."""
        store, out = self.store(Store), {}
        remembers = [receive.Remember(e.sender, HOTLINE, e.event_id, replay.digest(
            "Referral", e.record), replay.until(NOW, NOW)) for e in self.events]
        try:
            with store._tx() as db:
                out["insert"] = per_op(lambda r: db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?) ON CONFLICT (signer, origin, "
                    "event_id) DO UPDATE SET digest = CASE WHEN events.until_ms < ? THEN "
                    "excluded.digest ELSE events.digest END, until_ms = max(events.until_ms, "
                    "excluded.until_ms)", (r.signer, r.origin, r.event_id, r.digest, r.until,
                                           NOW)), remembers)
                db.executemany("DELETE FROM events WHERE event_id = ?",
                               [(r.event_id,) for r in remembers])
                out["remember"] = per_op(lambda r: store._remember(db, r, NOW), remembers)
        finally:
            store.close()
        return out

    def close(self) -> None:
        self.reader.close()


def uncommitted() -> str:
    """The measured code's files that differ from the commit RESULTS.md names, if any."""
    out = subprocess.run(["git", "status", "--porcelain", "--", "refmesh", "agents", "gateways"],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent).stdout
    files = sorted(line[3:] for line in out.splitlines() if line[3:].endswith(".py"))
    return (" Measured with uncommitted changes to " + ", ".join(files) + ".") if files else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer events (smoke test)")
    ap.add_argument("--json", metavar="PATH",
                    help="write the medians there as JSON (bench/ab.py), not RESULTS.md")
    args = ap.parse_args()
    n = 40 if args.quick else 200
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    started = time.perf_counter()
    mesh = signed_mesh()
    dom = Domain(mesh, n)
    writes = dom.event_writes()
    few = dom.batch[: max(10, n // 4)]
    entries = take_up_entries(max(sizes))
    tmpdir = tempfile.TemporaryDirectory(prefix="refmesh-bench-checks-")
    tmp = Path(tmpdir.name)
    gw = Gateway(mesh, n, tmp)
    bucket = 6_000  # ids already in the bucket: 10 minutes at 10 events/s on the partition

    pairs = {  # label -> (without, with): each returns µs per event
        "domain: handle, referral with consent (replay memory; new 10-min bucket)": (
            lambda: dom.handle(None), lambda: dom.handle(dom.seen_table(0))),
        f"domain: the same, {bucket:,} ids already in the bucket": (
            lambda: dom.handle(None, few), lambda: dom.handle(dom.seen_table(bucket), few)),
        "domain: an event's table writes (state head step + seal, 2 marks-file writes)": (
            lambda: heads(dom.keys, writes, tmp, False), lambda: heads(dom.keys, writes, tmp,
                                                                       True)),
        "gateway: receive.decide, referral (replay memory look-up in SQLite)": (
            lambda: gw.decide(False), lambda: gw.decide(True)),
        f"gateway: Store.receive, referral (replay memory row; {BATCH} per commit)": (
            lambda: gw.receive(False), lambda: gw.receive(True)),
    }
    suite = suite_check_on()
    if suite:
        pairs["envelope: open, referral, hybrid suite (suite downgrade check)"] = (
            lambda: dom.open(False), lambda: dom.open(True))
    pieces = {"replay pieces in handle (entry key, digest, read, remember)":
              lambda: dom.replay_pieces(dom.seen_table(0)),
              "party and key checks in handle (_authority, _arrival)": dom.party_checks}
    if suite:
        pieces["suite check in open (directory entry, suite_problem)"] = dom.suite_check
    runs = {k: ([], []) for k in pairs}
    alone: dict[str, list[float]] = {k: [] for k in pieces}
    head_alone: dict[str, list[float]] = {}
    memory_alone: dict[str, list[float]] = {}
    take_up: dict[int, list[float]] = {s: [] for s in sizes}
    for r in range(args.runs):
        for label, (without, with_) in pairs.items():
            if r % 2:
                w = with_()
                runs[label][0].append(without())
            else:
                runs[label][0].append(without())
                w = with_()
            runs[label][1].append(w)
        for label, fn in pieces.items():
            alone[label].append(fn())
        for k, v in head_pieces(dom.keys, writes, tmp).items():
            head_alone.setdefault(k, []).append(v)
        for k, v in gw.memory_writes().items():
            memory_alone.setdefault(k, []).append(v)
        for size in sizes:
            start = time.perf_counter()
            statehead.digests(SECRET, entries[:size])
            take_up[size].append((time.perf_counter() - start) / size * 1e6)
    gw.close()
    tmpdir.cleanup()
    elapsed = time.perf_counter() - started

    med = {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in runs.items()}
    rows = [f"| {k} | {spread(a)} | {spread(b)} | {spread([y / x for x, y in zip(a, b)], 2)} |"
            for k, (a, b) in runs.items()]
    handle_with = med[list(pairs)[0]][1]
    heads_label, receive_label = list(pairs)[2], list(pairs)[4]
    receive_with = med[receive_label][1]
    open_label = "envelope: open, referral, hybrid suite (suite downgrade check)"
    share = [
        *[(k, v, med[open_label][1] if k.startswith("suite") else handle_with,
           "open, with" if k.startswith("suite") else "handle, with")
          for k, v in alone.items()],
        *[(f"state head: {k}", v, med[heads_label][1], "table writes, with")
          for k, v in head_alone.items()],
        ("gateway: the `events` insert statement alone", memory_alone["insert"], receive_with,
         "Store.receive, with"),
        ("gateway: `Store._remember` whole (prune, count, insert)", memory_alone["remember"],
         receive_with, "Store.receive, with"),
        ("gateway: the SQLite commits (WAL, fsync), without the replay memory",
         gw.commits[False], med[receive_label][0], "Store.receive, without"),
        ("gateway: the SQLite commits (WAL, fsync), with the replay memory", gw.commits[True],
         receive_with, "Store.receive, with"),
    ]
    share_rows = [f"| {k} | {spread(v)} | {statistics.median(v) / of:.1%} of {what} |"
                  for k, v, of, what in share]
    take_rows = [f"| {s:,} | {spread([u * s / 1000 for u in v], 0)} | {spread(v, 2)} |"
                 for s, v in take_up.items()]
    heads_cost = med[heads_label][1] - med[heads_label][0]
    body = "\n".join([
        f"{n} sealed full referrals of distinct people (hybrid suite) per run, {args.runs} runs, "
        "each side of a row timed back to back in the same run (the order alternating); "
        "median (min-max) microseconds per event, and the ratio with/without of each run. In "
        "one process: no faust, no Kafka. Load average (1 min) at the start: "
        f"{os.getloadavg()[0]:.1f}; the whole benchmark took {elapsed:.0f} s.{uncommitted()}",
        "",
        "| check | without (us) | with (us) | with / without |", "|---|---|---|---|", *rows, "",
        "How the \"without\" sides are built: `domain.handle` has no switch for its replay "
        "memory, so the benchmark passes a view whose `seen` returns None and replaces "
        "`refmesh.domain.replay` for the time of the run with a stand-in (no entry key, digest, "
        "look-up or `seen` writes); the state heads' \"without\" is the same writes into plain "
        "dicts; the gateway's is the store's own view with `event` returning None, and a "
        "`Store` subclass whose `_remember` does nothing. "
        f"The \"{list(pairs)[1]}\" row uses {len(few)} events ({bucket:,} ids: ten minutes "
        "at 10 accepted events/s on one partition); the gateway's store holds "
        f"{MEMORY_ROWS:,} remembered event ids before each run.", "",
        "Pieces timed alone, on the same events, as a share of the figure they belong to:", "",
        "| piece | us per event | share |", "|---|---|---|", *share_rows, "",
        "The check when a worker takes up a partition (`statehead.digests` over its live "
        "entries: half accepted event ids, a quarter each consents and forwarding logs):", "",
        "| entries | ms | us per entry |", "|---|---|---|", *take_rows, "",
        f"- state heads add {heads_cost:,.0f} us per event, "
        f"{heads_cost / handle_with:.0%} of what `handle` itself takes with its replay memory.",
        "- envelope suite check (issue 12, item 8): " + (
            "`envelope.open` without it: `envelope.suite_problem` replaced for the time of the "
            "run by one that finds nothing." if suite else "not measured: refmesh/envelope.py "
            "has no suite or downgrade check (no `suite_downgrade` in `open`)."),
    ])
    print(body)
    if args.json:
        figures = {f"{k}, {side}": v for k, (a, b) in med.items()
                   for side, v in (("without", a), ("with", b))}
        figures.update({f"{k}, with / without (paired per run)": statistics.median(
            [y / x for x, y in zip(a, b)]) for k, (a, b) in runs.items()})
        figures.update({k: statistics.median(v) for k, v in alone.items()})
        figures.update({f"state head: {k}": statistics.median(v)
                        for k, v in head_alone.items()})
        figures["state heads: added per event"] = heads_cost
        Path(args.json).write_text(json.dumps(figures))
    elif not args.quick:
        write_section("Issue 12: cost of the authorization, freshness and integrity checks "
                      "(bench/checks.py)", body)


if __name__ == "__main__":
    main()
