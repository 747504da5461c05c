"""`refmesh refer ...`: case workers' commands, talking to their gateway's HTTP API."""
from __future__ import annotations

import functools
import os

import click

from cli import common
from gateways.client import GatewayClient
from refmesh import schemas

PURPOSES = schemas.symbols("Purpose")
STATES = schemas.symbols("ReferralState")
REASONS = schemas.symbols("StatusReason")


class GatewayLink:
    """How to reach the case worker's gateway, as the group's options say. The client is made
    when a command needs it, not when the group is parsed: ``--help`` of any command works
    without a token."""

    def __init__(self, url: str, token_env: str, ca_file: str | None) -> None:
        self.url, self.token_env, self.ca_file = url, token_env, ca_file

    def client(self) -> GatewayClient:
        token = os.environ.get(self.token_env)
        if not token:
            raise click.UsageError(f"set your gateway's API token in the environment "
                                   f"variable {self.token_env}")
        return GatewayClient(self.url, token, ca_file=self.ca_file)


def pass_client(command):
    """Call ``command`` with the GatewayClient of its group's options as first argument."""
    @click.pass_context
    @functools.wraps(command)
    def with_client(ctx: click.Context, *args, **kwargs):
        return command(ctx.find_object(GatewayLink).client(), *args, **kwargs)
    return with_client


def gateway_group(name: str, doc: str):
    """A command group whose commands get a GatewayClient for the case worker's gateway."""
    def decorate(fn):
        @click.group(name, cls=common.MeshGroup, help=doc)
        @click.option("--gateway", "url", envvar="REFMESH_GATEWAY",
                      default="http://127.0.0.1:8080", show_default=True,
                      help="Your gateway's URL (env REFMESH_GATEWAY).")
        @click.option("--token-env", default="REFMESH_API_TOKEN", show_default=True,
                      metavar="VAR", help="Environment variable holding your gateway's token.")
        @click.option("--ca-file", envvar="REFMESH_CA_FILE", type=click.Path(dir_okay=False),
                      help="PEM file of the CA that signed an https:// gateway's certificate "
                           "(env REFMESH_CA_FILE) [default: the system's CAs].")
        @click.pass_context
        def group(ctx: click.Context, url: str, token_env: str, ca_file: str | None) -> None:
            ctx.obj = GatewayLink(url, token_env, ca_file)
        return group
    return decorate


@gateway_group("refer", "Send, list and follow referrals through your agency's gateway.")
def refer() -> None:
    pass


@refer.command("send")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--to", "recipient", required=True, type=common.AGENCY)
@click.option("--purpose", required=True, type=click.Choice(PURPOSES))
@pass_client
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
@pass_client
def inbox(client: GatewayClient) -> None:
    """Referrals your agency received, newest first."""
    _table(client.inbox())


@refer.command("outbox")
@pass_client
def outbox(client: GatewayClient) -> None:
    """Referrals your agency sent, with their state."""
    _table(client.outbox())


SENDER = click.option("--sender", metavar="AGENCY",
                      help="The referral's sender: ids are unique per sender, so name it when "
                           "two referrals have the same id.")


@refer.command("show")
@click.argument("referral_id")
@SENDER
@pass_client
def show(client: GatewayClient, referral_id: str, sender: str | None) -> None:
    """One referral, as your agency holds it, with its status history."""
    common.echo_json(client.show(referral_id, sender))


@refer.command("status")
@click.argument("referral_id")
@click.option("--set", "state", required=True, type=click.Choice(STATES))
@click.option("--reason", type=click.Choice(REASONS))
@SENDER
@pass_client
def status(client: GatewayClient, referral_id: str, state: str, reason: str | None,
           sender: str | None) -> None:
    """Change a referral's state (the other agency is told)."""
    answer = client.set_status(referral_id, state, reason, sender)
    click.echo(f"referral {referral_id} is now {answer['state']}")


@gateway_group("consent", "Record and withdraw a person's consent through your gateway.")
def consent() -> None:
    pass


@consent.command("record")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_client
def consent_record(client: GatewayClient, file: str) -> None:
    """Record the consent in FILE (JSON, schemas/Consent.avsc) and send it to your domain."""
    record = common.read_json(file, "consent", "write the consent as JSON")
    if not isinstance(record, dict):
        raise click.UsageError(f"consent {file} must be a JSON object")
    answer = client.record_consent(record)
    click.echo(f"consent {answer['consentId']} version {answer['version']} recorded")


@consent.command("withdraw")
@click.argument("consent_id")
@click.option("--channel", type=click.Choice(schemas.symbols("ConsentChannel")),
              default="InPerson", show_default=True)
@pass_client
def consent_withdraw(client: GatewayClient, consent_id: str, channel: str) -> None:
    """Record that the person withdrew consent CONSENT_ID."""
    client.withdraw_consent(consent_id, channel)
    click.echo(f"consent {consent_id} withdrawn: no further forwarding; agencies that received "
               "data are asked to erase it (see: refmesh consent erasures)")


@consent.command("list")
@pass_client
def consent_list(client: GatewayClient) -> None:
    """Consents recorded at your gateway."""
    for c in client.consents():
        state = "withdrawn" if any(e["type"] == "Withdrawn" for e in c["events"]) else "given"
        click.echo(f"{c['consentId']:40} v{c['version']} subject {c['subjectId']:16} {state:9} "
                   f"purposes {','.join(c['purposes'])}")


@consent.command("erasures")
@pass_client
def consent_erasures(client: GatewayClient) -> None:
    """Erasure requests received and erasure confirmations from other agencies."""
    rows = client.erasures()
    if not rows:
        click.echo("(none)")
    for e in rows:
        click.echo(f"{e['kind']:12} notice {e['notice_id']} consent {e['consent_id']} by "
                   f"{e['requested_by']}: {len(e['referral_ids'])} referral(s)")
