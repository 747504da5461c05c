"""How ``kafkaedge.credentials`` tells a refused SASL login from kafka-python's log: the
library logs the broker's refusal only sometimes (it drops an error response read together
with the close), so a connection closed after TLS and before its login completed counts too;
and the watching changes nothing the application's own logging shows."""
from __future__ import annotations

import logging

from kafkaedge.credentials import _Listen

TRANSPORT, CONNECTION = "kafka.net.transport", "kafka.net.connection"
CONNECTED = "<KafkaSSLTransport [127.0.0.1:9093<-5001]>: connected to <ssl.SSLSocket fd=12>"
DROPPED = "<KafkaSSLTransport [127.0.0.1:9093<-5001]>: socket disconnected"
LOGGED_IN = "<KafkaConnection node_id=bootstrap-0>: Authenticated as u via SASL / SCRAM"


def record(name: str, level: int, text: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, text, None, None)


def watched(*lines: tuple[str, int, str], floors=None) -> _Listen:
    listener = _Listen(floors or {TRANSPORT: logging.WARNING, CONNECTION: logging.WARNING})
    for line in lines:
        listener.filter(record(*line))
    return listener


def test_a_connection_closed_during_its_login_is_a_refusal():
    assert watched((TRANSPORT, logging.INFO, CONNECTED),
                   (TRANSPORT, logging.ERROR, DROPPED)).refused


def test_the_brokers_own_refusal_is_one_when_it_is_logged():
    refusal = ("Abort ([Error 58] SaslAuthenticationFailedError: Authentication failed during "
               "authentication)")
    assert watched((TRANSPORT, logging.ERROR, refusal)).refused


def test_a_connection_lost_after_its_login_or_before_tls_is_not():
    assert not watched((TRANSPORT, logging.INFO, CONNECTED),
                       (CONNECTION, logging.INFO, LOGGED_IN),
                       (TRANSPORT, logging.ERROR, DROPPED)).refused
    assert not watched((TRANSPORT, logging.ERROR, DROPPED)).refused  # no TLS: unreachable


def test_only_what_each_logger_showed_before_passes_on():
    listener = _Listen({TRANSPORT: logging.WARNING, CONNECTION: logging.ERROR})
    assert not listener.filter(record(TRANSPORT, logging.INFO, CONNECTED))
    assert listener.filter(record(TRANSPORT, logging.WARNING, "Bootstrap not ready"))
    assert not listener.filter(record(CONNECTION, logging.WARNING, "throttled"))
    assert listener.filter(record(CONNECTION, logging.ERROR, "Connection lost"))
