"""A malicious member against the policy domain's checks (THREATS.md 2, "the person's
decisions"; refmesh.domain), on the real brokers.

The mesh: the hotline, the shelter and the psychological support service with their gateways,
and their policy domain's agents. The attacker is a member with only a member's powers: its own
signing and encryption keys from the sample mesh, the domain's partition secret that every
gateway of the domain holds, and a Kafka producer logged in as its own principal on its
domain's inbox (on Apache Kafka under the mesh's ACLs). It is a rogue at the hotline (the
sender and controller, writing past its own gateway) or the psychological support service.

Each attack ends in a dead letter with its reason on the domain's dead-letter topic and an
audit record of the refusal, nothing is forwarded and no consent changes; and the next genuine
referral, sent through the hotline's gateway, still reaches the shelter.
"""
from __future__ import annotations

import itertools
import uuid

import pytest
from kafka import KafkaProducer

from devmesh.supervise import wait_until
from gateways.client import GatewayError
from kafkaedge import profiles, topic_reader
from kafkaedge.loading import now_ms
from refmesh import envelope, samples, topology
from refmesh.access import agency_principal
from tests.integration.meshfix import Mesh, metrics, start_mesh

HOTLINE, SHELTER, PSYCH, POLICE, NCC = (
    "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/NGO/PSYCH", "BH/GOV/MOI-ATU", "BH/GOV/NCCTIP")
PARTITIONS = 4
DEADLINE_S = 60
PERSON = itertools.count(300)  # each test its own people


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("domain-attacks"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER, PSYCH], [NCC], partitions=PARTITIONS)
    yield m
    m.running.stop()


class Member:
    """A rogue member: its keys, the domain's partition secret and a producer as itself."""

    def __init__(self, mesh: Mesh, sample_id: str) -> None:
        self.mesh, self.agency, self.keys = mesh, mesh.id(sample_id), mesh.keys(sample_id)
        self.secret = mesh.files.env["REFMESH_PARTITION_SECRET"].encode()
        self.inbox = topology.domain_inbox(mesh.id(NCC))
        config = profiles.producer_config(mesh.kafka.profile, mesh.bootstrap,
                                          mesh.kafka.security_for(agency_principal(self.agency)))
        self.producer = KafkaProducer(**{**config, "enable_idempotence": False})

    def key(self, subject_id: str) -> bytes:
        return topology.partition_key(self.secret, subject_id)

    def seal(self, record_type: str, record: dict, event_id: str | None = None) -> bytes:
        return envelope.seal(record_type, record, self.keys, self.mesh.id(NCC),
                             self.mesh.directory(), now_ms(), event_id=event_id)

    def send(self, data: bytes, key: bytes, partition: int | None = None) -> str:
        """Write ``data`` to the domain's inbox; its source, as a dead letter names it."""
        sent = self.producer.send(self.inbox, value=data, key=key,
                                  partition=partition).get(timeout=30)
        return f"{self.inbox}/{sent.partition}@{sent.offset}"

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def member(mesh):
    made: dict[str, Member] = {}

    def rogue(sample_id: str) -> Member:
        if sample_id not in made:
            made[sample_id] = Member(mesh, sample_id)
        return made[sample_id]

    yield rogue
    for m in made.values():
        m.close()


# --- what the domain did -------------------------------------------------------------------

def refused(mesh: Mesh, source: str, data: bytes, reason: str) -> None:
    """The event at ``source`` was dead-lettered for ``reason``, as it came, and the refusal
    is in the domain's audit chain under the event's id."""
    topic = topology.deadletter(mesh.id(NCC), "domain")
    consumer = topic_reader.consumer(mesh.consumer_config())
    found: dict[str, tuple[str, bytes]] = {}
    try:
        topic_reader.assign(consumer, topic)

        def there() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    headers = dict(message.headers)
                    if headers.get("refmesh-source", b"").decode() == source:
                        found["it"] = (headers["refmesh-reason"].decode(), message.value)
            return "it" in found

        wait_until(there, DEADLINE_S, f"the dead letter of {source}")
    finally:
        consumer.close(autocommit=False)
    assert found["it"] == (reason, data)
    event_id = envelope.read_header(data)["eventId"]
    wait_until(lambda: any(
        (r["eventId"], r["decision"], r["reason"]) == (event_id, "DeadLettered", reason)
        for r in mesh.audit_records(NCC)), DEADLINE_S, f"the audit record of {event_id}")


def copies(mesh: Mesh, sample_id: str, event_id: str) -> int:
    """How many events with ``event_id`` the domain published to an agency's inbox."""
    messages = topic_reader.read_topic(mesh.consumer_config(),
                                       topology.agency_inbox(mesh.id(sample_id))) or []
    return sum(1 for m in messages if envelope.read_header(m.value)["eventId"] == event_id)


def held(mesh: Mesh, sample_id: str, rid: str) -> bool:
    try:
        mesh.client(sample_id).show(rid)
        return True
    except GatewayError as exc:
        assert exc.status == 404, exc
        return False


def state(mesh: Mesh, sample_id: str, rid: str) -> str:
    try:
        return mesh.client(sample_id).show(rid)["state"]
    except GatewayError:
        return ""


def wait_state(mesh: Mesh, rid: str, states: tuple[str, ...]) -> str:
    return wait_until(lambda: (s := state(mesh, HOTLINE, rid)) in states and s, DEADLINE_S,
                      f"referral {rid} to be {' or '.join(states)} at the hotline")


def refusal(mesh: Mesh, rid: str) -> str:
    wait_state(mesh, rid, ("refused",))
    return next(h["detail"] for h in mesh.client(HOTLINE).show(rid)["history"]
                if h["state"] == "refused")


def outbox_depth(mesh: Mesh) -> float:
    return float(next(line.split()[1] for line in metrics(mesh.client(HOTLINE)).splitlines()
                      if line.startswith("refmesh_outbox_depth ")))


def consented(mesh: Mesh, n: int, **over) -> dict:
    """Person ``n``'s consent, recorded at the hotline's gateway and held by the domain (the
    gateway's outbox drained: the domain receipted it), before the rogue sends anything."""
    consent = mesh.consent(n, HOTLINE, **over)
    wait_until(lambda: outbox_depth(mesh) == 0, DEADLINE_S, "the hotline's outbox to drain")
    return consent


def genuine_goes_through(mesh: Mesh) -> None:
    """The next genuine referral, consent first, through the hotline's gateway: delivered."""
    n = next(PERSON)
    consented(mesh, n)
    rid = mesh.client(HOTLINE).submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    wait_state(mesh, rid, ("received",))
    assert held(mesh, SHELTER, rid)


def forwarded(mesh: Mesh, member: Member, n: int, **over) -> tuple[dict, bytes, str]:
    """A referral of person ``n`` (who consented at the hotline) that the rogue hotline sends
    itself, under the right key, and the domain forwards to the shelter: (referral, bytes,
    event id)."""
    referral = mesh.referral(n, HOTLINE, SHELTER, **over)
    event_id = str(uuid.uuid4())
    data = member.seal("Referral", referral, event_id)
    member.send(data, member.key(referral["subjectId"]))
    wait_until(lambda: held(mesh, SHELTER, referral["referralId"]), DEADLINE_S,
               f"{referral['referralId']} at the shelter")
    return referral, data, event_id


# --- the attacks -----------------------------------------------------------------------------

def test_a_kafka_key_or_partition_that_does_not_match_the_subject_is_refused(mesh, member):
    """The key chooses the person's consents and forwarding log: a referral of one person under
    another person's key (or in another partition than its key gives) would be decided against
    the wrong consent and logged where a withdrawal never looks."""
    rogue = member(HOTLINE)
    n, other = next(PERSON), next(PERSON)
    consented(mesh, n)
    consented(mesh, other)
    referral = mesh.referral(n, HOTLINE, SHELTER)
    data = rogue.seal("Referral", referral)
    refused(mesh, rogue.send(data, rogue.key(mesh.referral(other, HOTLINE, SHELTER)[
        "subjectId"])), data, "key_mismatch")
    right = rogue.key(referral["subjectId"])
    wrong = (topology.partition_of(right, PARTITIONS) + 1) % PARTITIONS
    again = rogue.seal("Referral", referral)
    refused(mesh, rogue.send(again, right, partition=wrong), again, "partition_mismatch")
    fresh = samples.consent(next(PERSON), controller=rogue.agency, valid_from=now_ms() - 1000)
    consent = rogue.seal("Consent", fresh)
    refused(mesh, rogue.send(consent, b"any key"), consent, "key_mismatch")
    assert not held(mesh, SHELTER, referral["referralId"])
    genuine_goes_through(mesh)


def test_an_accepted_event_id_used_again_for_other_content_is_a_replay(mesh, member):
    rogue = member(HOTLINE)
    n = next(PERSON)
    consented(mesh, n)
    _, _, event_id = forwarded(mesh, rogue, n)
    other = mesh.referral(n, HOTLINE, PSYCH)  # another referral under the accepted id
    data = rogue.seal("Referral", other, event_id)
    refused(mesh, rogue.send(data, rogue.key(other["subjectId"])), data, "replay")
    assert not held(mesh, PSYCH, other["referralId"]) and copies(mesh, PSYCH, event_id) == 0
    assert copies(mesh, SHELTER, event_id) == 1
    genuine_goes_through(mesh)


def test_a_referral_sealed_before_a_withdrawal_is_refused_after_it_whatever_its_key(
        mesh, member):
    """The rogue hotline keeps a referral it sealed and the domain forwarded; the person
    withdraws; it replays the same bytes under another key, and under the right one."""
    rogue = member(HOTLINE)
    n, other = next(PERSON), next(PERSON)
    consent = consented(mesh, n)
    referral, data, event_id = forwarded(mesh, rogue, n)
    mesh.client(HOTLINE).withdraw_consent(consent["consentId"])
    rid = referral["referralId"]
    wait_until(lambda: not held(mesh, SHELTER, rid), DEADLINE_S, f"{rid} erased at the shelter")
    refused(mesh, rogue.send(data, rogue.key(mesh.referral(other, HOTLINE, SHELTER)[
        "subjectId"])), data, "key_mismatch")
    refused(mesh, rogue.send(data, rogue.key(referral["subjectId"])), data,
            "sealed_before_withdrawal")
    assert copies(mesh, SHELTER, event_id) == 1 and not held(mesh, SHELTER, rid)
    genuine_goes_through(mesh)


def test_a_consent_withdrawn_or_widened_by_a_non_controller_is_refused(mesh, member):
    """The psychological support service knows the hotline's consent (its id and the
    person's) and tries to withdraw it, and to widen it to the police."""
    rogue = member(PSYCH)
    n = next(PERSON)
    consent = consented(mesh, n, recipientRoles=["CentralGovernmentOrganisation"])
    held_consent = mesh.client(HOTLINE)._call("GET", f"/v1/consents/{consent['consentId']}")
    key = rogue.key(held_consent["subjectId"])
    withdrawal = rogue.seal("Consent", {**held_consent, "events": [*held_consent["events"], {
        "type": "Withdrawn", "at": now_ms(), "channel": "Phone",
        "recordedBy": rogue.agency}]})
    refused(mesh, rogue.send(withdrawal, key), withdrawal, "sender_mismatch")
    widened = rogue.seal("Consent", {**held_consent, "version": 2,
                                     "recipientRoles": ["CentralGovernmentOrganisation",
                                                        "LawEnforcement"]})
    refused(mesh, rogue.send(widened, key), widened, "sender_mismatch")
    # its "own" consent under the hotline's consent id, withdrawn: another consent (the
    # psychological support service's, which it may record), that changes nothing here
    own = rogue.seal("Consent", {**held_consent, "controller": rogue.agency,
                                 "events": [*held_consent["events"], {
                                     "type": "Withdrawn", "at": now_ms(), "channel": "Phone",
                                     "recordedBy": rogue.agency}]})
    rogue.send(own, key)
    own_id = envelope.read_header(own)["eventId"]
    wait_until(lambda: any((r["eventId"], r["decision"]) == (own_id, "ConsentRecorded")
                           for r in mesh.audit_records(NCC)), DEADLINE_S, "its own recorded")
    hotline = mesh.client(HOTLINE)
    to_shelter = hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    wait_state(mesh, to_shelter, ("received",))  # not withdrawn
    to_police = hotline.submit(mesh.referral(n, HOTLINE, POLICE, purpose="Prosecution"))[
        "referralId"]
    assert refusal(mesh, to_police) == "recipient_not_consented"  # not widened
    genuine_goes_through(mesh)


def test_an_older_consent_version_is_refused_and_a_withdrawal_cannot_be_undone(mesh, member):
    """The rogue hotline (the controller itself) sends the consent as it was before the
    person withdrew, and an older version than the one the domain holds."""
    rogue = member(HOTLINE)
    hotline = mesh.client(HOTLINE)
    n = next(PERSON)
    consent = consented(mesh, n)
    v1 = hotline._call("GET", f"/v1/consents/{consent['consentId']}")
    key = rogue.key(v1["subjectId"])
    hotline.withdraw_consent(consent["consentId"])
    rid = hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    assert refusal(mesh, rid) == "consent_withdrawn"  # the domain holds the withdrawal
    before = rogue.seal("Consent", v1)  # the copy from before the withdrawal, anew
    refused(mesh, rogue.send(before, key), before, "consent_not_newer")
    rewritten = rogue.seal("Consent", {**v1, "version": 2})  # a newer one without it
    refused(mesh, rogue.send(rewritten, key), rewritten, "consent_history_rewritten")
    rid = hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    assert refusal(mesh, rid) == "consent_withdrawn"  # still
    # an older version than the one held
    m = next(PERSON)
    first = consented(mesh, m)
    v1 = hotline._call("GET", f"/v1/consents/{first['consentId']}")
    amended = {**v1, "version": 2, "events": [*v1["events"], {
        "type": "Amended", "at": now_ms(), "channel": "InPerson", "recordedBy": rogue.agency}]}
    accepted = rogue.seal("Consent", amended)
    rogue.send(accepted, rogue.key(v1["subjectId"]))  # the controller may amend its consent
    wait_until(lambda: any(r["eventId"] == envelope.read_header(accepted)["eventId"]
                           for r in mesh.audit_records(NCC)), DEADLINE_S, "v2 recorded")
    older = rogue.seal("Consent", v1)
    refused(mesh, rogue.send(older, rogue.key(v1["subjectId"])), older,
            "consent_version_older")
    genuine_goes_through(mesh)


def test_accepted_event_ids_are_remembered_across_a_restart_of_the_agents(mesh, member):
    """The memory of accepted events is a table on the broker (encrypted for the domain):
    a restart of the domain's agents does not open a window for replays."""
    rogue = member(HOTLINE)
    n = next(PERSON)
    consented(mesh, n)
    _, _, event_id = forwarded(mesh, rogue, n)
    wait_until(lambda: any((r["eventId"], r["decision"]) == (event_id, "Forwarded")
                           for r in mesh.audit_records(NCC)), DEADLINE_S, "the decision")
    domain = mesh.id(NCC)
    assert mesh.running.agents[domain].stop() == 0
    mesh.running.start_agents(domain)
    mesh.running.wait_agents_ready(domain)
    other = mesh.referral(n, HOTLINE, PSYCH)
    data = rogue.seal("Referral", other, event_id)
    refused(mesh, rogue.send(data, rogue.key(other["subjectId"])), data, "replay")
    assert copies(mesh, PSYCH, event_id) == 0
    genuine_goes_through(mesh)
