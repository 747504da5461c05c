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
