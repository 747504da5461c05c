"""The agents' /healthz on a real broker: 200 once a worker holds its partitions of the domain
inbox; 503 naming the reason for a second worker that the group gives no partition (the inbox
has one); and 200 for that worker once the first stops and it takes over."""
from __future__ import annotations

from gateways.client import health_report
from devmesh.supervise import wait_until
from tests.integration.meshfix import start_mesh

NCC = "BH/GOV/NCCTIP"
STANDING_BY = "the group gave this worker no partition"


def test_a_worker_is_ready_once_it_holds_its_partitions_and_a_standby_says_why_not(
        kafka, tmp_path, unique):
    # one partition per topic: of two workers in the group, one holds the inbox, one stands by
    mesh = start_mesh(tmp_path, kafka, unique, [], [NCC], partitions=1)
    running, domain = mesh.running, mesh.id(NCC)
    try:
        first = health_report(running.agents_url(domain))  # start_mesh waited for this 200
        assert first == {"ok": True, "problems": [], "partitions": [0]}
        second = running.start_agents(domain, worker_id="2")
        url = running.agents_url(domain, worker_id="2")

        def standing_by():
            second.check_alive()
            report = health_report(url)
            return report if any(STANDING_BY in p for p in report["problems"]) else None

        report = wait_until(standing_by, 90, "the second worker to report that it stands by")
        assert report["ok"] is False and report["partitions"] == []
        assert report["problems"] == [
            f"no partitions assigned: {STANDING_BY} of refmesh.domain.{domain.replace('/', '.')}"
            ".in (it has more workers than the topic has partitions; this one stands by)"]
        # the first holds it again once the rebalance the second caused is over (on Apache
        # Kafka it restores its tables after the new assignment)
        wait_until(lambda: health_report(running.agents_url(domain))["ok"], 60,
                   "the first worker to hold its partition again")

        assert running.agents[domain].stop() == 0
        running.wait_agents_ready(domain, worker_id="2")  # it took the partition over
        assert health_report(url) == {"ok": True, "problems": [], "partitions": [0]}
    finally:
        running.stop()
