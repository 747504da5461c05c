"""The gateway's store: what a status change queues, and that a bad status writes nothing."""
from __future__ import annotations

import pytest

from gateways.store import Store
from refmesh import samples
from refmesh.errors import RecordError

NOW = 1_790_000_000_000
SHELTER, HOTLINE, NCC = "BH/GOV/SHELTER", "BH/GOV/HOTLINE", "BH/GOV/NCCTIP"


KEY = b"0123456789abcdef0123456789abcdef"  # the Kafka key the domain forwarded it with


def received(tmp_path, domain: str | None = NCC) -> tuple[Store, str]:
    """A shelter's store holding one referral received from the hotline."""
    store = Store(str(tmp_path / "gw.db"), SHELTER, domain)
    referral = samples.referral(sender=HOTLINE, recipient=SHELTER, n=1)
    assert store.receive("ev-1", "Referral", NCC, referral, NOW, KEY)
    return store, referral["referralId"]


def queued(store: Store) -> list[tuple[str, str, dict]]:
    return [(d.record_type, d.recipient, d.record) for d in store.due(NOW + 10_000)
            if d.record_type == "ReferralStatus"]


def test_an_outcome_goes_to_the_sender_and_a_copy_without_detail_to_the_domain(tmp_path):
    store, rid = received(tmp_path)
    store.set_status(rid, "accepted", None, NOW + 1, detail="bed 4, room 2")
    statuses = queued(store)
    to_sender = [r for t, to, r in statuses if to == HOTLINE and r["state"] == "accepted"]
    to_domain = [r for t, to, r in statuses if to == NCC]
    assert to_sender[0]["detail"] == "bed 4, room 2"
    assert to_domain == [{**to_sender[0], "detail": None}]
    due = {d.delivery_key: d for d in store.due(NOW + 10_000)}
    copy = due[f"status:{rid}:accepted:{NCC}"]  # closed by the domain's receipt
    assert copy.partition_key == KEY  # goes to the partition that decided the referral


def test_a_state_that_is_no_outcome_or_an_agency_without_domain_sends_no_copy(tmp_path):
    store, rid = received(tmp_path)
    store.set_status(rid, "accepted", None, NOW + 1)
    store.set_status(rid, "in_progress", None, NOW + 2)
    assert [(to, r["state"]) for _, to, r in queued(store)] == [
        (HOTLINE, "received"), (HOTLINE, "accepted"), (NCC, "accepted"),
        (HOTLINE, "in_progress")]  # no copy of in_progress: not an outcome
    (tmp_path / "alone").mkdir()
    alone, rid2 = received(tmp_path / "alone", domain=None)
    alone.set_status(rid2, "accepted", None, NOW + 1)
    assert [to for _, to, _ in queued(alone)] == [HOTLINE, HOTLINE]


def test_an_erasure_removes_the_referral_and_its_key(tmp_path):
    store, rid = received(tmp_path)
    notice = {"noticeId": "n-1", "kind": "Request", "consentId": "c", "referralIds": [rid],
              "reason": "ConsentWithdrawn", "requestedBy": NCC, "at": NOW}
    assert store.receive("ev-2", "ErasureNotice", NCC, notice, NOW + 1)
    assert store._rows("SELECT * FROM referral_keys") == []


def test_an_invalid_status_writes_nothing(tmp_path):
    store, rid = received(tmp_path)
    before = store.referral(rid)
    with pytest.raises(RecordError):
        store.set_status(rid, "rejected", "NotAReason", NOW + 1)
    assert store.referral(rid) == before and len(queued(store)) == 1  # only "received"
