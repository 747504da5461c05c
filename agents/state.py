"""The agent's side of ``refmesh.statehead``: its tables' heads, and the marks it keeps off the
broker.

Every event's table writes go through ``StateGuard.apply``: it computes the partition's next
head, writes the mark (the last committed head, the event's head and the digests after each of
its writes) to the worker's marks file, then the writes and the sealed head to faust's tables
(so to their changelogs, in the event's transaction under ``exactly_once``). Once the
event's offset is committed, ``committed`` records its head as the partition's newest. When
the worker takes up a partition (the first event after an assignment, once faust restored
the tables), ``ready`` digests what it holds of that partition and asks
``refmesh.statehead.problem``; a partition whose state was rolled back is **halted**: none of
its events is handled, its offset does not move, and ``/healthz`` names it (agents/health.py)
until an operator has looked (docs/security-model.md: the domain's state on the broker).

The marks file is ``<data_dir>/<worker_id>/state-marks.json`` (mode 0600), a log of JSON lines
(``Marks``): a process killed at any point leaves every complete line before it.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from refmesh import statehead, topology
from refmesh.errors import SealError
from refmesh.keys import AgencyKeys

log = logging.getLogger("refmesh.agents.state")
HEADS = "state-heads"


class PartitionHalted(Exception):
    """The partition's state failed its check: none of its events is handled."""


class Marks:
    """A worker's marks, one per partition; only in memory when ``path`` is None.

    The file is a log: each mark is appended as one JSON line (a write of a few hundred bytes,
    no rename: the two marks of every event cost microseconds); the last complete line of a
    partition wins. At start the log is read, and rewritten whole (a new file, renamed) with
    only the newest marks, which drops a line that a killed process left half written; it is
    rewritten likewise once it grows past ``COMPACT_BYTES``."""

    COMPACT_BYTES = 1 << 22

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.marks: dict[int, statehead.Mark] = {}
        self._fd: int | None = None
        self._size = 0
        if path is None:
            return
        if path.exists():
            for line in path.read_bytes().split(b"\n"):
                try:
                    doc = json.loads(line)
                    self.marks[int(doc["p"])] = statehead.Mark.from_json(doc["m"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line a killed process left half written
        self._compact()

    def get(self, partition: int) -> statehead.Mark | None:
        return self.marks.get(partition)

    def put(self, partition: int, mark: statehead.Mark) -> None:
        self.marks[partition] = mark
        if self.path is None:
            return
        line = self._line(partition, mark)
        os.write(self._fd, line)
        self._size += len(line)
        if self._size > self.COMPACT_BYTES:
            self._compact()

    @staticmethod
    def _line(partition: int, mark: statehead.Mark) -> bytes:
        return json.dumps({"p": partition, "m": mark.to_json()},
                          separators=(",", ":")).encode() + b"\n"

    def _compact(self) -> None:
        data = b"".join(self._line(p, m) for p, m in sorted(self.marks.items()))
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)


class StateGuard:
    """Heads, marks and halted partitions of one worker. ``tables`` maps each table name of
    ``topology.TABLES`` to its faust Table (or a dict in tests)."""

    def __init__(self, keys: AgencyKeys, secret: bytes, tables: dict, marks: Marks,
                 final: Callable[[int], bool]) -> None:
        self.keys, self.secret, self.tables, self.marks = keys, secret, tables, marks
        self.final = final  # window start -> may the release job have deleted it?
        self.running: dict[int, statehead.Head] = {}
        # the head of each partition's last committed event: under exactly_once several
        # events share a transaction (agents/forward.py), and an aborted one takes the state
        # back to this head, not to the head before the last event
        self.base: dict[int, statehead.Head] = {}
        self.halted: dict[int, str] = {}
        self.written: dict[tuple[str, bytes], int] = {}  # (table, key) -> partition written in

    def reset(self) -> None:
        """A new assignment: every partition is checked again before its next event."""
        self.running.clear()
        self.base.clear()
        self.halted.clear()

    def ready(self, partition: int) -> str | None:
        """None when the partition's state may be used; else why it is halted."""
        if partition in self.running:
            return None
        if partition not in self.halted:
            self._verify(partition)
        return self.halted.get(partition)

    def _verify(self, partition: int) -> None:
        data = self.tables[HEADS].get(str(partition).encode())
        mark = self.marks.get(partition)
        found = statehead.digests(self.secret, self._entries(partition))
        try:
            head = None if data is None else statehead.open_head(self.keys, partition, data)
        except SealError:
            problem = f"partition {partition} of the domain's state: its head does not open"
        else:
            problem = statehead.problem(partition, head, found, mark, self.final)
        if problem is not None:
            self.halted[partition] = problem
            log.error("HALTED %s; no event of this partition is handled until an operator "
                      "has looked (docs/security-model.md)", problem)
            return
        seq = head.seq if head is not None else 0 if mark is None else mark.head.seq
        self.running[partition] = self.base[partition] = statehead.Head(seq, found)
        self.marks.put(partition, statehead.Mark(self.running[partition]))

    def _entries(self, partition: int):
        for name, table in self.tables.items():
            if name == HEADS:
                continue
            restored = getattr(getattr(table, "data", None), "_key_partition", {})
            for key, value in list(table.items()):
                where = self.written.get((name, key), restored.get(key))
                if where == partition and value is not None:
                    yield name, key, value

    def apply(self, partition: int, writes: list[tuple[str, bytes, bytes | None]]) -> None:
        """Carry out one event's table writes (table, key, value or None to delete), in order,
        with the partition's next head (none if there is nothing to write)."""
        if not writes:
            return
        overlay: dict[tuple[str, bytes], bytes | None] = {}
        full = []
        for name, key, value in writes:
            old = overlay[(name, key)] if (name, key) in overlay else \
                self.tables[name].get(key)
            full.append((name, key, old, value))
            overlay[(name, key)] = value
        head, steps = statehead.step(self.running[partition], full, self.secret)
        self.marks.put(partition, statehead.Mark(self.base[partition], head, steps))
        for name, key, value in writes:
            table = self.tables[name]
            if value is None:
                table.pop(key, None)
                self.written.pop((name, key), None)
            else:
                table[key] = value
                self.written[(name, key)] = partition
        self.tables[HEADS][str(partition).encode()] = statehead.seal(self.keys, partition, head)
        self.running[partition] = head

    def committed(self, partition: int) -> None:
        """The event's offset is committed: its head is the partition's newest."""
        if partition in self.running:
            self.base[partition] = self.running[partition]
            self.marks.put(partition, statehead.Mark(self.running[partition]))


def table_map(tables) -> dict:
    """``topology.TABLES`` name -> table, from an ``agents.forward.Tables``."""
    return dict(zip(topology.TABLES, tables.all()))
