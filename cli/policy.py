"""`refmesh policy ...`: the policy domain's minimisation policy: check, sign, verify, explain.

The policy is YAML, parsed here (the edge) with the line of every key, and validated by the
pure core (``refmesh.policy.parse``), which names the file, line and key of any mistake. The
agents load only a signed policy (``refmesh.signed_policy``); ``explain`` shows, with no broker,
what a referral would carry to a recipient, field by field, or why it would be refused.

Loading (YAML with key lines, signed or not) lives in ``kafkaedge/policy_files.py``, shared with
the agents.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import click

from cli import common
from kafkaedge.policy_files import is_signed, load_yaml, policy_from_yaml, read_policy  # noqa: F401
from refmesh import decide, signed_policy, topology
from refmesh import policy as core
from refmesh.directory import TrustedDirectory
from refmesh.errors import ConfigError, PolicyError
from refmesh.records import Consent, Referral

PURPOSES = core.PURPOSES
UNTRUSTED = {"unsigned", "malformed", "bad_signature", "wrong_domain", "unknown_key",
             "revoked_key", "expired_key"}


def _read_policy(path: str, directory: TrustedDirectory, domain: str, now: int,
                 allow_unsigned: bool = False) -> tuple[core.Policy, signed_policy.Signer | None]:
    """``read_policy`` for a command: a signed policy that cannot be trusted exits with 1 (as
    a directory does), any other mistake with 2."""
    data = common.read_bytes(path, "policy", "write the policy as YAML, or sign it with "
                                             "`refmesh policy sign`")
    try:
        return read_policy(data, path, directory, domain, now, allow_unsigned)
    except PolicyError as exc:
        rejected = exc.reason in UNTRUSTED and (is_signed(data) or not allow_unsigned)
        raise common.Failure(str(exc), common.REJECTED if rejected else common.USAGE) from exc


# --- commands ----------------------------------------------------------------------------------

@click.group(cls=common.MeshGroup)
def policy() -> None:
    """The policy domain's minimisation policy (which fields each recipient gets)."""


def _summary(p: core.Policy) -> list[str]:
    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    out = [(f"policy {p.domain} version {p.version}: {n(len(p.rules), 'national rule')}, "
            f"{n(len(p.cross_border), 'cross-border rule')}")]
    bases = "; ".join(f"{b} for {', '.join(sorted(r))}" for b, r in sorted(p.legal_bases.items()))
    out.append(f"  legal bases other than consent: {bases or 'none'}")

    def counts(rule: core.Rule) -> str:
        c = Counter(rule.fields.values())
        return ", ".join(f"{a} {c[a]}" for a in core.ACTIONS if c[a])

    for r in p.rules:
        out.append(f"  rule {r.id}: {', '.join(sorted(r.roles))} for "
                   f"{', '.join(sorted(r.purposes))}: {counts(r) or 'routing data only'}")
    for r in p.cross_border:
        out.append(f"  cross-border {r.id}: {r.origin} -> {', '.join(sorted(r.destinations))} "
                   f"for {', '.join(sorted(r.purposes))}: {counts(r) or 'routing data only'}")
    return out


@policy.command("check")
@click.argument("policy_file", metavar="FILE.yaml", type=click.Path(dir_okay=False))
def check(policy_file: str) -> None:
    """Validate a policy (YAML) and summarise its rules."""
    data = common.read_bytes(policy_file, "policy", "check the path")
    p = policy_from_yaml(data, policy_file)
    click.echo(f"ok: {policy_file}")
    for line in _summary(p):
        click.echo(line)


@policy.command("sign")
@click.argument("policy_file", metavar="FILE.yaml", type=click.Path(dir_okay=False))
@common.keystore_option()
@common.passphrase_option()
@click.option("--as", "domain", required=True, type=common.AGENCY,
              help="The policy domain that signs (its keystore must be in --keystore).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="policy.signed")
def sign(policy_file: str, keystore_dir: str, passphrase_env: str | None, domain: str,
         out: str) -> None:
    """Validate the policy, then sign it with the domain's key for the agents."""
    data = common.read_bytes(policy_file, "policy", "check the path")
    p = policy_from_yaml(data, policy_file, domain)
    domain_keys = common.unlock(keystore_dir, domain, passphrase_env)
    signed = signed_policy.sign(data, domain_keys, common.now_ms())
    common.write_file(out, signed, mode=0o644)
    click.echo(f"signed {out}: policy {p.domain} version {p.version}, key "
               f"{domain_keys.signing.key_id}")


@policy.command("verify")
@click.argument("signed_file", metavar="policy.signed", type=click.Path(dir_okay=False))
@click.option("--domain", required=True, type=common.AGENCY, help="The policy domain.")
@common.directory_option()
@common.anchor_option()
def verify(signed_file: str, domain: str, directory_file: str, anchor_file: str) -> None:
    """Check a signed policy as the agents do: signature, domain, key, content."""
    now = common.now_ms()
    trusted = common.trusted_directory(directory_file, anchor_file, now)
    p, signer = _read_policy(signed_file, trusted, domain, now)
    click.echo(f"ok: {signed_file} signed by {signer.domain} with {signer.key_id} at "
               f"{common.iso(signer.signed_at)}")
    for line in _summary(p):
        click.echo(line)


def _member(m: dict | None) -> str:
    return "?" if m is None else f"{m['agencyId']} ({m['role']}, {m['jurisdiction']})"


@policy.command("explain")
@click.option("--referral", "referral_file", required=True, type=click.Path(dir_okay=False),
              metavar="FILE.json", help="The referral (JSON, schemas/Referral.avsc).")
@click.option("--to", "recipient", type=common.AGENCY,
              help="Recipient agency [default: the referral's recipientAgency].")
@click.option("--purpose", type=click.Choice(PURPOSES),
              help="Purpose [default: the referral's purpose].")
@click.option("--consent", "consent_file", type=click.Path(dir_okay=False), metavar="FILE.json",
              help="The consent the domain holds for the person (JSON, schemas/Consent.avsc).")
@click.option("--policy", "policy_file", required=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="The policy: signed (policy.signed) or a YAML draft.")
@common.directory_option()
@common.anchor_option()
@click.option("--record", "show_record", is_flag=True,
              help="Also print the record that would be forwarded (JSON).")
def explain(referral_file: str, recipient: str | None, purpose: str | None,
            consent_file: str | None, policy_file: str, directory_file: str, anchor_file: str,
            show_record: bool) -> None:
    """What a referral would carry to a recipient, field by field with the rule that decided
    each, or why it would be refused. Needs no broker."""
    now = common.now_ms()
    trusted = common.trusted_directory(directory_file, anchor_file, now)
    doc = common.read_json(referral_file, "referral", "write the referral as JSON")
    if not isinstance(doc, dict):
        raise ConfigError(f"referral {referral_file} must be a JSON object")
    doc = {**doc, **({"recipientAgency": recipient} if recipient else {}),
           **({"purpose": purpose} if purpose else {})}
    with common.about(f"referral {referral_file}"):
        referral = Referral.from_json(doc).to_dict()
    consent = None
    if consent_file is not None:
        cdoc = common.read_json(consent_file, "consent", "write the consent as JSON")
        with common.about(f"consent {consent_file}"):
            consent = Consent.from_json(cdoc).to_dict()
    with common.about(f"referral {referral_file}: senderAgency"):
        domain = topology.domain_of(trusted, referral["senderAgency"])
    p, signer = _read_policy(policy_file, trusted, domain, now, allow_unsigned=True)
    # Pseudonyms depend on the domain's secret, which this command does not hold: a throwaway
    # key gives the right shape, never the values the recipient would see.
    result = decide.explain(referral, consent, trusted, p, now, os.urandom(32))
    click.echo(f"referral {referral['referralId']}: {_member(result.sender)} -> "
               f"{_member(result.recipient)}, purpose {referral['purpose']}, legal basis "
               f"{referral['legalBasis']}")
    click.echo(f"policy {p.domain} version {p.version}, " + (
        f"signed with {signer.key_id} at {common.iso(signer.signed_at)}" if signer else
        f"UNSIGNED draft {Path(policy_file).name} (the agents accept only a signed policy)"))
    for line in decide.render(result, p):
        click.echo(line)
    if show_record and isinstance(result.decision, decide.Allow):
        click.echo("record (pseudonyms computed with a throwaway key):")
        common.echo_json(Referral.from_dict(result.decision.record).to_json())
