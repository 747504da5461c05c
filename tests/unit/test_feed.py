"""The change feed (gateways/feed.py) as the store keeps it: one entry per timeline entry of a
referral, in the order recorded, written in the transaction of its change (nothing for a
refused event or a failed change), numbered by a sequence that survives reopening; the erasure
of a referral's copies in its timeline and in the feed; the migration of a schema-4 database;
the parameters' checks; the bell that wakes a long poll."""
from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateways import feed, schema
from gateways.store import Store
from refmesh import samples
from refmesh.errors import RecordError
from tests.unit.test_store import HOTLINE, KEY, NCC, NOW, SHELTER, deliver, received


def kinds(store: Store, after: int = 0) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["referral_id"], e["state"])
            for e in map(feed.entry, store.feed(after, 1000))]


def sender(tmp_path, n: int = 1) -> Store:
    """A hotline's store that sent r-1 (relying on consent n) and r-2 (another consent), both
    received by the shelter."""
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC)
    store.record_consent(samples.consent(n, controller=HOTLINE), KEY, NOW - 10)
    for rid, m in (("r-1", n), ("r-2", n + 1)):
        store.submit_referral(samples.referral(rid, sender=HOTLINE, recipient=SHELTER, n=m),
                              KEY, NOW)
        status = samples.status(rid, "received", SHELTER, NOW + 1)
        assert deliver(store, f"ev-{rid}", "ReferralStatus", SHELTER, status, NOW + 1).new
    return store


def test_every_timeline_entry_is_in_the_feed_in_the_order_recorded(tmp_path):
    store = sender(tmp_path)
    accepted = samples.status("r-1", "accepted", SHELTER, NOW + 2)
    assert deliver(store, "ev-a", "ReferralStatus", SHELTER, accepted, NOW + 2).new
    store.set_status("r-2", "revoked", None, NOW + 3)
    assert kinds(store) == [
        ("referral.sent", "r-1", "requested"), ("status.changed", "r-1", "received"),
        ("referral.sent", "r-2", "requested"), ("status.changed", "r-2", "received"),
        ("status.changed", "r-1", "accepted"), ("status.changed", "r-2", "revoked")]
    entries = [feed.entry(r) for r in store.feed(0, 100)]
    cursors = [int(e["cursor"]) for e in entries]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert {e["direction"] for e in entries} == {"out"} and entries[0]["sender"] == HOTLINE
    assert entries[4]["set_by"] == SHELTER and entries[5]["set_by"] == HOTLINE
    # after a cursor: what follows it, at most limit entries
    assert kinds(store, cursors[3]) == kinds(store)[4:]
    assert [e["cursor"] for e in map(feed.entry, store.feed(cursors[0], 2))] == \
        [str(c) for c in cursors[1:3]]
    assert store.feed(cursors[-1], 100) == []


def test_a_received_referral_and_the_erasure_of_its_copy(tmp_path):
    store, rid = received(tmp_path)
    store.set_status(rid, "accepted", None, NOW + 1, detail="bed 4, room 2")
    notice = {"noticeId": "n-1", "kind": "Request", "consentId": "c", "referralIds": [rid],
              "reason": "ConsentWithdrawn", "requestedBy": NCC, "at": NOW + 5}
    assert deliver(store, "ev-2", "ErasureNotice", NCC, notice, NOW + 6).new
    assert kinds(store) == [("referral.received", rid, "received"),
                            ("status.changed", rid, "accepted"),
                            ("erasure.requested", rid, "erasure_requested")]
    last = feed.entry(store.feed(0, 100)[-1])
    assert (last["direction"], last["sender"], last["set_by"], last["reason"], last["at"]) == (
        "in", HOTLINE, NCC, "ConsentWithdrawn", NOW + 5)
    # the copy is gone; its timeline (ids and codes, no case data) stays
    assert store._rows("SELECT * FROM referrals") == []
    assert [r["state"] for r in store._rows("SELECT state FROM history")] == [
        "received", "accepted", "erasure_requested"]
    # the free-text detail of a status is in the history, never in the feed
    assert "bed 4" not in repr(store._rows("SELECT * FROM feed"))


def test_the_senders_timeline_shows_the_erasure_requested_and_confirmed(tmp_path):
    store = sender(tmp_path, n=1)
    consent = store.consent("consent-000001")
    withdrawn = {**consent, "events": [*consent["events"], {
        "type": "Withdrawn", "at": NOW + 50, "channel": "InPerson", "recordedBy": HOTLINE}]}
    store.record_consent(withdrawn, KEY, NOW + 51)
    store.record_consent(withdrawn, KEY, NOW + 52)  # recorded again: asked once
    confirmation = {"noticeId": "n-1", "kind": "Confirmation", "consentId": "ps-x",
                    "referralIds": ["r-1"], "reason": "ConsentWithdrawn",
                    "requestedBy": SHELTER, "at": NOW + 60}
    assert deliver(store, "ev-c", "ErasureNotice", SHELTER, confirmation, NOW + 61).new
    timeline = [(h["state"], h["reason"], h["set_by"], h["at"])
                for h in store.referral("r-1")["history"]]
    assert timeline == [("requested", None, HOTLINE, NOW), ("received", None, SHELTER, NOW + 1),
                        ("erasure_requested", "ConsentWithdrawn", HOTLINE, NOW + 50),
                        ("erasure_confirmed", "ConsentWithdrawn", SHELTER, NOW + 60)]
    # r-2 relies on another consent: untouched
    assert [h["state"] for h in store.referral("r-2")["history"]] == ["requested", "received"]
    assert kinds(store)[-2:] == [("erasure.requested", "r-1", "erasure_requested"),
                                 ("erasure.confirmed", "r-1", "erasure_confirmed")]


def test_a_refused_event_or_a_failed_change_adds_nothing_and_rings_nothing(tmp_path):
    store = sender(tmp_path)
    before, rung = store.feed(0, 100), store.bell.rung
    wrong = samples.status("r-1", "revoked", SHELTER, NOW + 2)  # the recipient cannot revoke
    assert deliver(store, "ev-x", "ReferralStatus", SHELTER, wrong, NOW + 2).refused
    with pytest.raises(RecordError):
        store.set_status("r-1", "revoked", "NotAReason", NOW + 3)
    assert store.feed(0, 100) == before and store.bell.rung == rung
    store.set_status("r-1", "revoked", None, NOW + 4)
    assert store.bell.rung == rung + 1 and len(store.feed(0, 100)) == len(before) + 1


def test_the_cursor_survives_reopening_and_is_never_reused(tmp_path):
    store = sender(tmp_path)
    last = int(feed.entry(store.feed(0, 100)[-1])["cursor"])
    store.close()
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC)
    assert store.feed(last, 100) == []
    store.set_status("r-1", "revoked", None, NOW + 5)
    (entry,) = map(feed.entry, store.feed(last, 100))
    assert int(entry["cursor"]) == last + 1 and entry["state"] == "revoked"
    # rows deleted (a future retention job): their numbers are not given again
    store._db.execute("DELETE FROM feed WHERE seq = ?", (last + 1,))
    store.set_status("r-2", "revoked", None, NOW + 6)
    assert [e["cursor"] for e in map(feed.entry, store.feed(last, 100))] == [str(last + 2)]


def test_a_cursor_past_the_end_is_refused_naming_after(tmp_path):
    store = sender(tmp_path)
    last = int(feed.entry(store.feed(0, 100)[-1])["cursor"])
    with pytest.raises(RecordError) as refused:
        store.feed(last + 1, 100)
    assert refused.value.path == "after" and "start again from 0" in str(refused.value)
    empty = Store(str(tmp_path / "empty.db"), HOTLINE, NCC)
    assert empty.feed(0, 100) == []
    with pytest.raises(RecordError):
        empty.feed(1, 100)


@pytest.mark.parametrize("parse, text, name", [
    (feed.cursor, "abc", "after"), (feed.cursor, "-1", "after"), (feed.cursor, "01", "after"),
    (feed.cursor, "1.5", "after"), (feed.cursor, "9" * 30, "after"), (feed.cursor, "", "after"),
    (feed.seconds, "31", "wait"), (feed.seconds, "-1", "wait"), (feed.seconds, "nan", "wait"),
    (feed.seconds, "1e3", "wait"), (feed.limit, "0", "limit"), (feed.limit, "1001", "limit"),
    (feed.limit, "ten", "limit"),
])
def test_a_bad_parameter_is_named(parse, text, name):
    with pytest.raises(RecordError) as refused:
        parse(text)
    assert refused.value.path == name


def test_parameters_and_their_defaults():
    assert (feed.cursor(None), feed.cursor("0"), feed.cursor("42")) == (0, 0, 42)
    assert (feed.seconds(None), feed.seconds("30"), feed.seconds("0.5")) == (0.0, 30.0, 0.5)
    assert (feed.limit(None), feed.limit("1"), feed.limit("1000")) == (100, 1, 1000)


def test_a_database_of_schema_4_gets_its_feed_and_erasure_timeline(tmp_path):
    store = sender(tmp_path, n=1)
    consent = store.consent("consent-000001")
    store.record_consent({**consent, "events": [*consent["events"], {
        "type": "Withdrawn", "at": NOW + 50, "channel": "InPerson", "recordedBy": HOTLINE}]},
        KEY, NOW + 51)
    confirmation = {"noticeId": "n-1", "kind": "Confirmation", "consentId": "ps-x",
                    "referralIds": ["r-1"], "reason": "ConsentWithdrawn",
                    "requestedBy": SHELTER, "at": NOW + 60}
    assert deliver(store, "ev-c", "ErasureNotice", SHELTER, confirmation, NOW + 61).new
    expected = store.referral("r-1")["history"]
    store.close()
    # as a schema-4 gateway left it: no feed, and the erasure only under erasures
    db = sqlite3.connect(str(tmp_path / "gw.db"))
    db.executescript("DROP TABLE feed; DELETE FROM history WHERE state LIKE 'erasure%'; "
                     "PRAGMA user_version = 4;")
    db.close()
    store = Store(str(tmp_path / "gw.db"), HOTLINE, NCC)
    assert store._rows("PRAGMA user_version") == [{"user_version": schema.VERSION}]
    got = store.referral("r-1")["history"]
    assert [h["state"] for h in got] == [h["state"] for h in expected]
    assert got[-1]["reason"] is None  # schema 4 kept no reason with a notice
    assert kinds(store) == [  # in the order recorded (the time, then the row)
        ("referral.sent", "r-1", "requested"), ("referral.sent", "r-2", "requested"),
        ("status.changed", "r-1", "received"), ("status.changed", "r-2", "received"),
        ("erasure.requested", "r-1", "erasure_requested"),
        ("erasure.confirmed", "r-1", "erasure_confirmed")]
    assert store.remembered() == 3  # the replay memory is not filled again


# --- the bell ----------------------------------------------------------------------------------

def test_the_bell_wakes_a_waiter_rung_from_another_thread():
    bell = feed.Bell()

    async def scenario():
        seen = bell.rung
        ringer = threading.Thread(target=bell.ring)
        asyncio.get_running_loop().call_soon(ringer.start)  # once the wait below is set
        await bell.wait(seen, 30)
        ringer.join()
        return bell.rung

    assert asyncio.run(scenario()) == 1


def test_a_ring_before_the_wait_is_not_lost_and_closing_wakes_everyone():
    bell = feed.Bell()

    async def scenario():
        seen = bell.rung
        bell.ring()  # between reading the feed and waiting
        await bell.wait(seen, 30)  # returns at once
        waiters = [asyncio.ensure_future(bell.wait(bell.rung, 30)) for _ in range(3)]
        asyncio.get_running_loop().call_soon(bell.close)
        await asyncio.gather(*waiters)
        await bell.wait(bell.rung, 30)  # closed: at once
        return bell.closed

    assert asyncio.run(scenario())
