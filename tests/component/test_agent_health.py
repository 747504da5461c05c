"""The agent worker's /healthz (agents/health.py) on a faust app in memory: the facts follow
faust's rebalance signals and flags, and the page answers in the gateway's shape."""
from __future__ import annotations

import asyncio
import json
import socket

import faust
import pytest
from faust.types import TP

from agents import health, run
from refmesh import topology
from refmesh.errors import ConfigError

DOMAIN = "BH/GOV/NCCTIP"
INBOX = topology.domain_inbox(DOMAIN)


def make(tmp_path, release_job=None):
    app = faust.App("health-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    web_enabled=True, web_port=6066, web_bind="127.0.0.1")
    watch = health.Watch(app, DOMAIN, release_job)
    health.mount(app, watch)
    return app, watch


def answer(app) -> tuple[int, dict]:
    response = asyncio.run(app.web.views["/healthz"].get(None))
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, json.loads(response.body)


def test_the_page_follows_the_worker_from_start_to_ready_and_through_a_rebalance(tmp_path):
    app, watch = make(tmp_path)
    status, body = answer(app)
    assert status == 503 and body["problems"] == [
        "no partitions assigned: the worker has not joined its consumer group yet"]
    app.rebalancing = True  # faust: partitions revoked, the new assignment being restored
    asyncio.run(app.on_partitions_assigned.send(
        {TP(INBOX, 0), TP(INBOX, 2), TP(topology.table(DOMAIN, "consents"), 1)}))
    assert watch.facts().assigned == (0, 2)  # only the inbox's partitions count
    status, body = answer(app)
    assert status == 503 and body["problems"][0].startswith("tables recovering")
    app.rebalancing = False
    assert answer(app) == (200, {"ok": True, "problems": [], "partitions": [0, 2]})
    app.rebalancing = True
    asyncio.run(app.on_partitions_revoked.send({TP(INBOX, 0), TP(INBOX, 2)}))
    status, body = answer(app)
    assert status == 503 and body["problems"] == [
        f"no partitions assigned: the consumer group is rebalancing {INBOX}"]


def test_a_stopped_release_job_is_named(tmp_path):
    alive = [True]
    app, _ = make(tmp_path, release_job=lambda: alive[0])
    asyncio.run(app.on_partitions_assigned.send({TP(INBOX, 1)}))
    assert answer(app)[0] == 200
    alive[0] = False
    status, body = answer(app)
    assert status == 503 and body["problems"][0].startswith("release job stopped")


def test_a_web_port_in_use_stops_the_start_with_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port} for /healthz "
                                              r"\(Address already in use\); choose another "
                                              "web_port"):
            run.check_web_port(port)
    run.check_web_port(port)  # free again
