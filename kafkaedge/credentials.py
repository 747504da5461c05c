"""Connect to the brokers as the settings say, and say plainly when they refuse who we are.

kafka-python retries a connection whose SASL handshake failed until its bootstrap timeout runs
out, and then reports only "Unable to bootstrap". The handshake's own error is logged on the
way; ``admin_client`` listens for it and turns it into one clear ``CredentialsError`` that names
the broker, the user and what to check.
"""
from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from refmesh.errors import MeshError

_AUTH_FAILURES = ("SaslAuthenticationFailedError", "Authentication failed")


class CredentialsError(MeshError, PermissionError):
    """The brokers refused this client's credentials (wrong user or password)."""


class _Listen(logging.Handler):
    """Remembers whether kafka-python logged a failed SASL handshake."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.refused = False

    def emit(self, record: logging.LogRecord) -> None:
        if any(marker in record.getMessage() for marker in _AUTH_FAILURES):
            self.refused = True


def refused_message(config: dict) -> str:
    user = config.get("sasl_plain_username", "(none)")
    return (f"the brokers at {config.get('bootstrap_servers')} refused the credentials of SASL "
            f"user {user!r} ({config.get('sasl_mechanism', 'PLAIN')}): check "
            f"security.sasl_plain_username and the password (security.sasl_plain_password_env "
            f"names the environment variable that holds it)")


def admin_client(config: dict) -> KafkaAdminClient:
    """A KafkaAdminClient for ``config``; CredentialsError if the brokers refuse the SASL
    credentials, the library's KafkaError for anything else."""
    listener = _Listen()
    loggers = [logging.getLogger(name) for name in ("kafka.net", "kafka.conn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(listener)
        if logger.getEffectiveLevel() > logging.ERROR:
            logger.setLevel(logging.ERROR)
    try:
        return KafkaAdminClient(**config)
    except KafkaError as exc:
        if listener.refused:
            raise CredentialsError(refused_message(config)) from exc
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(listener)
            logger.setLevel(level)
