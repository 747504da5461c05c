"""When a gateway re-sends an event that has no receipt yet: a re-send timeout that follows the
measured receipt delay, as TCP's follows its round trips (RFC 6298).

A receipt's delay is the time from an entry's first send to its receipt (Karn: an entry sent
twice gives no sample, its receipt could answer either copy). ``observe`` keeps a smoothed
delay and its variation; ``timeout_ms`` is the smoothed delay plus four variations, never below
the operator's ``resend_after_ms`` (the floor: the timeout of a quiet mesh, and of a lost event
in it) nor above ``max_resend_after_ms``. A burst faster than the pipeline makes receipts
slower, so the timeout grows with it, and entries queued behind the burst wait for their
receipts instead of being sent again (each copy is work for the domain and the recipient,
which delays the next events further). ``due`` asks, when an entry's first re-send comes due,
whether its first send is still younger than the timeout now.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """The smoothed receipt delay and its mean deviation, in ms (None: no sample yet)."""

    srtt_ms: float | None = None
    rttvar_ms: float = 0.0


def observe(estimate: Estimate, sample_ms: float) -> Estimate:
    """The estimate after one receipt delay (RFC 6298, section 2: alpha 1/8, beta 1/4)."""
    if sample_ms < 0:
        raise ValueError(f"a receipt delay is never negative, got {sample_ms}")
    if estimate.srtt_ms is None:
        return Estimate(float(sample_ms), sample_ms / 2)
    rttvar = 0.75 * estimate.rttvar_ms + 0.25 * abs(estimate.srtt_ms - sample_ms)
    return Estimate(0.875 * estimate.srtt_ms + 0.125 * sample_ms, rttvar)


def timeout_ms(estimate: Estimate, floor_ms: int, ceiling_ms: int) -> int:
    """The re-send timeout: smoothed delay + 4 deviations, within [floor_ms, ceiling_ms]."""
    if not 1 <= floor_ms <= ceiling_ms:
        raise ValueError(f"need 1 <= floor_ms <= ceiling_ms, got {floor_ms} and {ceiling_ms}")
    if estimate.srtt_ms is None:
        return floor_ms
    return int(min(ceiling_ms, max(floor_ms, estimate.srtt_ms + 4 * estimate.rttvar_ms)))


def due(first_sent_ms: int | None, now_ms: int, timeout: int) -> int | None:
    """None if the entry is due for its first re-send now; else the time it will be (its first
    send plus the timeout now). ``first_sent_ms`` None (not sent by this process: after a
    restart): due, as scheduled."""
    if first_sent_ms is None or now_ms - first_sent_ms >= timeout:
        return None
    return first_sent_ms + timeout
