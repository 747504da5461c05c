"""Consent and minimisation end to end, through the real embedded broker: the sample mesh's six
gateways and both policy domains' agents (one mesh for the module, started once).

In file order: what each recipient role gets (canaries in the recipients' stored bytes and on
every topic), refusals, withdrawal with erasure, the withdrawal race, a restart of the domain's
agents between a withdrawal and the next referral, a tampered policy, and the audit chains
(verified after all of the above, the restart included, then a modified record detected).
"""
from __future__ import annotations

import itertools
import json
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import cli
from gateways.client import GatewayClient, GatewayError
from kafkaedge.loading import now_ms
from gateways.scan import scan
from devmesh.supervise import Proc, wait_until
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import audit, codec, signed_policy, topology
from tests import policy_samples as S
from tests.integration.meshfix import start_mesh

HOTLINE, SHELTER, POLICE, PSYCH, IOM, RECEPTION = (
    "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/MOI-ATU", "BH/NGO/PSYCH", "BH/IO/IOM",
    "ET/NGO/RECEPTION")
NCC, ET_NCC = "BH/GOV/NCCTIP", "ET/GOV/NCC"
DELIVERY_S = 60  # deadline for one hop-by-hop outcome (a few hundred ms when all is well)
PERSON = itertools.count(100)  # person numbers: each test its own people


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("consent"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER, POLICE, PSYCH, IOM, RECEPTION], [NCC, ET_NCC])
    yield m
    procs = [*m.running.gateways.values(), *m.running.agents.values()]
    for proc in procs:  # all at once: a process takes about a second to stop
        if proc.alive:
            proc.popen.send_signal(signal.SIGTERM)
    m.running.stop()


def shown(client: GatewayClient, rid: str) -> dict | None:
    """The referral at a gateway, or None when it has none (404)."""
    try:
        return client.show(rid)
    except GatewayError as exc:
        if exc.status == 404:
            return None
        raise


def state_at(client: GatewayClient, rid: str) -> str:
    got = shown(client, rid)
    return "" if got is None else got["state"]


def wait_state(client: GatewayClient, rid: str, states: tuple[str, ...]) -> str:
    def reached() -> str | None:
        state = state_at(client, rid)
        return state if state in states else None

    return wait_until(reached, DELIVERY_S, f"referral {rid} to be {' or '.join(states)}")


def refusal(client: GatewayClient, rid: str) -> str:
    """Wait until the sender sees the referral refused; the reason code from its history."""
    wait_state(client, rid, ("refused",))
    details = [h["detail"] for h in client.show(rid)["history"] if h["state"] == "refused"]
    assert details and all(d == details[0] for d in details), details
    return details[0]


def outbox_depth(client: GatewayClient) -> float:
    request = urllib.request.Request(client.url + "/metrics",
                                     headers={"Authorization": f"Bearer {client.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("refmesh_outbox_depth ")))


# --- a. each recipient role gets exactly what its rule keeps -------------------------------------

ROLE_CASES = [  # sender, recipient, purpose (the rule of devmesh/sample_policy.yaml)
    (HOTLINE, SHELTER, "Services"),  # shelter-services (CentralGovernmentOrganisation)
    (HOTLINE, POLICE, "Prosecution"),  # police-prosecution (LawEnforcement)
    (HOTLINE, PSYCH, "Services"),  # psych-support (HealthServiceOrganisation)
    (HOTLINE, IOM, "Return"),  # iom-return (IntergovernmentalOrganisation)
    (IOM, RECEPTION, "Return"),  # reception-return + bh-to-et-return, through ET/GOV/NCC
]


def test_each_recipient_role_stores_exactly_the_fields_its_rule_keeps(mesh):
    policy = S.load()
    run = uuid.uuid4().hex[:4]
    sent = []
    for i, (sender, recipient, purpose) in enumerate(ROLE_CASES):
        referral, canaries = S.canaried(mesh.id(recipient), tag=f"{run}{'abcde'[i]}",
                                        sender=mesh.id(sender), purpose=purpose)
        referral["senderAgency"] = mesh.id(sender)  # routing needs the real agency ids
        canaries = {c: f for c, f in canaries.items()
                    if f not in ("senderAgency", "recipientAgency")}
        # a broad consent (every purpose, role, category; across the border to ET) for this
        # canaried person and consent id
        mesh.consent(next(PERSON), sender, consentId=referral["consentId"],
                     subjectId=referral["subjectId"])
        rid = mesh.client(sender).submit(referral)["referralId"]
        sent.append((sender, recipient, purpose, rid, canaries))
    for sender, recipient, purpose, rid, _ in sent:
        wait_state(mesh.client(sender), rid, ("received",))
    everything = []
    for sender, recipient, purpose, rid, canaries in sent:
        everything += canaries
        member = S.MEMBERS[recipient]
        kept = S.kept_strings(policy, member["role"], purpose, "BH", member["jurisdiction"])
        record = json.dumps(mesh.client(recipient).show(rid)["record"])
        stored = mesh.database_bytes(recipient)
        for canary, name in canaries.items():
            assert (canary in record) == (name in kept), (recipient, name, "API")
            assert (canary.encode() in stored) == (name in kept), (recipient, name, "SQLite")
        # the oracle itself, on a few fields the sample policy is about
        assert "person.firstName" in kept and "person.email" not in kept
        assert ("needs.medicalNotes" in kept) == (recipient == PSYCH)
        assert ("person.identityNumber" in kept) == (recipient in (POLICE, IOM))
        assert ("victim.caseComment" in kept) == (recipient == POLICE)
    found = scan(mesh.consumer_config("scan"), everything, topic_prefix=topology.PREFIX)
    assert found.hits == [], found.hits[:5]
    assert found.messages > 0 and found.topics >= 28


# --- b. refusals -----------------------------------------------------------------------------

def test_refusals_reach_the_sender_with_their_reason_and_are_audited(mesh):
    now = now_ms()
    cases = {}  # reason -> sender, recipient, referral id

    def refer(reason, sender, recipient, n, **over):
        referral = mesh.referral(n, sender, recipient, **over)
        cases[reason] = (sender, recipient, mesh.client(sender).submit(referral)["referralId"])

    refer("consent_missing", HOTLINE, SHELTER, next(PERSON))  # no consent recorded
    n = next(PERSON)
    mesh.consent(n, HOTLINE, validUntil=now - 1)
    refer("consent_expired", HOTLINE, SHELTER, n)
    n = next(PERSON)
    mesh.consent(n, HOTLINE, purposes=["Referral"])
    refer("purpose_not_consented", HOTLINE, SHELTER, n, purpose="Services")
    n = next(PERSON)
    mesh.consent(n, HOTLINE, recipientRoles=["HealthServiceOrganisation"])
    refer("recipient_not_consented", HOTLINE, SHELTER, n)
    n = next(PERSON)
    mesh.consent(n, IOM, crossBorder=False, crossBorderCountries=[])
    refer("cross_border_not_consented", IOM, RECEPTION, n, purpose="Return")
    for reason, (sender, recipient, rid) in cases.items():
        assert refusal(mesh.client(sender), rid) == reason
        history = mesh.client(sender).show(rid)["history"]
        assert "received" not in [h["state"] for h in history]
        assert shown(mesh.client(recipient), rid) is None  # nothing stored at the recipient
        assert rid.encode() not in mesh.database_bytes(recipient)

    def audited():
        refused = {(r["reason"], r["sender"], r["recipient"]) for r in mesh.audit_records(NCC)
                   if r["decision"] == "Refused"}
        return all((reason, mesh.id(s), mesh.id(r)) in refused
                   for reason, (s, r, _) in cases.items())

    wait_until(audited, DELIVERY_S, "a Refused audit record for each reason")


# --- c. withdrawal and erasure ---------------------------------------------------------------

def test_a_withdrawal_erases_what_was_sent_and_refuses_what_follows(mesh):
    flows = []
    for sender, recipient, purpose in ((HOTLINE, SHELTER, "Services"),
                                       (IOM, RECEPTION, "Return")):  # and across the border
        n = next(PERSON)
        consent = mesh.consent(n, sender)
        referral = mesh.referral(n, sender, recipient, purpose=purpose)
        name = referral["person"]["firstName"] = f"Canary{uuid.uuid4().hex[:12]}"
        rid = mesh.client(sender).submit(referral)["referralId"]
        flows.append((sender, recipient, purpose, n, consent, rid, name))
    for sender, recipient, purpose, n, consent, rid, name in flows:
        wait_state(mesh.client(sender), rid, ("received",))
        assert name.encode() in mesh.database_bytes(recipient)
        mesh.client(sender).withdraw_consent(consent["consentId"])
    for flow in flows:
        check_erased(mesh, *flow)

    def audited():
        records = mesh.audit_records(NCC)
        return all(any(r["decision"] == decision and r[role] == mesh.id(recipient)
                       for r in records)
                   for _, recipient, *_ in flows
                   for decision, role in (("ErasureSent", "recipient"),
                                          ("ErasureConfirmed", "sender")))

    wait_until(audited, DELIVERY_S, "ErasureSent and ErasureConfirmed audit records")


def check_erased(mesh, sender, recipient, purpose, n, consent, rid, name) -> None:
    at, by = mesh.client(recipient), mesh.client(sender)
    wait_until(lambda: shown(at, rid) is None, DELIVERY_S, f"{rid} erased at {recipient}")
    wait_until(lambda: name.encode() not in mesh.database_bytes(recipient), 10,
               f"the first name gone from {recipient}'s database file")
    (request,) = [e for e in at.erasures()
                  if e["kind"] == "Request" and rid in e["referral_ids"]]
    assert request["referral_ids"] == [rid] and request["requested_by"] == mesh.id(NCC)
    assert request["consent_id"] != consent["consentId"]  # the recipient's pseudonym
    wait_until(lambda: [e for e in by.erasures() if e["kind"] == "Confirmation"
                        and e["referral_ids"] == [rid]], DELIVERY_S,
               f"the erasure confirmation from {recipient} at {sender}")
    # every event the recipient sent was receipted, the erasure confirmations included
    wait_until(lambda: outbox_depth(at) == 0, 30, f"{recipient}'s outbox to drain")
    later = mesh.referral(n, sender, recipient, purpose=purpose)
    assert refusal(by, by.submit(later)["referralId"]) == "consent_withdrawn"


# --- d. the withdrawal race ------------------------------------------------------------------

def test_a_withdrawal_wins_over_referrals_of_the_same_person_in_flight(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    n = next(PERSON)
    consent = mesh.consent(n, HOTLINE)
    name = f"Canary{uuid.uuid4().hex[:12]}"

    def submit():
        referral = mesh.referral(n, HOTLINE, SHELTER, referralId=str(uuid.uuid4()))
        referral["person"]["firstName"] = name
        return hotline.submit(referral)["referralId"]

    first = submit()
    wait_state(hotline, first, ("received",))  # the consent is at the domain
    before = [submit() for _ in range(2)]
    hotline.withdraw_consent(consent["consentId"])
    after = [submit() for _ in range(4)]
    for rid in after:
        assert refusal(hotline, rid) == "consent_withdrawn"
    for rid in before:  # decided either way: delivered before the withdrawal, or refused
        wait_state(hotline, rid, ("received", "refused"))
    wait_until(lambda: [e for e in shelter.erasures() if e["kind"] == "Request"
                        and first in e["referral_ids"]], DELIVERY_S, "the erasure request")
    (request,) = [e for e in shelter.erasures() if first in e["referral_ids"]]
    assert set(request["referral_ids"]) <= {first, *before}  # only what went before
    for rid in [first, *before, *after]:
        assert shown(shelter, rid) is None  # erased, or never delivered
    for rid in after:
        states = [h["state"] for h in hotline.show(rid)["history"]]
        assert "received" not in states, states  # the shelter never stored it
    wait_until(lambda: name.encode() not in mesh.database_bytes(SHELTER), 10,
               "the first name gone from the shelter's database file")


# --- e. a restart between the withdrawal and the next referral -------------------------------

def test_a_withdrawal_survives_a_restart_of_the_domains_agents(mesh):
    hotline = mesh.client(HOTLINE)
    n = next(PERSON)
    consent = mesh.consent(n, HOTLINE)
    rid = hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    wait_state(hotline, rid, ("received",))

    def confirmed() -> int:
        return sum(1 for r in mesh.audit_records(NCC) if r["decision"] == "ErasureConfirmed"
                   and r["sender"] == mesh.id(SHELTER))

    before = confirmed()
    hotline.withdraw_consent(consent["consentId"])
    wait_until(lambda: [e for e in hotline.erasures() if e["kind"] == "Confirmation"
                        and e["referral_ids"] == [rid]], DELIVERY_S,
               "the erasure confirmation (the domain has applied the withdrawal)")
    # Stop when the domain is idle, between the withdrawal and the next referral: its last
    # work (the shelter's confirmation) audited, nothing left to re-send to it. (A stop in the
    # middle of an event is not what this test is about: faust may then lose a table write
    # still in its producer buffer.)
    wait_until(lambda: confirmed() > before, DELIVERY_S, "the confirmation audited")
    for agency in (HOTLINE, SHELTER):
        wait_until(lambda a=agency: outbox_depth(mesh.client(a)) == 0, 30,
                   f"{agency}'s outbox to drain")
    domain = mesh.id(NCC)
    assert mesh.running.agents[domain].stop() == 0
    mesh.running.start_agents(domain)
    mesh.running.wait_agents_ready(domain)
    later = hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    assert refusal(hotline, later) == "consent_withdrawn"  # the table came back
    # and the restarted agents forward again for someone who consents
    m = next(PERSON)
    mesh.consent(m, HOTLINE)
    fresh = hotline.submit(mesh.referral(m, HOTLINE, SHELTER))["referralId"]
    wait_state(hotline, fresh, ("received",))


# --- f. the signed policy --------------------------------------------------------------------

def test_the_agents_refuse_to_start_on_a_tampered_foreign_or_unsigned_policy(mesh, tmp_path):
    domain = mesh.id(NCC)
    config = yaml.safe_load(mesh.files.agents_config(domain).read_text())
    signed = Path(config["policy"]).read_bytes()
    doc = json.loads(signed)
    tampered = bytearray(signed)
    tampered[signed.index(b"shelter-services")] ^= 0x01  # one bit of the policy text
    # the same text signed with the hotline's key, claiming to be the domain's
    foreign = json.loads(signed_policy.sign(doc["policy"].encode(), mesh.keys(HOTLINE),
                                            now_ms()))
    foreign["domain"] = domain
    variants = {
        "tampered": (bytes(tampered), "signature does not verify"),
        "foreign": (json.dumps(foreign).encode(), "signing key cannot be trusted"),
        "unsigned": (doc["policy"].encode(), "not a signed policy"),
    }
    procs = {}
    for name, (data, _) in variants.items():
        path = tmp_path / f"{name}.policy"
        path.write_bytes(data)
        conf = tmp_path / f"{name}.yaml"
        conf.write_text(yaml.safe_dump({**config, "policy": str(path), "worker_id": name,
                                        "web_port": 0,  # the running worker has its port
                                        "data_dir": str(tmp_path / "data")}))
        procs[name] = (Proc(f"agents-{name}", "agents.run", ["--config", str(conf)],
                            mesh.files.env, tmp_path).start(), path)
    try:
        for name, (proc, path) in procs.items():
            wait_until(lambda p=proc: not p.alive, 30, f"the agents with the {name} policy to "
                       "exit")
            text = proc.log_text()
            assert proc.popen.returncode == 2, text
            assert f"refmesh agents: {path}" in text, text  # the error names the policy file
            assert variants[name][1] in text, text
            assert "joined its group" not in text and "Traceback" not in text
    finally:
        for proc, _ in procs.values():
            proc.kill()
    mesh.running.agents[domain].check_alive()  # the running agents were not disturbed


# --- g. the audit chains -----------------------------------------------------------------------

def test_the_audit_chains_verify_and_a_modified_record_is_named(mesh):
    runner = CliRunner()

    def verify(domain_id: str):
        return runner.invoke(cli, ["audit", "verify", "--domain", domain_id, "--config",
                                   str(mesh.kafka.client_file())])

    for domain in (NCC, ET_NCC):
        result = verify(mesh.id(domain))
        assert result.exit_code == 0, result.output
        assert "BROKEN" not in result.output and "chain intact" in result.output, \
            result.output
    decisions = {r["decision"] for r in mesh.audit_records(NCC)}
    assert {"ConsentRecorded", "Forwarded", "Refused", "ErasureSent",
            "ErasureConfirmed"} <= decisions, decisions
    # a copy of the longest chain with one record changed, on a scratch domain's audit topic
    chain = max(mesh.audit_chains(NCC).values(), key=len)
    assert len(chain) >= 4, {p: len(c) for p, c in mesh.audit_chains(NCC).items()}
    _, record = codec.decode(chain[1], expect="AuditRecord")
    forged = codec.encode("AuditRecord", {**record, "recipient": "BH/GOV/ELSEWHERE"})
    copy = [chain[0], forged, *chain[2:]]
    broken = audit.verify(copy)
    assert (broken.index, broken.seq) == (2, 2) and "prevHash" in broken.reason
    assert audit.verify(chain[:1] + chain[2:]).reason.startswith("sequence 2 where 1")
    scratch = f"BH/GOV/SCRATCH-{uuid.uuid4().hex[:6].upper()}"
    ensure_topics(mesh.kafka.admin_config(),
                  [TopicSpec(topology.audit(scratch), 1)])
    producer = mesh.producer()
    for data in copy:
        producer.send(topology.audit(scratch), value=data, partition=0).get(timeout=10)
    producer.close()
    result = verify(scratch)
    assert result.exit_code != 0
    assert "partition 0: BROKEN at record 2 (offset 2, seq 2): prevHash does not match" \
        in result.output, result.output
