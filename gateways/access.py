"""The gateway database's tables of who may see what and who did what (schema 4): API tokens,
assignments of referrals, authors of referrals and consents, and the record of access.

Functions here take a SQLite connection; those that write expect to run inside the caller's
write transaction (``Store.write()``, or ``transaction`` below for a connection of one's own),
so that a change and its record of access commit together or not at all. The record of access
is appended under SQLite's write lock, so the gateway and `refmesh` commands writing to the same
file extend one chain (refmesh.accesslog), never two.
"""
from __future__ import annotations

import hashlib
import sqlite3
from contextlib import contextmanager

from refmesh import accesslog
from refmesh.permissions import Facts, Principal, SCOPES

#: the name of the agency's token from the environment (``api_token_env``): every scope
AGENCY_TOKEN = "agency"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@contextmanager
def transaction(db: sqlite3.Connection):
    """A write transaction on a connection in autocommit mode (as ``store.connect`` opens)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# --- the record of access ------------------------------------------------------------------------

def head(db: sqlite3.Connection) -> accesslog.Head:
    row = db.execute("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1").fetchone()
    return accesslog.Head() if row is None else accesslog.Head(row[0] + 1, row[1])


def record(db: sqlite3.Connection, now: int, actor: str, action: str, kind: str, ref: str,
           sender: str = "") -> dict:
    """Append one entry (inside the caller's write transaction)."""
    item, after = accesslog.entry(head(db), at=now, actor=actor, action=action, kind=kind,
                                  ref=ref, sender=sender)
    db.execute("INSERT INTO access_log (seq, at, actor, action, kind, sender, ref, prev, hash) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (item["seq"], now, actor, action, kind, sender, ref, item["prev"], after.hash))
    return item


def entries(db: sqlite3.Connection, after: int = -1, limit: int | None = None) -> list[dict]:
    """Entries with seq > ``after``, oldest first (each with its stored ``hash``)."""
    cur = db.execute("SELECT seq, at, actor, action, kind, sender, ref, prev, hash FROM "
                     "access_log WHERE seq > ? ORDER BY seq LIMIT ?",
                     (after, -1 if limit is None else limit))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def newest(db: sqlite3.Connection, limit: int) -> list[dict]:
    """The ``limit`` newest entries, newest first."""
    cur = db.execute("SELECT seq, at, actor, action, kind, sender, ref FROM access_log "
                     "ORDER BY seq DESC LIMIT ?", (limit,))
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def check(db: sqlite3.Connection, since: accesslog.Head | None = None
          ) -> tuple[list[dict], accesslog.Head, accesslog.Broken | None]:
    """Every entry, the head they reach and the first broken link (the stored hash of each
    entry must be the hash of what it holds, and the next entry must name it)."""
    rows = entries(db)
    chain = [{f: r[f] for f in accesslog.FIELDS} for r in rows]
    reached, broken = accesslog.verify(chain, since)
    for index, r in enumerate(rows):
        if broken is not None and index >= broken.index:
            break
        if r["hash"] != accesslog.digest(chain[index]):
            return rows, reached, accesslog.Broken(index, r["seq"], "its stored hash does not "
                                                   "match what it holds (it was changed)")
    return rows, reached, broken


# --- API tokens ------------------------------------------------------------------------------------

def token_principal(db: sqlite3.Connection, token: str) -> Principal | None:
    """The principal of a token kept in the database (not revoked), else None."""
    row = db.execute("SELECT name, scopes FROM api_tokens WHERE token_hash = ? AND "
                     "revoked_ms IS NULL", (token_hash(token),)).fetchone()
    if row is None:
        return None
    return Principal(row[0], scopes=frozenset(s for s in row[1].split(",") if s in SCOPES))


def tokens(db: sqlite3.Connection) -> list[dict]:
    cur = db.execute("SELECT name, scopes, created_ms, revoked_ms FROM api_tokens ORDER BY name")
    return [{"name": n, "scopes": s.split(","), "created_ms": c, "revoked_ms": r}
            for n, s, c, r in cur.fetchall()]


# --- authors and assignments -------------------------------------------------------------------

def set_author(db: sqlite3.Connection, kind: str, ref: str, actor: str) -> None:
    db.execute("INSERT OR IGNORE INTO authors (kind, ref, actor) VALUES (?, ?, ?)",
               (kind, ref, actor))


def author(db: sqlite3.Connection, kind: str, ref: str) -> str | None:
    row = db.execute("SELECT actor FROM authors WHERE kind = ? AND ref = ?",
                     (kind, ref)).fetchone()
    return None if row is None else row[0]


FACTS = ("SELECT r.sender, r.referral_id, r.direction, au.actor, a.username, a.team "
         "FROM referrals r LEFT JOIN assignments a ON a.sender = r.sender AND "
         "a.referral_id = r.referral_id LEFT JOIN authors au ON au.kind = 'referral' AND "
         "r.direction = 'out' AND au.ref = r.referral_id")


def facts(db: sqlite3.Connection, direction: str | None = None
          ) -> dict[tuple[str, str], Facts]:
    """(sender, referral id) -> what decides who sees it, for every referral (of a
    direction)."""
    sql, args = (FACTS, ()) if direction is None else (FACTS + " WHERE r.direction = ?",
                                                         (direction,))
    return {(s, rid): Facts(d, au, u, t) for s, rid, d, au, u, t in db.execute(sql, args)}


def facts_of(db: sqlite3.Connection, sender: str, referral_id: str) -> Facts | None:
    row = db.execute(FACTS + " WHERE r.sender = ? AND r.referral_id = ?",
                     (sender, referral_id)).fetchone()
    return None if row is None else Facts(*row[2:])


def assign(db: sqlite3.Connection, sender: str, referral_id: str, username: str | None,
           team: str | None, by: str, now: int) -> None:
    db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender, "
               "referral_id) DO UPDATE SET username = excluded.username, team = excluded.team, "
               "assigned_by = excluded.assigned_by, assigned_ms = excluded.assigned_ms",
               (sender, referral_id, username, team, by, now))


def assignment(db: sqlite3.Connection, sender: str, referral_id: str) -> dict | None:
    row = db.execute("SELECT username, team, assigned_by, assigned_ms FROM assignments WHERE "
                     "sender = ? AND referral_id = ?", (sender, referral_id)).fetchone()
    return None if row is None else dict(zip(("username", "team", "by", "at"), row))


def teams(db: sqlite3.Connection) -> list[str]:
    """The teams named by accounts or assignments."""
    return [r[0] for r in db.execute(
        "SELECT team FROM web_users WHERE team != '' UNION SELECT team FROM assignments WHERE "
        "team IS NOT NULL AND team != '' ORDER BY 1")]


def workers(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(username, team) of the case workers and supervisors that are not disabled."""
    return list(db.execute("SELECT username, team FROM web_users WHERE disabled_ms IS NULL AND "
                           "role IN ('caseworker', 'supervisor') ORDER BY username"))


def add_token(db: sqlite3.Connection, name: str, scopes: frozenset[str], token: str,
              now: int) -> None:
    """Keep a new token's hash (inside the caller's write transaction)."""
    if name == AGENCY_TOKEN:
        raise ValueError(f"the token name {AGENCY_TOKEN!r} is the agency's token from the "
                         "environment; choose another")
    try:
        db.execute("INSERT INTO api_tokens (name, token_hash, scopes, created_ms) VALUES "
                   "(?, ?, ?, ?)", (name, token_hash(token), ",".join(sorted(scopes)), now))
    except sqlite3.IntegrityError:
        raise ValueError(f"a token named {name} exists already; revoke it or choose another "
                         "name") from None


def revoke_token(db: sqlite3.Connection, name: str, now: int) -> None:
    changed = db.execute("UPDATE api_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms "
                         "IS NULL", (now, name)).rowcount
    if not changed:
        raise ValueError(f"no working token named {name}; `refmesh users token-list` lists "
                         "them")
