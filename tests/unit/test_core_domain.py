"""What a policy domain does with one event (``refmesh.domain.handle``), with dict-backed
tables: forwarding minimised under consent, refusals back to the sender, legal bases, consent
versions, withdrawal with erasure notices, domain-to-domain hand-over, dead letters, and the
protected table values. The checks against a malicious member (the Kafka key and partition,
replays and re-sends, consents and their controller) are in test_core_domain_checks.py."""
from __future__ import annotations

import json

import pytest

from refmesh import aggregate, audit, codec, domain, envelope, loop, minimise, samples, topology
from refmesh import consent as consents
from refmesh.errors import RecordError, SealError
from tests import policy_samples as S
from tests.policy_samples import DAY
from tests.domainfix import (ET_NCC, HOTLINE, IOM, KEY, MESH, NCC, POLICE, POLICIES, PSYCH,
                             RECEPTION, SHELTER, Tables, context, handle, key_of, opened,
                             sealed, with_consent, withdrawn)

def canaried(recipient: str, sender: str = HOTLINE, purpose: str = "Services", tag: str = ""):
    """A referral with a canary in every string field but the two agency ids (routing needs
    real ones), and a consent for its canaried subject and consent ids."""
    referral, canaries = S.canaried(recipient, tag=tag, sender=sender, purpose=purpose)
    referral["senderAgency"] = sender
    canaries = {c: f for c, f in canaries.items()
                if f not in ("senderAgency", "recipientAgency")}
    consent = S.consent(controller=sender, consentId=referral["consentId"],
                        subjectId=referral["subjectId"], crossBorder=True,
                        crossBorderCountries=["ET"])
    return referral, canaries, consent


# --- forwarding --------------------------------------------------------------------------------

ROLES = [  # recipient, purpose: one per rule of the sample policy
    (SHELTER, "Services"), (POLICE, "Prosecution"), (PSYCH, "Services"), (IOM, "Return")]


@pytest.mark.parametrize("recipient, purpose", ROLES, ids=[r for r, _ in ROLES])
def test_a_referral_with_consent_goes_out_minimised_to_the_recipients_inbox(recipient, purpose):
    sender = SHELTER if recipient != SHELTER else HOTLINE
    referral, canaries, consent = canaried(recipient, sender, purpose)
    tables = with_consent(consent, sender)
    data = sealed(referral, sender, event_id="ev-1")
    key = key_of(referral)
    effects = handle(tables, data, key)
    assert effects.deadletter is None and effects.event_id == "ev-1"
    (out,) = effects.publish
    assert (out.topic, out.key) == (topology.agency_inbox(recipient), key)
    got = opened(out, recipient)
    assert got.record_type == "Referral" and got.header["sender"] == NCC
    assert got.header["eventId"] == "ev-1"
    member = S.MEMBERS[recipient]
    kept = S.kept_strings(POLICIES[NCC], member["role"], purpose)
    clear = json.dumps(got.record)
    for canary, name in canaries.items():
        assert (canary in clear) == (name in kept), name
        assert canary.encode() not in out.value  # sealed: nothing in clear on the wire
    assert got.record["subjectId"] == minimise.pseudonym(S.SECRET, recipient, "subjectId",
                                                         referral["subjectId"])
    # the transfer is logged for erasure, protected
    assert effects.log_put[0] == key
    assert domain.read_log(context(), tables.view(), key) == [
        {"recipient": recipient, "referralId": referral["referralId"],
         "consentId": referral["consentId"], "sender": sender, "cell": effects.counted[2]}]
    # audited with field names only
    (entry,) = effects.audit
    assert entry["decision"] == "Forwarded" and entry["legal_basis"] == "Consent"
    assert (entry["sender"], entry["recipient"], entry["purpose"]) == (sender, recipient,
                                                                      purpose)
    assert entry["policy_version"] == POLICIES[NCC].version
    assert "person.firstName" in entry["fields"] and "referralId" in entry["fields"]
    audit_text = json.dumps(entry)
    assert not [c for c in canaries if c in audit_text]
    for name in entry["fields"]:  # every name audited carries a value in the forwarded record
        assert minimise.value_at(got.record, name) not in (None, "", []), name


def test_the_same_referral_again_is_forwarded_again_but_logged_once():
    tables = with_consent()
    first = handle(tables, sealed(S.referral(), HOTLINE))
    again = handle(tables, sealed(S.referral(), HOTLINE))
    assert first.log_put is not None and again.log_put is None
    assert len(again.publish) == 1  # the recipient drops the duplicate by delivery key


# --- refusals ------------------------------------------------------------------------------------

REFUSALS = {
    "consent_missing": (None, {}),
    "consent_expired": (S.consent(validUntil=S.NOW - 1), {}),
    "consent_withdrawn": (withdrawn(S.consent()), {}),
    "purpose_not_consented": (S.consent(purposes=["Referral"]), {}),
    "recipient_not_consented": (S.consent(recipientRoles=["HealthServiceOrganisation"]), {}),
    "cross_border_not_consented": (S.consent(controller=IOM),
                                   {"sender": IOM, "recipient": RECEPTION, "purpose": "Return"}),
    "legal_basis_not_allowed": (None, {"legalBasis": "VitalInterest", "consentId": None,
                                       "consentVersion": None}),
}


@pytest.mark.parametrize("reason", REFUSALS)
def test_a_refusal_goes_back_to_the_sender_with_its_reason_and_is_audited(reason):
    consent, over = REFUSALS[reason]
    sender = over.get("sender", HOTLINE)
    tables = Tables() if consent is None else with_consent(consent, sender)
    referral = S.referral(**over)
    effects = handle(tables, sealed(referral, sender, event_id="ev-r"))
    assert effects.deadletter is None and effects.log_put is None
    assert effects.consent_put is None
    (out,) = effects.publish
    assert (out.topic, out.key) == (topology.agency_inbox(sender), KEY)
    status = opened(out, sender)
    assert status.record_type == "ReferralStatus" and status.header["sender"] == NCC
    assert status.record == {"referralId": referral["referralId"], "state": "refused",
                             "reason": "PolicyRefused", "detail": reason, "setBy": NCC,
                             "at": S.NOW}
    (entry,) = effects.audit
    assert (entry["decision"], entry["reason"], entry["event_id"]) == ("Refused", reason,
                                                                       "ev-r")
    assert (entry["sender"], entry["recipient"]) == (sender, referral["recipientAgency"])
    assert "fields" not in entry  # nothing was forwarded
    assert referral["person"]["firstName"].encode() not in out.value


def test_a_legal_obligation_to_the_police_needs_no_consent_and_is_audited_as_such():
    referral = S.referral(recipient=POLICE, purpose="Prosecution", legalBasis="LegalObligation",
                          consentId=None, consentVersion=None)
    effects = handle(Tables(), sealed(referral, HOTLINE))
    (out,) = effects.publish
    assert out.topic == topology.agency_inbox(POLICE)
    got = opened(out, POLICE).record
    assert got["person"]["identityNumber"] == referral["person"]["identityNumber"]
    assert got["legalBasis"] == "LegalObligation" and got["consentId"] is None
    (entry,) = effects.audit
    assert (entry["decision"], entry["legal_basis"]) == ("Forwarded", "LegalObligation")
    # the same basis to a shelter is not allowed by the policy
    to_shelter = S.referral(purpose="Services", legalBasis="LegalObligation", consentId=None,
                            consentVersion=None)
    refused = handle(Tables(), sealed(to_shelter, HOTLINE))
    assert refused.audit[0]["reason"] == "legal_basis_not_allowed"


# --- consents ------------------------------------------------------------------------------------

def test_a_consent_is_kept_encrypted_and_receipted():
    tables = Tables()
    consent = S.consent()
    effects = handle(tables, sealed(consent, HOTLINE, "Consent", event_id="ev-c"))
    (receipt,) = effects.publish
    assert receipt.topic == topology.agency_inbox(HOTLINE)
    got = opened(receipt, HOTLINE)
    assert got.record_type == "Receipt"
    assert got.record["deliveryKey"] == loop.delivery_key("Consent", consent)
    assert (got.record["eventId"], got.record["outcome"]) == ("ev-c", "Stored")
    assert [(a["decision"], a["sender"]) for a in effects.audit] == [("ConsentRecorded",
                                                                      HOTLINE)]
    key = effects.consent_put[0]
    assert key == domain.consent_key(KEY, HOTLINE, consent["consentId"], S.SECRET)
    assert domain.read_consent(context(), tables.view(), key) == consent



def test_a_consent_is_kept_in_the_compiled_codec_and_one_kept_as_json_is_still_read():
    """The consent table holds the Avro encoding (checked as it is written and read); a value
    an older refmesh wrote as JSON reads the same, and one that breaks the contract fails."""
    consent, tables = S.consent(), Tables()
    key = handle(tables, sealed(consent, HOTLINE, "Consent", event_id="ev-c")).consent_put[0]
    context_ = domain.CONSENT_CONTEXT + key
    held = envelope.unprotect(MESH.keys[NCC], context_, tables.consents[key])
    assert codec.decode(held, "Consent") == ("Consent", consent)
    tables.consents[key] = envelope.protect(MESH.keys[NCC], context_,
                                            json.dumps(consent).encode())
    assert domain.read_consent(context(), tables.view(), key) == consent
    tables.consents[key] = envelope.protect(MESH.keys[NCC], context_,
                                            json.dumps({**consent, "version": "2"}).encode())
    with pytest.raises(RecordError, match="version"):
        domain.read_consent(context(), tables.view(), key)

def test_a_consent_is_replaced_only_by_a_newer_one():
    v1 = S.consent()
    v2 = {**v1, "version": 2, "purposes": ["Referral"]}
    tables = Tables()
    assert handle(tables, sealed(v1, HOTLINE, "Consent", event_id="ev-v1")).consent_put
    resent = handle(tables, sealed(v1, HOTLINE, "Consent", event_id="ev-v1"))  # re-sent
    assert resent.consent_put is None and resent.audit == () and resent.deadletter is None
    assert [opened(p, HOTLINE).record_type for p in resent.publish] == ["Receipt"]
    # the same consent under another event id: an equal version, refused with its reason
    equal = handle(tables, sealed(v1, HOTLINE, "Consent"))
    assert (equal.deadletter, equal.consent_put, equal.publish) == ("consent_not_newer", None,
                                                                     ())
    assert equal.audit[0]["decision"] == "DeadLettered"
    assert handle(tables, sealed(v2, HOTLINE, "Consent")).consent_put is not None
    stale = handle(tables, sealed(v1, HOTLINE, "Consent"))  # arrives late
    assert stale.consent_put is None and stale.deadletter == "consent_version_older"
    held = domain.read_consent(context(), tables.view(),
                               domain.consent_key(KEY, HOTLINE, v1["consentId"], S.SECRET))
    assert held["version"] == 2
    # a referral naming the old version is refused; naming the new one, its purposes apply
    assert handle(tables, sealed(S.referral(), HOTLINE)).audit[0]["reason"] == \
        "consent_version"
    assert handle(tables, sealed(S.referral(consentVersion=2), HOTLINE)).audit[0]["reason"] \
        == "purpose_not_consented"


def test_a_withdrawal_sends_an_erasure_notice_to_every_recipient_and_stops_forwarding():
    consent = S.consent()
    tables = with_consent(consent)
    to_shelter = [S.referral(referral_id=f"r-shelter-{i}") for i in range(2)]
    to_psych = S.referral(referral_id="r-psych", recipient=PSYCH)
    to_police = S.referral(referral_id="r-police", recipient=POLICE, purpose="Prosecution",
                           legalBasis="LegalObligation", consentId=None, consentVersion=None)
    for r in (*to_shelter, to_psych, to_police):
        assert handle(tables, sealed(r, HOTLINE)).audit[0]["decision"] == "Forwarded"
    effects = handle(tables, sealed(withdrawn(consent), HOTLINE, "Consent", event_id="ev-w"))
    receipt, *notices = effects.publish
    assert opened(receipt, HOTLINE).record_type == "Receipt"
    # the police got the case under a legal obligation, not this consent: no notice
    assert [n.topic for n in notices] == [topology.agency_inbox(SHELTER),
                                          topology.agency_inbox(PSYCH)]
    expected = {SHELTER: [r["referralId"] for r in to_shelter], PSYCH: ["r-psych"]}
    ids = set()
    for notice, recipient in zip(notices, (SHELTER, PSYCH)):
        assert notice.key == KEY
        got = opened(notice, recipient)
        assert got.record_type == "ErasureNotice" and got.header["sender"] == NCC
        record = got.record
        assert (record["kind"], record["reason"], record["requestedBy"]) == (
            "Request", "ConsentWithdrawn", NCC)
        assert record["referralIds"] == expected[recipient]
        # the consent id as the recipient's copy names it: pseudonymised for that recipient
        assert record["consentId"] == minimise.pseudonym(S.SECRET, recipient, "consentId",
                                                         consent["consentId"])
        assert consent["consentId"].encode() not in notice.value
        ids.add(record["consentId"])
    assert len(ids) == 2  # two recipients cannot join their notices
    assert [(a["decision"], a.get("recipient"), a.get("reason")) for a in effects.audit] == [
        ("ConsentRecorded", None, None), ("ErasureSent", SHELTER, "consent_withdrawn"),
        ("ErasureSent", PSYCH, "consent_withdrawn")]
    held = domain.read_consent(context(), tables.view(),
                               domain.consent_key(KEY, HOTLINE, consent["consentId"], S.SECRET))
    assert consents.withdrawn_at(held) == S.NOW - 1
    # from now on nothing goes out under this consent
    later = handle(tables, sealed(S.referral(referral_id="r-later"), HOTLINE))
    (status,) = later.publish
    assert opened(status, HOTLINE).record["detail"] == "consent_withdrawn"
    # the withdrawal re-sent: receipted, no second round of notices
    again = handle(tables, sealed(withdrawn(consent), HOTLINE, "Consent", event_id="ev-w"))
    assert len(again.publish) == 1 and again.consent_put is None and again.audit == ()


def test_a_consent_from_another_controller_or_domain_is_dead_lettered():
    assert handle(Tables(), sealed(S.consent(controller=SHELTER), HOTLINE, "Consent")) \
        .deadletter == "sender_mismatch"
    foreign = S.consent(controller=RECEPTION)
    assert handle(Tables(), sealed(foreign, RECEPTION, "Consent")).deadletter == \
        "sender_mismatch"


# --- domain to domain ------------------------------------------------------------------------

def test_a_cross_border_referral_is_minimised_by_the_origin_domain_and_forwarded_as_received():
    referral, canaries, consent = canaried(RECEPTION, IOM, "Return")
    tables = with_consent(consent, IOM)
    first = handle(tables, sealed(referral, IOM, event_id="ev-x"), key_of(referral))
    (hop,) = first.publish
    assert (hop.topic, hop.key) == (topology.domain_inbox(ET_NCC), key_of(referral))
    minimised = opened(hop, ET_NCC).record
    kept = S.kept_strings(POLICIES[NCC], "NGO", "Return", "BH", "ET")
    assert {f for c, f in canaries.items() if c in json.dumps(minimised)} == {
        f for f in kept if f in canaries.values()}
    assert first.audit[0]["recipient"] == RECEPTION and first.log_put is not None
    # the ET domain hands it on unchanged: the origin domain decided
    second = handle(Tables(), hop.value, b"any key: it decides nothing here", domain_id=ET_NCC)
    (out,) = second.publish
    got = opened(out, RECEPTION)
    # under the ET domain's key for the subject as the recipient's copy names it
    assert (out.topic, out.key) == (topology.agency_inbox(RECEPTION), key_of(got.record))
    assert got.record == minimised and got.header["sender"] == ET_NCC
    assert got.header["eventId"] == "ev-x"
    (entry,) = second.audit
    assert (entry["decision"], entry["reason"]) == ("Forwarded", "decided_by_origin_domain")
    assert second.log_put is None


# --- dead letters ----------------------------------------------------------------------------

def test_a_forged_origin_is_dead_lettered_and_audited():
    tables = with_consent()
    cases = {
        # a member claiming another member's name
        "sender_mismatch": sealed(S.referral(sender=SHELTER, recipient=HOTLINE), HOTLINE),
        # a sender the directory does not know
        "unknown_sender": sealed(S.referral(sender="BH/GOV/NOBODY"), HOTLINE),
    }
    # a foreign agency skipping its own domain
    skipped = sealed(S.referral(sender=RECEPTION, recipient=SHELTER), RECEPTION)
    for reason, data in [*cases.items(), ("sender_mismatch", skipped)]:
        effects = handle(tables, data)
        assert effects.deadletter == reason and effects.publish == ()
        assert effects.log_put is None and effects.consent_put is None
        (entry,) = effects.audit
        assert (entry["decision"], entry["reason"]) == ("DeadLettered", reason)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize("data, reason", [
    (b"", "malformed"),
    (b"not an envelope at all", "malformed"),
    (sealed(S.referral(), HOTLINE)[:40], "malformed"),
    # flip a bit of the signature's last byte (setting it to 0 would change nothing one time in
    # 16: an Ed25519 signature's last byte is below 0x10)
    (_flip_last(sealed(S.referral(), HOTLINE)), "bad_signature"),
    (sealed(S.referral(), HOTLINE, to=SHELTER), "wrong_recipient"),
], ids=["empty", "not-an-envelope", "truncated", "flipped-signature", "wrong-recipient"])
def test_an_event_that_does_not_open_is_dead_lettered(data, reason):
    effects = handle(Tables(), data)
    assert (effects.deadletter, effects.event_id, effects.publish) == (reason, None, ())
    assert effects.audit == ({"event_id": "unknown", "decision": "DeadLettered",
                              "reason": reason},)


def test_an_event_of_a_type_the_domain_does_not_take_is_dead_lettered():
    erasure = {"noticeId": "n-1", "kind": "Request", "consentId": "c", "referralIds": ["r"],
               "reason": "ConsentWithdrawn", "requestedBy": SHELTER, "at": S.NOW}
    assert handle(Tables(), sealed(erasure, SHELTER, "ErasureNotice")).deadletter == \
        "unexpected_type"
    receipt = {"deliveryKey": "referral:x", "eventId": "e", "outcome": "Stored",
               "receivedBy": SHELTER, "at": S.NOW}
    ignored = handle(Tables(), sealed(receipt, SHELTER, "Receipt", event_id="ev-r"))
    assert ignored == domain.Effects("ev-r")  # receipts: nothing to do, nothing to audit


def test_an_erasure_confirmation_is_audited_and_receipted():
    confirmation = {"noticeId": "n-1", "kind": "Confirmation", "consentId": "ps-0",
                    "referralIds": ["r-1"], "reason": "ConsentWithdrawn",
                    "requestedBy": SHELTER, "at": S.NOW}
    effects = handle(Tables(), sealed(confirmation, SHELTER, "ErasureNotice"))
    (receipt,) = effects.publish
    got = opened(receipt, SHELTER).record
    assert got["deliveryKey"] == f"{loop.delivery_key('ErasureNotice', confirmation)}:{NCC}"
    assert [(a["decision"], a["sender"]) for a in effects.audit] == [("ErasureConfirmed",
                                                                      SHELTER)]
    forged = {**confirmation, "requestedBy": PSYCH}  # confirming for someone else
    assert handle(Tables(), sealed(forged, SHELTER, "ErasureNotice")).deadletter == \
        "unexpected_type"


# --- counting for the regional statistics ---------------------------------------------------

def slots(stage: str, start: int, key: bytes = KEY, m: int = 2) -> list[bytes]:
    """The person's cap slots of ``stage`` in the window starting at ``start``."""
    return aggregate.slot_keys(S.SECRET, key, start, stage, m)


MONTH = aggregate.window_of(S.NOW, "month")  # September 2026


def test_a_decided_referral_is_counted_once_in_coarse_values_only():
    tables = with_consent()
    first = handle(tables, sealed(S.referral(), HOTLINE))
    slot, start, cell = first.counted
    assert start == aggregate.window_of(S.referral()["createdAt"], "month")[0] == MONTH[0]
    assert slot == slots("decision", start)[0]  # the person's first decision slot
    assert tables.counted == {slot: str(start).encode()}  # valued with its window
    assert cell["reportingCountry"] == "BH" and cell["finalStatus"] == "forwarded"
    assert set(v for v in cell.values() if v is not None) <= {
        "BH", "forwarded", *S.referral()["person"]["citizenship"], S.referral()["person"][
            "gender"], *S.referral()["victim"]["typeOfExploitation"], aggregate.UNKNOWN}
    again = handle(tables, sealed(S.referral(), HOTLINE))  # a re-send: forwarded, not counted
    assert again.counted is None and len(again.publish) == 1
    anew = handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-new"))  # new event id
    assert anew.counted is None and len(anew.publish) == 1  # the forwarding log knows it
    refused_in = Tables()  # no consent here: refused, and counted in a decision slot
    refused = handle(refused_in, sealed(S.referral(), HOTLINE, event_id="ev-r"))
    assert refused.counted[0] == slots("decision", start)[0]
    assert refused.counted[2]["finalStatus"] == "refused"
    resent = handle(refused_in, sealed(S.referral(), HOTLINE, event_id="ev-r"))
    assert resent.counted is None and resent.audit == ()  # a re-send: refused again, that's all
    # submitted again under a new event id: decided again, and counted again within the cap
    # (a refused referral leaves nothing in the forwarding log to know it by)
    again_refused = handle(refused_in, sealed(S.referral(), HOTLINE, event_id="ev-r2"))
    assert again_refused.counted[0] == slots("decision", start)[1]
    keyless = handle(with_consent(), sealed(S.referral(), HOTLINE), key=None)
    assert keyless.deadletter == "key_mismatch" and keyless.counted is None  # not decided
    # forwarded once, refused on a re-send after a withdrawal: still counted once
    withdrawn_later = with_consent()
    handle(withdrawn_later, sealed(S.referral(), HOTLINE))
    handle(withdrawn_later, sealed(withdrawn(S.consent()), HOTLINE, "Consent"))
    again_refused = handle(withdrawn_later, sealed(S.referral(), HOTLINE))
    assert again_refused.audit[0]["decision"] == "Refused" and again_refused.counted is None


def referral_n(i: int, recipient: str = SHELTER, at: int = S.NOW) -> dict:
    """The sample person's i-th referral (its own id), created at ``at``."""
    return S.referral(recipient=recipient, referral_id=f"00000000-0000-4000-8000-{i:012d}",
                      created_at=at)


def test_one_person_counts_at_most_m_decisions_per_window():
    """The cap behind the sensitivity (refmesh.aggregate.cap): a third referral of the same
    person in the same month is forwarded but not counted, nor are its outcomes; another
    person, or the same person next month, counts again."""
    tables = with_consent()
    effects = [handle(tables, sealed(referral_n(i), HOTLINE, event_id=f"ev-{i}"))
               for i in range(3)]
    assert all(len(e.publish) == 1 and e.deadletter is None for e in effects)  # forwarded
    assert [e.counted[0] if e.counted else None for e in effects] == [
        *slots("decision", MONTH[0]), None]
    log = domain.read_log(context(), tables.view(), KEY)
    assert [bool(e["cell"]) for e in log] == [True, True, False]  # the third: no cell
    status = samples.status(referral_id=referral_n(2)["referralId"], set_by=SHELTER,
                            state="accepted")
    copy = handle(tables, sealed(status, SHELTER, "ReferralStatus"))
    assert copy.counted is None and len(copy.publish) == 1  # receipted, not counted
    other = S.referral(referral_id="00000000-0000-4000-8000-0000000000ff", n=5)
    tables_other = with_consent(S.consent(subjectId=other["subjectId"]))
    counted = handle(tables_other, sealed(other, HOTLINE), key_of(other)).counted
    assert counted[0] == slots("decision", MONTH[0], key_of(other))[0]
    october = MONTH[1] + DAY
    nxt = handle(tables, sealed(referral_n(3, at=october), HOTLINE, event_id="ev-3",
                                at=october), now=october)
    assert nxt.counted[0] == slots("decision", MONTH[1])[0]


@pytest.mark.parametrize("state", aggregate.OUTCOMES)
def test_an_outcome_copy_is_counted_once_receipted_and_not_audited(state):
    tables = with_consent()
    forwarded = handle(tables, sealed(S.referral(), HOTLINE))
    status = samples.status(set_by=SHELTER, state=state, reason=None)
    effects = handle(tables, sealed(status, SHELTER, "ReferralStatus", event_id="ev-s"))
    assert effects.deadletter is None and effects.audit == ()
    (receipt,) = effects.publish
    assert receipt.topic == topology.agency_inbox(SHELTER)
    got = opened(receipt, SHELTER).record
    assert got["deliveryKey"] == f"{loop.delivery_key('ReferralStatus', status)}:{NCC}"
    slot, start, cell = effects.counted
    assert cell == {**forwarded.counted[2], "finalStatus": state}
    assert aggregate.kind_of(cell) == "outcome"
    assert start == aggregate.window_of(status["at"], "month")[0]
    assert slot == slots(aggregate.STAGE_OF[state], start)[0]
    again = handle(tables, sealed(status, SHELTER, "ReferralStatus", event_id="ev-s"))
    assert again.counted is None and len(again.publish) == 1  # receipted again, counted once
    anew = handle(tables, sealed(status, SHELTER, "ReferralStatus", event_id="ev-s2"))
    assert anew.counted is None and len(anew.publish) == 1  # the entry knows the stage


def test_an_outcome_counts_only_for_a_counted_referral_once_per_stage():
    tables = with_consent()
    forwarded = handle(tables, sealed(S.referral(), HOTLINE))
    referral_cell = forwarded.counted[2]
    status = samples.status(referral_id=S.referral()["referralId"], set_by=SHELTER,
                            state="completed")
    copy = handle(tables, sealed(status, SHELTER, "ReferralStatus"))  # with the referral's key
    assert copy.counted[2] == {**referral_cell, "finalStatus": "completed"}
    assert domain.read_log(context(), tables.view(), KEY)[0]["counted"] == ["end"]
    # a second end for the same referral (failed after completed): not counted again
    failed = handle(tables, sealed({**status, "state": "failed", "reason": "Other"}, SHELTER,
                                   "ReferralStatus"))
    assert failed.counted is None and len(failed.publish) == 1
    accepted = handle(tables, sealed({**status, "state": "accepted"}, SHELTER,
                                     "ReferralStatus"))  # the response stage: counted
    assert accepted.counted[2]["finalStatus"] == "accepted"
    # another agency's outcome for that referral, one without the key, one for a referral
    # the domain never counted: receipted, never counted
    elsewhere = handle(tables, sealed({**status, "setBy": PSYCH, "state": "accepted"}, PSYCH,
                                      "ReferralStatus"))
    keyless = handle(tables, sealed({**status, "state": "rejected", "reason": "Other"},
                                    SHELTER, "ReferralStatus"), key=None)
    unknown = handle(Tables(), sealed(status, SHELTER, "ReferralStatus"))
    for effects in (elsewhere, keyless, unknown):
        assert effects.counted is None and len(effects.publish) == 1


def test_one_person_counts_at_most_m_outcomes_of_a_stage_per_window():
    """Outcomes count in the window they were set in: four referrals of one person over two
    months (two counted in each) all accepted in October count twice there, not four times."""
    tables = with_consent()
    october = MONTH[1] + DAY
    for i, at in enumerate([S.NOW, S.NOW, october, october]):
        effects = handle(tables, sealed(referral_n(i, at=at), HOTLINE, event_id=f"ev-{i}",
                                        at=at), now=at)
        assert effects.counted is not None
    later = october + 3600_000
    counted = []
    for i in range(4):
        status = samples.status(referral_id=referral_n(i)["referralId"], set_by=SHELTER,
                                state="accepted", at=later)
        counted.append(handle(tables, sealed(status, SHELTER, "ReferralStatus", at=later),
                              now=later).counted)
    assert [c[0] if c else None for c in counted] == [*slots("response", MONTH[1]), None,
                                                      None]


@pytest.mark.parametrize("status, signer, reason", [
    (samples.status(set_by=SHELTER, state="received"), SHELTER, "not_an_outcome"),
    (samples.status(set_by=PSYCH, state="accepted"), SHELTER, "sender_mismatch"),
    (samples.status(set_by=RECEPTION, state="accepted"), RECEPTION, "sender_mismatch"),
])
def test_a_status_that_is_no_outcome_copy_of_a_member_is_dead_lettered(status, signer, reason):
    effects = handle(Tables(), sealed(status, signer, "ReferralStatus"))
    assert effects.deadletter == reason and effects.counted is None


# --- the tables at rest ----------------------------------------------------------------------

def test_protected_table_values_and_keys_never_hold_the_ids_in_clear():
    referral, canaries, consent = canaried(SHELTER)
    tables = with_consent(consent)
    handle(tables, sealed(referral, HOTLINE), key_of(referral))
    handle(tables, sealed(withdrawn(consent), HOTLINE, "Consent"), key_of(referral))
    stored = list(tables.consents.items()) + list(tables.log.items())
    assert len(stored) == 2
    assert len(tables.seen) == 3 + 1 + 1  # three events, their expiry index, the cursor
    for key, value in stored + list(tables.seen.items()):
        for clear in (consent["consentId"], consent["subjectId"], referral["referralId"],
                      SHELTER, *canaries):
            assert clear.encode() not in value, clear
            assert clear.encode() not in key, clear
    # a value does not open under another key (bound as associated data)
    (ckey, cvalue), = tables.consents.items()
    with pytest.raises(SealError):
        envelope.unprotect(MESH.keys[NCC], b"consent|" + key_of(referral) + b"|other", cvalue)
    assert envelope.unprotect(MESH.keys[NCC], b"consent|" + ckey, cvalue)


def test_audit_entries_append_to_a_valid_chain():
    tables = with_consent()
    head, chain = audit.Head(), []
    for data in (sealed(S.referral(), HOTLINE), b"junk",
                 sealed(S.referral(recipient=POLICE), HOTLINE)):
        for entry in handle(tables, data).audit:
            record, head = audit.append(head, at=S.NOW, domain=NCC, **entry)
            chain.append(record)
    assert audit.verify(chain) is None
    decoded = [codec.decode(r, expect="AuditRecord")[1] for r in chain]
    assert [(d["decision"], d["reason"]) for d in decoded] == [
        ("Forwarded", None), ("DeadLettered", "malformed"), ("Refused", "no_rule")]
