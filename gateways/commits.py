"""Group commit for the API: submissions that arrive while the database commits the ones before
them share the next commit (one fsync for many requests under load, none of them waiting
longer than one commit).

Each request's change runs in its own savepoint of the shared transaction (``Store.batch``
nests them), so one refused change rolls back alone and its request gets its own error; a
commit that fails (disk full, read-only database) fails every request of the batch, and none of
them was accepted. A request is answered only after the commit that holds its change: nothing
is acknowledged before it is durable. The commits run in one thread of their own, so the event
loop keeps taking requests meanwhile.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class GroupCommit:
    def __init__(self, store: Callable[[], Any]) -> None:
        self._store = store  # the gateway's Store, looked up at the first commit
        self._queue: list[tuple[Callable[[], Any], asyncio.Future]] = []
        self._draining = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="group-commit")

    async def run(self, fn: Callable, *args) -> Any:
        """``fn(*args)`` inside the next group commit; its result or exception, once the
        commit holding its change is durable."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queue.append((functools.partial(fn, *args), done))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await loop.run_in_executor(self._pool, self._commit,
                                                         [fn for fn, _ in batch])
                except Exception as exc:  # noqa: BLE001 (e.g. closed: no request hangs)
                    results = [(False, exc)] * len(batch)
                for (_, done), (ok, value) in zip(batch, results):
                    if done.cancelled():
                        continue
                    if ok:
                        done.set_result(value)
                    else:
                        done.set_exception(value)
        finally:
            self._draining = False

    def _commit(self, changes: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        store = self._store()
        try:
            with store.batch():
                for change in changes:
                    try:
                        with store.batch():  # its savepoint: a failed change leaves nothing
                            value = change()
                    except Exception as exc:  # noqa: BLE001 (this request's own answer)
                        results.append((False, exc))
                    else:
                        results.append((True, value))
        except Exception as exc:  # noqa: BLE001 (the commit failed: no change was kept)
            return [(False, exc)] * len(changes)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=True)
