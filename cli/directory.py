"""`refmesh directory ...`: the coordinator edits and signs the member list; everyone verifies it.

The draft is JSON (bytes as hex) that only the coordinator keeps; ``directory.bin`` (signed) and
``anchor.json`` (the coordinator's public signing key) are what every agency receives.
"""
from __future__ import annotations

from pathlib import Path

import click

from cli import common
from refmesh import directory as core
from refmesh.errors import ConfigError
from refmesh.records import Directory, Member

DRAFT_FIX = "create it with `refmesh directory init`"


def _read_draft(path: str) -> dict:
    return core.load_draft(common.read_json(path, "draft", DRAFT_FIX), source=f"draft {path}")


def _write_draft(path: str | Path, draft: dict) -> None:
    common.write_file(path, common.dumps(Directory.from_dict(draft).to_json()), mode=0o600)


def _read_member(path: str) -> dict:
    doc = common.read_json(path, "member file", "ask the agency for its .member.json")
    with common.about(f"member file {path}"):
        return Member.from_json(doc).to_dict()


@click.group(cls=common.MeshGroup)
def directory() -> None:
    """The signed list of member agencies and their public keys."""


@directory.command("init")
@click.option("--coordinator", required=True, type=common.AGENCY,
              help="Agency id of the coordinating body that will sign.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="DRAFT.json")
@click.option("--force", is_flag=True, help="Replace an existing draft (its serial restarts).")
def init(coordinator: str, out: str, force: bool) -> None:
    """Start an empty draft directory for COORDINATOR."""
    if Path(out).exists() and not force:
        raise ConfigError(f"draft {out} already exists; edit it with `refmesh directory add`, "
                          "or pass --force to start again from serial 0")
    _write_draft(out, core.empty(coordinator))
    click.echo(f"draft {out}: coordinator {coordinator}, no members yet")


@directory.command("add")
@click.argument("draft_file", metavar="DRAFT.json", type=click.Path(dir_okay=False))
@click.argument("member_files", metavar="MEMBER.json...", nargs=-1, required=True,
                type=click.Path(dir_okay=False))
def add(draft_file: str, member_files: tuple[str, ...]) -> None:
    """Add members (or update them: new details and keys win, known keys are kept)."""
    draft = _read_draft(draft_file)
    for path in member_files:
        member = _read_member(path)
        with common.about(f"member file {path}"):
            draft = core.add_member(draft, member)
        click.echo(f"added {member['agencyId']} ({member['name']}, {member['role']})")
    _write_draft(draft_file, draft)
    click.echo(f"draft {draft_file}: {len(draft['members'])} members; "
               "sign it to publish: refmesh directory sign")


@directory.command("revoke-key")
@click.argument("draft_file", metavar="DRAFT.json", type=click.Path(dir_okay=False))
@click.option("--agency", "agency_id", required=True, type=common.AGENCY)
@click.option("--key", "key_id", required=True, metavar="KEYID")
def revoke_key(draft_file: str, agency_id: str, key_id: str) -> None:
    """Revoke one key of one member from now on (events signed with it are then refused)."""
    now = common.now_ms()
    with common.about(f"draft {draft_file}"):
        draft = core.revoke_key(_read_draft(draft_file), agency_id, key_id, now)
    _write_draft(draft_file, draft)
    click.echo(f"revoked {key_id} of {agency_id} in {draft_file}; sign and distribute the "
               "directory now: refmesh directory sign")


@directory.command("sign")
@click.argument("draft_file", metavar="DRAFT.json", type=click.Path(dir_okay=False))
@common.keystore_option()
@common.passphrase_option()
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="directory.bin")
@click.option("--valid-days", default=90, show_default=True, type=click.IntRange(1, 3650))
@click.option("--anchor-out", type=click.Path(dir_okay=False), metavar="anchor.json",
              help="Where to write the trust anchor [default: anchor.json next to --out].")
def sign(draft_file: str, keystore_dir: str, passphrase_env: str | None, out: str,
         valid_days: int, anchor_out: str | None) -> None:
    """Sign the draft with the coordinator's keystore: the next edition of directory.bin."""
    draft = _read_draft(draft_file)
    coordinator = common.unlock(keystore_dir, draft["coordinator"], passphrase_env)
    now = common.now_ms()
    signed = core.sign(draft, coordinator, now, valid_days)
    anchor = core.TrustAnchor.of(coordinator)
    edition = core.load(signed, anchor, now)  # check what we publish, and learn its serial
    anchor_out = anchor_out or str(Path(out).parent / "anchor.json")
    common.write_file(out, signed, mode=0o644)
    common.write_file(anchor_out, common.dumps(anchor.to_json()), mode=0o644)
    _write_draft(draft_file, {**draft, "serial": edition.serial})
    click.echo(f"signed {out}: serial {edition.serial}, {len(edition.members)} members, "
               f"expires {common.iso(edition.expires_at)}")
    click.echo(f"trust anchor {anchor_out}: {anchor.agency_id} {anchor.key_id}")


def _key_state(key: dict, now: int) -> str:
    if key["revokedAt"] is not None:
        return f"revoked {common.iso(key['revokedAt'])}"
    if now < key["validFrom"]:
        return f"valid from {common.iso(key['validFrom'])}"
    if key["validUntil"] is not None and now >= key["validUntil"]:
        return f"expired {common.iso(key['validUntil'])}"
    return "active"


@directory.command("show")
@click.argument("directory_file", metavar="directory.bin", envvar="REFMESH_DIRECTORY",
                type=click.Path(dir_okay=False))
@common.anchor_option()
@click.option("--json", "as_json", is_flag=True, help="The whole directory as JSON (hex bytes).")
def show(directory_file: str, anchor_file: str, as_json: bool) -> None:
    """Verify a signed directory, then list its members and their keys."""
    now = common.now_ms()
    trusted = common.trusted_directory(directory_file, anchor_file, now)
    if as_json:
        common.echo_json(Directory.from_dict(trusted.body).to_json())
        return
    body = trusted.body
    click.echo(f"directory serial {body['serial']} by {body['coordinator']}, issued "
               f"{common.iso(body['issuedAt'])}, expires {common.iso(body['expiresAt'])}")
    for m in body["members"]:
        click.echo(f"{m['agencyId']}  {m['name']}  role {m['role']}  jurisdiction "
                   f"{m['jurisdiction']}  domain {m['domain'] or '-'}")
        for k in m["keys"]:
            click.echo(f"    {k['keyId']:<24} {k['kind']:<15} {_key_state(k, now)}")


@directory.command("verify")
@click.argument("directory_file", metavar="directory.bin", envvar="REFMESH_DIRECTORY",
                type=click.Path(dir_okay=False))
@common.anchor_option()
def verify(directory_file: str, anchor_file: str) -> None:
    """Check a signed directory's signature and expiry against the trust anchor."""
    trusted = common.trusted_directory(directory_file, anchor_file, common.now_ms())
    click.echo(f"ok: serial {trusted.serial}, {len(trusted.members)} members, "
               f"expires {common.iso(trusted.expires_at)}")
