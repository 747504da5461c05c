"""The change feed for case systems (``GET /v1/events``): its entries, its cursor, and the bell
that wakes a long poll.

The feed is the journal of every referral's timeline at this gateway: a referral sent or
received, each status (set here or by the peer), and the erasure of its copies asked or
confirmed. The store writes one row per entry in the transaction of the change it records
(``gateways/schema.py``, table ``feed``), numbered by a sequence that only grows; the cursor is
that number, so it survives restarts. Entries carry ids, states and reason codes, never case
data: the case system reads the referral itself (``GET /v1/referrals/{id}?sender=...``), under
its own token and whatever the gateway lets it see.

``Bell`` is rung by the store (from any thread: the inbox, the relay, the API) after each
commit that added entries, and wakes the requests waiting on it (in the API's event loop).
"""
from __future__ import annotations

import asyncio
import re
import threading

from refmesh.errors import RecordError

#: the longest a request may wait for a new entry (the ``wait`` parameter), in seconds
MAX_WAIT_S = 30
#: entries per answer, unless the ``limit`` parameter says fewer (or more, up to MAX_LIMIT)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
_CURSOR = re.compile(r"0|[1-9][0-9]{0,17}")
_SECONDS = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3})?")
_COUNT = re.compile(r"[1-9][0-9]{0,5}")


def kind(direction: str, state: str) -> str:
    """What an entry tells a case system, in one word: referral.received (a new referral
    arrived here), referral.sent (a case worker here sent one), erasure.requested (a copy's
    erasure was asked: here, the copy received is erased already; for a referral sent, the
    consent it relied on was withdrawn here), erasure.confirmed (the recipient erased its
    copy), else status.changed."""
    if state == "erasure_requested":
        return "erasure.requested"
    if state == "erasure_confirmed":
        return "erasure.confirmed"
    if (direction, state) == ("in", "received"):
        return "referral.received"
    if (direction, state) == ("out", "requested"):
        return "referral.sent"
    return "status.changed"


def entry(row: dict) -> dict:
    """A feed row as the API shows it."""
    return {"cursor": str(row["seq"]), "kind": kind(row["direction"], row["state"]),
            "sender": row["sender"], "referral_id": row["referral_id"],
            "direction": row["direction"], "state": row["state"], "reason": row["reason"],
            "set_by": row["set_by"], "at": row["at"]}


def cursor(text: str | None) -> int:
    """The position ``after`` names (absent: 0, the start); RecordError naming ``after``."""
    if text is None:
        return 0
    if not _CURSOR.fullmatch(text):
        raise RecordError("after", "expected a cursor from this feed (the `cursor` of an "
                                   "entry or the `next` of an answer), or 0 for the start")
    return int(text)


def seconds(text: str | None) -> float:
    """How long to wait (absent: 0, answer at once); RecordError naming ``wait``."""
    if text is None:
        return 0.0
    if not _SECONDS.fullmatch(text) or float(text) > MAX_WAIT_S:
        raise RecordError("wait", f"expected seconds from 0 to {MAX_WAIT_S}")
    return float(text)


def limit(text: str | None) -> int:
    """How many entries at most (absent: DEFAULT_LIMIT); RecordError naming ``limit``."""
    if text is None:
        return DEFAULT_LIMIT
    if not _COUNT.fullmatch(text) or int(text) > MAX_LIMIT:
        raise RecordError("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(text)


class Bell:
    """Wakes the coroutines waiting for the feed to grow. ``rung`` counts the rings: a waiter
    reads it before it reads the feed and waits only if no ring came since, so that an entry
    committed between the read and the wait is never missed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()
        self.rung = 0
        self.closed = False

    def ring(self) -> None:
        """Wake every waiter (from any thread)."""
        with self._lock:
            self.rung += 1
            waiting, self._waiting = self._waiting, set()
        for loop, future in waiting:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                pass

    def close(self) -> None:
        """Wake every waiter now and make later waits return at once (the server stops)."""
        self.closed = True
        self.ring()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once the bell rang after ``seen`` rings, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self.rung != seen or self.closed:
                return
            self._waiting.add((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiting.discard((loop, future))


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
