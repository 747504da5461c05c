"""Tumbling windows by pure calendar arithmetic on given timestamps (UTC, no clock read)."""
from __future__ import annotations

from refmesh.errors import ConfigError
from refmesh.minimise import DAY_MS, _civil

UNITS = ("month", "day", "hour", "minute")
_UNIT_MS = {"day": DAY_MS, "hour": 3_600_000, "minute": 60_000}

Window = tuple[int, int]  # (start, end) epoch ms UTC, end exclusive


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def window_of(ts_ms: int, unit: str = "month") -> Window:
    """The tumbling window holding ``ts_ms``: a calendar month (UTC), day, hour or minute."""
    if unit == "month":
        y, m, _ = _civil(ts_ms // DAY_MS)
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        return _days_from_civil(y, m, 1) * DAY_MS, _days_from_civil(ny, nm, 1) * DAY_MS
    size = _UNIT_MS.get(unit)
    if size is None:
        raise ConfigError(f"window unit {unit!r} is not one of {', '.join(UNITS)}")
    start = ts_ms - ts_ms % size
    return start, start + size


def due(window: Window, now: int, grace_ms: int) -> bool:
    """Whether ``window`` may be released at ``now``: it closed at least ``grace_ms`` ago."""
    return now >= window[1] + grace_ms


def event_time(created_at: int, now: int, max_late_ms: int) -> int:
    """The time an event counts at: its own (a referral's createdAt, a status's at), but never
    in the future and never more than ``max_late_ms`` before ``now`` (a sender's clock or a
    backdated record cannot reopen a window that ``final`` let go)."""
    return min(max(created_at, now - max_late_ms), now)


def final(window: Window, now: int, max_late_ms: int) -> bool:
    """Whether no event can fall into ``window`` any more (see ``event_time``): after its last
    release its counts and release state can be deleted."""
    return window[1] <= now - max_late_ms


def label(window: Window) -> str:
    """2026-09 for a calendar month, 2026-09-21 for a day, else 2026-09-21T10:05 (UTC)."""
    start, end = window
    y, m, d = _civil(start // DAY_MS)
    if window_of(start, "month") == window:
        return f"{y:04d}-{m:02d}"
    if start % DAY_MS == 0 and end - start == DAY_MS:
        return f"{y:04d}-{m:02d}-{d:02d}"
    minutes = start % DAY_MS // 60_000
    return f"{y:04d}-{m:02d}-{d:02d}T{minutes // 60:02d}:{minutes % 60:02d}"


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time to the second, e.g. 2026-09-01T00:00:00Z."""
    y, m, d = _civil(ms // DAY_MS)
    seconds = ms % DAY_MS // 1000
    return (f"{y:04d}-{m:02d}-{d:02d}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
            f"{seconds % 60:02d}Z")
