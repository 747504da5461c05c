"""The agent's offset-gap decision (refmesh.offsets): handle the expected event, re-read what
was never handed over, acknowledge what was handled already."""
from __future__ import annotations

import pytest

from refmesh.offsets import Done, Handle, Reread, expected_after_assignment, next_step


def test_the_expected_event_is_handled():
    assert next_step(0, 0) == Handle()
    assert next_step(41, 41) == Handle()


def test_a_gap_is_reread_from_the_expected_offset_up_to_the_event():
    # seen after a restart: committed 128, faust handed over 128, 129, then 159
    assert next_step(130, 159) == Reread(130, 159)
    assert next_step(0, 1) == Reread(0, 1)


def test_an_event_before_the_expected_one_was_handled_already():
    assert next_step(130, 129) == Done()
    assert next_step(130, 0) == Done()


def test_a_stream_with_a_gap_is_handled_once_each_in_order():
    """Feeding offsets as faust delivered them after a restart: each offset is handled once,
    in order, nothing is skipped; what came again is only acknowledged."""
    delivered = [128, 129, 159, 160, 128, 129, 161]
    expected, handled, acknowledged = 128, [], []
    for offset in delivered:
        step = next_step(expected, offset)
        if isinstance(step, Reread):
            handled.extend(range(step.start, step.stop))  # a broker holding every offset
        if isinstance(step, Done):
            acknowledged.append(offset)
            continue
        handled.append(offset)
        expected = offset + 1
    assert handled == list(range(128, 162))
    assert acknowledged == [128, 129]


@pytest.mark.parametrize("expected, seen", [(-1, 0), (0, -1)])
def test_negative_offsets_are_refused(expected, seen):
    with pytest.raises(ValueError, match="never negative"):
        next_step(expected, seen)


@pytest.mark.parametrize("committed, first, expected", [
    (None, 0, 0),      # a new group reads a partition from its first event
    (None, 17, 17),    # ... which retention may have moved
    (128, 0, 128),     # the committed position
    (5, 17, 17),       # committed below what the broker still holds: from the first held
    (17, 17, 17),
])
def test_the_first_offset_expected_after_an_assignment(committed, first, expected):
    assert expected_after_assignment(committed, first) == expected


def test_a_negative_first_offset_is_refused():
    with pytest.raises(ValueError, match="first offset"):
        expected_after_assignment(None, -1)


def test_commit_now_waits_for_events_waiting_within_the_bounds() -> None:
    from refmesh.offsets import commit_now
    bounds = {"max_events": 3, "max_ms": 100}
    assert commit_now(0, 0, 10_000, False, **bounds) is False  # nothing to commit
    assert commit_now(1, 0, 0, False, **bounds) is True  # nobody waiting: at once
    assert commit_now(1, 0, 10, True, **bounds) is False  # the next event first
    assert commit_now(2, 0, 99, True, **bounds) is False
    assert commit_now(3, 0, 10, True, **bounds) is True  # max_events reached
    assert commit_now(2, 0, 100, True, **bounds) is True  # the oldest waited max_ms


def test_commit_now_refuses_nonsense_bounds() -> None:
    import pytest

    from refmesh.offsets import commit_now
    for bad in ({"max_events": 0, "max_ms": 1}, {"max_events": 1, "max_ms": -1}):
        with pytest.raises(ValueError, match="max_events >= 1"):
            commit_now(1, 0, 0, True, **bad)
    with pytest.raises(ValueError):
        commit_now(-1, 0, 0, True, max_events=1, max_ms=1)
