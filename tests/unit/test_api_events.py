"""GET /v1/events on a real gateway (never started: events arrive by calling its store as the
inbox does) through aiohttp's test server: the token, the cursor's semantics, a long poll that
returns when an entry arrives (from another thread, as from the inbox), the parameters' checks,
and the erasure in a referral's history."""
from __future__ import annotations

import asyncio
import json
import threading

from kafkaedge.loading import now_ms
from refmesh import samples
from tests.unit.webfix import HOTLINE, NCC, SHELTER, deliver


def token(fix) -> dict:
    return {"Authorization": f"Bearer {fix.gateway.api_token}"}


def events(fix, client, query: str = "") -> tuple[int, dict]:
    page = client.get(f"/v1/events{query}", headers=token(fix))
    return page.status, json.loads(page.text)


def test_the_feed_needs_the_token(shelter):
    c = shelter.client()
    assert c.get("/v1/events").status == 401


def test_new_referrals_and_status_changes_in_order_after_a_cursor(shelter):
    c = shelter.client()
    status, empty = events(shelter, c)
    assert status == 200 and empty == {"events": [], "next": "0"}
    first = shelter.arrive(1)["referralId"]
    second = shelter.arrive(2)["referralId"]
    _, answer = events(shelter, c, "?after=0")
    assert [(e["kind"], e["referral_id"], e["sender"], e["direction"]) for e in
            answer["events"]] == [("referral.received", first, HOTLINE, "in"),
                                  ("referral.received", second, HOTLINE, "in")]
    assert answer["next"] == answer["events"][-1]["cursor"]
    # ids and codes only: the case system reads the referral itself
    assert set(answer["events"][0]) == {"cursor", "kind", "sender", "referral_id", "direction",
                                        "state", "reason", "set_by", "at"}
    shelter.gateway.set_status(first, "rejected", "LackOfCapacity", detail="no bed tonight")
    _, more = events(shelter, c, f"?after={answer['next']}")
    (change,) = more["events"]
    assert (change["kind"], change["referral_id"], change["state"], change["reason"],
            change["set_by"]) == ("status.changed", first, "rejected", "LackOfCapacity",
                                  SHELTER)
    assert "no bed" not in repr(more)
    _, limited = events(shelter, c, "?after=0&limit=1")
    assert [e["referral_id"] for e in limited["events"]] == [first]
    _, rest = events(shelter, c, f"?after={limited['next']}")
    assert [e["referral_id"] for e in rest["events"]] == [second, first]
    _, none = events(shelter, c, f"?after={rest['next']}")  # no wait: at once, empty
    assert none == {"events": [], "next": rest["next"]}


def test_a_long_poll_returns_when_an_entry_arrives_from_another_thread(shelter):
    c = shelter.client()
    shelter.arrive(1)
    _, answer = events(shelter, c)
    bell = shelter.gateway.store.bell
    waiting = bell.wait
    arrivals = []

    async def wait_then_arrive(seen, timeout):
        # the inbox thread stores a referral once this request waits for one
        arrivals.append(threading.Thread(target=shelter.arrive, args=(2,)))
        asyncio.get_running_loop().call_soon(arrivals[-1].start)
        await waiting(seen, timeout)

    bell.wait = wait_then_arrive
    try:
        _, polled = events(shelter, c, f"?after={answer['next']}&wait=30")
    finally:
        bell.wait = waiting
        for thread in arrivals:
            thread.join()
    assert len(arrivals) == 1
    assert [e["kind"] for e in polled["events"]] == ["referral.received"]
    assert polled["events"][0]["referral_id"] == f"ref-2-{shelter.clock()}"  # webfix.arrive


def test_a_long_poll_with_entries_waiting_answers_at_once(shelter):
    c = shelter.client()
    rid = shelter.arrive(1)["referralId"]
    bell = shelter.gateway.store.bell

    async def never(seen, timeout):
        raise AssertionError("waited although entries were there")

    bell.wait = never
    _, answer = events(shelter, c, "?after=0&wait=30")
    assert [e["referral_id"] for e in answer["events"]] == [rid]


def test_bad_parameters_are_400_naming_the_parameter(shelter):
    c = shelter.client()
    shelter.arrive(1)
    for query, name in (("?after=x", "after"), ("?after=-1", "after"), ("?after=999", "after"),
                        ("?wait=31", "wait"), ("?wait=soon", "wait"), ("?limit=0", "limit"),
                        ("?cursor=1", "cursor")):
        status, body = events(shelter, c, query)
        assert (status, body.get("field")) == (400, name), query


def test_the_senders_history_shows_the_erasure_requested_and_confirmed(hotline):
    c = hotline.client()
    consent = hotline.consent(1)
    referral = hotline.gateway.submit_referral({
        **_draft(consent), "recipientAgency": SHELTER})
    rid, sent = referral["referralId"], referral["createdAt"]  # the timeline is by time
    received = {"referralId": rid, "state": "received", "reason": None, "detail": None,
                "setBy": SHELTER, "at": sent + 1}
    assert deliver(hotline.gateway, "ev-r", "ReferralStatus", SHELTER, received, sent + 1).new
    hotline.gateway.withdraw_consent(consent["consentId"])
    confirmation = {"noticeId": "n-1", "kind": "Confirmation", "consentId": "ps-x",
                    "referralIds": [rid], "reason": "ConsentWithdrawn", "requestedBy": SHELTER,
                    "at": now_ms() + 1}
    assert deliver(hotline.gateway, "ev-c", "ErasureNotice", SHELTER, confirmation,
                   now_ms() + 1).new
    shown = json.loads(c.get(f"/v1/referrals/{rid}", headers=token(hotline)).text)
    assert [(h["state"], h["set_by"]) for h in shown["history"]] == [
        ("requested", HOTLINE), ("received", SHELTER), ("erasure_requested", HOTLINE),
        ("erasure_confirmed", SHELTER)]
    _, answer = events(hotline, c)
    assert [e["kind"] for e in answer["events"]] == [
        "referral.sent", "status.changed", "erasure.requested", "erasure.confirmed"]
    # the web page's timeline says it too
    page = hotline.signed_in().get("/outbox")
    assert "Erasure requested" in page.text and "Erasure confirmed" in page.text
    page = hotline.signed_in().get(f"/referrals/{rid}")
    assert "Erasure confirmed" in page.text and "Consent withdrawn" in page.text


def test_the_recipients_feed_says_its_copy_was_erased(shelter):
    c = shelter.client()
    referral = shelter.arrive(1)
    notice = {"noticeId": "n-1", "kind": "Request", "consentId": referral["consentId"],
              "referralIds": [referral["referralId"]], "reason": "ConsentWithdrawn",
              "requestedBy": NCC, "at": shelter.clock()}
    assert deliver(shelter.gateway, "ev-e", "ErasureNotice", NCC, notice, shelter.clock()).new
    _, answer = events(shelter, c)
    assert [(e["kind"], e["referral_id"], e["set_by"]) for e in answer["events"]] == [
        ("referral.received", referral["referralId"], SHELTER),
        ("erasure.requested", referral["referralId"], NCC)]


def _draft(consent: dict) -> dict:
    draft = samples.referral(sender=HOTLINE, recipient=SHELTER, n=1)
    for name in ("referralId", "senderAgency", "createdAt"):
        draft.pop(name)
    draft.update(consentId=consent["consentId"], subjectId=consent["subjectId"])
    return draft
