"""The forwarding agent in memory: the pure ``process`` step directly, and the faust app
through its test context with a recording producer (no broker).

The mesh: domain BH/GOV/NCCTIP with BH/NGO/HOTLINE and BH/NGO/SHELTER; origin-country domain
ET/GOV/NCC with ET/NGO/RECEPTION. One directory, signed by BH/GOV/NCCTIP, serves both domains.
"""
from __future__ import annotations

import asyncio
import types

import pytest
from aiokafka.errors import KafkaTimeoutError

from agents import forward, run
from agents.forward import DeadLetter, Forward, Ignore, create_app, process, sink_topics
from refmesh import directory, envelope, keys, samples, topology
from refmesh.errors import ConfigError
from refmesh.settings import AgentSettings

NOW = 1_790_000_000_000
BH, HOTLINE, SHELTER = "BH/GOV/NCCTIP", "BH/NGO/HOTLINE", "BH/NGO/SHELTER"
ET, RECEPTION = "ET/GOV/NCC", "ET/NGO/RECEPTION"
KEY = b"5f1e0c0d9a8b7c6d5e4f3a2b1c0d9e8f"  # a keyed hash, as gateways write them


@pytest.fixture(scope="module")
def mesh():
    k = {a: keys.generate(a, NOW - 1000) for a in (BH, HOTLINE, SHELTER, ET, RECEPTION)}
    draft = directory.empty(BH)
    for agency, role, domain in ((BH, "CentralGovernmentOrganisation", None),
                                 (HOTLINE, "NGO", BH), (SHELTER, "NGO", BH),
                                 (ET, "CentralGovernmentOrganisation", None),
                                 (RECEPTION, "NGO", ET)):
        draft = directory.add_member(draft, directory.member_entry(
            k[agency], agency, role, agency[:2], domain, NOW - 1000))
    trusted = directory.load(directory.sign(draft, k[BH], NOW - 1000),
                             directory.TrustAnchor.of(k[BH]), NOW)
    return types.SimpleNamespace(keys=k, directory=trusted)


def seal(mesh, record, sender, recipient, record_type="Referral", **kw):
    return envelope.seal(record_type, record, mesh.keys[sender], recipient, mesh.directory, NOW,
                         **kw)


def referral(sender=HOTLINE, recipient=SHELTER, **kw):
    return samples.referral(sender=sender, recipient=recipient, created_at=NOW, **kw)


# --- the pure step ---------------------------------------------------------------------------

def test_a_referral_within_the_domain_is_resealed_for_the_recipients_gateway(mesh):
    record = referral()
    data = seal(mesh, record, HOTLINE, BH, event_id="ev-1")
    outcome = process(data, mesh.keys[BH], mesh.directory, NOW + 5)
    assert isinstance(outcome, Forward)
    assert outcome.topic == topology.agency_inbox(SHELTER) == "refmesh.agency.BH.NGO.SHELTER.in"
    assert outcome.seal_for == SHELTER and outcome.event_id == "ev-1"
    opened = envelope.open(outcome.value, mesh.keys[SHELTER], mesh.directory, NOW + 10)
    assert opened.record_type == "Referral" and opened.record == record
    assert opened.header["sender"] == BH and opened.header["eventId"] == "ev-1"
    assert record["person"]["firstName"].encode() not in outcome.value  # sealed, not clear


def test_a_referral_abroad_goes_to_the_recipients_own_domain_and_on_from_there(mesh):
    record = referral(recipient=RECEPTION)
    first = process(seal(mesh, record, HOTLINE, BH), mesh.keys[BH], mesh.directory, NOW)
    assert isinstance(first, Forward)
    assert (first.topic, first.seal_for) == ("refmesh.domain.ET.GOV.NCC.in", ET)
    assert envelope.open(first.value, mesh.keys[ET], mesh.directory, NOW).record == record
    second = process(first.value, mesh.keys[ET], mesh.directory, NOW)  # ET's own agent
    assert isinstance(second, Forward)
    assert (second.topic, second.seal_for) == (topology.agency_inbox(RECEPTION), RECEPTION)
    opened = envelope.open(second.value, mesh.keys[RECEPTION], mesh.directory, NOW)
    assert opened.record == record and opened.header["sender"] == ET


def test_a_referral_for_the_coordinating_body_itself_goes_to_its_gateway(mesh):
    outcome = process(seal(mesh, referral(recipient=BH), HOTLINE, BH), mesh.keys[BH],
                      mesh.directory, NOW)
    assert isinstance(outcome, Forward) and outcome.topic == topology.agency_inbox(BH)


@pytest.mark.parametrize("spoil, reason", [
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "bad_signature"),
    (lambda d: d[:40], "malformed"),
    (lambda d: b"", "malformed"),
    (lambda d: b"not an envelope at all", "malformed"),
])
def test_an_event_that_does_not_open_is_dead_lettered_with_its_reason(mesh, spoil, reason):
    data = spoil(seal(mesh, referral(), HOTLINE, BH, event_id="ev-bad"))
    outcome = process(data, mesh.keys[BH], mesh.directory, NOW)
    assert isinstance(outcome, DeadLetter) and outcome.reason == reason


def test_dead_letters_name_the_check_that_failed(mesh):
    def reason_of(data, now=NOW):
        return process(data, mesh.keys[BH], mesh.directory, now).reason

    assert reason_of(seal(mesh, referral(), HOTLINE, SHELTER)) == "wrong_recipient"
    assert reason_of(seal(mesh, referral(), HOTLINE, BH), NOW + 31 * 86_400_000) == "too_old"
    assert reason_of(seal(mesh, referral(recipient="BH/NGO/NOBODY"), HOTLINE, BH)) == \
        "unknown_recipient"
    status = samples.status(set_by=SHELTER)
    assert reason_of(seal(mesh, status, HOTLINE, BH, "ReferralStatus")) == "unexpected_type"


def test_the_domain_does_not_vouch_for_a_referral_its_signer_did_not_send(mesh):
    # a member claiming another member's name
    forged = seal(mesh, referral(sender=SHELTER, recipient=HOTLINE), HOTLINE, BH)
    assert process(forged, mesh.keys[BH], mesh.directory, NOW).reason == "sender_mismatch"
    # a foreign agency skipping its own domain
    skipped = seal(mesh, referral(sender=RECEPTION, recipient=SHELTER), RECEPTION, BH)
    assert process(skipped, mesh.keys[BH], mesh.directory, NOW).reason == "sender_mismatch"
    # a sender the directory does not know
    stranger = seal(mesh, referral(sender="BH/NGO/NOBODY"), HOTLINE, BH)
    assert process(stranger, mesh.keys[BH], mesh.directory, NOW).reason == \
        "unknown_sender_agency"
    # but the foreign agency's own domain may hand it over (domain to domain)
    handed = seal(mesh, referral(sender=RECEPTION, recipient=SHELTER), ET, BH)
    assert isinstance(process(handed, mesh.keys[BH], mesh.directory, NOW), Forward)


def test_receipts_for_the_domain_are_ignored(mesh):
    receipt = {"deliveryKey": "referral:x", "eventId": "ev-1", "outcome": "Stored",
               "receivedBy": SHELTER, "at": NOW}
    outcome = process(seal(mesh, receipt, SHELTER, BH, "Receipt", event_id="ev-r"),
                      mesh.keys[BH], mesh.directory, NOW)
    assert outcome == Ignore("receipt_for_domain", "ev-r", "Receipt")


def test_sink_topics_are_every_hop_the_domain_can_take(mesh):
    assert sink_topics(mesh.directory, BH) == sorted([
        topology.agency_inbox(BH), topology.agency_inbox(HOTLINE),
        topology.agency_inbox(SHELTER), topology.domain_inbox(ET)])


# --- the faust app ---------------------------------------------------------------------------

class RecordingProducer:
    """Stands in for faust's producer: records each send and acknowledges it (or fails the
    first ``fail`` sends the way aiokafka does when the broker is away)."""

    def __init__(self, fail: int = 0) -> None:
        self.sent, self.fail = [], fail

    async def maybe_start(self) -> None:
        pass

    async def send(self, topic, key, value, partition, timestamp, headers, **_):
        future = asyncio.get_running_loop().create_future()
        if self.fail:
            self.fail -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value, headers or None))
            future.set_result(types.SimpleNamespace(topic=topic, partition=0, offset=0))
        return future


def settings(tmp_path, **overrides):
    values = {"keystore": str(tmp_path), "directory": "d", "anchor": "a", "domain": BH,
              "broker": "embedded", "bootstrap": "127.0.0.1:1", "data_dir": str(tmp_path),
              "partitions": 3, **overrides}
    return AgentSettings(**values)


def make_app(tmp_path, mesh, producer, **overrides):
    ensured = []

    async def ensure_topic(name):
        ensured.append(name)
        return True

    app = create_app(settings(tmp_path, **overrides), mesh.keys[BH], lambda: mesh.directory,
                     clock=lambda: NOW, ensure_topic=ensure_topic)
    app.producer = producer
    app.conf.store = "memory://"
    app.finalize()
    app.ensured = ensured
    return app


def put_all(app, messages):
    """Feed (key, value) pairs through the agent's test context; return the outcomes."""
    async def go():
        async with app.agents["forward"].test_context() as agent:
            for key, value in messages:
                await agent.put(value, key=key)
            return [agent.results[i] for i in range(len(messages))]
    return asyncio.run(go())


def test_the_app_forwards_with_the_same_key_and_dead_letters_without_plaintext(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    record = referral()
    good = seal(mesh, record, HOTLINE, BH)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    outcomes = put_all(app, [(KEY, good), (b"other-key", bad)])
    assert [type(o) for o in outcomes] == [Forward, DeadLetter]
    (topic, key, value, headers), (dl_topic, dl_key, dl_value, dl_headers) = producer.sent
    assert (topic, key, headers) == (topology.agency_inbox(SHELTER), KEY, None)
    assert envelope.open(value, mesh.keys[SHELTER], mesh.directory, NOW).record == record
    assert (dl_topic, dl_key, dl_value) == (topology.deadletter(BH, "domain"), b"other-key", bad)
    inbox = topology.domain_inbox(BH)
    assert dl_headers == [("refmesh-reason", b"bad_signature"),
                          ("refmesh-source", f"{inbox}/0@1".encode())]
    assert app.ensured == [topology.agency_inbox(SHELTER), topology.deadletter(BH, "domain")]
    assert app.forwarder.counts == {"forwarded": 1, "deadletter:bad_signature": 1}


def test_the_app_retries_a_failed_produce_until_acknowledged(tmp_path, mesh):
    producer = RecordingProducer(fail=2)
    app = make_app(tmp_path, mesh, producer)
    app.forwarder.retry_first_s = 0.001
    outcomes = put_all(app, [(KEY, seal(mesh, referral(), HOTLINE, BH))])
    assert isinstance(outcomes[0], Forward)
    assert len(producer.sent) == 1 and producer.sent[0][1] == KEY


def test_an_unexpected_error_parks_the_event_instead_of_losing_it(tmp_path, mesh, caplog):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)

    def broken_directory():
        raise RuntimeError("secret detail Amina")

    app.forwarder.directory_ref = broken_directory
    data = seal(mesh, referral(), HOTLINE, BH)
    outcomes = put_all(app, [(KEY, data)])
    assert outcomes == [DeadLetter("internal_error", None)]
    (topic, key, value, headers), = producer.sent
    assert (topic, key, value) == (topology.deadletter(BH, "domain"), KEY, data)
    assert dict(headers)["refmesh-reason"] == b"internal_error"
    assert "RuntimeError" in caplog.text and "Amina" not in caplog.text


def test_the_app_ignores_receipts_without_producing(tmp_path, mesh):
    producer = RecordingProducer()
    app = make_app(tmp_path, mesh, producer)
    receipt = {"deliveryKey": "referral:x", "eventId": "e", "outcome": "Duplicate",
               "receivedBy": SHELTER, "at": NOW}
    outcomes = put_all(app, [(KEY, seal(mesh, receipt, SHELTER, BH, "Receipt"))])
    assert isinstance(outcomes[0], Ignore) and producer.sent == []


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
    web = make_app(tmp_path, mesh, RecordingProducer(), web_port=6123, broker="apache").conf
    assert web.web_enabled is True and web.web_port == 6123 and web.web_bind == "127.0.0.1"
    assert web.producer_max_batch_size == 16384


def test_the_app_refuses_keys_of_another_agency_and_unwired_security(tmp_path, mesh):
    with pytest.raises(ConfigError, match="keystore holds"):
        create_app(settings(tmp_path), mesh.keys[HOTLINE], lambda: mesh.directory)
    with pytest.raises(ConfigError, match="not wired to faust"):
        create_app(settings(tmp_path, security={"security_protocol": "SSL"}), mesh.keys[BH],
                   lambda: mesh.directory)


def test_broker_url_takes_a_bootstrap_list():
    assert forward.broker_url("a:1, b:2") == "kafka://a:1;kafka://b:2"


# --- the runner's config ---------------------------------------------------------------------

def test_config_file_is_read_and_unknown_keys_are_refused(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(f"keystore: k\ndirectory: d\nanchor: a\ndomain: {BH}\nbroker: embedded\n")
    loaded = run.load_settings(str(good))
    assert loaded.domain == BH and loaded.broker == "embedded"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"keystore: k\ndirectory: d\nanchor: a\ndomain: {BH}\ndomian: x\n")
    with pytest.raises(ConfigError, match="domian"):
        run.load_settings(str(bad))


def test_main_reports_a_missing_config_file(tmp_path, capsys):
    assert run.main(["--config", str(tmp_path / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
