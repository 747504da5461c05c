"""Sign-in decisions (refmesh.signin): password rules and the throttle by address and overall."""
from __future__ import annotations

from refmesh import signin

COMMON = frozenset({"password1234", "qwertyuiop", "iloveyou"})


def test_password_rules():
    problem = signin.password_problem
    assert problem("correct horse battery staple", "amal", COMMON) is None
    assert "at least 12" in problem("short", "amal", COMMON)
    assert "common" in problem("Password 1234", "amal", COMMON)
    assert "common" in problem("qwertyuiop2024!", "amal", COMMON)  # a suffix does not help
    assert "repeats" in problem("aaaaaaaaaaaa", "amal", COMMON)
    assert "username" in problem("amal's very own pass", "amal", COMMON)


def test_the_throttle_limits_each_address_and_all_of_them():
    t = signin.Throttle(signin.Limits(per_address=3, overall=5, window_ms=1000, addresses=100))
    assert [t.attempt("10.0.0.1", 0) for _ in range(4)] == [None, None, None, "address"]
    assert t.attempt("10.0.0.2", 1) is None and t.attempt("10.0.0.3", 1) is None
    assert t.attempt("10.0.0.4", 1) == "overall"  # five in the window in all
    assert t.attempt("10.0.0.1", 999) == "address"
    assert t.attempt("10.0.0.1", 1000) is None  # the window moved on
    # a throttled attempt is not counted: the address is free again a window after its last
    assert t.attempt("10.0.0.4", 1001) is None


def test_the_throttle_forgets_the_oldest_address_when_full():
    t = signin.Throttle(signin.Limits(per_address=1, overall=100, window_ms=1000, addresses=2))
    assert t.attempt("a", 0) is None and t.attempt("b", 0) is None
    assert t.attempt("a", 1) == "address"
    assert t.attempt("c", 1) is None  # forgets a (seen longest ago)
    assert len(t._by_address) == 2 and t.attempt("a", 2) is None
