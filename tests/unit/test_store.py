"""The gateway's store: what a status change queues, that a bad status writes nothing, that it
carries out the receive decisions (refmesh.receive) in one transaction, with referrals kept under
(sender, id), that the replay memory persists, runs out and is bounded, and that databases of
schema 1 and 2 are migrated."""
from __future__ import annotations

import sqlite3

import pytest

from gateways import schema
from gateways.store import PRUNE_STEP, Ambiguous, MemoryFull, NotFound, Store, StoreError
from refmesh import codec, envelope, receive, replay, samples
from refmesh.errors import RecordError

NOW = 1_790_000_000_000
SHELTER, HOTLINE, NCC = "BH/GOV/SHELTER", "BH/GOV/HOTLINE", "BH/GOV/NCCTIP"
PSYCH, ET_NCC = "BH/NGO/PSYCH", "ET/GOV/NCC"
DOMAINS = {SHELTER: NCC, HOTLINE: NCC, PSYCH: NCC, NCC: NCC, ET_NCC: ET_NCC}


KEY = b"0123456789abcdef0123456789abcdef"  # the Kafka key the domain forwarded it with


def deliver(store: Store, event_id: str, record_type: str, signer: str, record: dict,
            now: int = NOW, key: bytes | None = None) -> receive.Changes:
    return store.receive(receive.Event(event_id, record_type, signer, record, key, now),
                         receive.Parties(store.agency, DOMAINS.__getitem__), now)


def received(tmp_path, domain: str | None = NCC, sender: str = HOTLINE,
             rid: str | None = None) -> tuple[Store, str]:
    """A shelter's store holding one referral received from the hotline."""
    store = Store(str(tmp_path / "gw.db"), SHELTER, domain)
    referral = samples.referral(sender=sender, recipient=SHELTER, n=1)
    if rid:
        referral["referralId"] = rid
    assert deliver(store, "ev-1", "Referral", NCC, referral, NOW, KEY).new
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
    assert f"status:{rid}:accepted:{HOTLINE}" in due  # and the sender's copy by its receipt


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
    assert deliver(store, "ev-2", "ErasureNotice", NCC, notice, NOW + 1).new
    assert store._rows("SELECT * FROM referral_keys") == []
    assert store._rows("SELECT record FROM inbox WHERE record_type = 'Referral'") == [
        {"record": b""}]
    confirmations = {d.recipient: d.record["referralIds"] for d in store.due(NOW + 10_000)
                     if d.record_type == "ErasureNotice"}
    assert confirmations == {NCC: [rid], HOTLINE: [rid]}


def test_an_invalid_status_writes_nothing(tmp_path):
    store, rid = received(tmp_path)
    before = store.referral(rid)
    with pytest.raises(RecordError):
        store.set_status(rid, "rejected", "NotAReason", NOW + 1)
    assert store.referral(rid) == before and len(queued(store)) == 1  # only "received"


def _tables(store: Store) -> dict:
    return {t: store._rows(f"SELECT * FROM {t}") for t in
            ("inbox", "referrals", "referral_keys", "history", "outbox", "erasures", "events",
             "events_held")}


def test_a_refused_event_writes_nothing(tmp_path):
    store, rid = received(tmp_path)
    before = _tables(store)
    third = samples.status(rid, "revoked", PSYCH, NOW)
    assert deliver(store, "ev-3", "ReferralStatus", PSYCH, third).refused == "not_a_party"
    wrong = samples.status(rid, "accepted", HOTLINE, NOW)
    assert deliver(store, "ev-4", "ReferralStatus", HOTLINE, wrong).refused == "wrong_role"
    notice = {"noticeId": "n-1", "kind": "Request", "consentId": "c", "referralIds": [rid],
              "reason": "ConsentWithdrawn", "requestedBy": ET_NCC, "at": NOW}
    foreign = deliver(store, "ev-5", "ErasureNotice", ET_NCC, notice)
    assert foreign.refused == "not_the_delivering_domain"
    assert _tables(store) == before
    revoke = samples.status(rid, "revoked", HOTLINE, NOW)
    assert deliver(store, "ev-6", "ReferralStatus", HOTLINE, revoke).new  # the next good one
    assert store.referral(rid)["state"] == "revoked"


def test_two_senders_may_use_one_id(tmp_path):
    store, rid = received(tmp_path, rid="same-id")
    squat = samples.referral("same-id", sender=PSYCH, recipient=SHELTER, n=2)
    assert deliver(store, "ev-9", "Referral", NCC, squat).new
    assert {(r["sender"], r["referral_id"]) for r in store.referrals("in")} == {
        (HOTLINE, "same-id"), (PSYCH, "same-id")}
    with pytest.raises(Ambiguous, match="name the sender"):
        store.referral("same-id")
    with pytest.raises(Ambiguous):
        store.set_status("same-id", "accepted", None, NOW + 1)
    store.set_status("same-id", "accepted", None, NOW + 1, sender=PSYCH)
    assert store.referral("same-id", HOTLINE)["state"] == "received"
    assert store.referral("same-id", PSYCH)["state"] == "accepted"
    assert [h["state"] for h in store.referral("same-id", PSYCH)["history"]] == [
        "received", "accepted"]
    with pytest.raises(NotFound):
        store.referral("same-id", NCC)
    # each sender is answered: two "received" statuses, each closed by its own receipt
    keys = {d.delivery_key for d in store.due(NOW + 10_000) if d.record_type ==
            "ReferralStatus" and d.record["state"] == "received"}
    assert keys == {f"status:same-id:received:{HOTLINE}", f"status:same-id:received:{PSYCH}"}


def test_a_receipt_closes_only_its_recipients_entry(tmp_path):
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC)
    referral = samples.referral("r-1", sender=HOTLINE, recipient=SHELTER)
    store.submit_referral(referral, KEY, NOW)
    receipt = {"deliveryKey": "referral:r-1", "eventId": "e", "outcome": "Stored",
               "receivedBy": PSYCH, "at": NOW}
    assert deliver(store, "ev-1", "Receipt", PSYCH, receipt).refused == "not_the_recipient"
    assert store.delivery_state("referral:r-1") == "pending"
    got = deliver(store, "ev-2", "Receipt", SHELTER, {**receipt, "receivedBy": SHELTER})
    assert got.new and store.delivery_state("referral:r-1") == "confirmed"
    refusal = samples.status("r-1", "refused", NCC, NOW, reason="PolicyRefused")
    assert deliver(store, "ev-3", "ReferralStatus", NCC, refusal).refused == \
        "already_delivered"
    assert store.delivery_state("referral:r-1") == "confirmed"
    assert store.referral("r-1")["state"] == "requested"


# the tables of every gateway before schema 2 (no user_version)
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS outbox (
    delivery_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    recipient TEXT NOT NULL,
    record BLOB NOT NULL,
    partition_key BLOB,
    needs_receipt INTEGER NOT NULL,
    state TEXT NOT NULL,              -- pending, confirmed, refused, sent
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    closed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS inbox (
    delivery_key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    record_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    record BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
    referral_id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,          -- out (we sent it) or in (we received it)
    peer TEXT NOT NULL,               -- the recipient (out) or the sender (in)
    state TEXT NOT NULL,
    record BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS referral_keys (
    referral_id TEXT PRIMARY KEY,     -- a received referral
    partition_key BLOB NOT NULL       -- its Kafka key (a keyed hash): outcome copies go with it
);
CREATE TABLE IF NOT EXISTS history (
    referral_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    set_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_referral ON history (referral_id);
CREATE TABLE IF NOT EXISTS consents (
    consent_id TEXT PRIMARY KEY,
    subject_id TEXT NOT NULL,
    record BLOB NOT NULL,             -- the latest Consent, with its event history
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    notice_id TEXT NOT NULL,
    kind TEXT NOT NULL,               -- Request (we were asked) or Confirmation (we were told)
    consent_id TEXT NOT NULL,
    referral_ids TEXT NOT NULL,       -- comma-separated ids, never case data
    requested_by TEXT NOT NULL,
    at INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (notice_id, kind, requested_by)
);
"""


def test_a_database_of_schema_1_is_migrated(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    kept = samples.referral("r-in", sender=HOTLINE, recipient=SHELTER)
    mine = samples.referral("r-out", sender=SHELTER, recipient=PSYCH)
    status = samples.status("r-in", "accepted", SHELTER, NOW)
    received = samples.status("r-gone", "received", SHELTER, NOW)
    rows = {
        "inbox": [("referral:r-in", "e1", "Referral", NCC, codec.encode("Referral", kept), NOW),
                  ("referral:r-gone", "e2", "Referral", NCC, b"", NOW)],
        "referrals": [("r-in", "in", HOTLINE, "accepted", codec.encode("Referral", kept), NOW,
                       NOW),
                      ("r-out", "out", PSYCH, "requested", codec.encode("Referral", mine), NOW,
                       NOW)],
        "referral_keys": [("r-in", KEY)],
        "history": [("r-in", "received", None, None, SHELTER, NOW, NOW),
                    ("r-out", "requested", None, None, SHELTER, NOW, NOW),
                    ("r-gone", "received", None, None, SHELTER, NOW, NOW)],
    }
    for table, values in rows.items():
        for row in values:
            db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    for key, record, to in (("status:r-in:accepted", status, HOTLINE),
                            ("status:r-gone:received", received, PSYCH)):
        db.execute("INSERT INTO outbox (delivery_key, event_id, record_type, recipient, record, "
                   "needs_receipt, state, next_attempt_ms, created_ms) VALUES "
                   "(?, 'x', 'ReferralStatus', ?, ?, 1, 'pending', 0, 0)",
                   (key, to, codec.encode("ReferralStatus", record)))
    db.commit()
    db.close()
    store = Store(path, SHELTER, NCC)
    assert store._rows("PRAGMA user_version") == [{"user_version": schema.VERSION}]
    # the replay memory starts with what the inbox holds (not the erased referral's event)
    assert store._rows("SELECT signer, origin, event_id, until_ms FROM events") == [
        {"signer": NCC, "origin": HOTLINE, "event_id": "e1",
         "until_ms": NOW + envelope.MAX_AGE_MS}]
    assert store.referral("r-in")["sender"] == HOTLINE
    assert [h["state"] for h in store.referral("r-in")["history"]] == ["received"]
    assert store.referral("r-out")["sender"] == SHELTER
    assert store._rows("SELECT sender, referral_id FROM referral_keys") == [
        {"sender": HOTLINE, "referral_id": "r-in"}]
    # the erased referral's sender, from the "received" status that answered it
    assert {(r["origin"], r["delivery_key"]) for r in store._rows("SELECT * FROM inbox")} == {
        (HOTLINE, "referral:r-in"), (PSYCH, "referral:r-gone")}
    assert {r["delivery_key"] for r in store._rows("SELECT delivery_key FROM outbox")} == {
        f"status:r-in:accepted:{HOTLINE}", f"status:r-gone:received:{PSYCH}"}
    store.close()
    assert Store(path, SHELTER, NCC).referral("r-in")["state"] == "accepted"  # opened again


def test_a_database_of_a_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "new.db")
    Store(path, SHELTER, NCC).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema 99.*upgrade the gateway"):
        Store(path, SHELTER, NCC)


# --- the replay memory (issue 12, item 4) ------------------------------------------------------

def sent(tmp_path, **kw) -> Store:
    """A hotline's store with its referral r-1 received by the shelter."""
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC, **kw)
    store.submit_referral(samples.referral("r-1", sender=HOTLINE, recipient=SHELTER), KEY, NOW)
    status = samples.status("r-1", "received", SHELTER, NOW)
    assert deliver(store, "ev-received", "ReferralStatus", SHELTER, status).new
    return store


def test_a_replay_is_refused_after_the_store_is_opened_again(tmp_path):
    store = sent(tmp_path)
    accepted = samples.status("r-1", "accepted", SHELTER, NOW)
    assert deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 1).new
    store.close()
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC)
    before = _tables(store)
    completed = samples.status("r-1", "completed", SHELTER, NOW + 2)
    assert deliver(store, "ev-7", "ReferralStatus", SHELTER, completed, NOW + 2).refused == \
        "replay"
    assert _tables(store) == before and store.referral("r-1")["state"] == "accepted"
    # the same event again is a duplicate, and the next genuine one goes through
    assert not deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 3).new
    assert deliver(store, "ev-8", "ReferralStatus", SHELTER, completed, NOW + 4).new
    assert store.referral("r-1")["state"] == "completed"


def test_the_memory_forgets_what_ran_out(tmp_path):
    store = sent(tmp_path)
    accepted = samples.status("r-1", "accepted", SHELTER, NOW)
    assert deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 1).new
    assert store.remembered() == 2
    assert store._rows("SELECT until_ms FROM events WHERE event_id = 'ev-7'") == [
        {"until_ms": NOW + 1 + envelope.MAX_AGE_MS}]
    # a re-send is sealed again: remembered until its new envelope is too old
    assert not deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 5).new
    assert store._rows("SELECT until_ms FROM events WHERE event_id = 'ev-7'") == [
        {"until_ms": NOW + 5 + envelope.MAX_AGE_MS}]
    later = NOW + 5 + envelope.MAX_AGE_MS + 1  # both have run out
    completed = samples.status("r-1", "completed", SHELTER, later)
    assert deliver(store, "ev-9", "ReferralStatus", SHELTER, completed, later).new
    assert [r["event_id"] for r in store._rows("SELECT event_id FROM events")] == ["ev-9"]
    assert store.remembered() == 1


def test_the_memory_forgets_a_bounded_number_of_rows_each_time(tmp_path):
    store = sent(tmp_path)
    with store._tx() as db:
        db.executemany("INSERT INTO events VALUES (?, ?, ?, 'd', ?)",
                       [(SHELTER, SHELTER, f"old-{i}", NOW) for i in range(PRUNE_STEP + 5)])
    assert store.remembered() == PRUNE_STEP + 6
    accepted = samples.status("r-1", "accepted", SHELTER, NOW + 1)
    assert deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 1).new
    assert store.remembered() == 7  # 100 run out forgotten, 5 left; ev-received and ev-7


def test_a_full_memory_refuses_to_grow_and_says_so(tmp_path):
    store = sent(tmp_path, remember_max=2)
    accepted = samples.status("r-1", "accepted", SHELTER, NOW + 1)
    assert deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 1).new
    before = _tables(store)
    completed = samples.status("r-1", "completed", SHELTER, NOW + 2)
    with pytest.raises(MemoryFull, match="replay memory holds 2 event ids.*replay_memory_max"):
        deliver(store, "ev-8", "ReferralStatus", SHELTER, completed, NOW + 2)
    assert _tables(store) == before  # neither stored nor forgotten: the event waits
    assert "replay memory" in store.write_error
    store.sent("nothing", NOW + 3)  # another write does not clear the problem
    assert "replay memory" in store.write_error
    # a duplicate needs no room
    assert not deliver(store, "ev-7", "ReferralStatus", SHELTER, accepted, NOW + 4).new
    # once the first two ran out, the event goes through and the problem is gone
    later = NOW + 5 + envelope.MAX_AGE_MS
    assert deliver(store, "ev-8", "ReferralStatus", SHELTER, completed, later).new
    assert store.write_error is None and store.memory_full is None
    assert store.remembered() == 1


def test_a_database_of_schema_2_is_migrated(tmp_path):
    path = str(tmp_path / "v2.db")
    store, rid = received(tmp_path)
    store.close()
    (tmp_path / "gw.db").rename(path)
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER events_added; DROP TRIGGER events_removed; "
                     "DROP TABLE events; DROP TABLE events_held; PRAGMA user_version = 2;")
    db.close()
    store = Store(path, SHELTER, NCC)
    assert store._rows("PRAGMA user_version") == [{"user_version": schema.VERSION}]
    assert store.remembered() == 1
    referral = store.referral(rid)["record"]
    assert store._rows("SELECT signer, origin, event_id, digest FROM events") == [
        {"signer": NCC, "origin": HOTLINE, "event_id": "ev-1",
         "digest": replay.digest("Referral", referral)}]
    # so a referral re-sent under its event id is a duplicate, another one under it a replay
    assert not deliver(store, "ev-1", "Referral", NCC, referral, NOW + 1).new
    other = samples.referral("r-other", sender=HOTLINE, recipient=SHELTER, n=2)
    assert deliver(store, "ev-1", "Referral", NCC, other, NOW + 1).refused == "replay"
