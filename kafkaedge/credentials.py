"""Connect to the brokers as the settings say, and say plainly when they refuse who we are.

kafka-python retries a connection whose SASL handshake failed until its bootstrap timeout runs
out, and then reports only "Unable to bootstrap". The handshake's own error is logged on the
way, but only sometimes: Kafka sends the error and closes the connection right after it, and
kafka-python 3.0 drops a response that it reads together with the close, logging only "socket
disconnected" (most attempts on a busy machine). ``admin_client`` watches the library's log for
either sign, a refused login or a connection that the broker closed after TLS and before the
login completed (nothing else closes it there), and turns it into one clear
``CredentialsError`` that names the broker, the user and what to check.
"""
from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from refmesh.errors import MeshError

_AUTH_FAILURES = ("SaslAuthenticationFailedError", "Authentication failed")
# the loggers that say how each connection goes: TLS, login, loss (kafka-python 3.0)
_LOGGERS = ("kafka.net.transport", "kafka.net.connection", "kafka.net.manager", "kafka.conn")


class CredentialsError(MeshError, PermissionError):
    """The brokers refused this client's credentials (wrong user or password)."""


class _Listen(logging.Filter):
    """Watches kafka-python's log for a refused SASL login: one filter on the library's
    loggers (lowered to INFO while it watches), so that it sees each connection's steps, and
    passes on only what each logger passed before (``floors``): the application's logs stay as
    they were."""

    def __init__(self, floors: dict[str, int]) -> None:
        super().__init__()
        self.floors = floors
        self.refused = False
        self._logging_in = False  # a connection through TLS, its login not completed yet

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(marker in text for marker in _AUTH_FAILURES):
            self.refused = True
        elif ": connected to " in text:
            self._logging_in = True
        elif ": Authenticated " in text:
            self._logging_in = False
        elif "socket disconnected" in text and self._logging_in:
            self.refused = True  # closed by the broker after TLS, before the login completed
        return record.levelno >= self.floors.get(record.name, logging.WARNING)


def refused_message(config: dict) -> str:
    user = config.get("sasl_plain_username", "(none)")
    return (f"the brokers at {config.get('bootstrap_servers')} refused the credentials of SASL "
            f"user {user!r} ({config.get('sasl_mechanism', 'PLAIN')}): check "
            f"security.sasl_plain_username and the password (security.sasl_plain_password_env "
            f"names the environment variable that holds it)")


def admin_client(config: dict) -> KafkaAdminClient:
    """A KafkaAdminClient for ``config``; CredentialsError if the brokers refuse the SASL
    credentials, the library's KafkaError for anything else."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    listener = _Listen({logger.name: logger.getEffectiveLevel() for logger in loggers})
    for logger in loggers:
        logger.addFilter(listener)
        logger.setLevel(logging.INFO)
    try:
        return KafkaAdminClient(**config)
    except KafkaError as exc:
        if "sasl_mechanism" in config and listener.refused:
            raise CredentialsError(refused_message(config)) from exc
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeFilter(listener)
            logger.setLevel(level)
