"""Case workers' accounts and sessions, kept by the gateway in its own SQLite database.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard; its RFC 9106 low-memory profile
by default), never stored or logged. A session is a random token in an HttpOnly cookie; the
database keeps only its SHA-256, so a copy of the database opens no session. Sessions end when
unused for ``idle_ms``, after ``max_ms`` in any case, at sign-out, when the password is reset,
and when the account is disabled (at once: every request looks the account up). Each session
has its own CSRF token (the synchronizer token of every form).

Signing in (``verify``) counts the attempt before the password is checked, in one UPDATE that
also refuses a paused or disabled account: however many guesses arrive at once, no more than
``MAX_FAILURES`` passwords are checked before the pause. An unknown, paused or disabled account
and a wrong password get the same answer, after the same Argon2 work (a check against a hash
made by the same hasher).

The tables are in ``gateways/schema.py`` (schema 4); this module opens its own connection to the
same file (WAL lets both write), so `refmesh users add` works while the gateway runs. Changes to
accounts are written to the record of access (gateways/access.py) with who made them.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateways import access
from gateways.schema import SchemaError, open_schema
from gateways.store import connect
from refmesh import permissions, signin
from refmesh.errors import ConfigError, MeshError
from refmesh.signin import LOCK_MS, MAX_FAILURES, MIN_PASSWORD

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
LANGUAGES = ("en", "ar")
COMMON_FILE = Path(__file__).resolve().parent / "common-passwords.txt"

__all__ = ["Accounts", "AccountError", "Session", "LANGUAGES", "MIN_PASSWORD", "MAX_FAILURES",
           "LOCK_MS", "check_username", "check_password", "common_passwords"]

# Count the attempt first (one statement, so parallel attempts cannot all read the same count):
# an account whose pause ran out starts a new count; the attempt that reaches MAX_FAILURES
# pauses the account until it is checked right. No row: unknown, paused or disabled.
RESERVE = (
    "UPDATE web_users SET "
    "failures = CASE WHEN failures >= :max THEN 1 ELSE failures + 1 END, "
    "locked_until_ms = CASE WHEN (CASE WHEN failures >= :max THEN 1 ELSE failures + 1 END) "
    ">= :max THEN :now + :lock ELSE locked_until_ms END "
    "WHERE username = :user AND disabled_ms IS NULL AND "
    "(failures < :max OR locked_until_ms <= :now) RETURNING password_hash")


class AccountError(MeshError, ValueError):
    """A username or password that cannot be used, or an unknown account; says what to do."""


@dataclass(frozen=True)
class Session:
    token: str
    username: str
    csrf: str
    language: str
    flash: str | None
    role: str = permissions.CASEWORKER
    team: str = ""

    @property
    def principal(self) -> permissions.Principal:
        return permissions.Principal(self.username, self.role, self.team)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_COMMON: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (normalised), read once."""
    global _COMMON
    if _COMMON is None:
        _COMMON = frozenset(signin.normalised(line) for line in
                            COMMON_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    return _COMMON


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise AccountError(f"username {username!r} must be 2-32 characters: lower-case letters, "
                           "digits, dot, dash or underscore, starting with a letter or digit")
    return username


def check_password(password: str, username: str = "") -> str:
    problem = signin.password_problem(password, username, common_passwords())
    if problem is not None:
        raise AccountError(problem)
    return password


def _checked(check, value):
    try:
        return check(value)
    except ValueError as exc:
        raise AccountError(str(exc)) from None


class Accounts:
    """Users, sessions and erasure acknowledgements in the gateway database at ``path``.
    ``agency``: the gateway's, when the accounts are opened before the gateway ever ran on the
    file (`refmesh users`); None where the gateway's store has opened it already."""

    def __init__(self, path: str, hasher: PasswordHasher | None = None,
                 agency: str | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.RLock()
        try:
            self._db = connect(path)
            open_schema(self._db, agency, path)
        except (sqlite3.Error, SchemaError) as exc:
            raise ConfigError(f"cannot open the gateway database {path} for web accounts: "
                              f"{exc}; check the path and its permissions") from exc
        # Checking a password against this when the account is unknown, paused or disabled is
        # the same Argon2 work as a real check (same hasher, same parameters).
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args=()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _write(self, sql: str, args=()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _change(self, username: str, sql: str, args, by: str, action: str, now: int,
                end_sessions: bool = False) -> None:
        """One change to an existing account, its record of access, and (``end_sessions``)
        the end of its sessions, in one transaction."""
        with self._lock, access.transaction(self._db) as db:
            if not db.execute(sql, args).rowcount:
                raise AccountError(f"no user {username}; `refmesh users list` lists them")
            if end_sessions:
                db.execute("DELETE FROM web_sessions WHERE username = ?", (username,))
            access.record(db, now, by, action, "account", username)

    # --- users (the admin command and the administrator's page) --------------------------

    def add_user(self, username: str, password: str, now: int, language: str = "en",
                 role: str = permissions.CASEWORKER, team: str = permissions.DEFAULT_TEAM,
                 by: str = "cli") -> None:
        check_username(username)
        check_password(password, username)
        _checked(permissions.check_role, role)
        _checked(permissions.check_team, team)
        if language not in LANGUAGES:
            raise AccountError(f"language must be one of {', '.join(LANGUAGES)}")
        try:
            with self._lock, access.transaction(self._db) as db:
                db.execute("INSERT INTO web_users (username, password_hash, language, "
                           "created_ms, password_changed_ms, role, team) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?)", (username, self.hasher.hash(password),
                                                     language, now, now, role, team))
                access.record(db, now, by, f"account-add:{role}", "account", username)
        except sqlite3.IntegrityError:
            raise AccountError(f"user {username} exists already; use `refmesh users "
                               "reset-password` to give it a new password") from None

    def reset_password(self, username: str, password: str, now: int, by: str = "cli") -> None:
        """Set a new password, lift a pause, and end every session of the user."""
        check_password(password, username)
        self._change(username, "UPDATE web_users SET password_hash = ?, failures = 0, "
                     "locked_until_ms = 0, password_changed_ms = ? WHERE username = ?",
                     (self.hasher.hash(password), now, username), by, "account-password",
                     now, end_sessions=True)

    def set_role(self, username: str, role: str, now: int, by: str = "cli") -> None:
        _checked(permissions.check_role, role)
        self._change(username, "UPDATE web_users SET role = ? WHERE username = ?",
                     (role, username), by, f"account-role:{role}", now)

    def set_team(self, username: str, team: str, now: int, by: str = "cli") -> None:
        _checked(permissions.check_team, team)
        self._change(username, "UPDATE web_users SET team = ? WHERE username = ?",
                     (team, username), by, "account-team", now)

    def disable(self, username: str, now: int, by: str = "cli") -> None:
        """Disable the account; its sessions end at once."""
        self._change(username, "UPDATE web_users SET disabled_ms = coalesce(disabled_ms, ?) "
                     "WHERE username = ?", (now, username), by, "account-disable", now,
                     end_sessions=True)

    def enable(self, username: str, now: int, by: str = "cli") -> None:
        self._change(username, "UPDATE web_users SET disabled_ms = NULL, failures = 0, "
                     "locked_until_ms = 0 WHERE username = ?", (username,), by,
                     "account-enable", now)

    def usernames(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT username FROM web_users ORDER BY 1")]

    def users(self) -> list[dict]:
        with self._lock:
            cur = self._db.execute("SELECT username, role, team, language, disabled_ms, "
                                   "created_ms FROM web_users ORDER BY username")
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def set_language(self, username: str, language: str) -> None:
        if language in LANGUAGES:
            self._write("UPDATE web_users SET language = ? WHERE username = ?",
                        (language, username))

    # --- signing in -----------------------------------------------------------------------

    def verify(self, username: str, password: str, now: int) -> bool:
        """Whether ``password`` is the password of the active, unpaused account ``username``.
        Every answer runs one Argon2 check; refusals say nothing of why."""
        with self._lock:
            row = self._db.execute(RESERVE, {"max": MAX_FAILURES, "now": now, "lock": LOCK_MS,
                                             "user": username}).fetchone()
        if row is None:  # unknown, paused or disabled: the same work, the same answer
            self._check(self._dummy, password)
            return False
        stored = row[0]
        if not self._check(stored, password):
            return False  # counted already
        with self._lock:
            self._db.execute("UPDATE web_users SET failures = 0, locked_until_ms = 0 "
                             "WHERE username = ?", (username,))
            if self.hasher.check_needs_rehash(stored):
                self._db.execute("UPDATE web_users SET password_hash = ? WHERE username = ?",
                                 (self.hasher.hash(password), username))
        return True

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    # --- sessions -------------------------------------------------------------------------

    def start_session(self, username: str, now: int) -> Session:
        """A new session with a new token: never one the browser brought (session fixation)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._write("INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?, NULL)",
                    (_digest(token), username, csrf, now, now))
        language, role, team = self._one("SELECT language, role, team FROM web_users WHERE "
                                         "username = ?", (username,))
        return Session(token, username, csrf, language, None, role, team)

    def session(self, token: str | None, now: int, idle_ms: int, max_ms: int) -> Session | None:
        """The live session of ``token`` (its last use moved to ``now``), else None; an
        expired session, or one of a disabled account, is deleted. The role and team are read
        at each request: a change applies at once."""
        if not token:
            return None
        key = _digest(token)
        with self._lock:
            row = self._one("SELECT s.username, s.csrf, s.created_ms, s.seen_ms, s.flash, "
                            "u.language, u.role, u.team, u.disabled_ms FROM web_sessions s "
                            "JOIN web_users u ON u.username = s.username "
                            "WHERE s.token_hash = ?", (key,))
            if row is None:
                return None
            username, csrf, created, seen, flash, language, role, team, disabled = row
            if disabled is not None or now - seen >= idle_ms or now - created >= max_ms:
                self._write("DELETE FROM web_sessions WHERE token_hash = ?", (key,))
                return None
            self._write("UPDATE web_sessions SET seen_ms = ?, flash = NULL "
                        "WHERE token_hash = ?", (now, key))
        return Session(token, username, csrf, language, flash, role, team)

    def end_session(self, token: str) -> None:
        self._write("DELETE FROM web_sessions WHERE token_hash = ?", (_digest(token),))

    def end_expired(self, now: int, idle_ms: int, max_ms: int) -> int:
        return self._write("DELETE FROM web_sessions WHERE seen_ms <= ? OR created_ms <= ?",
                           (now - idle_ms, now - max_ms))

    def flash(self, token: str, message: str) -> None:
        """Keep one short message (an i18n key and ids, never case data) for the next page."""
        self._write("UPDATE web_sessions SET flash = ? WHERE token_hash = ?",
                    (message, _digest(token)))

    # --- erasure acknowledgements ---------------------------------------------------------

    def acknowledge_erasure(self, notice_id: str, username: str, now: int) -> None:
        self._write("INSERT OR IGNORE INTO web_erasure_acks VALUES (?, ?, ?)",
                    (notice_id, username, now))

    def erasure_acks(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {n: (u, at) for n, u, at in
                    self._db.execute("SELECT notice_id, username, at FROM web_erasure_acks")}

    # --- API tokens (`refmesh users token-*`) ---------------------------------------------

    def add_token(self, name: str, scopes, now: int, by: str = "cli") -> str:
        """A new API token with ``scopes``; returns it (shown once: only its hash is kept)."""
        check_username(name)
        chosen = _checked(permissions.check_scopes, scopes)
        token = secrets.token_urlsafe(32)
        try:
            with self._lock, access.transaction(self._db) as db:
                access.add_token(db, name, chosen, token, now)
                access.record(db, now, by, f"token-add:{'+'.join(sorted(chosen))}", "token",
                              name)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        return token

    def revoke_token(self, name: str, now: int, by: str = "cli") -> None:
        try:
            with self._lock, access.transaction(self._db) as db:
                access.revoke_token(db, name, now)
                access.record(db, now, by, "token-revoke", "token", name)
        except ValueError as exc:
            raise AccountError(str(exc)) from None

    def tokens(self) -> list[dict]:
        with self._lock:
            return access.tokens(self._db)

    # --- the record of access (`refmesh access export`) -----------------------------------

    def export_access(self, since, now: int, by: str = "cli"):
        """(entries, head, broken) of the whole record, after recording this export in it (so
        the export covers its own entry)."""
        with self._lock:
            with access.transaction(self._db) as db:
                access.record(db, now, by, "export", "record", "access")
            return access.check(self._db, since)
