"""The audit chain detects a changed, removed, repeated or reordered record."""
from __future__ import annotations

from refmesh import audit, codec


def chain(n: int = 5) -> list[bytes]:
    head, out = audit.Head(), []
    for i in range(n):
        data, head = audit.append(head, at=1_000 + i, domain="BH/GOV/NCCTIP",
                                  event_id=f"e{i}", decision="Forwarded", sender="BH/GOV/HL",
                                  recipient="BH/GOV/SH", purpose="Services",
                                  fields=("person.gender", "needs.supportTypes"))
        out.append(data)
    return out


def test_an_intact_chain_verifies_and_names_fields_not_values():
    records = chain()
    assert audit.verify(records) is None
    assert codec.decode(records[0])[1]["fieldsForwarded"] == ["person.gender",
                                                              "needs.supportTypes"]


def test_a_modified_record_breaks_the_next_link():
    records = chain()
    _, third = codec.decode(records[2])
    records[2] = codec.encode("AuditRecord", {**third, "decision": "Refused"})
    broken = audit.verify(records)
    assert (broken.index, broken.seq) == (3, 3) and "prevHash" in broken.reason


def test_a_removed_or_repeated_record_is_named():
    records = chain()
    assert audit.verify(records[:2] + records[3:]).index == 2
    assert "missing or repeated" in audit.verify(records[:3] + records[2:]).reason
    assert audit.verify([records[1], records[0]]).index == 0


def test_garbage_is_a_broken_link_not_a_crash():
    broken = audit.verify(chain(2) + [b"\xc3\x01nonsense"])
    assert broken.index == 2 and broken.seq is None


def test_head_round_trips():
    head = audit.Head(7, "ab" * 32)
    assert audit.Head.from_bytes(head.to_bytes()) == head
    assert audit.Head.from_bytes(None) == audit.Head()
