"""From referrals to a released aggregate through the real broker: the domain's agents count
coarse values only, release a window once it is due, sign it, and publish it on the region's
topic, where a person with a unique combination never appears; the recipient's outcomes reach
the statistics through the copies its gateway sends its domain."""
from __future__ import annotations

import uuid

import pytest
import yaml
from click.testing import CliRunner

from kafkaedge import profiles
from refmesh.access import region_principal
from cli import cli
from kafkaedge.loading import now_ms
from devmesh.supervise import wait_until
from gateways.aggregates_reader import read_all
from refmesh import aggregate
from refmesh.aggregate import table
from tests.integration.meshfix import metrics, start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
REGION = "GCC"
GRACE_MS = 0
MAX_LATE_MS = 300_000
REVISIONS = 30  # a correction every 10 s from the window's close until it is final


def _with_region(files, ids):
    path = files.agents_config(ids[NCC])
    cfg = yaml.safe_load(path.read_text())
    # a minute's window is released as it closes, then recounted every 10 s until it is final
    # five minutes after it closed (each revision counts what has arrived by then); every
    # minute's window is released, with referrals or without
    cfg.update(region=REGION, aggregate_unit="minute", aggregate_grace_ms=GRACE_MS,
               aggregate_max_late_ms=MAX_LATE_MS, aggregate_revisions=REVISIONS,
               release_interval_s=1)
    path.write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("agg"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC], prepare=_with_region)
    yield m
    m.running.stop()


def _releases(mesh) -> list[dict]:
    """The verified releases now on the region's topic (newest revision per window), read as
    the regional body (on a secured broker: with its own principal's rights only)."""
    kafka = mesh.kafka
    reader = profiles.consumer_config(kafka.profile, kafka.bootstrap, "r",
                                      kafka.security_for(region_principal(REGION)))
    messages = read_all(reader, REGION) or []
    kept, rejected = table.accept(((f"{m.partition}@{m.offset}", m.value) for m in messages),
                                  mesh.directory(), now_ms(), REGION, table.Latest())
    assert rejected == []
    return kept


def test_referrals_become_a_signed_release_without_the_unique_person(mesh, tmp_path):
    hotline = mesh.client(HOTLINE)
    # the window of two minutes ago: closed (due) already, final three to four minutes from now
    past = now_ms() - 120_000
    for n in range(100, 113):  # 13 alike: Ethiopian women in forced labour, forwarded
        mesh.consent(n, HOTLINE)
        hotline.submit(mesh.referral(n, HOTLINE, SHELTER, createdAt=past))
    canary = mesh.referral(199, HOTLINE, SHELTER, createdAt=past)
    canary["person"]["citizenship"] = ["NP"]  # the only Nepali citizen: a unique combination
    mesh.consent(199, HOTLINE)
    hotline.submit(canary)
    shelter = mesh.client(SHELTER)
    wait_until(lambda: len(shelter.inbox()) >= 14, 90, "all 14 referrals")
    # the outcomes count in the minute they are set: all in one (k = 11 needs them together)
    wait_until(lambda: now_ms() % 60_000 < 45_000, 20, "15 s or more left in this minute")
    for row in shelter.inbox():  # the shelter accepts all but the canary: outcomes counted
        if row["referral_id"] != canary["referralId"]:
            shelter.set_status(row["referral_id"], "accepted")

    def released():
        return [r for r in _releases(mesh) if r["domain"] == mesh.id(NCC)]

    def with_referrals():  # the minute of the referrals, among the (empty) others
        found = released()
        return found if any(c["citizenship"] == "ET" for r in found for c in r["cells"]) \
            else None

    # a revision shows the ET cell once at least k = 11 of the 13 are counted (10 after
    # rounding down, as with all 13)
    releases = wait_until(with_referrals, 150,
                          "a release with the referrals on the region's topic")
    rows = [c for r in releases for c in r["cells"]]
    cells = [c for c in rows if aggregate.kind_of(c) in ("cell", "outcome")]
    # every released cell stands for at least k = 11 referrals, rounded down to a multiple of 5;
    # marginals and totals add them up (0 in the other minutes' releases, which hold none)
    assert cells and all(c["count"] >= 10 and c["count"] % 5 == 0 for c in cells), cells
    assert all(c["count"] % 5 == 0 for c in rows)
    et = [c for c in cells if c["citizenship"] == "ET" and c["finalStatus"] == "forwarded"]
    assert et and et[0]["count"] == 10  # 13 rounded down to 10
    assert not [c for c in rows if c["citizenship"] == "NP"]  # the unique person never shows
    assert releases[0]["k"] == 11 and releases[0]["resolution"] == 5
    out = tmp_path / "agg.csv"
    exported = CliRunner().invoke(cli, [
        "aggregates", "export", "--region", REGION, "--format", "csv", "--out", str(out),
        "--config", str(mesh.kafka.client_file()),
        "--directory", str(mesh.files.directory), "--anchor", str(mesh.files.anchor)])
    assert exported.exit_code == 0, exported.output
    assert "NP" not in out.read_text() and "ET" in out.read_text()
    assert aggregate.topic(REGION) == f"refmesh.region.{REGION}.aggregates"

    def outcomes():  # the shelter's copies, counted in the current minute, released after it
        return [c for r in released() for c in r["cells"]
                if aggregate.kind_of(c) == "outcome"]

    # released as their own minute closes, or in a correction of it
    (accepted,) = wait_until(outcomes, 150, "the outcomes in a release")
    # counted in the cell of their referrals (the copies travel with the referrals' keys)
    assert {k: v for k, v in accepted.items() if v is not None} == {
        "reportingCountry": "BH", "citizenship": "ET", "gender": et[0]["gender"],
        "exploitationType": et[0]["exploitationType"], "finalStatus": "accepted", "count": 10}
    # every copy receipted by the domain (and every status by the hotline): nothing pending
    wait_until(lambda: "refmesh_outbox_depth 0.0" in metrics(shelter), 60, "an empty outbox")
