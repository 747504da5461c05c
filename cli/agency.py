"""`refmesh agency ...`: an agency's own keys."""
from __future__ import annotations

import os
from pathlib import Path

import click

from cli import common
from refmesh import directory, keys
from refmesh.errors import ConfigError
from refmesh.records import Member


@click.group(cls=common.MeshGroup)
def agency() -> None:
    """An agency's own keys and its public member entry."""


@agency.command("init")
@click.argument("agency_id", metavar="ID", type=common.AGENCY)
@click.option("--name", required=True, help="Display name (HTCDS org_Name).")
@click.option("--role", required=True, type=click.Choice(directory.ROLES),
              help="HTCDS organisation type.")
@click.option("--country", required=True, metavar="CC",
              help="Jurisdiction, ISO 3166-1 alpha-2 (e.g. BH).")
@click.option("--domain", type=common.AGENCY,
              help="Agency id of the policy domain that forwards for this agency.")
@common.keystore_option()
@common.passphrase_option()
@click.option("--force", is_flag=True,
              help="Replace an existing keystore. Its old keys are lost, and events sealed "
                   "for them can no longer be opened.")
def init(agency_id: str, name: str, role: str, country: str, domain: str | None,
         keystore_dir: str, passphrase_env: str | None, force: bool) -> None:
    """Make the keys of agency ID, lock them in a keystore, and write its member entry.

    Writes DIR/<ID>.keystore (mode 0600, private: keep it and its passphrase safe) and
    DIR/<ID>.member.json (public: give it to the coordinator), with / in ID written as _.
    """
    store = common.keystore_path(keystore_dir, agency_id)
    if store.exists() and not force:
        raise ConfigError(f"{store} already exists; pass --force to replace it (its keys "
                          "are then lost), or choose another --keystore directory")
    now = common.now_ms()
    made = keys.generate(agency_id, now)
    # The member entry is checked (role, country, domain) before anything is written.
    entry = Member.from_dict(directory.member_entry(made, name, role, country, domain, now))
    secret, _ = common.passphrase(passphrase_env, f"the new keystore of {agency_id}",
                               confirm=True)
    # SCRYPT_N is read here, not bound as lock()'s default, so a test can lower it.
    locked = keys.lock(made, secret, os.urandom(16), os.urandom(12), n=keys.SCRYPT_N)
    Path(keystore_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    common.write_file(store, locked, mode=0o600, overwrite=force)
    member = common.write_file(common.member_path(keystore_dir, agency_id),
                               common.dumps(entry.to_json()), mode=0o644)
    click.echo(f"agency {agency_id}: new keys")
    click.echo(f"  keystore  {store}  (private, mode 0600: keep it and its passphrase safe)")
    click.echo(f"  member    {member}  (public: give it to the coordinator)")
    for key in (made.signing, *made.decryption):
        click.echo(f"  key       {key.key_id}  {key.kind}")
