"""`refmesh aggregates tail|export|report` on signed releases built in memory: the Kafka reader
is replaced by a list of messages, so everything after the read (verification, newest
revision, CSV/JSON columns, the HTML page and its charts) runs as it does for a regional body.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateways import aggregates_reader as reader
from gateways import aggregates_report
from cli import cli, common
from refmesh import aggregate as agg
from refmesh import codec, directory, keys, samples
from refmesh.aggregate import table

T0 = 1_790_000_000_000  # 2026-09-21
NOW = T0 + 30 * 86_400_000
COORD, BH, QA, SHELTER = "BH/GOV/MOFA", "BH/GOV/NCCT", "QA/GOV/NCCT", "BH/NGO/SHELTER"
MONTHS = [agg.window_of(T0 - m * 31 * 86_400_000) for m in (2, 1, 0)]  # Jul, Aug, Sep 2026
CANARY = "KE"  # one person of this citizenship in August: never to be seen anywhere
DIMS = ("reportingCountry", "citizenship", "gender", "exploitationType", "finalStatus")


def referrals(month: int, extra: int = 0) -> dict:
    """Synthetic counts of one month: a crowd, and in August one canary person."""
    counts: dict = {}
    crowd = [("ET", "ForcedLabour", "forwarded")] * (30 + 10 * month + extra) + \
        [("PH", "SexualExploitation", "forwarded")] * 14 + [("ET", "Servitude", "refused")] * 11 \
        + [("IN", "ForcedLabour", "forwarded")] * 7  # below k: suppressed
    if month == 1:
        crowd.append((CANARY, "OrganRemoval", "forwarded"))
    for i, (citizenship, exploitation, decision) in enumerate(crowd):
        r = samples.referral(n=i)
        r["person"]["citizenship"] = [citizenship]
        r["victim"]["typeOfExploitation"] = [exploitation]
        counts = agg.count(counts, agg.cell_of(r, decision, {"jurisdiction": "BH"},
                                               {"role": "NGO"}, T0, dims=DIMS))
    for state in ["accepted"] * 12 + ["rejected"] * 3:
        counts = agg.count(counts, agg.outcome_cell({"state": state},
                                                    {"jurisdiction": "BH", "role": "NGO"}))
    return counts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("aggregates")
    ks = {a: keys.generate(a, T0) for a in (COORD, BH, QA, SHELTER)}
    draft = directory.empty(COORD)
    for agency, k in ks.items():
        draft = directory.add_member(draft, directory.member_entry(
            k, agency, "NGO" if agency == SHELTER else "CentralGovernmentOrganisation",
            agency[:2], BH if agency == SHELTER else None, T0))
    (root / "directory.bin").write_bytes(directory.sign(draft, ks[COORD], T0))
    anchor = directory.TrustAnchor.of(ks[COORD])
    (root / "anchor.json").write_text(json.dumps(anchor.to_json()))
    trusted = directory.load((root / "directory.bin").read_bytes(), anchor, NOW)

    def signed(counts, window, *, domain=BH, region="GCC", revision=0) -> tuple:
        out = agg.decide_release(counts, domain=domain, region=region, window=window,
                                 revision=revision, final_revision=1)
        return out, agg.sign_release(out.record, ks[domain])

    messages = []
    firsts = []
    for m, window in enumerate(MONTHS):
        out, data = signed(referrals(m), window)
        firsts.append(out)
        messages.append(data)
    correction, data = signed(referrals(1, extra=12), MONTHS[1], revision=1)
    messages.append(data)
    messages.append(messages[1])  # the older revision again, after the correction: ignored
    _, foreign = signed(referrals(2), MONTHS[2], region="EAC")
    body = {**firsts[2].record, "domain": SHELTER}  # a member, not a domain
    not_domain = agg.sign_release(body, ks[SHELTER])
    _, inflated = codec.decode(messages[0])
    inflated["cells"][0]["count"] += 100  # a changed count under the domain's signature
    messages += [foreign, not_domain, codec.encode("Aggregate", inflated)]
    msgs = [reader.Message(i % 2, i, value) for i, value in enumerate(messages)]
    return {"root": root, "messages": msgs, "trusted": trusted, "correction": correction}


@pytest.fixture
def runner(world, monkeypatch) -> CliRunner:
    monkeypatch.setattr(common, "now_ms", lambda: NOW)
    monkeypatch.setattr(reader, "read_all", lambda config, region, timeout=60.0:
                        list(world["messages"]))
    return CliRunner(env={"REFMESH_DIRECTORY": None, "REFMESH_ANCHOR": None,
                          "REFMESH_BOOTSTRAP": None})


def invoke(runner, world, *args):
    root = world["root"]
    return runner.invoke(cli, ["aggregates", *args, "--region", "GCC", "--directory",
                               str(root / "directory.bin"), "--anchor",
                               str(root / "anchor.json"), "--broker", "embedded"])


def verified(world) -> list[dict]:
    latest = table.Latest()
    table.accept(((str(m.offset), m.value) for m in world["messages"]), world["trusted"], NOW,
                 "GCC", latest)
    return latest.releases()


def test_export_csv_has_ctdc_columns_and_only_the_newest_revision(runner, world):
    result = invoke(runner, world, "export", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(table.COLUMNS)
    for name in ("yearOfRegistration", "citizenship", "gender", "ageBroad",
                 "typeOfExploitation", "reportingCountry", "finalStatus", "count"):
        assert name in rows[0]
    assert {r["period"] for r in rows} == {"2026-07", "2026-08", "2026-09"}
    august = [r for r in rows if r["period"] == "2026-08"]
    assert {r["revision"] for r in august} == {"1"}  # the correction replaced revision 0
    assert {r["region"] for r in rows} == {"GCC"} and {r["domain"] for r in rows} == {BH}
    cells = [r for r in rows if r["cellType"] == "cell"]
    assert cells and all(int(r["count"]) >= 10 and int(r["count"]) % 5 == 0 for r in cells)
    assert not any(CANARY in r.values() or "IN" in r.values() for r in rows)  # below k
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: partition") for w in warnings)
    assert {re.search(r"\((\w+)\)", w).group(1) for w in warnings} == {
        "wrong_region", "not_a_domain", "bad_signature"}


def test_export_json_to_a_file(runner, world, tmp_path):
    out = tmp_path / "gcc.json"
    result = invoke(runner, world, "export", "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    totals = [r for r in rows if r["cellType"] == "total"]
    assert len(totals) == 3 and all(r["citizenship"] is None for r in totals)
    outcome = next(r for r in rows if r["cellType"] == "outcome")
    assert (outcome["finalStatus"], outcome["count"]) == ("accepted", 10)
    assert f"wrote {len(rows)} rows" in result.stderr


def test_report_is_one_page_with_embedded_charts_and_no_small_cell(runner, world, tmp_path):
    out = tmp_path / "report.html"
    result = invoke(runner, world, "report", "--out", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4  # trend, exploitation, citizenship, outcomes
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "How to read these numbers" in page and "fewer than 11" in page
    assert "corrected, revision 1" in page
    assert "Kenya" not in page and f">{CANARY}<" not in page and "Organ" not in page
    assert "India" not in page  # 7 referrals: below k
    assert "3 release(s) failed verification" in page


def test_tail_once_prints_the_newest_release_of_each_window(runner, world):
    result = invoke(runner, world, "tail", "--once")
    assert result.exit_code == 0, result.output
    heads = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split()[1] for h in heads] == ["2026-07", "2026-08", "2026-09"]
    assert "corrected (revision 1 of 1)" in heads[1]
    assert CANARY not in result.stdout


def test_tail_follows_new_releases(runner, world, monkeypatch):
    msgs = world["messages"]
    batches = [msgs[:1], msgs[1:3], msgs[3:5], msgs[5:]]  # the correction, then its original
    closed = []

    def follow(config, region):
        def gen():
            try:
                yield from batches
            finally:
                closed.append(True)
        return gen()

    monkeypatch.setattr(reader, "follow", follow)
    result = invoke(runner, world, "tail")
    assert result.exit_code == 0, result.output
    heads = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split()[1] for h in heads] == ["2026-07", "2026-08", "2026-09", "2026-08"]
    assert "corrected" in heads[-1] and closed == [True]


def test_a_missing_topic_is_one_error_line(runner, world, monkeypatch):
    monkeypatch.setattr(reader, "read_all", lambda config, region, timeout=60.0: None)
    result = invoke(runner, world, "export")
    assert result.exit_code == common.USAGE
    assert result.stderr.splitlines() == [(
        "error: no aggregate topic refmesh.region.GCC.aggregates on 127.0.0.1:9092; check "
        "--region and --bootstrap (the topic is created with the mesh's topics)")]


def test_a_bad_region_is_one_error_line(runner, world):
    root = world["root"]
    result = runner.invoke(cli, ["aggregates", "export", "--region", "G.C", "--directory",
                                 str(root / "directory.bin"), "--anchor",
                                 str(root / "anchor.json")])
    assert result.exit_code == common.USAGE
    assert result.stderr.startswith("error: region 'G.C' is not a region code")


def test_rendering_without_the_cli(world):
    releases = verified(world)
    assert [r["revision"] for r in releases] == [0, 1, 0]
    page = aggregates_report.render(releases, region="GCC", generated_at=NOW)
    assert page.count("data:image/png;base64,") == 4
    assert "Ethiopia (ET)" in page
    empty = aggregates_report.render([], region="GCC", generated_at=NOW)
    assert "No verified release" in empty and "data:image" not in empty
    csv_text = table.to_csv(table.rows(releases))
    assert csv_text.splitlines()[0] == ",".join(table.COLUMNS)


def test_chart_png_for_a_look(world, tmp_path):
    """Writes one chart where a person can open it (tmp_path); checks it is a sane PNG."""
    png = aggregates_report.trend_chart(table.trend(verified(world)))
    Path(tmp_path / "trend.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and 10_000 < len(png) < 400_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > height > 300


def test_verification_uses_the_codec(world):
    """A message that is not an Aggregate at all is rejected, not a crash."""
    kept, rejected = table.accept([("x", codec.encode("Receipt", {
        "deliveryKey": "k", "eventId": "e", "outcome": "Stored", "receivedBy": BH,
        "at": NOW}))], world["trusted"], NOW, "GCC", table.Latest())
    assert kept == [] and rejected[0].reason == "malformed"
