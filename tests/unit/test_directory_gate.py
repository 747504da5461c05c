"""Issue 12, item 8 at the edges: the directory in force (kafkaedge.loading.DirectoryRef) keeps the
highest serial seen and refuses an older edition, at start and at reload; an expired edition
stops new traffic (kafkaedge.directory_gate) with a /healthz reason until a newer edition is
placed, without a restart. Files in tmp_path, keys in memory, an injected clock; no broker."""
from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from kafkaedge import directory_gate
from kafkaedge.loading import DirectoryRef, serial_file_of, write_file
from refmesh import directory, keys
from refmesh.errors import ConfigError, DirectoryError
from refmesh.settings import AgentSettings, GatewaySettings

T0 = 1_790_000_000_000
DAY = 86_400_000
COORD, HOTLINE = "BH/GOV/NCCT", "BH/NGO/HOTLINE"


class Coordinator:
    """Signs editions of a one-member directory with any serial, issue time and validity."""

    def __init__(self) -> None:
        self.keys = keys.generate(COORD, T0)
        self.anchor = directory.TrustAnchor.of(self.keys)
        draft = directory.empty(COORD)
        for agency in (self.keys, keys.generate(HOTLINE, T0)):
            draft = directory.add_member(draft, directory.member_entry(
                agency, agency.agency_id, "NGO", "BH", None, T0))
        self.draft = draft

    def edition(self, serial: int, issued: int = T0, valid_days: int = 90) -> bytes:
        return directory.sign({**self.draft, "serial": serial - 1}, self.keys, issued,
                              valid_days)


@pytest.fixture(scope="module")
def coord() -> Coordinator:
    return Coordinator()


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def place(path: Path, data: bytes) -> None:
    """Install an edition as an operator would: the file replaced whole."""
    write_file(path, data, mode=0o644)


def ref(tmp_path: Path, coord: Coordinator, clock=None) -> DirectoryRef:
    return DirectoryRef(tmp_path / "directory.bin", coord.anchor,
                        serial_file=tmp_path / "state" / "gw.db.directory-serial",
                        clock=clock or Clock(T0 + 1), recheck_s=0)


def test_the_highest_serial_is_kept_beside_the_state_mode_0600(tmp_path, coord):
    place(tmp_path / "directory.bin", coord.edition(3))
    trusted = ref(tmp_path, coord)
    kept = tmp_path / "state" / "gw.db.directory-serial"
    assert trusted().serial == 3 and kept.read_text() == "3\n"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    place(tmp_path / "directory.bin", coord.edition(4))
    assert trusted().serial == 4 and kept.read_text() == "4\n"
    assert trusted.problems() == []


def test_an_older_edition_is_refused_at_start_naming_both_serials(tmp_path, coord):
    place(tmp_path / "directory.bin", coord.edition(5))
    ref(tmp_path, coord)
    place(tmp_path / "directory.bin", coord.edition(4))  # an old backup put back
    with pytest.raises(DirectoryError) as refused:
        ref(tmp_path, coord)
    assert refused.value.reason == "stale"
    message = str(refused.value)
    assert "directory serial 4 is older than serial 5 already seen" in message
    assert "install the newest edition" in message and "gw.db.directory-serial" in message
    assert (tmp_path / "state" / "gw.db.directory-serial").read_text() == "5\n"


def test_at_reload_an_older_or_forged_file_is_refused_and_the_edition_in_force_stays(
        tmp_path, coord):
    path = tmp_path / "directory.bin"
    place(path, coord.edition(5))
    trusted = ref(tmp_path, coord)
    place(path, coord.edition(4))
    assert trusted().serial == 5
    (problem,) = trusted.problems()
    assert "serial 4 is older than serial 5" in problem and "serial 5 stays in force" in problem
    assert trusted.stop_reason() is None  # the edition in force is fine: traffic goes on
    other = Coordinator()  # someone else's signature
    place(path, other.edition(9))
    assert trusted().serial == 5
    (problem,) = trusted.problems()
    assert "refused" in problem and "does not verify against the trust anchor" in problem
    place(path, coord.edition(6))
    assert trusted().serial == 6 and trusted.problems() == []
    assert (tmp_path / "state" / "gw.db.directory-serial").read_text() == "6\n"


def test_an_expired_edition_stops_traffic_until_a_newer_one_is_placed(tmp_path, coord):
    path = tmp_path / "directory.bin"
    clock = Clock(T0 + 1)
    place(path, coord.edition(2, valid_days=1))
    trusted = ref(tmp_path, coord, clock)
    assert trusted.stop_reason() is None
    clock.now = T0 + DAY  # the edition's last millisecond has passed
    reason = trusted.stop_reason()
    assert reason.startswith("signed directory serial 2 expired at 2026-09-22T")
    assert "refmesh directory sign" in reason and str(path) in reason
    assert trusted.problems() == [reason]
    assert trusted().serial == 2  # still the edition in force, for what needs no traffic
    place(path, coord.edition(3, issued=T0 + DAY))
    assert trusted.stop_reason() is None and trusted().serial == 3


def test_an_expired_edition_at_start_is_no_crash(tmp_path, coord):
    place(tmp_path / "directory.bin", coord.edition(2, valid_days=1))
    trusted = ref(tmp_path, coord, Clock(T0 + 2 * DAY))
    assert "expired" in trusted.stop_reason()


def test_a_newer_edition_wins_even_when_it_has_expired(tmp_path, coord):
    """The coordinator's newest word may revoke a key the older edition trusts: it is taken,
    and being expired, it stops traffic until the next one."""
    path = tmp_path / "directory.bin"
    clock = Clock(T0 + 2 * DAY)
    place(path, coord.edition(2, issued=T0 + DAY))
    trusted = ref(tmp_path, coord, clock)
    place(path, coord.edition(3, issued=T0, valid_days=1))
    assert trusted().serial == 3 and "serial 3 expired" in trusted.stop_reason()


def test_a_serial_file_that_holds_no_number_is_a_clear_error(tmp_path, coord):
    place(tmp_path / "directory.bin", coord.edition(1))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "gw.db.directory-serial").write_text("five")
    with pytest.raises(ConfigError, match="should hold the highest directory serial seen"):
        ref(tmp_path, coord)


def test_where_the_serial_is_kept():
    files = {"keystore": "keys", "directory": "directory.bin", "anchor": "anchor.json"}
    gateway = GatewaySettings(**files, agency=HOTLINE, database="/var/lib/refmesh/hotline.db")
    assert serial_file_of(gateway) == Path("/var/lib/refmesh/hotline.db.directory-serial")
    agents = AgentSettings(**files, domain=COORD, policy="policy.signed",
                           data_dir="/var/lib/agents", worker_id="2")
    assert serial_file_of(agents) == Path("/var/lib/agents/2/directory-serial")


# --- pausing: kafkaedge.directory_gate ---------------------------------------------------------

class Switch:
    """A directory reference whose stop reason a test sets."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.checks = 0

    def __call__(self):
        raise AssertionError("not needed to decide whether to pause")

    def stop_reason(self) -> str | None:
        self.checks += 1
        return self.reason


class Message:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FakeConsumer:
    """Enough of kafka-python's KafkaConsumer: pause/resume/seek and a scripted poll."""

    def __init__(self, switch: Switch | None = None, stop_during_poll: bool = False) -> None:
        self.held = {("inbox", 0), ("inbox", 1)}
        self.paused_set: set = set()
        self.seeks: list = []
        self.switch, self.stop_during_poll = switch, stop_during_poll

    def assignment(self):
        return set(self.held)

    def paused(self):
        return set(self.paused_set)

    def pause(self, *tps):
        self.paused_set |= set(tps)

    def resume(self, *tps):
        self.paused_set -= set(tps)

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def poll(self, timeout_ms, max_records):
        if self.stop_during_poll:
            self.switch.reason = "expired"
        return {tp: [Message(7), Message(8)] for tp in sorted(self.held - self.paused_set)}


def test_gated_poll_fetches_nothing_while_the_directory_stops_traffic():
    switch, consumer = Switch(), FakeConsumer()
    assert len(directory_gate.gated_poll(consumer, switch, timeout_ms=1, max_records=9)) == 2
    switch.reason = "expired"
    assert directory_gate.gated_poll(consumer, switch, timeout_ms=1, max_records=9) == {}
    assert consumer.paused_set == consumer.held  # still polled: the group membership goes on
    switch.reason = None
    assert len(directory_gate.gated_poll(consumer, switch, timeout_ms=1, max_records=9)) == 2
    assert consumer.paused_set == set() and consumer.seeks == []


def test_what_a_poll_returned_as_the_stop_began_is_put_back_unhandled():
    switch = Switch()
    consumer = FakeConsumer(switch, stop_during_poll=True)
    assert directory_gate.gated_poll(consumer, switch, timeout_ms=1, max_records=9) == {}
    assert sorted(consumer.seeks) == [(("inbox", 0), 7), (("inbox", 1), 7)]


def test_a_plain_callable_never_stops_traffic():
    consumer = FakeConsumer()
    assert directory_gate.stop_reason(lambda: None) is None
    assert len(directory_gate.gated_poll(consumer, lambda: None, timeout_ms=1,
                                         max_records=9)) == 2


def test_wait_in_force_holds_the_event_until_traffic_may_flow():
    switch = Switch()
    asyncio.run(directory_gate.wait_in_force(switch, "inbox/0@7", interval_s=0))
    assert switch.checks == 1  # in force: no wait at all

    class NewerAfterThree(Switch):
        """Expired for its first three checks; then a newer edition is in force."""

        def stop_reason(self) -> str | None:
            self.checks += 1
            return "expired" if self.checks <= 3 else None

    later = NewerAfterThree()
    asyncio.run(directory_gate.wait_in_force(later, "inbox/0@7", interval_s=0))
    assert later.checks == 4  # held while expired, let go at the first check in force
