"""Nothing is lost when a gateway crashes or the broker restarts: end-to-end confirmation
re-sends until the recipient's gateway has stored each referral, exactly once. Both tests run on
both brokers; the restart test on a broker of its own of the session broker's kind."""
from __future__ import annotations

import signal
import uuid

import pytest
import yaml

from devmesh import brokers
from devmesh.tansu import free_port
from devmesh.supervise import wait_until
from tests.integration.meshfix import start_mesh

HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"


def _all_received(mesh, ids: list[str]) -> bool:
    inbox = [r["referral_id"] for r in mesh.client(SHELTER).inbox()]
    return set(ids) <= set(inbox)


def _exactly_once(mesh, ids: list[str]) -> None:
    inbox = [r["referral_id"] for r in mesh.client(SHELTER).inbox()]
    assert sorted(r for r in inbox if r in ids) == sorted(ids)
    sent = {r["referral_id"]: r["state"] for r in mesh.client(HOTLINE).outbox()}
    assert all(sent[i] == "received" for i in ids)


def test_a_gateway_killed_after_accepting_sends_everything_after_restart(kafka, tmp_path):
    mesh = start_mesh(tmp_path, kafka, uuid.uuid4().hex[:6], [HOTLINE, SHELTER], [NCC])
    try:
        hotline_id = mesh.id(HOTLINE)
        config = mesh.files.gateway_config(hotline_id)
        good = config.read_text()
        mesh.running.gateways[hotline_id].stop()
        # Restart the hotline's gateway with no broker to reach: it must still accept.
        config.write_text(yaml.safe_dump({**yaml.safe_load(good),
                                          "bootstrap": f"127.0.0.1:{free_port()}"}))
        mesh.running.start_gateway(hotline_id)
        for n in range(5):
            mesh.consent(n, HOTLINE)
        ids = [mesh.client(HOTLINE).submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
               for n in range(5)]
        assert {r["state"] for r in mesh.client(HOTLINE).outbox()} == {"requested"}
        assert len(mesh.client(HOTLINE).consents()) == 5
        mesh.running.gateways[hotline_id].kill()  # SIGKILL: no chance to flush anything
        config.write_text(good)
        mesh.running.start_gateway(hotline_id)
        wait_until(lambda: _all_received(mesh, ids), 90, "all five referrals at the shelter")
        wait_until(lambda: {r["state"] for r in mesh.client(HOTLINE).outbox()} == {"received"},
                   60, "the hotline to see every referral received")
        _exactly_once(mesh, ids)
    finally:
        mesh.running.stop()


@pytest.fixture
def own_broker(kafka, tmp_path):
    """A broker of the session broker's kind (and security) that the test may stop."""
    with brokers.start(kafka.kind, tmp_path / "broker", security=kafka.secured) as broker:
        yield broker


def test_a_broker_restart_loses_no_referral(own_broker, tmp_path):
    """The embedded broker keeps data in memory: after a restart it is a new, empty cluster
    that even acknowledges writes to topics it lost. Apache Kafka is killed with SIGKILL (a
    crash) and comes back on its own log. Either way receipts get every referral delivered
    exactly once."""
    mesh = start_mesh(tmp_path, own_broker, uuid.uuid4().hex[:6], [HOTLINE, SHELTER], [NCC])
    try:
        hotline = mesh.client(HOTLINE)
        for n in range(9):
            mesh.consent(n, HOTLINE)
        first = [hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
                 for n in range(3)]
        wait_until(lambda: _all_received(mesh, first), 60, "the first referrals")
        own_broker.halt(signal.SIGTERM if own_broker.kind == "embedded" else signal.SIGKILL)
        during = [hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
                  for n in range(3, 6)]
        own_broker.resume()
        after = [hotline.submit(mesh.referral(n, HOTLINE, SHELTER))["referralId"]
                 for n in range(6, 9)]
        ids = first + during + after
        wait_until(lambda: _all_received(mesh, ids), 180, "every referral after the restart")
        wait_until(lambda: {r["state"] for r in hotline.outbox()} == {"received"}, 120,
                   "the hotline to see every referral received")
        _exactly_once(mesh, ids)
    finally:
        mesh.running.stop()
