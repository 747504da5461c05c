"""Case workers' accounts and sessions, kept by the gateway in its own SQLite database.

Passwords are hashed with Argon2id (argon2-cffi, memory-hard; its RFC 9106 low-memory profile
by default), never stored or logged. A session is a random token in an HttpOnly cookie; the
database keeps only its SHA-256, so a copy of the database opens no session. Sessions end when
unused for ``idle_ms``, after ``max_ms`` in any case, at sign-out, and when the password is
reset. Each session has its own CSRF token (the synchronizer token of every form).

The gateway's ``Store`` owns the referral tables; this module opens its own connection to the
same file (WAL lets both write), so `refmesh users add` works while the gateway runs.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateways.store import connect
from refmesh.errors import ConfigError, MeshError

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD = 12
LANGUAGES = ("en", "ar")
MAX_FAILURES, LOCK_MS = 5, 5 * 60_000  # consecutive wrong passwords, then a pause

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,      -- Argon2id, PHC string
    language TEXT NOT NULL,           -- en or ar: the page's language for this user
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL
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
"""


class AccountError(MeshError, ValueError):
    """A username or password that cannot be used, or an unknown account; says what to do."""


@dataclass(frozen=True)
class Session:
    token: str
    username: str
    csrf: str
    language: str
    flash: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise AccountError(f"username {username!r} must be 2-32 characters: lower-case letters, "
                           "digits, dot, dash or underscore, starting with a letter or digit")
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters; a "
                           "passphrase of several words is easiest to remember")
    return password


class Accounts:
    """Users, sessions and erasure acknowledgements in the gateway database at ``path``."""

    def __init__(self, path: str, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._lock = threading.RLock()
        try:
            self._db = connect(path)
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the gateway database {path} for web accounts: "
                              f"{exc}; check the path and its permissions") from exc
        # Verifying against this when the user is unknown takes as long as a real check, so
        # the time of an answer does not tell which usernames exist.
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

    # --- users (the admin command) --------------------------------------------------------

    def add_user(self, username: str, password: str, now: int, language: str = "en") -> None:
        check_username(username)
        check_password(password)
        if language not in LANGUAGES:
            raise AccountError(f"language must be one of {', '.join(LANGUAGES)}")
        try:
            self._write("INSERT INTO web_users (username, password_hash, language, created_ms, "
                        "password_changed_ms) VALUES (?, ?, ?, ?, ?)",
                        (username, self.hasher.hash(password), language, now, now))
        except sqlite3.IntegrityError:
            raise AccountError(f"user {username} exists already; use `refmesh users "
                               "reset-password` to give it a new password") from None

    def reset_password(self, username: str, password: str, now: int) -> None:
        """Set a new password, lift a lock, and end every session of the user."""
        check_password(password)
        with self._lock:
            changed = self._write("UPDATE web_users SET password_hash = ?, failures = 0, "
                                  "locked_until_ms = 0, password_changed_ms = ? "
                                  "WHERE username = ?", (self.hasher.hash(password), now,
                                                         username))
            if not changed:
                raise AccountError(f"no user {username}; create it with `refmesh users add`")
            self._write("DELETE FROM web_sessions WHERE username = ?", (username,))

    def usernames(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT username FROM web_users ORDER BY 1")]

    def set_language(self, username: str, language: str) -> None:
        if language in LANGUAGES:
            self._write("UPDATE web_users SET language = ? WHERE username = ?",
                        (language, username))

    # --- signing in -----------------------------------------------------------------------

    def verify(self, username: str, password: str, now: int) -> str:
        """"ok", "wrong" (unknown user or wrong password: the same answer) or "locked"."""
        row = self._one("SELECT password_hash, failures, locked_until_ms FROM web_users "
                        "WHERE username = ?", (username,))
        if row is None:
            self._check(self._dummy, password)
            return "wrong"
        stored, failures, locked_until = row
        if now < locked_until:
            return "locked"
        if not self._check(stored, password):
            failures += 1
            lock = now + LOCK_MS if failures >= MAX_FAILURES else 0
            self._write("UPDATE web_users SET failures = ?, locked_until_ms = ? "
                        "WHERE username = ?", (0 if lock else failures, lock, username))
            return "locked" if lock else "wrong"
        self._write("UPDATE web_users SET failures = 0 WHERE username = ?", (username,))
        if self.hasher.check_needs_rehash(stored):
            self._write("UPDATE web_users SET password_hash = ? WHERE username = ?",
                        (self.hasher.hash(password), username))
        return "ok"

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
        language = self._one("SELECT language FROM web_users WHERE username = ?",
                             (username,))[0]
        return Session(token, username, csrf, language, None)

    def session(self, token: str | None, now: int, idle_ms: int, max_ms: int) -> Session | None:
        """The live session of ``token`` (its last use moved to ``now``), else None; an
        expired session is deleted."""
        if not token:
            return None
        key = _digest(token)
        with self._lock:
            row = self._one("SELECT s.username, s.csrf, s.created_ms, s.seen_ms, s.flash, "
                            "u.language FROM web_sessions s JOIN web_users u "
                            "ON u.username = s.username WHERE s.token_hash = ?", (key,))
            if row is None:
                return None
            username, csrf, created, seen, flash, language = row
            if now - seen >= idle_ms or now - created >= max_ms:
                self._write("DELETE FROM web_sessions WHERE token_hash = ?", (key,))
                return None
            self._write("UPDATE web_sessions SET seen_ms = ?, flash = NULL "
                        "WHERE token_hash = ?", (now, key))
        return Session(token, username, csrf, language, flash)

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
