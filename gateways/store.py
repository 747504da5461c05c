"""The gateway's local state: outbox, inbox and the referrals it sent and received (SQLite, WAL).

Every change that matters is one transaction: a submitted referral is stored together with its
outbox entry; a received event is stored together with the receipt and status it causes. So a
crash at any point loses nothing and does nothing twice. Records are kept as their Avro
single-object encoding (what was validated), never as loose JSON.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from refmesh import codec, loop, records
from refmesh.aggregate import OUTCOMES
from refmesh.errors import MeshError

log = logging.getLogger("refmesh.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    delivery_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    recipient TEXT NOT NULL,
    record BLOB NOT NULL,
    partition_key BLOB,
    needs_receipt INTEGER NOT NULL,
    state TEXT NOT NULL,              -- pending, confirmed, refused, sent
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    closed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS inbox (
    delivery_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    record BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
    referral_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,          -- out (we sent it) or in (we received it)
    peer TEXT NOT NULL,               -- the recipient (out) or the sender (in)
    state TEXT NOT NULL,
    record BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS referral_keys (
    referral_id TEXT PRIMARY KEY,     -- a received referral
    partition_key BLOB NOT NULL       -- its Kafka key (a keyed hash): outcome copies go with it
);
CREATE TABLE IF NOT EXISTS history (
    referral_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    set_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_referral ON history (referral_id);
CREATE TABLE IF NOT EXISTS consents (
    consent_id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL,
    record BLOB NOT NULL,             -- the latest Consent, with its event history
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    notice_id TEXT NOT NULL,
    kind TEXT NOT NULL,               -- Request (we were asked) or Confirmation (we were told)
    consent_id TEXT NOT NULL,
    referral_ids TEXT NOT NULL,       -- comma-separated ids, never case data
    requested_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (notice_id, kind, requested_by)
);
"""


class StoreError(MeshError):
    """The gateway cannot keep what it was given (disk full, read-only database...)."""


class NotFound(MeshError, LookupError):
    """No referral with that id at this gateway."""


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
    ``_scrub``). Autocommit mode: transactions are explicit."""
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

    def __init__(self, path: str, agency_id: str, domain: str | None = None) -> None:
        self.agency = agency_id
        # where consents and outcome copies go (routing uses the sender)
        self._domain_hint = domain or agency_id
        self._scrub_after_batch = False
        self.write_error: str | None = None  # why the last write failed; None once one works
        self._lock = threading.RLock()
        try:
            self._db = connect(path)
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gateway database {path}: {exc}") from exc

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
                yield self._db
                self._db.execute("RELEASE change" if nested else "COMMIT")
                if not nested:
                    self.write_error = None
            except BaseException as exc:
                if nested:
                    self._db.execute("ROLLBACK TO change")
                    self._db.execute("RELEASE change")
                elif self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
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

    def _rows(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    # --- outgoing ---------------------------------------------------------------------------

    def _enqueue(self, db, record_type: str, record: dict, recipient: str, now: int,
                 partition_key: bytes | None = None, needs_receipt: bool = True) -> None:
        """Queue a record once per delivery key. A fire-and-forget record (a receipt) queued
        again is re-armed: the peer re-sent because our first receipt was lost."""
        key = loop.delivery_key(record_type, record)
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

    def submit_referral(self, referral: dict, partition_key: bytes, now: int) -> None:
        """Keep a new outgoing referral and queue it; refuse a referral id already used."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM referrals WHERE referral_id = ?",
                          (referral["referralId"],)).fetchone():
                raise loop.TransitionError(f"referral {referral['referralId']} exists already")
            db.execute("INSERT INTO referrals VALUES (?, 'out', ?, 'requested', ?, ?, ?)",
                       (referral["referralId"], referral["recipientAgency"],
                        codec.encode("Referral", referral), now, now))
            self._history(db, referral["referralId"], "requested", None, None, self.agency,
                          now, now)
            self._enqueue(db, "Referral", referral, referral["recipientAgency"], now,
                          partition_key)

    def set_status(self, referral_id: str, state: str, reason: str | None, now: int,
                   detail: str | None = None) -> dict:
        """A local case worker changes a referral's state; the peer is told through the outbox."""
        with self._tx() as db:
            row = db.execute("SELECT direction, peer, state FROM referrals WHERE referral_id = ?",
                             (referral_id,)).fetchone()
            if row is None:
                raise NotFound(f"no referral {referral_id} at {self.agency}")
            direction, peer, current = row
            loop.check_transition(current, state, "sender" if direction == "out" else
                                  "recipient", reason)
            status = {"referralId": referral_id, "state": state, "reason": reason,
                      "detail": detail, "setBy": self.agency, "at": now}
            records.ReferralStatus.from_dict(status)  # a bad reason or detail writes nothing
            self._apply_status(db, referral_id, status, now)
            self._enqueue(db, "ReferralStatus", status, peer, now)
            if state in OUTCOMES and self._domain_hint != self.agency:
                # a copy for the domain's regional statistics, without the free-text detail,
                # keyed like the referral so that it reaches the partition that decided it
                row = db.execute("SELECT partition_key FROM referral_keys WHERE "
                                 "referral_id = ?", (referral_id,)).fetchone()
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
        """Keep a consent (new, amended or withdrawn) and send it to the policy domain."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?)",
                       (consent["consentId"], consent["subjectId"],
                        codec.encode("Consent", consent), now))
            self._enqueue(db, "Consent", consent, self._domain_hint, now, partition_key)

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

    def receive(self, event_id: str, record_type: str, sender: str, record: dict,
                now: int, kafka_key: bytes | None = None) -> bool:
        """Store an opened, validated event once; return False for a duplicate. Queues the
        receipt (always, so a lost receipt is answered on re-send) and the side effects.
        ``kafka_key``: the event's Kafka key (a referral's: the keyed hash its domain
        partitions by)."""
        key = loop.delivery_key(record_type, record)
        erased = False
        with self._tx() as db:
            if record_type == "Receipt":
                db.execute("UPDATE outbox SET state = 'confirmed', closed_ms = ? "
                           "WHERE delivery_key = ? AND state = 'pending'",
                           (now, record["deliveryKey"]))
                return True
            cur = db.execute("INSERT OR IGNORE INTO inbox VALUES (?, ?, ?, ?, ?, ?)",
                             (key, event_id, record_type, sender,
                              codec.encode(record_type, record), now))
            new = cur.rowcount == 1
            receipt = {"deliveryKey": loop.receipt_key(record_type, record, self.agency),
                       "eventId": event_id,
                       "outcome": "Stored" if new else "Duplicate", "receivedBy": self.agency,
                       "at": now}
            # A receipt answers the original sender; a policy refusal comes from the domain.
            answer_to = record.get("senderAgency", sender) if record_type == "Referral" \
                else sender
            self._enqueue(db, "Receipt", receipt, answer_to, now, needs_receipt=False)
            if new and record_type == "Referral":
                self._received_referral(db, record, now, kafka_key)
            elif new and record_type == "ReferralStatus":
                self._apply_status(db, record["referralId"], record, now)
            elif new and record_type == "ErasureNotice":
                erased = self._erasure(db, record, sender, now)
        if erased:
            self._scrub()
        return new

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

    def _erasure(self, db, notice: dict, sender: str, now: int) -> bool:
        """Record an erasure notice; for a request, erase and confirm. True if it erased."""
        db.execute("INSERT OR IGNORE INTO erasures VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (notice["noticeId"], notice["kind"], notice["consentId"],
                    ",".join(notice["referralIds"]), notice["requestedBy"], notice["at"], now))
        if notice["kind"] != "Request":
            return False
        senders = set()
        for rid in notice["referralIds"]:
            row = db.execute("SELECT peer FROM referrals WHERE referral_id = ? AND "
                             "direction = 'in'", (rid,)).fetchone()
            if row is not None:
                senders.add(row[0])
            # Erase the case data; the inbox row keeps its delivery key (record emptied) so a
            # late re-send of the same referral is recognised as a duplicate, not stored again.
            db.execute("DELETE FROM referrals WHERE referral_id = ? AND direction = 'in'", (rid,))
            db.execute("DELETE FROM referral_keys WHERE referral_id = ?", (rid,))
            db.execute("UPDATE inbox SET record = X'' WHERE delivery_key = ?",
                       (f"referral:{rid}",))
        confirmation = {**notice, "kind": "Confirmation", "requestedBy": self.agency, "at": now}
        for to in sorted({sender, *senders}):
            self._enqueue_to(db, "ErasureNotice", confirmation, to, now)
        return True

    def _enqueue_to(self, db, record_type: str, record: dict, recipient: str, now: int,
                    partition_key: bytes | None = None) -> None:
        """Queue one record for several recipients: the delivery key names the recipient."""
        key = loop.queued_key(record_type, record, recipient)
        db.execute(
            "INSERT OR IGNORE INTO outbox (delivery_key, event_id, record_type, recipient, "
            "record, partition_key, needs_receipt, state, next_attempt_ms, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, 'pending', ?, ?)",
            (key, str(uuid.uuid4()), record_type, recipient, codec.encode(record_type, record),
             partition_key, now, now))

    def _received_referral(self, db, referral: dict, now: int,
                           kafka_key: bytes | None) -> None:
        rid, sender = referral["referralId"], referral["senderAgency"]
        if kafka_key:
            db.execute("INSERT OR IGNORE INTO referral_keys VALUES (?, ?)", (rid, kafka_key))
        db.execute("INSERT OR IGNORE INTO referrals VALUES (?, 'in', ?, 'received', ?, ?, ?)",
                   (rid, sender, codec.encode("Referral", referral), now, now))
        status = {"referralId": rid, "state": "received", "reason": None, "detail": None,
                  "setBy": self.agency, "at": now}
        self._history(db, rid, "received", None, None, self.agency, now, now)
        self._enqueue(db, "ReferralStatus", status, sender, now)

    def _apply_status(self, db, referral_id: str, status: dict, now: int) -> None:
        row = db.execute("SELECT state FROM referrals WHERE referral_id = ?",
                         (referral_id,)).fetchone()
        self._history(db, referral_id, status["state"], status["reason"], status["detail"],
                      status["setBy"], status["at"], now)
        if row is not None and (row[0] == "requested" and status["state"] != "requested"
                                or loop.supersedes(row[0], status["state"])):
            db.execute("UPDATE referrals SET state = ?, updated_ms = ? WHERE referral_id = ?",
                       (status["state"], now, referral_id))
        if status["state"] in ("refused", "revoked") and status["setBy"] != self.agency:
            # A refusal by the policy domain answers our referral as surely as a receipt.
            db.execute("UPDATE outbox SET state = 'refused', closed_ms = ? "
                       "WHERE delivery_key = ? AND state = 'pending'",
                       (now, f"referral:{referral_id}"))

    def _history(self, db, referral_id, state, reason, detail, set_by, at, now) -> None:
        db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (referral_id, state, reason, detail, set_by, at, now))

    # --- reading ----------------------------------------------------------------------------

    def referrals(self, direction: str) -> list[dict]:
        rows = self._rows("SELECT referral_id, peer, state, record, created_ms, updated_ms "
                          "FROM referrals WHERE direction = ? ORDER BY created_ms DESC",
                          (direction,))
        out = []
        for r in rows:
            rec = codec.decode(r.pop("record"))[1]
            out.append({**r, "urgency": rec["service"]["urgency"], "trmStage": rec["trmStage"],
                        "dueDate": rec["service"]["dueDate"], "purpose": rec["purpose"]})
        return out

    def referral(self, referral_id: str) -> dict:
        rows = self._rows("SELECT * FROM referrals WHERE referral_id = ?", (referral_id,))
        if not rows:
            raise NotFound(f"no referral {referral_id} at {self.agency}")
        row = rows[0]
        row["record"] = codec.decode(row["record"])[1]
        row["history"] = self._rows(
            "SELECT state, reason, detail, set_by, at FROM history WHERE referral_id = ? "
            "ORDER BY at, recorded_ms", (referral_id,))
        return row

    def outbox_depth(self) -> int:
        return self._rows("SELECT count(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"]

    def delivery_state(self, delivery_key: str) -> str | None:
        rows = self._rows("SELECT state FROM outbox WHERE delivery_key = ?", (delivery_key,))
        return rows[0]["state"] if rows else None
