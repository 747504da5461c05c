"""One agency's gateway: keys, directory, store, outbox relay, inbox consumer and HTTP API.

``Gateway`` holds the parts and the two operations case workers use (submit a referral, change
a status); ``gateways.run`` serves it with the HTTP API until SIGINT/SIGTERM.
"""
from __future__ import annotations

import logging
import os
import threading
import uuid

from kafka import KafkaProducer

from kafkaedge import profiles
from gateways.inbox import Inbox
from kafkaedge.loading import DirectoryRef, load_keys, now_ms
from gateways.metrics import Metrics
from gateways.relay import Relay
from gateways.store import Store
from gateways.transport import check_files
from kafkaedge.topics import TopicSpec, ensure_topics
from refmesh import records, topology
from refmesh.access import gateway_group
from refmesh.errors import ConfigError, DirectoryError, MeshError, RecordError
from refmesh.loop import TransitionError
from refmesh.settings import GatewaySettings

log = logging.getLogger("refmesh.gateway")


def profile_of(settings) -> profiles.ClientProfile:
    return profiles.EMBEDDED if settings.broker == "embedded" else profiles.APACHE


def env_secret(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"set the {what} in the environment variable {name}")
    return value


class Paused(MeshError):
    """New traffic is stopped (the signed directory in force has expired): the API answers 503
    with this message, and nothing is accepted."""


class KafkaLink:
    """The gateway's producer, made when first needed and remade after the broker was lost, so
    that a gateway starts, and accepts submissions, while the broker is down. The first time it
    connects it makes sure the agency's own topics exist (pre-created, never auto-created)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.profile = profile_of(settings)
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                s, me = self.settings, self.settings.agency
                ensure_topics(profiles.admin_config(self.profile, s.bootstrap, s.security),
                              [TopicSpec(n, s.partitions) for n in
                               (topology.agency_inbox(me), topology.deadletter(me))])
                self._producer = KafkaProducer(**profiles.producer_config(
                    self.profile, s.bootstrap, s.security))
            return self._producer

    def reset(self) -> None:
        """Drop the producer after a failure; the next use makes a new one."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=1)

    def close(self) -> None:
        self.reset()


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        check_files(settings)  # a keystore or database others may read: no start
        self.keys = load_keys(settings.keystore, settings.agency, settings.passphrase_env)
        # the highest serial seen is kept beside the database: an older edition is refused
        self.directory = DirectoryRef.of(settings)
        self.directory().member(settings.agency)
        self.api_token = env_secret(settings.api_token_env, "API token")
        self.partition_secret = env_secret(settings.partition_secret_env,
                                           "partition secret").encode()
        self.store = Store(settings.database, settings.agency,
                           topology.domain_of(self.directory(), settings.agency),
                           remember_max=settings.replay_memory_max)
        self.metrics = Metrics(self.store.outbox_depth, self._lag, self.store.remembered,
                               settings.replay_memory_max)
        profile = profile_of(settings)
        self.kafka = KafkaLink(settings)
        self.relay = Relay(self.store, self.keys, self.directory, self.kafka, self.metrics,
                           settings)
        group = gateway_group(settings.agency)  # the group its ACLs name (refmesh.access)
        self.inbox = Inbox(self.store, self.keys, self.directory, profiles.consumer_config(
            profile, settings.bootstrap, group, settings.security), self.kafka,
            self.metrics, on_stored=self.relay.wake, gather_ms=profile.inbox_gather_ms,
            on_closed=self.relay.closed)

    def _lag(self) -> int:
        return self.inbox.lag

    def start(self) -> None:
        self.relay.start()
        self.inbox.start()
        log.info("gateway %s started (directory serial %d)", self.settings.agency,
                 self.directory().serial)

    def stop(self) -> None:
        self.inbox.stop()
        self.relay.stop()
        self.kafka.close()
        self.store.close()

    # --- what case workers do ---------------------------------------------------------------

    def _in_force(self) -> None:
        """Refuse new content while the directory stops traffic (a withdrawal or a status of
        what exists is kept and waits in the outbox instead: the person's decision is never
        refused, and the relay sends nothing until a newer edition is in force)."""
        reason = self.directory.stop_reason()
        if reason is not None:
            raise Paused(f"new referrals and consents are refused: {reason}; nothing was "
                         "accepted")

    def submit_referral(self, referral: dict) -> dict:
        """Validate and keep a referral from a case worker; it goes out through the outbox.

        The gateway fills in what it knows: referralId (if absent), senderAgency, createdAt.
        """
        if not isinstance(referral, dict):
            raise RecordError("Referral", "expected a JSON object")
        self._in_force()
        value = {"referralId": str(uuid.uuid4()), "createdAt": now_ms(), **referral,
                 "senderAgency": self.settings.agency}
        # the contract, then what fields mean (a birth date that is no date: 422, not dropped)
        checked = records.intake("Referral", value).to_dict()
        recipient = checked["recipientAgency"]
        if recipient == self.settings.agency:
            raise RecordError("Referral.recipientAgency", "cannot refer a case to yourself")
        try:
            self.directory().member(recipient)
        except DirectoryError as exc:
            raise RecordError("Referral.recipientAgency", str(exc)) from None
        key = topology.partition_key(self.partition_secret, checked["subjectId"])
        self.store.submit_referral(checked, key, now_ms())
        self.relay.wake()
        return checked

    def record_consent(self, consent: dict) -> dict:
        """Keep a consent recorded by a case worker and send it to the policy domain. The
        gateway fills in consentId, version 1, controller, validFrom and the Given event."""
        if not isinstance(consent, dict):
            raise RecordError("Consent", "expected a JSON object")
        self._in_force()
        now, me = now_ms(), self.settings.agency
        value = {"consentId": str(uuid.uuid4()), "version": 1, "validFrom": now,
                 "events": [{"type": "Given", "at": now, "channel": "InPerson",
                             "recordedBy": me}], **consent, "controller": me}
        checked = records.Consent.from_dict(value).to_dict()
        self.store.record_consent(checked, topology.partition_key(
            self.partition_secret, checked["subjectId"]), now)
        self.relay.wake()
        return checked

    def withdraw_consent(self, consent_id: str, channel: str = "InPerson") -> dict:
        """Record the person's withdrawal; the domain stops forwarding and asks every agency
        that received data about the person to erase it."""
        consent = self.store.consent(consent_id)
        if any(e["type"] == "Withdrawn" for e in consent["events"]):
            raise TransitionError(f"consent {consent_id} is already withdrawn")
        now = now_ms()
        event = {"type": "Withdrawn", "at": now, "channel": channel,
                 "recordedBy": self.settings.agency}
        checked = records.Consent.from_dict(
            {**consent, "events": [*consent["events"], event]}).to_dict()
        self.store.record_consent(checked, topology.partition_key(
            self.partition_secret, checked["subjectId"]), now)
        self.relay.wake()
        return checked

    def set_status(self, referral_id: str, state: str, reason: str | None = None,
                   detail: str | None = None, sender: str | None = None) -> dict:
        """``sender``: the referral's sender, needed only when two referrals share the id."""
        status = self.store.set_status(referral_id, state, reason, now_ms(), detail, sender)
        self.relay.wake()
        return status
