"""`refmesh users ...`: case workers' accounts for the gateway's web page.

Accounts live in the gateway's own SQLite database (the ``database`` of its settings file); the
commands work while the gateway runs. A password is asked for twice at the prompt, or read from
the environment variable named by ``--password-env`` (for scripts), never from an argument,
which would stay in the shell history and the process list.
"""
from __future__ import annotations

import os

import click

from cli import common
from kafkaedge.loading import load_settings
from refmesh.settings import GatewaySettings
from gateways.web.auth import LANGUAGES, MIN_PASSWORD, Accounts

CONFIG = click.option("--config", required=True, envvar="REFMESH_GATEWAY_CONFIG",
                      type=click.Path(dir_okay=False),
                      help="The gateway's settings YAML (its database holds the accounts).")
PASSWORD_ENV = click.option("--password-env", metavar="VAR",
                            help="Environment variable holding the password (default: ask).")


def _accounts(config: str) -> Accounts:
    return Accounts(load_settings(config, GatewaySettings).database)


def _password(env_var: str | None, username: str) -> str:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"environment variable {env_var} (named by --password-env) "
                                   "is not set; export it, or leave the option out to be asked")
        return value
    return click.prompt(f"Password for {username} (at least {MIN_PASSWORD} characters)",
                        hide_input=True, confirmation_prompt=True, err=True)


@click.group("users", cls=common.MeshGroup)
def users() -> None:
    """Case workers' accounts for the gateway's web page."""


@users.command("add")
@click.argument("username")
@CONFIG
@PASSWORD_ENV
@click.option("--language", type=click.Choice(LANGUAGES), default="en", show_default=True,
              help="The page's language for this user (each user can change it).")
def add(username: str, config: str, password_env: str | None, language: str) -> None:
    """Create the account USERNAME (lower-case letters, digits, . _ -)."""
    accounts = _accounts(config)
    try:
        accounts.add_user(username, _password(password_env, username), common.now_ms(),
                          language)
    finally:
        accounts.close()
    click.echo(f"user {username} added; they sign in at the gateway's web page")


@users.command("reset-password")
@click.argument("username")
@CONFIG
@PASSWORD_ENV
def reset_password(username: str, config: str, password_env: str | None) -> None:
    """Give USERNAME a new password; their open sessions end."""
    accounts = _accounts(config)
    try:
        accounts.reset_password(username, _password(password_env, username), common.now_ms())
    finally:
        accounts.close()
    click.echo(f"password of {username} reset; their sessions are ended")


@users.command("list")
@CONFIG
def list_users(config: str) -> None:
    """The accounts of the gateway's web page."""
    accounts = _accounts(config)
    try:
        names = accounts.usernames()
    finally:
        accounts.close()
    click.echo("\n".join(names) if names else "(none)")
