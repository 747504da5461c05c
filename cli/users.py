"""`refmesh users ...`: accounts of the gateway's web page (roles, teams, disabling) and the
gateway's API tokens with their scopes; `refmesh access export`: the record of access, checked.

Accounts live in the gateway's own SQLite database (the ``database`` of its settings file); the
commands work while the gateway runs. A password is asked for twice at the prompt, or read from
the environment variable named by ``--password-env`` (for scripts), never from an argument,
which would stay in the shell history and the process list. Every change is written to the
record of access as ``cli:<the operating-system user>``.
"""
from __future__ import annotations

import getpass
import json
import os
import sys

import click

from cli import common
from kafkaedge.loading import load_settings
from refmesh import accesslog, permissions
from refmesh.settings import GatewaySettings
from gateways.web.auth import LANGUAGES, MIN_PASSWORD, Accounts

CONFIG = click.option("--config", required=True, envvar="REFMESH_GATEWAY_CONFIG",
                      type=click.Path(dir_okay=False),
                      help="The gateway's settings YAML (its database holds the accounts).")
PASSWORD_ENV = click.option("--password-env", metavar="VAR",
                            help="Environment variable holding the password (default: ask).")


def _settings(config: str) -> GatewaySettings:
    return load_settings(config, GatewaySettings)


def _accounts(config: str) -> Accounts:
    settings = _settings(config)
    return Accounts(settings.database, agency=settings.agency)


def _by() -> str:
    """Who made a change, for the record of access."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in the environment or the password database
        return f"cli:uid-{os.getuid()}"


def _password(env_var: str | None, username: str) -> str:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"environment variable {env_var} (named by --password-env) "
                                   "is not set; export it, or leave the option out to be asked")
        return value
    return click.prompt(f"Password for {username} (at least {MIN_PASSWORD} characters)",
                        hide_input=True, confirmation_prompt=True, err=True)


def _run(config: str, change) -> object:
    accounts = _accounts(config)
    try:
        return change(accounts)
    finally:
        accounts.close()


@click.group("users", cls=common.MeshGroup)
def users() -> None:
    """Accounts of the gateway's web page (roles, teams) and its API tokens."""


@users.command("add")
@click.argument("username")
@CONFIG
@PASSWORD_ENV
@click.option("--language", type=click.Choice(LANGUAGES), default="en", show_default=True,
              help="The page's language for this user (each user can change it).")
@click.option("--role", type=click.Choice(permissions.ROLES), default=permissions.CASEWORKER,
              show_default=True, help="caseworker: their own and their team's referrals; "
              "supervisor: all, and assigns; admin: accounts only, no case data.")
@click.option("--team", default=None, metavar="TEAM",
              help="The user's team (default: the gateway's web_default_team; '' for none).")
def add(username: str, config: str, password_env: str | None, language: str, role: str,
        team: str | None) -> None:
    """Create the account USERNAME (lower-case letters, digits, . _ -)."""
    if team is None:
        team = _settings(config).web_default_team
    password = _password(password_env, username)
    _run(config, lambda a: a.add_user(username, password, common.now_ms(), language, role,
                                      team, by=_by()))
    click.echo(f"user {username} added ({role}{f', team {team}' if team else ''}); they sign "
               "in at the gateway's web page")


@users.command("reset-password")
@click.argument("username")
@CONFIG
@PASSWORD_ENV
def reset_password(username: str, config: str, password_env: str | None) -> None:
    """Give USERNAME a new password; their open sessions end."""
    password = _password(password_env, username)
    _run(config, lambda a: a.reset_password(username, password, common.now_ms(), by=_by()))
    click.echo(f"password of {username} reset; their sessions are ended")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(permissions.ROLES))
@CONFIG
def set_role(username: str, role: str, config: str) -> None:
    """Give USERNAME the role ROLE (it applies at their next click)."""
    _run(config, lambda a: a.set_role(username, role, common.now_ms(), by=_by()))
    click.echo(f"{username} is now {role}")


@users.command("set-team")
@click.argument("username")
@click.argument("team")
@CONFIG
def set_team(username: str, team: str, config: str) -> None:
    """Put USERNAME in TEAM ('' for no team)."""
    _run(config, lambda a: a.set_team(username, team, common.now_ms(), by=_by()))
    click.echo(f"{username} is now in {f'team {team}' if team else 'no team'}")


@users.command("disable")
@click.argument("username")
@CONFIG
def disable(username: str, config: str) -> None:
    """Disable USERNAME: their sessions end at once and they cannot sign in."""
    _run(config, lambda a: a.disable(username, common.now_ms(), by=_by()))
    click.echo(f"{username} is disabled; their sessions are ended")


@users.command("enable")
@click.argument("username")
@CONFIG
def enable(username: str, config: str) -> None:
    """Enable USERNAME again."""
    _run(config, lambda a: a.enable(username, common.now_ms(), by=_by()))
    click.echo(f"{username} is enabled")


@users.command("list")
@CONFIG
def list_users(config: str) -> None:
    """The accounts of the gateway's web page: name, role, team, state."""
    listed = _run(config, lambda a: a.users())
    if not listed:
        click.echo("(none)")
    for u in listed:
        state = "active" if u["disabled_ms"] is None else \
            f"disabled since {common.iso(u['disabled_ms'])}"
        click.echo(f"{u['username']}\t{u['role']}\t{u['team'] or '-'}\t{state}")


@users.command("token-add")
@click.argument("name")
@CONFIG
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(permissions.SCOPES),
              help="read: the agency's referrals and consents, read only (reporting); send: "
                   "submit referrals and statuses, record consents; admin: assign, withdraw "
                   "any consent, read the record of access. Repeat for several.")
def token_add(name: str, config: str, scopes: tuple[str, ...]) -> None:
    """Make an API token NAME with its scopes and print it once (only its hash is kept)."""
    token = _run(config, lambda a: a.add_token(name, scopes, common.now_ms(), by=_by()))
    click.echo(f"token {name} ({', '.join(sorted(set(scopes)))}); keep it now, it is not "
               "shown again:", err=True)
    click.echo(token)


@users.command("token-list")
@CONFIG
def token_list(config: str) -> None:
    """The API tokens kept in the database (never the tokens), with their scopes."""
    listed = _run(config, lambda a: a.tokens())
    click.echo("agency\tread,send,admin\t(the token in the gateway's api_token_env)")
    for t in listed:
        state = "works" if t["revoked_ms"] is None else \
            f"revoked {common.iso(t['revoked_ms'])}"
        click.echo(f"{t['name']}\t{','.join(t['scopes'])}\t{state}")


@users.command("token-revoke")
@click.argument("name")
@CONFIG
def token_revoke(name: str, config: str) -> None:
    """Revoke the API token NAME (at once)."""
    _run(config, lambda a: a.revoke_token(name, common.now_ms(), by=_by()))
    click.echo(f"token {name} revoked")


# --- the record of access -------------------------------------------------------------------

@click.group("access", cls=common.MeshGroup)
def access() -> None:
    """The gateway's record of access: who viewed, changed or exported what, when."""


@access.command("export")
@CONFIG
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-",
              show_default=True, help="Where the JSON lines go ('-': standard output).")
@click.option("--since", metavar="SEQ:SHA256",
              help="A head printed by an earlier export: the chain must still pass through it "
                   "(else entries were cut or rewritten since).")
def export(config: str, out: str, since: str | None) -> None:
    """Check the record's hash chain and write every entry as a JSON line (ids only, never case
    data). The export itself is recorded first, so it covers its own entry. Exits 1 if the
    chain is broken (the entries up to the break are written, and the break is named)."""
    try:
        head_before = accesslog.Head.parse(since) if since else None
    except ValueError as exc:
        raise common.Failure(str(exc), common.USAGE) from None
    rows, head, broken = _run(config, lambda a: a.export_access(head_before, common.now_ms(),
                                                                by=_by()))
    good = rows if broken is None else rows[:broken.index]
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in good)
    if out == "-":
        sys.stdout.write(lines)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.write(lines)
    if broken is not None:
        where = f"entry seq {broken.seq}" if broken.seq is not None else \
            f"entry {broken.index}"
        raise common.Failure(f"the record of access is broken at {where}: {broken.reason}; "
                             f"{len(good)} entries before it written", 1)
    click.echo(f"{len(rows)} entries, chain intact; head {head} (keep it: pass it as --since "
               "to the next export)", err=True)
