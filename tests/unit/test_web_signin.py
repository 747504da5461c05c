"""Sign-in that holds (issue 14, item 3): parallel guesses cannot get more password checks than
the lockout allows; a paused, disabled or unknown account and a wrong password get one answer
after the same Argon2 work; throttling by address; weak passwords are refused."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher, extract_parameters

from gateways.web.auth import MAX_FAILURES, AccountError, Accounts, common_passwords
from tests.unit.webfix import FAST_HASHER, PASSWORD, open_web

GUESSES = 60


class Counting(PasswordHasher):
    """FAST_HASHER's parameters; counts every verify, by the hash it was given."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.checked: list[str] = []
        self._lock = threading.Lock()

    def verify(self, hash, password) -> bool:
        with self._lock:
            self.checked.append(hash)
        return super().verify(hash, password)


def stored_hash(accounts: Accounts, username: str) -> str:
    return accounts._one("SELECT password_hash FROM web_users WHERE username = ?",
                         (username,))[0]


def test_parallel_guesses_get_no_more_checks_than_the_lockout(tmp_path):
    hasher = Counting()
    accounts = Accounts(str(tmp_path / "g.db"), hasher)
    accounts.add_user("amal", PASSWORD, 0)
    real = stored_hash(accounts, "amal")
    start = threading.Barrier(GUESSES)

    def guess(i: int) -> bool:
        start.wait()  # all at once
        return accounts.verify("amal", f"wrong guess number {i}", 1000)

    with ThreadPoolExecutor(GUESSES) as pool:
        outcomes = list(pool.map(guess, range(GUESSES)))
    assert not any(outcomes)
    assert hasher.checked.count(real) == MAX_FAILURES  # the rest ran against the dummy hash
    assert len(hasher.checked) == GUESSES  # every answer did the same work
    assert accounts.verify("amal", PASSWORD, 2000) is False  # paused, even the right one
    accounts.close()


def test_parallel_guesses_through_the_sign_in_page(mesh_files, tmp_path, monkeypatch):
    """The same through the real handler (throttle raised, so that the lockout is what
    holds)."""
    fix = open_web(mesh_files, "BH/GOV/HOTLINE", tmp_path, monkeypatch,
                   web_signin_per_address=1000, web_signin_overall=1000)
    try:
        hasher = Counting()
        fix.web.accounts.hasher = hasher
        real = stored_hash(fix.web.accounts, "amal")
        c = fix.client()
        csrf = c.get("/signin").csrf

        async def one(i: int) -> int:
            async with c.session.post(fix.server.make_url("/signin"), data={
                    "csrf": csrf, "username": "amal", "password": f"wrong guess {i}",
                    "next": "/inbox"}) as r:
                return r.status

        async def all_at_once():
            return await asyncio.gather(*(one(i) for i in range(GUESSES)))

        statuses = fix.loop.run_until_complete(all_at_once())
        assert statuses == [401] * GUESSES
        assert hasher.checked.count(real) <= MAX_FAILURES
        assert len(hasher.checked) == GUESSES
    finally:
        fix.close()


@pytest.mark.parametrize("case", ["wrong password", "paused", "disabled", "no such user"])
def test_every_refusal_is_one_answer_after_the_same_work(tmp_path, case):
    hasher = Counting()
    accounts = Accounts(str(tmp_path / "g.db"), hasher)
    accounts.add_user("amal", PASSWORD, 0)
    username, password = "amal", "wrong password here"
    if case == "paused":
        for _ in range(MAX_FAILURES):
            accounts.verify("amal", "wrong password here", 0)
        password = PASSWORD
    elif case == "disabled":
        accounts.disable("amal", 0)
        password = PASSWORD
    elif case == "no such user":
        username = "nobody"
    hasher.checked.clear()
    assert accounts.verify(username, password, 1) is False
    assert len(hasher.checked) == 1  # one Argon2 check, whatever the reason
    used = extract_parameters(hasher.checked[0])
    assert used == extract_parameters(stored_hash(accounts, "amal"))  # same cost


def test_the_page_gives_one_answer_for_every_refusal(mesh_files, tmp_path, monkeypatch):
    fix = open_web(mesh_files, "BH/GOV/HOTLINE", tmp_path, monkeypatch)
    try:
        fix.web.accounts.add_user("rana", PASSWORD, fix.clock())
        fix.web.accounts.disable("rana", fix.clock())
        for _ in range(MAX_FAILURES):
            fix.client().signin("amal", "wrong password here")
        answers = {name: fix.client().signin(name, pw) for name, pw in (
            ("amal", PASSWORD), ("rana", PASSWORD), ("nobody", PASSWORD),
            ("sami", "wrong password here"))}
        bodies = {name: (p.status, p.text.split('<main')[1].split('value="')[0])
                  for name, p in answers.items()}
        assert len({b for b in bodies.values()}) == 1, bodies  # paused, disabled, unknown
        assert next(iter(bodies.values()))[0] == 401
    finally:
        fix.close()


def test_attempts_are_throttled_by_address_before_any_check(mesh_files, tmp_path, monkeypatch):
    fix = open_web(mesh_files, "BH/GOV/HOTLINE", tmp_path, monkeypatch,
                   web_signin_per_address=3)
    try:
        hasher = Counting()
        fix.web.accounts.hasher = hasher
        c = fix.client()
        statuses = [c.signin("nobody", f"wrong guess {i}").status for i in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert len(hasher.checked) == 3  # the throttled one checked nothing
        assert "Too many sign-in attempts" in c.signin().text
        fix.clock.now += 60_000  # a minute later the address may try again
        assert c.signin().status == 200
    finally:
        fix.close()


def test_weak_passwords_are_refused(tmp_path):
    accounts = Accounts(str(tmp_path / "g.db"), FAST_HASHER)
    assert len(common_passwords()) == 1000 and "password1234" in common_passwords()
    for weak, why in (("short", "at least 12"), ("Password1234", "common"),
                      ("qwertyuiop[]", "common"), ("zzzzzzzzzzzzzz", "repeats"),
                      ("amal-amal-amal-1", "username")):
        with pytest.raises(AccountError, match=why):
            accounts.add_user("amal", weak, 0)
    accounts.add_user("amal", PASSWORD, 0)
    with pytest.raises(AccountError, match="common"):
        accounts.reset_password("amal", "iloveyou12345", 0)
