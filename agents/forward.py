"""The policy domain's agent: consent, minimisation and forwarding, with an audit chain.

A gateway never publishes a referral straight to another agency: it seals it for its policy
domain and publishes it on the domain's inbox topic, keyed by a keyed hash of the person's
pseudonymous id. Consents travel the same topic with the same key, so a withdrawal is applied
before any later referral of that person (one partition, one order). For each event the agent
calls the pure ``refmesh.domain.handle`` and carries out the effects it returns: publish the
minimised, resealed referral (or a refusal status, receipts, erasure notices), write its tables
and append the decision to the audit chain.

The tables are faust Tables whose changelogs are the domain's compacted topics
``refmesh.domain.<D>.consents`` and ``.forwarded`` (values encrypted for the domain: the
broker is untrusted), ``.audit-heads``, ``.aggregate-counts`` (encrypted), ``.counted``
(keyed hashes of what was counted, so a re-send is counted once) and ``.seen`` (the event ids
accepted within the envelope's maximum age, encrypted: refmesh.replay); faust restores them from the changelog before the
worker processes anything, so a restart cannot forget a withdrawal (the embedded profile writes
one record per produce batch, which keeps the restore exact on Tansu: shared/BROKER.md).

Neither skipping nor repeating an event, with faust-streaming 0.15.3 (each point seen in
experiments, November and December 2026; docs/policy-domains.md, "Restarts"):
- the agent commits offsets itself, between two events, and only after the event's records
  were acknowledged (``noack()`` stream; faust's commit timer is off): with default acking
  faust acks an event whose processing raised and commits past it, its acknowledgement list
  commits past an unacked offset as soon as a later one is acked, and its timer commits in
  the middle of an event. So every event ends as a forward or a dead letter (an unexpected
  error included), a failed produce is retried in place, and the agent runs with
  concurrency 1;
- an offset guard (agents/offsets.py) re-reads what faust never handed over: after a restart
  faust drops events of a newly assigned partition that arrive before it seeks there;
- under ``exactly_once`` (the apache profile) every record of an event goes into the
  transaction of the event's partition, the one its offset commit ends (``FaustPublisher``;
  the audit checkpoints signed between events, on a timer and at a stop, go out on their own:
  agents/checkpoints.py);
- ``stream_wait_empty=False``: otherwise a worker told to stop (or to rebalance) first waits
  until every event it read is acked, and one whose produce is being retried (broker away)
  never is: seen as a worker that ignores SIGTERM. Cancelled instead, the event's offset is
  not committed and the event is read again after the restart (under at_least_once a
  duplicate, which recipients drop by delivery key).

Events that do not open, or that this agent may not forward, go to the domain's dead-letter
topic as they came (never plaintext) with the reason and source in headers.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiokafka
import faust
from faust.types import TP
from kafka.errors import KafkaError

from agents.checkpoints import Checkpoints
from agents.offsets import OffsetGuard, PartitionReader
from agents.publisher import FaustPublisher, PartitionLost
from agents.state import Marks, PartitionHalted, StateGuard, table_map
from kafkaedge import profiles
from kafkaedge.directory_gate import wait_in_force
from kafkaedge.loading import now_ms
from kafkaedge.topics import TopicError, TopicSpec, ensure_topics
from refmesh import aggregate, audit, domain, offsets, topology
from refmesh.directory import TrustedDirectory
from refmesh.errors import ConfigError
from refmesh.policy import Policy
from refmesh.keys import AgencyKeys
from refmesh.settings import AgentSettings

log = logging.getLogger("refmesh.agents.forward")

#: faust's commit timer, switched off: the agent commits between two events itself
COMMIT_TIMER_OFF_S = 10 ** 9
#: group commit under exactly_once (refmesh.offsets.commit_now): at most this many events, or
#: events handled over this many ms, share one transaction commit; an event with none waiting
#: behind it is committed at once
GROUP_COMMIT_EVENTS = 200
GROUP_COMMIT_MS = 100

Publish = Callable[[str, "bytes | None", "bytes | None", "list | None"], Awaitable[None]]


def sink_topics(directory: TrustedDirectory, domain: str) -> list[str]:
    """Every topic this domain can write to under ``directory`` (for pre-creating them): next
    hops of referrals, and every agency's inbox (refusals, receipts, erasure requests)."""
    return sorted({topology.next_hop(directory, domain, agency).topic
                   for agency in directory.members}
                  | {topology.agency_inbox(agency) for agency in directory.members})


# --- the faust edge ------------------------------------------------------------------------

class Tables:
    """The agent's state: faust Tables (or plain dicts in tests), keys and values bytes."""

    def __init__(self, consents, forwarded, heads, counts, counted, seen, state_heads) -> None:
        self.consents, self.forwarded, self.heads = consents, forwarded, heads
        self.counts = counts  # "partition|window start" -> protected counts of that window
        self.counted = counted  # keyed hash of a counted delivery key -> its window start
        self.seen = seen  # accepted event ids and their expiry index (refmesh.replay)
        self.state_heads = state_heads  # partition -> its sealed head (refmesh.statehead)

    def all(self) -> tuple:
        """The tables in the order of ``topology.TABLES``."""
        return (self.consents, self.forwarded, self.heads, self.counts, self.counted,
                self.seen, self.state_heads)

    def view(self) -> domain.View:
        return domain.View(consent=self.consents.get, log=self.forwarded.get,
                           counted=self.counted.get, seen=self.seen.get)


class Forwarder:
    """Handle one Kafka message: ``refmesh.domain.handle`` decides, this carries it out.

    ``publish(topic, key, value, headers, partition, source=(topic, partition))`` must return
    only once the broker acknowledged the record, or under ``exactly_once`` once it is in the
    transaction of ``source``, the event's own partition (the commit waits for its
    acknowledgement: agents/publisher.py), and ``PartitionLost`` from it means the partition
    was revoked meanwhile: the event is left to its new owner, not retried. A failed produce
    (aiokafka's KafkaError, faust's ProducerSendError, a timeout, or anything else) is retried
    with backoff for as long as it takes: a referral must not be dropped, and a partition that
    stops moving shows as consumer lag. Shutdown cancels the wait. Order: publish, then tables,
    then audit; a crash in between means the event is handled again after the restart: under
    at_least_once recipients drop the duplicate by delivery key, under exactly_once the
    records of the unfinished event are in an aborted transaction that no reader sees.
    """

    def __init__(self, keys: AgencyKeys, directory_ref: Callable[[], TrustedDirectory],
                 policy: Policy, secret: bytes, publish, tables: Tables, *,
                 clock: Callable[[], int] = now_ms,
                 counting: domain.Counting = domain.Counting(),
                 partition_secret: bytes | None = None, partitions: int | None = None,
                 retry_first_s: float = 0.5, retry_max_s: float = 10.0,
                 checkpoint_every: int = 100, checkpoint_s: float = 60.0,
                 marks: Marks | None = None) -> None:
        self.keys, self.directory_ref, self.publish, self.clock = (
            keys, directory_ref, publish, clock)
        self.policy, self.secret, self.tables = policy, secret, tables
        self.counting = counting
        self.state = StateGuard(keys, secret, table_map(tables), marks or Marks(None),
                                self._final)
        self.partition_secret, self.partitions = partition_secret, partitions
        self.retry_first_s, self.retry_max_s = retry_first_s, retry_max_s
        self.deadletter_topic = topology.deadletter(keys.agency_id, "domain")
        self.audit_topic = topology.audit(keys.agency_id)
        self.checkpoint_topic = topology.audit_checkpoints(keys.agency_id)
        self.checkpoint_every, self.checkpoint_s = checkpoint_every, checkpoint_s
        # (seq, at) of the last checkpoint written per partition; after a restart the first
        # audit record of a partition writes one
        self.checkpointed: dict[int, tuple[int, int]] = {}
        # each partition's chain head after its last event whose records are committed (its
        # offset commit ended: ``committed``), the only heads signed between events
        # (agents/checkpoints.py); the event in hand's head and checkpoint, until then
        self.heads_committed: dict[int, audit.Head] = {}
        self._pending: dict[int, tuple[audit.Head, tuple[int, int] | None]] = {}
        self.counts: Counter[str] = Counter()  # by audit decision, and deadletter:<reason>

    def _final(self, window_start: int) -> bool:
        window = aggregate.window_of(window_start, self.counting.unit)
        return aggregate.final(window, self.clock(), self.counting.max_late_ms)

    async def handle(self, message) -> domain.Effects:
        """``message`` is a faust Message (topic, partition, offset, key, value).
        ``PartitionHalted`` if the partition's state was rolled back (agents/state.py)."""
        where = f"{message.topic}/{message.partition}@{message.offset}"
        halted = self.state.ready(message.partition)
        if halted is not None:
            raise PartitionHalted(halted)
        # an expired directory holds the event here, neither handled nor committed, until a
        # newer edition is in force (kafkaedge.directory_gate; docs/security-model.md, Directory
        # and suites)
        await wait_in_force(self.directory_ref, where)
        now = self.clock()
        try:
            ctx = domain.Context(self.keys, self.directory_ref(), self.policy, self.secret, now,
                                 self.counting, self.partition_secret, self.partitions)
            effects = domain.handle(message.value or b"", message.key, ctx, self.tables.view(),
                                    message.partition)
        except Exception as exc:  # a bug must not lose the event: park it, loudly
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            # The exception's message may quote record values: log its type and place only.
            log.error("processing the event from %s failed with %s at %s:%d; dead-lettering "
                      "it", where, type(exc).__name__, frame.filename, frame.lineno)
            effects = domain.Effects(None, deadletter="internal_error", audit=(
                {"event_id": "unknown", "decision": "DeadLettered", "reason": "internal_error"},))
        source = (message.topic, message.partition)
        for out in effects.publish:
            await self._deliver(out.topic, out.key, out.value, None, None, where,
                                effects.event_id, source)
        if effects.deadletter is not None:
            # cut to a size any producer can write: a broker may hold larger events than that,
            # and a dead letter that cannot be written would stop this worker for good
            key, value, headers = topology.dead_letter(message.key, message.value,
                                                       effects.deadletter, where)
            await self._deliver(self.deadletter_topic, key, value, headers, None, where,
                                effects.event_id, source)
            self.counts[f"deadletter:{effects.deadletter}"] += 1
            log.warning("dead-lettered event %s from %s: %s",
                        effects.event_id or "(id unknown)", where, effects.deadletter)
        # the table writes, after every record of the event is out; in this order, so that
        # a crash in between (at_least_once) recounts rather than loses, and decides the event
        # again (a second audit record at worst) rather than taking it for a re-send whose
        # first decision went unaudited (the accepted id last)
        writes: list[tuple[str, bytes, bytes | None]] = []
        if effects.consent_put is not None:
            writes.append(("consents", *effects.consent_put))
        if effects.log_put is not None:
            writes.append(("forwarded", *effects.log_put))
        if effects.counted is not None:
            writes += self._count(message.partition, *effects.counted)
        writes += await self._audit(effects, source, now, where)
        writes += [("seen", key, value) for key, value in effects.seen_put]
        self.state.apply(message.partition, writes)
        return effects

    def _count(self, partition: int, once: bytes | None, window_start: int,
               cell: dict) -> list[tuple[str, bytes, bytes]]:
        key = f"{partition}|{window_start}".encode()
        counts = domain.read_counts(self.keys, key, self.tables.counts.get(key))
        writes = [("aggregate-counts", key,
                   domain.protect_counts(self.keys, key, aggregate.count(counts, cell)))]
        if once is not None:  # after the counts: a crash in between recounts, never loses
            writes.append(("counted", once, str(window_start).encode()))
        return writes

    async def _audit(self, effects: domain.Effects, source: tuple[str, int], now: int,
                     where: str) -> list[tuple[str, bytes, bytes]]:
        """Append the event's audit records to the chain; the chain head's table write."""
        partition = source[1]
        head_key = str(partition).encode()
        head = audit.Head.from_bytes(self.tables.heads.get(head_key))
        for entry in effects.audit:
            data, head = audit.append(head, at=now, domain=self.keys.agency_id, **entry)
            # the chain of partition p lives in partition p of the audit topic
            await self._deliver(self.audit_topic, head_key, data, None, partition, where,
                                effects.event_id, source)
            self.counts[entry["decision"]] += 1
            log.info("%s event %s from %s%s", entry["decision"], entry["event_id"], where,
                     f" ({entry['reason']})" if entry.get("reason") else "")
        if effects.audit and audit.checkpoint_due(head, self.checkpointed.get(partition), now,
                                                  every=self.checkpoint_every,
                                                  seconds=self.checkpoint_s):
            # in the event's own transaction, after its audit records: the signed head
            data = audit.checkpoint(head, domain_keys=self.keys, chain=self.audit_topic,
                                    partition=partition, at=now)
            await self._deliver(self.checkpoint_topic, head_key, data, None, partition, where,
                                effects.event_id, source)
            self._pending[partition] = (head, (head.seq, now))
        elif effects.audit:  # a checkpoint of an earlier event of the same commit stays due
            self._pending[partition] = (head, self._pending.get(partition, (None, None))[1])
        return [("audit-heads", head_key, head.to_bytes())] if effects.audit else []

    def committed(self, partition: int) -> None:
        """The offset of the partition's last handled event is committed (under exactly_once:
        its transaction, with the audit records and checkpoints of every event since the last
        commit): its head is committed."""
        head, checkpoint = self._pending.pop(partition, (None, None))
        if head is not None:
            self.heads_committed[partition] = head
        if checkpoint is not None:
            self.checkpoint_written(partition, *checkpoint)

    def checkpoint_written(self, partition: int, seq: int, at: int) -> None:
        """A checkpoint of ``seq`` records of the partition's chain is on the broker."""
        if seq >= self.checkpointed.get(partition, (-1, 0))[0]:
            self.checkpointed[partition] = (seq, at)

    def reassigned(self) -> None:
        """A new assignment: a partition held before may have moved on at another worker."""
        self.heads_committed.clear()
        self._pending.clear()

    async def _deliver(self, topic: str, key, value, headers, partition, where: str,
                       event_id: str | None, source: tuple[str, int]) -> None:
        delay = self.retry_first_s
        while True:
            try:
                await self.publish(topic, key, value, headers, partition, source=source)
                return
            except PartitionLost:
                raise  # not ours any more: the new owner handles the event
            except Exception as exc:  # noqa: BLE001 (retry whatever it is; dropping is worse)
                log.warning("produce to %s for event %s from %s failed (%s); retrying in "
                            "%.1f s", topic, event_id, where, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)


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


def broker_credentials(security: dict):
    """faust's ``broker_credentials`` for the TLS/SASL options the kafka-python clients take
    (``security`` in the settings, checked by ``kafkaedge.profiles.validate_security``); None for
    PLAINTEXT. The same options thus secure the agents' faust (aiokafka) connections and
    their kafka-python ones (topic creation, the release job)."""
    try:
        options = profiles.validate_security(security)
    except ValueError as exc:
        raise ConfigError(f"agents settings: security: {exc}") from exc
    protocol = options.get("security_protocol", "PLAINTEXT")
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        try:
            context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
            if options.get("ssl_certfile"):
                context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"agents settings: security: cannot load the TLS files "
                              f"(ssl_cafile, ssl_certfile, ssl_keyfile): {exc}") from exc
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol.startswith("SASL_"):
        if not options.get("sasl_plain_username") or not options.get("sasl_plain_password"):
            raise ConfigError("agents settings: security: SASL needs sasl_plain_username and "
                              "sasl_plain_password")
        return faust.SASLCredentials(
            username=options["sasl_plain_username"], password=options["sasl_plain_password"],
            ssl_context=context, mechanism=options.get("sasl_mechanism", "PLAIN"))
    return None


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


def stable_highwaters() -> None:
    """Make faust's table recovery read each changelog partition's end from the broker under
    exactly_once.

    faust 0.15 then takes a partition's end from aiokafka's ``last_stable_offset``, which
    aiokafka only knows once a fetch for that partition came back: -1 for a partition just
    assigned in a rebalance. Recovery then either crashes the worker with a ConsistencyError
    (seen in the two-workers drill on Apache Kafka: "persisted offset ... is higher than the
    last offset in that topic (7 > -1)") or takes the partition for empty and restores none of
    its table. aiokafka's ``end_offsets`` asks the broker with the consumer's isolation level,
    read_committed: the last stable offset itself, as faust uses under at_least_once.
    """
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_refmesh_stable_highwaters", False):
        return

    async def _highwaters(self, partitions):
        return await self._ensure_consumer().end_offsets(partitions)

    thread._highwaters = _highwaters
    thread._refmesh_stable_highwaters = True


def create_app(settings: AgentSettings, keys: AgencyKeys,
               directory_ref: Callable[[], TrustedDirectory], policy: Policy, secret: bytes, *,
               clock: Callable[[], int] = now_ms,
               partition_secret: bytes | None = None,
               ensure_topic: Callable[[str], Awaitable[bool]] | None = None,
               reader=None) -> faust.App:
    """The domain's faust app with its agent (named ``forward``) and its tables (topology.TABLES).

    The source topic, the table changelogs, the audit and dead-letter topics must exist before
    the worker starts (``agents.run`` creates them); sink topics are checked once each, see
    ``topic_ensurer``. ``partition_secret`` is the domain's secret for the person's Kafka key
    (without it no member's referral or consent is accepted: refmesh.domain). ``reader`` reads group offsets and missing ranges for the offset guard
    (agents/offsets.py; default: a Kafka consumer in the domain's group, made at first use).
    ``app.forwarder``, ``app.publisher``, ``app.offset_guard`` and ``app.checkpoints`` are
    exposed for tests.
    """
    domain_id = settings.domain
    if keys.agency_id != domain_id:
        raise ConfigError(f"agents settings: domain is {domain_id} but the keystore holds "
                          f"{keys.agency_id}'s keys; point keystore at {domain_id}'s keystore")
    if policy.domain != domain_id:
        raise ConfigError(f"agents settings: the policy is {policy.domain}'s, not {domain_id}'s")
    credentials = broker_credentials(settings.security)
    # faust's web server serves /healthz (agents/health.py); its table pages would hand out
    # table values and its router the group's topology, so both are off
    web = {"web_enabled": True, "web_port": settings.web_port, "web_bind": "127.0.0.1",
           "web_tables_enabled": False, "web_router_enabled": False} \
        if settings.web_port else {"web_enabled": False}
    if settings.broker == "embedded":
        bound_fetch_wait(profile_of(settings).fetch_max_wait_ms)
    if profile_of(settings).processing_guarantee == "exactly_once":
        stable_highwaters()
    partitions = settings.partitions
    app = faust.App(
        app_id(domain_id), broker=broker_url(settings.bootstrap),
        value_serializer="raw", key_serializer="raw",
        datadir=str(Path(settings.data_dir) / settings.worker_id),
        topic_partitions=partitions,
        topic_disable_leader=True,  # no on_leader tasks: the assignor's leader topic is unused
        # Every topic exists before a worker starts (agents.run, or the operator under the
        # broker's ACLs, which give the domain's principal no right to create topics).
        topic_allow_declare=False,
        stream_wait_empty=False,  # see the module docstring
        broker_credentials=credentials,
        # the agent commits itself, between two events (see forward below); faust's own
        # timer would commit in the middle of one, and under exactly_once commit the records
        # an event had sent so far without its offset (published twice after a crash)
        broker_commit_interval=COMMIT_TIMER_OFF_S,
        **web, **profiles.faust_broker_settings(profile_of(settings)))
    source = app.topic(topology.domain_inbox(domain_id), partitions=partitions,
                       internal=False, allow_empty=True)  # an empty value is dead-lettered

    def table(name: str):
        changelog = app.topic(topology.table(domain_id, name), partitions=partitions,
                              internal=False, key_serializer="raw", value_serializer="raw")
        return app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes,
                         changelog_topic=changelog)

    tables = Tables(*(table(name) for name in topology.TABLES))
    publisher = FaustPublisher(app, partitions, ensure_topic or topic_ensurer(settings))
    counting = domain.Counting(settings.aggregate_unit,
                               aggregate.check_dims(settings.aggregate_dims),
                               settings.aggregate_max_late_ms,
                               settings.aggregate_max_referrals_per_person)
    worker_dir = Path(settings.data_dir) / settings.worker_id
    worker_dir.mkdir(parents=True, exist_ok=True)
    forwarder = Forwarder(keys, directory_ref, policy, secret, publisher, tables, clock=clock,
                          counting=counting, partition_secret=partition_secret,
                          partitions=partitions,
                          checkpoint_every=settings.audit_checkpoint_every,
                          checkpoint_s=settings.audit_checkpoint_s,
                          marks=Marks(worker_dir / "state-marks.json"))

    guard = OffsetGuard(reader or PartitionReader(profiles.consumer_config(
        profile_of(settings), settings.bootstrap, app_id(domain_id), settings.security)))

    @app.on_partitions_assigned.connect
    async def _assigned(sender, assigned, **kwargs) -> None:  # noqa: ARG001 (faust signal)
        uncommitted.clear()  # their transactions ended with the revocation: handled again
        since["count"] = 0
        guard.reset()
        forwarder.state.reset()
        forwarder.reassigned()

    inbox = topology.domain_inbox(domain_id)

    def held() -> set[int]:
        if not app.in_worker:  # faust's test context: no group, every partition is ours
            return set(range(partitions))
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == inbox}

    # signed chain heads between events: on a timer and at a clean stop (agents/checkpoints.py)
    checkpoints = Checkpoints(forwarder, publisher, held, seconds=settings.audit_checkpoint_s,
                              settle=lambda: commit())

    @app.timer(interval=settings.audit_checkpoint_s / 2, name="audit_checkpoints")
    async def _checkpoint_timer() -> None:
        await checkpoints.tick()

    @app.on_before_shutdown.connect  # after faust stopped fetching, before the producer closes
    async def _stopping(sender, **kwargs) -> None:  # noqa: ARG001 (faust signal)
        await checkpoints.stop()

    # under exactly_once, events handled and not yet committed: (topic, partition) -> the
    # last one; several events share a commit (refmesh.offsets.commit_now). at_least_once
    # (Tansu: no transactions) commits after each event, so a kill repeats one event at most.
    grouped = profile_of(settings).processing_guarantee == "exactly_once"
    uncommitted: dict[tuple[str, int], object] = {}
    since = {"count": 0, "first_ms": 0}

    async def commit() -> None:
        """Commit each partition's next expected offset, once the table writes faust buffers
        are sent (under exactly_once: commit the partitions' transactions). faust's public
        ``Consumer.commit`` derives the offset from its own acknowledgements, which count the
        gap it records after dropping events a second time when the guard re-reads them
        (measured: the committed offset then crawls one event per commit, and a restart
        handles dozens of events again); the guard's offset is exact. A partition revoked
        since its events were handled is left out: its transaction is gone with it, and its
        new owner handles them again. Outside a worker (faust's test context) there is no
        group to commit to."""
        messages = [m for (_, p), m in uncommitted.items() if p in held()]
        uncommitted.clear()
        since["count"] = 0
        if not messages:
            return
        if app.in_worker:
            if app.in_transaction:  # the records sent in the transactions, acknowledged
                try:
                    await asyncio.wait_for(
                        publisher.acknowledged({m.partition for m in messages}),
                        profile_of(settings).delivery_timeout_ms / 1000)
                except Exception as exc:
                    # a record failed or was not acknowledged within the delivery timeout:
                    # the transactions cannot commit, and the tables in memory are ahead of
                    # their changelogs. Stop: the next worker restores them and handles the
                    # events again (their records are in aborted transactions no reader sees).
                    log.error("a record of the open transactions was not acknowledged (%s); "
                              "stopping the worker", type(exc).__name__)
                    await app.crash(exc)
                    raise
            await app.producer.flush()
            # aiokafka's own TopicPartition: the transactional commit hands it on unconverted
            done = await app.consumer._commit_offsets(  # noqa: SLF001 (see above)
                {aiokafka.TopicPartition(m.topic, m.partition): guard.expected_at(m)
                 for m in messages})
        else:
            done = True
        for message in messages:
            forwarder.state.committed(message.partition)
            if done:  # the events' audit records are committed: the head may be signed
                forwarder.committed(message.partition)

    async def handle(message):
        effects = await forwarder.handle(message)
        guard.handled(message)
        uncommitted[(message.topic, message.partition)] = message
        if since["count"] == 0:
            since["first_ms"] = now_ms()
        since["count"] += 1
        return effects

    async def settle(more_waiting: bool) -> None:
        """After each event, whatever became of it: commit now, or handle the next one first
        (exactly_once only; at_least_once commits every event)."""
        if not grouped or offsets.commit_now(since["count"], since["first_ms"], now_ms(),
                                             more_waiting, max_events=GROUP_COMMIT_EVENTS,
                                             max_ms=GROUP_COMMIT_MS):
            await commit()

    async def forward(stream):  # concurrency 1: events of a partition one after the other
        async for event in stream.noack().events():  # never acked: the agent commits itself
            message, effects = event.message, None
            async with checkpoints.event() as go:  # a stopping worker starts no new event
                try:
                    step = await guard.step(message) if go else offsets.Done()
                    if isinstance(step, offsets.Reread):  # faust skipped these: first them
                        for missed in await guard.reread(message, step):
                            await handle(missed)
                    if not isinstance(step, offsets.Done):  # else handled already
                        effects = await handle(message)
                except PartitionLost as exc:
                    log.info("left the event from %s/%d@%d to the partition's new owner (%s)",
                             message.topic, message.partition, message.offset, exc)
                except PartitionHalted:  # logged once, named on /healthz; the offset stays
                    if app.in_worker:
                        app.consumer.pause_partitions(
                            {TP(message.topic, message.partition)})
                if go:
                    await settle(not stream.channel.empty())
            if effects is not None:
                yield effects  # yielding lets faust's test context wait for the whole event

    app.agent(source, name="forward", concurrency=1)(forward)
    app.forwarder, app.publisher, app.refmesh_tables = forwarder, publisher, tables
    app.checkpoints = checkpoints
    app.offset_guard = guard
    return app
