"""`refmesh audit verify`: check a policy domain's audit chains and name the first broken link."""
from __future__ import annotations

import click

from kafkaedge.audit_reader import read_chains
from cli import common
from refmesh import audit as core
from refmesh import topology


@click.group("audit", cls=common.MeshGroup)
def audit() -> None:
    """A policy domain's tamper-evident audit stream."""


@audit.command("verify")
@click.option("--domain", "domain_id", required=True, type=common.AGENCY)
@common.broker_options()
def verify(domain_id: str, broker: common.Broker) -> None:
    """Read the domain's audit topics and verify every hash chain: the agents' decisions (one
    chain per partition) and the release job's (statistics published or refused)."""
    config = broker.consumer("audit-verify")
    chains = read_chains(config, domain_id)
    if not chains:
        raise common.Failure(f"no audit topic {topology.audit(domain_id)} on "
                             f"{broker.bootstrap}; check the domain id and --bootstrap",
                             common.USAGE)
    named = {f"partition {p}": chain for p, chain in sorted(chains.items())}
    releases = read_chains(config, domain_id, topic=topology.release_audit(domain_id))
    named.update({f"releases {p}": chain for p, chain in sorted(releases.items()) if chain})
    bad = []
    for name, chain in named.items():
        problem = core.verify(chain)
        if problem is None:
            click.echo(f"{name}: {len(chain)} records, chain intact")
        else:
            bad.append(name)
            click.echo(f"{name}: BROKEN at record {problem.index} "
                       f"(offset {problem.index}, seq {problem.seq}): {problem.reason}")
    if bad:
        raise common.Failure(f"audit chain of {domain_id} broken in {', '.join(bad)}",
                             common.REJECTED)
    click.echo(f"ok: {sum(map(len, named.values()))} audit records of {domain_id} verified")
