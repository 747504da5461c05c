"""Dates are dates at the API (issue 14, item 6): a referral whose birth date or due date is no
date of the calendar is refused with 422 naming the field, and nothing is stored, where it was
accepted (202) and minimisation then dropped the birth date unsaid."""
from __future__ import annotations

import json

import pytest

from refmesh import samples
from tests.unit.webfix import HOTLINE, SHELTER


def body(fix, **dates) -> dict:
    consent = fix.consent(1)
    draft = samples.referral(sender=HOTLINE, recipient=SHELTER, n=1)
    for name in ("referralId", "senderAgency", "createdAt"):
        draft.pop(name)
    draft.update(consentId=consent["consentId"], subjectId=consent["subjectId"])
    for field, value in dates.items():
        section, leaf = field.split(".")
        draft[section][leaf] = value
    return draft


def post(fix, draft: dict) -> tuple[int, dict]:
    page = fix.client().post("/v1/referrals", json.dumps(draft).encode(), headers={
        "Authorization": f"Bearer {fix.gateway.api_token}", "Content-Type": "application/json"})
    return page.status, json.loads(page.text)


@pytest.mark.parametrize("field, value", [
    ("person.birthdate", "17/04/1998"), ("person.birthdate", "1998-02-30"),
    ("person.birthdate", "unknown"), ("service.dueDate", "next week"),
    ("service.dueDate", "2026-12-01T12:00:00Z"),
])
def test_a_date_that_is_no_date_is_422_naming_the_field_and_stores_nothing(hotline, field,
                                                                            value):
    status, answer = post(hotline, body(hotline, **{field: value}))
    assert (status, answer["field"]) == (422, f"Referral.{field}")
    assert repr(value)[1:-1] in answer["error"] and "YYYY-MM-DD" in answer["error"]
    assert hotline.gateway.store.referrals("out") == []
    assert hotline.gateway.store.feed(0, 100) == []


def test_a_date_is_accepted_and_a_wrong_type_stays_a_400(hotline):
    status, answer = post(hotline, body(hotline, **{"person.birthdate": "1998-04-17",
                                                    "service.dueDate": None}))
    assert status == 202 and answer["state"] == "requested"
    status, answer = post(hotline, body(hotline, **{"person.birthdate": 19980417}))
    assert (status, answer["field"]) == (400, "Referral.person.birthdate")
