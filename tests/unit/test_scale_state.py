"""bench/scale_state.py, the state of N forwarded referrals made for the restore benchmark
(bench/scale.py): what it generates, for a small count, must be state the domain's core and its
worker's take-up check read back as their own."""
from __future__ import annotations

import types
import uuid

import pytest

from agents.state import Marks, StateGuard
from bench.scale_mesh import synthetic_agencies
from bench.scale_state import NS, generate
from refmesh import domain, replay, samples, topology
from tests import domainfix as F
from tests import policy_samples as S

REFERRALS = 240
DOMAIN_KEYS = F.MESH.keys[F.NCC]


@pytest.fixture(scope="module")
def state():
    return generate(DOMAIN_KEYS, F.MESH.directory, sender=F.HOTLINE, recipient=F.SHELTER,
                    secret=S.SECRET, partition_secret=F.PARTITION_SECRET, partitions=4,
                    now=S.NOW, referrals=REFERRALS, spread_ms=60 * S.DAY)


def restored(state) -> dict:
    """The tables as a fresh worker restores them from the changelog records: each key with
    the changelog partition it was read from (faust's ``_key_partition``)."""
    tables: dict = {}
    for name in topology.TABLES:
        table = type("Restored", (dict,), {})()
        table.data = types.SimpleNamespace(_key_partition={})
        tables[name] = table
    for name, partition, key, value in state.changelog():
        tables[name][key] = value
        tables[name].data._key_partition[key] = partition
    return tables


def view(tables) -> domain.View:
    return domain.View(tables["consents"].get, tables["forwarded"].get,
                       tables["counted"].get, tables["seen"].get)


def test_counts_of_what_was_generated(state):
    assert state.referrals == REFERRALS and state.persons == REFERRALS // 2
    tables = state.tables
    assert len(tables["consents"]) == len(tables["forwarded"]) == state.persons
    assert len(tables["counted"]) == REFERRALS  # two slots per person, both taken
    assert set(tables["state-heads"]) == set(tables["audit-heads"]) == {b"0", b"1", b"2", b"3"}
    # every event (a consent and two referrals per person) moved its partition's head once
    assert sum(state.events.values()) == state.persons * 3


def test_each_entry_lives_in_its_persons_partition(state):
    for name, partition, key, _ in state.changelog():
        if name in ("forwarded", "consents"):
            person = key.split(b"|")[0]
            assert topology.partition_of(person, 4) == partition


def test_a_fresh_workers_take_up_check_accepts_every_partition(state):
    guard = StateGuard(DOMAIN_KEYS, S.SECRET, restored(state), Marks(None), lambda w: False)
    assert [guard.ready(p) for p in range(4)] == [None] * 4


def test_a_rolled_back_entry_halts_its_partition(state):
    tables = restored(state)
    key = next(iter(tables["forwarded"]))
    partition = tables["forwarded"].data._key_partition[key]
    del tables["forwarded"][key]  # as a tombstone the domain did not write
    guard = StateGuard(DOMAIN_KEYS, S.SECRET, tables, Marks(None), lambda w: False)
    assert guard.ready(partition) is not None
    assert all(guard.ready(p) is None for p in range(4) if p != partition)


def test_the_core_reads_the_state_back(state):
    tables = restored(state)
    ctx = F.context(partitions=4)
    counted = 0
    for key, value in tables["aggregate-counts"].items():
        counted += sum(domain.read_counts(DOMAIN_KEYS, key, value).values())
    assert counted == REFERRALS
    person = topology.partition_key(F.PARTITION_SECRET, "subj-000003")
    log = domain.read_log(ctx, view(tables), person)
    assert [e["recipient"] for e in log] == [F.SHELTER, F.SHELTER]
    # the last referral is younger than the envelope's maximum age: its id is remembered
    seen_key = replay.entry_key(S.SECRET, F.HOTLINE, F.HOTLINE,
                                str(uuid.uuid5(NS, f"e{REFERRALS - 1}")))
    held = replay.read(DOMAIN_KEYS, tables["seen"].get, seen_key, S.NOW)
    assert held is not None and held.outcome == "Forwarded"


def test_a_new_referral_of_a_generated_person_is_forwarded(state):
    tables = restored(state)
    j = state.person_in(2, F.PARTITION_SECRET)
    referral = samples.referral(referral_id="5c9a1f1e-0000-4000-8000-00000000a001",
                                sender=F.HOTLINE, recipient=F.SHELTER, created_at=S.NOW, n=j)
    key = topology.partition_key(F.PARTITION_SECRET, referral["subjectId"])
    effects = domain.handle(F.sealed(referral, F.HOTLINE), key, F.context(partitions=4),
                            view(tables), 2)
    assert effects.deadletter is None
    assert [a["decision"] for a in effects.audit] == ["Forwarded"]
    assert [p.topic for p in effects.publish] == [topology.agency_inbox(F.SHELTER)]
    # the person's forwarding log held the two generated referrals
    assert len(domain.read_log(F.context(), view({"forwarded": {key: effects.log_put[1]},
                                                  **{n: {} for n in ("consents", "counted",
                                                                     "seen")}}), key)) == 3


def test_synthetic_agencies_are_members_of_the_sample_domain():
    agencies = synthetic_agencies(3)
    assert [a.agency_id for a in agencies] == ["BH/NGO/A0001", "BH/NGO/A0002", "BH/NGO/A0003"]
    assert {a.domain for a in agencies} == {"BH/GOV/NCCTIP"}


def test_restore_curve_and_faust_recovery_time_from_its_log():
    from bench.scale_restore import recovery_s, slope
    runs = [{"referrals": 100, "records": 300, "ready_s": 5.0},
            {"referrals": 100_100, "records": 240_300, "ready_s": 25.0}]
    assert slope(runs, "ready_s", "referrals") == pytest.approx(200.0)
    assert slope(runs[:1], "ready_s", "referrals") is None
    log = ("[2026-12-04 17:47:07,067] [7211] [INFO] [^---Recovery]: Starting... \n"
           "[2026-12-04 17:47:10,581] [7211] [INFO] [^---Recovery]: Recovery complete \n")
    assert recovery_s(log) == pytest.approx(3.514)
    assert recovery_s("no recovery here") is None


def test_the_report_renders_every_part():
    import argparse

    from bench.scale import report
    tp = {"rate": 50.0, "submit_rate": 90.0, "resends": 0, "stored": 10, "wall_s": 2.0,
          "idle_ms_per_s": {"hotline gateway": 10.0, "agent worker 1": 5.0},
          "cpu_ms": {"hotline gateway": 4.0, "shelter gateway": 4.0, "domain agents": 3.0,
                     "broker": 2.0, "bench (API clients, progress polling)": 1.0}}
    grown = {"members": 1000, "topics": 2026, "grants": 1_002_046, "directory_kb": 1422.0,
             "load_ms": 19.0, "idle_mb": 74.0, "peak_mb": 77.0, "agents_mb": 92.0,
             "setup_s": {"keys, keystores, settings and the signed directory": 3.0,
                         "topics pre-created": 20.0},
             "start_s": {"domain agents (worker 1)": 5.0, "hotline gateway": 0.9}, **tp}
    pace = {"offered": 30.0, "n": 60, "cpu_ms": {"agent worker 1": 2.0}, "stored": 60,
            "resends": 0}
    four = {**tp, "paced": pace, "workers": 4, "agents_ms": 5.0, "held": {"1": [0], "2": [1]},
            "after": {}, "cpu_ms": {**tp["cpu_ms"], "agent worker 1": 1.2}}
    restore = [{"referrals": n, "records": 3 * n, "bytes": 300 * n, "generated_s": 1.0,
                "produced_s": 1.0, "answered_s": 0.5, "recovery_s": None if n < 10 else 2.0,
                "ready_s": 4.0 + n / 1e4, "forwarded_s": 5.0, "worker_rss_ready_mb": 80,
                "worker_rss_mb": 90, "broker_rss_mb": 300} for n in (1, 10_000)]
    body = report({"directory": {"embedded": [grown, grown]},
                   "workers": {"embedded": [{**four, "workers": 1}, four]},
                   "restore": {"embedded": restore}}, ["a note"],
                  argparse.Namespace(n=10, threads=4, rate=30.0))
    assert "1,002,046" in body and "worker 2: [1]" in body and "per million referrals" in body
