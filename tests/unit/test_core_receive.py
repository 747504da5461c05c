"""The gateway's receive decision (refmesh.receive), without SQLite: who may say what about a
referral, every role x transition of the closed loop, ids scoped by sender, receipts, erasure
and confirmations, replays, and that a refusal changes nothing."""
from __future__ import annotations

import pytest

from refmesh import envelope, loop, replay, samples, schemas
from refmesh.errors import DirectoryError
from refmesh.receive import (REACH, REASONS, Changes, Close, Entry, Event, Held, Keep, Parties,
                             Remember, StatusChange, View, decide)

NOW = 1_790_000_000_000
HOTLINE, SHELTER, PSYCH = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/NGO/PSYCH"
NCC, ET_NCC, RECEPTION = "BH/GOV/NCCTIP", "ET/GOV/NCC", "ET/NGO/RECEPTION"
DOMAINS = {HOTLINE: NCC, SHELTER: NCC, PSYCH: NCC, NCC: NCC, RECEPTION: ET_NCC,
           ET_NCC: ET_NCC}
RID = "ref-1"
STATES = schemas.symbols("ReferralState")


def domain_of(agency: str) -> str:
    if agency not in DOMAINS:
        raise DirectoryError("unknown_sender", f"{agency} is not in directory")
    return DOMAINS[agency]


class Store:
    """What a gateway holds, as plain dicts: the fake behind ``View``."""

    def __init__(self, me: str) -> None:
        self.parties = Parties(me, domain_of)
        self.referrals: dict[tuple[str, str], Held] = {}
        self.inbox: set[tuple[str, str]] = set()
        self.outbox: dict[str, Entry] = {}
        self.events: dict[tuple[str, str, str], str] = {}  # the replay memory: -> digest

    def sent(self, rid: str = RID, to: str = SHELTER, state: str = "requested",
             entry: str = "pending") -> "Store":
        me = self.parties.me
        self.referrals[me, rid] = Held(me, rid, "out", to, state)
        self.outbox[f"referral:{rid}"] = Entry(f"referral:{rid}", to, entry)
        return self

    def got(self, rid: str = RID, sender: str = HOTLINE, state: str = "received",
            consent: str | None = "ps-c1") -> "Store":
        self.referrals[sender, rid] = Held(sender, rid, "in", sender, state, consent)
        self.inbox.add((sender, f"referral:{rid}"))
        return self

    def view(self) -> View:
        return View(
            referral=lambda sender, rid: self.referrals.get((sender, rid)),
            copies=lambda rid: tuple(h for (s, r), h in self.referrals.items()
                                     if r == rid and h.direction == "in"),
            received_from=lambda rid: tuple(o for o, k in self.inbox
                                            if k == f"referral:{rid}"),
            entry=self.outbox.get,
            seen=lambda origin, key: (origin, key) in self.inbox,
            event=lambda signer, origin, event_id: self.events.get((signer, origin, event_id)))

    def decide(self, record_type: str, record: dict, signer: str, event_id: str = "ev-1",
               kafka_key: bytes | None = None, created_at: int | None = None) -> Changes:
        return decide(Event(event_id, record_type, signer, record, kafka_key, created_at),
                      self.parties, self.view(), NOW)

    def accept(self, changes: Changes) -> Changes:
        """Keep what the replay memory, the inbox and the referrals would keep of an
        accepted event."""
        assert changes.refused is None
        if changes.keep is not None:
            k = changes.keep
            self.got(k.referral_id, k.sender, consent=k.record["consentId"])
        if changes.remember is not None:
            r = changes.remember
            self.events.setdefault((r.signer, r.origin, r.event_id), r.digest)
        if changes.inbox is not None:
            self.inbox.add(changes.inbox)
        return changes


def status(state: str, set_by: str, rid: str = RID, **over) -> dict:
    reason = "PolicyRefused" if state == "refused" else \
        "LackOfCapacity" if state in loop.NEEDS_REASON else None
    return samples.status(rid, state, set_by, NOW - 5, reason=reason, **over)


def only_refusal(changes: Changes, reason: str) -> None:
    assert changes == Changes(refused=reason)


# --- every role x transition ---------------------------------------------------------------

# who may set each state a peer sends, as DOMAIN.md says (the closed loop of Primero, FHIR Task)
OWNERS = {"received": "recipient", "accepted": "recipient", "rejected": "recipient",
          "in_progress": "recipient", "completed": "recipient", "failed": "recipient",
          "revoked": "sender", "refused": "domain"}


def _path(a: str, b: str) -> bool:
    """Whether the loop leads from state a to state b in one or more steps."""
    frontier, seen = [a], set()
    while frontier:
        for nxt in loop.NEXT.get(frontier.pop(), ()):
            if nxt == b:
                return True
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def expected(role: str, current: str, new: str) -> str:
    """applied, logged (history only) or the refusal reason."""
    owner = OWNERS.get(new)
    if owner is None:
        return "transition_not_allowed"  # "requested" is never sent by anyone
    if role == "third":
        return "not_a_party"
    if role != owner:
        return "wrong_role"
    if role == "domain":
        return "applied" if current == "requested" else "already_delivered"
    if _path(current, new):
        return "applied"
    if current == "refused" and role == "recipient" and _path("requested", new):
        return "applied"  # the recipient has it: the refusal was of a re-send
    if new == current or _path(new, current):
        return "logged"  # an earlier state arriving late
    if current in loop.TERMINAL and OWNERS.get(current) != role:
        return "logged"  # the other party closed it first
    return "transition_not_allowed"


def setup(role: str, current: str) -> tuple[Store, str, str]:
    """(the gateway, the signer, the held referral's sender) for a signer in ``role``."""
    if role == "sender":  # the shelter holds the hotline's referral
        return Store(SHELTER).got(state=current), HOTLINE, HOTLINE
    store = Store(HOTLINE).sent(state=current)  # the hotline's own referral to the shelter
    return store, {"recipient": SHELTER, "domain": NCC, "third": PSYCH}[role], HOTLINE


@pytest.mark.parametrize("new", STATES)
@pytest.mark.parametrize("current", list(loop.RANK))
@pytest.mark.parametrize("role", ["recipient", "sender", "domain", "third"])
def test_every_role_and_transition(role, current, new):
    store, signer, sender = setup(role, current)
    record = status(new, signer)
    got = store.decide("ReferralStatus", record, signer)
    want = expected(role, current, new)
    if want in ("applied", "logged"):
        assert got.refused is None and got.new
        assert got.statuses == (StatusChange(sender, RID, record,
                                             new if want == "applied" else None),)
        assert got.inbox == (signer, f"status:{RID}:{new}")
        receipt = got.send[-1]
        assert (receipt.record_type, receipt.recipient) == ("Receipt", signer)
        assert receipt.record["deliveryKey"] == f"status:{RID}:{new}:{store.parties.me}"
        closes = (Close(f"referral:{RID}", "refused"),) if role == "domain" else ()
        assert got.close == closes
    else:
        only_refusal(got, want)


def test_the_table_covers_each_kind_of_answer():
    answers = {expected(r, c, n) for r in ("recipient", "sender", "domain", "third")
               for c in loop.RANK for n in STATES}
    assert answers == {"applied", "logged", "not_a_party", "wrong_role", "already_delivered",
                       "transition_not_allowed"}
    assert REACH["received"] == {"accepted", "rejected", "in_progress", "completed", "failed",
                                 "revoked"}


# --- the attacks of the issue, one by one ----------------------------------------------------

def test_a_third_partys_status_is_refused():
    store = Store(HOTLINE).sent()
    only_refusal(store.decide("ReferralStatus", status("accepted", PSYCH), PSYCH),
                 "not_a_party")
    only_refusal(store.decide("ReferralStatus", status("accepted", PSYCH, rid="nope"), PSYCH),
                 "unknown_referral")


def test_a_sender_accepting_its_own_referral_is_the_wrong_role():
    shelter = Store(SHELTER).got()  # the hotline sent it; the shelter is the recipient
    only_refusal(shelter.decide("ReferralStatus", status("accepted", HOTLINE), HOTLINE),
                 "wrong_role")


def test_a_recipient_revoking_is_the_wrong_role():
    hotline = Store(HOTLINE).sent(state="received")
    only_refusal(hotline.decide("ReferralStatus", status("revoked", SHELTER), SHELTER),
                 "wrong_role")


def test_a_refusal_by_a_peer_or_another_domain_is_refused():
    hotline = Store(HOTLINE).sent()
    only_refusal(hotline.decide("ReferralStatus", status("refused", SHELTER), SHELTER),
                 "wrong_role")
    only_refusal(hotline.decide("ReferralStatus", status("refused", ET_NCC), ET_NCC),
                 "not_a_party")
    # a status claiming to be set by someone else than its signer
    only_refusal(hotline.decide("ReferralStatus", status("accepted", SHELTER), PSYCH),
                 "sender_mismatch")


def test_a_status_needs_its_reason():
    hotline = Store(HOTLINE).sent(state="received")
    bare = {**status("rejected", SHELTER), "reason": None}
    only_refusal(hotline.decide("ReferralStatus", bare, SHELTER), "missing_reason")


def test_a_refusal_never_overrides_a_receipt():
    delivered = Store(HOTLINE).sent(entry="confirmed")  # receipted, no status yet
    only_refusal(delivered.decide("ReferralStatus", status("refused", NCC), NCC),
                 "already_delivered")
    received = Store(HOTLINE).sent(state="received")
    only_refusal(received.decide("ReferralStatus", status("refused", NCC), NCC),
                 "already_delivered")
    fresh = Store(HOTLINE).sent()
    got = fresh.decide("ReferralStatus", status("refused", NCC), NCC)
    assert got.close == (Close(f"referral:{RID}", "refused"),)
    assert got.statuses[0].state == "refused"


def test_a_receipt_closes_an_entry_only_from_its_recipient():
    hotline = Store(HOTLINE).sent()
    receipt = {"deliveryKey": f"referral:{RID}", "eventId": "e", "outcome": "Stored",
               "receivedBy": PSYCH, "at": NOW}
    only_refusal(hotline.decide("Receipt", receipt, PSYCH), "not_the_recipient")
    only_refusal(hotline.decide("Receipt", {**receipt, "receivedBy": NCC}, NCC),
                 "not_the_recipient")
    only_refusal(hotline.decide("Receipt", {**receipt, "deliveryKey": "referral:x",
                                            "receivedBy": SHELTER}, SHELTER),
                 "unknown_delivery")
    only_refusal(hotline.decide("Receipt", {**receipt, "receivedBy": SHELTER}, PSYCH),
                 "sender_mismatch")
    got = hotline.decide("Receipt", {**receipt, "receivedBy": SHELTER}, SHELTER)
    assert got == Changes(new=True, close=(Close(f"referral:{RID}", "confirmed",
                                                 ("pending", "refused")),))


def test_a_receipt_for_a_receipt_closes_nothing():
    hotline = Store(HOTLINE)
    hotline.outbox["receipt:x:e:" + SHELTER] = Entry("receipt:x:e:" + SHELTER, SHELTER,
                                                     "sent", needs_receipt=False)
    receipt = {"deliveryKey": "receipt:x:e:" + SHELTER, "eventId": "e2", "outcome": "Stored",
               "receivedBy": SHELTER, "at": NOW}
    only_refusal(hotline.decide("Receipt", receipt, SHELTER), "unknown_delivery")


def test_a_recipients_status_proves_delivery_over_a_refusal_of_a_resend():
    hotline = Store(HOTLINE).sent(state="refused", entry="refused")
    got = hotline.decide("ReferralStatus", status("received", SHELTER), SHELTER)
    assert got.statuses[0].state == "received"


# --- ids scoped by sender ----------------------------------------------------------------------

def referral(sender: str = HOTLINE, rid: str = RID, **over) -> dict:
    return samples.referral(rid, sender=sender, recipient=SHELTER, **over)


def test_a_referral_is_kept_under_its_sender_and_id():
    shelter = Store(SHELTER)
    record = referral()
    got = shelter.decide("Referral", record, NCC, kafka_key=b"k")
    assert got.new and got.inbox == (HOTLINE, f"referral:{RID}")
    assert got.keep == Keep(HOTLINE, RID, record, b"k")
    assert [(s.record_type, s.recipient, s.key) for s in got.send] == [
        ("Receipt", HOTLINE, f"receipt:referral:{RID}:ev-1:{HOTLINE}"),
        ("ReferralStatus", HOTLINE, f"status:{RID}:received:{HOTLINE}")]
    assert got.send[0].record["outcome"] == "Stored"


def test_another_sender_may_use_the_same_id_and_nobody_can_squat_it():
    shelter = Store(SHELTER).got(sender=PSYCH)  # the psychologist sent "ref-1" first
    got = shelter.decide("Referral", referral(HOTLINE), NCC)
    assert got.new and got.keep.sender == HOTLINE  # the hotline's own "ref-1" is kept
    again = Store(SHELTER).got(sender=HOTLINE).decide("Referral", referral(HOTLINE), NCC)
    assert not again.new and again.keep is None and again.inbox is None
    assert [s.record["outcome"] for s in again.send] == ["Duplicate"]


def test_a_referral_naming_me_as_its_sender_or_not_from_my_domain_is_refused():
    shelter = Store(SHELTER)
    own = samples.referral(RID, sender=SHELTER, recipient=SHELTER)
    only_refusal(shelter.decide("Referral", own, NCC), "sender_mismatch")
    only_refusal(shelter.decide("Referral", referral(), ET_NCC), "sender_mismatch")
    only_refusal(shelter.decide("Referral", referral(), HOTLINE), "sender_mismatch")
    elsewhere = samples.referral(RID, sender=HOTLINE, recipient=PSYCH)
    only_refusal(shelter.decide("Referral", elsewhere, NCC), "misaddressed")


def test_a_status_applies_to_the_referral_of_its_sender_only():
    shelter = Store(SHELTER).got(sender=HOTLINE).got(sender=PSYCH)
    got = shelter.decide("ReferralStatus", status("revoked", PSYCH), PSYCH)
    assert got.statuses == (StatusChange(PSYCH, RID, status("revoked", PSYCH), "revoked"),)
    # and my own referral with that id is not theirs to change
    both = Store(SHELTER).got(sender=HOTLINE)
    both.referrals[SHELTER, RID] = Held(SHELTER, RID, "out", PSYCH, "received")
    got = both.decide("ReferralStatus", status("accepted", PSYCH), PSYCH)
    assert got.statuses[0].sender == SHELTER  # the psychologist accepts the shelter's ref-1
    only_refusal(both.decide("ReferralStatus", status("accepted", HOTLINE), HOTLINE),
                 "wrong_role")


def test_a_status_is_queued_once_per_peer():
    a = {**status("accepted", SHELTER)}
    assert loop.receipt_key("ReferralStatus", a, HOTLINE) != loop.receipt_key(
        "ReferralStatus", a, PSYCH)


def test_a_duplicate_status_is_receipted_and_changes_nothing():
    hotline = Store(HOTLINE).sent(state="accepted")
    hotline.inbox.add((SHELTER, f"status:{RID}:accepted"))
    got = hotline.decide("ReferralStatus", status("accepted", SHELTER), SHELTER)
    assert got.refused is None and not got.new and not got.statuses and got.inbox is None
    assert [s.record["outcome"] for s in got.send] == ["Duplicate"]


def test_a_revocation_before_the_referral_arrives_waits_for_a_resend():
    only_refusal(Store(SHELTER).decide("ReferralStatus", status("revoked", HOTLINE), HOTLINE),
                 "unknown_referral")


def test_a_revocation_of_an_erased_copy_is_recorded_and_receipted():
    shelter = Store(SHELTER)
    shelter.inbox.add((HOTLINE, f"referral:{RID}"))  # received once, erased since
    got = shelter.decide("ReferralStatus", status("revoked", HOTLINE), HOTLINE)
    assert got.statuses == (StatusChange(HOTLINE, RID, status("revoked", HOTLINE), None),)
    assert [s.record_type for s in got.send] == ["Receipt"]


# --- erasure -----------------------------------------------------------------------------------

def request(*rids: str, by: str = NCC, consent: str = "ps-c1") -> dict:
    return {"noticeId": "n-1", "kind": "Request", "consentId": consent,
            "referralIds": list(rids), "reason": "ConsentWithdrawn", "requestedBy": by,
            "at": NOW - 10}


def test_an_erasure_request_from_the_delivering_domain_erases_and_confirms():
    shelter = Store(SHELTER).got("r1", HOTLINE).got("r2", PSYCH).got("r3", RECEPTION)
    got = shelter.decide("ErasureNotice", request("r1", "r2"), NCC)
    assert got.erase == ((HOTLINE, "r1"), (PSYCH, "r2"))
    assert got.notice == request("r1", "r2") and got.inbox == (NCC, "erasure:n-1:Request")
    confirmations = {s.recipient: s.record["referralIds"] for s in got.send
                     if s.record_type == "ErasureNotice"}
    # each sender learns of its own referrals only; the domain gets what it asked about
    assert confirmations == {NCC: ["r1", "r2"], HOTLINE: ["r1"], PSYCH: ["r2"]}
    keys = {s.key for s in got.send if s.record_type == "ErasureNotice"}
    assert keys == {f"erasure:n-1:Confirmation:{a}" for a in (NCC, HOTLINE, PSYCH)}


def test_an_erasure_request_from_a_foreign_domain_is_refused():
    shelter = Store(SHELTER).got("r1", HOTLINE)
    only_refusal(shelter.decide("ErasureNotice", request("r1", by=ET_NCC), ET_NCC),
                 "not_the_delivering_domain")
    only_refusal(shelter.decide("ErasureNotice", request("r1", by=HOTLINE), HOTLINE),
                 "sender_mismatch")  # a request comes from a domain, never from a member
    only_refusal(shelter.decide("ErasureNotice", request("r1"), ET_NCC), "sender_mismatch")


def test_a_domain_erases_only_the_copies_it_delivered():
    shelter = Store(SHELTER).got("r1", HOTLINE).got("r1", RECEPTION)  # the same id twice
    got = shelter.decide("ErasureNotice", request("r1", by=ET_NCC), ET_NCC)
    assert got.erase == ((RECEPTION, "r1"),)
    got = shelter.decide("ErasureNotice", request("r1"), NCC)
    assert got.erase == ((HOTLINE, "r1"),)


def test_two_senders_of_one_domain_with_one_id_erase_by_the_consent():
    shelter = Store(SHELTER).got("r1", HOTLINE, consent="ps-a").got("r1", PSYCH, consent="ps-b")
    got = shelter.decide("ErasureNotice", request("r1", consent="ps-b"), NCC)
    assert got.erase == ((PSYCH, "r1"),)


def test_an_erasure_request_for_nothing_received_is_refused_and_an_erased_one_confirmed():
    only_refusal(Store(SHELTER).decide("ErasureNotice", request("r9"), NCC), "unknown_referral")
    shelter = Store(SHELTER)
    shelter.inbox.add((HOTLINE, "referral:r1"))  # erased by an earlier request
    got = shelter.decide("ErasureNotice", request("r1", "r9"), NCC)
    assert got.erase == () and got.new
    assert {s.recipient for s in got.send if s.record_type == "ErasureNotice"} == {NCC}


def confirmation(*rids: str, by: str = SHELTER) -> dict:
    return {**request(*rids), "kind": "Confirmation", "requestedBy": by}


def test_a_confirmation_counts_only_from_the_agency_that_held_it():
    hotline = Store(HOTLINE).sent("r1", SHELTER).sent("r2", PSYCH)
    got = hotline.decide("ErasureNotice", confirmation("r1"), SHELTER)
    assert got.new and got.notice == confirmation("r1")
    assert got.inbox == (SHELTER, "erasure:n-1:Confirmation")
    assert [s.recipient for s in got.send] == [SHELTER]
    assert got.send[0].record["deliveryKey"] == f"erasure:n-1:Confirmation:{HOTLINE}"
    only_refusal(hotline.decide("ErasureNotice", confirmation("r1", "r2"), SHELTER),
                 "not_the_holder")
    only_refusal(hotline.decide("ErasureNotice", confirmation("r1", by=PSYCH), PSYCH),
                 "not_the_holder")
    only_refusal(hotline.decide("ErasureNotice", confirmation("r9"), SHELTER),
                 "not_the_holder")
    only_refusal(hotline.decide("ErasureNotice", confirmation(), SHELTER), "not_the_holder")


def test_a_consent_is_never_for_a_gateway():
    only_refusal(Store(SHELTER).decide("Consent", samples.consent(1), HOTLINE),
                 "unexpected_type")


# --- replays (issue 12, item 4) ----------------------------------------------------------------

def test_an_event_id_reused_for_other_content_is_a_replay():
    hotline = Store(HOTLINE).sent(state="received")
    accepted = status("accepted", SHELTER)
    first = hotline.accept(hotline.decide("ReferralStatus", accepted, SHELTER, "ev-7"))
    assert first.remember == Remember(SHELTER, SHELTER, "ev-7",
                                      replay.digest("ReferralStatus", accepted),
                                      NOW + envelope.MAX_AGE_MS)
    # the shelter signs its completion with the id of its acceptance
    only_refusal(hotline.decide("ReferralStatus", status("completed", SHELTER), SHELTER,
                                "ev-7"), "replay")
    # the next genuine event, under an id of its own, goes through
    got = hotline.decide("ReferralStatus", status("completed", SHELTER), SHELTER, "ev-8")
    assert got.new and got.statuses[0].state == "completed"
    assert "replay" in REASONS


def test_the_same_event_again_is_a_duplicate_and_remembered_again():
    hotline = Store(HOTLINE).sent(state="received")
    accepted = status("accepted", SHELTER)
    hotline.accept(hotline.decide("ReferralStatus", accepted, SHELTER, "ev-7"))
    again = hotline.decide("ReferralStatus", accepted, SHELTER, "ev-7", created_at=NOW + 60_000)
    assert again.refused is None and not again.new and not again.statuses
    assert [s.record["outcome"] for s in again.send] == ["Duplicate"]
    # a re-send is sealed again: remembered until its new envelope is too old
    assert again.remember.until == NOW + 60_000 + envelope.MAX_AGE_MS


def test_a_refused_event_is_not_remembered_and_is_accepted_when_resent():
    shelter = Store(SHELTER)
    revoke = status("revoked", HOTLINE)
    only_refusal(shelter.decide("ReferralStatus", revoke, HOTLINE, "ev-3"), "unknown_referral")
    assert shelter.events == {}
    shelter.accept(shelter.decide("Referral", referral(), NCC, "ev-1"))
    got = shelter.decide("ReferralStatus", revoke, HOTLINE, "ev-3")
    assert got.new and got.statuses[0].state == "revoked" and got.remember is not None


def test_a_referral_id_reused_for_another_referral_is_a_replay():
    shelter = Store(SHELTER)
    first = shelter.accept(shelter.decide("Referral", referral(), NCC, "ev-1"))
    assert (first.remember.signer, first.remember.origin) == (NCC, HOTLINE)
    only_refusal(shelter.decide("Referral", referral(rid="ref-2"), NCC, "ev-1"), "replay")
    assert shelter.decide("Referral", referral(rid="ref-2"), NCC, "ev-2").new


def test_a_referral_forwarded_again_with_other_content_is_a_duplicate():
    # the domain re-projects a referral that it forwards again at its own time (an age band, a
    # newer policy) under the sender's event id: the copy held answers it, nothing is stored
    shelter = Store(SHELTER)
    shelter.accept(shelter.decide("Referral", referral(), NCC, "ev-1"))
    projected = {**referral(), "purpose": "Return"}
    got = shelter.decide("Referral", projected, NCC, "ev-1")
    assert got.refused is None and not got.new and got.keep is None
    assert [s.record["outcome"] for s in got.send] == ["Duplicate"]


def test_event_ids_are_remembered_per_sender():
    shelter = Store(SHELTER)
    shelter.accept(shelter.decide("Referral", referral(), NCC, "ev-1"))
    # the psychologist's own referral under the same event id is no replay of the hotline's
    got = shelter.decide("Referral", referral(PSYCH, rid="ref-p"), NCC, "ev-1")
    assert got.new and got.remember.origin == PSYCH
    hotline = Store(HOTLINE).sent(state="received")
    hotline.events[PSYCH, PSYCH, "ev-7"] = "another digest"
    assert hotline.decide("ReferralStatus", status("accepted", SHELTER), SHELTER, "ev-7").new


def test_receipts_are_not_remembered():
    hotline = Store(HOTLINE).sent()
    receipt = {"deliveryKey": f"referral:{RID}", "eventId": "e", "outcome": "Stored",
               "receivedBy": SHELTER, "at": NOW}
    assert hotline.decide("Receipt", receipt, SHELTER).remember is None


def test_an_event_is_remembered_until_its_envelope_is_too_old():
    hotline = Store(HOTLINE).sent(state="received")
    accepted = status("accepted", SHELTER)
    sealed_late = hotline.decide("ReferralStatus", accepted, SHELTER, created_at=NOW + 1000)
    assert sealed_late.remember.until == NOW + 1000 + envelope.MAX_AGE_MS
    sealed_early = hotline.decide("ReferralStatus", accepted, SHELTER, created_at=NOW - 5000)
    assert sealed_early.remember.until == NOW + envelope.MAX_AGE_MS
