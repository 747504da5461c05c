"""Kafka client settings per broker kind, as data: one profile in, client config dicts out.

The same gateway and agent code runs on the embedded Tansu broker (tests, demo) and on Apache
Kafka (production). Everything that differs between the two lives in a ``ClientProfile``;
the ``*_config`` functions turn a profile plus a bootstrap address and optional TLS/SASL
settings into keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and
KafkaAdminClient, and ``faust_broker_settings`` into faust.Settings keywords.
See shared/BROKER.md for the measurements behind the EMBEDDED numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: TLS/SASL options passed straight through to the clients (production Kafka needs them;
#: Tansu cannot switch TLS on, so they are only checked by name and value here).
SECURITY_KEYS = frozenset({
    "security_protocol", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
    "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
})
#: Names the environment variable holding the SASL password, so that the settings file need
#: not hold it; resolved here into sasl_plain_password.
PASSWORD_ENV = "sasl_plain_password_env"
SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
SASL_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})


@dataclass(frozen=True)
class ClientProfile:
    """Broker-specific client settings; build one, never mutate it."""

    name: str
    enable_idempotence: bool
    batch_size: int            # kafka-python producer batch size in bytes; 0 = one record each
    linger_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    rebalance_timeout_ms: int  # faust only: kafka-python uses max_poll_interval_ms for this
    max_poll_interval_ms: int
    isolation_level: str
    faust_max_batch_size: int  # aiokafka max_batch_size in bytes; 1 = one record each
    max_in_flight: int = 5     # produce requests in flight per connection
    fetch_max_wait_ms: int = 500  # how long a fetch may wait for data (kafka-python default)
    acks: str = "all"
    request_timeout_ms: int = 30000
    delivery_timeout_ms: int = 120000
    #: faust's processing guarantee: exactly_once needs transactions (Apache Kafka only)
    processing_guarantee: str = "at_least_once"
    #: the gateway inbox gathers the events arriving this long after a poll's into its commit
    #: (gateways/inbox.py); 0 on Tansu, whose fetches wait out fetch_max_wait_ms anyway
    inbox_gather_ms: int = 0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"profile {self.name!r}: heartbeat_interval_ms ({self.heartbeat_interval_ms}) "
                f"must be at most a third of session_timeout_ms ({self.session_timeout_ms}), "
                "or one missed heartbeat evicts the member")
        if self.batch_size < 0 or self.faust_max_batch_size < 1 or self.max_in_flight < 1:
            raise ValueError(f"profile {self.name!r}: batch_size must be >= 0, "
                             "faust_max_batch_size and max_in_flight >= 1")
        if self.isolation_level not in ("read_committed", "read_uncommitted"):
            raise ValueError(f"profile {self.name!r}: isolation_level must be "
                             "'read_committed' or 'read_uncommitted'")
        if self.processing_guarantee not in ("at_least_once", "exactly_once"):
            raise ValueError(f"profile {self.name!r}: processing_guarantee must be "
                             "'at_least_once' or 'exactly_once'")
        if self.processing_guarantee == "exactly_once" and (
                not self.enable_idempotence or self.isolation_level != "read_committed"):
            raise ValueError(f"profile {self.name!r}: exactly_once needs enable_idempotence "
                             "and isolation_level 'read_committed' (readers must not see "
                             "aborted transactions)")


#: Tansu 0.6.0. No idempotence: aiokafka fails outright and kafka-python's producer gets stuck
#: with UnknownProducerIdError after a broker restart. One record per produce batch
#: (batch_size=0 here, faust/aiokafka max_batch_size=1) because Tansu reports a partition's end
#: offset as "first offset of the last batch + 1": with multi-record batches seek_to_end, lag
#: and faust table recovery go wrong. One request in flight: without idempotence a retried
#: request could overtake the next one and reorder a key's records (a consent revocation
#: before its grant); production keeps that order through idempotence. Measured cost on 2
#: cores: about 2,800 instead of 6,000 records/s of 1 KB. Short session/heartbeat: a group
#: join takes about half the session timeout (3.0 s here; over 20 s with the defaults).
#: read_uncommitted because Tansu has no transactions, so there is nothing to wait for; for the
#: same reason the agents run at_least_once (faust's exactly_once dies at start on Tansu), so a
#: worker killed mid-event forwards that event again and recipients drop it by delivery key.
EMBEDDED = ClientProfile(
    name="embedded", enable_idempotence=False, batch_size=0, linger_ms=0,
    session_timeout_ms=6000, heartbeat_interval_ms=1000, rebalance_timeout_ms=6000,
    max_poll_interval_ms=300000, isolation_level="read_uncommitted", faust_max_batch_size=1,
    max_in_flight=1, request_timeout_ms=10000, delivery_timeout_ms=30000,
    # Tansu does not answer a waiting fetch when data arrives: it waits out fetch_max_wait_ms.
    # 100 ms bounds the added latency per hop; faust hard-codes 1500 ms (agents/forward.py).
    fetch_max_wait_ms=100,
)

#: Apache Kafka in production: idempotent producer (no duplicates or reordering on retry),
#: normal batching with a short linger, a 10 s session (a crashed gateway's or worker's
#: partitions move within 10 s; Kafka's own default is 45 s), faust's exactly_once (an event's
#: forwards, table writes, audit record and offset commit are one transaction: measured, no
#: event forwarded twice when the worker is SIGKILLed; agents/forward.py) and read_committed,
#: so that gateways and agents never see the records of an aborted transaction.
APACHE = ClientProfile(
    name="apache", enable_idempotence=True, batch_size=262144, linger_ms=5,
    session_timeout_ms=10000, heartbeat_interval_ms=3000, rebalance_timeout_ms=20000,
    max_poll_interval_ms=300000, isolation_level="read_committed", faust_max_batch_size=16384,
    processing_guarantee="exactly_once", inbox_gather_ms=10,
)

#: The profile of each broker kind (refmesh.settings.BROKER_KINDS).
PROFILES = {"embedded": EMBEDDED, "apache": APACHE}


def validate_security(security: dict | None) -> dict:
    """Return a copy of the TLS/SASL passthrough options after checking names and values."""
    security = dict(security or {})
    if PASSWORD_ENV in security:
        name = security.pop(PASSWORD_ENV)
        if "sasl_plain_password" in security:
            raise ValueError(f"give either sasl_plain_password or {PASSWORD_ENV}, not both")
        if not isinstance(name, str) or not os.environ.get(name):
            raise ValueError(f"{PASSWORD_ENV} names the environment variable {name!r}, which "
                             "is not set: export the SASL password there")
        security["sasl_plain_password"] = os.environ[name]
    unknown = sorted(set(security) - SECURITY_KEYS)
    if unknown:
        raise ValueError(f"unknown security option(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(sorted(SECURITY_KEYS | {PASSWORD_ENV}))}")
    protocol = security.get("security_protocol", "PLAINTEXT")
    if protocol not in SECURITY_PROTOCOLS:
        raise ValueError(f"security_protocol {protocol!r} is not one of "
                         f"{', '.join(sorted(SECURITY_PROTOCOLS))}")
    mechanism = security.get("sasl_mechanism")
    if mechanism is not None and mechanism not in SASL_MECHANISMS:
        raise ValueError(f"sasl_mechanism {mechanism!r} is not one of "
                         f"{', '.join(sorted(SASL_MECHANISMS))}")
    if mechanism is not None and not protocol.startswith("SASL_"):
        raise ValueError(f"sasl_mechanism is set but security_protocol is {protocol!r}: "
                         "use SASL_SSL (or SASL_PLAINTEXT on a trusted network)")
    return security


def _common(bootstrap: str, security: dict | None, profile: ClientProfile) -> dict:
    if not bootstrap or not isinstance(bootstrap, str):
        raise ValueError(f"bootstrap must be 'host:port[,host:port...]', got {bootstrap!r}")
    config = {"bootstrap_servers": bootstrap,
              "request_timeout_ms": profile.request_timeout_ms}
    config.update(validate_security(security))
    return config


def producer_config(profile: ClientProfile, bootstrap: str,
                    security: dict | None = None) -> dict:
    """KafkaProducer keyword arguments. Topics are never auto-created: pre-create them all."""
    config = _common(bootstrap, security, profile)
    config.update(
        acks=profile.acks, enable_idempotence=profile.enable_idempotence,
        batch_size=profile.batch_size, linger_ms=profile.linger_ms,
        max_in_flight_requests_per_connection=profile.max_in_flight,
        delivery_timeout_ms=profile.delivery_timeout_ms, allow_auto_create_topics=False,
    )
    return config


def consumer_config(profile: ClientProfile, bootstrap: str, group_id: str,
                    security: dict | None = None) -> dict:
    """KafkaConsumer keyword arguments for a group member that commits offsets itself.

    Auto-commit is off: the caller commits an offset only after the work for it is durable.
    ``earliest`` because "latest" depends on end offsets, which Tansu gets wrong, and because a
    new group must not skip referrals produced before it joined.
    """
    if not group_id or not isinstance(group_id, str):
        raise ValueError(f"group_id must be a non-empty string, got {group_id!r}")
    config = _common(bootstrap, security, profile)
    config.update(
        group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level=profile.isolation_level,
        session_timeout_ms=profile.session_timeout_ms,
        heartbeat_interval_ms=profile.heartbeat_interval_ms,
        max_poll_interval_ms=profile.max_poll_interval_ms, allow_auto_create_topics=False,
        fetch_max_wait_ms=profile.fetch_max_wait_ms,
    )
    return config


def admin_config(profile: ClientProfile, bootstrap: str,
                 security: dict | None = None) -> dict:
    """KafkaAdminClient keyword arguments."""
    return _common(bootstrap, security, profile)


def faust_broker_settings(profile: ClientProfile) -> dict:
    """faust.Settings keywords for the broker side (faust-streaming 0.15 names; times in s).

    faust.Settings accepts unknown keywords silently, so the unit tests check every name here
    against faust's Settings class.
    """
    return {
        "broker_session_timeout": profile.session_timeout_ms / 1000,
        "broker_heartbeat_interval": profile.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": profile.rebalance_timeout_ms / 1000,
        "producer_max_batch_size": profile.faust_max_batch_size,
        # the agent awaits each record's acknowledgement (agents/forward.py): a linger would
        # only hold every record back; its records still share a request when several wait
        "producer_linger": 0.0,
        "producer_acks": -1 if profile.acks == "all" else int(profile.acks),
        "processing_guarantee": profile.processing_guarantee,
        "consumer_auto_offset_reset": "earliest",
    }
