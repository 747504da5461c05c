"""Shared helpers for the tests of ``refmesh.domain.handle`` (tests/unit/test_core_domain*.py):
the sample mesh with real keys, both domains' policies, the person's Kafka key as gateways
derive it, and the agent's tables as dicts that take the effects the way agents/forward.py
applies them."""
from __future__ import annotations

from refmesh import domain, envelope, samples, topology
from refmesh.domain import Publish
from tests import policy_samples as S

MESH = S.signed_mesh()
NCC, ET_NCC = "BH/GOV/NCCTIP", "ET/GOV/NCC"
HOTLINE, SHELTER, POLICE, PSYCH, IOM, RECEPTION = (
    S.HOTLINE, S.SHELTER, S.POLICE, S.PSYCH, S.IOM, S.RECEPTION)
POLICIES = {NCC: S.load(), ET_NCC: S.load(S.SAMPLE_POLICY_ET)}
PARTITION_SECRET = b"\x02" * 16  # the domain's secret for Kafka keys, shared with its gateways
SUBJECT = samples.referral()["subjectId"]  # the sample person (S.referral, S.consent)
KEY = topology.partition_key(PARTITION_SECRET, SUBJECT)  # as gateways key the person's events


def key_of(record: dict) -> bytes:
    """The Kafka key a gateway gives the events about ``record``'s subject."""
    return topology.partition_key(PARTITION_SECRET, record["subjectId"])


class Tables:
    """The agent's tables as dicts: the effects are applied the way agents/forward.py does."""

    def __init__(self) -> None:
        self.consents: dict[bytes, bytes] = {}
        self.log: dict[bytes, bytes] = {}
        self.counted: dict[bytes, bytes] = {}
        self.seen: dict[bytes, bytes] = {}

    def view(self) -> domain.View:
        return domain.View(self.consents.get, self.log.get, self.counted.get, self.seen.get)

    def apply(self, effects: domain.Effects) -> domain.Effects:
        if effects.consent_put is not None:
            self.consents[effects.consent_put[0]] = effects.consent_put[1]
        if effects.log_put is not None:
            self.log[effects.log_put[0]] = effects.log_put[1]
        if effects.counted is not None and effects.counted[0] is not None:
            self.counted[effects.counted[0]] = str(effects.counted[1]).encode()
        for key, value in effects.seen_put:
            if value is None:
                self.seen.pop(key, None)
            else:
                self.seen[key] = value
        return effects


def context(domain_id: str = NCC, now: int = S.NOW, partitions: int | None = None
            ) -> domain.Context:
    return domain.Context(MESH.keys[domain_id], MESH.directory, POLICIES[domain_id], S.SECRET,
                          now, partition_secret=PARTITION_SECRET, partitions=partitions)


def sealed(record: dict, sender: str, record_type: str = "Referral", to: str = NCC,
           at: int = S.NOW, **kw) -> bytes:
    """``record`` sealed by ``sender`` for ``to`` at ``at`` (a gateway re-sealing an outbox
    entry for a re-send keeps the event id and seals at a later time)."""
    return envelope.seal(record_type, record, MESH.keys[sender], to, MESH.directory, at, **kw)


def handle(tables: Tables, data: bytes, key: bytes | None = KEY, domain_id: str = NCC,
           now: int = S.NOW, partition: int = 0, partitions: int | None = None
           ) -> domain.Effects:
    return tables.apply(domain.handle(data, key, context(domain_id, now, partitions),
                                      tables.view(), partition))


def opened(publish: Publish, agency: str) -> envelope.Opened:
    return envelope.open(publish.value, MESH.keys[agency], MESH.directory, S.NOW)


def withdrawn(consent: dict, at: int = S.NOW - 1) -> dict:
    event = {"type": "Withdrawn", "at": at, "channel": "InPerson",
             "recordedBy": consent["controller"]}
    return {**consent, "events": [*consent["events"], event]}


def with_consent(consent: dict | None = None, controller: str = HOTLINE) -> Tables:
    tables = Tables()
    c = S.consent(controller=controller) if consent is None else consent
    effects = handle(tables, sealed(c, controller, "Consent"), key_of(c))
    assert effects.consent_put is not None and effects.deadletter is None
    return tables
