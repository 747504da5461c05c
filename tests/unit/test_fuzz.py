"""The fuzz targets of tests/fuzz_targets.py, a few hundred inputs each (``make drills`` runs
them for tens of thousands): only the documented error may escape codec.decode (CodecError),
envelope.open (SealError) and Referral.from_dict (RecordError), and what they accept is valid.
The harness itself is shown to report a crash."""
from __future__ import annotations

import pytest

from tests import fuzz_targets

COUNT = 300


def _failures(results: dict, logs: dict) -> dict:
    return {name: logs[name][-2000:] for name, (_, crashes) in results.items() if crashes}


@pytest.mark.parametrize("name", sorted(fuzz_targets.TARGETS))
def test_target_in_process_with_hypothesis(name):
    """Deterministic (derandomized hypothesis, fixed seeds): the same inputs every run."""
    logs = {}
    results = fuzz_targets.run_fuzz(COUNT, engine="hypothesis", targets=(name,),
                                    report=lambda n, i, c, s, log: logs.update({n: log}))
    assert _failures(results, logs) == {}
    assert results[name][0] >= COUNT


@pytest.mark.skipif(not fuzz_targets.atheris_available(),
                    reason="atheris is not installed (pip install atheris: a binary wheel on "
                           "Linux x86_64); the hypothesis runs above still cover the targets")
def test_targets_coverage_guided_with_atheris():
    """libFuzzer with a fixed seed and the committed starting inputs, one process per target."""
    logs = {}
    results = fuzz_targets.run_fuzz(COUNT, engine="atheris",
                                    report=lambda n, i, c, s, log: logs.update({n: log}))
    assert _failures(results, logs) == {}
    assert all(inputs == COUNT for inputs, _ in results.values()), results


@pytest.mark.parametrize("engine", ["hypothesis", "atheris"])
def test_the_harness_reports_a_crash(engine):
    if engine == "atheris" and not fuzz_targets.atheris_available():
        pytest.skip("atheris is not installed")
    results = fuzz_targets.run_fuzz(COUNT, engine=engine, targets=("planted",))
    assert results["planted"][1] >= 1


def test_data_reads_choices_and_runs_dry_as_zeros():
    d = fuzz_targets.Data(bytes([7, 1, 2]))
    assert d.int(0, 3) == 3 and d.int(0, 65535) == 0x0201 and d.int(0, 9) == 0
    assert d.take(5) == b"" and d.bool() is False and d.pick("xyz") == "x"
