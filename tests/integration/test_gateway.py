"""Two gateways and their policy domain on the real embedded broker: the closed loop, dedup,
dead letters, authentication."""
from __future__ import annotations

import uuid

import pytest

from gateways.client import GatewayClient, GatewayError
from devmesh.supervise import wait_until
from refmesh import envelope, topology
from tests.integration.meshfix import metrics, start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
IOM, RECEPTION, ET_NCC = "BH/IO/IOM", "ET/NGO/RECEPTION", "ET/GOV/NCC"


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("gw"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER, IOM, RECEPTION], [NCC, ET_NCC])
    yield m
    m.running.stop()


def state_at(client, rid: str) -> str:
    try:
        return client.show(rid)["state"]
    except GatewayError:
        return ""


def test_referral_goes_through_the_domain_and_the_whole_loop_comes_back(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    mesh.consent(1, HOTLINE)
    referral = mesh.referral(1, HOTLINE, SHELTER)
    rid = hotline.submit(referral)["referralId"]
    wait_until(lambda: state_at(hotline, rid) == "received", 60, "the received status")
    got = shelter.show(rid)
    assert got["record"]["person"]["firstName"] == referral["person"]["firstName"]
    # minimised by the domain's policy (rule shelter-services): no identity number, no phone
    assert got["record"]["person"]["identityNumber"] is None
    assert got["record"]["person"]["mobilePhone"] is None
    assert got["peer"] == mesh.id(HOTLINE)
    for state in ("accepted", "in_progress", "completed"):
        shelter.set_status(rid, state)
        wait_until(lambda: state_at(hotline, rid) == state, 60, f"{state} at the hotline")
    history = [h["state"] for h in hotline.show(rid)["history"]]
    assert history == ["requested", "received", "accepted", "in_progress", "completed"]
    with pytest.raises(GatewayError) as closed:
        shelter.set_status(rid, "accepted")
    assert closed.value.status == 409 and "completed" in str(closed.value)
    with pytest.raises(GatewayError) as revoke:
        hotline.set_status(rid, "revoked")
    assert revoke.value.status == 409


def test_rejection_needs_a_reason_and_reaches_the_sender(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    mesh.consent(2, HOTLINE)
    rid = hotline.submit(mesh.referral(2, HOTLINE, SHELTER))["referralId"]
    wait_until(lambda: state_at(shelter, rid) == "received", 60, "delivery")
    with pytest.raises(GatewayError) as no_reason:
        shelter.set_status(rid, "rejected")
    assert no_reason.value.status == 409 and "reason" in str(no_reason.value)
    shelter.set_status(rid, "rejected", "LackOfCapacity")
    wait_until(lambda: state_at(hotline, rid) == "rejected", 60, "the rejection")
    last = hotline.show(rid)["history"][-1]
    assert (last["state"], last["reason"]) == ("rejected", "LackOfCapacity")


def test_cross_border_referral_goes_domain_to_domain(mesh):
    iom, reception = mesh.client(IOM), mesh.client(RECEPTION)
    mesh.consent(3, IOM)
    referral = mesh.referral(3, IOM, RECEPTION, trmStage="ReturnAndInclusion", purpose="Return")
    rid = iom.submit(referral)["referralId"]
    wait_until(lambda: state_at(iom, rid) == "received", 90, "the received status")
    assert reception.show(rid)["record"]["trmStage"] == "ReturnAndInclusion"
    assert [r["referral_id"] for r in reception.inbox()] == [rid]


def _sealed_by_domain(mesh, referral: dict) -> bytes:
    return envelope.seal("Referral", referral, mesh.keys(NCC), mesh.id(SHELTER),
                         mesh.directory(), referral["createdAt"])


def test_a_duplicate_event_is_stored_once(mesh):
    referral = mesh.referral(4, HOTLINE, SHELTER)
    data = _sealed_by_domain(mesh, referral)
    producer = mesh.producer()
    topic = topology.agency_inbox(mesh.id(SHELTER))
    for _ in range(3):
        producer.send(topic, value=data, key=b"k").get(timeout=10)
    producer.close()
    shelter = mesh.client(SHELTER)
    wait_until(lambda: state_at(shelter, referral["referralId"]) == "received", 60, "delivery")
    receipts_for = topology.agency_inbox(mesh.id(HOTLINE))
    mesh.read_topic(receipts_for, 1)
    wait_until(lambda: 'outcome="duplicate"' in metrics(shelter) and
               'refmesh_events_received_total{outcome="duplicate",type="Referral"} 2.0'
               in metrics(shelter), 90, "two duplicates counted")
    assert [r["referral_id"] for r in shelter.inbox()].count(referral["referralId"]) == 1


def test_forged_tampered_and_misaddressed_events_are_dead_lettered(mesh):
    directory, topic = mesh.directory(), topology.agency_inbox(mesh.id(SHELTER))
    forged_referral = mesh.referral(5, HOTLINE, SHELTER)
    forged = envelope.seal("Referral", forged_referral, mesh.keys(IOM), mesh.id(SHELTER),
                           directory, forged_referral["createdAt"])  # not the shelter's domain
    tampered = bytearray(_sealed_by_domain(mesh, mesh.referral(6, HOTLINE, SHELTER)))
    tampered[-100] ^= 0x01
    wrong = mesh.referral(7, HOTLINE, HOTLINE)
    misaddressed = envelope.seal("Referral", wrong, mesh.keys(NCC), mesh.id(SHELTER),
                                 directory, wrong["createdAt"])
    garbage = b"\xc3\x01 definitely not an envelope"
    good = mesh.referral(8, HOTLINE, SHELTER)
    producer = mesh.producer()
    for data in (forged, bytes(tampered), misaddressed, garbage, _sealed_by_domain(mesh, good)):
        producer.send(topic, value=data, key=b"k").get(timeout=10)
    producer.close()
    shelter = mesh.client(SHELTER)
    wait_until(lambda: state_at(shelter, good["referralId"]) == "received", 60, "the good one")
    dead = mesh.read_topic(topology.deadletter(mesh.id(SHELTER)), 4)
    reasons = sorted(dict(m.headers)["refmesh-reason"].decode() for m in dead)
    assert reasons == ["bad_signature", "malformed", "misaddressed", "sender_mismatch"]
    stored = {r["referral_id"] for r in shelter.inbox()}
    assert not stored & {forged_referral["referralId"], wrong["referralId"]}


def test_the_api_needs_the_agency_token(mesh):
    good = mesh.client(SHELTER)
    for token in ("", "wrong", mesh.files.token(mesh.id(HOTLINE))):
        with pytest.raises(GatewayError) as refused:
            GatewayClient(good.url, token).inbox()
        assert refused.value.status == 401
    assert good.healthy()


def test_a_bad_body_names_the_field(mesh):
    hotline = mesh.client(HOTLINE)
    bad = mesh.referral(9, HOTLINE, SHELTER)
    bad["person"]["gender"] = "Unknown"
    with pytest.raises(GatewayError) as refused:
        hotline.submit(bad)
    assert refused.value.status == 400 and refused.value.field == "Referral.person.gender"
    unknown = mesh.referral(10, HOTLINE, "BH/GOV/MOI-ATU")
    unknown["recipientAgency"] = "BH/GOV/NOBODY"
    with pytest.raises(GatewayError) as nobody:
        hotline.submit(unknown)
    assert nobody.value.status == 400 and "not in directory" in str(nobody.value)


def test_case_workers_cli_sends_lists_shows_and_changes_status(mesh, tmp_path):
    import json

    from click.testing import CliRunner

    from cli import cli

    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    mesh.consent(11, HOTLINE)
    referral = mesh.referral(11, HOTLINE, SHELTER)
    del referral["recipientAgency"], referral["purpose"]
    path = tmp_path / "referral.json"
    path.write_text(json.dumps(referral))
    runner = CliRunner()
    as_hotline = {"REFMESH_GATEWAY": hotline.url, "REFMESH_API_TOKEN": hotline.token}
    as_shelter = {"REFMESH_GATEWAY": shelter.url, "REFMESH_API_TOKEN": shelter.token}
    sent = runner.invoke(cli, ["refer", "send", str(path), "--to", mesh.id(SHELTER),
                               "--purpose", "Services"], env=as_hotline)
    assert sent.exit_code == 0, sent.output
    rid = referral["referralId"]
    assert rid in sent.output
    wait_until(lambda: state_at(shelter, rid) == "received", 60, "delivery")
    inbox = runner.invoke(cli, ["refer", "inbox"], env=as_shelter)
    assert rid in inbox.output and mesh.id(HOTLINE) in inbox.output
    accepted = runner.invoke(cli, ["refer", "status", rid, "--set", "accepted"], env=as_shelter)
    assert accepted.exit_code == 0 and "accepted" in accepted.output
    shown = runner.invoke(cli, ["refer", "show", rid], env=as_shelter)
    assert json.loads(shown.output)["state"] == "accepted"

    def fails(args, env):
        result = runner.invoke(cli, args, env=env)
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: ")
        assert "Traceback" not in result.output
        return lines[0]

    assert "refused the API token" in fails(["refer", "inbox"],
                                            {**as_shelter, "REFMESH_API_TOKEN": "nope"})
    assert "no gateway answers" in fails(
        ["refer", "inbox"], {**as_shelter, "REFMESH_GATEWAY": "http://127.0.0.1:9"})
    assert "not in directory" in fails(["refer", "send", str(path), "--to", "BH/GOV/NOBODY",
                                        "--purpose", "Services"], as_hotline)
    assert "accepted referral cannot become received" in fails(
        ["refer", "status", rid, "--set", "received"], as_shelter)


def test_leak_scanner_finds_a_planted_value_in_clear(mesh):
    from gateways.scan import scan

    canary = f"CANARY-{uuid.uuid4().hex}"
    topic = topology.deadletter(mesh.id(SHELTER))
    producer = mesh.producer()
    producer.send(topic, value=f"name={canary}".encode()).get(timeout=10)
    producer.close()
    config = mesh.consumer_config("scan")
    found = scan(config, [canary, "never-planted-value"], topic_prefix=topic)
    assert [(hit[0], hit[3]) for hit in found.hits] == [(topic, canary)]
    assert found.messages >= 1


def _feed_end(client) -> str:
    """The cursor after everything in a gateway's change feed so far."""
    after = "0"
    while True:
        answer = client._call("GET", f"/v1/events?after={after}&limit=1000")
        if not answer["events"]:
            return after
        after = answer["next"]


def _entry(client, after: str, wanted, deadline_s: float = 90) -> dict:
    """Long-poll a gateway's change feed from ``after`` until an entry ``wanted`` accepts."""
    found: list[dict] = []

    def poll() -> bool:
        nonlocal after
        answer = client._call("GET", f"/v1/events?after={after}&wait=5")  # client timeout 10
        found.extend(e for e in answer["events"] if wanted(e))
        after = answer["next"]
        return bool(found)

    wait_until(poll, deadline_s, "the change feed's entry")
    return found[0]


def test_the_change_feed_shows_a_referral_to_its_recipient_and_its_status_to_its_sender(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    at_hotline, at_shelter = _feed_end(hotline), _feed_end(shelter)
    mesh.consent(21, HOTLINE)
    rid = hotline.submit(mesh.referral(21, HOTLINE, SHELTER))["referralId"]
    arrived = _entry(shelter, at_shelter, lambda e: e["referral_id"] == rid)
    assert (arrived["kind"], arrived["sender"], arrived["direction"]) == (
        "referral.received", mesh.id(HOTLINE), "in")
    # the entry names the referral; the case system reads it under its token
    assert shelter.show(rid, arrived["sender"])["state"] == "received"
    shelter.set_status(rid, "accepted")
    accepted = _entry(hotline, at_hotline, lambda e: e["referral_id"] == rid and
                      e["state"] == "accepted")
    assert (accepted["kind"], accepted["direction"], accepted["set_by"]) == (
        "status.changed", "out", mesh.id(SHELTER))
    # in the sender's feed, in order: sent, received by the shelter, accepted
    entries = hotline._call("GET", f"/v1/events?after={at_hotline}&limit=1000")["events"]
    assert [e["kind"] for e in entries if e["referral_id"] == rid] == [
        "referral.sent", "status.changed", "status.changed"]
