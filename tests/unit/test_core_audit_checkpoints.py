"""Signed checkpoints of audit chain heads: a cut tail, a forged checkpoint, a record appended
after the last checkpoint and a record changed before one are each named by audit.findings."""
from __future__ import annotations

import pytest

from refmesh import audit, codec, directory, keys

COORD, DOMAIN, OTHER = "BH/GOV/MOFA", "BH/GOV/NCCT", "QA/GOV/NCCT"
T0 = 1_790_000_000_000
CHAIN = "refmesh.domain.BH-GOV-NCCT.audit"


@pytest.fixture(scope="module")
def mesh():
    ks = {a: keys.generate(a, T0) for a in (COORD, DOMAIN, OTHER)}
    draft = directory.empty(COORD)
    for agency, k in ks.items():
        draft = directory.add_member(draft, directory.member_entry(
            k, agency, "CentralGovernmentOrganisation", agency[:2], None, T0))
    trusted = directory.load(directory.sign(draft, ks[COORD], T0),
                             directory.TrustAnchor.of(ks[COORD]), T0 + 1)
    return ks, trusted


def records(n: int, start: audit.Head = audit.Head()) -> tuple[list[bytes], list[audit.Head]]:
    """n records after ``start`` and the head after each of them."""
    head, out, heads = start, [], []
    for i in range(n):
        data, head = audit.append(head, at=T0 + i, domain=DOMAIN, event_id=f"e{head.seq}",
                                  decision="Forwarded", sender="BH/NGO/HOTLINE")
        out.append(data)
        heads.append(head)
    return out, heads


def cp(ks, head, *, signer=DOMAIN, partition=0):
    return audit.checkpoint(head, domain_keys=ks[signer], chain=CHAIN, partition=partition,
                            at=T0 + 10)


def run(trusted, chain, cps, partition=0):
    return audit.findings(chain, cps, directory=trusted, domain=DOMAIN, chain=CHAIN,
                          partition=partition)


def test_a_chain_covered_by_its_last_checkpoint_has_no_findings(mesh):
    ks, trusted = mesh
    chain, heads = records(6)
    assert run(trusted, chain, [cp(ks, heads[2]), cp(ks, heads[5])]) == []
    assert codec.decode(cp(ks, heads[5]), expect="AuditCheckpoint")[1]["seq"] == 6


def test_truncation_after_the_last_checkpoint_is_named(mesh):
    ks, trusted = mesh
    chain, heads = records(6)
    found = run(trusted, chain[:4], [cp(ks, heads[2]), cp(ks, heads[5])])
    assert [f.kind for f in found] == ["truncated", "unconfirmed"]
    assert "ends at seq 4" in found[0].message and "covers 6" in found[0].message
    assert found[0].fatal
    assert found[1].message == "unconfirmed tail of 1 record after checkpoint seq 3"


def test_a_cut_tail_with_a_forged_record_appended_differs_from_the_checkpoint(mesh):
    ks, trusted = mesh
    chain, heads = records(6)
    forged, _ = records(2, heads[3])  # records 4 and 5 replaced: same length, other hashes
    found = run(trusted, chain[:4] + forged, [cp(ks, heads[5])])
    assert [f.kind for f in found] == ["truncated", "unconfirmed"]
    assert found[0].seq == 6 and "differs" in found[0].message
    assert found[1].message == "unconfirmed tail of 6 records after checkpoint seq 0"


def test_a_forged_checkpoint_is_named_and_confirms_nothing(mesh):
    ks, trusted = mesh
    chain, heads = records(5)
    appended, more = records(1, heads[4])
    by_other = cp(ks, more[0], signer=OTHER)  # another member's key, claiming to be the domain
    _, body = codec.decode(by_other, expect="AuditCheckpoint")
    claimed = codec.encode("AuditCheckpoint", {**body, "domain": DOMAIN})
    found = run(trusted, chain + appended, [cp(ks, heads[4]), by_other, claimed])
    assert [f.kind for f in found] == ["forged", "forged", "unconfirmed"]
    assert "names domain QA/GOV/NCCT" in found[0].message
    assert "signer key" in found[1].message or "signature" in found[1].message
    assert found[2].message == "unconfirmed tail of 1 record after checkpoint seq 5"
    assert not found[2].fatal and found[1].fatal


def test_a_checkpoint_with_a_bad_signature_is_forged(mesh):
    ks, trusted = mesh
    chain, heads = records(3)
    _, body = codec.decode(cp(ks, heads[2]), expect="AuditCheckpoint")
    tampered = codec.encode("AuditCheckpoint", {**body, "seq": 2,
                                                 "headHash": heads[1].hash})
    found = run(trusted, chain, [tampered, b"garbage"])
    assert [f.kind for f in found] == ["forged", "forged", "unconfirmed"]
    assert "signature does not verify" in found[0].message
    assert "not an audit checkpoint" in found[1].message


def test_a_record_changed_before_a_checkpoint_is_named(mesh):
    """The checkpoint signs the head, which commits to every earlier record through the chain:
    the changed record breaks the next link, and nothing is left unconfirmed."""
    ks, trusted = mesh
    chain, heads = records(4)
    _, rec = codec.decode(chain[1], expect="AuditRecord")
    changed = list(chain)
    changed[1] = codec.encode("AuditRecord", {**rec, "decision": "Refused"})
    found = run(trusted, changed, [cp(ks, heads[3])])
    assert [f.kind for f in found] == ["changed"]
    assert found[0].seq == 2 and found[0].fatal  # the link after the changed record breaks


def test_checkpoints_of_other_chains_are_ignored(mesh):
    ks, trusted = mesh
    chain, heads = records(3)
    found = run(trusted, chain, [cp(ks, heads[2], partition=1)])
    assert [f.message for f in found] == ["unconfirmed tail of 3 records after checkpoint seq 0"]


def test_a_checkpoint_is_due_every_n_records_or_t_seconds():
    h = audit.Head(10, "a" * 64)
    assert not audit.checkpoint_due(audit.Head(), None, 0, every=5, seconds=1)
    assert audit.checkpoint_due(h, None, 0, every=5, seconds=1)
    assert audit.checkpoint_due(h, (5, 0), 0, every=5, seconds=1)
    assert not audit.checkpoint_due(h, (6, 0), 999, every=5, seconds=1)
    assert audit.checkpoint_due(h, (6, 0), 1000, every=5, seconds=1)
    assert not audit.checkpoint_due(h, (10, 0), 10_000, every=5, seconds=1)


def test_between_events_a_chain_is_due_once_its_head_moved_and_its_checkpoint_is_old():
    heads = {0: audit.Head(3, "a" * 64), 1: audit.Head(7, "b" * 64), 2: audit.Head(),
             3: audit.Head(2, "c" * 64), 4: audit.Head(5, "d" * 64)}
    last = {0: (3, 0),       # the head has not moved: never due
            1: (4, 1_000),   # moved, checkpoint 1 s old at 2_000
            3: (1, 1_900),   # moved, but its checkpoint is recent
            4: (5, 0)}       # not moved; 2 is an empty chain, never checkpointed
    assert audit.checkpoints_due(heads, last, 2_000, seconds=1) == [1]
    assert audit.checkpoints_due(heads, last, 2_900, seconds=1) == [1, 3]
    assert audit.checkpoints_due(heads, last, 2_000, seconds=0) == [1, 3]  # at shutdown


def test_a_chain_never_checkpointed_is_due_at_once():
    heads = {5: audit.Head(1, "e" * 64)}
    assert audit.checkpoints_due(heads, {}, 0, seconds=60) == [5]
    assert audit.checkpoints_due({}, {5: (0, 0)}, 10**9, seconds=0) == []
