"""No identifier of a person or a consent in the logs (issue 14, item 6): a consent id is shared
by every referral of one person (a join key, like the subject id), so neither is ever logged,
nor any case field. Referral ids and event ids are logged: they identify a referral or an
event, not a person (docs/operators.md, The gateway: Logs).

A real gateway (never started: no broker) is driven through its API and its web page with a
canary in the consent id, the subject id and the case fields; its relay then meets a broker that
refuses, one that does not acknowledge, and one that takes everything; no canary is in any log
record, message or traceback."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from kafka.errors import KafkaTimeoutError

from refmesh import samples
from refmesh.errors import failure
from tests.unit.test_web_security import pairs
from tests.unit.webfix import HOTLINE, SHELTER

CANARY = "CNRY7f3e"


class Broker:
    """A producer that refuses sends (``refuse``), leaves them unacknowledged (``unacked``),
    or takes them."""

    def __init__(self, mode: str) -> None:
        self.mode, self.sent = mode, 0

    def send(self, topic, key, value):
        if self.mode == "refuse":
            raise KafkaTimeoutError("broker away")

        def get(timeout):
            if self.mode == "unacked":
                raise KafkaTimeoutError("no acknowledgement")
            self.sent += 1
        return SimpleNamespace(get=get)


def logged(caplog) -> str:
    """Every record's message and traceback, but aiohttp's access log: the test server keeps
    it, the gateway runs without it (gateways/gateway.py serve: access_log=None), as paths
    hold ids."""
    out = []
    for r in caplog.records:
        if r.name == "aiohttp.access":
            continue
        out.append(r.getMessage())
        if r.exc_info:
            out.append(logging.Formatter().formatException(r.exc_info))
        if r.exc_text:
            out.append(r.exc_text)
    return "\n".join(out)


def test_no_consent_id_subject_id_or_case_field_in_the_logs(hotline, caplog):
    caplog.set_level(logging.DEBUG)
    api = hotline.client()
    token = {"Authorization": f"Bearer {hotline.gateway.api_token}"}
    consent_id, subject_id = f"consent-{CANARY}-1", f"subj-{CANARY}-1"
    consent = samples.consent(1, controller=HOTLINE, valid_from=hotline.clock() - 1000)
    consent.update(consentId=consent_id, subjectId=subject_id, noticeVersion=CANARY,
                   recipientRoles=["CentralGovernmentOrganisation"])
    del consent["controller"]
    assert api.post("/v1/consents", json.dumps(consent).encode(), headers=token).status == 202
    referral = samples.referral(sender=HOTLINE, recipient=SHELTER, n=1)
    for name in ("referralId", "senderAgency", "createdAt"):
        referral.pop(name)
    referral.update(consentId=consent_id, subjectId=subject_id, caseRef=f"HL-{CANARY}")
    referral["person"]["firstName"] = CANARY
    answer = api.post("/v1/referrals", json.dumps(referral).encode(), headers=token)
    assert answer.status == 202
    rid = json.loads(answer.text)["referralId"]
    bad = {**referral, "person": {**referral["person"], "birthdate": CANARY}}
    assert api.post("/v1/referrals", json.dumps(bad).encode(), headers=token).status == 422
    assert api.get(f"/v1/consents/{consent_id}", headers=token).status == 200
    assert api.get(f"/v1/consents/{consent_id}-x", headers=token).status == 404
    # the relay meets a broker that refuses, one that does not acknowledge, then a good one
    relay = hotline.gateway.relay
    for mode in ("refuse", "unacked", "ok"):
        broker = Broker(mode)
        relay.kafka = SimpleNamespace(producer=lambda broker=broker: broker,
                                      reset=lambda: None)
        for entry in hotline.gateway.store.due(hotline.clock() + 10**12):
            hotline.gateway.store.retry_soon(entry.delivery_key)
        relay.tick()
    assert broker.sent == 2  # the consent and the referral, published
    withdraw = f"/v1/consents/{consent_id}/withdraw"
    assert api.post(withdraw, b"{}", headers=token).status == 202
    assert api.post(withdraw, b"{}", headers=token).status == 409  # already withdrawn
    # and through the web page: a consent recorded, then withdrawn
    web = hotline.signed_in()
    web.post("/consents", pairs({
        "csrf": web.get("/consents").csrf, "subjectId": f"subj-{CANARY}-2", "givenBy": "Person",
        "method": "Written", "channel": "InPerson", "language": "ara",
        "noticeVersion": "2026-01", "purposes": ["Services"],
        "recipientRoles": ["CentralGovernmentOrganisation"],
        "dataCategories": ["Identity"], "validFrom": "2026-01-01"}))
    recorded = next(c for c in hotline.gateway.store.consents()
                    if c["subjectId"] == f"subj-{CANARY}-2")
    web.post(f"/consents/{recorded['consentId']}/withdraw", {
        "csrf": web.get("/consents").csrf, "confirm": "yes", "channel": "InPerson"})
    assert any(e["type"] == "Withdrawn"
               for e in hotline.gateway.store.consent(recorded["consentId"])["events"])
    text = logged(caplog)
    # the log says what happened, by referral and event ids
    assert f"referral {rid} accepted" in text and "consent withdrawn" in text
    assert "broker refused Consent event" in text and "not acknowledged" in text
    assert "web: consent recorded" in text and "web: consent withdrawn" in text
    assert CANARY not in text
    assert recorded["consentId"] not in text


def test_a_failure_is_logged_by_its_type_and_place_never_its_message():
    try:
        {"firstName": "x"}[CANARY]
    except KeyError as exc:
        said = failure(exc)
    assert said.startswith("KeyError at ") and __file__ in said and CANARY not in said
    assert failure(ValueError(CANARY)) == "ValueError"  # never raised: no place
