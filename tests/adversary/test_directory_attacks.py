"""The signed directory and the envelope suite (issue 12, item 8; THREATS.md: "the signature is
by the claimed sender's current key in the current signed directory (not expired, not rolled
back to an older serial, key not revoked)"), on the real brokers.

The mesh: the hotline and the shelter with their gateways, and their policy domain's agents (the
domain coordinates the mesh: it signs the directory). All of them read one directory file, as
agencies that install each edition the coordinator publishes.

- A member seals an event with X25519 alone for an agency that publishes a hybrid ML-KEM key:
  dead-lettered ``suite_downgrade`` at the gateway (and at the domain, with an audit record),
  nothing stored; the next genuine event goes through.
- An operator mistake: the directory expires. /healthz of the gateways and of the agents names
  it (503), the API refuses new referrals and consents (503), an event that arrives meanwhile
  waits unhandled; a newer edition placed on disk ends it all, without a restart, and the event
  that waited is taken.
- An operator mistake, or an attacker with the disk: an older edition is put back. The running
  processes keep the newer one and name the refused file on /healthz; after a restart the
  gateway and the agents refuse to start (one error line naming both serials), until the
  newest edition is back.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from devmesh.supervise import wait_until
from gateways.client import GatewayError, health_report
from kafkaedge.loading import load_anchor, now_ms, write_file
from refmesh import directory, envelope, samples, topology
from tests.adversary.attacker import database, dead_letter_reason, holdings, settled
from tests.integration.meshfix import Mesh, start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
DAY = 86_400_000
DEADLINE_S = 90


class Editions:
    """The coordinator (the domain) signing editions of the mesh's directory, and the file
    every process of the mesh reads."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh, self.path = mesh, mesh.files.directory
        self.coordinator = mesh.keys(NCC)
        self.anchor = load_anchor(mesh.files.anchor)
        self.highest = self.in_file().serial

    def in_file(self) -> directory.TrustedDirectory:
        return directory.verify(self.path.read_bytes(), self.anchor)

    def next(self, issued: int | None = None, valid_days: int = 90) -> bytes:
        """The next edition (the highest serial signed so far + 1)."""
        body = self.in_file().body
        self.highest += 1
        return directory.sign({**body, "serial": self.highest - 1}, self.coordinator,
                              now_ms() if issued is None else issued, valid_days)

    def place(self, data: bytes) -> int:
        """Install ``data`` as the directory file (replaced whole); its serial."""
        write_file(self.path, data, mode=0o600)
        return directory.verify(data, self.anchor).serial


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("directory-attacks"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC])
    m.editions = Editions(m)
    yield m
    m.running.stop()


def state_at(mesh: Mesh, sample_id: str, rid: str) -> str:
    try:
        return mesh.client(sample_id).show(rid)["state"]
    except GatewayError:
        return ""


def delivered(mesh: Mesh, n: int) -> str:
    """A genuine referral from the hotline, received by the shelter, outboxes settled."""
    mesh.consent(n, HOTLINE)
    rid = mesh.client(HOTLINE).submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
    wait_until(lambda: state_at(mesh, HOTLINE, rid) == "received", DEADLINE_S,
               f"referral {n} received")
    wait_until(lambda: settled(mesh, HOTLINE) and settled(mesh, SHELTER), DEADLINE_S,
               "the outboxes to settle")
    return rid


def status(mesh: Mesh, rid: str, state: str) -> dict:
    return samples.status(rid, state, mesh.id(SHELTER), now_ms())


def gateway_serial(mesh: Mesh, sample_id: str) -> int:
    path = Path(f"{database(mesh, sample_id)}.directory-serial")
    return int(path.read_text()) if path.exists() else 0


def agents_serial(mesh: Mesh) -> int:
    """The serial the domain's worker keeps; asking its /healthz makes it look at the file."""
    health_report(mesh.running.agents_url(mesh.id(NCC)))
    config = yaml.safe_load(mesh.files.agents_config(mesh.id(NCC)).read_text())
    path = Path(config["data_dir"]) / "1" / "directory-serial"
    return int(path.read_text()) if path.exists() else 0


def named(report: dict, words: str) -> bool:
    return report["ok"] is False and any(words in p for p in report["problems"])


def error_lines(proc) -> list[str]:
    return [line for line in proc.log_text().splitlines()
            if line.startswith(("error:", "refmesh agents:"))]


def test_an_x25519_envelope_for_a_hybrid_member_is_dead_lettered(mesh, attackers):
    rid = delivered(mesh, 1)
    before = {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)}
    # the shelter, a party of the referral, answers with the X25519 suite alone: the hotline
    # publishes a hybrid key, so the envelope is a downgrade whoever signs it
    shelter = attackers(SHELTER)
    source = shelter.send("ReferralStatus", status(mesh, rid, "accepted"), HOTLINE,
                          suite=envelope.CLASSIC)
    assert dead_letter_reason(mesh, HOTLINE, source) == "suite_downgrade"
    # the hotline, with a referral for its domain sealed the same way
    at_domain = attackers(HOTLINE).send("Referral", mesh.referral(2, HOTLINE, SHELTER), NCC,
                                        suite=envelope.CLASSIC,
                                        topic=topology.domain_inbox(mesh.id(NCC)))
    assert dead_letter_reason(mesh, NCC, at_domain, kind="domain") == "suite_downgrade"
    wait_until(lambda: any((r["decision"], r["reason"]) == ("DeadLettered", "suite_downgrade")
                           for r in mesh.audit_records(NCC)), DEADLINE_S,
               "the domain's audit record of the downgrade")
    assert {a: holdings(mesh, a) for a in (HOTLINE, SHELTER)} == before
    # the next genuine event, with the hybrid suite, through the shelter's gateway
    mesh.client(SHELTER).set_status(rid, "accepted")
    wait_until(lambda: state_at(mesh, HOTLINE, rid) == "accepted", DEADLINE_S,
               "the shelter's acceptance at the hotline")


def test_an_expired_directory_stops_traffic_until_a_newer_edition_is_placed(mesh, attackers):
    rid = delivered(mesh, 3)
    editions = mesh.editions
    expired = editions.place(editions.next(issued=now_ms() - 2 * DAY, valid_days=1))
    words = f"signed directory serial {expired} expired"
    for agency in (HOTLINE, SHELTER):
        wait_until(lambda: named(mesh.client(agency).health(), words), DEADLINE_S,
                   f"{agency}'s /healthz to name the expired directory")
    # an event that arrives meanwhile (the shelter's genuine acceptance, written past its
    # paused gateway) waits: neither taken nor dead-lettered (checked below, once the checks
    # in between gave an inbox that did not pause the time to take it)
    source = attackers(SHELTER).send("ReferralStatus", status(mesh, rid, "accepted"), HOTLINE)
    agents = mesh.running.agents_url(mesh.id(NCC))
    wait_until(lambda: named(health_report(agents), words), DEADLINE_S,
               "the agents' /healthz to name the expired directory")
    (problem,) = [p for p in mesh.client(HOTLINE).health()["problems"] if words in p]
    assert "refmesh directory sign" in problem and str(editions.path) in problem
    # new referrals and consents are refused, and nothing is kept of them
    outbox = holdings(mesh, HOTLINE)["outbox"]
    with pytest.raises(GatewayError) as refused:
        mesh.client(HOTLINE).submit(mesh.referral(4, HOTLINE, SHELTER))
    assert refused.value.status == 503 and words in str(refused.value)
    with pytest.raises(GatewayError) as refused:
        mesh.consent(4, HOTLINE)
    assert refused.value.status == 503 and "new referrals and consents are refused" in str(
        refused.value)
    assert holdings(mesh, HOTLINE)["outbox"] == outbox
    assert state_at(mesh, HOTLINE, rid) == "received"
    # a newer edition on disk: no restart, everything goes on
    fresh = editions.place(editions.next())
    for agency in (HOTLINE, SHELTER):
        mesh.running.wait_healthy(mesh.id(agency), timeout=DEADLINE_S)
    mesh.running.wait_agents_ready(mesh.id(NCC), timeout=DEADLINE_S)
    wait_until(lambda: state_at(mesh, HOTLINE, rid) == "accepted", DEADLINE_S,
               f"the acceptance that waited ({source}) at the hotline")
    assert gateway_serial(mesh, HOTLINE) == fresh
    delivered(mesh, 5)


def test_an_older_edition_put_back_is_refused_running_and_after_a_restart(mesh):
    editions = mesh.editions
    older = editions.path.read_bytes()
    old = directory.verify(older, editions.anchor).serial
    newer = editions.next()
    new = editions.place(newer)
    wait_until(lambda: gateway_serial(mesh, HOTLINE) == new and
               gateway_serial(mesh, SHELTER) == new and agents_serial(mesh) == new,
               DEADLINE_S, f"every process to keep serial {new}")
    # put back while they run: refused, the newer edition stays in force
    editions.place(older)
    words = f"directory serial {old} is older than serial {new} already seen"
    wait_until(lambda: named(mesh.client(HOTLINE).health(), words), DEADLINE_S,
               "the hotline's /healthz to name the refused file")
    wait_until(lambda: named(health_report(mesh.running.agents_url(mesh.id(NCC))), words),
               DEADLINE_S, "the agents' /healthz to name the refused file")
    delivered(mesh, 6)  # traffic goes on under the edition in force
    # ... and after a restart on the old file, neither the gateway nor the agents start
    hotline = mesh.running.gateways[mesh.id(HOTLINE)]
    hotline.stop()
    hotline.start()
    wait_until(lambda: not hotline.alive, DEADLINE_S, "the hotline's gateway to refuse")
    assert hotline.popen.returncode == 2
    (line,) = error_lines(hotline)
    assert line.startswith(f"error: directory file {editions.path}: {words}"), line
    agents = mesh.running.agents[mesh.id(NCC)]
    agents.stop()
    agents.start()
    wait_until(lambda: not agents.alive, DEADLINE_S, "the domain's agents to refuse")
    assert agents.popen.returncode == 2
    (line,) = error_lines(agents)
    assert line.startswith("refmesh agents: directory file ") and words in line, line
    # the newest edition back: both start, and the next genuine referral goes through
    editions.place(newer)
    mesh.running.start_agents(mesh.id(NCC))
    mesh.running.start_gateway(mesh.id(HOTLINE))
    mesh.running.wait_agents_ready(mesh.id(NCC), timeout=DEADLINE_S)
    mesh.running.wait_healthy(mesh.id(SHELTER), timeout=DEADLINE_S)
    delivered(mesh, 7)
