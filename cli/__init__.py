"""The `refmesh` command line: agency keys, the signed directory, sealing and opening events.

An edge over the pure core: commands read files, the environment, the clock and os.urandom,
call refmesh, and write files. Every expected failure is one ``error: ...`` line on stderr with
exit code 2 (bad input or usage) or 1 (an envelope or directory that was rejected).
"""
from __future__ import annotations

import click

from cli import (agency, aggregates, audit, common, directory, events, policy, refer,
                          run, users)


@click.group("refmesh", cls=common.MeshGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """refmesh: encrypted, signed referrals between counter-trafficking agencies."""


cli.add_command(agency.agency)
cli.add_command(aggregates.aggregates)
cli.add_command(directory.directory)
cli.add_command(events.seal)
cli.add_command(events.open_)
cli.add_command(policy.policy)
for command in (run.broker, run.topics, run.gateway, run.agents, run.mesh, run.scan, refer.refer,
                refer.consent, audit.audit, users.users, users.access):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="refmesh")


__all__ = ["cli", "main"]
