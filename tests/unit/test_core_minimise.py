"""Minimisation: plans per rule, the allow-list projection checked with a canary in every string
field, cross-border stricter-wins, pseudonyms, age bands, and the projection's validity."""
from __future__ import annotations

import calendar

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from refmesh import codec, fields, minimise, policy, records
from refmesh.decisions import Deny
from tests import policy_samples as S

BH, ET = S.load(), S.load(S.SAMPLE_POLICY_ET)
M = S.MEMBERS
RECIPIENT = "cnry-recipient-zz"


def cases():
    """(policy, sender member, recipient member, purpose) for every rule of both sample
    policies: each national rule for each of its roles and purposes, inside the country, and
    each cross-border rule with every national rule it combines with."""
    out = []
    for pol, home in ((BH, "BH"), (ET, "ET")):
        for rule in pol.rules:
            for role in sorted(rule.roles):
                for purpose in sorted(rule.purposes):
                    out.append((pol, S.member("XX/GOV/S", "NGO", home),
                                S.member(RECIPIENT, role, home), purpose,
                                f"{pol.domain}:{rule.id}:{role}:{purpose}"))
        for crossing in pol.cross_border:
            for to in sorted(crossing.destinations):
                for purpose in sorted(crossing.purposes):
                    for rule in pol.rules:
                        if purpose not in rule.purposes:
                            continue
                        for role in sorted(rule.roles):
                            out.append((pol, S.member("XX/GOV/S", "NGO", crossing.origin),
                                        S.member(RECIPIENT, role, to), purpose,
                                        f"{pol.domain}:{crossing.id}+{rule.id}:{role}"))
    return out


CASES = cases()
CATEGORY_SETS = [None, {"Identity", "SupportNeeds"}, {"Demographics", "Health"}, set()]


def passed_leaves(step: minimise.Step) -> tuple[str, ...]:
    """Leaf fields whose own value the step lets through unchanged."""
    if step.field == fields.ADDRESS:
        return fields.ADDRESS_LEVELS[step.action]
    return (step.field,) if step.action == "keep" else ()


# ids from the sorted names: a set's own order changes with the hash seed, and pytest-xdist's
# workers must collect the same ids
@pytest.mark.parametrize("categories", CATEGORY_SETS,
                         ids=lambda c: "none" if c is None else "+".join(sorted(c)) or "empty")
@pytest.mark.parametrize("pol, sender, recipient, purpose, name", CASES,
                         ids=[c[-1] for c in CASES])
def test_canaries_of_withheld_fields_never_reach_the_recipient(pol, sender, recipient, purpose,
                                                               name, categories):
    referral, canaries = S.canaried(RECIPIENT, purpose=purpose)
    plan = minimise.plan(pol, referral, sender, recipient, categories)
    assert not isinstance(plan, Deny), plan
    projected = minimise.project(referral, plan, RECIPIENT, S.SECRET, S.NOW)
    data = codec.encode("Referral", projected)  # valid against the contract, or this raises
    passed = {leaf for step in plan.steps for leaf in passed_leaves(step)}
    for canary, field in canaries.items():
        present = canary.encode() in data
        assert present == (field in passed), (field, plan.step(
            fields.ADDRESS if field in fields.ADDRESS_FIELDS else field))
    # Every field of the contract is in the plan exactly once, and unnamed fields are dropped.
    assert [s.field for s in plan.steps] == list(fields.PLANNED)
    for step in plan.steps:
        if step.rule is None:
            assert step.action == "drop"
        if categories is not None and step.action != "drop" and step.rule not in (
                minimise.ROUTING_RULE, minimise.ALWAYS_RULE):
            assert fields.CATEGORY[step.field] in categories


def test_generalised_birthdate_leaves_only_the_band():
    referral = S.referral(recipient=S.SHELTER)
    plan = minimise.plan(BH, referral, M[S.HOTLINE], M[S.SHELTER], None)
    assert plan.step("person.birthdate") == minimise.Step("person.birthdate", "generalise",
                                                          "shelter-services")
    projected = minimise.project(referral, plan, S.SHELTER, S.SECRET, S.NOW)
    data = codec.encode("Referral", projected)
    assert b"1998" not in data and b"04-17" not in data
    assert projected["person"]["birthdate"] is None
    assert projected["person"]["ageBand"] == "25-29"  # 28 on 2026-09-21


def test_cross_border_rule_is_applied_on_top_and_the_stricter_action_wins():
    referral = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return")
    national = BH.rule_for("NGO", "Return")
    plan = minimise.plan(BH, referral, M[S.IOM], M[S.RECEPTION], None)
    assert plan.rules == ("reception-return", "bh-to-et-return")
    step = plan.step
    assert national.action("person.birthdate") == "keep"
    assert step("person.birthdate") == minimise.Step("person.birthdate", "generalise",
                                                     "bh-to-et-return")
    assert national.action("person.identityNumber") == "keep"
    assert step("person.identityNumber").action == "pseudonymise"
    # Named by the national rule only: the cross-border rule is an allow-list as well.
    assert national.action("victim.typeOfExploitation") == "keep"
    assert step("victim.typeOfExploitation") == minimise.Step(
        "victim.typeOfExploitation", "drop", "bh-to-et-return")
    assert step("needs.objectives").action == "drop"
    # Kept by both: the national rule decided.
    assert step("person.firstName") == minimise.Step("person.firstName", "keep",
                                                     "reception-return")
    projected = minimise.project(referral, plan, S.RECEPTION, S.SECRET, S.NOW)
    assert projected["victim"] is None
    assert projected["person"]["identityNumber"].startswith("ps-")
    assert projected["person"]["ageBand"] == "25-29" and projected["person"]["birthdate"] is None


def test_two_different_actions_of_one_rank_combine_to_drop():
    doc = yaml.safe_load(S.SAMPLE_POLICY.read_text())
    doc["cross_border"][0]["fields"]["person.birthdate"] = "pseudonymise"  # national: keep
    doc["rules"][4]["fields"]["person.address"] = "city"
    doc["cross_border"][0]["fields"]["person.address"] = "country"
    pol = policy.parse(doc)
    assert pol.rules[4].id == "reception-return"
    referral = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Return")
    plan = minimise.plan(pol, referral, M[S.IOM], M[S.RECEPTION], None)
    assert plan.step("person.birthdate").action == "pseudonymise"  # keep + pseudonymise
    assert plan.step("person.address") == minimise.Step("person.address", "country",
                                                        "bh-to-et-return")
    doc["rules"][4]["fields"]["person.birthdate"] = "generalise"
    plan = minimise.plan(policy.parse(doc), referral, M[S.IOM], M[S.RECEPTION], None)
    assert plan.step("person.birthdate") == minimise.Step(
        "person.birthdate", "drop", "reception-return+bh-to-et-return")


def test_no_rule_and_no_cross_border_rule_are_refused():
    d = minimise.plan(BH, S.referral(recipient=S.POLICE), M[S.HOTLINE], M[S.POLICE], None)
    assert d == Deny("no_rule", "policy 2026-11-28.1 has no rule for LawEnforcement and "
                                "Services")
    immigration = S.member("ET/GOV/IMMIGRATION", "ImmigrationService", "ET")
    r = S.referral(sender=S.IOM, recipient="ET/GOV/IMMIGRATION", purpose="Return")
    assert minimise.plan(BH, r, M[S.IOM], immigration, None).reason == "no_rule"
    # Both policies have a national rule for NGO and Services, but no cross-border rule
    # BH -> ET covers Services.
    r = S.referral(sender=S.IOM, recipient=S.RECEPTION, purpose="Services")
    for pol in (BH, ET):
        d = minimise.plan(pol, r, M[S.IOM], M[S.RECEPTION], None)
        assert d.reason == "no_cross_border_rule" and "from BH to ET for Services" in d.detail


def test_fields_outside_the_consents_categories_are_dropped():
    referral = S.referral(recipient=S.SHELTER)
    plan = minimise.plan(BH, referral, M[S.HOTLINE], M[S.SHELTER], {"Demographics"})
    assert plan.step("person.firstName") == minimise.Step("person.firstName", "drop",
                                                          "consent:categories")
    assert plan.step("person.gender").action == "keep"
    assert plan.step("referralId").action == "keep"  # routing data is not a category
    assert plan.rules == ("shelter-services", "consent:categories")
    projected = minimise.project(referral, plan, S.SHELTER, S.SECRET, S.NOW)
    assert projected["needs"] is None and projected["victim"] is None
    assert projected["person"]["gender"] == "Feminine"
    assert projected["person"]["firstName"] is None


# --- pseudonyms -----------------------------------------------------------------------------

def test_pseudonyms_are_stable_per_recipient_and_differ_across_recipients():
    referral = S.referral(recipient=S.POLICE, purpose="Prosecution")
    a = minimise.pseudonym(S.SECRET, S.POLICE, "subjectId", referral["subjectId"])
    assert a == minimise.pseudonym(S.SECRET, S.POLICE, "subjectId", referral["subjectId"])
    assert a != minimise.pseudonym(S.SECRET, S.SHELTER, "subjectId", referral["subjectId"])
    assert a != minimise.pseudonym(S.SECRET, S.POLICE, "caseRef", referral["subjectId"])
    assert a != minimise.pseudonym(b"\x02" * 32, S.POLICE, "subjectId", referral["subjectId"])
    assert len(a) == 19 and a.startswith("ps-") and int(a[3:], 16) >= 0


def test_pseudonym_known_answer():
    """Changing the derivation would break every recipient's links between its referrals."""
    assert minimise.pseudonym(bytes(32), "BH/GOV/SHELTER", "subjectId", "subj-000000") == \
        "ps-5c2398257e254c88"


def test_two_recipients_cannot_join_their_copies():
    """Nothing that identifies the person is equal across two recipients' copies of her
    referrals, unless a rule keeps it in clear for both."""
    shelter = S.referral(recipient=S.SHELTER)
    psych = S.referral(recipient=S.PSYCH)
    out = []
    for r, to in ((shelter, S.SHELTER), (psych, S.PSYCH)):
        plan = minimise.plan(BH, r, M[S.HOTLINE], M[to], None)
        out.append(minimise.project(r, plan, to, S.SECRET, S.NOW))
    for name in ("subjectId", "consentId", "caseRef"):
        assert out[0][name] != out[1][name]
        assert out[0][name].startswith("ps-")


# --- age bands ------------------------------------------------------------------------------

def at(y: int, m: int, d: int, ms: int = 0) -> int:
    """Epoch ms of midnight UTC on y-m-d, plus ms (calendar, not the core's own arithmetic)."""
    return calendar.timegm((y, m, d, 0, 0, 0)) * 1000 + ms


@pytest.mark.parametrize("birthdate, now, band", [
    ("1998-04-17", at(2028, 4, 16, S.DAY - 1), "25-29"),  # the day before the 30th birthday
    ("1998-04-17", at(2028, 4, 17), "30-34"),  # the birthday itself, from midnight UTC
    ("2000-02-29", at(2025, 2, 28), "20-24"),  # leap-day birthday: 24 until 1 March
    ("2000-02-29", at(2025, 3, 1), "25-29"),
    ("2026-09-21", at(2026, 9, 21), "0-4"),
    ("2026-09-22", at(2026, 9, 21), None),  # in the future
    ("1890-01-01", at(2026, 9, 21), None),  # implausible
    ("1998-02-30", S.NOW, None), ("1998-13-01", S.NOW, None), ("17/04/1998", S.NOW, None),
    ("1998-4-17", S.NOW, None), ("", S.NOW, None), (None, S.NOW, None),
    ("1960-01-01", at(1969, 12, 31), "5-9"),  # before 1970: negative day numbers
])
def test_age_band_boundaries(birthdate, now, band):
    assert minimise.age_band(birthdate, now) == band


@given(st.text(max_size=12) | st.dates().map(str), st.integers(-2**40, 2**43))
def test_age_band_never_raises(birthdate, now):
    band = minimise.age_band(birthdate, now)
    assert band is None or (band.count("-") == 1 and int(band.split("-")[1]) -
                            int(band.split("-")[0]) == 4)


def test_an_invalid_birthdate_generalises_to_null_and_a_senders_band_is_kept_when_named():
    r = S.referral(recipient=S.SHELTER)
    r["person"] = {**r["person"], "birthdate": "unknown", "ageBand": "30-34"}
    plan = minimise.plan(BH, r, M[S.HOTLINE], M[S.SHELTER], None)
    assert minimise.project(r, plan, S.SHELTER, S.SECRET, S.NOW)["person"]["ageBand"] == \
        "30-34"
    r["person"]["birthdate"] = "1998-04-17"  # a computed band wins over the sender's
    assert minimise.project(r, plan, S.SHELTER, S.SECRET, S.NOW)["person"]["ageBand"] == \
        "25-29"
    plan = minimise.plan(BH, r, M[S.HOTLINE], M[S.PSYCH], None)
    r["person"]["birthdate"] = None
    assert minimise.project(r, plan, S.SHELTER, S.SECRET, S.NOW)["person"]["ageBand"] == \
        "30-34"


# --- the projection -------------------------------------------------------------------------

def test_the_projection_is_a_new_valid_referral():
    r = S.referral(recipient=S.POLICE, purpose="Prosecution")
    before = repr(r)
    plan = minimise.plan(BH, r, M[S.HOTLINE], M[S.POLICE], None)
    out = minimise.project(r, plan, S.POLICE, S.SECRET, S.NOW)
    assert repr(r) == before  # the original is untouched
    records.Referral.from_dict(out)
    assert out["caseRef"].startswith("ps-")
    assert out["person"]["citizenship"] == ["ET"] and out["person"]["citizenship"] is not \
        r["person"]["citizenship"]
    assert out["needs"]["medicalNotes"] is None and out["needs"]["safetyRisk"] == "High"
    assert out["victim"]["caseComment"] == r["victim"]["caseComment"]


def test_a_dropped_case_reference_is_empty_not_missing():
    r = S.referral(recipient=S.SHELTER)
    plan = minimise.plan(BH, r, M[S.HOTLINE], M[S.SHELTER], {"Identity"})
    out = minimise.project(r, plan, S.SHELTER, S.SECRET, S.NOW)
    assert out["caseRef"] == "" and out["senderCaseWorker"] is None
    assert out["service"]["details"] is None  # ReferralDetails not consented


def test_project_refuses_pseudonyms_for_another_recipient():
    r = S.referral(recipient=S.SHELTER)
    plan = minimise.plan(BH, r, M[S.HOTLINE], M[S.SHELTER], None)
    with pytest.raises(ValueError):
        minimise.project(r, plan, S.PSYCH, S.SECRET, S.NOW)


OPTIONAL = [n for n in fields.LEAVES if n.split(".")[0] in ("person", "victim", "needs")
            or n in ("senderCaseWorker", "consentId", "consentVersion", "service.details",
                     "service.dueDate")]


@settings(max_examples=150, deadline=None)
@given(absent=st.sets(st.sampled_from(OPTIONAL)),
       null_sections=st.sets(st.sampled_from(["person", "victim", "needs"])),
       delete=st.booleans(), case=st.sampled_from(CASES),
       categories=st.sampled_from(CATEGORY_SETS))
def test_any_subset_of_fields_projects_to_a_valid_referral(absent, null_sections, delete, case,
                                                           categories):
    pol, sender, recipient, purpose, _ = case
    r = S.referral(recipient=RECIPIENT, purpose=purpose)
    for name in absent:
        section, _, leaf = name.rpartition(".")
        holder = r[section] if section else r
        if delete:
            holder.pop(leaf, None)
        else:
            holder[leaf] = None
    for section in null_sections:
        if delete:
            r.pop(section)
        else:
            r[section] = None
    plan = minimise.plan(pol, r, sender, recipient, categories)
    out = minimise.project(r, plan, RECIPIENT, S.SECRET, S.NOW)
    codec.encode("Referral", out)
    assert set(out) == {f["name"] for f in fields.REFERRAL["fields"]}
    assert out == interpreted(r, plan, RECIPIENT, S.SECRET, S.NOW)
    holders = {"": out, **{name: out[name] for name in fields.SECTION_FIELDS}}
    assert plan.carried(out) == tuple(  # the fields the audit names as forwarded
        name for name, section, leaf in plan.outputs
        if isinstance(holders[section], dict) and holders[section].get(leaf) not in (None, ""))



def passed(action: str, value, name: str, recipient_id: str, secret: bytes):
    """What a field of ``action`` keep or pseudonymise passes of ``value`` (nothing for
    another action), as written before the projection was compiled."""
    if action == "keep":
        return list(value) if isinstance(value, (list, tuple)) else value
    if action == "pseudonymise" and value is not None:
        return minimise.pseudonym(secret, recipient_id, name, value)
    return None

def interpreted(referral: dict, plan: minimise.Plan, recipient_id: str, secret: bytes,
                now: int) -> dict:
    """The projection as written before it was compiled (``minimise._compile_projector``): the
    plan's layout walked field by field for every referral, the oracle of the compiled one."""
    out: dict = {}
    band = None
    for name, leaves, action in plan.layout:
        if leaves is None:
            out[name] = passed(action, referral.get(name), name, recipient_id, secret) \
                if action is not None else ("" if name == "caseRef" else None)
            continue
        holder = referral.get(name)
        holder = holder if isinstance(holder, dict) else {}
        given = {}
        for leaf, act, dotted in leaves:
            if act is None:
                given[leaf] = None
            elif act == "keep":
                value = holder.get(leaf)
                given[leaf] = list(value) if isinstance(value, (list, tuple)) else value
            elif act == "generalise":
                band = minimise.age_band(holder.get(leaf), now)
                given[leaf] = None
            else:
                given[leaf] = passed(act, holder.get(leaf), dotted, recipient_id, secret)
        if band is not None and name == "person":
            given["ageBand"] = band
        out[name] = None if name in fields.NULLABLE_SECTIONS and all(
            v is None for v in given.values()) else given
    if out["service"]["services"] is None:
        out["service"]["services"] = []
    return out
