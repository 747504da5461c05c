"""What only Apache Kafka does, on the session's secured Apache Kafka broker: TLS and SASL in
front of every client, a clear error for wrong credentials."""
from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from kafkaedge import profiles
from kafkaedge.credentials import CredentialsError
from kafkaedge.topics import TopicError, TopicSpec, ensure_topics
from tests.integration.conftest import apache_only

pytestmark = apache_only


def test_a_wrong_password_is_one_clear_error_naming_the_user(kafka, unique):
    user = f"agency.XX.NGO.T{unique.upper()}"
    security = kafka.security_for(user)
    security["sasl_plain_password"] = "not-the-password"
    config = profiles.admin_config(kafka.profile, kafka.bootstrap, security)
    config["bootstrap_timeout_ms"] = 20000  # a ceiling: the refusal comes with the handshake
    with pytest.raises(CredentialsError) as refused:
        ensure_topics(config, [TopicSpec(f"it-never-{unique}", 1)])
    message = str(refused.value)
    assert "\n" not in message and user in message and "refused the credentials" in message
    assert "sasl_plain_password_env" in message


def test_a_client_without_tls_and_sasl_gets_nothing(kafka, unique):
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=kafka.bootstrap, bootstrap_timeout_ms=3000,
                         request_timeout_ms=3000).list_topics()


def test_a_user_without_acls_can_neither_create_nor_see_topics(kafka, unique):
    user = f"agency.XX.NGO.U{unique.upper()}"
    config = profiles.admin_config(kafka.profile, kafka.bootstrap, kafka.security_for(user))
    with pytest.raises(TopicError, match="TopicAuthorizationFailedError"):
        ensure_topics(config, [TopicSpec(f"it-denied-{unique}", 1)])
    ensure_topics(kafka.admin_config(), [TopicSpec(f"it-exists-{unique}", 1)])
    admin = KafkaAdminClient(**config)
    try:
        assert f"it-exists-{unique}" not in admin.list_topics()
    finally:
        admin.close()


def test_a_cluster_id_that_starts_with_a_dash_formats(kafka, tmp_path, monkeypatch):
    """A random cluster id is URL-safe base64, so 1 in 64 starts with '-', which Kafka's
    storage tool once read as an option (seen in CI): it is passed as --cluster-id=<id>."""
    import uuid

    from devmesh import apache

    dash = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 of 0xF8... starts with '-'
    monkeypatch.setattr(apache.uuid, "uuid4", lambda: dash)
    broker = apache.ApacheBroker(tmp_path / "node", security=False)
    broker.start()
    try:
        assert broker.bootstrap
    finally:
        broker.stop()
