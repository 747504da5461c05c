"""What an agent does with the next event of a partition, given the offset it expects there.

faust-streaming 0.15 can hand a worker an event further along a partition than the group's
committed position after a (re)assignment: it starts fetching a newly assigned partition before
it seeks it to the committed offset, drops what arrives while its flow is suspended, and still
advances its read position past what it dropped; when the group has no committed offset yet,
aiokafka does not seek at all. The dropped events would never be handled (measured: 26 and 28
events of two partitions after one restart; docs/policy-domains.md, "Restarts"). So the agent
keeps, per assigned partition of its source topic, the next offset it expects (after an
assignment: the group's committed offset, or the partition's first offset when nothing was
committed) and asks ``next_step`` what to do with each event:

- ``Handle``: the expected event; handle it, then expect the one after it;
- ``Reread(start, stop)``: events ``start .. stop-1`` were never handed to the agent: read them
  from the broker and handle them first, then this one (an offset of that range that holds no
  event, such as a transaction marker or a compacted record, is simply not found);
- ``Done``: an event before the expected one: it was handled already (in this assignment, or
  before the committed position), so it is acknowledged and not handled twice.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Handle:
    """Handle the event; the next expected offset is the one after it."""


@dataclass(frozen=True)
class Reread:
    """Read offsets ``start`` to ``stop - 1`` of the partition and handle them before this
    event (``stop`` is the event's own offset)."""

    start: int
    stop: int


@dataclass(frozen=True)
class Done:
    """Handled already: acknowledge it without handling it again."""


Step = Handle | Reread | Done


def next_step(expected: int, seen: int) -> Step:
    """What to do with the event at offset ``seen`` when offset ``expected`` comes next."""
    if expected < 0 or seen < 0:
        raise ValueError(f"offsets are never negative (expected {expected}, seen {seen})")
    if seen == expected:
        return Handle()
    if seen > expected:
        return Reread(expected, seen)
    return Done()


def expected_after_assignment(committed: int | None, first: int) -> int:
    """The offset expected first after an assignment: the group's committed offset, or when it
    has none (or one below what the broker still holds), the partition's first offset ``first``
    (the agents read a new partition from the earliest event, never from the end)."""
    if first < 0:
        raise ValueError(f"a partition's first offset is never negative, got {first}")
    if committed is None or committed < first:
        return first
    return committed


def commit_now(handled: int, oldest_ms: int, now_ms: int, more_waiting: bool, *,
               max_events: int, max_ms: int) -> bool:
    """Group commit: whether the agent commits the ``handled`` events it has handled since its
    last commit (the oldest of them handled at ``oldest_ms``) now, or handles the next one
    first. Under ``exactly_once`` an event's records and offset are in its partition's open
    transaction until the commit, so several events may share one commit without any of them
    being seen half done or twice: they commit together or not at all. It commits as soon as
    no event is waiting (an event alone waits for nobody: no added latency), after
    ``max_events`` events, or once the oldest has waited ``max_ms``."""
    if handled < 0 or max_events < 1 or max_ms < 0:
        raise ValueError(f"handled must be >= 0, max_events >= 1 and max_ms >= 0 (got "
                         f"{handled}, {max_events}, {max_ms})")
    if handled == 0:
        return False
    return not more_waiting or handled >= max_events or now_ms - oldest_ms >= max_ms
