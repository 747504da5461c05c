"""Signing in to the gateway's web page: accounts (Argon2id), the admin command, sessions that
expire and are replaced at sign-in, sign-out, and every page closed to anyone signed out."""
from __future__ import annotations

import sqlite3

import pytest
from argon2 import PasswordHasher, Type
from click.testing import CliRunner

from cli import cli
from gateways.web.auth import MAX_FAILURES, AccountError, Accounts
from tests.unit.webfix import FAST_HASHER, HOTLINE, PASSWORD

PAGES = ["/inbox", "/send", "/outbox", "/consents", "/erasures", "/referrals/any-id"]
MINUTE = 60_000


# --- accounts ----------------------------------------------------------------------------------

def test_the_default_hash_is_argon2id_and_memory_hard():
    hasher = PasswordHasher()  # what Accounts uses unless a test gives a cheaper one
    assert hasher.type is Type.ID and hasher.memory_cost >= 19 * 1024  # KiB (OWASP minimum)
    assert hasher.hash("x" * 12).startswith("$argon2id$")


def test_passwords_and_session_tokens_are_never_stored(tmp_path):
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    accounts.add_user("amal", PASSWORD, 1000)
    session = accounts.start_session("amal", 2000)
    accounts.close()
    raw = (tmp_path / "g.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("g.db-*"))
    assert PASSWORD.encode() not in raw and session.token.encode() not in raw
    stored = sqlite3.connect(tmp_path / "g.db").execute(
        "SELECT password_hash FROM web_users").fetchone()[0]
    assert stored.startswith("$argon2id$")


def test_username_and_password_rules(tmp_path):
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    for bad in ("A", "Amal", "amal smith", "-amal", "a" * 33):
        with pytest.raises(AccountError, match="username"):
            accounts.add_user(bad, PASSWORD, 0)
    with pytest.raises(AccountError, match="at least 12"):
        accounts.add_user("amal", "short", 0)
    accounts.add_user("amal", PASSWORD, 0)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user("amal", PASSWORD, 0)
    with pytest.raises(AccountError, match="no user nobody"):
        accounts.reset_password("nobody", PASSWORD, 0)


def test_wrong_passwords_pause_the_account_and_a_reset_ends_sessions(tmp_path):
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    accounts.add_user("amal", PASSWORD, 0)
    assert accounts.verify("nobody", PASSWORD, 0) is False
    assert accounts.verify("amal", PASSWORD, 0) is True
    outcomes = [accounts.verify("amal", "wrong password!", 1) for _ in range(MAX_FAILURES)]
    assert outcomes == [False] * MAX_FAILURES
    assert accounts.verify("amal", PASSWORD, 2) is False  # paused: even the right one, for now
    assert accounts.verify("amal", PASSWORD, 5 * MINUTE + 2) is True
    session = accounts.start_session("amal", 10)
    accounts.reset_password("amal", "a new passphrase here", 20)
    assert accounts.session(session.token, 30, MINUTE, MINUTE) is None
    assert accounts.verify("amal", "a new passphrase here", 40) is True


def test_sessions_expire_when_idle_and_after_the_maximum(tmp_path):
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    accounts.add_user("amal", PASSWORD, 0)
    idle, most = 30 * MINUTE, 60 * MINUTE
    s = accounts.start_session("amal", 0)
    assert accounts.session(s.token, 29 * MINUTE, idle, most).username == "amal"
    assert accounts.session(s.token, 58 * MINUTE, idle, most) is not None  # used: still idle<30
    assert accounts.session(s.token, 60 * MINUTE, idle, most) is None  # the maximum
    t = accounts.start_session("amal", 0)
    assert accounts.session(t.token, 30 * MINUTE, idle, most) is None  # idle
    assert accounts.session("made-up", 0, idle, most) is None


# --- the admin command -------------------------------------------------------------------------

def test_users_add_and_reset_password_from_the_command_line(mesh_files, tmp_path):
    import yaml
    config = tmp_path / "gateway.yaml"
    doc = yaml.safe_load(mesh_files.gateway_config(HOTLINE).read_text())
    config.write_text(yaml.safe_dump({**doc, "database": str(tmp_path / "g.db")}))
    runner = CliRunner()
    added = runner.invoke(cli, ["users", "add", "rana", "--config", str(config),
                                "--password-env", "WEB_PW", "--language", "ar"],
                          env={"WEB_PW": PASSWORD})
    assert added.exit_code == 0, added.output
    prompted = runner.invoke(cli, ["users", "add", "sami", "--config", str(config)],
                             input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0 and PASSWORD not in prompted.output
    listed = runner.invoke(cli, ["users", "list", "--config", str(config)])
    assert listed.output.splitlines() == ["rana\tcaseworker\tintake\tactive",
                                          "sami\tcaseworker\tintake\tactive"]
    again = runner.invoke(cli, ["users", "add", "rana", "--config", str(config),
                                "--password-env", "WEB_PW"], env={"WEB_PW": PASSWORD})
    assert again.exit_code == 2 and again.output.startswith("error: user rana exists already")
    unset = runner.invoke(cli, ["users", "reset-password", "rana", "--config", str(config),
                                "--password-env", "NOT_SET_ANYWHERE"])
    assert unset.exit_code == 2 and "NOT_SET_ANYWHERE" in unset.output
    reset = runner.invoke(cli, ["users", "reset-password", "rana", "--config", str(config),
                                "--password-env", "WEB_PW"], env={"WEB_PW": "another long one"})
    assert reset.exit_code == 0, reset.output
    accounts = Accounts(str(tmp_path / "g.db"))
    assert accounts.verify("rana", "another long one", 0) is True
    short = runner.invoke(cli, ["users", "reset-password", "rana", "--config", str(config),
                                "--password-env", "WEB_PW"], env={"WEB_PW": "short"})
    assert short.exit_code == 2 and "at least 12" in short.output


# --- signing in on the page -------------------------------------------------------------------

def test_every_page_needs_a_session_and_shows_no_data_without_one(hotline):
    hotline.consent(1)
    hotline.arrive(1)
    c = hotline.client()
    for path in PAGES:
        page = c.get(path)
        assert page.status == 401 and 'action="/signin"' in page.text, path
        assert "subj-000001" not in page.text and "Tigist" not in page.text
    # the API's token is not a way in to the page, and the page's session is not one to the API
    assert c.get("/inbox", headers={"Authorization": f"Bearer {hotline.gateway.api_token}"}
                 ).status == 401
    c.signin()
    assert c.get("/v1/inbox").status == 401


def test_sign_in_wrong_password_then_right_one(hotline):
    c = hotline.client()
    wrong = c.signin(password="not the password")
    assert wrong.status == 401 and "The username or the password is not right" in wrong.text
    assert 'value="amal"' in wrong.text and "not the password" not in wrong.text
    unknown = c.signin(username="nobody")
    assert unknown.status == 401 and "is not right" in unknown.text
    right = c.signin()
    assert right.status == 200 and right.url.endswith("/inbox")
    assert "Signed in as amal" in right.text


def test_sign_in_gives_a_new_session_id_whatever_the_browser_brought(hotline):
    c = hotline.client()
    cookie = hotline.web.cookie
    c.set_cookie(cookie, "planted-by-an-attacker")
    c.signin()
    first = c.cookie(cookie)
    assert first and first != "planted-by-an-attacker"
    assert c.get("/inbox").status == 200
    other = hotline.client()
    other.signin()
    assert other.cookie(cookie) != first
    # signing in again from the same browser replaces the session: the old id is dead
    c.signin()
    second = c.cookie(cookie)
    assert second != first
    stale = hotline.client()
    stale.set_cookie(cookie, first)
    assert stale.get("/inbox").status == 401


def test_session_cookie_flags(hotline):
    c = hotline.client()
    page = c.get("/signin")
    response = c.post("/signin", {"csrf": page.csrf, "username": "amal", "password": PASSWORD,
                                  "next": "/inbox"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/inbox"
    cookie = response.headers["Set-Cookie"]
    assert hotline.web.cookie in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie


def test_sign_out_ends_the_session(hotline):
    c = hotline.client()
    c.signin()
    token = c.cookie(hotline.web.cookie)
    page = c.get("/inbox")
    out = c.post("/signout", {"csrf": page.csrf})
    assert out.status == 200 and "You are signed out" in out.text
    assert c.get("/inbox").status == 401
    replay = hotline.client()
    replay.set_cookie(hotline.web.cookie, token)
    assert replay.get("/inbox").status == 401


def test_an_idle_session_expires_and_says_so(hotline):
    c = hotline.client()
    c.signin()
    hotline.clock.now += 29 * MINUTE
    assert c.get("/outbox").status == 200
    hotline.clock.now += 30 * MINUTE
    expired = c.get("/outbox")
    assert expired.status == 401 and "Your session has ended" in expired.text
    assert 'name="next" value="/outbox"' in expired.text  # back to where one was
    back = c.post("/signin", {"csrf": expired.csrf, "username": "amal", "password": PASSWORD,
                              "next": "/outbox"})
    assert back.status == 200 and back.url.endswith("/outbox")


def test_a_session_ends_after_the_maximum_however_busy(hotline):
    c = hotline.client()
    c.signin()
    start = hotline.clock.now
    while c.get("/inbox").status == 200:  # used every 29 minutes: never idle
        hotline.clock.now += 29 * MINUTE
        assert hotline.clock.now - start < 11 * 60 * MINUTE
    assert 10 * 60 * MINUTE <= hotline.clock.now - start < 10 * 60 * MINUTE + 29 * MINUTE


def test_the_next_page_after_sign_in_stays_on_this_site(hotline):
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        c = hotline.client()
        page = c.get("/signin")
        r = c.post("/signin", {"csrf": page.csrf, "username": "amal", "password": PASSWORD,
                               "next": target}, allow_redirects=False)
        assert r.headers["Location"] == "/", target
