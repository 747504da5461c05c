"""Fault drills: a sample mesh under a steady stream of referrals, a fault injected mid-stream,
then every referral checked against what the recipient stored (bench/drillkit.py).

Every drill runs on both brokers (devmesh.brokers: embedded Tansu, and Apache Kafka 4 with
SASL_SSL, SCRAM users and ACLs on) unless it is about one broker's storage or cluster. Each run
is on a fresh mesh; the broker drills on a broker of their own:
  broker-restart-s3      Tansu stopped for ``fault_s`` and started again; its log on s3://
                         storage (a local moto server), so it survives the restart
  broker-restart-memory  the same with memory storage: the restarted broker has lost every
                         topic, record and offset; end-to-end receipts must re-send it all
  broker-restart-log     Apache Kafka (one node) stopped with SIGTERM for ``fault_s`` and
                         started again on its own log
  broker-kill-log        the same with SIGKILL (a crash: the log is recovered at start)
  three-node             a three-node KRaft cluster of Apache Kafka (replication factor 3,
                         min.insync.replicas 2, acks=all): a broker killed with SIGKILL
                         mid-stream and restarted, then the active controller likewise; the
                         recovery times of each step are recorded
  gateway-kill           the sender's gateway killed with SIGKILL mid-stream, restarted at once
  agent-kill             the domain's agent worker killed with SIGKILL, restarted at once
  two-workers            a second agent worker of the domain (own worker_id and data_dir);
                         the first one stopped (SIGTERM): the second takes over its partitions
  recipient-down         the shelter's gateway stopped for ``fault_s``: its referrals wait in
                         Kafka and arrive when it is back
  disk-full              every file write of the hotline's gateway fails (RLIMIT_FSIZE set to 0
                         on the live process: EFBIG, as on a full disk) for ``fault_s``: the API
                         answers 503 and accepts nothing it cannot keep; then lifted
  read-only-db           the hotline's gateway restarted on a read-only database file for
                         ``fault_s`` (503 again), then restarted on the writable file

Every drill prints one line (sent, accepted, delivered, lost, duplicated, misdelivered, leaked,
re-sends absorbed, recovery time) and fails unless lost, duplicated, misdelivered and leaked are
0. Without --quick, the table of ``--runs`` runs (median and spread) goes to bench/RESULTS.md;
the fuzz targets of tests/fuzz_targets.py run last (``--fuzz N`` inputs each). The Apache Kafka
drills need Java 17+ and Maven (devmesh.apache); without them they are left out, with a note.

Usage: python bench/drills.py [--quick] [--runs 3] [--brokers embedded,apache]
                              [--only NAME,NAME] [--fuzz N] [--keep]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drillcheck import Before, Fault, Outcome, verify
from bench.drillcluster import check_replication, cluster_faults
from bench.drillkit import DrillMesh, Plan, Stream, pause, wall_ms
from bench.results import spread, write_section
from bench.s3storage import S3Storage
from devmesh import brokers
from devmesh.apache import LIBS
from devmesh.brokers import LocalBroker
from devmesh.tansu import EmbeddedBroker, free_port
from devmesh.supervise import wait_until

SECTION = "Drills (bench/drills.py)"
FULL = Plan(rate=10, before_s=10, fault_s=20, after_s=10, deadline_s=300)
QUICK = Plan(rate=10, before_s=3, fault_s=5, after_s=3, deadline_s=180)
START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", file=sys.stderr, flush=True)


#: A broker of a drill's own: Tansu with memory or s3:// storage, Apache Kafka on one node or
#: the three-node cluster
OWN = {"memory": "embedded", "s3": "embedded", "node": "apache", "cluster": "apache"}


@dataclass(frozen=True)
class Drill:
    name: str
    what: str
    inject: Callable[[Fault], int]  # runs the fault; returns when it ended (wall ms)
    own: str | None = None  # None: the shared broker; else a broker of its own (OWN)
    prepare: Callable[[DrillMesh, Outcome], None] | None = None  # before the stream starts
    rate: float | None = None  # referrals/s if lower than the plan's

    @property
    def kinds(self) -> tuple[str, ...]:
        """The broker kinds the drill runs on."""
        return brokers.KINDS if self.own is None else (OWN[self.own],)


# --- the faults -------------------------------------------------------------------------------

def broker_restart(sig: int = signal.SIGTERM) -> Callable[[Fault], int]:
    """The drill's own broker stopped (Apache Kafka: with ``sig``) for ``fault_s``, then
    started again on the same address."""
    def inject(f: Fault) -> int:
        f.broker.halt(sig)
        pause(f.plan.fault_s)
        started = time.monotonic()
        f.broker.resume(timeout=120)
        f.outcome.notes.append(f"broker answering again {time.monotonic() - started:.1f} s "
                               "after its start")
        return wall_ms()
    return inject


def gateway_kill(f: Fault) -> int:
    f.mesh.stop_gateway(f.mesh.hotline, kill=True)
    restarted = wall_ms()
    f.mesh.start_gateway(f.mesh.hotline)
    f.outcome.notes.append(f"hotline gateway back {(wall_ms() - restarted) / 1000:.1f} s "
                           "after SIGKILL")
    return restarted


def agent_kill(f: Fault) -> int:
    worker = f.mesh.workers[0]
    worker.kill()
    restarted = wall_ms()
    worker.start()
    f.mesh.wait_joined(worker)
    f.outcome.notes.append(f"agent worker rejoined its group {(wall_ms() - restarted) / 1000:.1f}"
                           " s after SIGKILL")
    return restarted


def second_worker(mesh: DrillMesh, outcome: Outcome) -> None:  # noqa: ARG001 (Drill.prepare)
    """Run a second worker of the domain and wait until the partitions are shared."""
    first = mesh.workers[0]
    alone = mesh.assigned(first)[-1]
    second = mesh.add_worker(uuid.uuid4().hex[:4])
    mesh.wait_joined(second)
    wait_until(lambda: mesh.assigned(first)[-1] < alone and mesh.assigned(second)[-1] > 0,
               120, "both workers to hold partitions")
    mesh.full_assignment = alone


def stop_one_worker(f: Fault) -> int:
    first, second = f.mesh.workers[0], f.mesh.workers[1]
    shared = (f.mesh.assigned(first)[-1], f.mesh.assigned(second)[-1])
    first.stop()  # SIGTERM
    stopped = wall_ms()
    f.mesh.workers.remove(first)
    wait_until(lambda: f.mesh.assigned(second)[-1] == f.mesh.full_assignment, 120,
               "the remaining worker to take over every partition")
    f.outcome.notes.append(f"partitions assigned (source, table changelogs, standbys): "
                           f"{shared[0]} and {shared[1]} with two workers; the remaining worker "
                           f"held all {f.mesh.full_assignment} "
                           f"{(wall_ms() - stopped) / 1000:.1f} s after the stop")
    return stopped


def recipient_down(f: Fault) -> int:
    f.mesh.stop_gateway(f.mesh.shelter)
    pause(f.plan.fault_s)
    restarted = wall_ms()
    f.mesh.start_gateway(f.mesh.shelter)
    return restarted


def _expect_refusals(f: Fault, since: int) -> None:
    """The API must have answered 503 with the clear message during the fault."""
    during = [(status, msg) for rid, (status, msg) in f.stream.refused.items()
              if f.stream.submitted[rid] >= since]
    if not any(status == 503 and "cannot store" in msg for status, msg in during):
        f.outcome.problems.append(f"no 503 'cannot store' answer during the fault; answers: "
                                  f"{sorted(set(during))[:3]}")
    else:
        message = next(msg for status, msg in during if status == 503)
        f.outcome.notes.append(f"{len(during)} submission(s) refused during the fault: 503 "
                               f"{message!r}")


def disk_full(f: Fault) -> int:
    """RLIMIT_FSIZE 0 on the live gateway: every write to a regular file fails with EFBIG
    (Python ignores SIGXFSZ), which SQLite reports as a disk I/O error, as on a full disk.
    Unlike filling a tmpfs it needs no privilege and no mount, only our own child process."""
    pid = f.mesh.gateway(f.mesh.hotline).popen.pid
    limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    since = wall_ms()
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
    try:
        pause(f.plan.fault_s)
        health = f.mesh.running.client(f.mesh.hotline).health()  # while the fault lasts
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
    ended = wall_ms()
    f.mesh.gateway(f.mesh.hotline).check_alive()
    _expect_refusals(f, since)
    if health["ok"] or not any("database refuses writes" in p for p in health["problems"]):
        f.outcome.problems.append(f"/healthz did not report the refused writes: {health}")
    else:
        f.outcome.notes.append(f"/healthz during the fault: 503, {health['problems'][0]!r}")
    return ended


# Tansu 0.6 wedges a consumer group for good when a member leaves it (a clean close) before
# its first join completed (about 3 s here): no later member is ever assigned a partition.
# The read-only gateway therefore runs at least this long, so that its inbox consumer has
# joined before it is stopped (a gateway restarted twice within seconds hits the same bug).
GROUP_JOIN_S = 8.0


def _read_only_wrapper() -> list[str] | None:
    """root ignores file modes (CAP_DAC_OVERRIDE): run the gateway without that capability
    (util-linux setpriv drops it from the bounding set before exec) so that a read-only file
    is read-only to it. None when that is impossible (root without setpriv)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", drop, "--inh-caps", drop]


def read_only_db(f: Fault) -> int:
    mesh, hotline = f.mesh, f.mesh.hotline
    wrapper = _read_only_wrapper()
    if wrapper is None:
        f.outcome.problems.append("running as root without setpriv: a read-only file cannot be "
                                  "made read-only to the gateway (apt-get install util-linux)")
        return wall_ms()
    path = Path(mesh.db[hotline])
    mesh.stop_gateway(hotline)
    # What is left in the write-ahead log goes into the file first, as a clean shutdown
    # would; then the file (and anything SQLite keeps beside it) becomes read-only.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    modes = {p: p.stat().st_mode & 0o777 for p in files}
    since = wall_ms()
    try:
        for p in files:
            p.chmod(0o400)  # read-only; never readable by others (the gateway refuses that)
        # it cannot become healthy: wait for its /healthz to name the database instead
        health = mesh.start_faulty_gateway(hotline, wrapper, "database refuses writes")
        f.outcome.notes.append(f"/healthz during the fault: 503, {health['problems'][0]!r}")
        pause(max(f.plan.fault_s, GROUP_JOIN_S))
        mesh.stop_gateway(hotline)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    restarted = wall_ms()
    mesh.start_gateway(hotline)
    _expect_refusals(f, since)
    return restarted


DRILLS = {d.name: d for d in (
    # 1 referral/s: Tansu on moto storage carries about 2 domain events/s here (moto_server, one
    # Python process, lists a partition's objects at every fetch); more only measures that
    Drill("broker-restart-s3", "Tansu (s3:// storage on a local moto server) stopped "
          "for {fault_s:g} s mid-stream, then started again", broker_restart(), own="s3",
          rate=1.0),
    Drill("broker-restart-memory", "Tansu (memory storage) stopped for {fault_s:g} s, "
          "then started again empty: every topic, record and offset lost", broker_restart(),
          own="memory"),
    Drill("broker-restart-log", "Apache Kafka (one node) stopped with SIGTERM for "
          "{fault_s:g} s mid-stream, then started again on its own log",
          broker_restart(signal.SIGTERM), own="node"),
    Drill("broker-kill-log", "Apache Kafka (one node) killed with SIGKILL mid-stream, started "
          "again {fault_s:g} s later on its own log (recovered at start)",
          broker_restart(signal.SIGKILL), own="node"),
    Drill("three-node", "a three-node KRaft cluster (replication factor 3, "
          "min.insync.replicas 2, acks=all): a broker that is not the active controller killed "
          "with SIGKILL mid-stream and restarted {fault_s:g} s later; once it is back in every "
          "ISR, the active controller likewise", cluster_faults, own="cluster",
          prepare=check_replication),
    Drill("gateway-kill", "the sender's gateway killed with SIGKILL mid-stream and restarted "
          "at once", gateway_kill),
    Drill("agent-kill", "the domain's agent worker killed with SIGKILL mid-stream and "
          "restarted at once", agent_kill),
    Drill("two-workers", "two agent workers in the domain; one stopped (SIGTERM) mid-stream, "
          "the other takes over its partitions", stop_one_worker, prepare=second_worker),
    Drill("recipient-down", "the recipient's gateway stopped for {fault_s:g} s mid-stream, "
          "then started again", recipient_down),
    Drill("disk-full", "every file write of the sender's gateway fails (RLIMIT_FSIZE 0) for "
          "{fault_s:g} s mid-stream", disk_full),
    Drill("read-only-db", "the sender's gateway restarted on a read-only database mid-stream "
          "(up for {fault_s:g} s, at least 8 s), then restarted on the writable one",
          read_only_db),
)}


# --- running drills -----------------------------------------------------------------------------

def run_drill(drill: Drill, mesh: DrillMesh, plan: Plan, broker: LocalBroker | None = None,
              outcome: Outcome | None = None) -> Outcome:
    """One drill on a running mesh: stream, fault, stream, then the check of every referral
    (into ``outcome``, which keeps what was counted if the drill fails half-way)."""
    outcome = outcome or Outcome(drill.name)
    if drill.rate is not None and drill.rate < plan.rate:
        plan = replace(plan, rate=drill.rate)
    if drill.prepare is not None:
        drill.prepare(mesh, outcome)
    prefix = f"{drill.name}-{uuid.uuid4().hex[:6]}-"
    before = Before.take(mesh)
    stream = Stream(mesh, prefix, plan.rate)
    stream.start()
    try:
        pause(plan.before_s)
        fault_end = drill.inject(Fault(mesh, plan, stream, outcome, broker))
        pause(plan.after_s)
    finally:
        stream.stop()
    return verify(mesh, stream, before, fault_end, plan, outcome)


@contextmanager
def own_broker(own: str, folder: Path, security: bool = True):
    """A broker for one drill (``OWN``): Tansu with memory storage or s3:// storage on a moto
    server; Apache Kafka on one node or three (``security``: SASL_SSL, SCRAM and ACLs)."""
    folder.mkdir(parents=True, exist_ok=True)
    if OWN[own] == "apache":
        with brokers.start("apache", folder / "kafka", security=security,
                           nodes=3 if own == "cluster" else 1) as broker:
            yield broker
        return
    storage = S3Storage(folder) if own == "s3" else None
    process = None
    try:
        env = storage.start() if storage else None
        process = EmbeddedBroker(port=free_port(), storage=storage.URL if storage else None,
                                 env=env)
        yield LocalBroker("embedded", process, process.start(timeout=60))
    finally:
        if process is not None:
            process.stop()
        if storage is not None:
            storage.stop()


@contextmanager
def drill_mesh(root: Path, kafka: LocalBroker, resend_after_ms: int = 3000,
               persons: int = 20):
    mesh = DrillMesh(root, kafka, resend_after_ms=resend_after_ms, persons=persons)
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


def run_on_fresh_mesh(drill: Drill, plan: Plan, root: Path, shared: LocalBroker,
                      outcome: Outcome) -> Outcome:
    """A drill on a mesh of its own (and a broker of its own if the drill needs one, secured
    as the shared one is)."""
    root.mkdir(parents=True, exist_ok=True)
    if drill.own is None:
        with drill_mesh(root, shared) as mesh:
            return run_drill(drill, mesh, plan, outcome=outcome)
    with own_broker(drill.own, root / "logs", shared.secured) as broker, \
            drill_mesh(root, broker) as mesh:
        return run_drill(drill, mesh, plan, broker, outcome)


# --- the table ------------------------------------------------------------------------------------

KIND_NAMES = {"embedded": "embedded", "apache": "Apache Kafka"}
Results = dict[tuple[str, str], list[Outcome]]  # (broker kind, drill) -> one outcome per run


def kafka_version() -> str:
    """The Apache Kafka version of the broker's jars (broker/pom.xml)."""
    jars = sorted(LIBS.glob("kafka_2.13-*.jar"))
    return jars[0].stem.split("-", 1)[1] if jars else "4"


def timings_table(results: Results) -> list[str]:
    """The recovery times the drills recorded step by step (the three-node drill), one row a
    step: median (min-max) over the runs."""
    lines = []
    for (kind, name), outcomes in results.items():
        steps = list(dict.fromkeys(k for o in outcomes for k in o.timings))
        if not steps:
            continue
        lines += [f"Recovery times of **{name}** ({KIND_NAMES[kind]}), seconds, median "
                  "(min-max) over the runs; a kill's times count from the SIGKILL, a restart's "
                  "from the start of the node:", "", "| step | runs | seconds |", "|---|---|---|"]
        for step in steps:
            values = [o.timings[step] for o in outcomes if step in o.timings]
            lines.append(f"| {step} | {len(values)} | {spread(values)} |")
        lines.append("")
    return lines


def table(results: Results, plan: Plan, runs: int, fuzz: str) -> str:
    def col(outcomes, key, digits=1):
        return spread([float(getattr(o, key)) for o in outcomes], digits)

    rows = []
    for (kind, name), outcomes in results.items():
        total = {k: sum(getattr(o, k) for o in outcomes)
                 for k in ("lost", "duplicated", "misdelivered", "leaked")}
        rows.append(
            f"| {KIND_NAMES[kind]} | {name} | {len(outcomes)} | {col(outcomes, 'sent', 0)} | "
            f"{col(outcomes, 'accepted', 0)} | {col(outcomes, 'refused', 0)} | "
            f"{col(outcomes, 'unanswered', 0)} | {col(outcomes, 'delivered', 0)} | "
            f"{total['lost']} | {total['duplicated']} | {total['misdelivered']} | "
            f"{total['leaked']} | {col(outcomes, 'resends_absorbed', 0)} | "
            f"{col(outcomes, 'recovery_s')} | {col(outcomes, 'max_latency_s')} | "
            f"{'ok' if all(o.ok for o in outcomes) else '**FAILED**'} |")
    ran = {name for _, name in results}
    described = "\n".join(
        f"- **{d.name}**"
        + ("" if d.own is None else f" ({KIND_NAMES[d.kinds[0]]} only)")
        + f": {d.what.format(fault_s=plan.fault_s)}"
        + (f" (stream at {d.rate:g} referral/s)" if d.rate else "") + "."
        for d in DRILLS.values() if d.name in ran)
    kinds = list(dict.fromkeys(kind for kind, _ in results))
    on = " and ".join({"embedded": "the embedded broker (Tansu, memory storage)",
                       "apache": f"Apache Kafka {kafka_version()} (one KRaft node; SASL_SSL, "
                                 "SCRAM-SHA-512, a user and the ACLs of its role for each "
                                 "gateway and the domain)"}[k] for k in kinds)
    intro = (
        f"{runs} run(s) of each drill, each run on a fresh sample mesh (gateways of "
        "BH/GOV/HOTLINE and BH/GOV/SHELTER, agents of BH/GOV/NCCTIP, as child processes; "
        f"re-send after 3 s, doubling up to 60 s) on {on}; the broker drills on a broker of "
        "their own. Stream: "
        f"{plan.rate:g} synthetic referrals/s POSTed to the hotline for {plan.before_s:g} s, "
        f"the fault, {plan.after_s:g} s more; then up to {plan.deadline_s:g} s for every "
        "accepted referral to be answered. Counts are per run, median (min-max); lost, "
        "duplicated, misdelivered and leaked are totals over the runs. Duplicated: delivered "
        "to the shelter as a new referral more than once (its SQLite tables, and new "
        "deliveries in /metrics and its log vs unique ids); re-sends absorbed: re-sends the "
        "shelter recognised and dropped (expected). Leaked: planted names, identity numbers, "
        "e-mail addresses and case references of every submitted referral found in clear on "
        "any topic (gateways.scan). Recovery: from the end of the fault (the restart, or the "
        "fault lifted) until every referral accepted before that moment is stored at the "
        "shelter and the first one accepted after it is too. Load average (1 min) at the end: "
        f"{os.getloadavg()[0]:.1f}.")
    header = ("| broker | drill | runs | sent | accepted | refused (503) | unanswered | "
              "delivered | lost | duplicated | misdelivered | leaked | re-sends absorbed | "
              "recovery (s) | max latency (s) | |")
    notes = [f"- {name} ({KIND_NAMES[kind]}), run {run}: {note}"
             for (kind, name), outcomes in results.items()
             for run, o in enumerate(outcomes, 1) for note in [*o.notes, *o.problems]]
    legend = ("Sent: submissions tried; unanswered: no answer because the gateway was down, "
              "and not held by it afterwards.")
    return "\n".join([intro, "", described, "", header, "|---" * 16 + "|", *rows, "", legend,
                      "", *timings_table(results), "What each run noted:", "", *notes, "",
                      fuzz])


def fuzz(count: int) -> tuple[str, bool]:
    """The coverage-guided fuzz targets of the hostile-input work, if present."""
    try:
        from tests.fuzz_targets import run_fuzz
    except ImportError as exc:  # FUZZ TARGETS MISSING: written in another issue's work
        message = f"fuzz targets missing (tests/fuzz_targets.py run_fuzz: {exc}); not run"
        say(message)
        return message, True
    say(f"fuzzing: {count} inputs per target")
    lines = []
    results = run_fuzz(count, report=lambda name, inputs, crashes, seconds, log: (
        lines.append(f"| {name} | {inputs} | {crashes} | {seconds:.0f} |"),
        say(f"  fuzz {name}: {inputs} inputs, {crashes} crashes, {seconds:.0f} s")))
    ok = all(crashes == 0 for _, crashes in results.values())
    return "\n".join(["Fuzz targets (tests/fuzz_targets.py run_fuzz):", "",
                      "| target | inputs | crashes | seconds |", "|---|---|---|---|",
                      *lines]), ok


def kinds_to_run(wanted: str | None) -> tuple[list[str], str | None]:
    """The broker kinds of this run, and a note if Apache Kafka is left out for want of Java
    or Maven (an error if it was asked for by name)."""
    kinds = [k.strip() for k in (wanted or ",".join(brokers.KINDS)).split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(brokers.KINDS))
    if unknown or not kinds:
        raise SystemExit(f"--brokers {wanted!r}: use {', '.join(brokers.KINDS)}")
    if "apache" in kinds and (problem := brokers.apache_available()):
        if wanted:
            raise SystemExit(f"--brokers apache: {problem}")
        return [k for k in kinds if k != "apache"], f"NOTE: Apache Kafka drills NOT run: {problem}"
    return kinds, None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short drills, one run, no table (unless --write)")
    ap.add_argument("--write", action="store_true",
                    help="write the table to bench/RESULTS.md even with --quick")
    ap.add_argument("--runs", type=int, help="runs of each drill (3; quick 1)")
    ap.add_argument("--brokers", help="comma-separated broker kinds (default: embedded and, "
                                      "with Java 17+ and Maven, apache)")
    ap.add_argument("--only", help="comma-separated drill names (default: all)")
    ap.add_argument("--fuzz", type=int, help="fuzz inputs per target (20000; quick 500; 0 off)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    names = args.only.split(",") if args.only else list(DRILLS)
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        ap.error(f"unknown drill(s) {', '.join(unknown)}; known: {', '.join(DRILLS)}")
    kinds, note = kinds_to_run(args.brokers)
    if note:
        say(note)
    fuzz_count = args.fuzz if args.fuzz is not None else (500 if args.quick else 20000)
    # SIGTERM (make, CI) unwinds like Ctrl-C, so that the finally blocks stop every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="refmesh-drills-"))
    results: Results = {(k, n): [] for k in kinds for n in names if k in DRILLS[n].kinds}
    ok = True
    for kind in kinds:
        with brokers.start(kind, root / f"broker-{kind}") as shared:
            say(f"{brokers.describe(shared)} at {shared.bootstrap}; work folder {root}")
            for run in range(1, runs + 1):
                for name in [n for k, n in results if k == kind]:
                    say(f"run {run}: {name} on {kind}: "
                        f"{DRILLS[name].what.format(fault_s=plan.fault_s)}")
                    outcome = Outcome(name)
                    try:
                        run_on_fresh_mesh(DRILLS[name], plan, root / f"{kind}-{name}-{run}",
                                          shared, outcome)
                    except Exception as exc:  # noqa: BLE001 (report it, go on with the others)
                        traceback.print_exc()
                        outcome.problems.append(f"{type(exc).__name__}: {exc}")
                    results[kind, name].append(outcome)
                    ok = ok and outcome.ok
                    print(f"{kind:<8} {outcome.line()}", flush=True)
                    for what, seconds in outcome.timings.items():
                        print(f"    {what}: {seconds:.1f} s", flush=True)
                    for note in outcome.notes:
                        print(f"    {note}", flush=True)
                    for problem in outcome.problems:
                        print(f"    PROBLEM: {problem}", flush=True)
    fuzz_text, fuzz_ok = fuzz(fuzz_count) if fuzz_count else ("fuzzing skipped", True)
    ok = ok and fuzz_ok
    body = "\n\n".join(filter(None, [note, table(results, plan, runs, fuzz_text)]))
    print(body)
    if not args.quick or args.write:
        write_section(SECTION, body)
        say("table written to bench/RESULTS.md")
    if ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        say(f"logs kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
