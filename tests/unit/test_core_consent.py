"""Consent evaluation: every refusal reason, its boundaries, and the allowed legal bases."""
from __future__ import annotations

import pytest

from refmesh import consent as consents
from refmesh.decisions import REASONS, Deny
from tests import policy_samples as S

POLICY = S.load()
M = S.MEMBERS
NOW = S.NOW


def check(referral=None, consent="default", recipient=S.SHELTER, sender=S.HOTLINE, now=NOW,
          policy=POLICY):
    referral = referral or S.referral(recipient=recipient, sender=sender)
    consent = S.consent() if consent == "default" else consent
    return consents.check(referral, consent, M[recipient], M[sender], policy, now)


def reason(*args, **kwargs) -> str | None:
    result = check(*args, **kwargs)
    return result.reason if isinstance(result, Deny) else result


def test_a_valid_consent_permits():
    assert check() is None


@pytest.mark.parametrize("case, expected", [
    ({"consent": None}, "consent_missing"),
    ({"referral": S.referral(consentId=None)}, "consent_missing"),
    ({"consent": S.consent(consentId="consent-other")}, "consent_mismatch"),
    ({"consent": S.consent(subjectId="subj-other")}, "consent_mismatch"),
    ({"consent": S.consent(version=2)}, "consent_version"),
    ({"referral": S.referral(consentVersion=2)}, "consent_version"),
    ({"consent": S.consent(validFrom=NOW + 1)}, "consent_not_yet_valid"),
    ({"consent": S.consent(validUntil=NOW)}, "consent_expired"),
    ({"consent": S.consent(purposes=["Referral"])}, "purpose_not_consented"),
    ({"consent": S.consent(recipientRoles=["NGO"], recipientAgencies=[S.PSYCH])},
     "recipient_not_consented"),
    ({"recipient": S.RECEPTION, "sender": S.IOM, "consent": S.consent(controller=S.IOM)},
     "cross_border_not_consented"),
    ({"recipient": S.RECEPTION, "sender": S.IOM,
      "consent": S.consent(controller=S.IOM, crossBorder=True, crossBorderCountries=["PH"])},
     "cross_border_not_consented"),
    ({"recipient": S.RECEPTION, "sender": S.IOM,
      "consent": S.consent(controller=S.IOM, crossBorder=False, crossBorderCountries=["ET"])},
     "cross_border_not_consented"),
    # a consent that another agency recorded (controls): its sender may not rely on it
    ({"consent": S.consent(controller=S.SHELTER)}, "consent_not_controller"),
    ({"recipient": S.RECEPTION, "sender": S.IOM}, "consent_not_controller"),
])
def test_every_refusal_reason(case, expected):
    assert reason(**case) == expected
    assert expected in REASONS


def test_withdrawal_at_or_before_now_refuses():
    withdrawn = S.consent(events=S.consent()["events"] + [
        {"type": "Withdrawn", "at": NOW, "channel": "Phone", "recordedBy": S.HOTLINE}])
    assert consents.withdrawn_at(withdrawn) == NOW
    assert reason(consent=withdrawn) == "consent_withdrawn"
    assert reason(consent=withdrawn, now=NOW - 1) is None  # not yet withdrawn then


def test_the_earliest_withdrawal_counts_and_wins_over_validity():
    events = S.consent()["events"] + [
        {"type": "Withdrawn", "at": NOW - 5, "channel": "Phone", "recordedBy": S.HOTLINE},
        {"type": "Amended", "at": NOW - 3, "channel": "InPerson", "recordedBy": S.HOTLINE},
        {"type": "Withdrawn", "at": NOW - 1, "channel": "Written", "recordedBy": S.HOTLINE}]
    c = S.consent(events=events, validUntil=NOW - 2)
    assert consents.withdrawn_at(c) == NOW - 5
    assert reason(consent=c) == "consent_withdrawn"
    assert consents.withdrawn_at(S.consent()) is None


def test_validity_boundaries():
    assert reason(consent=S.consent(validFrom=NOW)) is None
    assert reason(consent=S.consent(validUntil=NOW + 1)) is None
    assert reason(consent=S.consent(validUntil=NOW)) == "consent_expired"


def test_a_recipient_is_covered_by_its_agency_id_or_its_role():
    by_agency = S.consent(recipientRoles=[], recipientAgencies=[S.SHELTER])
    by_role = S.consent(recipientRoles=["CentralGovernmentOrganisation"], recipientAgencies=[])
    assert reason(consent=by_agency) is None and reason(consent=by_role) is None


def test_cross_border_consent_covers_the_named_country():
    ok = S.consent(controller=S.IOM, crossBorder=True, crossBorderCountries=["ET"])
    r = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return")
    assert check(r, ok, S.RECEPTION, S.IOM) is None


def test_an_allowed_legal_basis_needs_no_consent():
    r = S.referral(recipient=S.POLICE, purpose="Prosecution", legalBasis="LegalObligation",
                   consentId=None, consentVersion=None)
    assert check(r, None, S.POLICE) is None
    withdrawn = S.consent(events=[{"type": "Withdrawn", "at": 0, "channel": "Phone",
                                   "recordedBy": S.HOTLINE}])
    assert check(r, withdrawn, S.POLICE) is None  # the obligation does not rest on consent


def test_a_legal_basis_the_policy_does_not_allow_for_the_role_is_refused():
    r = S.referral(recipient=S.SHELTER, legalBasis="LegalObligation")
    d = check(r, S.consent(), S.SHELTER)
    assert d.reason == "legal_basis_not_allowed"
    assert "does not allow LegalObligation for CentralGovernmentOrganisation (only for " \
           "LawEnforcement)" in d.detail
    r = S.referral(recipient=S.SHELTER, legalBasis="VitalInterest")
    assert reason(r, recipient=S.SHELTER) == "legal_basis_not_allowed"
    r = S.referral(recipient=S.PSYCH, legalBasis="VitalInterest")
    assert reason(r, None, recipient=S.PSYCH) is None


def test_details_never_carry_case_values():
    r = S.referral()
    c = S.consent(consentId="consent-secret-id")
    d = check(r, c)
    assert d.reason == "consent_mismatch"
    for value in ("consent-secret-id", r["consentId"], r["subjectId"]):
        assert value not in d.detail


def test_deny_rejects_unknown_reasons():
    with pytest.raises(ValueError):
        Deny("because")


# --- which consent may replace the one held: versions never go backwards ----------------------

def _withdrawn(consent: dict, at: int = NOW) -> dict:
    return {**consent, "events": [*consent["events"], {
        "type": "Withdrawn", "at": at, "channel": "Phone", "recordedBy": consent["controller"]}]}


V1 = S.consent()
V2 = {**V1, "version": 2, "purposes": ["Referral"],
      "events": [*V1["events"], {"type": "Amended", "at": NOW - 10, "channel": "InPerson",
                                 "recordedBy": S.HOTLINE}]}


@pytest.mark.parametrize("held, incoming, expected", [
    (None, V1, None),  # the first one
    (V1, V2, None),  # a newer version, its history extending the held one
    (V1, _withdrawn(V1), None),  # a withdrawal: an event appended, the same version
    (V2, _withdrawn(V2), None),
    (V2, V1, "consent_version_older"),  # an older version never comes back
    (_withdrawn(V1), V1, "consent_not_newer"),  # the copy from before the withdrawal
    (V1, V1, "consent_not_newer"),  # equal
    (V1, {**V1, "purposes": ["Referral"]}, "consent_not_newer"),  # widened without a version
    (V1, {**_withdrawn(V1), "recipientRoles": ["NGO"]}, "consent_not_newer"),
    (_withdrawn(V1), {**V2, "events": V2["events"]}, "consent_history_rewritten"),  # withdrawal
    (V1, {**V2, "events": []}, "consent_history_rewritten"),                 # dropped
    (V1, {**V2, "controller": S.SHELTER}, "consent_controller_changed"),
])
def test_a_consent_replaces_the_held_one_only_if_newer_and_append_only(held, incoming, expected):
    assert consents.change_problem(held, incoming) == expected


def test_a_withdrawal_can_never_be_undone_by_a_later_version():
    withdrawn = _withdrawn(V1, at=NOW - 5)
    later = {**withdrawn, "version": 2, "events": [*withdrawn["events"], {
        "type": "Given", "at": NOW, "channel": "InPerson", "recordedBy": S.HOTLINE}]}
    assert consents.change_problem(withdrawn, later) is None  # accepted, but still withdrawn:
    assert consents.withdrawn_at(later) == NOW - 5
    assert reason(consent=later, referral=S.referral(consentVersion=2)) == "consent_withdrawn"
