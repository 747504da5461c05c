"""Development helpers in devmesh/: ports for the test and demo servers (``free_port``: never in
the kernel's ephemeral range, where an outgoing connection could take the port before the
server binds it; an agent once died at start with "address already in use" under two test
workers), the operator's client file and the error of a process that died."""
from __future__ import annotations

import socket

import pytest

import devmesh.tansu as tansu
from devmesh.tansu import HOST, ephemeral_floor, free_port


def test_ports_are_below_the_ephemeral_range_distinct_and_free():
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= port < ephemeral_floor() for port in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind((HOST, port))  # raises if it was not free


def test_a_port_with_a_listener_is_never_handed_out(monkeypatch):
    with socket.socket() as server:
        server.bind((HOST, 0))
        server.listen()
        taken = server.getsockname()[1]
        picks = iter([taken, taken, 23456])
        monkeypatch.setattr(tansu._RNG, "randrange", lambda low, high: next(picks))
        monkeypatch.setattr(tansu, "_handed_out", set())
        assert free_port() == 23456


def test_the_floor_is_read_from_the_kernel(tmp_path, monkeypatch):
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    monkeypatch.setattr(tansu, "_EPHEMERAL_RANGE", ranges)
    assert ephemeral_floor() == 40000
    ranges.write_text("garbage")
    assert ephemeral_floor() == 32768


class _Stopped:
    def stop(self) -> None:
        pass


def test_the_operators_client_file_is_one_per_broker_and_gone_at_stop():
    from devmesh.brokers import LocalBroker

    broker = LocalBroker("embedded", _Stopped(), "127.0.0.1:29092")
    first, second = broker.client_file(), broker.client_file()
    assert first == second and "bootstrap: 127.0.0.1:29092" in first.read_text()
    broker.stop()
    assert not first.exists() and not first.parent.exists()


def test_a_process_that_died_is_an_error_with_its_first_error_and_its_log(tmp_path):
    from devmesh.supervise import ProcessError, Proc, wait_until

    proc = Proc("agents-X", "refmesh_no_such_module", [], {}, tmp_path).start()
    wait_until(lambda: not proc.alive, timeout=30, what="the process to exit")
    with pytest.raises(ProcessError, match=r"(?s)agents-X exited with code 1 \(log: .*agents-X"
                                           r"\.log\).*No module named refmesh_no_such_module"):
        proc.check_alive()


def test_no_free_port_is_one_error_that_names_the_range_and_the_fix(monkeypatch):
    monkeypatch.setattr(tansu, "port_is_free", lambda port, host: False)
    with pytest.raises(tansu.BrokerError, match=r"no free port for 127\.0\.0\.1 between \d+ and "
                                                r"\d+: .*ip_local_port_range"):
        free_port()
