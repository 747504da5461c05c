"""``/healthz`` of a domain's agent worker, served by faust's own web server (``web_port``).

The edge only gathers facts: the partitions of the domain inbox faust assigned to this worker
(from its rebalance signals), whether faust is rebalancing or restoring tables, and whether
the release job's thread is alive. ``refmesh.health`` decides what they mean. faust starts
its web server before its consumer joins the group, so ``/healthz`` answers 503 ("no
partitions assigned") from the first moment it answers at all, then 200 once the worker holds
its partitions with its tables restored.
"""
from __future__ import annotations

from collections.abc import Callable

import faust

from refmesh import health, topology


class Watch:
    """What this worker holds of the domain inbox, kept up to date by faust's signals."""

    def __init__(self, app: faust.App, domain: str,
                 release_job: Callable[[], bool] | None = None,
                 release_halted: Callable[[], str | None] | None = None) -> None:
        self.app, self.inbox, self.release_job = app, topology.domain_inbox(domain), release_job
        self.release_halted = release_halted  # the release state's check (agents/releases.py)
        # the forward agent's state check (agents/state.py), when the app has one
        forwarder = getattr(app, "forwarder", None)
        self.state = None if forwarder is None else forwarder.state
        # what the signed directory's reference says (kafkaedge.loading.DirectoryRef.problems)
        self.directory = getattr(getattr(forwarder, "directory_ref", None), "problems", None)
        self.joined = False
        self.assigned: frozenset[int] = frozenset()
        app.on_partitions_revoked.connect(self._revoked)
        app.on_partitions_assigned.connect(self._assigned)

    async def _revoked(self, sender, revoked, **kwargs) -> None:  # noqa: ARG002 (faust signal)
        gone = {tp.partition for tp in revoked if tp.topic == self.inbox}
        self.assigned = self.assigned - gone

    async def _assigned(self, sender, assigned, **kwargs) -> None:  # noqa: ARG002
        # faust hands over the whole new assignment, not only what was added
        self.joined = True
        self.assigned = frozenset(tp.partition for tp in assigned if tp.topic == self.inbox)

    def facts(self) -> health.WorkerFacts:
        halted: tuple[str, ...] = ()
        if self.state is not None:
            if self.assigned and not self.app.rebalancing and not self.app.in_recovery:
                for partition in sorted(self.assigned):  # tables restored: check them now,
                    self.state.ready(partition)  # not only at each partition's next event
            halted = tuple(self.state.halted[p] for p in sorted(self.state.halted))
        released = None if self.release_halted is None else self.release_halted()
        halted += () if released is None else (released,)
        return health.WorkerFacts(
            self.inbox, self.joined, tuple(sorted(self.assigned)),
            rebalancing=bool(self.app.rebalancing), recovering=bool(self.app.in_recovery),
            release_job=None if self.release_job is None else bool(self.release_job()),
            halted=halted,
            directory=() if self.directory is None else tuple(self.directory()))


def mount(app: faust.App, watch: Watch) -> None:
    """Serve ``GET /healthz`` on the app's web server: 200 when ready, 503 naming each
    problem, in the gateway's shape (``{"ok": ..., "problems": [...]}``)."""

    @app.page("/healthz", name="healthz")
    async def healthz(view, request):  # noqa: ARG001 (faust view handler)
        status, body = health.report(watch.facts())
        return view.json(body, status=status, headers={"Cache-Control": "no-store"})
