"""The send form's preview says what a generalisation puts in another field (issue 14, item
6): the age band the recipient gets from the birth date, although the form has no age band, and
nothing at all from a birth date in the future."""
from __future__ import annotations

from tests.unit.test_web_pages import pre_lines
from tests.unit.test_web_security import pairs, valid_send


def _preview(hotline, birthdate: str) -> str:
    consent = hotline.consent(1)
    c = hotline.signed_in()
    page = c.post("/send", pairs(valid_send(c.get("/send").csrf, consent["consentId"], **{
        "person.birthdate": birthdate})))
    assert page.status == 200
    return page


def test_the_preview_says_the_recipient_gets_an_age_band_from_the_birth_date(hotline):
    page = _preview(hotline, "1998-04-17")
    assert "(the recipient gets the value generalised from Date of birth here)" in page.text
    band = next(line for line in pre_lines(page.text) if line.split()[0] == "person.ageBand")
    assert "filled with person.birthdate generalised" in band


def test_the_preview_says_a_birth_date_in_the_future_gives_no_band(hotline):
    page = _preview(hotline, "2190-01-01")
    assert "(nothing: no age band comes of this date)" in page.text
    assert "generalised from Date of birth" not in page.text
