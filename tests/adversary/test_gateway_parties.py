"""A malicious member against the gateways' party checks (THREATS.md 3, "the referral's truth";
refmesh.receive), on the real brokers.

The mesh: the hotline, the shelter and the psychological support service (the attacker of most
tests, a member with its own gateway) and their policy domain; the origin country's domain is
a foreign domain that attacks with its own keys. Each attacker writes events sealed with its
own keys to a peer's inbox, logged in as its own principal (on Apache Kafka under the mesh's
ACLs, which let a member write to its peers' inboxes and a domain to every inbox).

Each attack ends in a dead letter with its reason at the gateway it targets, the gateway holds
exactly what it held before, and the next genuine event goes through. The replay test (last: it
restarts the hotline's gateway) shows that the gateway's memory of event ids survives that.
"""
from __future__ import annotations

import uuid

import pytest

from devmesh.supervise import wait_until
from gateways.client import GatewayError
from kafkaedge.loading import now_ms
from refmesh import samples
from gateways.store import query_file
from tests.adversary.attacker import database, dead_letter_reason, holdings, settled
from tests.integration.meshfix import start_mesh

HOTLINE, SHELTER, PSYCH, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/NGO/PSYCH", "BH/GOV/NCCTIP"
IOM, ET_NCC = "BH/IO/IOM", "ET/GOV/NCC"


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("parties"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER, PSYCH], [NCC])
    yield m
    m.running.stop()


def state_at(client, rid: str, sender: str | None = None) -> str:
    try:
        return client.show(rid, sender)["state"]
    except GatewayError:
        return ""


def quiet(mesh, pending_ok: frozenset[str] = frozenset()) -> None:
    """Wait until the hotline's and the shelter's outboxes have nothing left to deliver (but
    ``pending_ok`` at the hotline): what they hold no longer moves by itself."""
    wait_until(lambda: settled(mesh, HOTLINE, pending_ok) and settled(mesh, SHELTER), 90,
               "the hotline's and the shelter's outboxes to settle")


def delivered(mesh, n: int, **over) -> str:
    """A genuine referral from the hotline, received by the shelter; its id."""
    mesh.consent(n, HOTLINE)
    rid = mesh.client(HOTLINE).submit(mesh.referral(n, HOTLINE, SHELTER, **over))["referralId"]
    wait_until(lambda: state_at(mesh.client(HOTLINE), rid) == "received", 90,
               f"referral {n} received")
    quiet(mesh)
    return rid


def status(mesh, rid: str, state: str, by: str, **over) -> dict:
    return samples.status(rid, state, mesh.id(by), now_ms(), **over)


def assert_dead(mesh, target: str, expected: dict[str, str]) -> None:
    """Each source in ``expected`` was dead-lettered by ``target`` with that reason."""
    got = {source: dead_letter_reason(mesh, target, source) for source in expected}
    assert got == expected


def accepted_by_the_shelter(mesh, rid: str) -> None:
    """The next genuine event: the shelter accepts, and the hotline sees it."""
    mesh.client(SHELTER).set_status(rid, "accepted")
    wait_until(lambda: state_at(mesh.client(HOTLINE), rid) == "accepted", 90,
               "the shelter's acceptance at the hotline")


def test_a_third_partys_status_is_dead_lettered(mesh, attackers):
    rid = delivered(mesh, 1)
    before = {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)}
    psych = attackers(PSYCH)
    at_hotline = {
        psych.send("ReferralStatus", status(mesh, rid, "accepted", PSYCH), HOTLINE):
            "not_a_party",
        psych.send("ReferralStatus", status(mesh, rid, "completed", PSYCH), HOTLINE):
            "not_a_party",
        # a status in someone else's name: the signature is the psychologist's
        psych.send("ReferralStatus", status(mesh, rid, "accepted", SHELTER), HOTLINE):
            "sender_mismatch",
    }
    at_shelter = {
        psych.send("ReferralStatus", status(mesh, rid, "revoked", PSYCH), SHELTER):
            "not_a_party",
    }
    assert_dead(mesh, HOTLINE, at_hotline)
    assert_dead(mesh, SHELTER, at_shelter)
    assert {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)} == before
    accepted_by_the_shelter(mesh, rid)


def test_a_status_by_the_wrong_role_is_dead_lettered(mesh, attackers):
    rid = delivered(mesh, 2)
    before = {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)}
    hotline, shelter = attackers(HOTLINE), attackers(SHELTER)
    # the sender accepting its own referral, the recipient revoking or refusing it
    at_shelter = {
        hotline.send("ReferralStatus", status(mesh, rid, "accepted", HOTLINE), SHELTER):
            "wrong_role",
        hotline.send("ReferralStatus", status(mesh, rid, "completed", HOTLINE), SHELTER):
            "wrong_role",
    }
    at_hotline = {
        shelter.send("ReferralStatus", status(mesh, rid, "revoked", SHELTER), HOTLINE):
            "wrong_role",
        shelter.send("ReferralStatus", status(mesh, rid, "refused", SHELTER,
                                              reason="PolicyRefused"), HOTLINE):
            "wrong_role",
        # the right party, but back to a state that nobody may send
        shelter.send("ReferralStatus", status(mesh, rid, "requested", SHELTER), HOTLINE):
            "transition_not_allowed",
    }
    assert_dead(mesh, SHELTER, at_shelter)
    assert_dead(mesh, HOTLINE, at_hotline)
    assert {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)} == before
    accepted_by_the_shelter(mesh, rid)
    assert state_at(mesh.client(SHELTER), rid) == "accepted"


def test_nothing_but_the_recipients_receipt_closes_an_outbox_entry(mesh, attackers):
    # a referral to IOM, whose gateway does not run here: it waits for IOM's receipt
    mesh.consent(3, HOTLINE)
    referral = mesh.referral(3, HOTLINE, IOM, trmStage="ReturnAndInclusion", purpose="Return")
    rid = mesh.client(HOTLINE).submit(referral)["referralId"]
    entry = f"referral:{rid}"
    quiet(mesh, frozenset({entry}))
    before = holdings(mesh, HOTLINE)
    assert (entry, mesh.id(IOM), "pending") in before["outbox"]
    receipt = {"deliveryKey": entry, "eventId": str(uuid.uuid4()), "outcome": "Stored",
               "receivedBy": mesh.id(PSYCH), "at": now_ms()}
    psych, shelter, foreign = attackers(PSYCH), attackers(SHELTER), attackers(ET_NCC)
    at_hotline = {
        psych.send("Receipt", receipt, HOTLINE): "not_the_recipient",
        shelter.send("Receipt", {**receipt, "receivedBy": mesh.id(SHELTER)}, HOTLINE):
            "not_the_recipient",
        psych.send("Receipt", {**receipt, "receivedBy": mesh.id(IOM)}, HOTLINE):
            "sender_mismatch",
        # a refusal closes an entry too, but only from the sender's own domain
        foreign.send("ReferralStatus", status(mesh, rid, "refused", ET_NCC,
                                              reason="PolicyRefused"), HOTLINE): "not_a_party",
        psych.send("ReferralStatus", status(mesh, rid, "refused", PSYCH,
                                            reason="PolicyRefused"), HOTLINE): "not_a_party",
    }
    assert_dead(mesh, HOTLINE, at_hotline)
    assert holdings(mesh, HOTLINE) == before
    # the next genuine event: IOM's own receipt closes the entry
    attackers(IOM).send("Receipt", {**receipt, "receivedBy": mesh.id(IOM)}, HOTLINE)
    wait_until(lambda: (entry, mesh.id(IOM), "confirmed") in holdings(mesh, HOTLINE)["outbox"],
               60, "IOM's receipt to close the entry")


def test_erasure_only_from_the_delivering_domain_and_confirmations_only_from_the_holder(
        mesh, attackers):
    rid = delivered(mesh, 4)
    before = {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)}
    notice = {"noticeId": str(uuid.uuid4()), "kind": "Request", "consentId": "ps-anything",
              "referralIds": [rid], "reason": "ConsentWithdrawn",
              "requestedBy": mesh.id(ET_NCC), "at": now_ms()}
    foreign, psych = attackers(ET_NCC), attackers(PSYCH)
    at_shelter = {
        foreign.send("ErasureNotice", notice, SHELTER): "not_the_delivering_domain",
        # a member is no domain: it asks nobody to erase anything
        psych.send("ErasureNotice", {**notice, "requestedBy": mesh.id(PSYCH)}, SHELTER):
            "sender_mismatch",
    }
    confirmation = {**notice, "kind": "Confirmation", "requestedBy": mesh.id(PSYCH)}
    at_hotline = {
        psych.send("ErasureNotice", confirmation, HOTLINE): "not_the_holder",
    }
    assert_dead(mesh, SHELTER, at_shelter)
    assert_dead(mesh, HOTLINE, at_hotline)
    assert {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)} == before
    assert state_at(mesh.client(SHELTER), rid) == "received"  # still there
    # the genuine event: the person withdraws; the domain that delivered asks, the shelter
    # erases and confirms to the hotline, naming the hotline's referral only
    consent_id = mesh.client(HOTLINE).show(rid)["record"]["consentId"]
    mesh.client(HOTLINE).withdraw_consent(consent_id)
    wait_until(lambda: state_at(mesh.client(SHELTER), rid) == "", 90, "the erasure")
    wait_until(lambda: any(e["kind"] == "Confirmation" for e in _erasures(mesh, HOTLINE)), 90,
               "the shelter's confirmation at the hotline")
    confirmations = [(e["requested_by"], e["referral_ids"]) for e in _erasures(mesh, HOTLINE)
                     if e["kind"] == "Confirmation"]
    assert confirmations == [(mesh.id(SHELTER), rid)]


def _erasures(mesh, sample_id: str) -> list[dict]:
    return [{"kind": kind, "requested_by": by, "referral_ids": ids}
            for _, kind, by, ids in holdings(mesh, sample_id)["erasures"]]


def test_nobody_can_squat_another_senders_referral_id(mesh, attackers):
    squatted = f"it-squat-{uuid.uuid4()}"
    # the psychologist, through its own gateway and with a consent it recorded, sends first
    # under the id that the hotline will use
    mesh.consent(5, PSYCH)
    psych = mesh.client(PSYCH)
    psych.submit(mesh.referral(5, PSYCH, SHELTER, referralId=squatted))
    wait_until(lambda: state_at(psych, squatted) == "received", 90, "the squatter's referral")
    # ... and writes one straight to the shelter, in the hotline's name
    forged = samples.referral(f"it-forged-{uuid.uuid4()}", sender=mesh.id(HOTLINE),
                              recipient=mesh.id(SHELTER), created_at=now_ms(), n=5)
    assert_dead(mesh, SHELTER, {attackers(PSYCH).send("Referral", forged, SHELTER):
                                "sender_mismatch"})
    # the hotline's genuine referral with the same id is delivered all the same
    rid = delivered(mesh, 6, referralId=squatted)
    assert rid == squatted
    shelter = mesh.client(SHELTER)
    held = sorted((r["sender"], r["referral_id"]) for r in shelter.inbox()
                  if r["referral_id"] in (squatted, forged["referralId"]))
    assert held == sorted([(mesh.id(PSYCH), squatted), (mesh.id(HOTLINE), squatted)])
    with pytest.raises(GatewayError, match="name the sender"):
        shelter.show(squatted)
    # answering one sender changes that sender's referral only
    shelter.set_status(squatted, "accepted", sender=mesh.id(HOTLINE))
    wait_until(lambda: state_at(mesh.client(HOTLINE), squatted) == "accepted", 90,
               "the acceptance at the hotline")
    assert state_at(shelter, squatted, mesh.id(PSYCH)) == "received"
    assert state_at(psych, squatted) == "received"


def test_an_event_id_used_again_for_other_content_is_dead_lettered_also_after_a_restart(
        mesh, attackers):
    rid = delivered(mesh, 7)
    accepted_by_the_shelter(mesh, rid)  # through the shelter's gateway, under an id it chose
    quiet(mesh)
    (used,) = query_file(str(database(mesh, SHELTER)),
                         "SELECT event_id FROM outbox WHERE delivery_key = ?",
                         (f"status:{rid}:accepted:{mesh.id(HOTLINE)}",))[0]
    before = holdings(mesh, HOTLINE)
    # the shelter signs more news under the id of its acceptance: each would be accepted
    # under an id of its own
    shelter = attackers(SHELTER)
    assert_dead(mesh, HOTLINE, {
        shelter.send("ReferralStatus", status(mesh, rid, "completed", SHELTER), HOTLINE,
                     event_id=used): "replay"})
    assert holdings(mesh, HOTLINE) == before
    # the hotline's gateway remembers it after a restart
    mesh.running.gateways[mesh.id(HOTLINE)].stop()
    mesh.running.start_gateway(mesh.id(HOTLINE))
    assert_dead(mesh, HOTLINE, {
        shelter.send("ReferralStatus", status(mesh, rid, "in_progress", SHELTER), HOTLINE,
                     event_id=used): "replay"})
    assert holdings(mesh, HOTLINE) == before
    assert state_at(mesh.client(HOTLINE), rid) == "accepted"
    # the next genuine event goes through
    mesh.client(SHELTER).set_status(rid, "completed")
    wait_until(lambda: state_at(mesh.client(HOTLINE), rid) == "completed", 90,
               "the shelter's completion at the hotline")
