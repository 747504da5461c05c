"""The record of access is a hash chain (refmesh.accesslog): a changed, removed, reordered or
inserted entry is found, and so is a cut tail when a head was written down before."""
from __future__ import annotations

import pytest

from refmesh import accesslog


def chain(n: int = 5) -> list[dict]:
    head, out = accesslog.Head(), []
    for i in range(n):
        item, head = accesslog.entry(head, at=1000 + i, actor="amal", action="view",
                                     kind="referral", sender="BH/GOV/HOTLINE", ref=f"ref-{i}")
        out.append(item)
    return out


def test_an_intact_chain_verifies_and_names_its_head():
    entries = chain()
    head, broken = accesslog.verify(entries)
    assert broken is None and head.seq == 5 and head.hash == accesslog.digest(entries[-1])
    assert accesslog.verify([]) == (accesslog.Head(), None)


@pytest.mark.parametrize("tamper", ["change", "remove", "reorder", "insert", "not an entry"])
def test_tampering_is_found(tamper):
    entries = chain()
    if tamper == "change":
        entries[2] = {**entries[2], "actor": "rana"}
    elif tamper == "remove":
        del entries[2]
    elif tamper == "reorder":
        entries[1], entries[2] = entries[2], entries[1]
    elif tamper == "insert":
        entries.insert(2, {**entries[2], "ref": "ref-x"})
    else:
        entries[2] = ["seq", 2]
    _, broken = accesslog.verify(entries)
    assert broken is not None and broken.index in (1, 2, 3)


def test_a_cut_tail_is_found_against_a_head_written_down_earlier():
    entries = chain()
    head, _ = accesslog.verify(entries)
    assert accesslog.verify(entries, since=head)[1] is None
    earlier, _ = accesslog.verify(entries[:3])
    assert accesslog.verify(entries, since=earlier)[1] is None  # it passes through
    _, broken = accesslog.verify(entries[:4], since=head)
    assert broken is not None and "cut or rewritten" in broken.reason
    assert accesslog.Head.parse(str(head)) == head
    with pytest.raises(ValueError, match="SEQ:SHA256"):
        accesslog.Head.parse("5:abc")


def test_an_entry_holds_ids_only():
    item, _ = accesslog.entry(accesslog.Head(), at=1, actor="amal", action="view",
                              kind="referral", ref="r-1")
    assert set(item) == set(accesslog.FIELDS)
    with pytest.raises(ValueError, match="kind"):
        accesslog.entry(accesslog.Head(), at=1, actor="a", action="view", kind="person", ref="x")
