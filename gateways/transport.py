"""Files and transport of a gateway: the private files it refuses to start on, the TLS it serves
HTTPS with, and the Strict-Transport-Security header on every answer.

- The database (and its -wal and -shm files) and the agency's keystore must be private: a mode
  that gives the group or others any access stops the start with one ``error:`` line naming the
  file and ``chmod 600 <file>`` (kafkaedge.loading.check_private). The store creates new
  databases 0600 (gateways.store.connect), so only a file made some other way is refused. The
  TLS private key is held to the same rule.
- ``tls_cert`` and ``tls_key``: the gateway serves HTTPS itself (TLS 1.2 or newer).
- Whenever browsers reach the gateway over TLS, its own or a proxy's (``behind_tls_proxy``),
  cookies are ``Secure`` (gateways.web) and every answer carries HSTS. No request header (such as
  X-Forwarded-Proto) decides it: the operator's setting does.
"""
from __future__ import annotations

import ssl
from pathlib import Path

from aiohttp import web

from kafkaedge.loading import check_private, keystore_path
from refmesh.errors import ConfigError
from refmesh.settings import GatewaySettings

#: a year; no includeSubDomains (other hosts of the agency's domain are not the gateway's to
#: decide) and no preload
HSTS = "max-age=31536000"
DATABASE_HOLDS = "received referrals, consents and password hashes"


def check_files(settings: GatewaySettings) -> None:
    """Refuse to start on a keystore or database (or side file) others may read (the TLS key:
    ``server_tls``)."""
    check_private(keystore_path(settings.keystore, settings.agency), "keystore",
                  "the agency's private keys")
    for suffix in ("", "-wal", "-shm"):
        check_private(f"{settings.database}{suffix}", "gateway database file",
                      DATABASE_HOLDS)


def _encrypted(*_args) -> bytes:
    raise ConfigError("is encrypted: give the key unencrypted (PEM, mode 0600); a passphrase "
                      "prompt would stop an unattended start")


def server_tls(settings: GatewaySettings) -> ssl.SSLContext | None:
    """The TLS context to serve HTTPS with (None: plain HTTP, no ``tls_cert``)."""
    if not settings.tls_cert:
        return None
    for name, path in (("tls_cert", settings.tls_cert), ("tls_key", settings.tls_key)):
        if not Path(path).is_file():
            raise ConfigError(f"{name} {path} does not exist or is not a file; give the PEM "
                              "file's path")
    check_private(settings.tls_key, "TLS key (tls_key)", "the gateway's TLS private key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key, password=_encrypted)
    except ConfigError as exc:
        raise ConfigError(f"TLS key {settings.tls_key} {exc}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot serve HTTPS with tls_cert {settings.tls_cert} and tls_key "
                          f"{settings.tls_key} ({exc}); give the PEM certificate chain and "
                          "its matching private key") from None
    return context


def add_hsts(app: web.Application, settings: GatewaySettings) -> None:
    """Send Strict-Transport-Security on every answer (API, web page, errors) when browsers
    reach the gateway over TLS."""
    if not settings.served_over_tls:
        return

    async def hsts(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Strict-Transport-Security"] = HSTS

    app.on_response_prepare.append(hsts)
