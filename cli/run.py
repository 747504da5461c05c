"""`refmesh broker`, `refmesh topics ensure`, `users` and `acls`, `refmesh gateway run`,
`refmesh agents run`, `refmesh mesh sample`: running the mesh."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import click

from cli import common
from kafkaedge.loading import configure_logging, load_settings
from refmesh import topology
from refmesh.settings import AgentSettings, GatewaySettings

BOOTSTRAP = click.option("--bootstrap", envvar="REFMESH_BOOTSTRAP", metavar="HOST:PORT",
                         help="Kafka bootstrap address (env REFMESH_BOOTSTRAP); overrides the "
                              "settings file.")


@click.command("broker")
@click.option("--kind", type=click.Choice(["embedded", "apache"]), default="embedded",
              show_default=True, help="embedded: Tansu, in memory, no Java. apache: Apache "
                                      "Kafka 4 from its Maven jars (needs Java 17+ and Maven).")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port of the embedded broker (default: a free one).")
@click.option("--folder", type=click.Path(file_okay=False),
              help="Apache Kafka: where its data, logs, TLS files and client settings go "
                   "(default: a temporary folder, removed at stop).")
@click.option("--security/--no-security", default=True, show_default=True,
              help="Apache Kafka: SASL_SSL with SCRAM-SHA-512 and ACLs, or PLAINTEXT.")
def broker(kind: str, port: int | None, folder: str | None, security: bool) -> None:
    """Run a local broker until Ctrl-C or SIGTERM (tests, demo and trying things out)."""
    from devmesh import brokers
    from devmesh.tansu import BrokerError

    if port is not None and kind != "embedded":
        raise click.UsageError("--port is for the embedded broker; Apache Kafka picks free ports")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    try:
        local = brokers.start(kind, folder, security=security, port=port)
    except BrokerError as exc:
        raise common.Failure(str(exc), common.USAGE) from None
    try:
        click.echo(f"broker ready: export REFMESH_BOOTSTRAP={local.bootstrap}   "
                   f"(Ctrl-C or SIGTERM stops it; {brokers.describe(local)})")
        for line in brokers.write_client_files(local):
            click.echo(line)
        stop.wait()
    finally:
        local.stop()
        click.echo("broker stopped", err=True)


@click.group("topics", cls=common.MeshGroup)
def topics() -> None:
    """The mesh's Kafka topics."""


def _regions(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    """--region DOMAIN=REGION, repeated: {domain: region}, one region per domain."""
    regions: dict[str, str] = {}
    for value in values:
        domain, sep, region = value.partition("=")
        if not sep or not domain or not region:
            raise click.BadParameter(f"{value!r} is not DOMAIN=REGION, e.g. BH/GOV/NCCTIP=GCC",
                                     ctx, param)
        if regions.get(domain, region) != region:
            raise click.BadParameter(f"{domain} is given two regions ({regions[domain]} and "
                                     f"{region}); a domain publishes to one", ctx, param)
        regions[domain] = region
    return regions


REGIONS = click.option("--region", "regions", multiple=True, callback=_regions,
                       metavar="DOMAIN=REGION", help="A policy domain and the region it "
                                                     "publishes statistics to (repeatable).")


@topics.command("ensure")
@common.broker_options()
@click.option("--partitions", type=click.IntRange(1, 1000), default=4, show_default=True)
@common.directory_option()
@common.anchor_option()
@REGIONS
def ensure(broker: common.Broker, partitions: int, directory_file: str,
           anchor_file: str, regions: dict[str, str]) -> None:
    """Create every topic of the mesh (from the signed directory, and the aggregate topic of
    each region named); running it again is fine."""
    from kafkaedge.topics import TopicSpec, ensure_topics

    trusted = common.trusted_directory(directory_file, anchor_file, common.now_ms())
    specs = [TopicSpec(name, partitions, compacted)
             for name, compacted in topology.mesh_topics(trusted, regions.values())]
    created = ensure_topics(broker.admin(), specs)
    click.echo(f"{len(specs)} topics present ({len(created)} created)")


@topics.command("acls")
@common.broker_options()
@common.directory_option()
@common.anchor_option()
@REGIONS
@click.option("--dry-run", is_flag=True, help="Print the grants; change nothing.")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Remove refmesh ACLs that the directory no longer grants.")
def acls(broker: common.Broker, directory_file: str, anchor_file: str,
         regions: dict[str, str], dry_run: bool, prune: bool) -> None:
    """Give each gateway, domain and regional reader exactly the broker rights of its role,
    derived from the signed directory; run it as the super user after every new directory."""
    from refmesh.access import mesh_grants

    trusted = common.trusted_directory(directory_file, anchor_file, common.now_ms())
    grants = mesh_grants(trusted, regions)
    if dry_run:
        for g in grants:
            click.echo(f"{g.principal:<40} {g.operation:<9} {g.resource_type:<16} "
                       f"{g.pattern:<9} {g.name}")
        click.echo(f"{len(grants)} grants (dry run: nothing changed)")
        return
    from kafkaedge.acls import apply_acls

    created, removed = apply_acls(broker.admin(), grants, prune=prune)
    click.echo(f"{len(grants)} grants present ({len(created)} ACLs created, "
               f"{len(removed)} removed)")


def _users(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    """--user PRINCIPAL=ENV_VAR, repeated: {principal: the password in ENV_VAR}."""
    users: dict[str, str] = {}
    for value in values:
        name, sep, var = value.partition("=")
        if not sep or not name or not var:
            raise click.BadParameter(f"{value!r} is not PRINCIPAL=ENV_VAR, e.g. "
                                     "agency.BH.GOV.HOTLINE=HOTLINE_KAFKA_PASSWORD", ctx, param)
        if name in users:
            raise click.BadParameter(f"{name} is given twice", ctx, param)
        users[name] = os.environ.get(var, "")
        if not users[name]:
            raise click.BadParameter(f"the environment variable {var} (the password of {name}) "
                                     "is not set: export it", ctx, param)
    return users


@topics.command("users")
@common.broker_options()
@click.option("--user", "users", multiple=True, required=True, callback=_users,
              metavar="PRINCIPAL=ENV_VAR", help="A SCRAM user and the environment variable "
                                                "holding its password (repeatable).")
def users(broker: common.Broker, users: dict[str, str]) -> None:
    """Create each SCRAM-SHA-512 user named, or give it the password now in its environment
    variable; run it as the super user. Passwords come from the environment only."""
    from kafkaedge.acls import scram_users

    names = scram_users(broker.admin(), users)
    click.echo(f"{len(names)} SCRAM-SHA-512 users present: {', '.join(names)}")


@click.group("gateway", cls=common.MeshGroup)
def gateway() -> None:
    """An agency's gateway."""


@gateway.command("run")
@click.option("--config", required=True, envvar="REFMESH_GATEWAY_CONFIG",
              type=click.Path(dir_okay=False), help="Gateway settings YAML (docs/operators.md: "
                                                    "Configuration).")
@click.option("--agency", type=common.AGENCY, help="Agency id; overrides the settings file.")
@BOOTSTRAP
def gateway_run(config: str, agency: str | None, bootstrap: str | None) -> None:
    """Run a gateway: outbox relay, inbox consumer and HTTP API, until Ctrl-C or SIGTERM."""
    from gateways.run import serve

    settings = load_settings(config, GatewaySettings, {"agency": agency, "bootstrap": bootstrap})
    configure_logging()
    asyncio.run(serve(settings))


@click.group("agents", cls=common.MeshGroup)
def agents() -> None:
    """A policy domain's stream agents."""


@agents.command("run")
@click.option("--config", required=True, envvar="REFMESH_AGENTS_CONFIG",
              type=click.Path(dir_okay=False), help="Agent settings YAML.")
@click.option("--domain", type=common.AGENCY, help="Domain id; overrides the settings file.")
@BOOTSTRAP
def agents_run(config: str, domain: str | None, bootstrap: str | None) -> None:
    """Run the domain's faust agents until Ctrl-C or SIGTERM."""
    from agents.run import run

    run(load_settings(config, AgentSettings, {"domain": domain, "bootstrap": bootstrap}))


@click.group("mesh", cls=common.MeshGroup)
def mesh() -> None:
    """Sample meshes."""


@mesh.command("sample")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@common.broker_options("kafka:9092", security=False)
@click.option("--mount", help="Path the folder will have inside containers (e.g. /mesh).")
def sample(out: str, broker: common.Broker, mount: str | None) -> None:
    """Write the synthetic sample mesh of DOMAIN.md (keys, signed directory, settings, .env).
    With --broker apache and --mount, the mesh of docker-compose.yml: also the broker's
    server.properties and TLS files, and one env file per compose service (env/<service>.env)
    with only that service's secrets instead of one .env."""
    if mount and broker.profile.name == "apache":
        from devmesh.compose import write

        write(Path(out), broker.bootstrap, common.now_ms(), mount)
        click.echo(f"sample mesh for docker-compose.yml written to {out}: the broker's files in "
                   f"{out}/kafka, each service's secrets in {out}/env/<service>.env (mode 0600)")
        return
    from devmesh.sample_mesh import build

    files = build(Path(out), broker.bootstrap, common.now_ms(), broker=broker.profile.name,
                  mount=mount)
    env = "".join(f"{k}={v}\n" for k, v in sorted(files.env.items()))
    common.write_file(Path(out) / ".env", env.encode())
    click.echo(f"sample mesh written to {out} (secrets in {out}/.env, mode 0600)")


@click.command("scan")
@common.broker_options()
@click.option("--canaries", "canaries_file", required=True, type=click.Path(dir_okay=False),
              help="Text file: one planted value per line (blank lines ignored).")
@click.option("--prefix", default="", help="Only topics whose name starts with this.")
def scan(broker: common.Broker, canaries_file: str, prefix: str) -> None:
    """Read every topic from the beginning and report any canary value found in clear."""
    from gateways.scan import scan as run_scan

    text = common.read_bytes(canaries_file, "canaries file").decode("utf-8", "replace")
    canaries = [line.strip() for line in text.splitlines() if line.strip()]
    if not canaries:
        raise click.UsageError(f"{canaries_file} holds no canary; write one value per line")
    result = run_scan(broker.consumer("scan"), canaries, topic_prefix=prefix)
    for topic, partition, offset, canary in result.hits:
        click.echo(f"LEAK {topic}/{partition}@{offset}: canary {canary!r}")
    for topic, partition, position, end in result.short:
        click.echo(f"WARNING {topic}/{partition}: read up to offset {position}; the broker "
                   f"reports the end at {end} but serves nothing more", err=True)
    click.echo(f"scanned {result.messages} messages ({result.bytes:,} bytes) on {result.topics} "
               f"topics for {len(canaries)} canaries: {len(result.hits)} found")
    if result.hits:
        raise common.Failure(f"{len(result.hits)} canary value(s) found in clear",
                             common.REJECTED)
