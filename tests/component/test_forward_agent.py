"""The domain agent in memory: the faust app through its test context with a recording producer
(no broker). The decisions themselves are unit-tested on ``refmesh.domain.handle``
(tests/unit/test_core_domain.py); here: that the agent carries the effects out (publish with the
event's key, tables written, audit chain per partition, dead letters, retries), and its config.

The mesh: the sample mesh of tests/policy_samples.py with real keys (domain BH/GOV/NCCTIP with
the hotline, shelter, police...; origin-country domain ET/GOV/NCC with ET/NGO/RECEPTION) and the
sample policy devmesh/sample_policy.yaml.
"""
from __future__ import annotations

import asyncio
import datetime
import types

import pytest
from aiokafka.errors import KafkaTimeoutError

from agents import forward, run
from agents.forward import create_app, sink_topics
from refmesh import audit, codec, domain, envelope, minimise, replay, samples, topology
from refmesh.errors import ConfigError
from refmesh.settings import AgentSettings
from tests import policy_samples as S

NOW = S.NOW
BH, HOTLINE, SHELTER, POLICE = "BH/GOV/NCCTIP", S.HOTLINE, S.SHELTER, S.POLICE
ET, RECEPTION = "ET/GOV/NCC", S.RECEPTION
PARTITION_SECRET = b"component-partition-secret-0"  # the domain's, shared with its gateways
# The sample person's Kafka key as gateways derive it: this secret puts it in partition 0 of
# the 3 these tests use, where they put the person's events (the agent checks both).
KEY = topology.partition_key(PARTITION_SECRET, samples.referral()["subjectId"])
POLICY = S.load()


@pytest.fixture(scope="module")
def mesh():
    return S.signed_mesh(NOW)


def seal(mesh, record, sender, recipient, record_type="Referral", **kw):
    return envelope.seal(record_type, record, mesh.keys[sender], recipient, mesh.directory, NOW,
                         **kw)


def referral(sender=HOTLINE, recipient=SHELTER, **kw):
    return samples.referral(sender=sender, recipient=recipient, created_at=NOW, **kw)


def consent(**kw):
    return S.consent(**kw)  # covers samples.referral()'s subject, consent id and version


def withdrawn(**kw):
    c = consent(**kw)
    return {**c, "events": [*c["events"], {"type": "Withdrawn", "at": NOW - 1,
                                           "channel": "InPerson", "recordedBy": HOTLINE}]}


def test_sink_topics_are_every_hop_the_domain_can_take(mesh):
    inboxes = [topology.agency_inbox(a) for a, *_ in S.AGENCIES]
    assert sink_topics(mesh.directory, BH) == sorted([*inboxes, topology.domain_inbox(ET)])


# --- the faust app ---------------------------------------------------------------------------

class RecordingProducer:
    """Stands in for faust's producer: records each send and acknowledges it (or fails the
    first ``fail`` sends the way aiokafka does when the broker is away). Table writes arrive
    through ``send_soon`` (faust buffers changelog records) and are recorded apart."""

    def __init__(self, fail: int = 0) -> None:
        self.sent, self.changelog, self.fail = [], [], fail

    async def maybe_start(self) -> None:
        pass

    async def send(self, topic, key, value, partition, timestamp, headers, **_):
        future = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append(types.SimpleNamespace(topic=topic, key=key, value=value,
                                                   headers=headers or None,
                                                   partition=partition))
            future.set_result(types.SimpleNamespace(topic=topic, partition=partition or 0,
                                                    offset=0))
        return future

    def send_soon(self, fut) -> None:
        m = fut.message
        self.changelog.append((m.channel.get_topic_name(), m.key, m.value, m.partition))

    def to(self, topic: str) -> list:
        return [s for s in self.sent if s.topic == topic]


def settings(tmp_path, **overrides):
    values = {"keystore": str(tmp_path), "directory": "d", "anchor": "a", "domain": BH,
              "broker": "embedded", "bootstrap": "127.0.0.1:1", "data_dir": str(tmp_path),
              "partitions": 3, "policy": "policy.signed", **overrides}
    return AgentSettings(**values)


class Log:
    """Stands in for the broker behind the agent's offset guard (agents/offsets.py): the
    group's committed offset of every partition, and the events it holds there, by offset."""

    def __init__(self, committed: int = 0, held: dict | None = None) -> None:
        self.committed, self.held, self.reads = committed, held or {}, []

    def first_expected(self, topic, partition):
        return self.committed

    def read(self, topic, partition, start, stop):
        self.reads.append((partition, start, stop))
        return [types.SimpleNamespace(topic=topic, partition=partition, offset=offset,
                                      timestamp=0, timestamp_type=0, headers=[], key=key,
                                      value=value)
                for offset, (key, value) in sorted(self.held.items()) if start <= offset < stop]

    def close(self):
        pass


def make_app(tmp_path, mesh, producer, log=None, **overrides):
    ensured = []

    async def ensure_topic(name):
        ensured.append(name)
        return True

    app = create_app(settings(tmp_path, **overrides), mesh.keys[BH], lambda: mesh.directory,
                     POLICY, S.SECRET, clock=lambda: NOW, partition_secret=PARTITION_SECRET,
                     ensure_topic=ensure_topic,
                     reader=log or Log())
    app.producer = producer
    app.conf.store = "memory://"
    app.finalize()
    app.ensured = ensured
    return app


def put_all(app, messages):
    """Feed (key, value[, partition]) through the agent's test context; return the Effects."""
    async def go():
        async with app.agents["forward"].test_context() as agent:
            for key, value, *partition in messages:
                await agent.put(value, key=key, partition=partition[0] if partition else 0)
            return [agent.results[i] for i in range(len(messages))]
    return asyncio.run(go())


def opened(mesh, sent, agency):
    return envelope.open(sent.value, mesh.keys[agency], mesh.directory, NOW)


def test_the_app_forwards_with_the_same_key_and_dead_letters_without_plaintext(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    record = referral()
    good = seal(mesh, record, HOTLINE, BH)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    effects = put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")),
                            (KEY, good), (b"other-key", bad)])
    assert [e.deadletter for e in effects] == [None, None, "bad_signature"]
    (forwarded,) = producer.to(topology.agency_inbox(SHELTER))
    assert (forwarded.key, forwarded.headers) == (KEY, None)
    assert opened(mesh, forwarded, SHELTER).record["referralId"] == record["referralId"]
    (dead,) = producer.to(topology.deadletter(BH, "domain"))
    assert (dead.key, dead.value) == (b"other-key", bad)  # as it came: sealed, no plaintext
    inbox = topology.domain_inbox(BH)
    assert dead.headers == [("refmesh-reason", b"bad_signature"),
                            ("refmesh-source", f"{inbox}/0@2".encode())]
    assert set(app.ensured) == {topology.agency_inbox(HOTLINE), topology.agency_inbox(SHELTER),
                                topology.audit(BH), topology.deadletter(BH, "domain"),
                                topology.audit_checkpoints(BH)}
    assert len(app.ensured) == 5  # each topic checked once
    # the first audit record of the partition is covered by a signed checkpoint at once
    chain = [m.value for m in producer.to(topology.audit(BH))]
    checkpoints = [m.value for m in producer.to(topology.audit_checkpoints(BH))]
    assert checkpoints and audit.findings(
        chain, checkpoints, directory=mesh.directory, domain=BH, chain=topology.audit(BH),
        partition=0) in ([], [audit.Finding("unconfirmed", 1, "unconfirmed tail of "
                                                           f"{len(chain) - 1} records after "
                                                           "checkpoint seq 1")])
    assert app.forwarder.counts == {"ConsentRecorded": 1, "Forwarded": 1, "DeadLettered": 1,
                                    "deadletter:bad_signature": 1}


def test_a_consent_then_a_referral_of_that_person_goes_out_minimised(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    record = referral()
    effects = put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent", event_id="c1")),
                            (KEY, seal(mesh, record, HOTLINE, BH, event_id="r1"))])
    assert effects[0].consent_put is not None and effects[1].log_put is not None
    receipt, = producer.to(topology.agency_inbox(HOTLINE))
    assert opened(mesh, receipt, HOTLINE).record["eventId"] == "c1"
    (forwarded,) = producer.to(topology.agency_inbox(SHELTER))
    got = opened(mesh, forwarded, SHELTER)
    assert got.header["sender"] == BH and got.header["eventId"] == "r1"
    out = got.record
    assert out["person"]["firstName"] == record["person"]["firstName"]  # shelter-services keeps
    assert out["person"]["ageBand"] == "25-29" and out["person"]["birthdate"] is None
    for dropped in ("identityNumber", "mobilePhone", "email", "mailingStreet"):
        assert out["person"][dropped] is None
    assert out["victim"]["caseComment"] is None and out["needs"]["medicalNotes"] is None
    assert out["subjectId"] == minimise.pseudonym(S.SECRET, SHELTER, "subjectId",
                                                  record["subjectId"])
    for secret in (record["person"]["identityNumber"], record["victim"]["caseComment"],
                   record["subjectId"]):
        assert secret.encode() not in forwarded.value
    # the tables were written through their changelogs, encrypted, keyed without the person
    names = {topic.rsplit(".", 1)[-1] for topic, *_ in producer.changelog}
    # every table, the counted one with the person's cap slot for the decision
    # (refmesh.aggregate.cap: a keyed hash of the person's key, window and stage)
    assert names == set(topology.TABLES)
    for topic, key, value, partition in producer.changelog:
        assert partition == 0 and topic.startswith("refmesh.domain.BH.GOV.NCCTIP.")
        for clear in (record["subjectId"], record["consentId"], record["person"]["firstName"],
                      record["referralId"]):
            assert clear.encode() not in value and clear.encode() not in key
    tables = app.refmesh_tables
    assert set(tables.consents.keys()) == {domain.consent_key(KEY, HOTLINE, record["consentId"],
                                                              S.SECRET)}
    assert set(tables.forwarded.keys()) == {KEY}


def test_a_withdrawal_asks_every_earlier_recipient_to_erase(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    to_shelter, to_psych = referral(), referral(recipient=S.PSYCH, referral_id="r-psych")
    again = referral(referral_id="r-after")
    put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")),
                  (KEY, seal(mesh, to_shelter, HOTLINE, BH)),
                  (KEY, seal(mesh, to_psych, HOTLINE, BH)),
                  (KEY, seal(mesh, withdrawn(), HOTLINE, BH, "Consent")),
                  (KEY, seal(mesh, again, HOTLINE, BH))])
    notices = {}
    for agency, first in ((SHELTER, to_shelter), (S.PSYCH, to_psych)):
        sent = producer.to(topology.agency_inbox(agency))
        records = [opened(mesh, s, agency) for s in sent]
        assert [r.record_type for r in records] == ["Referral", "ErasureNotice"]
        assert sent[1].key == KEY
        notices[agency] = notice = records[1].record
        assert notice["kind"] == "Request" and notice["referralIds"] == [first["referralId"]]
        assert notice["requestedBy"] == BH and notice["reason"] == "ConsentWithdrawn"
        assert notice["consentId"] == minimise.pseudonym(S.SECRET, agency, "consentId",
                                                         first["consentId"])
    assert notices[SHELTER]["consentId"] != notices[S.PSYCH]["consentId"]
    # the referral after the withdrawal is refused back to the hotline, not delivered
    statuses = [opened(mesh, s, HOTLINE).record for s in producer.to(
        topology.agency_inbox(HOTLINE))]
    refusals = [s for s in statuses if "state" in s]
    assert [(s["referralId"], s["state"], s["detail"]) for s in refusals] == [
        ("r-after", "refused", "consent_withdrawn")]
    assert app.forwarder.counts["ErasureSent"] == 2 and app.forwarder.counts["Refused"] == 1


def test_the_audit_records_of_each_partition_form_a_valid_chain(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    other = topology.partition_key(PARTITION_SECRET, "subj-000003")  # in partition 1 of 3
    garbage = b"not an envelope"
    put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent"), 0),
                  (other, seal(mesh, referral(referral_id="r-none", n=3), HOTLINE, BH), 1),
                  (KEY, seal(mesh, referral(), HOTLINE, BH), 0),
                  (other, garbage, 1),
                  (KEY, seal(mesh, withdrawn(), HOTLINE, BH, "Consent"), 0),
                  (KEY, seal(mesh, referral(referral_id="r-late"), HOTLINE, BH), 0)])
    chains: dict[int, list] = {}
    for s in producer.to(topology.audit(BH)):
        assert s.key == str(s.partition).encode()
        chains.setdefault(s.partition, []).append(s.value)
    assert sorted(chains) == [0, 1]
    decisions = {p: [codec.decode(d, expect="AuditRecord")[1] for d in chain]
                 for p, chain in chains.items()}
    assert [(d["decision"], d["reason"]) for d in decisions[0]] == [
        ("ConsentRecorded", None), ("Forwarded", None), ("ConsentRecorded", None),
        ("ErasureSent", "consent_withdrawn"), ("Refused", "consent_withdrawn")]
    assert [(d["decision"], d["reason"]) for d in decisions[1]] == [
        ("Refused", "consent_missing"), ("DeadLettered", "malformed")]
    for chain in chains.values():
        assert audit.verify(chain) is None
    assert [d["seq"] for d in decisions[0]] == list(range(5))
    forwarded = decisions[0][1]
    assert (forwarded["sender"], forwarded["recipient"], forwarded["legalBasis"]) == (
        HOTLINE, SHELTER, "Consent")
    assert "person.firstName" in forwarded["fieldsForwarded"]
    assert "person.identityNumber" not in forwarded["fieldsForwarded"]
    assert b"Amina" not in b"".join(chains[0])  # field names, never values
    heads = app.refmesh_tables.heads
    assert audit.Head.from_bytes(heads[b"0"]).seq == 5
    assert audit.Head.from_bytes(heads[b"1"]).seq == 2


def test_the_app_retries_a_failed_produce_until_acknowledged(tmp_path, mesh):
    producer = RecordingProducer(fail=2)
    app = make_app(tmp_path, mesh, producer)
    app.forwarder.retry_first_s = 0.001
    effects = put_all(app, [(KEY, seal(mesh, referral(recipient=POLICE, purpose="Prosecution",
                                                      legalBasis="LegalObligation",
                                                      consentId=None, consentVersion=None),
                                       HOTLINE, BH))])
    assert effects[0].deadletter is None
    (forwarded,) = producer.to(topology.agency_inbox(POLICE))
    assert forwarded.key == KEY
    assert len(producer.to(topology.audit(BH))) == 1  # each record produced once


def test_events_faust_never_handed_over_are_read_again_and_handled_first(tmp_path, mesh,
                                                                         caplog):
    """The offset guard: committed offset 0, faust hands over offset 0, then offset 3 (it
    dropped 1 and 2, as faust 0.15 does after a restart); the agent reads 1 and 2 from the
    broker and handles them before 3. Offset 2 again afterwards is acknowledged, not
    handled twice."""
    producer = RecordingProducer()
    referrals = [referral(referral_id=f"r{n}") for n in range(4)]
    sealed = [seal(mesh, r, HOTLINE, BH) for r in referrals]
    log = Log(committed=0, held={1: (KEY, sealed[1]), 2: (KEY, sealed[2])})
    app = make_app(tmp_path, mesh, producer, log=log)
    consent_event = seal(mesh, consent(), HOTLINE, BH, "Consent")

    async def go():
        async with app.agents["forward"].test_context() as agent:
            await agent.put(consent_event, key=KEY, partition=0)  # offset 0
            agent.sent_offset = 3
            await agent.put(sealed[3], key=KEY, partition=0)
            agent.sent_offset = 2  # handed over again: handled already
            await agent.put(sealed[2], key=KEY, partition=0, wait=False)
            agent.sent_offset = 4
            await agent.put(sealed[0], key=KEY, partition=0)

    asyncio.run(go())
    assert log.reads == [(0, 1, 3)]
    got = [opened(mesh, s, SHELTER).record["referralId"]
           for s in producer.to(topology.agency_inbox(SHELTER))]
    assert got == ["r1", "r2", "r3", "r0"]
    assert app.offset_guard.expected == {(topology.domain_inbox(BH), 0): 5}
    assert "expected offset 1 but was handed 3; re-read 2 event(s) of offsets 1..2" \
        in caplog.text
    assert KEY.decode() not in caplog.text  # offsets only, never keys or payloads
    assert not [name for name in samples.FICTIONAL_GIVEN if name in caplog.text]


def test_an_unexpected_error_parks_the_event_instead_of_losing_it(tmp_path, mesh, caplog):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)

    def broken_directory():
        raise RuntimeError("secret detail Amina")

    app.forwarder.directory_ref = broken_directory
    data = seal(mesh, referral(), HOTLINE, BH)
    effects = put_all(app, [(KEY, data)])
    assert effects[0].deadletter == "internal_error" and effects[0].publish == ()
    (dead,) = producer.to(topology.deadletter(BH, "domain"))
    assert (dead.key, dead.value) == (KEY, data)
    assert dict(dead.headers)["refmesh-reason"] == b"internal_error"
    (record,) = producer.to(topology.audit(BH))
    decoded = codec.decode(record.value, expect="AuditRecord")[1]
    assert (decoded["decision"], decoded["reason"]) == ("DeadLettered", "internal_error")
    assert "RuntimeError" in caplog.text and "Amina" not in caplog.text


def test_the_app_ignores_receipts_without_producing(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    receipt = {"deliveryKey": "referral:x", "eventId": "e", "outcome": "Duplicate",
               "receivedBy": SHELTER, "at": NOW}
    effects = put_all(app, [(KEY, seal(mesh, receipt, SHELTER, BH, "Receipt", event_id="ev-r"))])
    assert effects == [domain.Effects("ev-r")]
    assert producer.sent == [] and producer.changelog == []


# --- the domain's checks, carried out by the agent (decided in refmesh.domain: unit tests) ---

def _reasons(producer) -> list[str]:
    return [dict(d.headers)["refmesh-reason"].decode()
            for d in producer.to(topology.deadletter(BH, "domain"))]


def _decisions(producer) -> list[tuple[str, str | None]]:
    return [(r["decision"], r["reason"]) for r in (
        codec.decode(s.value, expect="AuditRecord")[1] for s in producer.to(topology.audit(BH)))]


def test_the_agent_remembers_what_it_accepted_re_sends_are_answered_replays_refused(
        tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    first = seal(mesh, referral(), HOTLINE, BH, event_id="ev-1")
    resent = envelope.seal("Referral", referral(), mesh.keys[HOTLINE], BH, mesh.directory,
                           NOW + 1, event_id="ev-1")  # re-sealed by the gateway, same id
    replayed = seal(mesh, referral(recipient=S.PSYCH), HOTLINE, BH, event_id="ev-1")
    effects = put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")),
                            (KEY, first), (KEY, resent), (KEY, replayed),
                            (KEY, seal(mesh, referral(referral_id="r-next"), HOTLINE, BH))])
    assert [e.deadletter for e in effects] == [None, None, None, "replay", None]
    forwarded = [opened(mesh, s, SHELTER) for s in producer.to(topology.agency_inbox(SHELTER))]
    assert [(f.header["eventId"], f.record["referralId"]) for f in forwarded] == [
        ("ev-1", referral()["referralId"])] * 2 + [(forwarded[2].header["eventId"], "r-next")]
    assert producer.to(topology.agency_inbox(S.PSYCH)) == []
    assert _reasons(producer) == ["replay"]
    # one decision per accepted event: the re-send was not audited again
    assert _decisions(producer) == [("ConsentRecorded", None), ("Forwarded", None),
                                    ("DeadLettered", "replay"), ("Forwarded", None)]
    # the seen table went out through its changelog, encrypted, keyed without the ids
    seen = [c for c in producer.changelog if c[0] == topology.table(BH, "seen")]
    assert len({key for _, key, _, _ in seen if key.startswith(b"e|")}) == 3
    assert all(b"ev-1" not in key and b"ev-1" not in value for _, key, value, _ in seen)
    assert len([k for k in app.refmesh_tables.seen.keys() if k.startswith(b"e|")]) == 3


def test_a_record_under_another_key_or_in_another_partition_is_dead_lettered(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    good = seal(mesh, referral(), HOTLINE, BH)
    effects = put_all(app, [(KEY, seal(mesh, consent(), HOTLINE, BH, "Consent")),
                            (b"re-keyed", good, 0), (KEY, good, 1), (KEY, good, 0)])
    assert [e.deadletter for e in effects] == [None, "key_mismatch", "partition_mismatch", None]
    assert _reasons(producer) == ["key_mismatch", "partition_mismatch"]
    dead = producer.to(topology.deadletter(BH, "domain"))
    assert [(d.key, d.value) for d in dead] == [(b"re-keyed", good), (KEY, good)]  # as it came
    assert len(producer.to(topology.agency_inbox(SHELTER))) == 1  # the genuine one, once
    assert ("DeadLettered", "key_mismatch") in _decisions(producer)


def test_the_agent_forgets_accepted_events_at_the_envelopes_maximum_age(tmp_path, mesh):
    """The seen table stays bounded: an event accepted at NOW is purged (a tombstone on the
    changelog) by the first event accepted after it ran out."""
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    later = NOW + envelope.MAX_AGE_MS + 2 * replay.BUCKET_MS
    times = iter([NOW, NOW, later])
    app.forwarder.clock = lambda: next(times)
    late = envelope.seal("Referral", referral(referral_id="r-late"), mesh.keys[HOTLINE], BH,
                         mesh.directory, later)
    late_consent = envelope.seal("Consent", consent(validUntil=None), mesh.keys[HOTLINE], BH,
                                 mesh.directory, NOW, event_id="c-1")
    effects = put_all(app, [(KEY, late_consent),
                            (KEY, seal(mesh, referral(), HOTLINE, BH, event_id="ev-1")),
                            (KEY, late)])
    assert [e.deadletter for e in effects] == [None, None, None]
    first = {key for key, value in effects[1].seen_put if key.startswith(b"e|")}
    assert first and all((key, None) in effects[2].seen_put for key in first)
    seen = app.refmesh_tables.seen
    assert not any(key in seen for key in first)
    tombstones = [key for topic, key, value, _ in producer.changelog
                  if topic == topology.table(BH, "seen") and value is None]
    assert set(tombstones) >= first


def test_the_app_is_configured_for_the_broker_profile_and_its_topics(tmp_path, mesh):
    app = make_app(tmp_path, mesh, RecordingProducer(), worker_id="w2")
    conf = app.conf
    assert conf.id == "refmesh-domain-BH.GOV.NCCTIP"
    assert [str(url) for url in conf.broker] == ["kafka://127.0.0.1:1"]
    assert (conf.value_serializer, conf.key_serializer) == ("raw", "raw")
    assert conf.topic_partitions == 3 and conf.web_enabled is False
    assert conf.producer_max_batch_size == 1 and conf.broker_session_timeout == 6
    assert conf.processing_guarantee.value == "at_least_once"
    assert str(conf.datadir).endswith("w2")
    source = app.agents["forward"].channel
    assert source.get_topic_name() == topology.domain_inbox(BH)
    assert source.partitions == 3 and source.internal is False
    tables = app.refmesh_tables
    for name, table in zip(topology.TABLES, (tables.consents, tables.forwarded, tables.heads)):
        assert table.changelog_topic.get_topic_name() == topology.table(BH, name)
        assert table.partitions == 3
    web = make_app(tmp_path, mesh, RecordingProducer(), web_port=6123, broker="apache").conf
    assert web.web_enabled is True and web.web_port == 6123 and web.web_bind == "127.0.0.1"
    assert web.web_tables_enabled is False and web.web_router_enabled is False  # no table data
    assert web.producer_max_batch_size == 16384
    assert web.processing_guarantee.value == "exactly_once"  # transactions: Apache Kafka only
    # the agent commits between two events itself, never faust's timer in the middle of one
    assert conf.broker_commit_interval == web.broker_commit_interval == forward.COMMIT_TIMER_OFF_S


def test_the_app_refuses_keys_of_another_agency_and_bad_security(tmp_path, mesh):
    with pytest.raises(ConfigError, match="keystore holds"):
        create_app(settings(tmp_path), mesh.keys[HOTLINE], lambda: mesh.directory, POLICY,
                   S.SECRET)
    with pytest.raises(ConfigError, match="cannot load the TLS files"):
        create_app(settings(tmp_path, security={"security_protocol": "SSL",
                                                "ssl_cafile": str(tmp_path / "absent.pem")}),
                   mesh.keys[BH], lambda: mesh.directory, POLICY, S.SECRET)
    with pytest.raises(ConfigError, match="policy is ET/GOV/NCC's"):
        create_app(settings(tmp_path), mesh.keys[BH], lambda: mesh.directory,
                   S.load(S.SAMPLE_POLICY_ET), S.SECRET)


def _ca_file(path) -> str:
    """A self-signed CA certificate (PEM) for the TLS settings."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "refmesh test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_tls_and_sasl_settings_reach_faust_as_credentials(tmp_path, mesh):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ca = _ca_file(tmp_path / "ca.pem")
    cases = {
        "SSL": {"security_protocol": "SSL", "ssl_cafile": ca},
        "SASL_SSL": {"security_protocol": "SASL_SSL", "ssl_cafile": ca,
                     "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ncc-agents",
                     "sasl_plain_password": "synthetic-password"},
        "SASL_PLAINTEXT": {"security_protocol": "SASL_PLAINTEXT",
                           "sasl_plain_username": "ncc-agents",
                           "sasl_plain_password": "synthetic-password"},
    }
    for protocol, security in cases.items():
        app = create_app(settings(tmp_path, security=security), mesh.keys[BH],
                         lambda: mesh.directory, POLICY, S.SECRET)
        auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
        assert auth["security_protocol"] == protocol  # what aiokafka is given
        if protocol.endswith("SSL"):
            assert [c["subject"] for c in auth["ssl_context"].get_ca_certs()] == [
                ((("commonName", "refmesh test CA"),),)]
        if protocol.startswith("SASL"):
            assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
                "ncc-agents", "synthetic-password")
            assert auth["sasl_mechanism"] == security.get("sasl_mechanism", "PLAIN")
    plain = create_app(settings(tmp_path), mesh.keys[BH], lambda: mesh.directory, POLICY,
                       S.SECRET)
    assert credentials_to_aiokafka_auth(plain.conf.broker_credentials) == {
        "security_protocol": "PLAINTEXT"}
    with pytest.raises(ConfigError, match="SASL needs sasl_plain_username"):
        forward.broker_credentials({"security_protocol": "SASL_SSL", "ssl_cafile": ca})
    with pytest.raises(ConfigError, match="unknown security option"):
        forward.broker_credentials({"ssl_password": "x"})


def test_broker_url_takes_a_bootstrap_list():
    assert forward.broker_url("a:1, b:2") == "kafka://a:1;kafka://b:2"


# --- the runner's config ---------------------------------------------------------------------

def test_config_file_is_read_and_unknown_keys_are_refused(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"keystore: k\ndirectory: d\nanchor: a\ndomain: {BH}\nbroker: embedded\n"
                    "policy: p.signed\n")
    loaded = run.load_settings(str(good))
    assert loaded.domain == BH and loaded.broker == "embedded" and loaded.policy == "p.signed"
    assert loaded.pseudonym_secret_env == "REFMESH_PSEUDONYM_SECRET"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"keystore: k\ndirectory: d\nanchor: a\ndomain: {BH}\ndomian: x\n"
                   "policy: p.signed\n")
    with pytest.raises(ConfigError, match="domian"):
        run.load_settings(str(bad))
    no_policy = tmp_path / "no_policy.yaml"
    no_policy.write_text(f"keystore: k\ndirectory: d\nanchor: a\ndomain: {BH}\n")
    with pytest.raises(ConfigError, match="policy"):
        run.load_settings(str(no_policy))


def test_main_reports_a_missing_config_file(tmp_path, capsys):
    assert run.main(["--config", str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err

