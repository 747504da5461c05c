"""Pausing traffic while the signed directory in force has expired (issue 12, item 8).

An expired directory may still trust a key that a newer edition revokes, so nothing new is sent
or received under it. Nothing is dead-lettered either: an event refused for the directory's age
would be lost, while an event left where it is waits for the next edition. So the edges pause:

- ``stop_reason(ref)``: why traffic must stop now (``DirectoryRef.stop_reason``), None while it
  may flow, and always None for a plain callable (tests hand in ``lambda: directory``);
- ``gated_poll(consumer, ref, ...)``: a kafka-python poll that fetches nothing while stopped
  (every assigned partition paused, so the consumer stays in its group and heartbeats) and puts
  back whatever a poll returned as the stop began (seek to its first offset, nothing handled);
- ``wait_in_force(ref)``: for an asyncio agent, return once traffic may flow, checking every
  ``interval_s``; the event it holds is neither handled nor committed meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("refmesh.directory")


def stop_reason(directory_ref: Callable) -> str | None:
    """Why no new traffic may flow now under ``directory_ref``'s edition, else None."""
    check = getattr(directory_ref, "stop_reason", None)
    return None if check is None else check()


def gated_poll(consumer, directory_ref: Callable, **poll_args) -> dict:
    """``consumer.poll(**poll_args)``, fetching nothing while the directory stops traffic."""
    check = getattr(directory_ref, "stop_reason", None)
    if check is None:  # a plain callable never stops traffic
        return consumer.poll(**poll_args)
    if check() is not None:
        consumer.pause(*consumer.assignment())
    elif paused := consumer.paused():
        consumer.resume(*paused)
    batches = consumer.poll(**poll_args)
    if batches and check() is not None:
        # returned by the poll that joined the group, or fetched just before the stop began:
        # read again once a newer edition is in force
        for tp, messages in batches.items():
            consumer.seek(tp, messages[0].offset)
        return {}
    return batches


async def wait_in_force(directory_ref: Callable, where: str = "",
                        interval_s: float = 1.0) -> None:
    """Return once ``directory_ref``'s edition lets traffic flow (at once when it does)."""
    if stop_reason(directory_ref) is None:
        return
    log.warning("holding the event from %s until a newer directory edition is in force",
                where or "(unknown)")
    while stop_reason(directory_ref) is not None:
        await asyncio.sleep(interval_s)
    log.info("the event from %s goes on: a directory edition is in force", where or "(unknown)")
