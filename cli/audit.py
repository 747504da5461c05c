"""`refmesh audit verify`: check a policy domain's audit chains against its signed checkpoints
and name what is wrong: a changed record, a cut tail, a forged checkpoint, an unconfirmed tail."""
from __future__ import annotations

import click

from kafkaedge.audit_reader import read_chains, read_checkpoints
from cli import common
from refmesh import audit as core
from refmesh import topology


@click.group("audit", cls=common.MeshGroup)
def audit() -> None:
    """A policy domain's tamper-evident audit stream."""


@audit.command("verify")
@click.option("--domain", "domain_id", required=True, type=common.AGENCY)
@click.option("--directory", "directory_file", envvar="REFMESH_DIRECTORY",
              type=click.Path(dir_okay=False),
              help="Signed directory file (env REFMESH_DIRECTORY): checks the domain's signed "
                   "checkpoints. Without it only the hash chains are checked.")
@click.option("--anchor", "anchor_file", envvar="REFMESH_ANCHOR",
              type=click.Path(dir_okay=False),
              help="Trust anchor JSON of the coordinator (env REFMESH_ANCHOR).")
@click.option("--signed-by", "signer_id", type=common.AGENCY,
              help="The domain whose chains these are and whose key signs the checkpoints "
                   "(default: --domain); for checking a copy of its audit topics kept under "
                   "another domain id.")
@common.broker_options()
def verify(domain_id: str, directory_file: str | None, anchor_file: str | None,
           signer_id: str | None, broker: common.Broker) -> None:
    """Read the domain's audit topics and verify every hash chain: the agents' decisions (one
    chain per partition) and the release job's (statistics published or refused). With
    --directory and --anchor, also compare each chain with the domain's signed checkpoints
    (topic refmesh.domain.<D>.audit-checkpoints): a chain that ends before or differs from a
    checkpoint was truncated, a checkpoint not signed by the domain's key is forged (both exit
    non-zero), and records after the last checkpoint are reported as an unconfirmed tail."""
    if (directory_file is None) != (anchor_file is None):
        raise common.Failure("give both --directory and --anchor (or neither)", common.USAGE)
    config = broker.consumer("audit-verify")
    chains = read_chains(config, domain_id)
    if not chains:
        raise common.Failure(f"no audit topic {topology.audit(domain_id)} on "
                             f"{broker.bootstrap}; check the domain id and --bootstrap",
                             common.USAGE)
    signer = signer_id or domain_id
    named = {(topology.audit(signer), p): (f"partition {p}", chain)
             for p, chain in sorted(chains.items())}
    releases = read_chains(config, domain_id, topic=topology.release_audit(domain_id))
    named.update({(topology.release_audit(signer), p): (f"releases {p}", chain)
                  for p, chain in sorted(releases.items()) if chain})
    trusted = checkpoints = None
    if directory_file is not None:
        trusted = common.trusted_directory(directory_file, anchor_file, common.now_ms())
        checkpoints = read_checkpoints(config, domain_id)
    else:
        click.echo("checkpoints NOT checked (no --directory/--anchor): a cut tail or an "
                   "appended record cannot be seen")
    bad = []
    for (topic, partition), (name, chain) in named.items():
        if trusted is None:
            problem = core.verify(chain)
            found = [] if problem is None else [core.changed(problem)]
        else:
            found = core.findings(chain, checkpoints, directory=trusted, domain=signer,
                                  chain=topic, partition=partition)
        if any(f.fatal for f in found):
            bad.append(name)
        for f in found:
            label = {"changed": "BROKEN", "truncated": "TRUNCATED:", "forged": "FORGED:",
                     "unconfirmed": "UNCONFIRMED:"}[f.kind]
            click.echo(f"{name}: {label} {f.message}")
        if not found:
            click.echo(f"{name}: {len(chain)} records, chain intact"
                       + ("" if trusted is None else ", confirmed by a signed checkpoint"))
        elif not any(f.fatal for f in found):
            click.echo(f"{name}: {len(chain)} records, chain intact")
    if bad:
        raise common.Failure(f"audit of {domain_id} tampered with in {', '.join(bad)}",
                             common.REJECTED)
    click.echo(f"ok: {sum(len(c) for _, c in named.values())} audit records of {domain_id} "
               "verified")
