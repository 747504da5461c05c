"""`refmesh audit verify`: check a policy domain's audit chains and name the first broken link."""
from __future__ import annotations

import click

from gateways import kafka as profiles
from gateways.audit_reader import read_chains
from gateways.cli import common
from refmesh import audit as core
from refmesh import topology


@click.group("audit", cls=common.MeshGroup)
def audit() -> None:
    """A policy domain's tamper-evident audit stream."""


@audit.command("verify")
@click.option("--domain", "domain_id", required=True, type=common.AGENCY)
@click.option("--bootstrap", envvar="REFMESH_BOOTSTRAP", default="127.0.0.1:9092",
              show_default=True, metavar="HOST:PORT")
@click.option("--broker", "kind", type=click.Choice(["embedded", "apache"]), default="apache",
              show_default=True)
def verify(domain_id: str, bootstrap: str, kind: str) -> None:
    """Read the domain's audit topic and verify every partition's hash chain."""
    profile = profiles.EMBEDDED if kind == "embedded" else profiles.APACHE
    chains = read_chains(profiles.consumer_config(profile, bootstrap, "audit-verify"), domain_id)
    if not chains:
        raise common.Failure(f"no audit topic {topology.audit(domain_id)} on {bootstrap}; check "
                             "the domain id and --bootstrap", common.USAGE)
    broken = {p: core.verify(chain) for p, chain in chains.items()}
    for partition, chain in sorted(chains.items()):
        problem = broken[partition]
        if problem is None:
            click.echo(f"partition {partition}: {len(chain)} records, chain intact")
        else:
            click.echo(f"partition {partition}: BROKEN at record {problem.index} "
                       f"(offset {problem.index}, seq {problem.seq}): {problem.reason}")
    bad = [p for p, problem in broken.items() if problem is not None]
    if bad:
        raise common.Failure(f"audit chain of {domain_id} broken in partition(s) "
                             f"{', '.join(map(str, sorted(bad)))}", common.REJECTED)
    click.echo(f"ok: {sum(map(len, chains.values()))} audit records of {domain_id} verified")
