"""Prometheus metrics of one gateway (a registry per gateway, so tests can run several)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self, outbox_depth=lambda: 0, consumer_lag=lambda: 0, remembered=lambda: 0,
                 remember_max: int = 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sent = Counter("refmesh_events_sent", "Events published, by record type",
                            ["type"], registry=r)
        self.received = Counter("refmesh_events_received", "Events stored, by record type "
                                "and outcome (new or duplicate)", ["type", "outcome"], registry=r)
        self.rejected = Counter("refmesh_events_rejected", "Events dead-lettered, by reason",
                                ["reason"], registry=r)
        self.send_failures = Counter("refmesh_send_failures", "Publishes the broker refused or "
                                     "did not acknowledge (the entry is retried)", registry=r)
        self.api_requests = Counter("refmesh_api_requests", "API requests by route and status",
                                    ["route", "status"], registry=r)
        Gauge("refmesh_outbox_depth", "Outbox entries awaiting a receipt",
              registry=r).set_function(outbox_depth)
        Gauge("refmesh_consumer_lag", "Messages on the inbox topic not yet consumed (on the "
              "embedded broker an estimate: its end offsets are off by a batch)",
              registry=r).set_function(consumer_lag)
        Gauge("refmesh_replay_memory", "Event ids the replay memory holds (at "
              "refmesh_replay_memory_max the gateway accepts nothing until some run out)",
              registry=r).set_function(remembered)
        Gauge("refmesh_replay_memory_max", "The most event ids the replay memory holds "
              "(replay_memory_max)", registry=r).set(remember_max)
