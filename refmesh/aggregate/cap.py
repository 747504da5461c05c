"""The cap that makes the sensitivity true: how much one person can add to a window's counts.

Per person and window, the domain counts at most ``m`` events of each stage (``STAGE_OF``): m
decisions on referrals (forwarded or refused), m responses (accepted or rejected) and m ends
(completed or failed); each counted event adds one to one cell. So one person moves a window's
counts by at most 3m in L1 and sqrt(3) m in L2 (``privacy.sensitivity``), whatever they did.

The cap is kept in the domain's ``counted`` table as m slots per (person, window, stage): a
slot is taken when an event is counted, and an event finding every slot taken is not counted.
A slot's key is a keyed hash of the person's partition key (the keyed hash of the signed
subject id, which the domain checked), the window and the stage; its value is the window start,
so the release job deletes the slots with their window (and refmesh.statehead groups them by
window). The person is their pseudonymous subject id: a person known to the domain under two
subject ids counts as two.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable

from refmesh.aggregate.cells import DECISIONS, OUTCOMES
from refmesh.aggregate.privacy import STAGES

CAP_LABEL = b"refmesh-cap-v1\0"
STAGE_OF = {**dict.fromkeys(DECISIONS, "decision"), "accepted": "response",
            "rejected": "response", "completed": "end", "failed": "end"}
assert set(STAGE_OF) == {*DECISIONS, *OUTCOMES} and set(STAGE_OF.values()) == set(STAGES)


def slot_keys(secret: bytes, person: bytes, window_start: int, stage: str,
              max_per_person: int) -> list[bytes]:
    """The counted table's keys of one person's ``max_per_person`` slots for ``stage`` in the
    window starting at ``window_start``."""
    return list(_slots(secret, person, window_start, stage, max_per_person))


def _slots(secret: bytes, person: bytes, window_start: int, stage: str, max_per_person: int):
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    name = CAP_LABEL + person + b"\0" + f"{window_start}\0{stage}\0".encode()
    for i in range(max_per_person):
        yield hmac.digest(secret, name + str(i).encode(), "sha256").hex()[:32].encode()


def free_slot(read: Callable[[bytes], bytes | None], secret: bytes, person: bytes,
              window_start: int, stage: str, max_per_person: int) -> bytes | None:
    """The first of the person's slots not taken (the key to write with the count), or None
    when all ``max_per_person`` are: the event is then not counted. (The keys are derived one
    at a time: the first is usually free.)"""
    for key in _slots(secret, person, window_start, stage, max_per_person):
        if read(key) is None:
            return key
    return None
