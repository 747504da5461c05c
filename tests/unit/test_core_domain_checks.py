"""The domain's checks against a malicious member (docs/security-model.md), on
``refmesh.domain.handle`` with dict-backed tables: the Kafka key and partition derived from the
signed subject id; replays refused and re-sends recognised; consents that belong to their
controller and never go back; erasure notices that name one sender's referrals only.

Every refusal: a dead letter with its reason, an audit record, nothing published, nothing
stored; and the next genuine event still goes through."""
from __future__ import annotations

import pytest

from refmesh import domain, envelope, replay, samples, topology
from tests import policy_samples as S
from tests.domainfix import (ET_NCC, HOTLINE, IOM, KEY, NCC, PSYCH, RECEPTION, SHELTER, Tables,
                             context, handle, key_of, opened, sealed, with_consent, withdrawn)

DAY = S.DAY


def refused(effects: domain.Effects, reason: str) -> None:
    """A dead letter with ``reason``, its audit record, and nothing else."""
    assert effects.deadletter == reason
    assert effects.audit == ({"event_id": effects.event_id or "unknown",
                              "decision": "DeadLettered", "reason": reason},)
    assert (effects.publish, effects.consent_put, effects.log_put, effects.counted,
            effects.seen_put) == ((), None, None, None, ())


def goes_through(tables: Tables, n: int = 0) -> None:
    """The next genuine referral of the sample person is forwarded to the shelter."""
    effects = handle(tables, sealed(S.referral(referral_id=f"r-next-{n}"), HOTLINE))
    assert effects.audit[0]["decision"] == "Forwarded", effects.audit
    assert [p.topic for p in effects.publish] == [topology.agency_inbox(SHELTER)]


# --- item 3: the Kafka key and partition come from the signed subject id ----------------------

@pytest.mark.parametrize("record_type", ["Referral", "Consent"])
@pytest.mark.parametrize("key", [None, b"", b"0" * 32, KEY + b"x",
                                 topology.partition_key(b"another secret", "subj-000000")])
def test_a_referral_or_consent_under_another_key_is_refused(record_type, key):
    tables = with_consent()
    record = S.referral() if record_type == "Referral" else S.consent(version=2)
    refused(handle(tables, sealed(record, HOTLINE, record_type), key), "key_mismatch")
    goes_through(tables)


def test_a_referral_in_another_partition_than_its_key_gives_is_refused():
    tables = with_consent()
    right = topology.partition_of(KEY, 4)
    refused(handle(tables, sealed(S.referral(), HOTLINE), partition=(right + 1) % 4,
                   partitions=4), "partition_mismatch")
    effects = handle(tables, sealed(S.referral(), HOTLINE), partition=right, partitions=4)
    assert effects.audit[0]["decision"] == "Forwarded"


def test_kafkas_default_partitioner_is_the_one_computed():
    from kafka.partitioner.default import murmur2  # the clients' own, for comparison

    for n in range(200):
        key = topology.partition_key(b"k", f"subj-{n}")
        assert topology.partition_of(key, 7) == (murmur2(key) & 0x7FFFFFFF) % 7
    assert topology.partition_of(b"", 3) == (murmur2(b"") & 0x7FFFFFFF) % 3


def test_without_the_partition_secret_no_members_event_is_accepted():
    ctx = domain.Context(context().keys, context().directory, context().policy, S.SECRET, S.NOW)
    effects = domain.handle(sealed(S.consent(), HOTLINE, "Consent"), KEY, ctx, Tables().view())
    refused(effects, "key_unverifiable")


def test_the_authority_checks_come_before_the_key():
    """A referral claiming another sender is a sender_mismatch, whatever its key (the reason
    names the worse problem)."""
    effects = handle(Tables(), sealed(S.referral(sender=SHELTER), HOTLINE), b"wrong")
    refused(effects, "sender_mismatch")


def test_a_hand_over_from_another_domain_goes_on_under_this_domains_key():
    referral = S.referral(sender=IOM, recipient=RECEPTION, purpose="Return")
    first = handle(with_consent(S.consent(controller=IOM, crossBorder=True,
                                          crossBorderCountries=["ET"]), IOM),
                   sealed(referral, IOM), key_of(referral))
    (hop,) = first.publish
    for key in (hop.key, b"anything", None):  # the BH key: ET cannot derive it, and ignores it
        (out,) = handle(Tables(), hop.value, key, domain_id=ET_NCC).publish
        assert out.key == key_of(opened(out, RECEPTION).record)


# --- item 4: replays refused, re-sends recognised ------------------------------------------

def test_a_re_send_of_a_forwarded_referral_is_forwarded_again_without_a_second_decision():
    tables = with_consent()
    referral = S.referral()
    first = handle(tables, sealed(referral, HOTLINE, event_id="ev-1"))
    assert first.audit[0]["decision"] == "Forwarded" and first.seen_put
    remembered = dict(tables.seen)
    # the gateway re-seals the outbox entry a minute later, with the same event id
    resend = sealed(referral, HOTLINE, at=S.NOW + 60_000, event_id="ev-1")
    again = handle(tables, resend, now=S.NOW + 60_000)
    assert again.deadletter is None and again.audit == ()  # no second audit record
    assert (again.log_put, again.counted, again.seen_put) == (None, None, ())
    (out,) = again.publish  # the recipient answers with its receipt again
    assert out.topic == topology.agency_inbox(SHELTER)
    assert opened(out, SHELTER).header["eventId"] == "ev-1"
    assert tables.seen == remembered


def test_an_accepted_event_id_with_other_content_is_a_replay():
    tables = with_consent()
    handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1"))
    for changed in (S.referral(recipient=PSYCH), S.referral(referral_id="r-other"),
                    {**S.referral(), "purpose": "Return"}):
        refused(handle(tables, sealed(changed, HOTLINE, event_id="ev-1")), "replay")
    # a consent under a referral's id is a replay too (ids are per sender, not per type)
    refused(handle(tables, sealed(S.consent(version=2), HOTLINE, "Consent", event_id="ev-1")),
            "replay")
    goes_through(tables)


def test_another_sender_may_use_the_same_event_id():
    """Event ids are unique per sender: the hotline's ev-1 does not block the
    psychologist's (nobody can squat another sender's ids)."""
    tables = with_consent()
    handle(tables, sealed(S.consent(controller=PSYCH), PSYCH, "Consent"))
    assert handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1")).audit[0][
        "decision"] == "Forwarded"
    effects = handle(tables, sealed(S.referral(sender=PSYCH), PSYCH, event_id="ev-1"))
    assert effects.audit[0]["decision"] == "Forwarded"


def test_a_re_send_of_a_refused_referral_gets_its_refusal_again():
    tables = Tables()  # no consent: refused
    first = handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1"))
    assert first.audit[0]["reason"] == "consent_missing"
    with_consent_now = handle(tables, sealed(S.consent(), HOTLINE, "Consent"))
    assert with_consent_now.consent_put is not None
    again = handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1"))
    assert again.audit == () and again.counted is None  # not decided again
    (status,) = again.publish
    assert opened(status, HOTLINE).record["detail"] == "consent_missing"


@pytest.mark.parametrize("record_type, record, sender", [
    ("Consent", S.consent(), HOTLINE),
    ("ReferralStatus", samples.status(set_by=SHELTER, state="completed"), SHELTER),
    ("ErasureNotice", {"noticeId": "n-1", "kind": "Confirmation", "consentId": "ps-0",
                       "referralIds": ["r-1"], "reason": "ConsentWithdrawn",
                       "requestedBy": SHELTER, "at": S.NOW}, SHELTER),
])
def test_a_re_sent_consent_outcome_or_confirmation_gets_its_receipt_again(record_type, record,
                                                                         sender):
    tables = Tables()
    first = handle(tables, sealed(record, sender, record_type, event_id="ev-1"))
    assert first.deadletter is None
    again = handle(tables, sealed(record, sender, record_type, event_id="ev-1"))
    assert (again.deadletter, again.audit, again.counted, again.consent_put) == (
        None, (), None, None)
    (receipt,) = again.publish
    got = opened(receipt, sender)
    assert got.record_type == "Receipt" and got.record["eventId"] == "ev-1"


def test_a_dead_lettered_event_is_not_remembered():
    tables = Tables()
    refused(handle(tables, sealed(S.consent(), HOTLINE, "Consent", event_id="ev-1"), b"x"),
            "key_mismatch")
    assert tables.seen == {}
    assert handle(tables, sealed(S.consent(), HOTLINE, "Consent", event_id="ev-1")).consent_put


def test_an_event_id_is_forgotten_after_the_envelopes_maximum_age():
    tables = with_consent(S.consent(validUntil=None))
    handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1"))
    later = S.NOW + envelope.MAX_AGE_MS + 1
    reused = sealed(S.referral(recipient=PSYCH), HOTLINE, at=later, event_id="ev-1")
    effects = handle(tables, reused, now=later)
    assert effects.deadletter is None  # a new event as far as anyone can tell
    # the original envelope itself can no longer open: too old
    refused(handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-1"), now=later),
            "too_old")


def test_a_referral_sealed_before_a_withdrawal_is_refused_after_it():
    """The hotline's referral was forwarded; the person withdrew; the original envelope comes
    back (replayed, under the right key or any other). Dead-lettered and audited; the hotline
    gets no refusal (it had the recipient's receipt) and nothing is forwarded."""
    consent = S.consent()
    tables = with_consent(consent)
    original = sealed(S.referral(), HOTLINE, event_id="ev-1")
    assert handle(tables, original).audit[0]["decision"] == "Forwarded"
    later = S.NOW + 3_600_000
    withdrawal = sealed(withdrawn(consent, at=later - 1), HOTLINE, "Consent", at=later)
    assert handle(tables, withdrawal, now=later).consent_put is not None
    refused(handle(tables, original, now=later), "sealed_before_withdrawal")
    refused(handle(tables, original, b"re-keyed", now=later), "key_mismatch")
    # the gateway's own re-send, re-sealed after the withdrawal: refused without a status
    resend = sealed(S.referral(), HOTLINE, at=later, event_id="ev-1")
    refused(handle(tables, resend, now=later), "consent_withdrawn")
    # a referral of another person still goes through
    other = S.referral(referral_id="r-other", subjectId="subj-other", consentId="c-other")
    handle(tables, sealed(S.consent(subjectId="subj-other", consentId="c-other"), HOTLINE,
                          "Consent", at=later), key_of(other), now=later)
    effects = handle(tables, sealed(other, HOTLINE, at=later), key_of(other), now=later)
    assert effects.audit[0]["decision"] == "Forwarded"


# --- item 5: consents belong to their controller ----------------------------------------------

def test_a_non_controller_cannot_withdraw_or_widen_a_consent():
    consent = S.consent(recipientRoles=["CentralGovernmentOrganisation"])
    tables = with_consent(consent)
    # signed by the shelter, naming the hotline as controller
    refused(handle(tables, sealed(withdrawn(consent), SHELTER, "Consent")), "sender_mismatch")
    # the shelter's "own" consent under the hotline's id, widened, then withdrawn: another
    # consent (the shelter's), the hotline's stays as it was
    widened = {**consent, "controller": SHELTER, "version": 2,
               "recipientRoles": S.consent()["recipientRoles"]}
    assert handle(tables, sealed(widened, SHELTER, "Consent")).consent_put is not None
    own = handle(tables, sealed(withdrawn(widened), SHELTER, "Consent"))
    assert own.consent_put is not None
    assert [opened(p, SHELTER).record_type for p in own.publish] == ["Receipt"]  # no erasure
    goes_through(tables)  # the hotline's consent is not withdrawn
    police = handle(tables, sealed(S.referral(recipient=S.POLICE, purpose="Services"), HOTLINE))
    assert police.audit[0]["reason"] in ("recipient_not_consented", "no_rule")  # not widened
    held = domain.read_consent(context(), tables.view(), domain.consent_key(
        KEY, HOTLINE, consent["consentId"], S.SECRET))
    assert held == consent


def test_a_referral_relies_only_on_a_consent_its_sender_controls():
    tables = with_consent()  # the hotline's consent
    shelter_referral = S.referral(sender=SHELTER, recipient=PSYCH)
    effects = handle(tables, sealed(shelter_referral, SHELTER))
    assert (effects.audit[0]["decision"], effects.audit[0]["reason"]) == ("Refused",
                                                                          "consent_missing")
    handle(tables, sealed(S.consent(controller=SHELTER), SHELTER, "Consent"))
    effects = handle(tables, sealed(shelter_referral, SHELTER))
    assert effects.audit[0]["decision"] == "Forwarded"


def test_an_older_or_equal_consent_version_is_refused_with_its_reason():
    v1 = S.consent()
    v2 = {**v1, "version": 2, "purposes": ["Referral", "Services"]}
    tables = with_consent(v1)
    assert handle(tables, sealed(v2, HOTLINE, "Consent")).consent_put is not None
    refused(handle(tables, sealed(v1, HOTLINE, "Consent")), "consent_version_older")
    refused(handle(tables, sealed({**v2, "purposes": list(S.consent()["purposes"])}, HOTLINE,
                                  "Consent")), "consent_not_newer")
    refused(handle(tables, sealed({**v2, "version": 3, "events": []}, HOTLINE, "Consent")),
            "consent_history_rewritten")
    effects = handle(tables, sealed(S.referral(consentVersion=2), HOTLINE))
    assert effects.audit[0]["decision"] == "Forwarded"


# --- item 9: erasure notices name only the referrals of the agency they go to ------------------

def test_a_withdrawal_erases_only_what_the_controller_sent_and_names_only_that():
    """The hotline and the psychologist each hold a consent with the same id for the same
    person, and both referred her to the shelter. The hotline's withdrawal erases the hotline's
    referral only, and its notice names no referral id of the psychologist's."""
    tables = with_consent()
    handle(tables, sealed(S.consent(controller=PSYCH), PSYCH, "Consent"))
    handle(tables, sealed(S.referral(referral_id="r-hotline"), HOTLINE))
    handle(tables, sealed(S.referral(referral_id="r-psych", sender=PSYCH), PSYCH))
    effects = handle(tables, sealed(withdrawn(S.consent()), HOTLINE, "Consent"))
    receipt, notice = effects.publish
    assert notice.topic == topology.agency_inbox(SHELTER)
    assert opened(notice, SHELTER).record["referralIds"] == ["r-hotline"]
    later = handle(tables, sealed(S.referral(referral_id="r-psych-2", sender=PSYCH), PSYCH))
    assert later.audit[0]["decision"] == "Forwarded"  # the psychologist's consent stands


def test_log_entries_without_their_sender_get_a_notice_each():
    consent = S.consent()
    entries = [{"recipient": SHELTER, "referralId": "r-old-1", "consentId": "consent-000000"},
               {"recipient": SHELTER, "referralId": "r-old-2", "consentId": "consent-000000"},
               {"recipient": SHELTER, "referralId": "r-new", "consentId": "consent-000000",
                "sender": HOTLINE},
               {"recipient": SHELTER, "referralId": "r-x", "consentId": "consent-000000",
                "sender": PSYCH}]
    assert domain._erasures(consent, entries) == {(SHELTER, ""): ["r-new"],
                                                  (SHELTER, "r-old-1"): ["r-old-1"],
                                                  (SHELTER, "r-old-2"): ["r-old-2"]}


def test_replay_keys_and_values_never_hold_ids_in_clear():
    tables = with_consent()
    handle(tables, sealed(S.referral(), HOTLINE, event_id="ev-secret-id"))
    for key, value in tables.seen.items():
        for clear in (b"ev-secret-id", HOTLINE.encode(), S.referral()["referralId"].encode()):
            assert clear not in key and clear not in value
    assert any(replay.read(context().keys, tables.seen.get, key, S.NOW) is not None
               for key in tables.seen if key.startswith(b"e|"))
