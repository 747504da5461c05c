"""The restore benchmark (bench/scale.py): how long a fresh agent worker of the domain takes to
restore its tables when they hold the state of N forwarded referrals.

Per size, on one broker: a fresh sample mesh (bench/scale_mesh.ScaleBench, the domain's topics
pre-created), the state of N forwarded referrals made by bench/scale_state.py with the mesh's
own keys and secrets and produced into the domain's changelog topics
(``refmesh.domain.<D>.<table>``, topology.TABLES; each record in its event's partition, with
the broker kind's client profile: one record per batch on Tansu, batches on Apache Kafka);
then one agent worker started with an empty data folder, timed from its process start to
(a) its /healthz answering at all, (b) 200: it holds the inbox's four partitions, faust has
restored the tables and the take-up check (agents/state.py) accepted every partition's state,
which /healthz runs as soon as the tables are restored, and (c) four probe referrals, one per
partition, each from a person whose consent is in the restored state, forwarded to the
shelter's inbox topic (sealed by the hotline and produced onto the domain inbox once (b)).
"""
from __future__ import annotations

import gc
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from kafka import KafkaProducer

from bench.pipeline_mesh import RssSampler
from bench.scale_mesh import ScaleBench
from bench.scale_state import broad_consent, generate
from devmesh.brokers import LocalBroker
from devmesh.supervise import ProcessError
from gateways.client import health_report
from kafkaedge import topic_reader
from kafkaedge.loading import now_ms
from kafkaedge.policy_files import read_policy
from refmesh import envelope, records, topology
from refmesh.decide import Allow, decide


def restore_run(root: Path, kafka: LocalBroker, referrals: int, say,
                timeout: float = 1800.0) -> dict:
    tag = uuid.uuid4().hex[:6]
    bench = ScaleBench(root / f"restore-{kafka.kind}-{referrals}", kafka, tag)
    dom = bench.keys(bench.domain)
    directory = bench.directory()
    env = bench.files.env
    secret = env["REFMESH_PSEUDONYM_SECRET"].encode()
    partition_secret = env["REFMESH_PARTITION_SECRET"].encode()
    now = now_ms()
    # the decision the domain takes for the sample referral: its basis and forwarded fields go
    # into every generated audit record, as Forwarder writes them
    path = bench.files.agents_config(bench.domain).parent.parent / "policies" / (
        bench.domain.replace("/", "_") + ".signed")
    policy, _ = read_policy(path.read_bytes(), str(path), directory, bench.domain, now)
    referral = records.Referral.from_dict(bench.referral("template", 0)).to_dict()
    decision = decide(referral, broad_consent(0, bench.hotline, now - 60_000), directory,
                      policy, now, secret)
    if not isinstance(decision, Allow):
        raise RuntimeError(f"the sample policy refuses the benchmark's referral: {decision}")
    t0 = time.monotonic()
    state = generate(dom, directory, sender=bench.hotline, recipient=bench.shelter,
                     secret=secret, partition_secret=partition_secret, partitions=4, now=now,
                     referrals=referrals, policy_version=policy.version,
                     legal_basis=decision.basis, fields=tuple(decision.fields),
                     progress=lambda n: say(f"  generated the state of {n:,} referrals"))
    generated_s = time.monotonic() - t0
    probes = [state.person_in(p, partition_secret) for p in range(4)]
    count, size = state.records(), 0
    say(f"  {kafka.kind} {referrals:,} referrals: {count:,} table entries generated in "
        f"{generated_s:.1f} s; producing them")
    producer = KafkaProducer(**kafka.producer_config())
    t0 = time.monotonic()
    try:
        for name, partition, key, value in state.changelog():
            producer.send(topology.table(bench.domain, name), key=key, value=value,
                          partition=partition)
            size += len(key) + len(value)
        producer.flush()
        produced_s = time.monotonic() - t0
        del state
        gc.collect()
        result = start_and_probe(bench, kafka, producer, probes, timeout, say)
    finally:
        producer.close()
        bench.stop()
    say(f"  {kafka.kind} {referrals:,} referrals ({count:,} records, {size / 2**20:,.0f} MiB): "
        f"ready {result['ready_s']:.1f} s, all four probes forwarded "
        f"{result['forwarded_s']:.1f} s after the worker's start")
    return {"referrals": referrals, "records": count, "bytes": size,
            "generated_s": generated_s, "produced_s": produced_s, **result}


def start_and_probe(bench: ScaleBench, kafka: LocalBroker, producer: KafkaProducer,
                    probes: list[int], timeout: float, say) -> dict:
    """Start one worker and time it (module doc, (a) to (c))."""
    reader = topic_reader.consumer(kafka.consumer_config())
    try:
        shelter_inbox = topology.agency_inbox(bench.shelter)
        topic_reader.assign(reader, shelter_inbox)
        url = bench.mesh.agents_url(bench.domain)
        t0 = time.monotonic()
        proc = bench.mesh.start_agents(bench.domain)
        sampler = RssSampler({"worker": proc.popen.pid, "broker": bench.broker_pid})
        sampler.start()
        answered = ready = None
        pause = threading.Event()  # the poll's interval
        last: dict = {}
        while ready is None:
            proc.check_alive()
            if time.monotonic() - t0 > timeout:
                raise ProcessError(f"the worker was not ready after {timeout:.0f} s; /healthz "
                                   f"last said: {last.get('problems')}\n{proc.tail()}")
            last = health_report(url)
            if answered is None and not any("no health report" in p
                                            for p in last.get("problems", [])):
                answered = time.monotonic() - t0
            if last.get("ok"):
                ready = time.monotonic() - t0
            else:
                pause.wait(0.05)
        rss_ready = sampler.peak["worker"]
        directory = bench.directory()
        hot = bench.keys(bench.hotline)
        partition_secret = bench.files.env["REFMESH_PARTITION_SECRET"].encode()
        inbox = topology.domain_inbox(bench.domain)
        for j in probes:
            referral = bench.referral(str(uuid.uuid4()), j)
            key = topology.partition_key(partition_secret, referral["subjectId"])
            producer.send(inbox, key=key, partition=topology.partition_of(key, 4),
                          value=envelope.seal("Referral", referral, hot, bench.domain,
                                              directory, now_ms()))
        producer.flush()
        seen = 0
        while seen < len(probes):
            proc.check_alive()
            if time.monotonic() - t0 > timeout + 120:
                raise ProcessError(f"{seen} of {len(probes)} probe referrals forwarded; "
                                   f"worker log:\n{proc.tail()}")
            seen += sum(len(b) for b in reader.poll(timeout_ms=100).values())
        forwarded = time.monotonic() - t0
        peak = sampler.stop()
        return {"answered_s": answered, "ready_s": ready, "forwarded_s": forwarded,
                "recovery_s": recovery_s(proc.log_text()),
                "partitions": last.get("partitions"), "worker_rss_ready_mb": rss_ready / 1024,
                "worker_rss_mb": peak["worker"] / 1024, "broker_rss_mb": peak["broker"] / 1024}
    finally:
        reader.close()


def recovery_s(log: str) -> float | None:
    """Seconds from faust's "Recovery]: Starting..." to its "Recovery complete" in the
    worker's log (the first of each): faust reading the changelogs into its tables."""
    stamps = {}
    for line in log.splitlines():
        for mark, name in (("Recovery]: Starting", "start"), ("Recovery complete", "end")):
            if mark in line and name not in stamps:
                try:
                    stamps[name] = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
                except ValueError:
                    pass
    if len(stamps) < 2:
        return None
    return (stamps["end"] - stamps["start"]).total_seconds()


def slope(runs: list[dict], key: str, per: str) -> float | None:
    """Seconds of ``key`` per million ``per`` (referrals or records), from the smallest run to
    the largest (None with fewer than two sizes)."""
    if len(runs) < 2:
        return None
    small, large = min(runs, key=lambda r: r[per]), max(runs, key=lambda r: r[per])
    if large[per] == small[per]:
        return None
    return (large[key] - small[key]) / (large[per] - small[per]) * 1e6
