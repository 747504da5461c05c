"""The gateway's local state: outbox, inbox and the referrals it sent and received (SQLite, WAL).

Every change that matters is one transaction: a submitted referral is stored together with its
outbox entry; a received event is stored together with the receipt and status it causes. So a
crash at any point loses nothing and does nothing twice. Records are kept as their Avro
single-object encoding (what was validated), never as loose JSON.

What a received event changes, and whether its sender may say it at all, is decided by the
pure ``refmesh.receive.decide``: this module reads what the decision asks for and carries out
the changes it returns, in one transaction. Referrals are kept under (sender, referral id): the
tables and their migration are in ``gateways/schema.py``.

The replay memory (``events``: what ``receive.View.event`` asks, ``Changes.remember`` adds) is
bounded. Each event it remembers first forgets up to ``PRUNE_STEP`` rows that ran out (more
than events add). At ``remember_max`` rows it forgets every row that ran out, and if none did,
it refuses to remember: the event is neither stored nor dead-lettered, the inbox consumer stops
at it (its offset is not committed) and retries, /healthz names the full memory, and the
``refmesh_replay_memory`` gauge shows it. It never forgets an id early, which would let a
replay in: a serious operator sizes ``replay_memory_max`` for 30 days of traffic.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from gateways.feed import Bell
from gateways.schema import REMEMBER_MAX, SchemaError, open_schema
from refmesh import codec, loop, receive, records
from refmesh.aggregate import OUTCOMES
from refmesh.consent import withdrawn_at
from refmesh.errors import MeshError, RecordError

log = logging.getLogger("refmesh.store")

# whether another referral here has the same id (ids are unique per sender only): then a link
# to it names its sender
SHARED = ("(SELECT count(*) > 1 FROM referrals AS same WHERE same.referral_id = "
          "referrals.referral_id) AS shared")


class StoreError(MeshError):
    """The gateway cannot keep what it was given (disk full, read-only database...)."""


class MemoryFull(StoreError):
    """The replay memory holds ``remember_max`` event ids, none of which ran out yet."""


#: expired rows of the replay memory forgotten, at most, each time it remembers an event
PRUNE_STEP = 100


class NotFound(MeshError, LookupError):
    """No referral with that id at this gateway."""


class Ambiguous(NotFound):
    """More than one referral has that id (ids are unique per sender only): name the
    sender."""


@dataclass(frozen=True)
class Due:
    delivery_key: str
    event_id: str
    record_type: str
    recipient: str
    record: dict
    partition_key: bytes | None
    needs_receipt: bool
    attempts: int


def connect(path: str) -> sqlite3.Connection:
    """The gateway database as every part of the gateway opens it: WAL, an fsync per commit
    (synchronous=FULL: an acknowledged submission survives a power cut), and secure_delete so
    that erasure removes the bytes, not only the rows (the WAL is emptied after an erasure, see
    ``_scrub``). Autocommit mode: transactions are explicit.

    A new database file is created empty with mode 0600 before SQLite opens it, whatever the
    umask: SQLite gives the -wal and -shm files it creates the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # it exists (its mode is checked at start: gateways.transport), or SQLite says why not
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def query_file(path: str, sql: str, args=(), timeout: float = 10.0) -> list[tuple]:
    """Read a gateway database from outside the gateway (operators, drills, benchmarks): read
    only, without going through or locking the running gateway."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


class Store:
    """One SQLite database per gateway; safe to share between the API, relay and inbox threads."""

    def __init__(self, path: str, agency_id: str, domain: str | None = None,
                 remember_max: int = REMEMBER_MAX) -> None:
        self.agency = agency_id
        # where consents and outcome copies go (routing uses the sender)
        self._domain_hint = domain or agency_id
        self._scrub_after_batch = False
        self.write_error: str | None = None  # why the last write failed; None once one works
        self.remember_max = remember_max
        # why the replay memory refused an event; None once it remembers one again
        self.memory_full: str | None = None
        self._lock = threading.RLock()
        # the change feed (gateways/feed.py): rung after a commit that added to it
        self.bell = Bell()
        self._fed = self._refused = False
        try:
            self._db = connect(path)
            open_schema(self._db, agency_id, path, remember_max)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gateway database {path}: {exc}") from exc
        except SchemaError as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self):
        """One transaction; inside ``batch()`` a savepoint of the batch's transaction, so that
        one failed change rolls back alone and the batch commits (one fsync) at its end."""
        with self._lock:
            nested = self._db.in_transaction
            try:
                self._db.execute("SAVEPOINT change" if nested else "BEGIN IMMEDIATE")
                if not nested:
                    self._fed = self._refused = False
                yield self._db
                self._db.execute("RELEASE change" if nested else "COMMIT")
                # a full replay memory stays a problem until it has room, and a change the
                # database refused inside this transaction (a savepoint rolled back) until a
                # transaction commits without one
                if not nested and not self._refused:
                    self.write_error = self.memory_full
                    if self._fed:
                        self._fed = False
                        self.bell.ring()
            except BaseException as exc:
                if nested:
                    self._db.execute("ROLLBACK TO change")
                    self._db.execute("RELEASE change")
                elif self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    self._refused = True
                    self.write_error = f"{type(exc).__name__}: {exc}"
                    raise StoreError(f"the gateway database refused the write: {exc}") from exc
                raise

    @contextmanager
    def batch(self):
        """Group the changes made inside into one commit (group commit: with
        ``synchronous=FULL`` every commit is an fsync). Nothing inside is durable before the
        block ends: callers acknowledge (commit a Kafka offset, answer a peer) only after."""
        with self._lock:
            with self._tx():
                yield
            if self._scrub_after_batch:
                self._scrub_after_batch = False
                self._scrub()

    @contextmanager
    def write(self):
        """A transaction on the store's connection for the tables kept beside the store's own
        (gateways/access.py); inside ``batch()`` a savepoint, so that a change and its record
        of access commit together."""
        with self._tx() as db:
            yield db

    @contextmanager
    def read(self):
        """The store's connection, for reading those tables."""
        with self._lock:
            yield self._db

    def _rows(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    # --- outgoing ---------------------------------------------------------------------------

    def _queue(self, db, key: str, record_type: str, record: dict, recipient: str, now: int,
               partition_key: bytes | None = None, needs_receipt: bool = True) -> None:
        """Queue a record once under ``key``. A fire-and-forget record (a receipt) queued
        again is re-armed: the peer re-sent because our first receipt was lost."""
        rearm = "" if needs_receipt else (
            " ON CONFLICT (delivery_key) DO UPDATE SET state = 'pending', record = "
            "excluded.record, next_attempt_ms = excluded.next_attempt_ms")
        db.execute(
            "INSERT INTO outbox (delivery_key, event_id, record_type, recipient, "
            "record, partition_key, needs_receipt, state, next_attempt_ms, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
            + (rearm or " ON CONFLICT (delivery_key) DO NOTHING"),
            (key, str(uuid.uuid4()), record_type, recipient, codec.encode(record_type, record),
             partition_key, int(needs_receipt), now, now))

    def _enqueue(self, db, record_type: str, record: dict, recipient: str, now: int,
                 partition_key: bytes | None = None) -> None:
        """Queue a record under its plain delivery key (a referral, a consent)."""
        self._queue(db, loop.delivery_key(record_type, record), record_type, record, recipient,
                    now, partition_key)

    def _enqueue_to(self, db, record_type: str, record: dict, recipient: str, now: int,
                    partition_key: bytes | None = None) -> None:
        """Queue one record for one of several recipients: the delivery key names the
        recipient, whose receipt closes that copy alone."""
        self._queue(db, loop.queued_key(record_type, record, recipient), record_type, record,
                    recipient, now, partition_key)

    def submit_referral(self, referral: dict, partition_key: bytes, now: int) -> None:
        """Keep a new outgoing referral and queue it; refuse a referral id already used."""
        rid = referral["referralId"]
        with self._tx() as db:
            if db.execute("SELECT 1 FROM referrals WHERE sender = ? AND referral_id = ?",
                          (self.agency, rid)).fetchone():
                raise loop.TransitionError(f"referral {rid} exists already")
            db.execute("INSERT INTO referrals (sender, referral_id, direction, peer, state, "
                       "record, created_ms, updated_ms) VALUES (?, ?, 'out', ?, 'requested', "
                       "?, ?, ?)", (self.agency, rid, referral["recipientAgency"],
                                    codec.encode("Referral", referral), now, now))
            self._history(db, self.agency, rid, "requested", None, None, self.agency, now, now)
            self._enqueue(db, "Referral", referral, referral["recipientAgency"], now,
                          partition_key)

    def _find(self, db, referral_id: str, sender: str | None) -> tuple[str, str, str, str]:
        """(sender, direction, peer, state) of the one referral with this id (and sender)."""
        sql = "SELECT sender, direction, peer, state FROM referrals WHERE referral_id = ?"
        rows = db.execute(sql + (" AND sender = ?" if sender else ""),
                          (referral_id, sender) if sender else (referral_id,)).fetchall()
        if not rows:
            raise NotFound(f"no referral {referral_id}"
                           f"{f' from {sender}' if sender else ''} at {self.agency}")
        if len(rows) > 1:
            raise Ambiguous(f"{len(rows)} referrals have the id {referral_id} (from "
                            f"{', '.join(sorted(r[0] for r in rows))}): name the sender")
        return rows[0]

    def sender_of(self, referral_id: str, sender: str | None = None) -> str:
        """The sender of the one referral with this id (and sender): NotFound or Ambiguous
        as ``referral`` says, without reading its case data."""
        with self._lock:
            return self._find(self._db, referral_id, sender)[0]

    def set_status(self, referral_id: str, state: str, reason: str | None, now: int,
                   detail: str | None = None, sender: str | None = None) -> dict:
        """A local case worker changes a referral's state; the peer is told through the outbox.
        ``sender``: the referral's sender, needed only when two referrals share the id."""
        with self._tx() as db:
            sender, direction, peer, current = self._find(db, referral_id, sender)
            loop.check_transition(current, state, "sender" if direction == "out" else
                                  "recipient", reason)
            status = {"referralId": referral_id, "state": state, "reason": reason,
                      "detail": detail, "setBy": self.agency, "at": now}
            records.ReferralStatus.from_dict(status)  # a bad reason or detail writes nothing
            self._change(db, receive.StatusChange(sender, referral_id, status, state), now)
            self._enqueue_to(db, "ReferralStatus", status, peer, now)
            if state in OUTCOMES and self._domain_hint != self.agency:
                # a copy for the domain's regional statistics, without the free-text detail,
                # keyed like the referral so that it reaches the partition that decided it
                row = db.execute("SELECT partition_key FROM referral_keys WHERE sender = ? "
                                 "AND referral_id = ?", (sender, referral_id)).fetchone()
                self._enqueue_to(db, "ReferralStatus", {**status, "detail": None},
                                 self._domain_hint, now, row[0] if row else None)
            return status

    def due(self, now: int, limit: int = 100) -> list[Due]:
        rows = self._rows(
            "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ? "
            "ORDER BY next_attempt_ms, created_ms LIMIT ?", (now, limit))
        return [Due(r["delivery_key"], r["event_id"], r["record_type"], r["recipient"],
                    codec.decode(r["record"])[1], r["partition_key"], bool(r["needs_receipt"]),
                    r["attempts"]) for r in rows]

    def attempted(self, delivery_key: str, next_attempt_ms: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ? "
                       "WHERE delivery_key = ? AND state = 'pending'",
                       (next_attempt_ms, delivery_key))

    def reschedule(self, delivery_key: str, next_attempt_ms: int) -> None:
        """Move a pending entry's next attempt without counting one: its receipt is slow, not
        lost (refmesh.resend)."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET next_attempt_ms = ? WHERE delivery_key = ? "
                       "AND state = 'pending'", (next_attempt_ms, delivery_key))

    def retry_soon(self, delivery_key: str) -> None:
        """The broker did not take the entry: make it due again at once, in its original place
        (its creation time), so that a later entry for the same person (a referral after a
        withdrawal) cannot overtake it while the broker is away."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET next_attempt_ms = created_ms WHERE delivery_key = ? "
                       "AND state = 'pending'", (delivery_key,))

    def sent(self, delivery_key: str, now: int) -> None:
        """A fire-and-forget event (a receipt) was acknowledged by the broker."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = 'sent', closed_ms = ? WHERE delivery_key = ? "
                       "AND needs_receipt = 0", (now, delivery_key))

    def record_consent(self, consent: dict, partition_key: bytes, now: int) -> None:
        """Keep a consent (new, amended or withdrawn) and send it to the policy domain. Its
        withdrawal asks every agency that received data under it to erase it: the timeline of
        each referral sent here relying on it says so (erasure_requested)."""
        with self._tx() as db:
            held = db.execute("SELECT record FROM consents WHERE consent_id = ?",
                              (consent["consentId"],)).fetchone()
            at = withdrawn_at(consent)
            if at is not None and (held is None or withdrawn_at(codec.decode(held[0])[1]) is
                                   None):
                self._erasure_requested(db, consent["consentId"], at, now)
            db.execute("INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?)",
                       (consent["consentId"], consent["subjectId"],
                        codec.encode("Consent", consent), now))
            self._enqueue(db, "Consent", consent, self._domain_hint, now, partition_key)

    def _erasure_requested(self, db, consent_id: str, at: int, now: int) -> None:
        """Mark the referrals sent here before ``at`` relying on the consent ``consent_id``
        (withdrawn at ``at``): the policy domain asks their recipients to erase them."""
        for rid, data in db.execute("SELECT referral_id, record FROM referrals WHERE sender "
                                    "= ? AND created_ms <= ? ORDER BY created_ms",
                                    (self.agency, at)).fetchall():
            if codec.decode(data)[1]["consentId"] == consent_id:
                self._history(db, self.agency, rid, receive.ERASURE_REQUESTED,
                              "ConsentWithdrawn", None, self.agency, at, now)

    def consent(self, consent_id: str) -> dict:
        rows = self._rows("SELECT record FROM consents WHERE consent_id = ?", (consent_id,))
        if not rows:
            raise NotFound(f"no consent {consent_id} at {self.agency}")
        return codec.decode(rows[0]["record"])[1]

    def consents(self) -> list[dict]:
        rows = self._rows("SELECT record FROM consents ORDER BY updated_ms DESC")
        return [codec.decode(r["record"])[1] for r in rows]

    def erasures(self) -> list[dict]:
        rows = self._rows("SELECT notice_id, kind, consent_id, referral_ids, requested_by, at, "
                          "received_ms FROM erasures ORDER BY received_ms DESC")
        for r in rows:
            r["referral_ids"] = [x for x in r["referral_ids"].split(",") if x]
        return rows

    # --- incoming ---------------------------------------------------------------------------

    def receive(self, event: receive.Event, parties: receive.Parties,
                now: int) -> receive.Changes:
        """Decide what an opened, validated event changes (``refmesh.receive.decide``) and
        carry it out in one transaction; return the decision (``refused``: the reason, and
        nothing was stored; ``new``: False for a duplicate)."""
        erased = False
        with self._tx() as db:
            changes = receive.decide(event, parties, self._view(db, now), now)
            if changes.refused is None:
                erased = self._apply(db, event, changes, now)
        if erased:
            self._scrub()
        return changes

    def _view(self, db, now: int) -> receive.View:
        columns = "SELECT sender, referral_id, direction, peer, state FROM referrals "

        def referral(sender: str, rid: str) -> receive.Held | None:
            row = db.execute(columns + "WHERE sender = ? AND referral_id = ?",
                             (sender, rid)).fetchone()
            return None if row is None else receive.Held(*row)

        def copies(rid: str) -> tuple[receive.Held, ...]:
            # with the consent id the copy names (pseudonymised for us): an erasure request
            # names it too
            rows = db.execute("SELECT sender, referral_id, direction, peer, state, record "
                              "FROM referrals WHERE referral_id = ? AND direction = 'in' "
                              "ORDER BY sender", (rid,))
            return tuple(receive.Held(*r[:5], codec.decode(r[5])[1]["consentId"])
                         for r in rows)

        def received_from(rid: str) -> tuple[str, ...]:
            return tuple(r[0] for r in db.execute(
                "SELECT origin FROM inbox WHERE delivery_key = ? AND record_type = 'Referral' "
                "ORDER BY origin", (loop.delivery_key("Referral", {"referralId": rid}),)))

        def entry(key: str) -> receive.Entry | None:
            row = db.execute("SELECT delivery_key, recipient, state, needs_receipt FROM outbox "
                             "WHERE delivery_key = ?", (key,)).fetchone()
            return None if row is None else receive.Entry(row[0], row[1], row[2], bool(row[3]))

        def seen(origin: str, key: str) -> bool:
            return db.execute("SELECT 1 FROM inbox WHERE origin = ? AND delivery_key = ?",
                              (origin, key)).fetchone() is not None

        def event(signer: str, origin: str, event_id: str) -> str | None:
            row = db.execute("SELECT digest FROM events WHERE signer = ? AND origin = ? AND "
                             "event_id = ? AND until_ms >= ?",
                             (signer, origin, event_id, now)).fetchone()
            return None if row is None else row[0]

        return receive.View(referral, copies, received_from, entry, seen, event)

    def _remember(self, db, remember: receive.Remember, now: int) -> None:
        """Remember an accepted event (again: until the later of both times), forgetting what
        ran out; refuse (MemoryFull) rather than grow past ``remember_max`` rows."""
        db.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE "
                   "until_ms < ? ORDER BY until_ms LIMIT ?)", (now, PRUNE_STEP))
        key = (remember.signer, remember.origin, remember.event_id)
        if db.execute("SELECT 1 FROM events WHERE signer = ? AND origin = ? AND event_id = ?",
                      key).fetchone() is None and self.remembered(db) >= self.remember_max:
            db.execute("DELETE FROM events WHERE until_ms < ?", (now,))
            if self.remembered(db) >= self.remember_max:
                self.memory_full = self.write_error = (
                    f"the replay memory holds {self.remember_max} event ids, none older than "
                    "the envelopes' maximum age: no event is accepted until some run out; "
                    "raise replay_memory_max (and the disk for it) and restart the gateway")
                raise MemoryFull(self.memory_full)
        # an expired row not yet forgotten is replaced, content and all
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?) ON CONFLICT (signer, origin, "
                   "event_id) DO UPDATE SET digest = CASE WHEN events.until_ms < ? THEN "
                   "excluded.digest ELSE events.digest END, until_ms = max(events.until_ms, "
                   "excluded.until_ms)", (*key, remember.digest, remember.until, now))
        self.memory_full = None

    def remembered(self, db=None) -> int:
        """How many event ids the replay memory holds (expired ones not yet forgotten too)."""
        with self._lock:
            return (db or self._db).execute("SELECT n FROM events_held").fetchone()[0]

    def _apply(self, db, event: receive.Event, changes: receive.Changes, now: int) -> bool:
        """Carry out a decision; True if it erased something."""
        if changes.remember is not None:
            self._remember(db, changes.remember, now)
        if changes.inbox is not None:
            origin, key = changes.inbox
            db.execute("INSERT INTO inbox (origin, delivery_key, event_id, record_type, sender, "
                       "record, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (origin, key, event.event_id, event.record_type, event.sender,
                        codec.encode(event.record_type, event.record), now))
        if changes.keep is not None:
            keep = changes.keep
            if keep.kafka_key:
                db.execute("INSERT OR IGNORE INTO referral_keys VALUES (?, ?, ?)",
                           (keep.sender, keep.referral_id, keep.kafka_key))
            db.execute("INSERT INTO referrals (sender, referral_id, direction, peer, state, "
                       "record, created_ms, updated_ms) VALUES (?, ?, 'in', ?, 'received', ?, "
                       "?, ?)", (keep.sender, keep.referral_id, keep.sender,
                                 codec.encode("Referral", keep.record), now, now))
        for change in changes.statuses:
            self._change(db, change, now)
        for close in changes.close:
            db.execute(f"UPDATE outbox SET state = ?, closed_ms = ? WHERE delivery_key = ? AND "
                       f"state IN ({', '.join('?' * len(close.states))})",
                       (close.to, now, close.key, *close.states))
        for mark in changes.marks:  # before the erasure below: the timeline outlives the copy
            self._history(db, mark.sender, mark.referral_id, mark.what, mark.reason, None,
                          mark.by, mark.at, now)
        if changes.notice is not None:
            notice = changes.notice
            db.execute("INSERT OR IGNORE INTO erasures VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (notice["noticeId"], notice["kind"], notice["consentId"],
                        ",".join(notice["referralIds"]), notice["requestedBy"], notice["at"],
                        now))
        for sender, rid in changes.erase:
            # Erase the case data; the inbox row keeps its delivery key (record emptied) so a
            # late re-send of the same referral is recognised as a duplicate, not stored again.
            db.execute("DELETE FROM referrals WHERE sender = ? AND referral_id = ? AND "
                       "direction = 'in'", (sender, rid))
            db.execute("DELETE FROM referral_keys WHERE sender = ? AND referral_id = ?",
                       (sender, rid))
            db.execute("UPDATE inbox SET record = X'' WHERE origin = ? AND delivery_key = ?",
                       (sender, loop.delivery_key("Referral", {"referralId": rid})))
        for send in changes.send:
            self._queue(db, send.key, send.record_type, send.record, send.recipient, now,
                        needs_receipt=send.needs_receipt)
        return bool(changes.erase)

    def _scrub(self) -> None:
        """Move the erased state into the database file and empty the write-ahead log, whose
        old frames still hold the erased records (secure_delete zeroes the freed space)."""
        with self._lock:
            if self._db.in_transaction:  # inside batch(): scrub once the batch committed
                self._scrub_after_batch = True
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # the rows are gone; a later checkpoint scrubs
                log.warning("checkpoint after an erasure failed (%s); the erased records stay "
                            "in the write-ahead log until the next checkpoint", exc)

    def _change(self, db, change: receive.StatusChange, now: int) -> None:
        """A status into the referral's history; the referral moves to ``change.state``."""
        status = change.status
        self._history(db, change.sender, change.referral_id, status["state"], status["reason"],
                      status["detail"], status["setBy"], status["at"], now)
        if change.state is not None:
            db.execute("UPDATE referrals SET state = ?, updated_ms = ? WHERE sender = ? AND "
                       "referral_id = ?", (change.state, now, change.sender, change.referral_id))

    def _history(self, db, sender, referral_id, state, reason, detail, set_by, at, now) -> None:
        """An entry in a referral's timeline, and in the change feed (without the free-text
        detail), in the caller's transaction."""
        db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (sender, referral_id, state, reason, detail, set_by, at, now))
        db.execute("INSERT INTO feed (sender, referral_id, direction, state, reason, set_by, "
                   "at, recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (sender, referral_id, "out" if sender == self.agency else "in", state,
                    reason, set_by, at, now))
        self._fed = True

    # --- reading ----------------------------------------------------------------------------

    def referrals(self, direction: str) -> list[dict]:
        rows = self._rows("SELECT sender, referral_id, peer, state, record, created_ms, "
                          f"updated_ms, {SHARED} FROM referrals WHERE direction = ? "
                          "ORDER BY created_ms DESC", (direction,))
        out = []
        for r in rows:
            rec = codec.decode(r.pop("record"))[1]
            out.append({**r, "urgency": rec["service"]["urgency"], "trmStage": rec["trmStage"],
                        "dueDate": rec["service"]["dueDate"], "purpose": rec["purpose"]})
        return out

    def referral(self, referral_id: str, sender: str | None = None) -> dict:
        """One referral with its history; ``sender`` needed only when two share the id."""
        with self._lock:
            sender = self._find(self._db, referral_id, sender)[0]
            row = self._rows(f"SELECT *, {SHARED} FROM referrals WHERE sender = ? AND "
                             "referral_id = ?", (sender, referral_id))[0]
            row["record"] = codec.decode(row["record"])[1]
            row["history"] = self._rows(
                "SELECT state, reason, detail, set_by, at FROM history WHERE sender = ? AND "
                "referral_id = ? ORDER BY at, recorded_ms", (sender, referral_id))
            return row

    def feed(self, after: int, limit: int) -> list[dict]:
        """The change feed's entries after the cursor ``after``, oldest first, at most
        ``limit``; RecordError (naming ``after``) for a cursor this feed never gave."""
        with self._lock:
            head = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'feed'"
                                    ).fetchone()
            if after > (head[0] if head else 0):
                raise RecordError("after", f"cursor {after} is past the end of this gateway's "
                                           f"feed ({head[0] if head else 0}): it comes from "
                                           "another gateway or an older copy of this "
                                           "database; start again from 0")
            return self._rows("SELECT * FROM feed WHERE seq > ? ORDER BY seq LIMIT ?",
                              (after, limit))

    def outbox_depth(self) -> int:
        return self._rows("SELECT count(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"]

    def delivery_state(self, delivery_key: str) -> str | None:
        rows = self._rows("SELECT state FROM outbox WHERE delivery_key = ?", (delivery_key,))
        return rows[0]["state"] if rows else None
