"""One handle over either local broker, for the tests, the demo, the drills and the benchmarks.

``start("embedded")`` runs Tansu (zero Java, memory only); ``start("apache")`` runs Apache Kafka
from its jars with SASL_SSL, SCRAM-SHA-512 and ACLs on (``security=False`` for a PLAINTEXT one).
Either way the caller gets the bootstrap address, the client profile of that kind, the admin's
client options, and ``principals(...)``, which gives each named actor its own broker credentials
(SCRAM users on a secured Apache Kafka, nothing on Tansu, which cannot authenticate anyone).
"""
from __future__ import annotations

import os
import secrets
import signal
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devmesh.apache import ApacheBroker, java_problem
from devmesh.tansu import EmbeddedBroker, free_port
from kafkaedge import profiles
from kafkaedge.loading import write_file
from refmesh.access import ADMIN

KINDS = ("embedded", "apache")


def password_env(principal: str) -> str:
    """The environment variable that holds ``principal``'s broker password for its process."""
    return "REFMESH_KAFKA_PASSWORD_" + "".join(c if c.isalnum() else "_" for c in principal)


@dataclass
class LocalBroker:
    """A running local broker of either kind; stop() it when done (or use ``with``)."""

    kind: str
    process: EmbeddedBroker | ApacheBroker
    bootstrap: str
    passwords: dict[str, str] = field(default_factory=dict)
    scratch: Path | None = None  # the operator's client file, removed by stop()

    @property
    def profile(self) -> profiles.ClientProfile:
        return profiles.PROFILES[self.kind]

    @property
    def secured(self) -> bool:
        return isinstance(self.process, ApacheBroker) and self.process.security

    @property
    def admin_security(self) -> dict:
        """Client options of the operator (a super user on a secured broker)."""
        return self.process.client_security() if self.secured else {}

    @property
    def ca_file(self) -> Path | None:
        return self.process.tls.ca if self.secured else None

    @property
    def replication(self) -> int:
        """The replication factor for the topics the operator creates: one copy on every node
        (3 on the three-node cluster, 1 on one node and on Tansu)."""
        return len(self.process.nodes) if isinstance(self.process, ApacheBroker) else 1

    def admin_config(self) -> dict:
        return profiles.admin_config(self.profile, self.bootstrap, self.admin_security)

    def producer_config(self) -> dict:
        return profiles.producer_config(self.profile, self.bootstrap, self.admin_security)

    def consumer_config(self, group: str = "unused") -> dict:
        return profiles.consumer_config(self.profile, self.bootstrap, group, self.admin_security)

    def principals(self, names) -> dict[str, str]:
        """Give each principal a password and, on a secured broker, a SCRAM user; return
        {principal: password} for the new ones (the broker keeps them in ``passwords``)."""
        new = {name: secrets.token_urlsafe(18) for name in names if name not in self.passwords}
        if new and self.secured:
            self.process.add_users(new)
        self.passwords.update(new)
        return new

    def security_for(self, principal: str, *, env: bool = False) -> dict:
        """Client options for ``principal``: the password itself, or with ``env`` the name of
        the environment variable that holds it (for a settings file)."""
        if not self.secured:
            return {}
        self.principals([principal])
        options = self.process.client_security(principal, self.passwords[principal])
        if env:
            del options["sasl_plain_password"]
            options[profiles.PASSWORD_ENV] = password_env(principal)
        return options

    def credentials(self, principal: str) -> tuple[dict, dict]:
        """(security settings naming the password's environment variable, that variable) for
        ``principal``'s settings file and process: what ``sample_mesh.build`` takes."""
        options = self.security_for(principal, env=True)
        if not options:
            return {}, {}
        return options, {password_env(principal): self.passwords[principal]}

    def client_file(self, path: str | Path | None = None) -> Path:
        """Write the operator's client settings (bootstrap, broker kind, TLS and SASL naming
        the password's environment variable, which this process gets) for ``--config``."""
        security = self.security_for(ADMIN, env=True) if self.secured else {}
        if security:
            os.environ[password_env(ADMIN)] = self.passwords[ADMIN]
        settings = {"bootstrap": self.bootstrap, "broker": self.kind, "security": security}
        if path is None:  # one file per broker (the same settings every time), gone at stop()
            if self.scratch is None:
                self.scratch = Path(tempfile.mkdtemp(prefix=f"refmesh-{self.kind}-client-"))
            path = self.scratch / "client.yaml"
        return write_file(path, yaml.safe_dump(settings, sort_keys=True).encode(), mode=0o644)

    def halt(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (node 1 of an Apache Kafka cluster) but keep its handle, ports and
        storage, to ``resume()`` it: Kafka's log survives, as Tansu's s3:// storage does; Tansu's
        memory storage comes back empty. On Apache Kafka ``sig`` is SIGTERM (a clean shutdown)
        or SIGKILL (a crash); Tansu is stopped with SIGTERM only."""
        if isinstance(self.process, ApacheBroker):
            self.process.kill(1, sig)
        elif sig == signal.SIGTERM:
            self.process.stop()
        else:
            raise ValueError(f"the embedded broker is stopped with SIGTERM only, not {sig!r}")

    def resume(self, timeout: float = 120.0) -> None:
        """Start a ``halt``-ed broker again on the same address; return once it answers."""
        if isinstance(self.process, ApacheBroker):
            self.process.restart(1, timeout)
        else:
            self.process.start(timeout=timeout)

    def stop(self) -> None:
        self.process.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> "LocalBroker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start(kind: str, folder: str | Path | None = None, *, security: bool = True,
          nodes: int = 1, port: int | None = None) -> LocalBroker:
    """Start a local broker of ``kind`` (embedded or apache) and return its handle."""
    if kind == "embedded":
        # a port fixed now, so that a broker halt()-ed and resume()-d keeps its address
        process = EmbeddedBroker(port=port or free_port())
        return LocalBroker(kind, process, process.start())
    if kind == "apache":
        process = ApacheBroker(folder, security=security, nodes=nodes)
        bootstrap = process.start()
        known = {ADMIN: process.admin_password} if security else {}
        return LocalBroker(kind, process, bootstrap, known)
    raise ValueError(f"broker kind {kind!r} is not one of {', '.join(KINDS)}")


def apache_available() -> str | None:
    """None if Apache Kafka can run here, else why not (and how to fix it)."""
    return java_problem()


def describe(broker: LocalBroker) -> str:
    """One phrase on what the broker is, for its start-up line."""
    if broker.kind == "embedded":
        return "embedded Tansu, data in memory only, no authentication"
    if not broker.secured:
        return f"Apache Kafka, PLAINTEXT, no ACLs, data in {broker.process.folder}"
    return (f"Apache Kafka, SASL_SSL with SCRAM-SHA-512 and ACLs, data in "
            f"{broker.process.folder}")


def write_client_files(broker: LocalBroker) -> list[str]:
    """On a secured broker, write the operator's client settings (``client.yaml``: bootstrap,
    broker kind, TLS and SASL options naming the password's environment variable) and the
    password itself (``admin.env``, mode 0600) into the broker's folder; return lines that
    say where they are."""
    if not broker.secured:
        return []
    folder = broker.process.folder
    broker.client_file(folder / "client.yaml")
    password = broker.passwords[ADMIN]
    write_file(folder / "admin.env", f"{password_env(ADMIN)}={password}\n".encode())
    return [f"operator (super user {ADMIN!r}): client settings {folder / 'client.yaml'}, "
            f"password in {folder / 'admin.env'} (`set -a; . {folder / 'admin.env'}`)"]
