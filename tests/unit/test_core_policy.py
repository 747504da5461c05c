"""The minimisation policy: parsing and validation (errors name file, line and key), combining
national and cross-border actions, and the signed policy file."""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from refmesh import directory, fields, keys, policy, signed_policy
from refmesh.errors import PolicyError
from tests import policy_samples as S

DOMAIN = "BH/GOV/NCCTIP"


def minimal(**top) -> dict:
    doc = {"domain": DOMAIN, "version": "1",
           "rules": [{"id": "shelter", "roles": ["NGO"], "purposes": ["Services"],
                      "fields": {"person.firstName": "keep"}}]}
    doc.update(top)
    return doc


def with_fields(**fields_) -> dict:
    doc = minimal()
    doc["rules"][0]["fields"] = {k.replace("__", "."): v for k, v in fields_.items()}
    return doc


def error(doc, lines=None, **kw) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy.parse(doc, "policy.yaml", lines, **kw)
    return info.value


# --- the sample policies ----------------------------------------------------------------------

def test_the_sample_policies_are_valid():
    bh, et = S.load(), S.load(S.SAMPLE_POLICY_ET)
    assert (bh.domain, et.domain) == ("BH/GOV/NCCTIP", "ET/GOV/NCC")
    assert bh.rule_for("CentralGovernmentOrganisation", "Services").id == "shelter-services"
    assert bh.rule_for("LawEnforcement", "Prosecution").id == "police-prosecution"
    assert bh.rule_for("LawEnforcement", "Services") is None
    assert bh.cross_border_for("BH", "ET", "Return").id == "bh-to-et-return"
    assert bh.cross_border_for("ET", "BH", "Return") is None
    assert bh.allows_basis("LegalObligation", "LawEnforcement")
    assert not bh.allows_basis("LegalObligation", "NGO")


def test_sample_rules_keep_health_notes_and_case_comments_where_they_belong():
    bh = S.load()
    police = bh.rule_for("LawEnforcement", "Prosecution")
    psych = bh.rule_for("HealthServiceOrganisation", "Services")
    assert police.action("needs.medicalNotes") is None  # never to the police
    assert police.action("victim.caseComment") == "keep"
    assert psych.action("needs.medicalNotes") == "keep"
    crossing = bh.cross_border_for("BH", "ET", "Return")
    assert crossing.action("person.identityNumber") == "pseudonymise"
    assert not any(n.startswith("victim.") for n in crossing.fields)
    assert {n for n in crossing.fields if n in fields.FREE_TEXT} == {"service.details"}


# --- validation errors ------------------------------------------------------------------------

def test_unknown_top_level_key_is_named_with_its_line():
    e = error(minimal(rulez=[]), {"rulez": 7})
    assert str(e).startswith("policy.yaml line 7: rulez: unknown key 'rulez'")
    assert "allowed: domain, version, legal_bases, rules, cross_border" in str(e)


def test_unknown_rule_key_suggests_the_right_one():
    doc = minimal()
    doc["rules"][0]["feilds"] = doc["rules"][0].pop("fields")
    e = error(doc, {"rules[0].feilds": 9})
    assert "line 9: rules[0] (shelter).feilds: unknown key 'feilds' (did you mean fields?)" \
        in str(e)


def test_unknown_field_names_the_rule_the_line_and_the_known_fields():
    e = error(with_fields(person__birthdat="keep"), {"rules[0].fields": 5,
                                                     "rules[0].fields.person.birthdat": 14})
    assert str(e).startswith("policy.yaml line 14: rules[0] (shelter).fields: unknown field "
                             "person.birthdat (did you mean person.birthdate?); person has: ")
    assert "birthdate" in str(e) and "address" in str(e) and "mailingCity" not in str(e)
    assert (e.line, e.reason) == (14, "invalid")


def test_line_falls_back_to_the_nearest_enclosing_key():
    e = error(with_fields(person__birthdat="keep"), {"rules[0]": 3, "rules": 2})
    assert " line 3: " in str(e)
    assert error(with_fields(person__birthdat="keep")).line is None


@pytest.mark.parametrize("field, action, says", [
    ("person.gender", "squash", "unknown action 'squash'"),
    ("person.gender", "Keep", "did you mean keep?"),
    ("person.gender", True, "quote it"),
    ("person.gender", "generalise", "only person.birthdate (to an age band) and person.address"),
    ("person.firstName", "generalise", "person.firstName cannot be given generalise"),
    ("person.citizenship", "pseudonymise", "only short text fields"),
    ("needs.medicalNotes", "pseudonymise", "needs.medicalNotes (free text) takes keep, drop"),
    ("person.firstName", "city", "city and country apply to person.address only"),
    ("person.address", "generalise", "write city or country"),
    ("person.address", "pseudonymise", "person.address (group) takes keep, city, country, drop"),
])
def test_bad_actions_are_refused(field, action, says):
    doc = minimal()
    doc["rules"][0]["fields"] = {field: action}
    e = error(doc, {f"rules[0].fields.{field}": 21})
    assert says in str(e) and " line 21: " in str(e)


@pytest.mark.parametrize("field, says", [
    ("referralId", "routing data, always passed"),
    ("service.dueDate", "routing data, always passed"),
    ("subjectId", "always pseudonymised per recipient"),
    ("consentId", "always pseudonymised per recipient"),
    ("person.mailingCity", "write person.address: keep | city | country | drop"),
    ("personal.firstName", "Referral has: caseRef, senderCaseWorker, and the fields of"),
])
def test_fields_a_rule_cannot_name(field, says):
    doc = minimal()
    doc["rules"][0]["fields"] = {field: "keep"}
    assert says in str(error(doc))


@pytest.mark.parametrize("change, says", [
    (lambda d: d.pop("domain"), "domain is required"),
    (lambda d: d.update(domain="Bahrain"), "not an agency id"),
    (lambda d: d.update(version=2026.1), "expected non-empty text, got float 2026.1; quote it"),
    (lambda d: d["rules"][0].update(roles=[]), "the list is empty"),
    (lambda d: d["rules"][0].update(roles="NGO"), "expected a list"),
    (lambda d: d["rules"][0].update(roles=["Police"]), "'Police' is not an agency role"),
    (lambda d: d["rules"][0].update(roles=["NGO", "NGO"]), "NGO appears twice"),
    (lambda d: d["rules"][0].update(purposes=["Service"]), "did you mean Services?"),
    (lambda d: d["rules"][0].update(id="a b"), "rule id 'a b' must be"),
    (lambda d: d["rules"][0].update(id="consent:categories"), "rule id"),
    (lambda d: d["rules"][0].update(fields=["person.firstName"]), "field: action"),
    (lambda d: d.update(legal_bases={"Consent": ["NGO"]}), "legal basis other than Consent"),
    (lambda d: d.update(rules="none"), "expected a list"),
    (lambda d: d.update(cross_border=[{"id": "x", "from": "BH", "to": [False],
                                       "purposes": ["Return"], "fields": {}}]),
     "YAML reads NO, no, yes, on and off as true or false"),
    (lambda d: d.update(cross_border=[{"id": "x", "from": "BH", "to": ["BH"],
                                       "purposes": ["Return"], "fields": {}}]),
     "BH is the origin itself"),
])
def test_schema_errors(change, says):
    doc = minimal()
    change(doc)
    assert says in str(error(doc))


def test_rule_ids_are_unique_across_national_and_cross_border_rules():
    doc = minimal(cross_border=[{"id": "shelter", "from": "BH", "to": ["ET"],
                                 "purposes": ["Return"], "fields": {}}])
    assert "rule id shelter is already used by rules[0]" in str(error(doc))


def test_two_rules_for_the_same_role_and_purpose_are_refused():
    doc = minimal()
    doc["rules"].append({"id": "ngo-too", "roles": ["LawEnforcement", "NGO"],
                         "purposes": ["Services"], "fields": {}})
    e = error(doc, {"rules[1]": 30})
    assert "line 30: rules[1] (ngo-too): NGO for Services is already covered by rule shelter" \
        in str(e)
    doc = minimal(cross_border=[
        {"id": "a", "from": "BH", "to": ["ET"], "purposes": ["Return"], "fields": {}},
        {"id": "b", "from": "BH", "to": ["PH", "ET"], "purposes": ["Return"], "fields": {}}])
    assert "BH -> ET for Return is already covered by rule a" in str(error(doc))


def test_the_policy_must_be_the_expected_domains():
    e = error(minimal(), domain="ET/GOV/NCC")
    assert e.reason == "wrong_domain" and "for BH/GOV/NCCTIP, not ET/GOV/NCC" in str(e)


def test_not_a_mapping():
    assert "expected a mapping" in str(error(["domain"]))
    assert "expected a mapping" in str(error(None))


def test_empty_rules_are_valid_and_refuse_everything():
    p = policy.parse(minimal(rules=[]))
    assert p.rules == () and p.rule_for("NGO", "Services") is None


def test_a_parsed_policy_is_frozen():
    p = S.load()
    with pytest.raises(TypeError):
        p.rules[0].fields["person.email"] = "keep"
    with pytest.raises(AttributeError):
        p.version = "2"


def test_the_input_document_is_not_kept():
    doc = minimal()
    p = policy.parse(doc)
    doc["rules"][0]["fields"]["person.email"] = "keep"
    assert p.rules[0].action("person.email") is None


def test_every_nameable_field_has_a_data_category_and_every_leaf_is_classified():
    assert all(info.category is not None for info in fields.INFO.values())
    planned_leaves = set(fields.PLANNED) - {fields.ADDRESS} | set(fields.ADDRESS_FIELDS)
    assert planned_leaves == set(fields.LEAVES)
    assert set(fields.CATEGORY.values()) <= set(S.ALL_CATEGORIES)


# --- combining actions ------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, result", [
    ("keep", "keep", "keep"), ("keep", "pseudonymise", "pseudonymise"),
    ("generalise", "keep", "generalise"), ("keep", "drop", "drop"),
    ("pseudonymise", "generalise", "drop"), ("city", "country", "country"),
    ("keep", "city", "city"), ("country", "drop", "drop"),
])
def test_the_stricter_action_wins(a, b, result):
    assert policy.stricter(a, b) == policy.stricter(b, a) == result


@given(st.sampled_from(policy.ACTIONS), st.sampled_from(policy.ACTIONS))
def test_stricter_is_commutative_and_never_weaker(a, b):
    c = policy.stricter(a, b)
    assert c == policy.stricter(b, a)
    assert policy.RANK[c] >= max(policy.RANK[a], policy.RANK[b])


# --- the signed policy ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_mesh():
    """Domain keys and a trusted directory listing them (and another domain)."""
    bh, et = keys.generate(DOMAIN, 0), keys.generate("ET/GOV/NCC", 0)
    draft = directory.empty(DOMAIN)
    for k, country in ((bh, "BH"), (et, "ET")):
        draft = directory.add_member(draft, directory.member_entry(
            k, "domain", "CentralGovernmentOrganisation", country, None, 0))
    anchor = directory.TrustAnchor.of(bh)
    trusted = directory.load(directory.sign(draft, bh, S.NOW), anchor, S.NOW)
    return bh, et, draft, trusted


TEXT = S.SAMPLE_POLICY.read_bytes()


def test_a_signed_policy_verifies_and_gives_back_the_exact_text(signed_mesh):
    bh, _, _, trusted = signed_mesh
    data = policy.sign(TEXT, bh, S.NOW)
    text, signer = policy.load_signed(data, trusted, DOMAIN, S.NOW + 1)
    assert text == TEXT
    assert signer == signed_policy.Signer(DOMAIN, bh.signing.key_id, S.NOW)


def _refused(data, trusted, domain=DOMAIN) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        signed_policy.load_signed(data, trusted, domain, S.NOW, source="policy.signed")
    assert str(info.value).startswith("policy.signed: ")
    return info.value


def test_unsigned_or_garbage_is_refused(signed_mesh):
    trusted = signed_mesh[3]
    assert _refused(TEXT, trusted).reason == "unsigned"
    assert _refused(b"\xff\xfe", trusted).reason == "unsigned"
    assert _refused(b'{"format": "other"}', trusted).reason == "unsigned"


def test_every_tampered_byte_of_the_policy_text_is_refused(signed_mesh):
    bh, _, _, trusted = signed_mesh
    doc = json.loads(policy.sign(TEXT, bh, S.NOW))
    for i in range(0, len(doc["policy"]), 97):
        changed = dict(doc, policy=doc["policy"][:i] + chr(ord(doc["policy"][i]) ^ 1)
                       + doc["policy"][i + 1:])
        assert _refused(json.dumps(changed).encode(), trusted).reason == "bad_signature"


@pytest.mark.parametrize("key, value", [("signedAt", S.NOW + 1), ("signature", "00" * 64),
                                         ("signature", "zz"), ("keyId", "sig-0000000000000000")])
def test_tampered_envelope_fields_are_refused(signed_mesh, key, value):
    bh, _, _, trusted = signed_mesh
    doc = dict(json.loads(policy.sign(TEXT, bh, S.NOW)), **{key: value})
    assert _refused(json.dumps(doc).encode(), trusted).reason in ("bad_signature",
                                                                   "unknown_key")


def test_malformed_signed_documents_are_refused(signed_mesh):
    bh, _, _, trusted = signed_mesh
    doc = json.loads(policy.sign(TEXT, bh, S.NOW))
    assert _refused(json.dumps({**doc, "extra": 1}).encode(), trusted).reason == "malformed"
    assert _refused(json.dumps({**doc, "signedAt": "now"}).encode(),
                    trusted).reason == "malformed"
    doubled = json.dumps(doc)[:-1] + ', "policy": "domain: X"}'
    assert _refused(doubled.encode(), trusted).reason == "unsigned"  # repeated key


def test_a_policy_signed_by_another_key_is_refused(signed_mesh):
    _, et, _, trusted = signed_mesh
    impostor = keys.AgencyKeys(DOMAIN, et.signing, et.decryption)  # ET's key, BH's name
    e = _refused(policy.sign(TEXT, impostor, S.NOW), trusted)
    assert e.reason == "unknown_key" and "sign it again" in str(e)


def test_a_policy_for_another_domain_is_refused(signed_mesh):
    _, et, _, trusted = signed_mesh
    e = _refused(policy.sign(TEXT, et, S.NOW), trusted)
    assert e.reason == "wrong_domain" and "signed for ET/GOV/NCC, not for BH/GOV/NCCTIP" in str(e)


def test_a_policy_signed_with_a_revoked_key_is_refused(signed_mesh):
    bh, _, draft, _ = signed_mesh
    revoked = directory.revoke_key(copy.deepcopy(draft), DOMAIN, bh.signing.key_id, S.NOW)
    anchor = directory.TrustAnchor.of(bh)
    trusted = directory.load(directory.sign(revoked, bh, S.NOW), anchor, S.NOW)
    assert _refused(policy.sign(TEXT, bh, S.NOW - 1), trusted).reason == "revoked_key"


def test_the_signed_text_must_also_be_the_signers_policy(signed_mesh):
    """A domain can sign only its own policy: the text names the domain too."""
    _, et, _, trusted = signed_mesh
    text = S.SAMPLE_POLICY_ET.read_bytes()
    e = _refused(policy.sign(text, et, S.NOW), trusted)  # ET's policy, for BH's agents
    assert e.reason == "wrong_domain"
    with pytest.raises(PolicyError, match="for BH/GOV/NCCTIP, not ET/GOV/NCC"):
        policy.parse(yaml.safe_load(TEXT), domain="ET/GOV/NCC")
