"""The gateway database's tables, and the migration of a database written by an older gateway.

Schema 2 (``PRAGMA user_version = 2``) keys referrals by (sender, referral id): ids are unique
per sender only, so two agencies that choose the same id never collide, and nobody can squat
another sender's id. The inbox remembers an event under (origin, delivery key): a referral's
sender, else the envelope's signer. Statuses leave the outbox once per peer (``loop.queued_key``).

Schema 3 adds the replay memory (issue 12, item 4; ``refmesh.receive``): ``events`` holds each
event the gateway accepted, under (signer, origin, event id), with the digest of its signed
content, until its envelope is too old to open; ``events_held`` counts its rows (kept by
triggers, so that the store checks its bound without counting the table).

A database without a user_version but with the referral tables is schema 1 (every gateway before
refmesh 0.2): ``open_schema`` migrates it (to 2, then 3) in one transaction, or, if that fails,
leaves it as it was and says so. Migrating to 3 remembers what the inbox accepted within the
maximum age of its newest event, so that the memory starts with what the gateway already holds.
A database of a newer schema is refused (upgrade the gateway).

Schema 4 (issue 14) holds the web page's accounts and sessions (before, gateways/web/auth.py
created them beside the schema), now with a role, a team and a disabled time per account; API
tokens with scopes (``api_tokens``: the SHA-256 of each token, never the token); who assigned a
referral to whom (``assignments``); who submitted a referral or recorded a consent here
(``authors``); and the record of access (``access_log``, a hash chain: refmesh.accesslog).
Accounts made before schema 4 become case workers of the team ``intake``
(refmesh.permissions.DEFAULT_TEAM); referrals and consents from before name no author, so only
supervisors (and ``admin`` tokens, for consents) act on them until one is assigned.

Schema 5 adds the change feed (issue 14, item 5): ``feed`` holds one row per entry of a
referral's timeline (a status, or its copies' erasure asked or confirmed), numbered by ``seq``,
which only grows (AUTOINCREMENT: never reused, even once rows are deleted). A row is written in
the transaction of the change it records, so a case system that reads ``GET /v1/events`` after
a cursor misses nothing and sees nothing twice, across restarts. Migrating to 5 copies the
history into the feed, in the order it was recorded, and adds to the timelines of referrals
this gateway sent what schema 4 kept only under erasures: the withdrawals of the consents they
relied on (erasure requested) and the recipients' confirmations (erasure confirmed).
"""
from __future__ import annotations

import sqlite3

from refmesh import codec, envelope, loop, replay
from refmesh.consent import withdrawn_at
from refmesh.errors import CodecError, MeshError
from refmesh.settings import GatewaySettings

VERSION = 5
#: the most event ids the replay memory holds, unless the settings say otherwise
REMEMBER_MAX = GatewaySettings.replay_memory_max

TABLES = """
CREATE TABLE IF NOT EXISTS outbox (
    delivery_key TEXT PRIMARY KEY,    -- the key the recipient's receipt names
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
    origin TEXT NOT NULL,             -- whose ids the key names: a referral's sender, else the
                                      -- envelope's signer
    delivery_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    sender TEXT NOT NULL,             -- the envelope's signer
    record BLOB NOT NULL,             -- emptied when the referral is erased
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, delivery_key)
);
CREATE TABLE IF NOT EXISTS referrals (
    sender TEXT NOT NULL,             -- who chose the id: this agency (out) or the peer (in)
    referral_id TEXT NOT NULL,
    direction TEXT NOT NULL,          -- out (we sent it) or in (we received it)
    peer TEXT NOT NULL,               -- the recipient (out) or the sender (in)
    state TEXT NOT NULL,
    record BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, referral_id)
);
CREATE INDEX IF NOT EXISTS referrals_id ON referrals (referral_id);
CREATE TABLE IF NOT EXISTS referral_keys (
    sender TEXT NOT NULL,             -- a received referral
    referral_id TEXT NOT NULL,
    partition_key BLOB NOT NULL,      -- its Kafka key (a keyed hash): outcome copies go with it
    PRIMARY KEY (sender, referral_id)
);
CREATE TABLE IF NOT EXISTS history (
    sender TEXT NOT NULL,             -- the referral's sender ('' if a migration lost it)
    referral_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    set_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_referral2 ON history (sender, referral_id);
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
CREATE TABLE IF NOT EXISTS events (
    signer TEXT NOT NULL,             -- the envelope's signer
    origin TEXT NOT NULL,             -- whose ids: a referral's sender, else the signer
    event_id TEXT NOT NULL,
    digest TEXT NOT NULL,             -- refmesh.replay.digest of what was accepted under it
    until_ms INTEGER NOT NULL,        -- forgotten after this: its envelope is too old to open
    PRIMARY KEY (signer, origin, event_id)
);
CREATE INDEX IF NOT EXISTS events_until ON events (until_ms);
CREATE TABLE IF NOT EXISTS feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the change feed's cursor: only grows
    sender TEXT NOT NULL,             -- the referral's sender (with the id, its key)
    referral_id TEXT NOT NULL,
    direction TEXT NOT NULL,          -- out (we sent it) or in (we received it)
    state TEXT NOT NULL,              -- a ReferralState, erasure_requested or erasure_confirmed
    reason TEXT,                      -- a StatusReason or ErasureReason code, never free text
    set_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events_held (
    n INTEGER NOT NULL                -- the rows of events (one row, kept by the triggers)
);
CREATE TABLE IF NOT EXISTS web_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,      -- Argon2id, PHC string
    language TEXT NOT NULL,           -- en or ar: the language of the page for this user
    failures INTEGER NOT NULL DEFAULT 0,  -- sign-in attempts counted since the last success
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL,
    role TEXT NOT NULL DEFAULT 'caseworker',  -- refmesh.permissions.ROLES
    team TEXT NOT NULL DEFAULT 'intake',      -- '' for none
    disabled_ms INTEGER               -- when the account was disabled (NULL: it is not)
);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash TEXT PRIMARY KEY,      -- SHA-256 of the cookie value, never the value
    username TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL,
    flash TEXT                        -- one message for the next page: an i18n key and ids
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (username);
CREATE TABLE IF NOT EXISTS web_erasure_acks (
    notice_id TEXT PRIMARY KEY,       -- an erasure request a case worker has confirmed
    username TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,  -- SHA-256 of the token, never the token
    scopes TEXT NOT NULL,             -- comma-separated refmesh.permissions.SCOPES
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER                -- NULL while it works
);
CREATE TABLE IF NOT EXISTS assignments (
    sender TEXT NOT NULL,             -- the referral, as in referrals
    referral_id TEXT NOT NULL,
    username TEXT,                    -- assigned to a case worker, and/or
    team TEXT,                        -- to a team
    assigned_by TEXT NOT NULL,
    assigned_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, referral_id)
);
CREATE TABLE IF NOT EXISTS authors (
    kind TEXT NOT NULL,               -- referral (sent from here) or consent (recorded here)
    ref TEXT NOT NULL,                -- its id
    actor TEXT NOT NULL,              -- a username, or token:<name>
    PRIMARY KEY (kind, ref)
);
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY,          -- refmesh.accesslog: a hash chain, ids only
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    ref TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""

#: statements with semicolons of their own (TABLES is split at each), run after TABLES
TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS events_added AFTER INSERT ON events "
    "BEGIN UPDATE events_held SET n = n + 1; END",
    "CREATE TRIGGER IF NOT EXISTS events_removed AFTER DELETE ON events "
    "BEGIN UPDATE events_held SET n = n - 1; END",
)

#: the tables schema 2 rebuilds (schema 1 keyed them by referral id or delivery key alone)
REBUILT = ("inbox", "referrals", "referral_keys", "history")


class SchemaError(MeshError):
    """The gateway database is of a schema this gateway cannot use."""


def _create(db: sqlite3.Connection, split: bool = True) -> None:
    """Every table, index and trigger that is missing; writes nothing if none is (a read-only
    database still opens, and /healthz says that it refuses writes). ``split``: statement by
    statement, inside the caller's transaction (executescript would commit it)."""
    if split:
        for statement in TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
    else:
        db.executescript(TABLES)
    if db.execute("SELECT 1 FROM events_held").fetchone() is None:
        db.execute("INSERT INTO events_held (n) SELECT count(*) FROM events")
    for statement in TRIGGERS:
        db.execute(statement)


def open_schema(db: sqlite3.Connection, agency: str | None, path: str,
                remember_max: int = REMEMBER_MAX) -> None:
    """Create the tables of a new database, migrate one of schema 1 to 3, check any other.
    ``agency`` None (the accounts alone, `refmesh users`): a database with referrals of an older
    schema is left to the gateway to migrate."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise SchemaError(f"the gateway database {path} is of schema {version}, written by a "
                          f"newer refmesh; this gateway knows schemas up to {VERSION}: upgrade "
                          "the gateway, or point it at a copy of the database from before")
    if version == VERSION:
        _create(db, split=False)  # idempotent
        return
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if agency is None and "referrals" in tables:
        raise SchemaError(f"the gateway database {path} is of schema {version}: start the "
                          "gateway (refmesh gateway run) once to migrate it, then try again")
    db.execute("BEGIN IMMEDIATE")
    try:
        if version < 2 and "referrals" in tables:
            _from_1(db, agency)
        if "web_users" in tables:
            _roles(db)
        _create(db)
        if version < 3 and "inbox" in tables:
            _remember_inbox(db, remember_max)
        if version < 5 and "history" in tables:
            _feed_from_history(db, agency)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except Exception as exc:
        db.execute("ROLLBACK")
        raise SchemaError(f"cannot migrate the gateway database {path} to schema {VERSION} "
                          f"({type(exc).__name__}: {exc}); it is unchanged. Keep a copy and "
                          "report this; an older gateway still opens it") from exc


def _from_1(db: sqlite3.Connection, me: str) -> None:
    """Schema 1 -> 2, inside the caller's transaction."""
    for name in REBUILT:
        db.execute(f"ALTER TABLE {name} RENAME TO {name}_v1")
    db.execute("DROP INDEX IF EXISTS history_referral")
    for statement in TABLES.split(";"):
        if statement.strip():
            db.execute(statement)  # the triggers come once the tables are filled (_create)
    # who sent each received referral: its row, else (erased since) the peer that its
    # "received" status went to
    senders = dict(db.execute("SELECT referral_id, peer FROM referrals_v1 WHERE "
                              "direction = 'in'"))
    for key, recipient, record in db.execute(
            "SELECT delivery_key, recipient, record FROM outbox WHERE record_type = "
            "'ReferralStatus'").fetchall():
        status = codec.decode(record)[1]
        if status["state"] == "received" and status["setBy"] == me:
            senders.setdefault(status["referralId"], recipient)
        if key == loop.delivery_key("ReferralStatus", status):  # to a peer: once per peer now
            db.execute("UPDATE outbox SET delivery_key = ? WHERE delivery_key = ?",
                       (loop.queued_key("ReferralStatus", status, recipient), key))
    db.execute("INSERT INTO referrals (sender, referral_id, direction, peer, state, record, "
               "created_ms, updated_ms) SELECT CASE direction WHEN 'out' THEN ? ELSE peer END, "
               "referral_id, direction, peer, state, record, created_ms, updated_ms "
               "FROM referrals_v1", (me,))
    outgoing = {r[0] for r in db.execute("SELECT referral_id FROM referrals_v1 WHERE "
                                         "direction = 'out'")}
    for rid, key in db.execute("SELECT referral_id, partition_key FROM referral_keys_v1"
                               ).fetchall():
        if rid in senders:
            db.execute("INSERT INTO referral_keys VALUES (?, ?, ?)", (senders[rid], rid, key))
    for row in db.execute("SELECT referral_id, state, reason, detail, set_by, at, recorded_ms "
                          "FROM history_v1").fetchall():
        # schema 1 could hold one id once: an id sent is ours, else the sender's
        sender = me if row[0] in outgoing else senders.get(row[0], "")
        db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (sender, *row))
    for row in db.execute("SELECT delivery_key, event_id, record_type, sender, record, "
                          "received_ms FROM inbox_v1").fetchall():
        key, record_type, signer, record = row[0], row[2], row[3], row[4]
        origin = signer
        if record_type == "Referral":
            rid = key.removeprefix("referral:")
            origin = codec.decode(record)[1]["senderAgency"] if record else \
                senders.get(rid, signer)
        db.execute("INSERT INTO inbox (origin, delivery_key, event_id, record_type, sender, "
                   "record, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)", (origin, *row))
    for name in REBUILT:
        db.execute(f"DROP TABLE {name}_v1")


def _roles(db: sqlite3.Connection) -> None:
    """Schema 3 -> 4, inside the caller's transaction: the accounts get a role, a team and a
    disabled time (every one made before is a case worker of the team intake)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(web_users)")}
    for column, kind in (("role", "TEXT NOT NULL DEFAULT 'caseworker'"),
                         ("team", "TEXT NOT NULL DEFAULT 'intake'"),
                         ("disabled_ms", "INTEGER")):
        if column not in have:
            db.execute(f"ALTER TABLE web_users ADD COLUMN {column} {kind}")


def _remember_inbox(db: sqlite3.Connection, remember_max: int) -> None:
    """Schema 2 -> 3, inside the caller's transaction: the replay memory starts with the events
    the inbox accepted within the maximum age of its newest one (newest first, up to the
    bound), each remembered as if sealed when received. An erased referral (record emptied)
    or a record this version cannot decode leaves no digest to remember: its delivery key
    still answers a re-send as a duplicate."""
    rows = db.execute(
        "SELECT sender, origin, event_id, record_type, record, received_ms FROM inbox "
        "WHERE length(record) > 0 AND received_ms >= (SELECT max(received_ms) FROM inbox) - ? "
        "ORDER BY received_ms DESC LIMIT ?", (envelope.MAX_AGE_MS, remember_max)).fetchall()
    for signer, origin, event_id, record_type, data, received_ms in rows:
        try:
            record = codec.decode(data)[1]
        except CodecError:
            continue
        db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                   (signer, origin, event_id, replay.digest(record_type, record),
                    replay.until(received_ms, received_ms)))


def _feed_from_history(db: sqlite3.Connection, me: str) -> None:
    """Schema 4 -> 5, inside the caller's transaction: the timelines of the referrals this
    gateway sent gain what schema 4 kept only under erasures (the withdrawal of the consent
    each relied on, each recipient's confirmation), then the whole history goes into the feed
    in the order it was recorded."""
    withdrawn = {}
    for consent in _decoded(db, "SELECT record FROM consents"):
        at = withdrawn_at(consent)
        if at is not None:
            withdrawn[consent["consentId"]] = at
    sent = {r[0] for r in db.execute("SELECT referral_id FROM referrals WHERE direction = 'out'")}
    for referral in _decoded(db, "SELECT record FROM referrals WHERE direction = 'out'"):
        at = withdrawn.get(referral["consentId"])
        if at is not None and referral["createdAt"] <= at:
            db.execute("INSERT INTO history VALUES (?, ?, 'erasure_requested', "
                       "'ConsentWithdrawn', NULL, ?, ?, ?)",
                       (me, referral["referralId"], me, at, at))
    # (schema 4 kept no reason with a notice)
    for ids, by, at, received in db.execute(
            "SELECT referral_ids, requested_by, at, received_ms FROM erasures WHERE kind = "
            "'Confirmation'").fetchall():
        for rid in dict.fromkeys(x for x in ids.split(",") if x in sent):
            db.execute("INSERT INTO history VALUES (?, ?, 'erasure_confirmed', NULL, NULL, ?, "
                       "?, ?)", (me, rid, by, at, received))
    db.execute("INSERT INTO feed (sender, referral_id, direction, state, reason, set_by, at, "
               "recorded_ms) SELECT sender, referral_id, CASE sender WHEN ? THEN 'out' ELSE "
               "'in' END, state, reason, set_by, at, recorded_ms FROM history "
               "ORDER BY recorded_ms, rowid", (me,))


def _decoded(db: sqlite3.Connection, sql: str) -> list[dict]:
    """The records a query selects, leaving out any this version cannot decode."""
    out = []
    for (data,) in db.execute(sql).fetchall():
        try:
            out.append(codec.decode(data)[1])
        except CodecError:
            continue
    return out
