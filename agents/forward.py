"""The policy domain's forwarding agent.

A gateway never publishes a referral straight to another agency: it seals it for its policy
domain and publishes it on the domain's inbox topic. This agent opens each event there with the
domain's keys, reseals it for the next hop (the recipient's gateway when the recipient is in this
domain, else the recipient's own domain: domain to domain, as in a TRM) and publishes it with the
same Kafka record key (a keyed hash, never person data).

Two halves, as shared/STYLE.md asks:
- ``process`` is pure: bytes in, a decision value out (``Forward``, ``DeadLetter`` or
  ``Ignore``). Its steps are open -> check_origin -> [decide: consent and minimisation, a later
  issue] -> route -> seal; each step is a core call.
- ``Forwarder`` and ``create_app`` are the faust edge: one message in, one produce out, and the
  event is acknowledged (its offset may be committed) only after the broker acknowledged that
  produce.

At-least-once with faust-streaming 0.15.3 needs three things here (the first two seen in
experiments on the embedded broker, November 2026):
- a ``noack()`` stream acked by hand after the produce: with default acking, faust acks an event
  whose processing raised, restarts the agent and commits past the event;
- ``handle`` never lets an event fail while later ones go on: faust commits past an unacked
  offset as soon as a later one is acked (``Consumer._new_offset`` skips its head-gap check
  when nothing was committed yet and is off by one otherwise). So every event ends as a
  forward or a dead letter (an unexpected error included), a failed produce is retried in
  place, and the agent runs with concurrency 1;
- ``stream_wait_empty=False``: otherwise a worker told to stop (or to rebalance) first waits
  until every event it read is acked, and one whose produce is being retried (broker away)
  never is: seen as a worker that ignores SIGTERM. Cancelled instead, the event stays unacked
  and is read again after the restart (a duplicate, which recipients drop by delivery key).

Events that do not open, or that this agent may not forward, go to the domain's dead-letter
topic as they came (never plaintext) with the reason and source in headers.
"""
from __future__ import annotations

import asyncio
import logging
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import faust
from kafka.errors import KafkaError

from gateways import kafka as profiles
from gateways.loading import now_ms
from gateways.topics import TopicError, TopicSpec, ensure_topics
from refmesh import envelope, records, topology
from refmesh.directory import TrustedDirectory
from refmesh.envelope import Opened
from refmesh.errors import ConfigError, DirectoryError, RecordError, SealError
from refmesh.keys import AgencyKeys
from refmesh.settings import AgentSettings

log = logging.getLogger("refmesh.agents.forward")

FORWARDED = frozenset({"Referral"})  # record types this agent reseals for the next hop
IGNORED = frozenset({"Receipt"})  # receipts addressed to the domain need no action
#: publish(topic, key, value, headers): returns once the broker acknowledged the record
Publish = Callable[[str, bytes | None, bytes | None, list | None], Awaitable[None]]


# --- decisions (values, not exceptions) ----------------------------------------------------

@dataclass(frozen=True)
class Forward:
    """Publish ``value`` (the resealed envelope) on ``topic``."""

    topic: str
    value: bytes = field(repr=False)
    seal_for: str
    event_id: str
    record_type: str


@dataclass(frozen=True)
class DeadLetter:
    """Publish the event unchanged on the domain's dead-letter topic; ``reason`` goes in a header.

    ``event_id`` comes from the unverified clear header when the event did not open (for logs
    only), and is None when not even the header decodes.
    """

    reason: str
    event_id: str | None


@dataclass(frozen=True)
class Ignore:
    """Nothing to publish."""

    reason: str
    event_id: str
    record_type: str


Outcome = Forward | DeadLetter | Ignore


# --- the pure part -------------------------------------------------------------------------

def route(opened: Opened, directory: TrustedDirectory, domain: str) -> topology.Hop:
    """The next hop of an opened referral (raises DirectoryError for an unknown recipient)."""
    return topology.next_hop(directory, domain, opened.record["recipientAgency"])


def check_origin(opened: Opened, directory: TrustedDirectory, domain: str) -> str | None:
    """Why the envelope's signer may not speak for the referral's sender, or None if it may.

    The domain re-signs what it forwards, so it must not launder a forgery: an event is taken
    from the referral's own sender when that agency belongs to this domain (first hop), or from
    the sender's domain when that is another domain (domain to domain); from nobody else.
    """
    signer, claimed = opened.header["sender"], opened.record["senderAgency"]
    try:
        home = topology.domain_of(directory, claimed)
    except DirectoryError:
        return "unknown_sender_agency"
    if signer == claimed and home == domain:
        return None
    if signer == home and home != domain:
        return None
    return "sender_mismatch"


def _unverified_event_id(data: bytes) -> str | None:
    try:
        return envelope.read_header(data)["eventId"]
    except SealError:
        return None


def process(data: bytes, keys: AgencyKeys, directory: TrustedDirectory, now: int) -> Outcome:
    """Decide what to do with one event from the domain inbox; pure apart from key use."""
    try:
        opened = envelope.open(data, keys, directory, now)
    except SealError as exc:
        return DeadLetter(exc.reason, _unverified_event_id(data))
    event_id, record_type = opened.header["eventId"], opened.record_type
    if record_type in IGNORED:
        return Ignore("receipt_for_domain", event_id, record_type)
    if record_type not in FORWARDED:
        return DeadLetter("unexpected_type", event_id)
    try:
        record = records.from_dict(record_type, opened.record).to_dict()
    except RecordError:
        return DeadLetter("invalid_record", event_id)
    refusal = check_origin(opened, directory, keys.agency_id)
    if refusal is not None:
        return DeadLetter(refusal, event_id)
    # The consent and minimisation decision (a later issue) slots in here: decide(record,
    # consent, now) -> Allow(projected record) | Deny(reason), a Deny becoming a DeadLetter or
    # a refusal status; the sealed record below is then the projection, not ``record``.
    try:
        hop = route(opened, directory, keys.agency_id)
        sealed = envelope.seal(record_type, record, keys, hop.seal_for, directory, now,
                               event_id=event_id)
    except DirectoryError as exc:
        reason = "unknown_recipient" if exc.reason == "unknown_agency" else "no_recipient_key"
        return DeadLetter(reason, event_id)
    return Forward(hop.topic, sealed, hop.seal_for, event_id, record_type)


def sink_topics(directory: TrustedDirectory, domain: str) -> list[str]:
    """Every topic this domain can forward to under ``directory`` (for pre-creating them)."""
    return sorted({topology.next_hop(directory, domain, agency).topic
                   for agency in directory.members})


# --- the faust edge ------------------------------------------------------------------------

class Forwarder:
    """Handle one Kafka message: decide with ``process``, publish, wait for the acknowledgement.

    ``publish(topic, key, value, headers)`` must return only once the broker acknowledged the
    record. A failed produce (aiokafka's KafkaError, faust's ProducerSendError, a timeout, or
    anything else) is retried with backoff for as long as it takes: a referral must not be
    dropped, and a partition that stops moving shows as consumer lag. Shutdown cancels the wait.
    """

    def __init__(self, keys: AgencyKeys, directory_ref: Callable[[], TrustedDirectory],
                 publish: Publish, *, clock: Callable[[], int] = now_ms,
                 retry_first_s: float = 0.5, retry_max_s: float = 10.0) -> None:
        self.keys, self.directory_ref, self.publish, self.clock = (
            keys, directory_ref, publish, clock)
        self.retry_first_s, self.retry_max_s = retry_first_s, retry_max_s
        self.deadletter_topic = topology.deadletter(keys.agency_id, "domain")
        self.counts: Counter[str] = Counter()  # forwarded / deadletter:<reason> / ignored

    async def handle(self, message) -> Outcome:
        """``message`` is a faust Message (topic, partition, offset, key, value)."""
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            outcome = process(message.value or b"", self.keys, self.directory_ref(),
                              self.clock())
        except Exception as exc:  # a bug must not lose the event: park it, loudly
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            # The exception's message may quote record values: log its type and place only.
            log.error("processing the event from %s failed with %s at %s:%d; dead-lettering "
                      "it", where, type(exc).__name__, frame.filename, frame.lineno)
            outcome = DeadLetter("internal_error", None)
        if isinstance(outcome, Forward):
            await self._deliver(outcome.topic, message.key, outcome.value, None, where,
                                outcome.event_id)
            self.counts["forwarded"] += 1
            log.info("forwarded %s event %s from %s to %s", outcome.record_type,
                     outcome.event_id, where, outcome.topic)
        elif isinstance(outcome, DeadLetter):
            headers = [("refmesh-reason", outcome.reason.encode()),
                       ("refmesh-source", where.encode())]
            await self._deliver(self.deadletter_topic, message.key, message.value, headers,
                                where, outcome.event_id)
            self.counts[f"deadletter:{outcome.reason}"] += 1
            log.warning("dead-lettered event %s from %s: %s", outcome.event_id or "(id unknown)",
                        where, outcome.reason)
        else:
            self.counts["ignored"] += 1
            log.debug("ignored %s event %s from %s (%s)", outcome.record_type, outcome.event_id,
                      where, outcome.reason)
        return outcome

    async def _deliver(self, topic: str, key, value, headers, where: str,
                       event_id: str | None) -> None:
        delay = self.retry_first_s
        while True:
            try:
                await self.publish(topic, key, value, headers)
                return
            except Exception as exc:  # noqa: BLE001 (retry whatever it is; dropping is worse)
                log.warning("produce to %s for event %s from %s failed (%s); retrying in "
                            "%.1f s", topic, event_id, where, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)


class FaustPublisher:
    """``publish`` over a faust app's producer: makes sure each new topic exists (never
    auto-created), sends, and waits for the broker's acknowledgement."""

    def __init__(self, app: faust.App, partitions: int,
                 ensure_topic: Callable[[str], Awaitable[bool]]) -> None:
        self.app, self.partitions, self.ensure_topic = app, partitions, ensure_topic
        self._topics: dict[str, faust.TopicT] = {}
        self._ensured: set[str] = set()

    def known(self, names) -> None:
        """Topics already created (by ``agents.run``): no need to check them again."""
        self._ensured.update(names)

    async def __call__(self, name: str, key, value, headers) -> None:
        if name not in self._ensured and await self.ensure_topic(name):
            self._ensured.add(name)
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.app.topic(
                name, partitions=self.partitions, internal=False)
        # Topic.send returns the producer's future; the second await is the acknowledgement.
        await (await topic.send(key=key, value=value, headers=headers))


def topic_ensurer(settings: AgentSettings) -> Callable[[str], Awaitable[bool]]:
    """``ensure_topic(name) -> bool`` creating a sink topic with explicit partitions, off the
    event loop (kafka-python's admin client blocks). A failure is logged and the send goes on:
    the topic may exist while this client may not create topics (production ACLs), and the
    produce itself fails and is retried if it does not."""
    admin = profiles.admin_config(profile_of(settings), settings.bootstrap, settings.security)

    async def ensure_topic(name: str) -> bool:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, ensure_topics, admin, [TopicSpec(name, settings.partitions)])
        except (TopicError, KafkaError) as exc:
            log.warning("could not make sure topic %s exists (%s); sending anyway", name, exc)
            return False
        return True

    return ensure_topic


def profile_of(settings: AgentSettings) -> profiles.ClientProfile:
    return profiles.EMBEDDED if settings.broker == "embedded" else profiles.APACHE


def app_id(domain: str) -> str:
    """faust app id, also the consumer group of the domain's workers."""
    return f"refmesh-domain-{domain.replace('/', '.')}"


def broker_url(bootstrap: str) -> str:
    """faust broker URL(s) for a kafka-python style ``host:port[,host:port]`` list."""
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


def _check_security(security: dict) -> None:
    # faust takes TLS/SASL as broker_credentials objects, and gateways/kafka.py has no adapter
    # for them yet: refuse rather than connect in plain text to a broker that expects TLS.
    try:
        options = profiles.validate_security(security)
    except ValueError as exc:
        raise ConfigError(f"agents settings: security: {exc}") from exc
    if {k: v for k, v in options.items() if (k, v) != ("security_protocol", "PLAINTEXT")}:
        raise ConfigError("agents settings: TLS/SASL options (security) are not wired to faust "
                          "yet; remove them or run the agents on a PLAINTEXT listener")


def bound_fetch_wait(wait_ms: int) -> None:
    """Make faust's consumers wait at most ``wait_ms`` for fetch data.

    faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` when it builds its aiokafka consumer, and
    the embedded broker (Tansu) answers a waiting fetch only when that wait runs out, even if
    data arrived: about 0.75 s added to every hop. faust offers no setting for it, so for the
    embedded profile only, the consumer class faust instantiates is replaced by a subclass that
    takes the profile's wait. Apache Kafka answers fetches as data arrives; nothing is patched
    there.
    """
    import aiokafka

    base = getattr(aiokafka.AIOKafkaConsumer, "_refmesh_base", aiokafka.AIOKafkaConsumer)

    class BoundedWaitConsumer(base):
        _refmesh_base = base

        def __init__(self, *args, **kwargs) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", wait_ms), wait_ms)
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = BoundedWaitConsumer


def create_app(settings: AgentSettings, keys: AgencyKeys,
               directory_ref: Callable[[], TrustedDirectory], *,
               clock: Callable[[], int] = now_ms,
               ensure_topic: Callable[[str], Awaitable[bool]] | None = None) -> faust.App:
    """The domain's faust app with its forwarding agent (named ``forward``).

    The source topic and the domain's dead-letter topic must exist before the worker starts
    (``agents.run`` creates them); sink topics are checked once each, see ``topic_ensurer``.
    ``app.forwarder`` and ``app.publisher`` are exposed for tests and metrics.
    """
    domain = settings.domain
    if keys.agency_id != domain:
        raise ConfigError(f"agents settings: domain is {domain} but the keystore holds "
                          f"{keys.agency_id}'s keys; point keystore at {domain}'s keystore")
    _check_security(settings.security)
    web = {"web_enabled": True, "web_port": settings.web_port, "web_bind": "127.0.0.1"} \
        if settings.web_port else {"web_enabled": False}
    if settings.broker == "embedded":
        bound_fetch_wait(profile_of(settings).fetch_max_wait_ms)
    app = faust.App(
        app_id(domain), broker=broker_url(settings.bootstrap),
        value_serializer="raw", key_serializer="raw",
        datadir=str(Path(settings.data_dir) / settings.worker_id),
        topic_partitions=settings.partitions,
        topic_disable_leader=True,  # no tables: the assignor's leader topic is not needed
        stream_wait_empty=False,  # see the module docstring
        **web, **profiles.faust_broker_settings(profile_of(settings)))
    source = app.topic(topology.domain_inbox(domain), partitions=settings.partitions,
                       internal=False, allow_empty=True)  # an empty value is dead-lettered
    publisher = FaustPublisher(app, settings.partitions,
                               ensure_topic or topic_ensurer(settings))
    forwarder = Forwarder(keys, directory_ref, publisher, clock=clock)

    async def forward(stream):  # concurrency 1: events of a partition one after the other
        async for event in stream.noack().events():
            outcome = await forwarder.handle(event.message)
            await stream.ack(event)
            yield outcome  # yielding lets faust's test context wait for the whole event

    app.agent(source, name="forward", concurrency=1)(forward)
    app.forwarder, app.publisher = forwarder, publisher
    return app
