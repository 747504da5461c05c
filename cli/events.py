"""`refmesh seal` and `refmesh open`: one event, sealed for one agency or opened by it."""
from __future__ import annotations

import click

from cli import common
from refmesh import directory, envelope, records
from refmesh.errors import ConfigError
from refmesh.records import EnvelopeHeader

RECORD_TYPES = {"referral": "Referral", "status": "ReferralStatus", "consent": "Consent",
                "erasure": "ErasureNotice"}
SUITES = {"auto": None, "hybrid": envelope.HYBRID, "x25519": envelope.CLASSIC}


@click.command("seal")
@click.option("--from", "sender", required=True, type=common.AGENCY, help="Sending agency.")
@click.option("--to", "recipient", required=True, type=common.AGENCY, help="Receiving agency.")
@click.option("--type", "kind", required=True, type=click.Choice(list(RECORD_TYPES)))
@click.argument("record_file", metavar="FILE.json", type=click.Path(dir_okay=False))
@common.keystore_option()
@common.directory_option()
@common.anchor_option()
@common.passphrase_option()
@click.option("--suite", type=click.Choice(list(SUITES)), default="auto", show_default=True,
              help="auto: hybrid, unless the directory marks the recipient X25519-only; "
                   "hybrid: ML-KEM-768 + X25519 (post-quantum); x25519: classic only (refused "
                   "by a recipient with a hybrid key).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the event here (mode 0600) instead of to stdout.")
def seal(sender: str, recipient: str, kind: str, record_file: str, keystore_dir: str,
         directory_file: str, anchor_file: str, passphrase_env: str | None, suite: str,
         out: str | None) -> None:
    """Encrypt FILE.json (a record, "-" for stdin) for one agency and sign it as the sender."""
    name = RECORD_TYPES[kind]
    doc = common.read_json(record_file, f"{kind} file")
    with common.about(f"{kind} file {record_file}"):
        record = records.from_dict(name, doc)
    now = common.now_ms()
    trusted = common.trusted_directory(directory_file, anchor_file, now)
    keys = common.unlock(keystore_dir, sender, passphrase_env)
    # Fail here, not at the recipient, when the directory no longer accepts our signing key.
    trusted.signing_key(sender, keys.signing.key_id, now)
    if SUITES[suite] is not None:  # the recipient would dead-letter a downgrade
        downgrade = directory.suite_problem(trusted.member(recipient),
                                            envelope.SUITES[SUITES[suite]][0])
        if downgrade is not None:
            raise ConfigError(f"--suite {suite}: {downgrade}; leave --suite out")
    event = envelope.seal(name, record.to_dict(), keys, recipient, trusted, now,
                          suite=SUITES[suite])
    if out is None:
        common.write_stdout_bytes(event)
        return
    common.write_file(out, event, mode=0o600)
    header = envelope.read_header(event)
    # On stderr: --out may be /dev/stdout, and stdout is this command's data channel.
    click.echo(f"sealed {name} event {header['eventId']} from {sender} for {recipient}: "
               f"{out} ({len(event)} bytes)", err=True)


@click.command("open")
@click.option("--as", "me", required=True, type=common.AGENCY, help="The receiving agency.")
@click.argument("event_file", metavar="EVENT.bin", type=click.Path(dir_okay=False))
@common.keystore_option()
@common.directory_option()
@common.anchor_option()
@common.passphrase_option()
def open_(me: str, event_file: str, keystore_dir: str, directory_file: str, anchor_file: str,
          passphrase_env: str | None) -> None:
    """Verify and decrypt EVENT.bin ("-" for stdin); print its header and record as JSON."""
    data = common.read_bytes(event_file, "event")
    now = common.now_ms()
    trusted = common.trusted_directory(directory_file, anchor_file, now)
    keys = common.unlock(keystore_dir, me, passphrase_env)
    opened = envelope.open(data, keys, trusted, now)
    record = records.from_dict(opened.record_type, opened.record)
    common.echo_json({"header": EnvelopeHeader.from_dict(opened.header).to_json(),
                      "type": opened.record_type, "record": record.to_json()})
