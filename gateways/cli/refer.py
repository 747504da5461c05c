"""`refmesh refer ...`: case workers' commands, talking to their gateway's HTTP API."""
from __future__ import annotations

import click

from gateways.cli import common
from gateways.client import GatewayClient
from refmesh import schemas

PURPOSES = schemas.contract("Referral").raw["fields"][7]["type"]["symbols"]
STATES = schemas.contract("ReferralStatus").raw["fields"][1]["type"]["symbols"]
REASONS = schemas.contract("ReferralStatus").raw["fields"][2]["type"][1]["symbols"]


@click.group("refer", cls=common.MeshGroup)
@click.option("--gateway", "url", envvar="REFMESH_GATEWAY", default="http://127.0.0.1:8080",
              show_default=True, help="Your gateway's URL (env REFMESH_GATEWAY).")
@click.option("--token-env", default="REFMESH_API_TOKEN", show_default=True, metavar="VAR",
              help="Environment variable holding your gateway's API token.")
@click.pass_context
def refer(ctx: click.Context, url: str, token_env: str) -> None:
    """Send, list and follow referrals through your agency's gateway."""
    import os

    token = os.environ.get(token_env)
    if not token:
        raise click.UsageError(f"set your gateway's API token in the environment variable "
                               f"{token_env}")
    ctx.obj = GatewayClient(url, token)


@refer.command("send")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--to", "recipient", required=True, type=common.AGENCY)
@click.option("--purpose", required=True, type=click.Choice(PURPOSES))
@click.pass_obj
def send(client: GatewayClient, file: str, recipient: str, purpose: str) -> None:
    """Send the referral in FILE (JSON, schemas/Referral.avsc) to an agency."""
    referral = common.read_json(file, "referral", "write the referral as JSON")
    if not isinstance(referral, dict):
        raise click.UsageError(f"referral {file} must be a JSON object")
    answer = client.submit({**referral, "recipientAgency": recipient, "purpose": purpose})
    click.echo(f"referral {answer['referralId']} accepted by the gateway ({answer['state']}); "
               f"follow it with: refmesh refer show {answer['referralId']}")


def _table(rows: list[dict]) -> None:
    if not rows:
        click.echo("(none)")
    for r in rows:
        click.echo(f"{r['referral_id']:40} {r['peer']:18} {r['state']:12} {r['urgency']:9} "
                   f"{r['trmStage']:18} due {r['dueDate'] or '-'}")


@refer.command("inbox")
@click.pass_obj
def inbox(client: GatewayClient) -> None:
    """Referrals your agency received, newest first."""
    _table(client.inbox())


@refer.command("outbox")
@click.pass_obj
def outbox(client: GatewayClient) -> None:
    """Referrals your agency sent, with their state."""
    _table(client.outbox())


@refer.command("show")
@click.argument("referral_id")
@click.pass_obj
def show(client: GatewayClient, referral_id: str) -> None:
    """One referral, as your agency holds it, with its status history."""
    common.echo_json(client.show(referral_id))


@refer.command("status")
@click.argument("referral_id")
@click.option("--set", "state", required=True, type=click.Choice(STATES))
@click.option("--reason", type=click.Choice(REASONS))
@click.pass_obj
def status(client: GatewayClient, referral_id: str, state: str, reason: str | None) -> None:
    """Change a referral's state (the other agency is told)."""
    answer = client.set_status(referral_id, state, reason)
    click.echo(f"referral {referral_id} is now {answer['state']}")
