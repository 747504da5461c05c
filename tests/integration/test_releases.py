"""The release job on the real broker, with a clock the test moves: differential privacy with
an epsilon ledger (a release that would exceed the budget is refused and audited, once), the
release job's own audit chain, a stored release published as stored after a crash, and the
deletion of a window's state once it is final."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer

from agents.releases import HEAD, LEDGER, RELEASE_CONTEXT, Releaser, noise_source
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
            aggregate_epsilon=0.5, aggregate_budget=1.0, broker=kafka.kind)
        self.draws: list[float] = []
        self.marks = Marks(None)  # the worker's marks of the release state, across its runs

    def releaser(self, **overrides) -> Releaser:
        settings = AgentSettings(**{**self.settings.__dict__, **overrides})

        def noise(scale: float) -> float:
            self.draws.append(scale)
            return 0.0

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


def test_noise_the_ledger_and_a_refusal_audited_once(world):
    world.counts(0, WINDOW, {ET: 20})
    world.counts(1, WINDOW, {ET: 5, PH: 4})
    run = world.releaser().run_once()
    assert (run.published, run.refused) == (1, 0)
    (first,) = world.releases()
    assert (first["epsilon"], first["mechanism"], first["revision"]) == (0.5, "laplace", 0)
    assert [(c["citizenship"], c["count"]) for c in first["cells"]
            if aggregate.kind_of(c) == "cell"] == [("ET", 25)]  # partitions merged; PH's 4 out
    assert world.draws == [2.0, 2.0]  # Laplace scale 1/epsilon, one draw per cell
    # 11 late ET referrals: a correction, charged too; the budget of 1.0 is now spent
    world.counts(0, WINDOW, {ET: 31})
    assert world.releaser().run_once().published == 1
    # 11 more: refused, audited once however often the job runs
    world.counts(0, WINDOW, {ET: 42})
    for _ in range(2):
        run = world.releaser().run_once()
        assert (run.published, run.refused) == (0, 1)
    assert [r["revision"] for r in world.releases()] == [0, 1]
    ledger = world.table(topology.RELEASES)[b"ledger"]
    assert aggregate.loads_ledger(envelope.unprotect(
        world.keys, RELEASE_CONTEXT + b"ledger", ledger.value)) == {world.region: 1.0}
    chain = world.chain()
    assert audit.verify(chain) is None
    assert decisions(chain) == [("ReleasePublished", None), ("ReleasePublished", None),
                                ("ReleaseRefused", aggregate.BUDGET_EXHAUSTED)]
    # nothing about a person on the state topic: counts and releases are encrypted
    for m in read_topic(world.consumer, topology.table(world.domain, topology.RELEASES)):
        assert b"ET" not in m.value and b"forwarded" not in m.value


def test_a_ledger_rolled_back_on_the_broker_stops_the_release_job(world, tmp_path):
    """An outsider who can write the release state puts back the ledger as it was before the
    last charge, to have the job draw fresh noise on budget it already spent: the job notices
    (refmesh.statehead), publishes nothing and names the problem."""
    world.marks = Marks(tmp_path / "release-marks.json")
    world.counts(0, WINDOW, {ET: 20})
    assert world.releaser().run_once().published == 1
    world.counts(0, WINDOW, {ET: 31})
    assert world.releaser().run_once().published == 1  # the correction, charged too
    topic = topology.table(world.domain, topology.RELEASES)
    ledgers = [m for m in read_topic(world.consumer, topic) if m.key == LEDGER]
    assert len(ledgers) == 2
    world.put(topic, LEDGER, ledgers[0].value, ledgers[0].partition)
    world.counts(0, WINDOW, {ET: 42})  # 11 more: refused by the budget, unless rolled back
    draws, releases = list(world.draws), world.releases()
    job = Releaser(world.settings, world.keys, world.consumer, world.producer_config,
                   clock=lambda: world.clock[0], noise=lambda scale: 0.0,
                   marks=Marks(tmp_path / "release-marks.json"))  # a restarted worker
    run = job.run_once()
    assert (run.published, run.refused) == (0, 0)
    assert "releases state" in job.halted and "aggregate-releases" in job.halted
    assert world.draws == draws and world.releases() == releases


def test_a_stored_release_is_published_as_stored_after_a_crash(world):
    world.counts(0, WINDOW, {ET: 30})
    stored = aggregate.release({ET: 30}, epsilon=0.5, noise=lambda s: 7.0)  # 37 -> 35
    key = str(WINDOW[0]).encode()
    world.put(topology.table(world.domain, topology.RELEASES), key, envelope.protect(
        world.keys, RELEASE_CONTEXT + key, stored.to_bytes()), 0)
    run = world.releaser().run_once()  # stored, never published: out as it was, no new draw
    assert run.published == 1 and world.draws == []
    (out,) = world.releases()
    assert [c["count"] for c in out["cells"] if aggregate.kind_of(c) == "cell"] == [35]
    assert world.releaser().run_once().published == 0  # and only once


def test_gaussian_noise_is_drawn_with_its_deviation():
    draw = noise_source("gaussian")
    samples = [draw(10.0) for _ in range(4000)]
    mean = sum(samples) / len(samples)
    deviation = (sum((x - mean) ** 2 for x in samples) / len(samples)) ** 0.5
    assert abs(mean) < 1.0 and 9.0 < deviation < 11.0
    laplace = [noise_source("laplace")(2.0) for _ in range(4000)]
    assert 1.7 < sum(abs(x) for x in laplace) / len(laplace) < 2.3  # E|X| = b


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
    assert (run.published, run.deleted) == (1, 1)
    counts = world.table("aggregate-counts")
    assert set(counts) == {f"1|{LATER[0]}".encode()}
    assert set(world.table("counted")) == {b"m-oct"}
    state = world.table(topology.RELEASES)
    assert set(state) == {str(LATER[0]).encode(), f"published|{LATER[0]}".encode(), HEAD}
    assert [r["windowStart"] for r in world.releases()] == [WINDOW[0], LATER[0]]
    assert world.releaser(**plain).run_once().published == 0  # deleted stays deleted


def test_refmesh_audit_verify_checks_the_release_chain_too(world):
    world.counts(0, WINDOW, {ET: 30})
    world.releaser().run_once()
    result = CliRunner().invoke(cli, ["audit", "verify", "--domain", world.domain,
                                      "--config", str(world.kafka.client_file())])
    assert result.exit_code == 0, result.output
    assert "releases 0: 1 records, chain intact" in result.output
    assert "partition 1: 0 records, chain intact" in result.output
