"""Issue 12, item 8: the pure directory decisions (expiry, rollback, downgrade)."""
from refmesh import directory as d

X = {"kind": "X25519", "revokedAt": None}
H = {"kind": "MLKEM768X25519", "revokedAt": None}


def test_expired_directory_gives_a_reason():
    assert d.expiry_problem(1000, 999) is None
    reason = d.expiry_problem(1000, 1000)
    assert "signed directory expired at 1000" in reason and "newer edition" in reason


def test_rolled_back_serial_names_both_serials():
    assert d.rollback_problem(5, 5) is None and d.rollback_problem(6, 5) is None
    reason = d.rollback_problem(4, 5)
    assert "serial 4" in reason and "serial 5" in reason


def test_downgrade_refused_for_hybrid_member_only():
    hybrid = {"agencyId": "BH/NGO/A", "keys": [X, H]}
    classic = {"agencyId": "BH/NGO/B", "keys": [X]}
    revoked = {"agencyId": "BH/NGO/C", "keys": [X, {**H, "revokedAt": 1}]}
    assert d.suite_problem(hybrid, "MLKEM768X25519") is None
    assert "downgrade" in d.suite_problem(hybrid, "X25519")
    assert d.suite_problem(classic, "X25519") is None
    assert d.suite_problem(revoked, "X25519") is None


# --- the decisions, wired ---------------------------------------------------------------------

def _signed(valid_days: int = 90, serial: int = 1):
    from refmesh import keys
    coord = keys.generate("BH/GOV/NCCT", 0)
    draft = {**d.empty("BH/GOV/NCCT"), "serial": serial - 1}
    return d.sign(draft, coord, 1000, valid_days), d.TrustAnchor.of(coord)


def test_load_refuses_what_the_decisions_refuse():
    import pytest
    from refmesh.errors import DirectoryError

    signed, anchor = _signed(valid_days=1, serial=4)
    expires = 1000 + d.DAY_MS
    assert d.load(signed, anchor, expires - 1, min_serial=4).serial == 4
    with pytest.raises(DirectoryError) as err:
        d.load(signed, anchor, expires)
    assert err.value.reason == "expired"
    assert str(err.value) == d.expiry_problem(expires, expires, 4)
    with pytest.raises(DirectoryError) as err:
        d.load(signed, anchor, 2000, min_serial=5)
    assert err.value.reason == "stale" and str(err.value) == d.rollback_problem(4, 5)


def test_verify_checks_the_signature_only():
    """An edge keeps an expired edition in force to say why traffic stopped."""
    signed, anchor = _signed(valid_days=1)
    assert d.verify(signed, anchor).expires_at == 1000 + d.DAY_MS
    assert "serial 1 expired at 2026" in d.expiry_problem(1000, 1000, 1, shown="2026-01-01")


def test_an_agent_worker_names_the_directory_first_on_healthz():
    from refmesh.health import WorkerFacts, problems, report

    facts = WorkerFacts("in", joined=True, assigned=(0,), rebalancing=False, recovering=False,
                        release_job=None, directory=("signed directory serial 2 expired",))
    assert problems(facts) == ["signed directory serial 2 expired"]
    assert report(facts)[0] == 503
