"""The case workers' page explains every refusal its policy domain can send back, in each of its
languages (gateways/web/i18n.py: REFUSALS_EN, REFUSALS_AR)."""
from __future__ import annotations

import pytest

from gateways.web.i18n import TABLES, Text
from refmesh.decisions import REASONS


@pytest.mark.parametrize("lang", sorted(TABLES))
@pytest.mark.parametrize("code", REASONS)
def test_every_refusal_reason_has_a_text_in_every_language(code, lang):
    own = TABLES[lang][4]
    assert own.get(code, "").strip(), f"no {lang} text for the refusal {code}"
    assert Text(lang).refusal(code) == own[code]


def test_a_referral_relying_on_another_agencys_consent_says_what_to_do():
    text = Text("en").refusal("consent_not_controller")
    assert "another agency" in text and "record the person's consent here" in text
