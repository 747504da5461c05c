"""Reading an agency's files: keystore, trust anchor, signed directory (edge I/O for the core)."""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import stat
import sys
import threading
import time
from pathlib import Path

import yaml

from refmesh import directory, keys
from refmesh.errors import ConfigError, DirectoryError
from refmesh.settings import AgentSettings, ClientSettings, GatewaySettings, build


def file_safe(agency_id: str) -> str:
    """BH/GOV/MOI -> BH_GOV_MOI, for file names."""
    return directory.check_agency_id(agency_id).replace("/", "_")


def keystore_path(folder: str | Path, agency_id: str) -> Path:
    return Path(folder) / f"{file_safe(agency_id)}.keystore"


def read_bytes(path: str | Path, what: str, fix: str = "check the path") -> bytes:
    """The bytes of ``path``; ``what`` and ``fix`` go into the error message."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a file; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}; "
                          "check its permissions") from exc


#: permission bits a private file may not have: any for its group or for others (OpenSSH's
#: rule for private keys); the owner's bits are the owner's business
NOT_PRIVATE = 0o077


def check_private(path: str | Path, what: str, holds: str) -> None:
    """Refuse ``path`` when its group or other users may read or write it; ``what`` names the
    file and ``holds`` what is in it, for the message, which gives the fix. A missing file is
    no problem here (whoever reads it says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & NOT_PRIVATE:
        raise ConfigError(f"{what} {path} is open to other users (mode "
                          f"{stat.S_IMODE(mode):04o}) and holds {holds}: run `chmod 600 {path}` "
                          "(refmesh refuses a file its group or others may read or write)")


def passphrase(env_name: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"set the keystore passphrase in the environment variable {env_name}")
    return value


def load_keys(folder: str | Path, agency_id: str, passphrase_env: str) -> keys.AgencyKeys:
    path = keystore_path(folder, agency_id)
    return keys.unlock(read_bytes(path, "keystore"), passphrase(passphrase_env), str(path))


def load_anchor(path: str | Path) -> directory.TrustAnchor:
    try:
        return directory.TrustAnchor.from_json(json.loads(read_bytes(path, "trust anchor")))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trust anchor {path} is not JSON: {exc}") from None


def now_ms() -> int:
    return int(time.time() * 1000)


#: the file that keeps the highest directory serial a gateway or worker has seen
SERIAL_FILE = "directory-serial"
log = logging.getLogger("refmesh.directory")


def serial_file_of(settings: GatewaySettings | AgentSettings) -> Path:
    """Where a gateway (beside its database) or a worker of a domain's agents (in its data
    directory, beside its state marks) keeps the highest directory serial it has seen."""
    if isinstance(settings, AgentSettings):
        return Path(settings.data_dir) / settings.worker_id / SERIAL_FILE
    database = Path(settings.database)
    return database.with_name(f"{database.name}.{SERIAL_FILE}")


def read_serial(path: Path | None) -> int:
    """The highest serial kept in ``path`` (0 when there is no file yet)."""
    if path is None:
        return 0
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the highest directory serial in {path} ({exc}); "
                          "check its permissions") from None
    if not text.strip().isdigit():
        raise ConfigError(f"{path} should hold the highest directory serial seen (a number), "
                          f"not {text[:20]!r}; write the serial of the newest edition you "
                          "trust into it (refmesh directory verify shows it)")
    return int(text)


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time (for operators' messages)."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class DirectoryRef:
    """The signed directory in force: the newest edition of its file that verifies against the
    trust anchor, re-read when the file changes, never older than the highest serial seen.

    Call it to get the edition in force. With ``serial_file`` the highest serial seen is kept
    across restarts (a number, mode 0600, replaced whole): an older edition is refused at start
    (DirectoryError, reason stale: the process exits with one error line) and at reload (the
    edition in force stays, and ``problems`` names the refused file). An expired edition is not
    a start failure (a crash loop would help nobody): it stays in force but stops new traffic,
    ``stop_reason`` says why until a newer edition is placed, and the edges pause on it
    (kafkaedge.directory_gate). The decisions are the core's (refmesh.directory
    ``expiry_problem`` and ``rollback_problem``); ``clock`` is epoch milliseconds.
    """

    def __init__(self, path: str | Path, anchor: directory.TrustAnchor, *,
                 serial_file: str | Path | None = None, clock=None,
                 recheck_s: float = 1.0) -> None:
        self.path, self.anchor = Path(path), anchor
        self.serial_file = None if serial_file is None else Path(serial_file)
        self.clock, self.recheck_s = clock or now_ms, recheck_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self.last_error: str | None = None  # a refused file, while the edition in force stays
        self._stopped: str | None = None  # the stop reason last logged
        self.floor = read_serial(self.serial_file)
        self._seen = self._stamp()  # before reading: a file replaced meanwhile is read again
        edition = directory.verify(read_bytes(self.path, "directory"), anchor)
        stale = directory.rollback_problem(edition.serial, self.floor)
        if stale is not None:
            raise DirectoryError(self._refusal(stale), "stale")
        self.current = edition
        self._raise_floor(edition.serial)

    @classmethod
    def of(cls, settings: GatewaySettings | AgentSettings) -> "DirectoryRef":
        """The directory of a gateway's or a domain worker's settings, with its serial file."""
        return cls(settings.directory, load_anchor(settings.anchor),
                   serial_file=serial_file_of(settings))

    def __call__(self) -> directory.TrustedDirectory:
        now = time.monotonic()
        if now - self._checked >= self.recheck_s:
            with self._lock:
                self._checked = now
                self._maybe_reload()
        return self.current

    def stop_reason(self) -> str | None:
        """Why no new traffic may flow now (the edition in force has expired), with the fix;
        None while it may. A changed file is read first, so a newer edition ends the stop."""
        trusted = self()
        reason = directory.expiry_problem(trusted.expires_at, self.clock(), trusted.serial,
                                          shown=iso(trusted.expires_at))
        if reason is not None:
            reason = (f"{reason} (the coordinator signs one with `refmesh directory sign`; "
                      f"place it at {self.path}); no new traffic until then")
        if reason != self._stopped:
            if reason is None:
                log.info("directory serial %d in force: traffic resumes", trusted.serial)
            else:
                log.error("%s", reason)
            self._stopped = reason
        return reason

    def problems(self) -> list[str]:
        """What /healthz says about the directory: an expired edition, a refused file."""
        return [p for p in (self.stop_reason(), self.last_error) if p is not None]

    def _stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refusal(self, problem: str) -> str:
        kept = "" if self.serial_file is None else \
            f" (the highest serial seen is kept in {self.serial_file})"
        return f"directory file {self.path}: {problem}{kept}"

    def _raise_floor(self, serial: int) -> None:
        """Keep ``serial`` as the highest seen, when it is higher."""
        if self.serial_file is None or serial <= self.floor:
            return
        try:
            self.serial_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_file(self.serial_file, f"{serial}\n".encode(), mode=0o600)
        except OSError as exc:
            raise ConfigError(f"cannot keep the highest directory serial {serial} in "
                              f"{self.serial_file} ({exc.strerror or exc}); check the folder's "
                              "permissions and free space") from None
        self.floor = serial

    def _maybe_reload(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp == self._seen:
            return
        self._seen = stamp
        before, kept = self.last_error, f"; serial {self.current.serial} stays in force"
        try:
            edition = directory.verify(self.path.read_bytes(), self.anchor)
        except OSError as exc:
            self.last_error = (f"directory file {self.path} cannot be read "
                               f"({exc.strerror or exc}){kept}")
        except DirectoryError as exc:
            self.last_error = f"directory file {self.path} refused: {exc}{kept}"
        else:
            stale = directory.rollback_problem(edition.serial,
                                               max(self.floor, self.current.serial))
            if stale is not None:
                self.last_error = self._refusal(stale) + kept
            else:
                if edition.serial != self.current.serial:
                    log.info("directory serial %d in force (was %d)", edition.serial,
                             self.current.serial)
                self.current, self.last_error = edition, None
                try:
                    self._raise_floor(edition.serial)
                except ConfigError as exc:
                    self.last_error = f"{exc}: a restart could go back to an older edition"
        if self.last_error is not None and self.last_error != before:
            log.error("%s", self.last_error)


def write_file(path: str | Path, data: bytes, *, mode: int = 0o600,
               overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` created with ``mode`` (0600 unless the file is public).

    Without ``overwrite`` an existing file is an error (O_EXCL, no race). With it, the data goes
    to a temporary file that replaces ``path`` only once complete, so a reader never sees half a
    file and a replaced file takes ``mode`` rather than keeping the old one. A path that is not a
    regular file (/dev/stdout, a pipe) is written to, never replaced.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: the directory {path.parent} does not exist; "
                          "create it first")
    if not overwrite:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(path, "wb") as out:
            out.write(data)
        return path
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_settings_file(path: str | Path):
    """The YAML document of a settings file ({} when empty); errors name the file."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"settings file {path} is a directory: give the YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from None


def load_settings(path: str | Path, cls, overrides: dict | None = None):
    """Read a YAML settings file and build the frozen settings object (errors name the file)."""
    mapping = read_settings_file(path)
    if isinstance(mapping, dict):
        mapping.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, mapping, source=path)


def load_any_settings(path: str | Path) -> GatewaySettings | AgentSettings | ClientSettings:
    """A gateway's or a domain's agents' settings file, told apart by what it names: ``agency``
    (GatewaySettings) or ``domain`` (AgentSettings); or a client file that holds nothing but
    ``bootstrap``, ``broker`` and ``security`` (ClientSettings). For commands that need only
    what all share: bootstrap, broker, security."""
    mapping = read_settings_file(path)
    if isinstance(mapping, dict) and "domain" in mapping:
        return build(AgentSettings, mapping, source=path)
    client_keys = {f.name for f in dataclasses.fields(ClientSettings)}
    if isinstance(mapping, dict) and mapping and set(mapping) <= client_keys:
        return build(ClientSettings, mapping, source=path)
    if isinstance(mapping, dict) and "agency" not in mapping:
        raise ConfigError(f"settings file {path} names neither an agency (a gateway's settings) "
                          "nor a domain (the agents' settings), and holds more than a client's "
                          f"{', '.join(sorted(client_keys))}; give one of those files")
    return build(GatewaySettings, mapping, source=path)  # (build names a non-mapping)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
