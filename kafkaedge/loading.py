"""Reading an agency's files: keystore, trust anchor, signed directory (edge I/O for the core)."""
from __future__ import annotations

import dataclasses
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


class DirectoryRef:
    """The current trusted directory, re-read when its file changes (never to an older serial).

    Call it to get the directory; a replaced file that fails verification is refused and the
    previous edition stays in force (the error is logged by the caller via ``last_error``).
    """

    def __init__(self, path: str | Path, anchor: directory.TrustAnchor) -> None:
        self.path, self.anchor = Path(path), anchor
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        self.last_error: str | None = None
        self.current = directory.load(read_bytes(self.path, "directory"), anchor, now_ms())
        self._mtime = self.path.stat().st_mtime

    def __call__(self) -> directory.TrustedDirectory:
        now = time.monotonic()
        if now - self._checked > 1.0:
            with self._lock:
                self._checked = now
                self._maybe_reload()
        return self.current

    def _maybe_reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime and now_ms() < self.current.expires_at:
                return
            self._mtime = mtime
            self.current = directory.load(self.path.read_bytes(), self.anchor, now_ms(),
                                          min_serial=self.current.serial)
            self.last_error = None
        except (OSError, DirectoryError) as exc:
            self.last_error = str(exc)



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
