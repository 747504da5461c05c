"""The case worker's pages with aiohttp's test server: sending with the policy preview first (the
same answer as `refmesh policy explain`), validation messages next to their fields, the inbox
and a received referral, answering it, the outbox timeline with a refusal by policy, consent
recorded and withdrawn, erasure notices, and English or Arabic (right to left) per user."""
from __future__ import annotations

import json
import re
from html import unescape

from click.testing import CliRunner

from cli import cli
from kafkaedge.loading import now_ms
from refmesh import samples
from tests.unit.test_web_security import pairs, valid_send
from tests.unit.webfix import HOTLINE, NCC, PASSWORD, SHELTER, deliver

DAY = 86_400_000


def error_at(page_text: str, name: str) -> str:
    """The message shown next to the input ``name`` (which must be marked invalid)."""
    ident = name.replace(".", "-")
    assert re.search(rf'id="f-{ident}"[^>]*aria-invalid="true"', page_text) or re.search(
        rf'id="f-{ident}"[^>]*aria-describedby="[^"]*err-{ident}', page_text), name
    found = re.search(rf'<p class="error" id="err-{ident}">([^<]*)</p>', page_text)
    assert found, f"no message next to {name}"
    return unescape(found.group(1))


def pre_lines(page_text: str) -> list[str]:
    block = re.search(r'<pre dir="ltr">(.*?)</pre>', page_text, re.S).group(1)
    return unescape(block).rstrip("\n").split("\n")


# --- sending ------------------------------------------------------------------------------------

def test_the_preview_is_the_answer_of_refmesh_policy_explain(hotline, tmp_path):
    consent = hotline.consent(1)
    c = hotline.signed_in()
    data = valid_send(c.get("/send").csrf, consent["consentId"], **{
        "person.birthdate": "1998-04-17", "person.identityNumber": "EP0000000",
        "needs.medicalNotes": "Needs a doctor", "person.citizenship": "et, ph"})
    page = c.post("/send", pairs(data))
    assert page.status == 200
    assert "What Shelter for workers (sample) will receive" in page.text
    assert "The policy allows this referral: legal basis Consent; rules shelter-services" \
        in page.text
    shown = pre_lines(page.text)
    # the same referral and consent through the command line
    draft = {"referralId": "preview", "caseRef": "HL-2026-00042", "subjectId": "subj-000001",
             "senderAgency": HOTLINE, "recipientAgency": SHELTER, "trmStage": "FirstAssistance",
             "purpose": "Services", "legalBasis": "Consent",
             "consentId": consent["consentId"], "consentVersion": 1, "createdAt": 0,
             "service": {"reason": "AdditionalServicesRequired", "services": [],
                         "urgency": "Urgent"},
             "person": {"firstName": "Hana", "birthdate": "1998-04-17", "gender": None,
                        "citizenship": ["ET", "PH"], "primaryLanguage": "amh",
                        "identityNumber": "EP0000000"},
             "needs": {"medicalNotes": "Needs a doctor"}}
    (tmp_path / "r.json").write_text(json.dumps(draft))
    (tmp_path / "c.json").write_text(json.dumps(consent))
    files = hotline.files
    result = CliRunner().invoke(cli, [
        "policy", "explain", "--referral", str(tmp_path / "r.json"), "--consent",
        str(tmp_path / "c.json"), "--policy", hotline.settings.policy,
        "--directory", str(files.directory), "--anchor", str(files.anchor)])
    assert result.exit_code == 0, result.output
    assert shown == result.output.rstrip("\n").split("\n")
    # and in words for the case worker: what she filled in that will not go
    withheld = page.text.split("will be withheld")[1].split("Every field")[0]
    assert "Identity or passport number" in withheld and "Health needs" in withheld
    assert "Date of birth" in page.text.split("will be sent")[1].split("will be withheld")[0]


def test_sending_needs_the_preview_of_exactly_what_is_sent(hotline):
    consent = hotline.consent(1)
    c = hotline.signed_in()
    data = valid_send(c.get("/send").csrf, consent["consentId"])
    unseen = c.post("/send", pairs({**data, "action": "send"}))
    assert unseen.status == 409 and "You changed the form after the preview" in unseen.text
    preview = c.post("/send", pairs(data))
    changed = c.post("/send", pairs({**data, "person.firstName": "Dewi", "action": "send",
                                     "digest": preview.digest}))
    assert changed.status == 409 and 'value="Dewi"' in changed.text
    assert hotline.gateway.store.referrals("out") == []
    sent = c.post("/send", pairs({**data, "person.firstName": "Dewi", "action": "send",
                                  "digest": changed.digest}))
    assert sent.status == 200 and "is stored and on its way to Shelter for workers" in sent.text
    [row] = hotline.gateway.store.referrals("out")
    assert sent.url.endswith(f"/referrals/{row['referral_id']}")
    stored = hotline.gateway.store.referral(row["referral_id"])["record"]
    assert stored["person"]["firstName"] == "Dewi" and stored["subjectId"] == "subj-000001"
    assert (stored["consentId"], stored["consentVersion"]) == (consent["consentId"], 1)
    assert stored["senderAgency"] == HOTLINE and stored["victim"] is None


def test_a_referral_the_policy_would_refuse_is_not_sent(hotline):
    consent = hotline.consent(1)  # services and referral only
    c = hotline.signed_in()
    data = valid_send(c.get("/send").csrf, consent["consentId"], purpose="Prosecution")
    page = c.post("/send", pairs(data))
    assert "The policy domain would refuse this referral" in page.text
    assert "purpose_not_consented" in page.text and 'value="send"' not in page.text
    forced = c.post("/send", pairs({**data, "action": "send", "digest": "x"}))
    assert forced.status == 409 and hotline.gateway.store.referrals("out") == []


def test_without_a_policy_file_the_page_says_so_and_still_sends(mesh_files, tmp_path,
                                                                  monkeypatch):
    from tests.unit.webfix import open_web
    fix = open_web(mesh_files, HOTLINE, tmp_path, monkeypatch, policy="")
    try:
        consent = fix.consent(1)
        c = fix.signed_in()
        data = valid_send(c.get("/send").csrf, consent["consentId"])
        page = c.post("/send", pairs(data))
        assert "has no policy file configured" in page.text
        sent = c.post("/send", pairs({**data, "action": "send", "digest": page.digest}))
        assert sent.status == 200 and len(fix.gateway.store.referrals("out")) == 1
    finally:
        fix.close()


def test_validation_messages_sit_next_to_their_fields(hotline):
    consent = hotline.consent(1)
    c = hotline.signed_in()
    csrf = c.get("/send").csrf
    page = c.post("/send", pairs(valid_send(csrf, "", **{
        "recipientAgency": "", "legalBasis": "Consent", "person.birthdate": "17/04/1998",
        "person.citizenship": "Ethiopia", "person.primaryLanguage": "Amharic",
        "person.numberOfChildren": "two", "service.dueDate": "soon"})))
    assert page.status == 400
    assert "Some fields need attention" in page.text
    assert error_at(page.text, "recipientAgency") == "This is required."
    assert error_at(page.text, "consentId").startswith("Choose the consent")
    assert error_at(page.text, "person.birthdate").startswith("Write a date as YYYY-MM-DD")
    assert error_at(page.text, "service.dueDate").startswith("Write a date")
    assert error_at(page.text, "person.citizenship").startswith("Write ISO 3166")
    assert error_at(page.text, "person.primaryLanguage").startswith("Write an ISO 639")
    assert error_at(page.text, "person.numberOfChildren") == "Write a whole number."
    assert 'href="#f-person-birthdate"' in page.text  # the summary links to the field
    assert 'value="17/04/1998"' in page.text  # what was typed stays
    # a choice the contract does not know (a tampered form): the contract's error, placed
    tampered = c.post("/send", pairs(valid_send(csrf, consent["consentId"],
                                                **{"person.gender": "Unknown"})))
    assert "is not one of Feminine" in error_at(tampered.text, "person.gender")
    other = c.post("/send", pairs(valid_send(csrf, consent["consentId"],
                                             subjectId="subj-someone-else")))
    assert error_at(other.text, "subjectId").startswith("This is not the person")
    nobody = c.post("/send", pairs(valid_send(csrf, consent["consentId"],
                                              recipientAgency="BH/GOV/NOBODY")))
    assert error_at(nobody.text, "recipientAgency").startswith("Choose the recipient")


# --- receiving ----------------------------------------------------------------------------------

def test_the_inbox_lists_newest_first_with_status_urgency_stage_and_due_date(shelter):
    shelter.arrive(1)
    shelter.clock.now += 60_000
    shelter.arrive(2, trmStage="LongTermAssistance", service={
        "reason": "Other", "services": ["Shelter"], "urgency": "Emergency",
        "dueDate": "2026-12-02", "details": None})
    page = shelter.signed_in().get("/inbox")
    rows = re.findall(r"<tr class=\"urgency-(\w+)\">(.*?)</tr>", page.text, re.S)
    assert [u for u, _ in rows] == ["Emergency", "Urgent"]
    first = rows[0][1]
    for text in ("Trafficking hotline (sample)", "Received", "Emergency",
                 "Long term assistance", "2026-12-02"):
        assert text in first, text


def test_a_received_referral_shows_exactly_what_arrived(shelter):
    referral = samples.referral(referral_id="ref-min", sender=HOTLINE, recipient=SHELTER,
                                created_at=shelter.clock(), n=4)
    keep = {"firstName", "gender", "primaryLanguage", "ageBand"}
    referral["person"] = {k: (v if k in keep else None) for k, v in referral["person"].items()}
    referral["person"]["ageBand"] = "25-29"
    referral["victim"] = None
    referral["service"]["details"] = None
    assert deliver(shelter.gateway, "e-min", "Referral", NCC, referral, shelter.clock()).new
    page = shelter.signed_in().get("/referrals/ref-min")
    assert page.status == 200
    received = page.text.split('class="card record"', 1)[1]
    for shown in (referral["person"]["firstName"], "25-29", "Feminine", "amh",
                  "Social care, Health", "Shelter"):
        assert shown in received, shown
    for absent in ("Identity or passport number", "Mobile phone", "Trafficking status"):
        assert absent not in received, absent
    note = re.search(r"This is exactly what your agency received\. (\d+) other fields were "
                     r"withheld by the policy of National Committee", page.text)
    assert note and int(note.group(1)) > 20
    missing = page.text.split('class="missing"')[1].split("</details>")[0]
    assert "Identity or passport number" in missing and "Trafficking status" in missing


def test_accept_then_progress_then_complete_and_reject_needs_a_reason(shelter):
    rid = shelter.arrive(1)["referralId"]
    other = shelter.arrive(2)["referralId"]
    c = shelter.signed_in()
    page = c.get(f"/referrals/{rid}")
    assert [s for s in re.findall(r'name="state" value="(\w+)"', page.text)] == [
        "accepted", "rejected"]
    for state, label in (("accepted", "Accepted"), ("in_progress", "In progress"),
                         ("completed", "Completed")):
        done = c.post(f"/referrals/{rid}/status", {"csrf": page.csrf, "state": state})
        assert done.status == 200 and f"Status changed to “{label}”" in done.text
    assert shelter.gateway.store.referral(rid)["state"] == "completed"
    assert "This referral is closed" in c.get(f"/referrals/{rid}").text
    late = c.post(f"/referrals/{rid}/status", {"csrf": page.csrf, "state": "failed"})
    assert late.status == 409
    bare = c.post(f"/referrals/{other}/status", {"csrf": page.csrf, "state": "rejected"})
    assert bare.status == 400 and error_at(bare.text, "reason-rejected") == "This is required."
    assert shelter.gateway.store.referral(other)["state"] == "received"
    c.post(f"/referrals/{other}/status", {"csrf": page.csrf, "state": "rejected",
                                          "reason": "LackOfCapacity"})
    last = shelter.gateway.store.referral(other)["history"][-1]
    assert (last["state"], last["reason"]) == ("rejected", "LackOfCapacity")
    assert shelter.gateway.store.delivery_state(
        f"status:{other}:rejected:{HOTLINE}") == "pending"


def test_the_outbox_shows_each_timeline_and_a_refusal_with_its_reason(hotline):
    consent = hotline.consent(1)
    sent = hotline.gateway.submit_referral(samples.referral(
        referral_id="ref-ok", sender=HOTLINE, recipient=SHELTER, created_at=hotline.clock(),
        n=1, consentId=consent["consentId"]))
    refused = hotline.gateway.submit_referral(samples.referral(
        referral_id="ref-no", sender=HOTLINE, recipient=SHELTER, created_at=hotline.clock(),
        n=9))
    gateway, now = hotline.gateway, now_ms() + 1000  # the gateway stamps with the clock
    for i, state in enumerate(("received", "accepted"), start=1):
        assert deliver(gateway, f"s{i}", "ReferralStatus", SHELTER, samples.status(
            sent["referralId"], state, SHELTER, now + i), now + i).new
    assert deliver(gateway, "s9", "ReferralStatus", NCC, samples.status(
        refused["referralId"], "refused", NCC, now, reason="PolicyRefused",
        detail="consent_missing"), now).new
    page = hotline.signed_in().get("/outbox")
    cards = page.text.split('<article class="card sent')[1:]
    assert len(cards) == 2
    ok = next(card for card in cards if "ref-ok" in card)
    assert re.findall(r'state-(\w+)">', ok) == ["accepted", "requested", "received",
                                                 "accepted"]
    no = next(card for card in cards if "ref-no" in card)
    assert "Refused by policy" in no and "consent_missing" in no
    assert "the policy domain holds no consent for this person" in no


# --- consent ------------------------------------------------------------------------------------

def consent_form(csrf: str, **over) -> dict:
    data = {"csrf": csrf, "subjectId": "subj-web-7", "givenBy": "Person",
            "method": "VerbalWithInterpreter", "channel": "InPerson", "language": "amh",
            "noticeVersion": "2026-01", "purposes": ["Services", "Referral"],
            "recipientAgencies": [SHELTER], "recipientRoles": ["NGO"],
            "dataCategories": ["Identity", "SupportNeeds"], "validFrom": "2026-01-01",
            "validUntil": "", "crossBorderCountries": ""}
    data.update(over)
    return data


def test_consent_is_recorded_offered_for_sending_and_withdrawn(hotline):
    c = hotline.signed_in()
    csrf = c.get("/consents").csrf
    bad = c.post("/consents", pairs(consent_form(csrf, purposes=[], language="Amharic",
                                                 crossBorderCountries="ET",
                                                 validUntil="2025-01-01")))
    assert bad.status == 400
    assert error_at(bad.text, "purposes") == "This is required."
    assert error_at(bad.text, "language").startswith("Write an ISO 639")
    assert error_at(bad.text, "crossBorderCountries").startswith("Tick")
    assert error_at(bad.text, "validUntil").startswith("The end of validity")
    ok = c.post("/consents", pairs(consent_form(csrf, crossBorder="on",
                                                crossBorderCountries="et",
                                                validUntil="2099-12-31")))
    assert ok.status == 200 and "is recorded and on its way to the policy domain" in ok.text
    [stored] = hotline.gateway.store.consents()
    assert stored["crossBorderCountries"] == ["ET"] and stored["controller"] == HOTLINE
    assert stored["recipientAgencies"] == [SHELTER] and stored["validUntil"] > hotline.clock()
    assert stored["events"][0]["channel"] == "InPerson" and stored["method"] == \
        "VerbalWithInterpreter"
    assert "in force" in ok.text
    assert stored["consentId"] in c.get("/send").text
    cid = stored["consentId"]
    unconfirmed = c.post(f"/consents/{cid}/withdraw", {"csrf": csrf, "channel": "Phone"})
    assert unconfirmed.status == 400
    assert error_at(unconfirmed.text, f"withdraw-{cid}").startswith("Tick this box")
    done = c.post(f"/consents/{cid}/withdraw", {"csrf": csrf, "channel": "Phone",
                                                "confirm": "yes"})
    assert done.status == 200 and "is withdrawn: nothing more is forwarded" in done.text
    event = hotline.gateway.store.consent(cid)["events"][-1]
    assert (event["type"], event["channel"]) == ("Withdrawn", "Phone")
    assert cid not in c.get("/send").text  # no longer offered
    again = c.post(f"/consents/{cid}/withdraw", {"csrf": csrf, "channel": "Phone",
                                                 "confirm": "yes"})
    assert again.status == 400
    assert re.search(rf'id="err-withdraw-{cid}">[^<]*already withdrawn', again.text)


def test_erasure_notices_are_shown_and_confirmed(shelter):
    rid = shelter.arrive(1)["referralId"]
    notice = {"noticeId": "notice-1", "kind": "Request", "consentId": "ps-0011",
              "referralIds": [rid], "reason": "ConsentWithdrawn", "requestedBy": NCC,
              "at": shelter.clock()}
    assert deliver(shelter.gateway, "e-er", "ErasureNotice", NCC, notice, shelter.clock()).new
    c = shelter.signed_in()
    assert c.get(f"/referrals/{rid}").status == 404  # erased by the gateway
    page = c.get("/erasures")
    assert "Erasure request from National Committee" in page.text and rid in page.text
    done = c.post("/erasures/notice-1/confirm", {"csrf": page.csrf})
    assert "your confirmation is recorded" in done.text and "Confirmed by amal" in done.text
    assert c.post("/erasures/unknown/confirm", {"csrf": page.csrf}).status == 404


# --- languages ----------------------------------------------------------------------------------

def test_arabic_is_right_to_left_and_kept_per_user(hotline):
    hotline.web.accounts.add_user("sami", PASSWORD, hotline.clock())
    c = hotline.signed_in()
    page = c.get("/inbox")
    assert '<html lang="en" dir="ltr">' in page.text
    arabic = c.post("/language", {"csrf": page.csrf, "lang": "ar", "next": "/inbox"})
    assert arabic.url.endswith("/inbox")
    assert '<html lang="ar" dir="rtl">' in arabic.text
    assert "الإحالات الواردة" in arabic.text and "تسجيل الخروج" in arabic.text
    assert 'lang="en"' in arabic.text  # the switch back names itself in English
    again = hotline.signed_in()  # a new session of the same user
    assert 'dir="rtl"' in again.get("/send").text
    assert "إرسال إحالة" in again.get("/send").text
    assert 'dir="ltr"' in hotline.signed_in("sami").get("/inbox").text
    fresh = hotline.client()  # before signing in, a cookie remembers the choice
    signin = fresh.get("/signin")
    fresh.post("/language", {"csrf": signin.csrf, "lang": "ar", "next": "/signin"})
    assert '<html lang="ar" dir="rtl">' in fresh.get("/signin").text


def test_arabic_validation_messages(hotline):
    consent = hotline.consent(1)
    c = hotline.signed_in()
    csrf = c.get("/inbox").csrf
    c.post("/language", {"csrf": csrf, "lang": "ar", "next": "/send"})
    page = c.post("/send", pairs(valid_send(csrf, consent["consentId"],
                                            **{"person.birthdate": "yesterday"})))
    assert error_at(page.text, "person.birthdate").startswith("اكتب التاريخ")


def test_a_wrong_time_zone_is_refused_by_name(mesh_files, tmp_path, monkeypatch):
    import pytest

    from refmesh.errors import ConfigError
    from tests.unit.webfix import open_web
    with pytest.raises(ConfigError, match="web_timezone 'Mars/Olympus' is not an IANA"):
        open_web(mesh_files, HOTLINE, tmp_path, monkeypatch, web_timezone="Mars/Olympus")


def test_times_are_shown_in_the_configured_zone(mesh_files, tmp_path, monkeypatch):
    from tests.unit.webfix import Clock, open_web
    fix = open_web(mesh_files, SHELTER, tmp_path, monkeypatch, clock=Clock(1_795_000_000_000),
                   web_timezone="Asia/Bahrain")
    try:
        fix.arrive(1)  # 2026-11-18 11:06:40 UTC
        page = fix.signed_in().get("/inbox")
        assert "2026-11-18 14:06" in page.text and "Times are shown in Asia/Bahrain" in page.text
    finally:
        fix.close()
