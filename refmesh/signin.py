"""Sign-in decisions of the gateway's web page: which passwords are too weak to set, and whether
an attempt to sign in is throttled. Pure: the clock is passed in, the list of common passwords
is given by the caller (gateways/web/common-passwords.txt), and the throttle's memory is the
object's own (one per gateway process; it starts empty at each start).

Lockout of one account (five wrong passwords in a row) is kept in the database, counted with a
single UPDATE before the password is checked (gateways/web/auth.py); the throttle here limits
attempts per client address and in all, whatever the usernames tried.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

MIN_PASSWORD = 12
MAX_FAILURES, LOCK_MS = 5, 5 * 60_000  # wrong passwords in a row, then a pause


def normalised(password: str) -> str:
    """How passwords are compared with the list: lower case, without spaces."""
    return "".join(password.lower().split())


def password_problem(password, username: str, common) -> str | None:
    """Why ``password`` cannot be set (in words, to show), or None. ``common``: a set of
    normalised common passwords."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return (f"the password must be at least {MIN_PASSWORD} characters; a passphrase of "
                "several words is easiest to remember")
    flat = normalised(password)
    if flat in common or flat.rstrip("0123456789!@#$%^&*.?_-") in common:
        return "the password is on the list of common passwords; choose another"
    if len(set(flat)) < 4:
        return "the password repeats too few characters; choose another"
    if username and username.lower() in flat:
        return "the password contains the username; choose another"
    return None


@dataclass
class Limits:
    """At most ``per_address`` attempts from one address, and ``overall`` from all of them,
    within any ``window_ms``; at most ``addresses`` addresses remembered."""

    per_address: int = 10
    overall: int = 100
    window_ms: int = 60_000
    addresses: int = 10_000


class Throttle:
    """Sliding-window counters of sign-in attempts, by client address and in all. ``attempt``
    answers whether one more may go ahead, and counts it if so. A throttled attempt runs no
    password check and is not counted. When more addresses are seen than it remembers, the
    one seen longest ago is forgotten (the overall limit still holds)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._by_address: OrderedDict[str, deque[int]] = OrderedDict()
        self._all: deque[int] = deque()

    def _trim(self, times: deque[int], now: int) -> None:
        while times and times[0] <= now - self.limits.window_ms:
            times.popleft()

    def attempt(self, address: str, now: int) -> str | None:
        """None if the attempt may go ahead (and is counted), else what is throttled:
        ``address`` or ``overall``."""
        self._trim(self._all, now)
        times = self._by_address.get(address)
        if times is not None:
            self._trim(times, now)
            if len(times) >= self.limits.per_address:
                return "address"
        if len(self._all) >= self.limits.overall:
            return "overall"
        if times is None:
            while len(self._by_address) >= self.limits.addresses:
                self._by_address.popitem(last=False)
            times = self._by_address[address] = deque()
        else:
            self._by_address.move_to_end(address)
        times.append(now)
        self._all.append(now)
        return None
