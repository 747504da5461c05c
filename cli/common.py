"""What every refmesh command shares: the error boundary, files, passphrases, keystores, the
trusted directory, the broker connection, and the clock.

The CLI is an edge: it reads files, the environment, the clock and ``os.urandom``, then calls the
pure core. Errors are turned into one ``error: ...`` line in one place, ``MeshGroup`` (with
``failure``); helpers here only add the name of the input, or the fix, to a core error.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import click

from kafkaedge import loading, profiles
from kafkaedge.loading import file_safe, keystore_path, write_file  # noqa: F401 (re-exported)
from refmesh import directory, keys
from refmesh.errors import (
    ConfigError,
    DirectoryError,
    KeystoreError,
    MeshError,
    RecordError,
    SealError,
)
from refmesh.settings import BROKER_KINDS
from refmesh.signed_policy import no_duplicate_keys

PASSPHRASE_ENV = "REFMESH_PASSPHRASE"
USAGE, REJECTED = 2, 1  # exit codes: bad input or usage; a rejected envelope or directory
# DirectoryError reasons that mean "this directory cannot be trusted" rather than "you asked
# for something the directory does not have".
UNTRUSTED = {"bad_signature", "expired", "stale", "malformed"}
DIRECTORY_HINTS = {
    "unknown_agency": "check the agency id, or ask the coordinator for a directory that lists it",
    "unknown_key": "check the key id with `refmesh directory show`",
    "revoked_key": "the agency needs new keys, added to the directory by the coordinator",
    "expired_key": "the agency needs new keys, added to the directory by the coordinator",
}


def now_ms() -> int:
    """The wall clock in epoch milliseconds: the only clock read of the CLI."""
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time, e.g. 2026-09-21T10:00:00Z."""
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the error boundary -----------------------------------------------------------------------

class Failure(click.ClickException):
    """A failure shown as a single ``error: ...`` line on stderr, with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause printed
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


def failure(exc: BaseException) -> Failure | None:
    """The Failure to show for ``exc``, or None when it is not an error of ours to report."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return None  # click prints the help text; that is the right answer
    if isinstance(exc, click.UsageError):
        where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
        return Failure(f"{exc.format_message().rstrip('.')}{where}", USAGE)
    if isinstance(exc, SealError):
        return Failure(f"envelope rejected ({exc.reason})", REJECTED)
    if isinstance(exc, DirectoryError):
        if exc.reason in UNTRUSTED:
            return Failure(str(exc), REJECTED)
        hint = DIRECTORY_HINTS.get(exc.reason)
        return Failure(f"{exc}; {hint}" if hint else str(exc), USAGE)
    if isinstance(exc, MeshError):
        return Failure(str(exc), USAGE)
    if isinstance(exc, json.JSONDecodeError):
        return Failure(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", USAGE)
    if isinstance(exc, OSError):
        name = exc.filename or "a file"
        return Failure(f"{name}: {exc.strerror or exc}; check the path and its permissions",
                       USAGE)
    return None


class MeshGroup(click.Group):
    """A click group that reports refmesh, file and usage errors as one line, never a trace."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:  # options of the top-level group itself
            shown = failure(exc)
            if shown is None:
                raise
            raise shown from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MeshError, OSError, json.JSONDecodeError, click.UsageError) as exc:
            shown = failure(exc)
            if shown is None:
                raise
            raise shown from exc


class AgencyId(click.ParamType):
    """An X-Road style agency id (COUNTRY/CLASS/CODE), checked by the core."""

    name = "AGENCY_ID"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return directory.check_agency_id(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


AGENCY = AgencyId()


@contextmanager
def about(source: str) -> Iterator[None]:
    """Name ``source`` (a file) in record, settings and directory errors raised inside."""
    try:
        yield
    except DirectoryError as exc:
        raise DirectoryError(f"{source}: {exc}", exc.reason) from exc
    except (ConfigError, RecordError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


# --- files -------------------------------------------------------------------------------------

def read_bytes(path: str | Path, what: str, fix: str = "check the path") -> bytes:
    """The bytes of ``path`` ("-" for stdin); ``what`` and ``fix`` go into the error message."""
    if str(path) == "-":
        return click.get_binary_stream("stdin").read()
    return loading.read_bytes(path, what, fix)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, what: str, fix: str = "check the path") -> Any:
    """Parse a JSON file strictly (UTF-8, no NaN, no repeated keys), naming it in errors."""
    data = read_bytes(path, what, fix)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}); "
                          "save it as UTF-8 JSON") from None
    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}; fix the file") from None
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}; fix the file") from None


def dumps(doc: Any) -> bytes:
    """A JSON document as UTF-8 file content."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


# --- passphrases and keystores ----------------------------------------------------------------

def member_path(keystore_dir: str | Path, agency_id: str) -> Path:
    return Path(keystore_dir) / f"{file_safe(agency_id)}.member.json"


def passphrase(env_var: str | None, what: str, *, confirm: bool = False) -> tuple[str, str]:
    """(passphrase, where it came from): ``env_var`` (default REFMESH_PASSPHRASE), else asked."""
    name = env_var or PASSPHRASE_ENV
    value = os.environ.get(name)
    if value:
        return value, f"environment variable {name}"
    if env_var:
        raise ConfigError(f"environment variable {env_var} (named by --passphrase-env) is not "
                          "set; export it, or leave the option out to be asked")
    return click.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm,
                        err=True), "the prompt"


def unlock(keystore_dir: str | Path, agency_id: str, env_var: str | None) -> keys.AgencyKeys:
    """The keys of ``agency_id`` from its keystore in ``keystore_dir``."""
    path = keystore_path(keystore_dir, agency_id)
    data = read_bytes(path, f"keystore of {agency_id}",
                      "run `refmesh agency init` for it, or point --keystore (REFMESH_KEYSTORE) "
                      "at the directory that holds it")
    secret, origin = passphrase(env_var, f"keystore {path}")
    try:
        agency = keys.unlock(data, secret, source=str(path))
    except KeystoreError as exc:
        raise KeystoreError(f"{exc}; the passphrase came from {origin}") from exc
    if agency.agency_id != agency_id:
        raise ConfigError(f"{path} holds the keys of {agency.agency_id}, not {agency_id}; "
                          "restore the right keystore file")
    return agency


def trusted_directory(directory_file: str | Path, anchor_file: str | Path,
                      now: int) -> directory.TrustedDirectory:
    """The signed directory in ``directory_file``, verified against the trust anchor."""
    doc = read_json(anchor_file, "trust anchor", "get anchor.json from the coordinator")
    with about(f"trust anchor {anchor_file}"):
        if not isinstance(doc, dict):
            raise ConfigError("expected a JSON object with agencyId, keyId and publicKey")
        anchor = directory.TrustAnchor.from_json(doc)
    signed = read_bytes(directory_file, "directory",
                        "get directory.bin from the coordinator (or set REFMESH_DIRECTORY)")
    with about(f"directory {directory_file}"):
        return directory.load(signed, anchor, now)


def write_stdout_bytes(data: bytes) -> None:
    """Raw bytes to stdout, refusing a terminal (binary would garble it)."""
    out = click.get_binary_stream("stdout")
    if sys.stdout.isatty():
        raise ConfigError("refusing to write binary to a terminal; pass --out FILE or "
                          "redirect stdout to a file")
    out.write(data)
    out.flush()


# --- options shared by several commands -------------------------------------------------------

def keystore_option():
    return click.option("--keystore", "keystore_dir", envvar="REFMESH_KEYSTORE", required=True,
                        type=click.Path(file_okay=False),
                        help="Directory of keystores (env REFMESH_KEYSTORE).")


def passphrase_option():
    return click.option("--passphrase-env", metavar="VAR",
                        help=f"Environment variable holding the passphrase (default "
                             f"{PASSPHRASE_ENV}; asked for when that is unset).")


def directory_option():
    return click.option("--directory", "directory_file", envvar="REFMESH_DIRECTORY",
                        required=True, type=click.Path(dir_okay=False),
                        help="Signed directory file (env REFMESH_DIRECTORY).")


def anchor_option():
    return click.option("--anchor", "anchor_file", envvar="REFMESH_ANCHOR", required=True,
                        type=click.Path(dir_okay=False),
                        help="Trust anchor JSON of the coordinator (env REFMESH_ANCHOR).")


# --- the broker: flags, or the mesh's settings file -------------------------------------------

CONFIG_ENV = "REFMESH_CONFIG"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_KIND = "apache"


class Broker(NamedTuple):
    """How a command reaches Kafka: ``bootstrap, profile, security = broker``. ``security`` is
    checked, with the SASL password read from the environment variable the settings name."""

    bootstrap: str
    profile: profiles.ClientProfile
    security: dict

    def admin(self) -> dict:
        return profiles.admin_config(self.profile, self.bootstrap, self.security)

    def consumer(self, group: str) -> dict:
        return profiles.consumer_config(self.profile, self.bootstrap, group, self.security)

    def producer(self) -> dict:
        return profiles.producer_config(self.profile, self.bootstrap, self.security)


def broker_from(config_file: str | None, bootstrap: str | None, kind: str | None, *,
                default_bootstrap: str = DEFAULT_BOOTSTRAP, security: bool = True) -> Broker:
    """The Broker for a command: ``--bootstrap`` and ``--broker`` where given, else what the
    settings file (a gateway's or the agents', ``--config``) says, else the defaults. Without
    ``security`` the file's TLS/SASL options are neither read nor checked."""
    settings = loading.load_any_settings(config_file) if config_file else None
    options = dict(settings.security) if settings is not None and security else {}
    try:
        checked = profiles.validate_security(options)
    except ValueError as exc:
        raise ConfigError(f"{config_file}: security: {exc}") from None
    return Broker(bootstrap or (settings.bootstrap if settings else default_bootstrap),
                  profiles.PROFILES[kind or (settings.broker if settings else DEFAULT_KIND)],
                  checked)


def broker_options(default_bootstrap: str = DEFAULT_BOOTSTRAP, *, security: bool = True):
    """Decorate a command that talks to Kafka with ``--config FILE`` (env REFMESH_CONFIG),
    ``--bootstrap`` (env REFMESH_BOOTSTRAP) and ``--broker``; the command receives one argument,
    ``broker`` (a Broker), in their place. Flags override the file, the file the defaults."""
    def decorate(command):
        @functools.wraps(command)
        def with_broker(*args, config_file, bootstrap, kind, **kwargs):
            return command(*args, broker=broker_from(
                config_file, bootstrap, kind, default_bootstrap=default_bootstrap,
                security=security), **kwargs)

        taken = "bootstrap, broker and security" if security else "bootstrap and broker"
        for option in reversed((
                click.option("--config", "config_file", envvar=CONFIG_ENV,
                             type=click.Path(dir_okay=False), metavar="FILE",
                             help=f"A gateway's or the agents' settings YAML to take {taken} "
                                  f"from (env {CONFIG_ENV}); the flags below override it."),
                click.option("--bootstrap", envvar="REFMESH_BOOTSTRAP", metavar="HOST:PORT",
                             help="Kafka bootstrap address (env REFMESH_BOOTSTRAP) [default: "
                                  f"from --config, else {default_bootstrap}]."),
                click.option("--broker", "kind", type=click.Choice(BROKER_KINDS),
                             help="Client profile for the broker kind [default: from "
                                  f"--config, else {DEFAULT_KIND}]."))):
            with_broker = option(with_broker)
        return with_broker

    return decorate
