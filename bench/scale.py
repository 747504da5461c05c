"""Scale benchmark (issue 15, item 4): what grows with the mesh, each figure against a baseline
measured in the same run.

1. **Directory of 1,000 agencies.** The sample mesh's directory grown to 1,000 member agencies
   (synthetic BH/NGO/A0001..., each with its own keys, keystore and settings file: setup, not
   timed as the figure), against the sample's eight: the hotline gateway's start time, memory
   and sustained rate (bench/pipeline.py's throughput run: referrals POSTed to the hotline's API
   until stored at the shelter) and its CPU ms per referral; what grows with the directory
   (topics, ACL grants, the signed directory's size and load time, the domain agents' start).
2. **Four agent workers.** The domain run with one worker and with four (one partition each of
   the inbox's four), the same load: throughput, CPU ms per referral summed over the workers
   (also less their idle CPU, measured just before), partitions per worker, and every referral
   stored once at the shelter; then the same at a steady 30 referrals/s (``--rate``), where no
   backlog builds up and every event travels alone.
3. **Restore after N forwarded referrals** (bench/scale_restore.py): a fresh worker's time to
   restore the domain's tables, N = 100 (the worker's fixed start cost), 10,000, 100,000 and,
   on Apache Kafka, 1,000,000; the state made by bench/scale_state.py with the core's functions.

Each part runs on each broker kind (Tansu; Apache Kafka 4 PLAINTEXT when Java 17+ and Maven
are there: 1,000 agencies would need 1,000 SCRAM users on a secured one, see the ACL grants
counted instead), a fresh broker per mesh for parts 1 and 2, one broker per kind for part 3.
``--parts`` with some parts only replaces those parts' tables in RESULTS.md's section.
Usage: python bench/scale.py [--quick] [--brokers embedded,apache] [--parts ...]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import kafka_version, throughput  # noqa: E402
from bench.pipeline_mesh import RssSampler, cpu_s, rss_kb, submit_all  # noqa: E402
from bench.results import write_section  # noqa: E402
from bench.scale_mesh import ScaleBench  # noqa: E402
from bench.scale_restore import restore_run, slope  # noqa: E402
from devmesh import brokers  # noqa: E402
from kafkaedge.loading import DirectoryRef, load_anchor  # noqa: E402

SECTION = "Scale (bench/scale.py)"
START = time.monotonic()
PARTS = ("directory", "workers", "restore")


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def label(kind: str) -> str:
    return "Tansu" if kind == "embedded" else f"Apache Kafka {kafka_version()}"


def fresh_broker(kind: str, root: Path, name: str):
    folder = root / f"{name}-broker" if kind == "apache" else None
    return brokers.start(kind, folder, security=False)


def drive(bench: ScaleBench, tag: str, args) -> dict:
    """Consents, a warm-up, the CPU each process spends idle (no referral moving: polling,
    timers), then bench/pipeline.py's throughput run."""
    # every person the throughput and paced runs refer has consented first
    bench.record_consents(max(args.n, int(args.rate * args.seconds)), args.threads)
    warm = [bench.referral(f"warm-{tag}-{i}", i) for i in range(10)]
    submit_all(bench, warm, 2)
    bench.wait_stored(f"warm-{tag}-", len(warm), 60)
    bench.wait_quiet(60)
    procs = {**bench.pids(), "broker": bench.broker_pid}
    before, t0 = {name: cpu_s(pid) for name, pid in procs.items()}, time.monotonic()
    threading.Event().wait(args.idle_s)
    idle = {name: (cpu_s(pid) - before[name]) * 1000 / (time.monotonic() - t0)
            for name, pid in procs.items()}
    tp = throughput(bench, tag, args.n, args.threads)
    tp["stored"] = bench.stored(f"tp-{tag}-")
    tp["idle_ms_per_s"] = idle
    return tp


def paced(bench: ScaleBench, tag: str, rate: float, seconds: float) -> dict:
    """CPU ms per referral of every process with referrals offered at a steady ``rate`` (below
    what the pipeline takes: no backlog, so each event travels alone), until the loop closes."""
    prefix = f"pace-{tag}-"
    n = int(rate * seconds)
    procs = {**bench.pids(), "broker": bench.broker_pid}
    before = {name: cpu_s(pid) for name, pid in procs.items()}
    client, pause, t0 = bench.api[bench.hotline], threading.Event(), time.monotonic()
    for i in range(n):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            pause.wait(delay)
        client.submit(bench.referral(f"{prefix}{i:05d}", i))
    offered = n / (time.monotonic() - t0)
    bench.wait_stored(prefix, n, timeout=60 + seconds)
    bench.wait_quiet(timeout=60 + seconds)
    cpu = {name: (cpu_s(pid) - before[name]) * 1000 / n for name, pid in procs.items()}
    return {"offered": offered, "n": n, "cpu_ms": cpu, "stored": bench.stored(prefix),
            "resends": bench.resends(prefix)}


def net_ms(tp: dict, names, n: int) -> float:
    """CPU ms per referral of the processes ``names`` less what they spend idle over the same
    wall time (their fixed cost per second, measured just before)."""
    spent = sum(v for k, v in tp["cpu_ms"].items() if k in names)
    idle = sum(v for k, v in tp["idle_ms_per_s"].items() if k in names)
    return spent - idle * tp["wall_s"] / n


# --- 1. the directory ---------------------------------------------------------------------------

def directory_run(root: Path, kind: str, members: int, args) -> dict:
    tag = uuid.uuid4().hex[:6]
    kafka = fresh_broker(kind, root, f"dir{members}-{tag}")
    try:
        bench = ScaleBench(root / f"dir{members}-{tag}", kafka, tag, members)
        anchor = load_anchor(bench.files.anchor)
        t0 = time.perf_counter()
        for _ in range(5):
            DirectoryRef(bench.files.directory, anchor)()
        load_ms = (time.perf_counter() - t0) / 5 * 1000
        try:
            bench.start()
            hotline_pid = bench.pids()["hotline gateway"]
            idle_mb = rss_kb(hotline_pid) / 1024
            sampler = RssSampler({"hotline gateway": hotline_pid,
                                  "domain agents": bench.pids()["domain agents"]})
            sampler.start()
            tp = drive(bench, tag, args)
            peak = sampler.stop()
        finally:
            bench.stop()
    finally:
        kafka.stop()
    say(f"  {kind}, {bench.members} agencies: {tp['rate']:.1f} referrals/s, hotline "
        f"{tp['cpu_ms']['hotline gateway']:.2f} CPU ms/referral, started in "
        f"{bench.start_s['hotline gateway']:.1f} s")
    return {"members": bench.members, "topics": bench.topics, "grants": bench.grants,
            "directory_kb": bench.directory_bytes / 1024, "load_ms": load_ms,
            "setup_s": bench.setup_s, "start_s": bench.start_s, "idle_mb": idle_mb,
            "peak_mb": peak["hotline gateway"] / 1024,
            "agents_mb": peak["domain agents"] / 1024, **tp}


# --- 2. the workers -----------------------------------------------------------------------------

def workers_run(root: Path, kind: str, workers: int, args) -> dict:
    tag = uuid.uuid4().hex[:6]
    kafka = fresh_broker(kind, root, f"w{workers}-{tag}")
    try:
        bench = ScaleBench(root / f"w{workers}-{tag}", kafka, tag)
        try:
            bench.start(workers)
            held = bench.partitions_by_worker()
            tp = drive(bench, tag, args)
            tp["paced"] = paced(bench, tag, args.rate, args.seconds)
            after = bench.partitions_by_worker()
        finally:
            bench.stop()
    finally:
        kafka.stop()
    agents = sum(v for k, v in tp["cpu_ms"].items() if "agent" in k)
    say(f"  {kind}, {workers} worker(s): {tp['rate']:.1f} referrals/s, agents {agents:.2f} CPU "
        f"ms/referral, partitions {held} (after the run {after}); stored {tp['stored']} of "
        f"{args.n}")
    return {"workers": workers, "held": held, "after": after, "agents_ms": agents, **tp}


# --- the report ---------------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def directory_table(per_kind: dict[str, list[dict]], n: int) -> list[str]:
    out = ["### 1. One gateway with 1,000 agencies in the directory", "",
           "| figure | " + " | ".join(f"{label(k)}: sample / grown / ratio" for k in per_kind)
           + " |", "|---" * (len(per_kind) + 1) + "|"]
    rows = [
        ("member agencies in the directory", lambda r: r["members"], 0),
        ("signed directory (KiB)", lambda r: r["directory_kb"], 1),
        ("directory load and verification, in the bench process (ms)", lambda r: r["load_ms"], 1),
        ("topics the operator pre-creates (4 partitions each)", lambda r: r["topics"], 0),
        ("broker ACL entries the directory gives (mesh_grants; not applied on PLAINTEXT)",
         lambda r: r["grants"] or 0, 0),
        ("setup: keys, keystores, settings, signed directory (s)",
         lambda r: r["setup_s"]["keys, keystores, settings and the signed directory"], 1),
        ("setup: topics pre-created (s)", lambda r: r["setup_s"]["topics pre-created"], 1),
        ("domain agents' start to /healthz 200 (s)",
         lambda r: r["start_s"]["domain agents (worker 1)"], 1),
        ("**hotline gateway start to /healthz 200 (s)**",
         lambda r: r["start_s"]["hotline gateway"], 2),
        ("hotline gateway RSS when started, idle (MB)", lambda r: r["idle_mb"], 1),
        ("hotline gateway peak RSS in the run (MB; target under 150)", lambda r: r["peak_mb"], 1),
        ("domain agents' peak RSS (MB)", lambda r: r["agents_mb"], 1),
        ("**throughput: hotline API to shelter inbox (referrals/s)**", lambda r: r["rate"], 1),
        ("submits accepted by the hotline API (referrals/s)", lambda r: r["submit_rate"], 1),
        ("**hotline gateway CPU per referral (ms)**",
         lambda r: r["cpu_ms"]["hotline gateway"], 2),
        ("hotline gateway CPU idle (ms per second, no referral moving)",
         lambda r: r["idle_ms_per_s"]["hotline gateway"], 1),
        ("hotline gateway CPU per referral less its idle CPU over the run (ms)",
         lambda r: net_ms(r, ["hotline gateway"], n), 2),
        ("domain agents CPU per referral (ms)", lambda r: r["cpu_ms"]["domain agents"], 2),
        ("all processes CPU per referral (ms)", lambda r: sum(r["cpu_ms"].values()), 2),
        ("re-sends (no receipt within resend_after_ms)", lambda r: r["resends"], 0),
    ]
    out += paired_rows(rows, per_kind)
    return out


def paired_rows(rows, per_kind: dict[str, list[dict]]) -> list[str]:
    """One table row per (name, get, digits): per broker kind "baseline / measured / ratio"
    of the kind's two runs (the baseline first)."""
    out = []
    for name, get, digits in rows:
        cells = []
        for base, measured in per_kind.values():
            a, b = get(base), get(measured)
            cells.append(f"{a:,.{digits}f} / {b:,.{digits}f} / {ratio(b, a)}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def workers_table(per_kind: dict[str, list[dict]], n: int, rate: float) -> list[str]:
    out = ["### 2. The domain with four agent workers", "",
           "| figure | " + " | ".join(f"{label(k)}: 1 worker / 4 workers / ratio"
                                      for k in per_kind) + " |",
           "|---" * (len(per_kind) + 1) + "|"]
    rows = [
        ("throughput (referrals/s)", lambda r: r["rate"], 1),
        ("**agent workers' CPU per referral, summed over the workers (ms)**",
         lambda r: r["agents_ms"], 2),
        ("agent workers' CPU idle, summed (ms per second, no referral moving)",
         lambda r: sum(v for k, v in r["idle_ms_per_s"].items() if "agent" in k), 1),
        ("throughput run's wall time, first submit to closed loop (s)",
         lambda r: r["wall_s"], 1),
        ("**agent workers' CPU per referral less their idle CPU over the run (ms)**",
         lambda r: net_ms(r, [k for k in r["cpu_ms"] if "agent" in k], n), 2),
        ("all processes CPU per referral (ms)", lambda r: sum(r["cpu_ms"].values()), 2),
        ("broker CPU per referral (ms)", lambda r: r["cpu_ms"]["broker"], 2),
        (f"referrals stored at the shelter (of {n}; each once)", lambda r: r["stored"], 0),
        (f"**paced run: agent workers' CPU per referral, summed, at a steady {rate:g}/s (no "
         "backlog) (ms)**",
         lambda r: sum(v for k, v in r["paced"]["cpu_ms"].items() if "agent" in k), 2),
        ("paced run: all processes CPU per referral (ms)",
         lambda r: sum(r["paced"]["cpu_ms"].values()), 2),
        ("paced run: rate achieved (referrals/s)", lambda r: r["paced"]["offered"], 1),
        ("paced run: referrals stored at the shelter (each once)",
         lambda r: r["paced"]["stored"], 0),
        ("paced run: re-sends", lambda r: r["paced"]["resends"], 0),
        ("re-sends (no receipt within resend_after_ms)", lambda r: r["resends"], 0),
    ]
    out += paired_rows(rows, per_kind)
    for kind, runs in per_kind.items():
        four = runs[1]
        out.append("")
        out.append(f"{label(kind)}, inbox partitions per worker (from each worker's /healthz): "
                   + ", ".join(f"worker {w}: {p}" for w, p in four["held"].items())
                   + "; per-worker CPU ms per referral: "
                   + ", ".join(f"{k.removeprefix('agent ')} {v:.2f}"
                               for k, v in four["cpu_ms"].items() if "agent" in k) + ".")
    return out


def restore_table(per_kind: dict[str, list[dict]]) -> list[str]:
    out = ["### 3. Restoring the domain's tables after N forwarded referrals", "",
           "| broker | referrals | table entries | MiB | generate (s) | produce (s) | "
           "/healthz answers (s) | faust recovery, in its log (s) | **ready: partitions held, "
           "tables restored and checked (s)** | 4 probes forwarded (s) | "
           "worker RSS ready / peak (MB) | broker RSS (MB) |",
           "|---" * 12 + "|"]
    for kind, runs in per_kind.items():
        for r in runs:
            out.append(
                f"| {label(kind)} | {r['referrals']:,} | {r['records']:,} | "
                f"{r['bytes'] / 2**20:,.1f} | {r['generated_s']:.1f} | {r['produced_s']:.1f} | "
                f"{r['answered_s']:.1f} | "
                f"{'-' if r['recovery_s'] is None else format(r['recovery_s'], '.1f')} | "
                f"{r['ready_s']:.1f} | {r['forwarded_s']:.1f} | "
                f"{r['worker_rss_ready_mb']:,.0f} / {r['worker_rss_mb']:,.0f} | "
                f"{r['broker_rss_mb']:,.0f} |")
    out.append("")
    for kind, runs in per_kind.items():
        per_ref = slope(runs, "ready_s", "referrals")
        per_rec = slope(runs, "ready_s", "records")
        if per_ref is None:
            continue
        small = min(runs, key=lambda r: r["referrals"])
        large = max(runs, key=lambda r: r["referrals"])
        out.append(
            f"- {label(kind)}: restore time grows by {per_ref:,.0f} s per million referrals "
            f"({per_rec:,.0f} s per million table entries), from {small['referrals']:,} to "
            f"{large['referrals']:,}; ready after {large['referrals']:,} referrals / after "
            f"{small['referrals']:,} = {ratio(large['ready_s'], small['ready_s'])}.")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, Tansu only (a smoke test)")
    ap.add_argument("--brokers", help="broker kinds (default embedded,apache; quick embedded)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    ap.add_argument("--members", type=int, help="agencies in the grown directory (1000)")
    ap.add_argument("--n", type=int, help="referrals per throughput run (1000; quick 100)")
    ap.add_argument("--threads", type=int, default=4, help="API client threads")
    ap.add_argument("--sizes", help="restore sizes, comma-separated (default: 100,10000,100000 "
                                    "and on Apache Kafka also 1000000; quick 100,2000)")
    ap.add_argument("--rate", type=float, default=30.0,
                    help="referrals/s of the workers' paced run (30)")
    ap.add_argument("--seconds", type=float, help="length of the paced run (20; quick 4)")
    ap.add_argument("--idle-s", type=float, help="seconds of idle CPU measured before each "
                                                   "throughput run (5; quick 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = [k for k in (args.brokers or ("embedded" if args.quick else
                                          ",".join(brokers.KINDS))).split(",") if k]
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS) or set(kinds) - set(brokers.KINDS):
        ap.error(f"--parts takes {PARTS}, --brokers {brokers.KINDS}")
    args.members = args.members or (100 if args.quick else 1000)
    args.n = args.n or (100 if args.quick else 1000)
    args.idle_s = args.idle_s or (2.0 if args.quick else 5.0)
    args.seconds = args.seconds or (4.0 if args.quick else 20.0)
    notes = []
    if "apache" in kinds and (problem := brokers.apache_available()):
        kinds.remove("apache")
        notes.append(f"Apache Kafka was NOT measured: {problem}")

    def sizes(kind: str) -> list[int]:
        if args.sizes:
            return [int(s) for s in args.sizes.split(",")]
        if args.quick:
            return [100, 2000]
        return [100, 10_000, 100_000] + ([1_000_000] if kind == "apache" else [])

    root = Path(tempfile.mkdtemp(prefix="refmesh-bench-scale-"))
    say(f"work folder {root}; brokers {kinds}; parts {parts}")
    results: dict[str, dict[str, list[dict]]] = {p: {} for p in parts}
    failed = False
    try:
        for kind in kinds:
            for part in parts:
                try:
                    if part == "directory":
                        results[part][kind] = [directory_run(root, kind, m, args)
                                               for m in (0, args.members)]
                    elif part == "workers":
                        results[part][kind] = [workers_run(root, kind, w, args) for w in (1, 4)]
                    else:
                        kafka = fresh_broker(kind, root, "restore")
                        try:
                            # a first worker on a fresh broker also waits for the broker to
                            # create its group coordinator's topic: not part of any figure
                            say(f"restore on {kind}: warm-up run, not reported")
                            restore_run(root, kafka, min(sizes(kind)), say)
                            results[part][kind] = [restore_run(root, kafka, n, say)
                                                   for n in sizes(kind)]
                        finally:
                            kafka.stop()
                except Exception as exc:  # the other parts and kinds still run
                    failed = True
                    why = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
                    say(f"{part} on {kind} failed: {why}")
                    notes.append(f"{part} on {label(kind)} failed: {why}")
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    body = report(results, notes, args)
    print(body)
    if not args.quick:
        write_section(SECTION, body if set(parts) == set(PARTS) else merged(body, parts))
    return 1 if failed else 0


def merged(body: str, parts: list[str]) -> str:
    """With only some parts run: the section RESULTS.md holds, with the subsections of those
    parts replaced by the new ones (the others are from the run that wrote them)."""
    from bench.results import RESULTS
    text = RESULTS.read_text() if RESULTS.exists() else ""
    found = re.search(rf"^## {re.escape(SECTION)}\n\n[^\n]*\n\n(.*?)(?=^## |\Z)", text,
                      re.S | re.M)
    if found is None:
        return body
    old = re.split(r"^(?=### )", found.group(1).strip() + "\n", flags=re.M)
    new = {chunk.split(".", 1)[0]: chunk for chunk in re.split(r"^(?=### )", body + "\n",
                                                                flags=re.M)
           if chunk.startswith("### ")}
    out = [new.pop(chunk.split(".", 1)[0], chunk) for chunk in old]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out[0] = out[0].rstrip() + (f" {', '.join(parts).capitalize()} re-measured alone at "
                                f"{when} (the machine line above is that run's).\n\n")
    return "".join(out + list(new.values())).strip()


def report(results: dict, notes: list[str], args) -> str:
    load = os.getloadavg()
    lines = [*[f"**{n}**" for n in notes], *([""] if notes else []),
             f"One run of each figure, its baseline in the same invocation (load average "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end, on "
             f"{os.cpu_count()} cores). Throughput runs: {args.n} referrals POSTed from "
             f"{args.threads} threads, as bench/pipeline.py; a fresh broker and mesh per run; "
             "Apache Kafka PLAINTEXT (no SCRAM users or ACLs).", ""]
    if results.get("directory"):
        lines += [*directory_table(results["directory"], args.n), ""]
    if results.get("workers"):
        lines += [*workers_table(results["workers"], args.n, args.rate), ""]
    if results.get("restore"):
        lines += [*restore_table(results["restore"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
