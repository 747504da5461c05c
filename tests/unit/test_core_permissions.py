"""Who may do what (refmesh.permissions): the table's shape, scoping of case workers to their
referrals, and a token's scopes adding up."""
from __future__ import annotations

import pytest

from refmesh import permissions as p

WORKER = p.Principal("amal", p.CASEWORKER, "intake")
OTHER = p.Principal("rana", p.CASEWORKER, "legal")
LONER = p.Principal("huda", p.CASEWORKER, "")
BOSS = p.Principal("sara", p.SUPERVISOR, "")
ADMIN = p.Principal("it", p.ADMIN, "")


def token(*scopes: str) -> p.Principal:
    return p.Principal("reporting", scopes=frozenset(scopes))


def test_every_action_has_an_answer_for_every_column():
    for action, (words, cells) in p.TABLE.items():
        assert words and set(cells) == set(p.COLUMNS), action
        assert set(cells.values()) <= {p.YES, p.NO, p.OWN}


def test_the_administrator_never_touches_case_data():
    assert [a for a in p.ACTIONS if p.may(ADMIN, a)] == ["accounts"]


def test_a_case_worker_sees_what_is_assigned_to_them_or_their_team_and_what_they_sent():
    assert p.sees(WORKER, p.Facts("in", user="amal"))
    assert p.sees(WORKER, p.Facts("in", team="intake"))
    assert p.sees(WORKER, p.Facts("out", author="amal"))
    assert not p.sees(WORKER, p.Facts("out", author="rana"))
    assert not p.sees(WORKER, p.Facts("out", author="token:amal"))  # a token is not the user
    assert not p.sees(WORKER, p.Facts("in", user="rana", team="legal"))
    assert not p.sees(LONER, p.Facts("in", team=""))  # no team: no team's referrals


def test_an_unassigned_received_referral_belongs_to_the_default_team():
    unassigned = p.Facts("in")
    assert p.sees(WORKER, unassigned) and not p.sees(OTHER, unassigned)
    assert p.sees(OTHER, unassigned, default_team="legal")
    assert not p.sees(WORKER, unassigned, default_team="")  # supervisors assign it
    assert p.sees(BOSS, unassigned, default_team="")
    assert not p.sees(WORKER, p.Facts("out"))  # a sent one has no default team


def test_own_consents_and_scopes_adding_up():
    assert p.may(WORKER, "withdraw", recorded_by="amal")
    assert not p.may(WORKER, "withdraw", recorded_by="rana")
    assert p.may(BOSS, "withdraw", recorded_by="rana")
    assert p.may(token("send"), "withdraw", recorded_by="token:reporting")
    assert not p.may(token("send"), "withdraw", recorded_by="amal")
    assert p.may(token("send", "admin"), "withdraw", recorded_by="amal")
    assert not p.may(token("read"), "send") and p.may(token("read", "send"), "send")
    assert not p.may(p.Principal("x", role="root"), "list")  # an unknown role: nothing
    with pytest.raises(KeyError, match="unknown action"):
        p.may(BOSS, "delete-everything")


def test_names_are_checked():
    assert p.check_role("supervisor") == "supervisor"
    with pytest.raises(ValueError, match="role"):
        p.check_role("root")
    assert p.check_scopes(["read"]) == frozenset({"read"})
    for bad in ([], ["write"]):
        with pytest.raises(ValueError, match="scopes"):
            p.check_scopes(bad)
    assert p.check_team("") == "" and p.check_team("legal-2") == "legal-2"
    with pytest.raises(ValueError, match="team"):
        p.check_team("Legal Team")


def test_the_case_workers_page_shows_the_permission_table_of_the_code():
    from pathlib import Path
    page = (Path(__file__).resolve().parents[2] / "docs" / "case-workers.md").read_text(
        encoding="utf-8")
    assert p.markdown_table() in page
