"""Profile of the pipeline benchmark: where each process of the mesh spends its CPU, per referral.

Per broker kind (``--brokers embedded,apache``, as bench/pipeline.py) it starts a fresh broker
and sample mesh with bench/pipeline_mesh.Bench, records the consents, warms up, and then runs
bench/pipeline.throughput while ``py-spy record --pid PID --rate 200 --format raw --nonblocking``
is attached to each Python process of the mesh (hotline gateway, shelter gateway, domain agents)
for exactly that window. Each process's collapsed stacks are then aggregated into

- the functions with the most own (self) samples, with their inclusive share next to them;
- a breakdown by category (cryptography, Avro codec and record checks, SQLite, Kafka client,
  TLS, HTTP, JSON, logging, faust/mode, asyncio, our own code by room, idle), each sample
  counted once, for its innermost frame that is not a generic stdlib helper;

and every share is turned into CPU ms per referral with the process's CPU time over the window
(/proc/PID/stat, pipeline_mesh.cpu_s, as throughput() measures it) divided by the referrals.

The innermost Python frame also carries the time of the C or Rust code it calls (py-spy cannot
see native frames with --nonblocking): a line of refmesh/envelope.py that calls the
cryptography API counts as cryptography, a line of gateways/store.py that calls sqlite3 as
SQLite; the source line decides (CRYPTO_CALL, SQLITE_CALL). A send or receive on a socket
counts for the Kafka or HTTP client that makes it. py-spy leaves out threads the kernel has
asleep, but a thread just woken, or runnable and waiting for one of the cores, still shows in
select() or a lock: those samples count as idle (IDLE_FILES, IDLE_FUNCS) and are left out.

``--runs N`` pools N runs per kind (the order alternating, as bench/pipeline.py). The raw
profiles, runs.json (the figures) and profile.md stay in ``--out``; ``--from`` aggregates them
again without a run.

``--before REF`` profiles commit REF instead (``git archive`` with today's bench/ over it, as
bench/ab.py does; its gateways and agents run from that tree) and writes the section
"Profile before issue 15 (commit REF)", which a later plain run does not replace.

Usage: python bench/profile.py [--quick] [--brokers embedded,apache] [--n 300] [--runs 1]
       [--out DIR] [--flamegraph] [--before REF] [--from] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import linecache
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECTION = "Profile: where the CPU goes per process (bench/profile.py)"
ROOT = Path(__file__).resolve().parent.parent
RATE = 200

# --- aggregation of collapsed stacks (pure: no broker, no clock) -------------------------------

# A frame of py-spy's raw output: "function (path/file.py:line)"; the line is absent with
# --nolineno.
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
OURS = ("refmesh", "gateways", "agents", "kafkaedge", "devmesh", "cli")
# py-spy shortens site-packages and stdlib paths, but not ours: cut any path to the package
PACKAGE = re.compile(r"^.*?(?:site-packages/|dist-packages/|lib/python3\.\d+/|"
                     rf".*/(?=(?:{'|'.join(OURS)})/))")

CRYPTO_CALL = re.compile(r"\b(hpke|HPKE|AESSIV|AESGCM|HKDF|Ed25519|X25519|encrypt|decrypt|"
                         r"sign|verify|exchange|derive|from_private_bytes|from_public_bytes|"
                         r"public_bytes|private_bytes|public_key|generate)\b")
SQLITE_CALL = re.compile(r"\.(execute|executemany|executescript|commit|rollback|fetchone|"
                         r"fetchall|fetchmany|cursor|close)\(|\bsqlite3\.|\bconnect\(")
# Waits: py-spy leaves out threads the kernel has asleep, but a thread woken a moment ago, or
# runnable and waiting for one of the 2 cores, still shows in select() or a lock.
IDLE_FILES = ("selectors.py", "threading.py", "queue.py", "concurrent/futures/",
              "multiprocessing/")
IDLE_FUNCS = {"select", "poll", "wait", "_wait_for_tstate_lock", "join", "get", "acquire",
              "sleep", "wait_for"}
IDLE_CALL = re.compile(r"\b(time\.sleep|asyncio\.sleep|\.select|\.poll|\.wait|\.acquire)\(")

# Files whose frames say nothing about the purpose: a sample there counts for its caller.
GENERIC = re.compile(r"^(<frozen [^>]*>|dataclasses\.py|typing\.py|abc\.py|enum\.py|"
                     r"functools\.py|copy\.py|re/.*|sre_\w+\.py|uuid\.py|base64\.py|"
                     r"collections/.*|contextlib\.py|weakref\.py|_weakrefset\.py|hashlib\.py|"
                     r"hmac\.py|types\.py|operator\.py|datetime\.py|struct\.py|"
                     r"genericpath\.py|posixpath\.py|os\.py|codecs\.py|encodings/.*|"
                     r"secrets\.py|random\.py|string\.py|textwrap\.py|inspect\.py|"
                     r"_collections_abc\.py|<string>)$")

# (category, files it takes by prefix); the first match wins. refmesh/envelope.py, keys.py and
# gateways/store.py are split by their source line first (see categorise).
CRYPTO = "cryptography (HPKE, Ed25519, AES-SIV, HKDF)"
SQLITE = "SQLite (sqlite3 calls but COMMIT)"
COMMIT = "SQLite COMMIT (WAL write and fsync, kernel time included)"
IDLE = "idle (waiting: select, sleep, lock; left out of the shares)"
KAFKA = "Kafka client (kafka-python, aiokafka, kafkaedge; with the socket I/O they drive)"
HTTP = "HTTP server and client (aiohttp, http, gateways/api.py; with their socket I/O)"
SOCKETS = "sockets and asyncio transports (no Kafka or HTTP caller)"
RULES: list[tuple[str, tuple[str, ...]]] = [
    (CRYPTO, ("cryptography/", "_cffi_backend", "nacl/")),
    ("Avro codec and record checks (refmesh codec/records/schemas, fastavro)",
     ("refmesh/codec.py", "refmesh/records.py", "refmesh/schemas.py", "refmesh/schema",
      "fastavro/", "avro/")),
    ("envelope without its crypto calls (headers, framing)",
     ("refmesh/envelope.py", "refmesh/keys.py")),
    (SQLITE, ("sqlite3/",)),
    ("gateway store logic (gateways/store.py, Python)", ("gateways/store.py",)),
    (KAFKA, ("kafka/", "aiokafka/", "kafkaedge/", "crc32c", "lz4", "zstandard")),
    ("TLS (ssl)", ("ssl.py", "asyncio/sslproto.py")),
    (SOCKETS, ("socket.py", "selectors.py", "asyncio/selector_events.py",
                                        "asyncio/streams.py", "asyncio/transports.py")),
    (HTTP, ("aiohttp/", "multidict/", "yarl/", "http/", "urllib/", "email/", "gateways/api.py",
      "gateways/client.py", "gateways/desk.py", "gateways/openapi.py")),
    ("JSON", ("json/", "orjson", "simplejson/")),
    ("logging", ("logging/",)),
    ("metrics (prometheus_client)", ("prometheus_client/", "gateways/metrics.py")),
    ("faust / mode internals", ("faust/", "mode/", "venusian/", "croniter/", "terminaltables/",
                                "opentracing/")),
    ("asyncio event loop", ("asyncio/",)),
    ("policy and domain (refmesh core)", ("refmesh/",)),
    ("gateways (relay, inbox, gateway loop)", ("gateways/",)),
    ("domain agents (agents/)", ("agents/",)),
    ("threads and queues", ("threading.py", "queue.py", "concurrent/")),
]
OTHER = "other (stdlib and libraries)"


@dataclass(frozen=True)
class Frame:
    func: str
    file: str  # shortened to the package: "refmesh/codec.py", "ssl.py", "kafka/conn.py"
    line: int | None

    @property
    def name(self) -> str:
        return f"{self.func} ({self.file})"


def parse_frame(text: str) -> Frame:
    m = FRAME.match(text.strip())
    if not m:
        return Frame(text.strip(), "?", None)
    return Frame(m["func"], PACKAGE.sub("", m["file"]), int(m["line"]) if m["line"] else None)


def parse_raw(text: str) -> list[tuple[list[Frame], int]]:
    """py-spy's raw (collapsed) output: one stack a line, outermost frame first, frames split
    by ';', then a space and the number of samples. A leading "process ..." or "thread (...)"
    pseudo-frame (--subprocesses, --threads) is dropped."""
    stacks = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw:
            continue
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [parse_frame(f) for f in stack.split(";")
                  if f and not f.startswith(("process ", "thread ("))]
        stacks.append((frames, int(count)))
    return stacks


def file_category(file: str) -> str | None:
    if GENERIC.match(file):
        return None
    for name, prefixes in RULES:
        if file.startswith(prefixes):
            return name
    return OTHER


def categorise(frames: list[Frame], source=None) -> str:
    """The category of one stack (outermost first): its innermost frame outside GENERIC.
    ``source(frame) -> str`` gives the frame's source line, to split the innermost frame of
    our own code by the native call it makes (cryptography, sqlite3, an idle wait)."""
    for depth, frame in enumerate(reversed(frames)):
        category = file_category(frame.file)
        if category is None:
            continue
        # py-spy 0.4 names methods "Class.method"
        if frame.file.startswith(IDLE_FILES) and frame.func.rsplit(".", 1)[-1] in IDLE_FUNCS:
            return IDLE
        if category == SOCKETS:  # a send or recv counts for the client that makes it
            callers = (file_category(f.file) for f in reversed(frames[:len(frames) - depth]))
            return next((c for c in callers if c in (KAFKA, HTTP)), SOCKETS)
        line = source(frame) if source and frame.line else ""
        if depth == 0 and line:
            code = line.split("#", 1)[0]
            if IDLE_CALL.search(code):
                return IDLE
            if frame.file.startswith(OURS) and CRYPTO_CALL.search(code):
                return CRYPTO
            if frame.file.startswith(OURS) and re.search(r"\bCOMMIT\b|\.commit\(", code):
                return COMMIT
            if frame.file.startswith(OURS) and SQLITE_CALL.search(code):
                return SQLITE
        return category
    return OTHER


@dataclass
class Profile:
    """One process's samples, aggregated."""

    samples: int = 0
    idle: int = 0
    categories: Counter = field(default_factory=Counter)  # non-idle samples by category
    own: Counter = field(default_factory=Counter)  # function -> samples as innermost frame
    inclusive: Counter = field(default_factory=Counter)  # function -> samples on the stack

    @property
    def busy(self) -> int:
        return self.samples - self.idle


def aggregate(text: str, source=None) -> Profile:
    profile = Profile()
    for frames, count in parse_raw(text):
        profile.samples += count
        category = categorise(frames, source)
        if category == IDLE:
            profile.idle += count
            continue
        profile.categories[category] += count
        if frames:
            profile.own[frames[-1].name] += count
        for name in {f.name for f in frames}:
            profile.inclusive[name] += count
    return profile


def source_in(root: Path):
    """``source(frame)`` for categorise: the line from the file under ``root`` (our packages)
    or under the running Python's paths (libraries)."""
    import sysconfig
    bases = [root, Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]

    def source(frame: Frame) -> str:
        for base in bases:
            path = base / frame.file
            if path.is_file():
                return linecache.getline(str(path), frame.line)
        return ""
    return source


def tables(profile: Profile, cpu_ms: float, top: int) -> list[str]:
    """The category table and the top functions, in CPU ms per referral (``cpu_ms``: the
    process's CPU ms per referral over the window, spread over its non-idle samples)."""
    busy = profile.busy or 1
    scale = cpu_ms / busy
    rows = ["| category | ms per referral | share of CPU samples |", "|---|---|---|"]
    for name, count in profile.categories.most_common():
        rows.append(f"| {name} | {count * scale:.2f} | {100 * count / busy:.0f}% |")
    rows.append(f"| **all** (CPU time / referrals) | **{cpu_ms:.2f}** | 100% "
                f"({profile.busy} samples; {profile.idle} idle left out) |")
    rows += ["", f"| top {top} functions by own samples | own ms per referral | inclusive ms "
                 "per referral |", "|---|---|---|"]
    for name, count in profile.own.most_common(top):
        rows.append(f"| `{name}` | {count * scale:.2f} | {profile.inclusive[name] * scale:.2f} |")
    return rows


# --- the run: mesh, py-spy, throughput window --------------------------------------------------

def py_spy() -> str:
    here = Path(sys.executable).parent / "py-spy"
    found = str(here) if here.is_file() else shutil.which("py-spy")
    if not found:
        sys.exit("profile: py-spy is not installed: pip install -e '.[bench]' (or make profile)")
    return found


class Recorder:
    """``py-spy record`` attached to one process until stop()."""

    def __init__(self, pid: int, output: Path, fmt: str = "raw") -> None:
        self.output, self.log = output, output.with_suffix(output.suffix + ".log")
        with open(self.log, "wb") as log:  # py-spy says what it does on stdout
            self.proc = subprocess.Popen(
                [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", fmt,
                 "--output", str(output), "--nonblocking"],
                stdout=log, stderr=subprocess.STDOUT)

    def wait_sampling(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while "Sampling process" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"py-spy did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        said = [line for line in self.log.read_text(errors="replace").splitlines()
                if "Samples:" in line]
        return said[-1].removeprefix("py-spy> ") if said else f"exit {self.proc.returncode}"


def profile_kind(kind: str, out: Path, security: bool, args, run: int) -> dict:
    from bench.pipeline import say, throughput
    from bench.pipeline_mesh import Bench, submit_all
    from devmesh import brokers

    kafka = brokers.start(kind, out / f"{kind}-run{run}-broker" if kind == "apache" else None,
                          security=security)
    tag = uuid.uuid4().hex[:6]
    try:
        say(f"{kind}: {brokers.describe(kafka)} at {kafka.bootstrap}")
        bench = Bench(out / f"{kind}-run{run}-mesh", kafka, tag)
        try:
            bench.start()
            bench.record_consents(max(args.n, 10), args.threads)
            warm = [bench.referral(f"warm-{tag}-{i}", i) for i in range(10)]
            submit_all(bench, warm, 2)
            bench.wait_stored(f"warm-{tag}-", len(warm), 60)
            bench.wait_quiet(60)
            pids = bench.pids()
            recorders = {name: Recorder(pid, out / f"{kind}-run{run}-{slug(name)}.raw")
                         for name, pid in pids.items()}
            if args.flamegraph:
                recorders.update({
                    f"{name} (svg)": Recorder(pid, out / f"{kind}-run{run}-{slug(name)}.svg",
                                              "flamegraph") for name, pid in pids.items()})
            try:
                for rec in recorders.values():
                    rec.wait_sampling()
                say(f"{kind}: py-spy attached to {', '.join(pids)}; throughput run of {args.n}")
                tp = throughput(bench, tag, args.n, args.threads)
            finally:
                ends = {name: rec.stop() for name, rec in recorders.items()}
            for name, end in ends.items():
                say(f"{kind}: py-spy {name}: {end}")
        finally:
            bench.stop()
    finally:
        kafka.stop()
    return {"tp": tp, "label": brokers.describe(kafka),
            "files": {name: f"{kind}-run{run}-{slug(name)}.raw" for name in pids},
            "py_spy": {name: ends[name] for name in pids}}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def body_for(results: dict[str, dict], source, args, command: str, note: str) -> str:
    lines = [
        f"`{command}`{note}. py-spy {RATE} samples/s per process (`py-spy record --pid PID "
        f"--rate {RATE} --format raw --nonblocking`, idle threads left out by py-spy) during "
        f"the throughput run of bench/pipeline.py ({args.n} referrals POSTed from "
        f"{args.threads} client threads, until the loop is closed); each share of a process's "
        "non-idle samples times its CPU time per referral over the same window (/proc). A "
        "sample counts for its innermost frame that is not a generic stdlib helper; that frame "
        "carries the native (C, Rust) code it calls, so a line of our code calling the "
        "cryptography API counts as cryptography and one calling sqlite3 as SQLite. Samples in "
        "select, poll, lock and queue waits count as idle (py-spy leaves out a sleeping thread, "
        "but not one just woken or waiting for a core); a disk wait is left out by py-spy (an "
        "fsync loop gave 49% of samples for 40% CPU), so COMMIT is mostly CPU. py-spy "
        "itself takes CPU on the same 2 cores, so throughput is lower than in the pipeline "
        "bench; the ms per referral are the ones to compare. Raw profiles: "
        f"`{args.out}` (kept only on this machine).", ""]
    for kind, runs in results.items():
        runs = runs if isinstance(runs, list) else [runs]
        tps = [r["tp"] for r in runs]
        # the runs pooled: every run's samples, and the mean CPU ms per referral (same n)
        cpu_ms = {name: sum(tp["cpu_ms"][name] for tp in tps) / len(tps)
                  for name in tps[0]["cpu_ms"]}
        rates = ", ".join(f"{tp['rate']:.1f}" for tp in tps)
        resends = ", ".join(str(tp["resends"]) for tp in tps)
        lines += [f"### {re.sub(r', data in .*', '', runs[0]['label'])}", "",
                  f"{len(runs)} run{'s' if len(runs) > 1 else ''}, pooled. Throughput under the "
                  f"profiler {rates} referrals/s, {resends} re-sends; CPU ms per referral (mean "
                  "over the runs): " + ", ".join(
                      f"{name} {ms:.2f}" for name, ms in cpu_ms.items()) + ".", ""]
        for name in runs[0]["files"]:
            profile = aggregate("\n".join((Path(args.out) / r["files"][name]).read_text()
                                          for r in runs), source)
            seen = profile.busy / RATE / (cpu_ms[name] * len(runs) * args.n / 1000)
            said = "; ".join(r["py_spy"][name].split(". ", 1)[-1] for r in runs)
            lines += [f"#### {name} ({kind})", "",
                      f"py-spy {said}; its non-idle samples add up to {seen:.1f}x the CPU time "
                      "of the window (above 1: threads runnable but waiting for a core look "
                      "busy to py-spy).", "",
                      *tables(profile, cpu_ms[name], args.top), ""]
    return "\n".join(lines)


def run_before(args, argv: list[str]) -> int:
    """This script on commit ``args.before`` (its gateways and agents from that tree); the
    section it writes is "Profile before issue 15 (commit ...)"."""
    from bench.ab import before_tree
    from bench.results import write_section

    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or args.before
    tree = Path(args.out) / "before"
    if not (tree / "bench" / "profile.py").is_file():
        tree = before_tree(args.before, Path(args.out))  # kept: --from reads its source lines
    shutil.copy2(ROOT / "bench" / "profile.py", tree / "bench" / "profile.py")
    rest, skip = [], False
    for a in argv:  # argv without --before REF / --before=REF
        if not skip and not a.startswith("--before"):
            rest.append(a)
        skip = a == "--before"
    if "--out" not in rest:
        rest += ["--out", str(args.out)]
    body_file = Path(args.out) / "profile.md"
    body_file.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(tree / "bench" / "profile.py"), *rest,
                           "--no-write", "--command", f"python bench/profile.py {' '.join(argv)}",
                           "--note", f" (commit {commit}: `git archive` with today's bench/ "
                                     "over it, its gateways and agents run from that tree)"],
                          cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    if done.returncode or not body_file.is_file():
        return done.returncode or 1
    if not args.no_write:
        write_section(f"Profile before issue 15 (commit {commit})", body_file.read_text())
    return 0


def main() -> int:
    argv = sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", default="embedded,apache",
                    help="broker kinds, comma-separated (apache left out when it cannot run)")
    ap.add_argument("--quick", action="store_true", help="100 referrals (default 300)")
    ap.add_argument("--n", type=int, help="referrals in the throughput run (300; quick 100)")
    ap.add_argument("--runs", type=int, default=1,
                    help="runs per broker kind, their samples pooled (the order alternating)")
    ap.add_argument("--threads", type=int, default=4, help="API client threads")
    ap.add_argument("--top", type=int, default=8, help="functions per process")
    ap.add_argument("--out", help="folder for the raw profiles (default: a new temp folder)")
    ap.add_argument("--flamegraph", action="store_true",
                    help="also a flamegraph SVG per process (a second py-spy each: more load)")
    ap.add_argument("--before", metavar="REF",
                    help="profile commit REF (with today's bench/) into its own section")
    ap.add_argument("--from", dest="from_", action="store_true",
                    help="no run: aggregate again the raw profiles already in --out")
    ap.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    ap.add_argument("--command", help=argparse.SUPPRESS)
    ap.add_argument("--note", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.n = args.n or (100 if args.quick else 300)
    args.out = args.out or tempfile.mkdtemp(prefix="refmesh-profile-")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"profile: raw profiles in {args.out}", file=sys.stderr, flush=True)
    if args.before:
        return run_before(args, argv)
    if args.from_:
        return report(json.loads((Path(args.out) / "runs.json").read_text()), args, argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    py_spy()

    from bench.pipeline import say
    from bench.pipeline_mesh import acls_available
    from devmesh import brokers

    kinds = [k.strip() for k in args.brokers.split(",") if k.strip()]
    notes, security = [], False
    if "apache" in kinds:
        problem = brokers.apache_available()
        if problem:
            kinds.remove("apache")
            notes.append(f"Apache Kafka was NOT profiled: {problem}")
        else:
            security = acls_available() is None
    out = Path(args.out)
    results, failed = {}, False
    active = list(kinds)
    for run in range(1, args.runs + 1):
        for kind in list(active) if run % 2 else active[::-1]:  # as bench/pipeline.py
            try:
                results.setdefault(kind, []).append(profile_kind(kind, out, security, args, run))
            except Exception as exc:
                failed = True
                why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                say(f"run {run} on {kind} failed: {why}")
                notes.append(f"{kind}: profile run {run} failed ({why}); its later runs were "
                             "not made")
                active.remove(kind)
    results = {kind: runs for kind, runs in results.items() if runs}
    if not results:
        return 1
    command = args.command or f"python bench/profile.py {' '.join(argv)}".strip()
    runs = {"results": results, "notes": notes, "command": command, "note": args.note,
            "n": args.n, "threads": args.threads, "root": str(ROOT)}
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    code = report(runs, args, argv)
    return code or (1 if failed else 0)


def report(runs: dict, args, argv: list[str]) -> int:
    """The section from runs.json and the raw profiles in --out."""
    from bench.results import write_section

    args.n, args.threads = runs["n"], runs["threads"]
    root = Path(runs["root"]) if Path(runs["root"]).is_dir() else ROOT
    body = "\n".join([*[f"**{n}**" for n in runs["notes"]], *([""] if runs["notes"] else []),
                      body_for(runs["results"], source_in(root), args, runs["command"],
                               runs["note"])])
    (Path(args.out) / "profile.md").write_text(body)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
