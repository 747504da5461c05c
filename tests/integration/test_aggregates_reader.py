"""The regional body's reader on a real broker: signed releases produced to a region's topic are
read to the end, followed as they arrive, and exported by `refmesh aggregates export`."""
from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from kafka import KafkaProducer

from gateways import aggregates_reader as reader
from cli import cli
from kafkaedge.loading import now_ms
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import aggregate as agg
from refmesh import directory, keys, samples

COORD, DOMAIN = "BH/GOV/MOFA", "BH/GOV/NCCT"


def release(domain_keys, region: str, month_offset: int, n: int) -> bytes:
    cell = agg.cell_of(samples.referral(), "forwarded", {"jurisdiction": "BH"},
                       {"role": "NGO"}, now_ms())
    window = agg.window_of(now_ms() - month_offset * 31 * 86_400_000)
    out = agg.decide_release({agg.cell_key(cell): n}, domain=DOMAIN, region=region,
                             window=window)
    return agg.sign_release(out.record, domain_keys)


def test_releases_are_read_followed_and_exported(kafka, unique, tmp_path):
    region = f"IT{unique}"
    now = now_ms()
    ks = {a: keys.generate(a, now - 1000) for a in (COORD, DOMAIN)}
    draft = directory.empty(COORD)
    for agency, k in ks.items():
        draft = directory.add_member(draft, directory.member_entry(
            k, agency, "CentralGovernmentOrganisation", "BH", None, now - 1000))
    (tmp_path / "directory.bin").write_bytes(directory.sign(draft, ks[COORD], now))
    (tmp_path / "anchor.json").write_text(json.dumps(
        directory.TrustAnchor.of(ks[COORD]).to_json()))
    ensure_topics(kafka.admin_config(),
                  [TopicSpec(agg.topic(region), 2)])
    producer = KafkaProducer(**kafka.producer_config())
    try:
        for offset, n in ((2, 30), (1, 45)):
            producer.send(agg.topic(region), release(ks[DOMAIN], region, offset, n)).get(30)
        config = kafka.consumer_config(f"it-{unique}")

        assert reader.read_all(config, f"missing{unique}") is None
        assert len(reader.read_all(config, region)) == 2

        batches = reader.follow(config, region)
        try:
            assert len(next(batches)) == 2  # the backlog
            producer.send(agg.topic(region), release(ks[DOMAIN], region, 0, 60)).get(30)
            assert len(next(batches)) == 1  # then what arrives
        finally:
            batches.close()
    finally:
        producer.close()

    result = CliRunner().invoke(cli, [
        "aggregates", "export", "--region", region, "--directory",
        str(tmp_path / "directory.bin"), "--anchor", str(tmp_path / "anchor.json"),
        "--config", str(kafka.client_file())])
    assert result.exit_code == 0, result.output
    totals = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["cellType"] == "total"]
    assert sorted(int(r["count"]) for r in totals) == [30, 45, 60]
