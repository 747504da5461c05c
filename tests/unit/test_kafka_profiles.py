"""Client profiles turn into the right kafka-python and faust settings (no broker)."""

from __future__ import annotations

import dataclasses

import pytest
from faust.types.settings import Settings
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from kafkaedge.profiles import (APACHE, EMBEDDED, SECURITY_KEYS, ClientProfile, admin_config,
                            consumer_config, faust_broker_settings, producer_config)

BOOT = "127.0.0.1:9092"
TLS_SASL = {
    "security_protocol": "SASL_SSL", "ssl_cafile": "/etc/refmesh/ca.pem",
    "ssl_certfile": "/etc/refmesh/agency.pem", "ssl_keyfile": "/etc/refmesh/agency.key",
    "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "agency-a",
    "sasl_plain_password": "secret",
}


def test_embedded_producer_sends_one_record_per_batch_without_idempotence():
    config = producer_config(EMBEDDED, BOOT)
    assert config["bootstrap_servers"] == BOOT
    assert config["enable_idempotence"] is False
    assert config["batch_size"] == 0
    assert config["acks"] == "all"
    assert config["max_in_flight_requests_per_connection"] == 1
    assert config["allow_auto_create_topics"] is False


def test_apache_producer_is_idempotent_and_batches():
    config = producer_config(APACHE, BOOT)
    assert config["enable_idempotence"] is True
    assert config["batch_size"] > 0 and config["linger_ms"] > 0
    assert config["acks"] == "all"


@pytest.mark.parametrize("profile", [EMBEDDED, APACHE])
def test_consumer_commits_by_hand_from_earliest(profile):
    config = consumer_config(profile, BOOT, "agency-a-inbox")
    assert config["group_id"] == "agency-a-inbox"
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
    assert config["session_timeout_ms"] == profile.session_timeout_ms
    assert config["heartbeat_interval_ms"] == profile.heartbeat_interval_ms


def test_embedded_group_timeouts_are_short_and_isolation_fits_the_broker():
    assert consumer_config(EMBEDDED, BOOT, "g")["session_timeout_ms"] == 6000
    assert consumer_config(EMBEDDED, BOOT, "g")["heartbeat_interval_ms"] == 1000
    assert consumer_config(EMBEDDED, BOOT, "g")["isolation_level"] == "read_uncommitted"
    assert consumer_config(APACHE, BOOT, "g")["isolation_level"] == "read_committed"


@pytest.mark.parametrize("profile", [EMBEDDED, APACHE])
def test_every_key_is_a_kafka_python_setting(profile):
    assert set(producer_config(profile, BOOT, TLS_SASL)) <= set(KafkaProducer.DEFAULT_CONFIG)
    assert set(consumer_config(profile, BOOT, "g", TLS_SASL)) <= set(KafkaConsumer.DEFAULT_CONFIG)
    assert set(admin_config(profile, BOOT, TLS_SASL)) <= set(KafkaAdminClient.DEFAULT_CONFIG)


def test_security_options_pass_through_unchanged():
    for config in (producer_config(APACHE, BOOT, TLS_SASL),
                   consumer_config(APACHE, BOOT, "g", TLS_SASL),
                   admin_config(APACHE, BOOT, TLS_SASL)):
        assert {k: config[k] for k in SECURITY_KEYS} == TLS_SASL


def test_unknown_security_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        admin_config(APACHE, BOOT, {"ssl_password": "x", "security_protocol": "SSL"})
    message = str(info.value)
    assert "'ssl_password'" in message
    assert all(key in message for key in SECURITY_KEYS)


def test_the_sasl_password_can_come_from_the_environment(monkeypatch):
    from_env = {**{k: v for k, v in TLS_SASL.items() if k != "sasl_plain_password"},
                "sasl_plain_password_env": "REFMESH_TEST_SASL_PASSWORD"}
    with pytest.raises(ValueError, match="REFMESH_TEST_SASL_PASSWORD.*not set"):
        producer_config(APACHE, BOOT, from_env)
    monkeypatch.setenv("REFMESH_TEST_SASL_PASSWORD", "synthetic-secret")
    config = producer_config(APACHE, BOOT, from_env)
    assert config["sasl_plain_password"] == "synthetic-secret"
    assert "sasl_plain_password_env" not in config
    with pytest.raises(ValueError, match="not both"):
        producer_config(APACHE, BOOT, {**TLS_SASL, "sasl_plain_password_env": "X"})


@pytest.mark.parametrize("security, fragment", [
    ({"security_protocol": "TLS"}, "security_protocol 'TLS'"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism 'GSSAPI'"),
    ({"security_protocol": "SSL", "sasl_mechanism": "PLAIN"}, "use SASL_SSL"),
])
def test_bad_security_values_are_rejected(security, fragment):
    with pytest.raises(ValueError, match=fragment):
        producer_config(APACHE, BOOT, security)


@pytest.mark.parametrize("bootstrap, group", [("", "g"), (None, "g"), (BOOT, ""), (BOOT, None)])
def test_missing_bootstrap_or_group_is_rejected(bootstrap, group):
    with pytest.raises(ValueError, match="must be"):
        consumer_config(EMBEDDED, bootstrap, group)


def test_faust_settings_use_real_faust_names():
    # faust.Settings silently accepts unknown keywords, so check each name exists.
    for profile in (EMBEDDED, APACHE):
        settings = faust_broker_settings(profile)
        assert all(hasattr(Settings, key) for key in settings), settings
        Settings(id="refmesh-test", **settings)


def test_faust_embedded_settings_match_broker_notes():
    settings = Settings(id="refmesh-test", **faust_broker_settings(EMBEDDED))
    assert settings.broker_session_timeout == 6
    assert settings.broker_heartbeat_interval == 1
    assert settings.broker_rebalance_timeout == 6
    assert settings.producer_max_batch_size == 1
    assert settings.processing_guarantee.value == "at_least_once"
    assert faust_broker_settings(APACHE)["producer_max_batch_size"] > 1


def test_faust_runs_exactly_once_on_apache_kafka_only():
    apache = Settings(id="refmesh-test", **faust_broker_settings(APACHE))
    assert apache.processing_guarantee.value == "exactly_once"
    assert faust_broker_settings(EMBEDDED)["processing_guarantee"] == "at_least_once"


@pytest.mark.parametrize("changes, words", [
    ({"processing_guarantee": "at_most_once"}, "processing_guarantee must be"),
    ({"enable_idempotence": False}, "exactly_once needs enable_idempotence"),
    ({"isolation_level": "read_uncommitted"}, "exactly_once needs enable_idempotence"),
])
def test_a_profile_that_cannot_run_exactly_once_is_refused(changes, words):
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(APACHE, **changes)


def test_profiles_are_frozen_and_checked_when_built():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EMBEDDED.batch_size = 16384  # type: ignore[misc]
    with pytest.raises(ValueError, match="a third of session_timeout_ms"):
        dataclasses.replace(EMBEDDED, heartbeat_interval_ms=3000)
    with pytest.raises(ValueError, match="isolation_level"):
        dataclasses.replace(APACHE, isolation_level="committed")
    assert isinstance(dataclasses.replace(EMBEDDED, name="copy"), ClientProfile)
