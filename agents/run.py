"""Run a policy domain's agents in one faust worker: ``python -m agents.run --config FILE.yaml``.

``run(settings)`` loads the domain's keystore, trust anchor and signed directory, creates the
domain's topics with explicit partition counts (nothing may be auto-created: shared/BROKER.md),
builds the app with ``agents.forward.create_app`` and runs a faust Worker until SIGINT or
SIGTERM. With ``web_port`` set, faust's web server answers ``/healthz`` (agents/health.py).
The config file holds ``refmesh.settings.AgentSettings`` keys; the keystore passphrase comes
from the environment variable the file names (``passphrase_env``).
"""
from __future__ import annotations

import argparse
import os
import logging
import socket
import sys
import time
from pathlib import Path
from typing import NoReturn

import faust
from kafka.errors import KafkaError

from agents import health
from agents.forward import create_app, profile_of, sink_topics
from agents.releases import Releaser
from agents.state import Marks
from kafkaedge import profiles
from kafkaedge import loading
from kafkaedge.loading import DirectoryRef, load_keys, now_ms, read_bytes
from kafkaedge.policy_files import read_policy
from kafkaedge.topics import TopicError, TopicSpec, ensure_topics
from refmesh import topology
from refmesh.errors import ConfigError, MeshError
from refmesh.settings import AgentSettings

log = logging.getLogger("refmesh.agents.run")


def load_settings(path: str) -> AgentSettings:
    """AgentSettings from a YAML file; errors name the file."""
    return loading.load_settings(path, AgentSettings)


def domain_topics(domain: str, partitions: int) -> list[TopicSpec]:
    """The topics the domain owns and its workers need before they start (table changelogs
    compacted: the latest value per key is what matters)."""
    plain = [topology.domain_inbox(domain), topology.deadletter(domain, "domain"),
             topology.audit(domain), topology.release_audit(domain),
             topology.audit_checkpoints(domain)]
    return [TopicSpec(name, partitions) for name in plain] + [
        TopicSpec(topology.table(domain, name), partitions, compacted=True)
        for name in (*topology.TABLES, topology.RELEASES)]


def prepare_topics(settings: AgentSettings, directory) -> list[str]:
    """Create the domain's own topics (an error stops the start) and every topic it forwards
    to under the current directory (an error is only logged: another owner may have made them
    with another partition count, which producing does not mind). Return the names known to
    exist."""
    admin = profiles.admin_config(profile_of(settings), settings.bootstrap, settings.security)
    own_specs = domain_topics(settings.domain, settings.partitions)
    ensure_topics(admin, own_specs)
    own = [t.name for t in own_specs]
    sinks = [name for name in sink_topics(directory, settings.domain) if name not in own]
    try:
        ensure_topics(admin, [TopicSpec(name, settings.partitions) for name in sinks])
    except TopicError as exc:
        log.warning("not every forwarding topic is as expected: %s", exc)
        return own
    return own + sinks


def prepare_app(settings: AgentSettings) -> faust.App:
    """Load the domain's files, create its topics and return the app, ready to run."""
    keys = load_keys(settings.keystore, settings.domain, settings.passphrase_env)
    directory_ref = DirectoryRef.of(settings)  # with the worker's highest serial seen
    directory = directory_ref()
    directory.member(settings.domain)  # a domain missing from its directory is misconfigured
    # The agents refuse to start on an unsigned, tampered or foreign policy (PolicyError).
    policy, signer = read_policy(read_bytes(settings.policy, "policy"), settings.policy,
                                 directory, settings.domain, now_ms())
    secret = os.environ.get(settings.pseudonym_secret_env)
    if not secret:
        raise ConfigError(f"set the domain's pseudonymisation secret in the environment "
                          f"variable {settings.pseudonym_secret_env}")
    # the secret of the person's Kafka key, which the domain's gateways share: the agents
    # derive each referral's and consent's key from its subject id and refuse any other
    partition_secret = os.environ.get(settings.partition_secret_env)
    if not partition_secret:
        raise ConfigError(f"set the domain's partition secret (the one its gateways use) in "
                          f"the environment variable {settings.partition_secret_env}")
    log.info("policy %s of %s signed with %s loaded", policy.version, signer.domain,
             signer.key_id)
    known = prepare_topics(settings, directory)
    # faust makes only the last level of its data directory
    (Path(settings.data_dir) / settings.worker_id).mkdir(parents=True, exist_ok=True)
    app = create_app(settings, keys, directory_ref, policy, secret.encode(),
                     partition_secret=partition_secret.encode())
    app.publisher.known(known)
    started = time.monotonic()

    @app.on_partitions_assigned.connect
    async def _joined(sender, assigned, **kwargs) -> None:  # noqa: ARG001 (faust signal)
        # the first assignment is the group join; later ones are rebalances
        # (the policy is named here too: logged before the Worker set up logging, the line
        # above is lost)
        log.info("worker %s of %s joined its group %.2f s after start; %d partitions assigned; "
                 "policy %s of %s signed with %s", settings.worker_id, settings.domain,
                 time.monotonic() - started, len(assigned), policy.version, signer.domain,
                 signer.key_id)

    return app


def run(settings: AgentSettings) -> NoReturn:
    """Run the domain's agents until SIGINT or SIGTERM (the faust Worker handles both).

    Never returns normally: the worker ends the process with SystemExit.
    """
    if settings.web_port:
        check_web_port(settings.web_port)
    app = prepare_app(settings)
    releaser = start_releases(settings, app) if settings.region else None
    if settings.web_port:
        health.mount(app, health.Watch(app, settings.domain,
                                       None if releaser is None else releaser.thread.is_alive,
                                       None if releaser is None else lambda: releaser.halted))
    faust.Worker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()


def check_web_port(port: int, host: str = "127.0.0.1") -> None:
    """Refuse to start when faust's web server (/healthz) could not listen on ``port``: faust
    would find out only after the worker joined its group, and end with a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"agents settings: cannot listen on {host}:{port} for /healthz "
                              f"({exc.strerror}); choose another web_port, or 0 for none"
                              ) from None


def start_releases(settings: AgentSettings, app: faust.App) -> Releaser:
    """Start the release job that publishes the domain's statistics to its region. It runs in
    every worker but acts only in the one holding partition 0 of the domain's inbox, so that
    one release of a window is drawn once (two noisy draws could be averaged)."""
    from refmesh import aggregate

    inbox = topology.domain_inbox(settings.domain)
    holds_zero = [False]

    @app.on_partitions_revoked.connect
    async def _revoked(sender, revoked, **kwargs) -> None:  # noqa: ARG001 (faust signal)
        holds_zero[0] = False

    @app.on_partitions_assigned.connect
    async def _assigned(sender, assigned, **kwargs) -> None:  # noqa: ARG001 (faust signal)
        holds_zero[0] = any(tp.topic == inbox and tp.partition == 0 for tp in assigned)

    profile = profile_of(settings)
    admin = profiles.admin_config(profile, settings.bootstrap, settings.security)
    ensure_topics(admin, [TopicSpec(aggregate.topic(settings.region), settings.partitions)])
    keys = load_keys(settings.keystore, settings.domain, settings.passphrase_env)
    releaser = Releaser(
        settings, keys,
        profiles.consumer_config(profile, settings.bootstrap, "releases", settings.security),
        profiles.producer_config(profile, settings.bootstrap, settings.security),
        leader=lambda: holds_zero[0],
        marks=Marks(Path(settings.data_dir) / settings.worker_id / "release-marks.json"))
    releaser.start()
    return releaser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.run",
                                     description="Run a policy domain's stream agents.")
    parser.add_argument("--config", required=True, help="agents settings (YAML)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        run(settings)
    except (MeshError, TopicError) as exc:
        print(f"refmesh agents: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"refmesh agents: cannot reach the broker ({type(exc).__name__}); check "
              "bootstrap in the config and that the broker is running", file=sys.stderr)
        return 2
    return 0  # not reached: the worker ends the process


if __name__ == "__main__":
    sys.exit(main())
