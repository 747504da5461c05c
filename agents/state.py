"""The agent's side of ``refmesh.statehead``: its tables' heads, and the marks it keeps off the
broker.

Every event's table writes go through ``StateGuard.apply``: it computes the partition's next
head, writes the mark (the event's head and the digests after each write) to the worker's
marks file, then the writes and the sealed head to faust's tables (so to their changelogs, in
the event's transaction under ``exactly_once``). Once the event's offset is committed,
``committed`` records its head as the partition's newest. When the worker takes up a
partition (the first event after an assignment, once faust restored the tables),
``ready`` digests what it holds of that partition and asks ``refmesh.statehead.problem``; a
partition whose state was rolled back is **halted**: none of its events is handled, its offset
does not move, and ``/healthz`` names it (agents/health.py) until an operator has looked
(README, Security model).

The marks file is ``<data_dir>/<worker_id>/state-marks.json`` (mode 0600), replaced whole at
each write: a process killed at any point leaves the previous or the new file.
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
    """A worker's marks, one per partition; only in memory when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.marks: dict[int, statehead.Mark] = {}
        if path is not None and path.exists():
            doc = json.loads(path.read_text())
            self.marks = {int(p): statehead.Mark.from_json(m) for p, m in doc.items()}

    def get(self, partition: int) -> statehead.Mark | None:
        return self.marks.get(partition)

    def put(self, partition: int, mark: statehead.Mark) -> None:
        self.marks[partition] = mark
        if self.path is None:
            return
        data = json.dumps({str(p): m.to_json() for p, m in sorted(self.marks.items())})
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, self.path)


class StateGuard:
    """Heads, marks and halted partitions of one worker. ``tables`` maps each table name of
    ``topology.TABLES`` to its faust Table (or a dict in tests)."""

    def __init__(self, keys: AgencyKeys, secret: bytes, tables: dict, marks: Marks,
                 final: Callable[[int], bool]) -> None:
        self.keys, self.secret, self.tables, self.marks = keys, secret, tables, marks
        self.final = final  # window start -> may the release job have deleted it?
        self.running: dict[int, statehead.Head] = {}
        self.halted: dict[int, str] = {}
        self.written: dict[tuple[str, bytes], int] = {}  # (table, key) -> partition written in

    def reset(self) -> None:
        """A new assignment: every partition is checked again before its next event."""
        self.running.clear()
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
                      "has looked (README, Security model)", problem)
            return
        seq = head.seq if head is not None else 0 if mark is None else mark.head.seq
        self.running[partition] = statehead.Head(seq, found)
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
        self.marks.put(partition, statehead.Mark(self.running[partition], head, steps))
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
            self.marks.put(partition, statehead.Mark(self.running[partition]))


def table_map(tables) -> dict:
    """``topology.TABLES`` name -> table, from an ``agents.forward.Tables``."""
    return dict(zip(topology.TABLES, tables.all()))
