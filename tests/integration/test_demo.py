"""`make demo` runs the sample mesh end to end (consent refusal, minimised cross-border referral,
withdrawal and erasure, audit chains, leak scan), exits 0 by itself and leaves nothing running."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import KINDS

ROOT = Path(__file__).resolve().parents[2]


def _demo_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "refmesh-demo-" in args:
            found.append(args)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_demo_runs_the_case_path_and_finds_no_leak(kind):
    """`make demo`, and `make demo BROKER=apache` (SASL_SSL, SCRAM users and ACLs on)."""
    done = subprocess.run([sys.executable, "-m", "devmesh.demo", "--broker", kind], cwd=ROOT,
                          timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "planted personal values: 0 found" in out
    for state in ("received by", "to completed", "to rejected (LackOfCapacity)",
                  "ET/NGO/RECEPTION set", "REFUSED by its policy domain (consent_missing)",
                  "erased it; BH/GOV/HOTLINE sees the confirmation"):
        assert state in out, state
    assert out.count("hash chains, all intact") == 2
    assert "region GCC received" in out and "regional report written to" in out
    assert "citizenship ET" in out
    assert "ET/NGO/RECEPTION   1 referral(s)" in out
    assert (ROOT / "demo-out" / "report.html").read_text().count("data:image/png;base64") >= 2
    assert "Traceback" not in out + done.stderr
    if kind == "apache":
        assert "ACLs from the signed directory" in out and "SASL_SSL" in out
    assert _demo_processes() == []
