"""The web page's defences: CSRF tokens on every form, escaping of everything shown (script tags
planted in every field), security headers against clickjacking and sniffing, no case data in
URLs or in the logs."""
from __future__ import annotations

import logging
import re

import pytest

from gateways.web import forms
from refmesh import samples
from tests.unit.webfix import HOTLINE, NCC, PASSWORD, SHELTER, deliver

SCRIPT = '<script>alert("x")</script>'
BREAKOUT = '"><img src=x onerror=alert(1)>'
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def pairs(data: dict) -> list[tuple[str, str]]:
    out = []
    for k, v in data.items():
        out += [(k, x) for x in v] if isinstance(v, list) else [(k, v)]
    return out


def valid_send(csrf: str, consent_id: str, **over) -> dict:
    data = {"csrf": csrf, "recipientAgency": SHELTER, "purpose": "Services",
            "trmStage": "FirstAssistance", "legalBasis": "Consent", "consentId": consent_id,
            "caseRef": "HL-2026-00042", "person.firstName": "Hana",
            "person.primaryLanguage": "amh", "service.reason": "AdditionalServicesRequired",
            "service.urgency": "Urgent", "action": "preview"}
    data.update(over)
    return data


def assert_escaped(text: str, *payloads: str) -> None:
    assert "<script" not in text.lower(), "a script tag came back unescaped"
    assert "<img" not in text.lower() and "onerror=alert" not in text.replace(
        "onerror=alert(1)&gt;", ""), "markup came back unescaped"
    for p in payloads:
        assert p not in text


# --- headers -----------------------------------------------------------------------------------

def test_security_headers_on_every_kind_of_page(hotline):
    c = hotline.client()
    pages = [c.get("/signin"), c.get("/inbox")]  # the sign-in page, and a 401
    c.signin()
    pages += [c.get("/inbox"), c.get("/referrals/nope"),  # 404
              c.post("/consents", {"csrf": "wrong"}), c.get("/static/style.css")]  # 403, CSS
    assert [p.status for p in pages] == [200, 401, 200, 404, 403, 200]
    for page in pages:
        for name, value in HEADERS.items():
            assert page.headers.get(name) == value, (page.url, name)
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "script-src" not in csp  # no script at all: default-src 'none' covers it
    assert pages[-1].headers["Content-Type"].startswith("text/css")


def test_the_api_keeps_its_token_and_its_own_answers(hotline):
    c = hotline.client()
    assert c.get("/v1/outbox").status == 401
    token = {"Authorization": f"Bearer {hotline.gateway.api_token}"}
    assert c.get("/v1/outbox", headers=token).status == 200
    assert c.get("/healthz").status in (200, 503)  # no token needed, no data (not started)


# --- CSRF -------------------------------------------------------------------------------------

def test_every_form_refuses_a_missing_or_foreign_token_and_changes_nothing(hotline):
    consent = hotline.consent(1)
    rid = hotline.arrive(1)["referralId"]
    c = hotline.signed_in()
    other = hotline.signed_in()
    foreign = other.get("/inbox").csrf  # a real token, of another session
    forms_ = {
        "/send": valid_send("", consent["consentId"], action="send"),
        "/consents": {"subjectId": "subj-9", "givenBy": "Person", "method": "Written",
                      "channel": "InPerson", "language": "ara", "noticeVersion": "1",
                      "purposes": "Services", "validFrom": "2026-01-01"},
        f"/consents/{consent['consentId']}/withdraw": {"channel": "InPerson", "confirm": "yes"},
        f"/referrals/{rid}/status": {"state": "accepted"},
        "/erasures/n-1/confirm": {},
        "/language": {"lang": "ar", "next": "/inbox"},
        "/signout": {},
    }
    for path, data in forms_.items():
        for token in (None, "", "forged-token", foreign):
            body = dict(data)
            if token is not None:
                body["csrf"] = token
            else:
                body.pop("csrf", None)
            page = c.post(path, pairs(body))
            assert page.status == 403, (path, token)
            assert "This form has expired" in page.text
    assert hotline.gateway.store.referrals("out") == []
    assert [x["consentId"] for x in hotline.gateway.store.consents()] == [consent["consentId"]]
    assert hotline.gateway.store.consent(consent["consentId"])["events"][-1]["type"] == "Given"
    assert hotline.gateway.store.referral(rid)["state"] == "received"
    assert c.get("/inbox").status == 200 and 'lang="en"' in c.get("/inbox").text


def test_the_sign_in_form_has_a_token_before_any_session(hotline):
    c = hotline.client()
    page = c.get("/signin")
    for token in ("", "forged"):
        refused = c.post("/signin", {"csrf": token, "username": "amal", "password": PASSWORD})
        assert refused.status == 403
    stranger = hotline.client()  # a token of another browser's sign-in page does not fit
    assert stranger.post("/signin", {"csrf": page.csrf, "username": "amal",
                                     "password": PASSWORD}).status == 403
    assert c.post("/signin", {"csrf": page.csrf, "username": "amal",
                              "password": PASSWORD}).status == 200


# --- XSS ---------------------------------------------------------------------------------------

def test_script_tags_in_every_field_of_the_send_form_come_back_escaped(hotline):
    consent = hotline.consent(1)
    c = hotline.signed_in()
    csrf = c.get("/send").csrf
    text_fields = [n for n, f in forms.REFERRAL_FIELDS.items()
                   if f.kind in ("text", "textarea", "list", "date", "int")]
    assert len(text_fields) > 25
    data = valid_send(csrf, consent["consentId"])
    data.update({name: SCRIPT + BREAKOUT for name in text_fields})
    page = c.post("/send", pairs(data))
    assert page.status == 400
    assert_escaped(page.text, SCRIPT, BREAKOUT)
    assert page.text.count("&lt;script&gt;") >= len(text_fields)
    # every choice tampered with: the contract's message quotes the value, escaped
    for name, f in forms.REFERRAL_FIELDS.items():
        if f.kind in ("select", "checks", "recipient", "consent"):
            tampered = valid_send(csrf, consent["consentId"], **{name: SCRIPT + BREAKOUT})
            page = c.post("/send", pairs(tampered))
            assert page.status in (400, 409), name
            assert_escaped(page.text, SCRIPT, BREAKOUT)


def test_script_tags_in_text_that_was_stored_are_shown_escaped(hotline):
    c = hotline.signed_in()
    csrf = c.get("/consents").csrf
    recorded = c.post("/consents", pairs({
        "csrf": csrf, "subjectId": SCRIPT, "givenBy": "Person", "method": "Written",
        "channel": "InPerson", "language": "ara", "noticeVersion": SCRIPT + BREAKOUT,
        "purposes": ["Services"], "recipientRoles": ["CentralGovernmentOrganisation"],
        "dataCategories": ["Identity"], "validFrom": "2026-01-01"}))
    assert recorded.status == 200, recorded.text
    assert_escaped(recorded.text, SCRIPT)
    assert "&lt;script&gt;" in recorded.text
    consent = hotline.gateway.store.consents()[0]
    send = c.get("/send")  # the consent is offered by its (planted) subject id
    assert_escaped(send.text, SCRIPT)
    data = valid_send(send.csrf, consent["consentId"], **{
        name: SCRIPT for name, f in forms.REFERRAL_FIELDS.items()
        if f.kind in ("text", "textarea") and name not in forms.LANGUAGE_FIELDS
        and name not in forms.COUNTRY_FIELDS and name != "subjectId"})
    preview = c.post("/send", pairs(data))
    assert preview.status == 200, re.findall(r'class="error"[^<]*<', preview.text)
    assert_escaped(preview.text, SCRIPT)
    sent = c.post("/send", pairs({**data, "action": "send", "digest": preview.digest}))
    assert sent.status == 200 and "/referrals/" in sent.url
    assert_escaped(sent.text, SCRIPT)
    assert sent.text.count("&lt;script&gt;") >= 10
    assert_escaped(c.get("/outbox").text, SCRIPT)


def test_a_received_referral_with_script_tags_everywhere_is_shown_escaped(shelter):
    referral = samples.referral(referral_id="ref-xss", sender=HOTLINE, recipient=SHELTER,
                                created_at=shelter.clock(), n=3)
    for key in ("caseRef", "subjectId", "senderCaseWorker", "consentId"):
        referral[key] = SCRIPT
    for section in ("service", "person", "victim", "needs"):
        for key, value in referral[section].items():
            name = f"{section}.{key}"
            if name in forms.REFERRAL_FIELDS and forms.REFERRAL_FIELDS[name].kind in (
                    "select", "checks"):
                continue
            if isinstance(value, str):
                referral[section][key] = SCRIPT + BREAKOUT
            elif isinstance(value, list):
                referral[section][key] = [SCRIPT, BREAKOUT]
    assert deliver(shelter.gateway, "event-xss", "Referral", NCC, referral,
                   shelter.clock()).new
    c = shelter.signed_in()
    assert_escaped(c.get("/inbox").text, SCRIPT)
    page = c.get("/referrals/ref-xss")
    assert page.status == 200
    assert_escaped(page.text, SCRIPT, BREAKOUT)
    assert page.text.count("&lt;script&gt;") >= 20


# --- no case data in URLs or logs ------------------------------------------------------------

ALLOWED_LINK = re.compile(
    r"/(inbox|send|outbox|consents|erasures|access|accounts|signin|signout|language|"
    r"static/style\.css)?(#\w+)?|/referrals/[\w.-]+(/status|/assign)?|/accounts/[\w.-]+"
    r"|/consents/[\w.-]+/withdraw|/erasures/[\w.-]+/confirm"
    r"|/send#preview|/consents#record|#[\w-]+")


def test_pages_put_only_ids_in_urls_and_every_form_posts(hotline):
    consent = hotline.consent(1)
    hotline.arrive(1)
    c = hotline.signed_in()
    sent = c.post("/send", pairs(valid_send(c.get("/send").csrf, consent["consentId"])))
    pages = [sent] + [c.get(p) for p in ("/inbox", "/outbox", "/consents", "/erasures")]
    pages.append(c.get(re.search(r'href="(/referrals/[^"]+)"', pages[1].text).group(1)))
    for page in pages:
        assert page.status == 200
        assert "?" not in page.url
        for link in re.findall(r'(?:href|action)="([^"]*)"', page.text):
            assert ALLOWED_LINK.fullmatch(link), link
        methods = re.findall(r"<form[^>]*>", page.text)
        assert methods and all('method="post"' in f for f in methods)
        assert "Hana" not in " ".join(re.findall(r'(?:href|action)="([^"]*)"', page.text))


def test_the_logs_carry_no_case_data_and_no_password(hotline, caplog):
    canary = "CANARY-9f3b"
    caplog.set_level(logging.DEBUG)
    c = hotline.client()
    c.signin(password="wrong " + PASSWORD)
    c.signin()
    csrf = c.get("/consents").csrf
    c.post("/consents", pairs({
        "csrf": csrf, "subjectId": f"subj-{canary}", "givenBy": "Person", "method": "Written",
        "channel": "InPerson", "language": "ara", "noticeVersion": canary,
        "purposes": ["Services"], "recipientRoles": ["CentralGovernmentOrganisation"],
        "dataCategories": ["Identity", "Demographics"], "validFrom": "2026-01-01"}))
    consent = hotline.gateway.store.consents()[0]
    data = valid_send(c.get("/send").csrf, consent["consentId"], **{
        "person.firstName": canary, "person.secondName": canary, "caseRef": canary,
        "service.details": canary, "victim.caseComment": canary, "needs.objectives": canary})
    preview = c.post("/send", pairs(data))
    c.post("/send", pairs({**data, "action": "send", "digest": preview.digest}))
    c.post("/send", pairs({**data, "person.birthdate": canary}))  # a validation error
    assert len(hotline.gateway.store.referrals("out")) == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "web: referral" in logged and "web sign-in" in logged
    assert canary not in logged and PASSWORD not in logged


@pytest.mark.parametrize("path", ["/referrals/x", "/consents/x/withdraw"])
def test_an_unknown_id_is_a_calm_404(hotline, path):
    c = hotline.signed_in()
    page = c.get(path) if path.startswith("/referrals") else c.post(
        path, {"csrf": c.get("/inbox").csrf, "confirm": "yes", "channel": "InPerson"})
    assert page.status == 404 and "There is no such referral or consent" in page.text
