"""Pipeline benchmark: referrals from one gateway to another through the policy domain, on the
embedded Tansu broker and on Apache Kafka side by side, in one invocation.

Per run and per broker kind (``--brokers embedded,apache``; both by default when Java 17+ is
there, the order alternating from run to run so that a drift of the machine's load falls on both
kinds alike) it starts a fresh broker (devmesh.brokers.start) and a fresh sample mesh on it
(agency codes suffixed as in tests/integration/meshfix.py): the gateways of BH/GOV/HOTLINE and
BH/GOV/SHELTER and the agents of BH/GOV/NCCTIP as child processes (devmesh.mesh.RunningMesh),
with that kind's client profile. On a secured Apache Kafka (``--apache-security``: on when the
tree can apply the mesh's ACLs) each gateway and the domain log in as their own SCRAM user over
SASL_SSL, under the ACLs of their role. Measures, per run and kind:

- throughput: N synthetic referrals POSTed to the hotline's API from a few client threads as
  fast as it takes them; referrals/s from the first submit to the last one stored at the shelter;
- latency at a steady rate: per referral, submit (client clock) to stored (the shelter's
  ``created_ms`` in GET /v1/inbox, the same machine's clock), p50/p99/max;
- baseline (a): the cryptographic work one referral causes on its whole closed loop (5 seals
  and 5 opens with refmesh.envelope, so the Avro work inside them is included, and the domain's
  AES-SIV state reads and write) in a loop in one process;
- baseline (b): N plain byte strings of a sealed referral envelope's size produced and consumed
  twice (two hops) with kafka-python and that broker kind's client profile;
- peak resident memory (VmRSS) of each process, and CPU time per referral of every process.

Every referral's person has consented first (recorded at the hotline, held by the domain), as
the domain refuses a referral without consent. Progress is tracked without touching the
gateways: the bench reads their SQLite files read-only (WAL lets readers in without blocking the
writer); results come from the gateways' HTTP API.
Apache Kafka that cannot run (no Java 17+ or Maven, or a broker that fails to start) is said in
the output and in bench/RESULTS.md, with the reason; the embedded half still runs.
Usage: python bench/pipeline.py [--runs 3] [--quick] [--brokers embedded,apache]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaProducer  # noqa: E402

from bench.pipeline_mesh import (  # noqa: E402
    DOMAIN, HOTLINE, SHELTER, Bench, RssSampler, acls_available, cpu_s, submit_all, wall_ms)
from bench.results import spread, write_section  # noqa: E402
from devmesh import brokers  # noqa: E402
from devmesh.apache import LIBS  # noqa: E402
from devmesh.brokers import LocalBroker  # noqa: E402
from kafkaedge import topic_reader  # noqa: E402
from kafkaedge.loading import now_ms  # noqa: E402
from kafkaedge.policy_files import read_policy  # noqa: E402
from kafkaedge.topics import TopicSpec, ensure_topics  # noqa: E402
from refmesh import envelope, loop, records, samples, topology  # noqa: E402
from refmesh.decide import Allow, decide  # noqa: E402
from refmesh.domain import CONSENT_CONTEXT, consent_key, protect_consent  # noqa: E402

SECTION = "Pipeline: gateway to gateway through the domain (bench/pipeline.py)"
START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- the measurements -------------------------------------------------------------------------

def throughput(bench: Bench, tag: str, n: int, threads: int) -> dict:
    prefix = f"tp-{tag}-"
    referrals = [bench.referral(f"{prefix}{i:05d}", i) for i in range(n)]
    procs = {**bench.pids(), "broker": bench.broker_pid,
             "bench (API clients, progress polling)": os.getpid()}
    cpu0 = {name: cpu_s(pid) for name, pid in procs.items()}
    wall0 = time.monotonic()
    submitted = submit_all(bench, referrals, threads)
    submit_s = time.monotonic() - wall0
    bench.wait_stored(prefix, n, timeout=60 + n / 20)
    stored_s = time.monotonic() - wall0
    bench.wait_quiet(timeout=60 + n / 20)
    quiet_s = time.monotonic() - wall0
    cpu = {name: (cpu_s(pid) - cpu0[name]) * 1000 / n for name, pid in procs.items()}
    stored = bench.stored_at(prefix)
    first = min(submitted.values())
    last = max(stored.values())
    closed = bench.loop_closed_at(prefix)
    say(f"  throughput: {n} submitted in {submit_s:.1f} s, stored after {stored_s:.1f} s, "
        f"loop closed after {quiet_s:.1f} s; {bench.resends(prefix)} re-sends")
    return {"rate": n / ((last - first) / 1000), "loop_rate": n / ((closed - first) / 1000),
            "submit_rate": n / submit_s, "cpu_ms": cpu, "wall_s": quiet_s,
            "resends": bench.resends(prefix)}


def latency(bench: Bench, tag: str, rate: float, seconds: float) -> dict:
    prefix = f"lat-{tag}-"
    n = int(rate * seconds)
    client = bench.api[bench.hotline]
    submitted: dict[str, float] = {}
    t0 = time.monotonic()
    pause = threading.Event()
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            pause.wait(delay)
        referral = bench.referral(f"{prefix}{i:05d}", i)
        submitted[referral["referralId"]] = wall_ms()
        client.submit(referral)
    achieved = n / (time.monotonic() - t0)
    bench.wait_stored(prefix, n, timeout=60 + seconds)
    stored = bench.stored_at(prefix)
    ms = sorted(stored[rid] - submitted[rid] for rid in submitted)
    bench.wait_quiet(timeout=60 + seconds)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    say(f"  latency at {achieved:.1f}/s offered: p50 {statistics.median(ms):.0f} ms, "
        f"p99 {p99:.0f} ms, max {ms[-1]:.0f} ms; {bench.resends(prefix)} re-sends")
    return {"p50": statistics.median(ms), "p99": p99, "max": ms[-1], "offered": achieved}


def crypto_baseline(bench: Bench, n: int) -> tuple[float, int]:
    """Referrals/s of the cryptographic work of one closed loop, in one process.

    Counted from gateways/relay.py, gateways/inbox.py, gateways/store.py, agents/forward.py and
    refmesh/domain.py, per referral: the hotline seals the referral for the domain; the domain
    opens it, reads the person's consent and forwarding log (AES-SIV unprotect, twice), reseals
    the minimised referral for the shelter and rewrites the log (AES-SIV protect); the shelter
    opens it and seals a Receipt and a "received" ReferralStatus for the hotline; the hotline
    opens both and seals a Receipt for the status; the shelter opens that. So 5 seals (HPKE seal
    + Ed25519 sign) and 5 opens (verify + HPKE open) with refmesh.envelope, whose Avro work is
    included, and 3 AES-SIV operations. The policy decision (minimisation) is made once outside
    the loop. Returns (referrals/s, bytes of the sealed referral envelope).
    """
    directory = bench.directory()
    hot, dom, she = (bench.keys(a) for a in (bench.hotline, bench.domain, bench.shelter))
    files, now = bench.files, now_ms()
    path = files.agents_config(bench.domain).parent.parent / "policies" / (
        bench.domain.replace("/", "_") + ".signed")
    policy, _ = read_policy(path.read_bytes(), str(path), directory, bench.domain, now)
    secret = files.env["REFMESH_PSEUDONYM_SECRET"].encode()
    # person 0's referral and consent as the domain holds them (validated, defaults filled)
    referral = records.Referral.from_dict(bench.referral("base", 0)).to_dict()
    consent = records.Consent.from_dict(bench.consent(0)).to_dict()
    decision = decide(referral, consent, directory, policy, now, secret)
    if not isinstance(decision, Allow):
        raise RuntimeError(f"the sample policy refuses the benchmark's referral: {decision}")
    subject = topology.partition_key(b"bench", referral["subjectId"])
    table_key = consent_key(subject, referral["senderAgency"], referral["consentId"], secret)
    held_consent = protect_consent(dom, table_key, consent)
    held_log = envelope.protect(dom, b"log|" + subject, b"[]")

    def one() -> int:
        now = now_ms()
        sealed = envelope.seal("Referral", referral, hot, dom.agency_id, directory, now)
        opened = envelope.open(sealed, dom, directory, now)
        envelope.unprotect(dom, CONSENT_CONTEXT + table_key, held_consent)
        entries = json.loads(envelope.unprotect(dom, b"log|" + subject, held_log))
        resealed = envelope.seal("Referral", decision.record, dom, she.agency_id, directory,
                                 now, event_id=opened.header["eventId"])
        envelope.protect(dom, b"log|" + subject, json.dumps([*entries, {
            "recipient": she.agency_id, "referralId": referral["referralId"],
            "consentId": referral["consentId"]}]).encode())
        got = envelope.open(resealed, she, directory, now)
        receipt = {"deliveryKey": loop.delivery_key("Referral", got.record),
                   "eventId": got.header["eventId"], "outcome": "Stored",
                   "receivedBy": she.agency_id, "at": now}
        status = samples.status(referral["referralId"], "received", she.agency_id, now)
        for record_type, record in (("Receipt", receipt), ("ReferralStatus", status)):
            envelope.open(envelope.seal(record_type, record, she, hot.agency_id, directory,
                                        now), hot, directory, now)
        back = {"deliveryKey": loop.delivery_key("ReferralStatus", status),
                "eventId": str(uuid.uuid4()), "outcome": "Stored", "receivedBy": hot.agency_id,
                "at": now}
        envelope.open(envelope.seal("Receipt", back, hot, she.agency_id, directory, now), she,
                      directory, now)
        return len(sealed)

    size = one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    return n / (time.perf_counter() - start), size


def kafka_baseline(kafka: LocalBroker, tag: str, n: int, size: int) -> float:
    """Messages/s of N byte strings of ``size`` through two hops: produce N to one topic,
    consume them, produce N to a second topic, consume them (one after the other, one process),
    with the broker kind's client profile (embedded: one record per batch, acks=all, one
    request in flight; apache: idempotent, batches of up to 256 KB after 5 ms, read_committed),
    as the operator (a super user on a secured broker)."""
    topics = [f"bench.pipeline.{tag}.hop{h}" for h in (1, 2)]
    ensure_topics(kafka.admin_config(), [TopicSpec(t, 4) for t in topics])
    producer = KafkaProducer(**kafka.producer_config())
    config = kafka.consumer_config("unused")
    consumers = []
    try:
        for topic in topics:
            producer.partitions_for(topic)  # metadata now, not inside the timing
            consumer = topic_reader.consumer(config)
            topic_reader.assign(consumer, topic)
            consumers.append(consumer)
        payload = os.urandom(size)
        keys = [uuid.uuid4().hex.encode() for _ in range(n)]
        start = time.perf_counter()
        for topic, consumer in zip(topics, consumers):
            for key in keys:
                producer.send(topic, key=key, value=payload)
            producer.flush()
            seen = 0
            deadline = time.monotonic() + 60
            while seen < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {seen} of {n} messages came back from {topic}")
                seen += sum(len(b) for b in consumer.poll(timeout_ms=200).values())
        return n / (time.perf_counter() - start)
    finally:
        producer.close()
        for consumer in consumers:
            consumer.close(autocommit=False)


# --- one run on one broker, several runs on both kinds, the table ------------------------------

def one_run(root: Path, kafka: LocalBroker, run: int, args) -> dict:
    tag = uuid.uuid4().hex[:6]
    load = os.getloadavg()[0]
    bench = Bench(root / f"run{run}-{kafka.kind}", kafka, tag)
    try:
        crypto, size = crypto_baseline(bench, args.crypto_n)
        say(f"run {run} {kafka.kind}: baseline (a) {crypto:,.0f} referrals/s; sealed referral "
            f"{size} bytes")
        kafka_rate = kafka_baseline(kafka, tag, args.n, size)
        say(f"run {run} {kafka.kind}: baseline (b) {kafka_rate:,.0f} msgs/s through two hops")
        bench.start()
        sampler = RssSampler({**bench.pids(), "broker": bench.broker_pid})
        sampler.start()
        people = max(args.n, int(args.rate * args.seconds), 10)
        consents = bench.record_consents(people, args.threads)
        say(f"run {run} {kafka.kind}: mesh {tag} running; {people} consents recorded at the "
            f"hotline and held by the domain ({consents:,.0f}/s); warming up")
        warm = [bench.referral(f"warm-{tag}-{i}", i) for i in range(10)]
        submit_all(bench, warm, 2)
        bench.wait_stored(f"warm-{tag}-", len(warm), 60)
        bench.wait_quiet(60)
        tp = throughput(bench, tag, args.n, args.threads)
        lat = latency(bench, tag, args.rate, args.seconds)
        peak = sampler.stop()
    finally:
        bench.stop()
    return {"crypto": crypto, "size": size, "kafka": kafka_rate, "rss": peak,
            "consents": consents, "load": load, "resend_after_ms": bench.resend_after_ms,
            **{f"tp_{k}": v for k, v in tp.items()}, **{f"lat_{k}": v for k, v in lat.items()}}


def kafka_version() -> str:
    """Apache Kafka's version, from the broker jar broker/pom.xml resolved (kafka_2.13-X.jar)."""
    jars = sorted(LIBS.glob("kafka_2.13-*.jar"))
    return jars[0].stem.removeprefix("kafka_2.13-") if jars else "4"


def label(kind: str, secured: bool) -> str:
    if kind == "embedded":
        return "Tansu (embedded)"
    return f"Apache Kafka {kafka_version()} ({'SASL_SSL, ACLs' if secured else 'PLAINTEXT'})"


def cells(per_kind: dict[str, list[dict]], values, digits: int) -> list[str]:
    """One ``median (min-max)`` cell per broker kind, then Apache / Tansu over the runs paired
    by number (each pair measured back to back) when both ran."""
    out = [spread(values(results), digits) for results in per_kind.values()]
    if len(per_kind) == 2:
        tansu, apache = (values(per_kind[k]) for k in ("embedded", "apache"))
        pairs = [a / t for t, a in zip(tansu, apache) if t > 0]
        out.append(spread(pairs, 2) if pairs and len(pairs) == min(len(tansu), len(apache))
                   else "-")
    return out


def table(per_kind: dict[str, list[dict]], secured: bool, notes: list[str], args) -> str:
    def col(key, scale=1.0):
        return lambda results: [r[key] * scale for r in results]

    def ratio(key):
        return lambda results: [r["tp_rate"] / r[key] for r in results]

    def rss(name):
        return lambda results: [r["rss"][name] / 1024 for r in results]

    def cpu(name):
        return lambda results: [r["tp_cpu_ms"][name] for r in results]

    def cpu_all(results):
        return [sum(r["tp_cpu_ms"].values()) for r in results]

    cores = os.cpu_count() or 1
    first = next(iter(per_kind.values()))[0]
    rows = [
        ("setup: consents recorded at the hotline until the domain holds them (consents/s)",
         col("consents"), 1),
        ("throughput: hotline API to shelter inbox (referrals/s)", col("tp_rate"), 1),
        ("... to closed loop: hotline sees every referral received (referrals/s)",
         col("tp_loop_rate"), 1),
        ("... submits accepted by the hotline API while it ran (referrals/s)",
         col("tp_submit_rate"), 1),
        (f"... referrals re-sent meanwhile (no receipt within resend_after_ms = "
         f"{first['resend_after_ms']})", col("tp_resends"), 0),
        ("baseline (a): cryptographic work of one closed loop, 1 process (referrals/s)",
         col("crypto"), 1),
        ("**pipeline / baseline (a)** (target at least 0.5)", ratio("crypto"), 2),
        ("baseline (b): kafka-python two hops, this kind's client profile (msgs/s)",
         col("kafka"), 1),
        ("**pipeline / baseline (b)**", ratio("kafka"), 3),
        ("latency run: rate offered to the hotline API (referrals/s)", col("lat_offered"), 1),
        (f"latency at {args.rate:g} referrals/s for {args.seconds:g} s: p50 (ms)",
         col("lat_p50"), 0),
        ("latency p99 (ms; target under 250)", col("lat_p99"), 0),
        ("latency max (ms)", col("lat_max"), 0),
        *[(f"peak RSS, {name} (MB{'; target under 150' if 'gateway' in name else ''})",
           rss(name), 1) for name in first["rss"]],
    ]
    cpu_rows = [*[(name, cpu(name)) for name in first["tp_cpu_ms"]],
                ("all processes", cpu_all)]
    heads = [label(kind, secured) for kind in per_kind]
    if len(per_kind) == 2:
        heads.append("Apache / Tansu (runs paired)")
    head = ["| figure | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    cpu_head = ["| process (CPU ms per referral) | " + " | ".join(heads) + " |",
                "|---" * (len(heads) + 1) + "|"]
    loads = "; ".join(f"{label(kind, secured)}: " + ", ".join(f"{r['load']:.1f}" for r in rs)
                      for kind, rs in per_kind.items())
    runs = ", ".join(f"{len(rs)} on {label(kind, secured)}" for kind, rs in per_kind.items())
    verdicts = []
    for kind, results in per_kind.items():
        median_a = statistics.median(ratio("crypto")(results))
        gw_peak = max(max(rss(n)(results)) for n in ("hotline gateway", "shelter gateway"))
        p99 = statistics.median(col("lat_p99")(results))
        verdicts.append(
            f"- {label(kind, secured)}: pipeline / baseline (a) = {median_a:.2f}, target of at "
            f"least 0.5 {'met' if median_a >= 0.5 else 'NOT met'}; latency p99 {p99:.0f} ms, "
            f"target under 250 ms {'met' if p99 < 250 else 'NOT met'}; gateway peak RSS "
            f"{gw_peak:.0f} MB, target under 150 MB {'met' if gw_peak < 150 else 'NOT met'}.")
        resends = statistics.median(col("tp_resends")(results))
        if resends > 0:
            verdicts.append(
                f"- {label(kind, secured)}: the throughput run re-sent {resends:,.0f} referrals "
                f"(median): the submits queued up faster than the pipeline took them, so "
                f"receipts came later than resend_after_ms = {first['resend_after_ms']}; its "
                "throughput and CPU per referral include the work of the re-sends.")
        offered = statistics.median(col("lat_offered")(results))
        rate = statistics.median(col("tp_rate")(results))
        if offered >= rate:
            verdicts.append(
                f"- {label(kind, secured)}: the latency run offered more than the pipeline's "
                f"throughput ({offered:.0f} against {rate:.0f} referrals/s): its latencies are "
                "queueing delays that grow with the length of the run.")
    return "\n".join([
        *[f"**{note}**" for note in notes], *([""] if notes else []),
        f"Runs: {runs}; per run number, one run on each broker kind back to back (the order "
        "alternating), each on a fresh broker and a fresh sample mesh (gateways of "
        f"{HOTLINE} and {SHELTER}, agents of {DOMAIN}, as child processes, with the client "
        "profile of the kind: embedded = one record per batch, no idempotence, one request in "
        "flight; apache = idempotent producers, batches of up to 256 KB after 5 ms, "
        "read_committed); median (min-max). The last column divides each Apache Kafka figure "
        "by the Tansu one of the same run number. Throughput: "
        f"{args.n} full synthetic referrals ({first['size']:,} bytes once sealed) POSTed from "
        f"{args.threads} client threads, from the first submit to the last one stored (the "
        "shelter's created_ms in GET /v1/inbox, same machine clock). Latency: the same, per "
        "referral, at a steady rate. Every referral's person consented first (setup, not "
        "timed). Baseline (a): the cryptographic work of one closed loop in a loop in one "
        "process: 5 seals and 5 opens with refmesh.envelope (the referral at the hotline and at "
        "the domain, a receipt and a status at the shelter, a receipt at the hotline; the Avro "
        "work inside seal/open included) and the domain's 3 AES-SIV state operations; record "
        "validation, the policy decision and storage not. Baseline (b): as many byte strings "
        "of the sealed size produced and consumed, then produced and consumed again on a "
        "second topic, one step after the other in one process, with kafka-python and the "
        "kind's client profile, on the same broker just before its mesh starts. Load average "
        f"(1 min) of the machine as each run started: {loads}.", "",
        *head, *[f"| {name} | " + " | ".join(cells(per_kind, values, digits)) + " |"
                 for name, values, digits in rows], "",
        "CPU time per referral during the throughput run (first submit to closed loop, from "
        "/proc/PID/stat; the broker is the Tansu process or Apache Kafka's JVM, the bench "
        "process runs the API clients):", "",
        *cpu_head, *[f"| {name} | " + " | ".join(cells(per_kind, values, 2)) + " |"
                     for name, values in cpu_rows],
        f"| ceiling if CPU-bound on {cores} cores (referrals/s) | " + " | ".join(cells(
            per_kind, lambda rs: [cores * 1000 / c for c in cpu_all(rs)], 1)) + " |", "",
        *verdicts,
    ])


def run_kind(kind: str, root: Path, run: int, security: bool, args) -> dict:
    """One run on a fresh broker of ``kind``, stopped afterwards."""
    folder = root / f"run{run}-{kind}-broker" if kind == "apache" else None
    kafka = brokers.start(kind, folder, security=security)
    try:
        say(f"run {run}: {brokers.describe(kafka)} at {kafka.bootstrap}")
        return one_run(root, kafka, run, args)
    finally:
        kafka.stop()


def log_tails(root: Path, kind: str) -> None:
    logs = [*sorted(root.glob(f"run*-{kind}/logs/*.log")),
            *sorted(root.glob(f"run*-{kind}-broker/node-*/server.log"))]
    for log in logs:
        tail = "\n    ".join(log.read_text(errors="replace").splitlines()[-8:])
        print(f"--- {log.relative_to(root)} (last lines)\n    {tail}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per broker kind")
    ap.add_argument("--quick", action="store_true",
                    help="one short run per broker kind (a few minutes)")
    ap.add_argument("--brokers", default=None,
                    help="broker kinds, comma-separated (default embedded,apache; apache is "
                         "left out, with the reason, when Java 17+ or Maven is missing)")
    ap.add_argument("--apache-security", choices=("auto", "on", "off"), default="auto",
                    help="Apache Kafka with SASL_SSL, SCRAM users and the mesh's ACLs (on), "
                         "PLAINTEXT (off), or on when this tree can apply the ACLs (auto)")
    ap.add_argument("--n", type=int, help="referrals in the throughput run (1000; quick 100)")
    ap.add_argument("--threads", type=int, default=4, help="API client threads")
    ap.add_argument("--rate", type=float, default=50.0, help="referrals/s in the latency run")
    ap.add_argument("--seconds", type=float, help="length of the latency run (20; quick 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    ap.add_argument("--json", metavar="PATH",
                    help="write the medians there as JSON (bench/ab.py), not RESULTS.md")
    args = ap.parse_args()
    kinds = [k.strip() for k in (args.brokers or ",".join(brokers.KINDS)).split(",") if k]
    unknown = sorted(set(kinds) - set(brokers.KINDS))
    if unknown or not kinds:
        ap.error(f"--brokers takes {' and/or '.join(brokers.KINDS)}, not {unknown or kinds}")
    if args.quick:
        args.runs = 1
    # 1000 referrals and 20 s (not more) keep three runs on each of the two kinds, with the
    # consents each needs first, within about 15 minutes on 2 cores
    args.n = args.n or (100 if args.quick else 1000)
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    args.crypto_n = 20 if args.quick else 300
    # SIGTERM (make, CI) unwinds like Ctrl-C, so that the finally blocks stop every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    notes: list[str] = []  # what did not run, and why: in the output and in RESULTS.md
    security = False
    if "apache" in kinds:
        problem = brokers.apache_available()
        if problem:
            kinds.remove("apache")
            notes.append(f"Apache Kafka was NOT measured: {problem}")
        elif args.apache_security == "auto":
            missing = acls_available()
            security = missing is None
            if missing:
                notes.append("Apache Kafka ran WITHOUT security (PLAINTEXT, no SASL, TLS or "
                             f"ACLs): the mesh's ACLs cannot be applied yet ({missing})")
        else:
            security = args.apache_security == "on"
            if not security:
                notes.append("Apache Kafka ran WITHOUT security (PLAINTEXT, no SASL, TLS or "
                              "ACLs): --apache-security off")
    for note in notes:
        say(f"NOTE: {note}")
    if not kinds:
        return 1

    root = Path(tempfile.mkdtemp(prefix="refmesh-bench-pipeline-"))
    say(f"work folder {root}; broker kinds: {', '.join(kinds)}")
    per_kind: dict[str, list[dict]] = {kind: [] for kind in kinds}
    active, failed = list(kinds), False
    try:
        for run in range(1, args.runs + 1):
            for kind in list(active) if run % 2 else active[::-1]:
                try:
                    per_kind[kind].append(run_kind(kind, root, run, security, args))
                except Exception as exc:
                    failed = True
                    why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                    say(f"run {run} on {kind} failed: {why}")
                    log_tails(root, kind)
                    notes.append(f"{label(kind, security)}: run {run} of {args.runs} failed "
                                 f"({why}); its later runs were not made")
                    active.remove(kind)
            if not active:
                break
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    per_kind = {kind: results for kind, results in per_kind.items() if results}
    if not per_kind:
        return 1
    body = table(per_kind, security, notes, args)
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(medians(per_kind)))
    elif not args.quick:
        write_section(SECTION, body)
    return 1 if failed else 0


def medians(per_kind: dict[str, list[dict]]) -> dict[str, float]:
    """``{"<kind>: <figure>": median over the runs}`` for bench/ab.py."""
    out: dict[str, float] = {}
    for kind, runs in per_kind.items():
        figures = {
            "throughput (referrals/s)": [r["tp_rate"] for r in runs],
            "pipeline / baseline (a)": [r["tp_rate"] / r["crypto"] for r in runs],
            "baseline (a) (referrals/s)": [r["crypto"] for r in runs],
            "re-sends in the throughput run": [r["tp_resends"] for r in runs],
            "latency p50 (ms)": [r["lat_p50"] for r in runs],
            "latency p99 (ms)": [r["lat_p99"] for r in runs],
            "CPU ms per referral, all processes": [sum(r["tp_cpu_ms"].values()) for r in runs],
            **{f"CPU ms per referral, {name}": [r["tp_cpu_ms"][name] for r in runs]
               for name in runs[0]["tp_cpu_ms"]},
        }
        out.update({f"{kind}: {name}": statistics.median(v) for name, v in figures.items()})
    return out


if __name__ == "__main__":
    sys.exit(main())
