"""The decision for one referral: Allow with the minimised record, or Deny with a reason; and
the explanation ``refmesh policy explain`` prints."""
from __future__ import annotations

import yaml

from refmesh import codec, decide, minimise, policy
from refmesh.decide import Allow, Deny
from tests import policy_samples as S

BH = S.load()
DIRECTORY = S.directory()


def run(referral, consent="default", now=S.NOW):
    consent = S.consent() if consent == "default" else consent
    return decide.decide(referral, consent, DIRECTORY, BH, now, S.SECRET)


def test_an_allowed_referral_carries_the_projection_and_names_its_fields():
    r = S.referral(recipient=S.PSYCH)
    d = run(r)
    assert isinstance(d, Allow)
    assert (d.basis, d.rules) == ("Consent", ("psych-support",))
    assert d.record["needs"]["medicalNotes"] == r["needs"]["medicalNotes"]
    assert d.record["person"]["secondName"] is None
    assert "needs.medicalNotes" in d.fields and "person.ageBand" in d.fields
    assert "person.secondName" not in d.fields and "person.birthdate" not in d.fields
    assert "caseRef" in d.fields and "subjectId" in d.fields
    codec.encode("Referral", d.record)
    assert r["person"]["birthdate"] == "1998-04-17"  # the input is not changed


def test_consent_categories_narrow_the_record_and_are_named_as_a_rule():
    c = S.consent(dataCategories=["Identity", "Health"])
    d = run(S.referral(recipient=S.PSYCH), c)
    assert d.rules == ("psych-support", "consent:categories")
    assert d.record["person"]["gender"] is None and d.record["person"]["firstName"]
    assert d.record["needs"]["medicalNotes"] and d.record["needs"]["safetyRisk"] is None


def test_an_allowed_legal_basis_is_named_and_ignores_consent_categories():
    r = S.referral(recipient=S.POLICE, purpose="Prosecution", legalBasis="LegalObligation",
                   consentId=None, consentVersion=None)
    d = run(r, None)
    assert isinstance(d, Allow) and d.basis == "LegalObligation"
    assert d.record["person"]["identityNumber"] == r["person"]["identityNumber"]
    assert d.record["consentId"] is None


def test_refusals_are_values():
    assert run(S.referral(), None) == Deny(
        "consent_missing", "the policy domain holds no consent for this person; record the "
                           "consent first")
    assert run(S.referral(recipient=S.POLICE)).reason == "no_rule"
    assert run(S.referral(recipient="BH/GOV/NOBODY")).reason == "unknown_recipient"
    assert run(S.referral(sender="BH/GOV/NOBODY")).reason == "unknown_sender"
    d = run(S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return"),
            S.consent(controller=S.IOM, crossBorder=True, crossBorderCountries=["ET"]))
    assert isinstance(d, Allow) and d.rules == ("reception-return", "bh-to-et-return")
    # a consent another agency recorded: its sender cannot rely on it
    assert run(S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return"),
               S.consent(crossBorder=True, crossBorderCountries=["ET"])).reason == \
        "consent_not_controller"


def test_an_invalid_referral_is_refused_naming_the_field_not_its_value():
    r = S.referral()
    r["person"]["gender"] = "cnry-gender"
    d = run(r)
    assert d.reason == "invalid_referral" and "person.gender" in d.detail
    assert "cnry" not in d.detail


def test_a_date_field_that_holds_no_date_is_refused_not_dropped():
    """Minimisation cannot make an age band of a birth date it cannot read: the domain refuses
    the referral (a gateway of this version refuses it at its API already), naming the field,
    never its value."""
    for section, field in (("person", "birthdate"), ("service", "dueDate")):
        r = S.referral(recipient=S.SHELTER)
        r[section][field] = "cnry-17/04/1998"
        d = run(r)
        assert d.reason == "invalid_referral" and f"Referral.{section}.{field}" in d.detail
        assert "no date" in d.detail and "cnry" not in d.detail
    r = S.referral(recipient=S.SHELTER)
    r["person"]["birthdate"] = None
    assert isinstance(run(r), Allow)


def test_explain_says_when_a_generalised_value_replaces_what_the_sender_filled():
    """shelter-services keeps person.ageBand and generalises person.birthdate: the recipient
    gets the band computed from the birth date, not the sender's band; the line says so."""
    r = S.referral(recipient=S.SHELTER)
    r["person"].update(birthdate="1998-04-17", ageBand="40-44")
    x = decide.explain(r, S.consent(), DIRECTORY, BH, S.NOW, S.SECRET)
    lines = {line.field: line for line in x.lines}
    band = lines["person.ageBand"]
    assert (band.action, band.generalised_from, band.present) == ("keep", "person.birthdate", True)
    assert x.decision.record["person"]["ageBand"] == "25-29"  # what the line says is true
    assert lines["person.birthdate"].generalised_from is None and not lines["person.birthdate"].empty
    row = {line.split()[0]: line.split(None, 1)[1] for line in decide.render(x, BH)[1:]}
    assert row["person.ageBand"].split() == ["keep,", "replaced", "by", "person.birthdate",
                                             "generalised", "shelter-services"]
    # the sender filled no band: the recipient gets one all the same, and the line says so
    r["person"]["ageBand"] = None
    x = decide.explain(r, S.consent(), DIRECTORY, BH, S.NOW, S.SECRET)
    assert {line.field: line for line in x.lines}["person.ageBand"].generalised_from == \
        "person.birthdate"
    row = {line.split()[0]: line.split(None, 1)[1] for line in decide.render(x, BH)[1:]}
    assert row["person.ageBand"].split() == ["keep,", "filled", "with", "person.birthdate",
                                             "generalised", "shelter-services", "(empty", "in",
                                             "this", "referral)"]
    # no birth date: the sender's band goes as it is
    r["person"].update(birthdate=None, ageBand="40-44")
    x = decide.explain(r, S.consent(), DIRECTORY, BH, S.NOW, S.SECRET)
    assert {line.field: line for line in x.lines}["person.ageBand"].generalised_from is None
    assert x.decision.record["person"]["ageBand"] == "40-44"


def test_explain_says_when_a_generalisation_yields_nothing():
    r = S.referral(recipient=S.SHELTER)
    r["person"].update(birthdate="2190-01-01", ageBand="40-44")  # in the future: no band
    x = decide.explain(r, S.consent(), DIRECTORY, BH, S.NOW, S.SECRET)
    lines = {line.field: line for line in x.lines}
    assert lines["person.birthdate"].empty and lines["person.ageBand"].generalised_from is None
    assert x.decision.record["person"]["ageBand"] == "40-44"  # the sender's band, as said
    row = {line.split()[0]: line.split(None, 1)[1] for line in decide.render(x, BH)[1:]}
    assert "(none: no age band from this date)" in row["person.birthdate"]


def test_explain_says_a_dropped_band_is_replaced_too():
    """A rule that drops person.ageBand but generalises the birth date: the recipient still
    gets a band (computed); the line of the sender's band says so."""
    r = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return")
    r["person"]["ageBand"] = "40-44"
    doc = yaml.safe_load(S.SAMPLE_POLICY.read_text())
    doc["cross_border"][0]["fields"]["person.ageBand"] = "drop"
    x = decide.explain(r, S.consent(controller=S.IOM, crossBorder=True,
                                    crossBorderCountries=["ET"]),
                       DIRECTORY, policy.parse(doc), S.NOW, S.SECRET)
    band = {line.field: line for line in x.lines}["person.ageBand"]
    assert (band.action, band.generalised_from) == ("drop", "person.birthdate")
    assert x.decision.record["person"]["ageBand"] == "25-29"


def test_an_invalid_consent_counts_as_missing():
    c = S.consent()
    del c["purposes"]
    d = run(S.referral(), c)
    assert d.reason == "consent_missing" and "Consent.purposes" in d.detail


def test_explain_an_allowed_referral_field_by_field():
    r = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return")
    x = decide.explain(r, S.consent(controller=S.IOM, crossBorder=True,
                                    crossBorderCountries=["ET"],
                                    dataCategories=["Identity", "Demographics", "SupportNeeds"]),
                       DIRECTORY, BH, S.NOW, S.SECRET)
    assert isinstance(x.decision, Allow) and x.recipient["agencyId"] == S.RECEPTION
    by_field = {line.field: line for line in x.lines}
    assert by_field["person.birthdate"].output == ("person.ageBand",)
    text = "\n".join(decide.render(x, BH))
    lines = text.splitlines()
    assert lines[0] == ("forward: legal basis Consent; policy BH/GOV/NCCTIP 2026-11-28.1; rules "
                        "reception-return, bh-to-et-return, consent:categories")
    row = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert row["subjectId"].split() == ["pseudonymise", "always"]
    assert row["referralId"].split() == ["keep", "routing"]
    assert row["person.birthdate"].split() == ["generalise", "->", "person.ageBand",
                                               "bh-to-et-return"]
    assert row["person.identityNumber"].split() == ["pseudonymise", "bh-to-et-return"]
    assert row["victim.typeOfExploitation"].split() == ["drop", "bh-to-et-return"]
    assert row["service.details"].split() == ["drop", "consent:categories"]
    assert row["person.email"] == "dropped: no rule"
    assert row["person.homePhone"].split() == ["dropped:", "no", "rule", "(empty", "in", "this",
                                               "referral)"]
    for value in ("Amina", "1998-04-17", "EP0000000", "Passport withheld", "subj-000000"):
        assert value not in text  # names and rules, never values


def test_explain_a_refused_referral():
    x = decide.explain(S.referral(), S.consent(validUntil=S.NOW - 1), DIRECTORY, BH, S.NOW,
                       S.SECRET)
    assert x.lines == () and x.decision.reason == "consent_expired"
    assert decide.render(x, BH) == [(f"refused: consent_expired (consent expired at "
                                     f"{S.NOW - 1} (epoch ms))")]


def test_plans_are_made_once_per_rule_and_category_set():
    r, m = S.referral(recipient=S.SHELTER), S.MEMBERS
    a = minimise.plan(BH, r, m[S.HOTLINE], m[S.SHELTER], {"Identity"})
    assert a is minimise.plan(BH, r, m[S.HOTLINE], m[S.SHELTER], frozenset({"Identity"}))
    assert a is not minimise.plan(BH, r, m[S.HOTLINE], m[S.SHELTER], None)
    assert a is not minimise.plan(BH, r, m[S.HOTLINE], m[S.SHELTER], {"Identity", "Health"})
    assert minimise.plan(BH, S.referral(recipient=S.HOTLINE), m[S.SHELTER], m[S.HOTLINE],
                         {"Identity"}) is a  # the same rule for another agency of the role
