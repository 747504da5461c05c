"""refmesh.statehead: a rolled-back value, a foreign tombstone, an entry put back or a whole
state rolled back is detected; a crash in the middle of an event is not taken for one."""
from __future__ import annotations

import pytest

from refmesh import statehead
from refmesh.errors import SealError
from refmesh.statehead import Head, Mark
from tests.domainfix import MESH, NCC

SECRET = b"s" * 32
NEVER = lambda window: False  # noqa: E731 (no window is final)


def state(*entries) -> dict[tuple[str, bytes], bytes]:
    return {(t, k): v for t, k, v in entries}


def found(held: dict) -> dict[str, int]:
    return statehead.digests(SECRET, [(t, k, v) for (t, k), v in held.items()])


def write(head: Head, held: dict, *writes) -> tuple[Head, dict, dict]:
    """Apply ``writes`` (table, key, value or None) to ``held``: the new head, state, steps."""
    held = dict(held)
    full = []
    for table, key, value in writes:
        full.append((table, key, held.get((table, key)), value))
        if value is None:
            held.pop((table, key), None)
        else:
            held[(table, key)] = value
    new, steps = statehead.step(head, full, SECRET)
    return new, held, steps


BASE = state(("consents", b"p1|c", b"v1"), ("forwarded", b"p1", b"log1"),
             ("seen", b"e|1", b"s1"), ("aggregate-counts", b"0|100", b"n1"),
             ("counted", b"h1", b"100"))


def test_step_keeps_the_head_equal_to_the_digest_of_the_live_entries():
    head = Head(0, found(BASE))
    new, held, steps = write(head, BASE, ("consents", b"p1|c", b"v2"), ("seen", b"e|1", None),
                             ("seen", b"e|2", b"s2"), ("counted", b"h2", b"200"))
    assert new.seq == 1 and new.digests == found(held)
    assert steps["seen"][-1] == new.digests["seen"] and len(steps["seen"]) == 2
    assert set(new.digests) == {"consents", "forwarded", "seen", "aggregate-counts|100",
                                "counted|100", "counted|200"}


def test_the_newest_state_passes_and_every_kind_of_rollback_is_named():
    head = Head(0, found(BASE))
    v2, held, _ = write(head, BASE, ("consents", b"p1|c", b"v2"))
    mark = Mark(v2)
    assert statehead.problem(0, v2, found(held), mark, NEVER) is None
    older = {**held, ("consents", b"p1|c"): b"v1"}  # the old consent value put back
    assert "consents" in statehead.problem(0, v2, found(older), mark, NEVER)
    gone = {k: v for k, v in held.items() if k[0] != "forwarded"}  # a foreign tombstone
    assert "forwarded" in statehead.problem(0, v2, found(gone), mark, NEVER)
    back = {**held, ("seen", b"e|0"): b"s0"}  # an entry the domain deleted, put back
    assert "seen" in statehead.problem(0, v2, found(back), mark, NEVER)
    # the whole state, head included, as it was before: older than this worker's mark
    assert "rolled back" in statehead.problem(0, head, found(BASE), mark, NEVER)
    # the head itself tombstoned
    assert "head is gone" in statehead.problem(0, None, found(held), mark, NEVER)


def test_a_worker_without_a_mark_adopts_a_state_without_head_and_verifies_a_newer_one():
    assert statehead.problem(0, None, found(BASE), None, NEVER) is None
    adopted = Mark(Head(0, found(BASE)))  # checked again at the next assignment
    assert statehead.problem(0, None, found(BASE), adopted, NEVER) is None
    less = {k: v for k, v in BASE.items() if k[0] != "consents"}
    assert "changed since" in statehead.problem(0, None, found(less), adopted, NEVER)
    v1, held, _ = write(Head(0, found(BASE)), BASE, ("forwarded", b"p1", b"log2"))
    assert statehead.problem(0, v1, found(held), None, NEVER) is None
    assert statehead.problem(0, v1, found(BASE), None, NEVER) is not None
    # a newer head another worker wrote, matching the state: accepted over an older mark
    assert statehead.problem(0, v1, found(held), Mark(Head(0, found(BASE))), NEVER) is None


def test_a_crash_mid_event_leaves_a_prefix_per_group_accepted_only_while_uncommitted():
    head = Head(3, found(BASE))
    new, held, steps = write(head, BASE, ("seen", b"e|2", b"s2"), ("seen", b"e|3", b"s3"),
                             ("consents", b"p1|c", b"v2"))
    pending = Mark(head, new, steps)
    partial = {**BASE, ("seen", b"e|2"): b"s2"}  # one seen write out, the consent not
    for restored_head in (head, new):  # the head's own write out or not
        assert statehead.problem(0, restored_head, found(partial), pending, NEVER) is None
    assert statehead.problem(0, new, found(held), pending, NEVER) is None
    # not a prefix: the second seen write without the first
    skipped = {**BASE, ("seen", b"e|3"): b"s3"}
    assert statehead.problem(0, head, found(skipped), pending, NEVER) is not None
    # once committed, the same partial state is a rollback of the consent
    assert statehead.problem(0, new, found(partial), Mark(new), NEVER) is not None


def test_final_windows_deleted_by_the_release_job_are_not_checked():
    head = Head(0, found(BASE))
    without = {k: v for k, v in BASE.items() if k[0] not in ("aggregate-counts", "counted")}
    assert statehead.problem(0, head, found(without), Mark(head), lambda w: w == 100) is None
    assert "aggregate-counts|100" in statehead.problem(0, head, found(without), Mark(head),
                                                       NEVER)


def test_a_head_opens_only_for_its_partition():
    keys = MESH.keys[NCC]
    head = Head(7, {"consents": 12345})
    data = statehead.seal(keys, 2, head)
    assert statehead.open_head(keys, 2, data) == head
    with pytest.raises(SealError):
        statehead.open_head(keys, 3, data)
    assert Mark.from_json(Mark(head, head, {"seen": [1, 2]}).to_json()) == \
        Mark(head, head, {"seen": [1, 2]})
