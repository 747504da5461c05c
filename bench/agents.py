"""Policy-domain agent benchmark: the per-event work of the domain's agent, in one process.

Four variants over the same sealed referrals, measured in the same run:
- plain forwarding (the baseline): open the envelope, reseal it whole for the recipient;
- forwarding with the protocol's checks: the same with the checks every forwarder of the mesh
  makes, as ``domain.handle`` makes them (the signer's authority, the Kafka key, the replay
  memory's look-up and writes), so that the policy's own cost can be told from theirs;
- policy on: ``refmesh.domain.handle`` as the agent runs it: open, read the encrypted consent,
  decide (consent check, minimisation plan, allow-list projection), reseal the projection,
  update the encrypted forwarding log;
- policy and statistics: the same plus the aggregation step (coarse cell, encrypted counts).

And the release step alone: cells per second through the release rule with exact integer noise.

It measures the agent's own work, not faust or Kafka (bench/pipeline.py measures the whole
path). Usage: python bench/agents.py [--runs 5] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import spread, write_section  # noqa: E402
from refmesh import aggregate, domain, envelope, replay, samples, topology  # noqa: E402
from tests.policy_samples import NOW, SECRET, load, signed_mesh  # noqa: E402

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
PARTITION_SECRET = b"\x02" * 16  # the domain's key secret: the person's key, as a gateway's
CHECKED = "forwarding with the protocol's checks (replay memory, signer, key)"
AGGREGATOR = "into the aggregator alone (opened referral to encrypted counts)"


def events(mesh, n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        referral = samples.referral(referral_id=f"b-{i}", sender=HOTLINE, recipient=SHELTER,
                                    created_at=NOW, n=1)
        out.append((envelope.seal("Referral", referral, mesh.keys[HOTLINE], NCC,
                                  mesh.directory, NOW),
                    topology.partition_key(PARTITION_SECRET, referral["subjectId"])))
    return out


def held(keys, table_key: bytes, consent: dict) -> bytes:
    """The consent as the domain's table holds it (JSON in a tree before
    ``domain.protect_consent``, for bench/ab.py's before side)."""
    if hasattr(domain, "protect_consent"):
        return domain.protect_consent(keys, table_key, consent)
    return envelope.protect(keys, b"consent|" + table_key, json.dumps(consent).encode())


def policy_pieces(batch, ctx, view, consent: dict, runs: int) -> dict[str, list[float]]:
    """Microseconds per referral that each piece of the policy adds to ``domain.handle``, in
    place (warm or cold caches as the agent has them): ``handle`` timed as it is and with that
    piece replaced, for the time of the run, by a stand-in returning its result for these
    referrals (all of them one person's, to one recipient, under one plan); the order of the
    variants alternating run by run. A piece's cost is the median over the runs of its two
    times' difference."""
    data, key = batch[0]
    record = envelope.open(data, ctx.keys, ctx.directory, NOW).record
    allow = domain.decide(record, consent, ctx.directory, ctx.policy, NOW, ctx.secret,
                          checked=True)
    cell = domain._cell(record, "forwarded", ctx)
    slot = domain._counted(key, "decision", record["createdAt"], cell, ctx, view)
    stand_ins = {
        "consent read (AES-SIV decryption, Avro decoding and its checks)":
            ("read_consent", lambda *args: consent),
        "decision (dates, consent check, plan, projection, forwarded names)":
            ("decide", lambda *args, **kwargs: allow),
        "coarse cell for the statistics": ("_cell", lambda *args: cell),
        "cap slot (keyed hash, table look-up)": ("_counted", lambda *args: slot),
    }

    def handled(attr: str | None = None, stand_in=None) -> float:
        """Microseconds per referral of ``handle``, with ``domain.<attr>`` replaced."""
        with mock.patch.object(domain, attr, stand_in) if attr else contextlib.nullcontext():
            start = time.perf_counter()
            for data, key in batch:
                domain.handle(data, key, ctx, view)
            return (time.perf_counter() - start) / len(batch) * 1e6

    names = ["as it is", *stand_ins]
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(handled(*stand_ins.get(name, ())))
    whole = times.pop("as it is")
    return {name: [w - t for w, t in zip(whole, v)] for name, v in times.items()}


def release_rates(runs: int, cells: int) -> dict[str, list[float]]:
    """Cells per second through ``aggregate.release`` with exact integer noise (one draw per
    cell from ``secrets.randbelow``), per mechanism."""
    counts = {aggregate.cell_key(aggregate.cell_of(
        samples.referral(n=i), "forwarded", {"jurisdiction": f"{chr(65 + i % 26)}"
                                             f"{chr(65 + i // 26 % 26)}"},
        {"role": "NGO"}, NOW)): 50 + i % 300 for i in range(cells)}
    out: dict[str, list[float]] = {}
    for mechanism in aggregate.MECHANISMS:
        noise = aggregate.calibrate(epsilon=1.0, delta=1e-6, mechanism=mechanism)
        draw = aggregate.sampler(secrets.randbelow)
        out[mechanism] = []
        for _ in range(runs):
            start = time.perf_counter()
            aggregate.release(counts, noise=noise, draw=draw)
            out[mechanism].append(len(counts) / (time.perf_counter() - start))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", metavar="PATH",
                    help="write the medians there as JSON (bench/ab.py), not RESULTS.md")
    args = ap.parse_args()
    n = 30 if args.quick else 300
    mesh = signed_mesh()
    keys, policy = mesh.keys[NCC], load()
    consent = samples.consent(1, controller=HOTLINE, valid_from=NOW - 1000)
    consent["recipientRoles"] = ["CentralGovernmentOrganisation"]
    ctx = domain.Context(keys, mesh.directory, policy, SECRET, NOW,
                         partition_secret=PARTITION_SECRET)
    subject_key = topology.partition_key(PARTITION_SECRET, consent["subjectId"])
    ckey = domain.consent_key(subject_key, HOTLINE, consent["consentId"], SECRET)
    tables = {"consent": {ckey: held(keys, ckey, consent)}, "log": {}}
    marks: dict[bytes, bytes] = {}  # the counted table (emptied before each run)
    # the batch is one person's referrals: the view never shows the slots taken, so that each
    # is counted (one look-up of a free cap slot) as a new person's would be
    view = domain.View(consent=tables["consent"].get, log=tables["log"].get,
                       counted=lambda key: None)
    batch = events(mesh, n)
    counts: dict[bytes, bytes] = {}

    def plain(data, key):
        opened = envelope.open(data, keys, mesh.directory, NOW)
        hop = topology.next_hop(mesh.directory, NCC, opened.record["recipientAgency"])
        envelope.seal("Referral", opened.record, keys, hop.seal_for, mesh.directory, NOW,
                      event_id=opened.header["eventId"])

    def checked(data, key):
        """Plain forwarding with the protocol's checks that any forwarder of the mesh makes
        before it re-signs (THREATS.md, issue 12), as ``domain.handle`` makes them: the
        signer's authority, the Kafka key and partition, the replay memory (its look-up and
        its writes); no consent, minimisation, forwarding log or counting."""
        opened = envelope.open(data, keys, mesh.directory, NOW)
        record, signer = opened.record, opened.header["sender"]
        assert domain._authority("Referral", record, signer, ctx) is None
        assert domain._arrival("Referral", record, key, 0, signer, ctx) is None
        seen_key = replay.entry_key(SECRET, signer, record["senderAgency"],
                                    opened.header["eventId"])
        digest = replay.digest("Referral", record, opened.inner)
        assert replay.read(keys, view.seen, seen_key, NOW) is None
        hop = topology.next_hop(mesh.directory, NCC, record["recipientAgency"])
        envelope.seal("Referral", record, keys, hop.seal_for, mesh.directory, NOW,
                      event_id=opened.header["eventId"])
        seen = replay.Seen(digest, "Forwarded", None,
                           replay.until(opened.header["createdAt"], NOW))
        replay.remember(keys, view.seen, seen_key, seen, 0, NOW)

    def with_policy(data, key):
        effects = domain.handle(data, key, ctx, view)
        assert effects.publish and effects.deadletter is None

    def with_statistics(data, key):
        effects = domain.handle(data, key, ctx, view)
        once, start, cell = effects.counted
        if once is not None:
            marks[once] = str(start).encode()
        ck = f"0|{start}".encode()
        held = domain.read_counts(keys, ck, counts.get(ck))
        counts[ck] = domain.protect_counts(keys, ck, aggregate.count(held, cell))

    records = {data: envelope.open(data, keys, mesh.directory, NOW).record for data, _ in batch}
    sender, recipient = mesh.directory.member(HOTLINE), mesh.directory.member(SHELTER)
    dims = domain.Counting().dims

    def aggregator(data, key):  # the counting step alone: an opened referral into its window
        cell = aggregate.cell_of(records[data], "forwarded", sender, recipient, NOW, dims)
        start, _ = aggregate.window_of(NOW)
        ck = f"0|{start}".encode()
        held = domain.read_counts(keys, ck, counts.get(ck))
        counts[ck] = domain.protect_counts(keys, ck, aggregate.count(held, cell))

    variants = {"plain forwarding (baseline)": plain, CHECKED: checked, "policy on": with_policy,
                "policy and statistics": with_statistics,
                AGGREGATOR: aggregator}
    rates = {name: [] for name in variants}
    for r in range(args.runs):  # the order alternating, so that a drift of load hits all
        for name, fn in (list(variants.items()) if r % 2 == 0 else
                         list(variants.items())[::-1]):
            marks.clear()
            start = time.perf_counter()
            for data, key in batch:
                fn(data, key)
            rates[name].append(n / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["plain forwarding (baseline)"]
    released = release_rates(args.runs, 200 if args.quick else 2000)
    rows = [f"| {k} | {spread(v)} | {med[k] / base:.2f} |" for k, v in rates.items()]
    # each run's cost from its own two rates (paired), then the median over the runs

    def cost_of(variant: str, against: str = "plain forwarding (baseline)") -> float:
        return statistics.median(1 - p / b for p, b in zip(rates[variant], rates[against]))

    cost, stats_cost = cost_of("policy on"), cost_of("policy and statistics")
    checks_cost, over_checked = cost_of(CHECKED), cost_of("policy on", CHECKED)
    body = "\n".join([
        f"{n} sealed full referrals per run, {args.runs} runs (the variants' order alternating "
        "run by run); referrals per second, median (min-max), in one process (the agent's own "
        "work: no faust, no Kafka). A cost below is the median over the runs of each run's "
        "1 - rate / baseline rate.", "",
        "| variant | referrals/s | ratio to baseline |", "|---|---|---|", *rows, "",
        f"- policy costs {cost:.0%} of the plain forwarding throughput (issue 15's target: "
        f"under 20%): {'met' if cost < 0.20 else 'NOT met'}.",
        f"- policy and statistics together cost {stats_cost:.0%}.",
        f"- apart: the protocol's checks cost {checks_cost:.0%} of the plain forwarding "
        "throughput (the replay memory of issue 12, see bench/checks.py; the signer's "
        "authority; the Kafka key: what every forwarder of the mesh makes, with or without a "
        f"policy); the policy itself (consent, minimisation, forwarding log, counting) costs "
        f"{over_checked:.0%} of the throughput of forwarding with those checks.",
        f"- aggregation throughput: {med[AGGREGATOR]:,.0f} referrals/s into the "
        f"aggregator, {med[AGGREGATOR] / base:.1f}x the plain forwarding rate.",
        *(f"- release with exact {name} noise (refmesh.aggregate.sampling, epsilon 1, "
          f"m = 2): {spread(v)} cells/s, median (min-max)"
          for name, v in released.items()),
    ])
    if not args.json:  # (bench/ab.py compares the rates only)
        pieces = policy_pieces(batch, ctx, view, consent, args.runs)
        per = {k: 1e6 / statistics.median(v) for k, v in rates.items()}  # us per referral
        policy_us = per["policy on"] - per[CHECKED]
        body += "\n".join([
            "", "", f"Where the policy's {policy_us:.0f} us per referral go (policy on less "
            "forwarding with the protocol's checks; each piece measured in place: `handle` "
            "against `handle` with that piece replaced by a stand-in returning its result, "
            f"{args.runs} runs alternating; median (min-max) us per referral):", "",
            "| piece | us per referral | share of the policy's |", "|---|---|---|",
            *(f"| {name} | {spread(v)} | {statistics.median(v) / policy_us:.0%} |"
              for name, v in pieces.items()),
            f"| the rest: forwarding-log entry (JSON, AES-SIV), audit record, effects | "
            f"{policy_us - sum(statistics.median(v) for v in pieces.values()):.1f} | "
            f"{1 - sum(statistics.median(v) for v in pieces.values()) / policy_us:.0%} |"])
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {**med, "policy cost (% of plain forwarding)": 100 * cost,
             "policy and statistics cost (% of plain forwarding)": 100 * stats_cost,
             "protocol checks cost (% of plain forwarding)": 100 * checks_cost,
             "policy cost (% of forwarding with the protocol's checks)": 100 * over_checked}))
    elif not args.quick:
        write_section("Agents: policy and statistics against plain forwarding (bench/agents.py)",
                      body)


if __name__ == "__main__":
    main()
