"""The release job on the real broker, with a clock the test moves: revisions on a fixed
schedule (every window, with or without referrals; nothing in between, whatever the counts
do), differential privacy with a ledger of epsilon and delta (a release that would exceed the
budget is refused and audited, once), the release job's own audit chain, a stored release
published as stored after a crash, a rolled-back ledger that stops the job, and the deletion of
a window's state once it is final."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer

import random
import secrets

from agents.releases import CURSOR, HEAD, LEDGER, RELEASE_CONTEXT, Releaser, noise_source
from agents.state import Marks
from agents.run import domain_topics
from cli import cli
from kafkaedge.topic_reader import latest, read_topic
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import aggregate, audit, codec, directory, domain, envelope, keys, topology
from refmesh.settings import AgentSettings

DAY = 86_400_000
T0 = 1_780_000_000_000
WINDOW = aggregate.window_of(1_790_000_000_000)  # September 2026
LATER = aggregate.window_of(WINDOW[1])  # October 2026
SHELTER = {"agencyId": "BH/GOV/SHELTER", "role": "CentralGovernmentOrganisation",
           "jurisdiction": "BH"}
HOTLINE = {**SHELTER, "agencyId": "BH/GOV/HOTLINE"}


def cell(citizenship: str) -> dict:
    referral = {"person": {"citizenship": [citizenship], "gender": "Female"},
                "victim": {"typeOfExploitation": ["ForcedLabour"]}, "trmStage": "Referral"}
    return aggregate.cell_of(referral, "forwarded", HOTLINE, SHELTER, WINDOW[0],
                             ("reportingCountry", "citizenship", "finalStatus"))


ET, PH = aggregate.cell_key(cell("ET")), aggregate.cell_key(cell("PH"))


class World:
    def __init__(self, kafka, unique: str, clock: list[int]) -> None:
        self.kafka = kafka
        self.domain, coord = f"BH/GOV/R{unique.upper()}", f"BH/GOV/C{unique.upper()}"
        self.region = f"R{unique}"
        self.keys = keys.generate(self.domain, T0)
        coord_keys = keys.generate(coord, T0)
        draft = directory.empty(coord)
        for agency, k in ((coord, coord_keys), (self.domain, self.keys)):
            draft = directory.add_member(draft, directory.member_entry(
                k, agency, "CentralGovernmentOrganisation", "BH", None, T0))
        self.directory = directory.load(directory.sign(draft, coord_keys, T0),
                                        directory.TrustAnchor.of(coord_keys), T0 + DAY)
        self.consumer = kafka.consumer_config("t")
        self.producer_config = kafka.producer_config()
        ensure_topics(kafka.admin_config(),
                      [*domain_topics(self.domain, 2), TopicSpec(aggregate.topic(self.region), 1)])
        self.clock = clock
        self.settings = AgentSettings(
            keystore="-", directory="-", anchor="-", domain=self.domain, policy="-",
            region=self.region, aggregate_grace_ms=DAY, aggregate_max_late_ms=30 * DAY,
            aggregate_epsilon=0.5, aggregate_delta=1e-6, aggregate_budget=1.0,
            broker=kafka.kind)
        self.draws: list[aggregate.Noise] = []
        self.marks = Marks(None)  # the worker's marks of the release state, across its runs

    def releaser(self, **overrides) -> Releaser:
        settings = AgentSettings(**{**self.settings.__dict__, **overrides})

        def noise(params: aggregate.Noise) -> int:
            self.draws.append(params)
            return 0

        return Releaser(settings, self.keys, self.consumer, self.producer_config,
                        clock=lambda: self.clock[0], noise=noise, marks=self.marks)

    def put(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        producer = KafkaProducer(**self.producer_config)
        producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
        producer.close()

    def counts(self, partition: int, window, counts: dict) -> None:
        key = f"{partition}|{window[0]}".encode()
        self.put(topology.table(self.domain, "aggregate-counts"), key,
                 domain.protect_counts(self.keys, key, counts), partition)

    def mark(self, name: bytes, window, partition: int) -> None:
        self.put(topology.table(self.domain, "counted"), name, str(window[0]).encode(),
                 partition)

    def releases(self) -> list[dict]:
        return [aggregate.verify_release(m.value, self.directory, T0 + DAY)
                for m in read_topic(self.consumer, aggregate.topic(self.region)) or ()]

    def chain(self) -> list[bytes]:
        return [m.value for m in read_topic(self.consumer, topology.release_audit(self.domain))
                or () if m.partition == 0]

    def table(self, name: str) -> dict:
        return latest(read_topic(self.consumer, topology.table(self.domain, name)))


@pytest.fixture
def world(kafka, unique) -> World:
    return World(kafka, unique, [WINDOW[1] + DAY])  # September is due, not final


def decisions(chain: list[bytes]) -> list[tuple[str, str | None]]:
    return [(r["decision"], r["reason"]) for r in (codec.decode(d)[1] for d in chain)]


def revision_time(n: int, revisions: int) -> int:
    """When revision ``n`` of September is due (refmesh.aggregate.schedule)."""
    return aggregate.schedule(WINDOW, DAY, 30 * DAY, revisions)[n]


def test_noise_the_ledger_and_a_refusal_audited_once(world):
    world.counts(0, WINDOW, {ET: 200})
    world.counts(1, WINDOW, {ET: 5, PH: 4})
    three = {"aggregate_revisions": 3}  # revisions at Oct 2, 11, 21 and 31
    run = world.releaser(**three).run_once()
    assert (run.published, run.refused) == (1, 0)
    (first,) = world.releases()
    assert (first["epsilon"], first["mechanism"], first["revision"]) == (0.5, "laplace", 0)
    assert [(c["citizenship"], c["count"]) for c in first["cells"]
            if aggregate.kind_of(c) == "cell"] == [("ET", 205)]  # partitions merged; PH's 4 out
    # the claim, on the record: L1 = 3m = 6, b = 6/0.5, the threshold that pays for new cells
    assert (first["maxPerPerson"], first["sensitivityL1"], first["noiseScale"],
            first["threshold"], first["finalRevision"]) == (2, 6, 12.0, 187, 3)
    assert first["delta"] <= 1e-6 and first["epsilonRemaining"] == 0.5
    assert [d.scale for d in world.draws] == [12, 12]  # one draw per cell
    # more referrals: nothing until the next revision is due, then a correction, charged too
    world.counts(0, WINDOW, {ET: 231})
    assert world.releaser(**three).run_once().published == 0
    world.clock[0] = revision_time(1, 3)
    assert world.releaser(**three).run_once().published == 1  # the budget of 1.0 is spent
    # the next revision: refused, audited once however often the job runs
    world.clock[0] = revision_time(2, 3)
    for _ in range(2):
        run = world.releaser(**three).run_once()
        assert (run.published, run.refused) == (0, 1)
    assert [r["revision"] for r in world.releases()] == [0, 1]
    assert world.releases()[1]["epsilonRemaining"] == 0.0
    ledger = aggregate.loads_ledger(envelope.unprotect(
        world.keys, RELEASE_CONTEXT + LEDGER, world.table(topology.RELEASES)[LEDGER].value))
    delta = first["delta"]
    assert ledger == {world.region: {"epsilon": 1.0, "delta": 2 * delta,
                                     "windows": {str(WINDOW[0]): [1.0, 2 * delta]}}}
    chain = world.chain()
    assert audit.verify(chain) is None
    assert decisions(chain) == [("ReleasePublished", None), ("ReleasePublished", None),
                                ("ReleaseRefused", aggregate.BUDGET_EXHAUSTED)]
    # nothing about a person on the state topic: counts and releases are encrypted
    for m in read_topic(world.consumer, topology.table(world.domain, topology.RELEASES)):
        # quoted: two bytes of ciphertext spell ET once in 65,536 (a CI run hit it)
        assert b"\"ET\"" not in m.value and b"forwarded" not in m.value


def test_every_window_is_released_on_schedule_whatever_its_counts(world):
    """Whether a release appears depends on the clock only: a window without a referral is
    released like one with referrals, and counts that move between revisions publish nothing."""
    plain = {"aggregate_epsilon": None, "aggregate_budget": None}
    run = world.releaser(**plain).run_once()  # September is due; nothing was counted
    assert run.published == 1
    (empty,) = world.releases()
    assert empty["windowStart"] == WINDOW[0] and [c["count"] for c in empty["cells"]] == [0]
    world.counts(0, WINDOW, {ET: 40})  # 40 late referrals: no correction before its time
    assert world.releaser(**plain).run_once().published == 0
    world.clock[0] = revision_time(1, 1)  # September final: the last revision, then deleted
    run = world.releaser(**plain).run_once()
    assert (run.published, run.deleted) == (1, 1)
    last = world.releases()[-1]
    assert (last["revision"], last["finalRevision"]) == (1, 1)
    assert [(c["citizenship"], c["count"]) for c in last["cells"]
            if aggregate.kind_of(c) == "cell"] == [("ET", 40)]


def test_a_ledger_rolled_back_on_the_broker_stops_the_release_job(world, tmp_path):
    """An outsider who can write the release state puts back the ledger as it was before the
    last charge, to have the job draw fresh noise on budget it already spent: the job notices
    (refmesh.statehead), publishes nothing and names the problem."""
    world.marks = Marks(tmp_path / "release-marks.json")
    two = {"aggregate_revisions": 2}  # September's revisions: Oct 2, Oct 16, Oct 31
    world.counts(0, WINDOW, {ET: 200})
    assert world.releaser(**two).run_once().published == 1
    world.counts(0, WINDOW, {ET: 231})
    world.clock[0] = revision_time(1, 2)
    assert world.releaser(**two).run_once().published == 1  # the correction, charged too
    topic = topology.table(world.domain, topology.RELEASES)
    ledgers = [m for m in read_topic(world.consumer, topic) if m.key == LEDGER]
    assert len(ledgers) == 2
    world.put(topic, LEDGER, ledgers[0].value, ledgers[0].partition)
    world.counts(0, WINDOW, {ET: 242})  # more: the last revision is refused by the budget,
    world.clock[0] = revision_time(2, 2)  # unless the ledger is rolled back
    draws, releases = list(world.draws), world.releases()
    job = Releaser(AgentSettings(**{**world.settings.__dict__, **two}), world.keys,
                   world.consumer, world.producer_config, clock=lambda: world.clock[0],
                   noise=lambda params: 0,
                   marks=Marks(tmp_path / "release-marks.json"))  # a restarted worker
    run = job.run_once()
    assert (run.published, run.refused) == (0, 0)
    assert "releases state" in job.halted and "aggregate-releases" in job.halted
    assert world.draws == draws and world.releases() == releases


def test_a_stored_release_is_published_as_stored_after_a_crash(world):
    world.counts(0, WINDOW, {ET: 300})
    stored = aggregate.release({ET: 300}, noise=world.settings.aggregate_privacy(),
                               draw=lambda params: 7)  # 307 -> 305
    key = str(WINDOW[0]).encode()
    world.put(topology.table(world.domain, topology.RELEASES), key, envelope.protect(
        world.keys, RELEASE_CONTEXT + key, stored.to_bytes()), 0)
    run = world.releaser().run_once()  # stored, never published: out as it was, no new draw
    assert run.published == 1 and world.draws == []
    (out,) = world.releases()
    assert [c["count"] for c in out["cells"] if aggregate.kind_of(c) == "cell"] == [305]
    assert world.releaser().run_once().published == 0  # and only once


def test_the_job_draws_exact_integer_noise_from_the_system_generator(monkeypatch):
    """``noise_source`` samples through ``secrets.randbelow`` (here replaced by a seeded
    generator, so that the draws can be compared with the core's sampler on the same seed)."""
    for mechanism in aggregate.MECHANISMS:
        params = aggregate.calibrate(epsilon=1.0, delta=1e-6, mechanism=mechanism)
        monkeypatch.setattr(secrets, "randbelow", random.Random(11).randrange)
        got = [noise_source()(params) for _ in range(50)]
        seeded = aggregate.sampler(random.Random(11).randrange)
        want = [seeded(params) for _ in range(50)]
        assert got == want and all(type(x) is int for x in got) and len(set(got)) > 5


def test_a_final_window_state_is_deleted_and_the_open_one_kept(world):
    world.counts(0, WINDOW, {ET: 30})
    world.counts(1, WINDOW, {PH: 12})
    world.counts(1, LATER, {ET: 12})
    world.mark(b"m-sep", WINDOW, 1)
    world.mark(b"m-oct", LATER, 0)
    plain = {"aggregate_epsilon": None, "aggregate_budget": None}
    assert world.releaser(**plain).run_once().published == 1  # September
    world.clock[0] = LATER[1] + DAY  # September final; October due, not final
    run = world.releaser(**plain).run_once()
    assert (run.published, run.deleted) == (2, 1)  # September's last revision, October's first
    counts = world.table("aggregate-counts")
    assert set(counts) == {f"1|{LATER[0]}".encode()}
    assert set(world.table("counted")) == {b"m-oct"}
    state = world.table(topology.RELEASES)
    assert set(state) == {str(LATER[0]).encode(), f"published|{LATER[0]}".encode(), HEAD,
                          CURSOR}
    assert [(r["windowStart"], r["revision"]) for r in world.releases()] == [
        (WINDOW[0], 0), (WINDOW[0], 1), (LATER[0], 0)]
    assert world.releaser(**plain).run_once().published == 0  # deleted stays deleted


def test_refmesh_audit_verify_checks_the_release_chain_too(world):
    world.counts(0, WINDOW, {ET: 30})
    world.releaser().run_once()
    result = CliRunner().invoke(cli, ["audit", "verify", "--domain", world.domain,
                                      "--config", str(world.kafka.client_file())])
    assert result.exit_code == 0, result.output
    assert "releases 0: 1 records, chain intact" in result.output
    assert "partition 1: 0 records, chain intact" in result.output
