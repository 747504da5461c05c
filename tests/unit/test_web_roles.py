"""Roles beyond the permission table: disabling ends sessions at once, a role change applies at
the next click, assignment moves a referral between case workers, tokens are revoked at once,
and accounts of schema 3 become case workers of the team intake."""
from __future__ import annotations

import sqlite3

import pytest

from gateways import schema
from gateways.web.auth import Accounts
from tests.unit.webfix import FAST_HASHER, PASSWORD


def test_a_disabled_account_is_signed_out_at_once(hotline):
    hotline.web.accounts.add_user("rana", PASSWORD, hotline.clock())
    hotline.web.accounts.add_user("it", PASSWORD, hotline.clock(), role="admin")
    rana = hotline.signed_in("rana")
    assert rana.get("/inbox").status == 200
    admin = hotline.signed_in("it")
    page = admin.get("/accounts")
    assert page.status == 200 and "rana" in page.text
    done = admin.post("/accounts/rana", {"csrf": page.csrf, "change": "disable"})
    assert "Account rana changed" in done.text
    assert rana.get("/inbox").status == 401  # the very next request
    assert hotline.client().signin("rana").status == 401
    refused = admin.post("/accounts/it", {"csrf": page.csrf, "change": "disable"})
    assert refused.status == 400 and "cannot disable your own account" in refused.text


def test_a_role_change_applies_at_the_next_click(hotline):
    hotline.web.accounts.add_user("rana", PASSWORD, hotline.clock())
    rana = hotline.signed_in("rana")
    assert rana.get("/access").status == 403
    hotline.web.accounts.set_role("rana", "supervisor", hotline.clock())
    assert rana.get("/access").status == 200
    hotline.web.accounts.set_role("rana", "admin", hotline.clock())
    assert rana.get("/inbox").status == 403 and rana.get("/accounts").status == 200


def test_assignment_moves_a_referral_between_case_workers(hotline):
    for name, team in (("rana", "intake"), ("sami", "legal")):
        hotline.web.accounts.add_user(name, PASSWORD, hotline.clock(), team=team)
    rid = hotline.arrive(1)["referralId"]
    rana, sami, boss = (hotline.signed_in(n) for n in ("rana", "sami", "amal"))
    assert rid in rana.get("/inbox").text and rid not in sami.get("/inbox").text
    page = boss.get(f"/referrals/{rid}")
    assert "team intake" in page.text  # nobody assigned it: the default team's
    boss.post(f"/referrals/{rid}/assign", {"csrf": page.csrf, "username": "sami"})
    assert rid not in rana.get("/inbox").text and rid in sami.get("/inbox").text
    assert sami.get(f"/referrals/{rid}").status == 200
    assert rana.get(f"/referrals/{rid}").status == 404
    bad = boss.post(f"/referrals/{rid}/assign", {"csrf": page.csrf, "username": "nobody"})
    assert bad.status == 400


def test_no_default_team_leaves_received_referrals_to_supervisors(mesh_files, tmp_path,
                                                                  monkeypatch):
    from tests.unit.webfix import open_web
    fix = open_web(mesh_files, "BH/GOV/HOTLINE", tmp_path, monkeypatch, web_default_team="")
    try:
        fix.web.accounts.add_user("rana", PASSWORD, fix.clock())
        rid = fix.arrive(1)["referralId"]
        assert rid not in fix.signed_in("rana").get("/inbox").text
        page = fix.signed_in().get(f"/referrals/{rid}")
        assert "Nobody yet" in page.text
    finally:
        fix.close()


def test_a_case_worker_sees_what_they_sent_not_a_colleagues(hotline):
    from tests.unit.test_web_security import pairs, valid_send
    for name in ("rana", "sami"):
        hotline.web.accounts.add_user(name, PASSWORD, hotline.clock())
    consent = hotline.consent(1)
    rana = hotline.signed_in("rana")
    csrf = rana.get("/send").csrf
    preview = rana.post("/send", pairs(valid_send(csrf, consent["consentId"])))
    sent = rana.post("/send", pairs(valid_send(csrf, consent["consentId"], action="send",
                                               digest=preview.digest)))
    rid = sent.url.rsplit("/", 1)[1]
    assert len(rid) == 36 and rid in hotline.gateway.store.referrals("out")[0]["referral_id"]
    assert rid in rana.get("/outbox").text
    assert rid not in hotline.signed_in("sami").get("/outbox").text  # same team, not theirs


def test_a_revoked_token_stops_at_once(hotline):
    token = hotline.web.accounts.add_token("reporting", ["read"], hotline.clock())
    c = hotline.client()

    async def inbox():
        async with c.session.get(hotline.server.make_url("/v1/inbox"),
                                 headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status
    assert hotline.loop.run_until_complete(inbox()) == 200
    hotline.web.accounts.revoke_token("reporting", hotline.clock())
    assert hotline.loop.run_until_complete(inbox()) == 401


def test_accounts_of_schema_3_become_case_workers_of_the_intake_team(tmp_path):
    path = str(tmp_path / "g.db")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE web_users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
            language TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0,
            locked_until_ms INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,
            password_changed_ms INTEGER NOT NULL);
        CREATE TABLE web_sessions (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
            csrf TEXT NOT NULL, created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
            flash TEXT);
        PRAGMA user_version = 3;""")
    db.execute("INSERT INTO web_users VALUES ('amal', ?, 'en', 0, 0, 1, 1)",
               (FAST_HASHER.hash(PASSWORD),))
    db.commit()
    db.close()
    accounts = Accounts(path, FAST_HASHER)
    assert accounts.users()[0] | {"created_ms": 0} == {
        "username": "amal", "role": "caseworker", "team": "intake", "language": "en",
        "disabled_ms": None, "created_ms": 0}
    assert accounts.verify("amal", PASSWORD, 2) is True
    version = accounts._one("PRAGMA user_version")[0]
    assert version == schema.VERSION
    accounts.close()


def test_two_referrals_with_one_id_only_those_one_may_see_count(hotline):
    from refmesh.permissions import Principal
    hotline.web.accounts.add_user("rana", PASSWORD, hotline.clock())
    rid = f"shared-{hotline.clock()}"
    from refmesh import samples
    from tests.unit.webfix import NCC, SHELTER, deliver
    for n, sender in ((1, SHELTER), (2, "BH/NGO/PSYCH")):
        referral = samples.referral(referral_id=rid, sender=sender, recipient=hotline.agency,
                                    created_at=hotline.clock(), n=n)
        changes = deliver(hotline.gateway, f"ev-{n}", "Referral", NCC, referral, hotline.clock())
        if changes.refused is not None:
            pytest.skip(f"the sample mesh has no second sender here ({changes.refused})")
    desk, boss = hotline.web.desk, Principal("amal", "supervisor")
    desk.assign(boss, rid, SHELTER, None, "legal")  # one of them leaves rana's team
    rana = Principal("rana", "caseworker", "intake")
    assert desk.referral(rana, rid)["sender"] == "BH/NGO/PSYCH"  # the one she may see
    with pytest.raises(Exception, match="name the sender"):
        desk.referral(boss, rid)


def test_the_users_command_sets_roles_teams_and_tokens(mesh_files, tmp_path):
    import yaml
    from click.testing import CliRunner

    from cli import cli
    from tests.unit.webfix import HOTLINE
    config = tmp_path / "gateway.yaml"
    doc = yaml.safe_load(mesh_files.gateway_config(HOTLINE).read_text())
    config.write_text(yaml.safe_dump({**doc, "database": str(tmp_path / "g.db"),
                                      "web_default_team": "desk-1"}))
    run = CliRunner().invoke

    def ok(*args, **kw):
        done = run(cli, [*args, "--config", str(config)], **kw)
        assert done.exit_code == 0, done.output
        return done.output
    ok("users", "add", "rana", "--password-env", "PW", env={"PW": PASSWORD})
    ok("users", "add", "sara", "--role", "supervisor", "--team", "", "--password-env", "PW",
       env={"PW": PASSWORD})
    ok("users", "set-team", "rana", "legal")
    ok("users", "set-role", "rana", "admin")
    ok("users", "disable", "sara")
    listed = ok("users", "list").splitlines()
    assert listed[0] == "rana\tadmin\tlegal\tactive"
    assert listed[1].startswith("sara\tsupervisor\t-\tdisabled since ")
    token = ok("users", "token-add", "reporting", "--scope", "read").split()[-1]
    assert len(token) >= 40
    assert "reporting\tread\tworks" in ok("users", "token-list")
    ok("users", "token-revoke", "reporting")
    assert "reporting\tread\trevoked" in ok("users", "token-list")
    bad = run(cli, ["users", "set-role", "nobody", "admin", "--config", str(config)])
    assert bad.exit_code == 2 and "no user nobody" in bad.output
    raw = (tmp_path / "g.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("g.db-*"))
    assert token.encode() not in raw  # only its hash is kept
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    with accounts._lock:
        from gateways import access
        actions = [r["action"] for r in access.entries(accounts._db)]
    assert actions[:5] == ["account-add:caseworker", "account-add:supervisor", "account-team",
                           "account-role:admin", "account-disable"]
    accounts.close()
