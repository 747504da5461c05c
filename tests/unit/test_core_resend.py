"""The re-send timeout follows the measured receipt delay (refmesh/resend.py, RFC 6298)."""
from __future__ import annotations

import pytest

from refmesh.resend import Estimate, due, observe, timeout_ms


def test_a_quiet_mesh_keeps_the_operators_timeout():
    estimate = Estimate()
    assert timeout_ms(estimate, 3000, 60000) == 3000  # no sample yet
    for _ in range(50):
        estimate = observe(estimate, 80)  # receipts in 80 ms
    assert timeout_ms(estimate, 3000, 60000) == 3000  # the floor: a lost event after 3 s


def test_slower_receipts_stretch_the_timeout_up_to_the_ceiling():
    estimate = Estimate()
    for delay in range(100, 6100, 100):  # a burst: each receipt later than the one before
        estimate = observe(estimate, delay)
    stretched = timeout_ms(estimate, 3000, 60000)
    assert stretched > 6000  # past the last delay seen
    assert timeout_ms(estimate, 3000, 7000) == 7000  # never above the ceiling


def test_the_first_sample_sets_the_estimate_as_rfc_6298_says():
    first = observe(Estimate(), 1000)
    assert first == Estimate(1000.0, 500.0)
    assert timeout_ms(first, 1, 60000) == 3000  # srtt + 4 * rttvar
    second = observe(first, 2000)
    assert second.srtt_ms == pytest.approx(1125.0)
    assert second.rttvar_ms == pytest.approx(625.0)


def test_an_entry_is_due_once_its_first_send_is_older_than_the_timeout():
    assert due(None, 10_000, 3000) is None  # sent before a restart: as scheduled
    assert due(5_000, 10_000, 3000) is None  # 5 s old, timeout 3 s: re-send
    assert due(9_000, 10_000, 3000) == 12_000  # 1 s old: wait until 12 s


def test_nonsense_is_refused():
    with pytest.raises(ValueError, match="never negative"):
        observe(Estimate(), -1)
    with pytest.raises(ValueError, match="floor_ms"):
        timeout_ms(Estimate(), 0, 10)
    with pytest.raises(ValueError, match="floor_ms"):
        timeout_ms(Estimate(), 20, 10)
