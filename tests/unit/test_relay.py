"""The outbox relay keeps the order of entries when the broker refuses one: a withdrawal that
could not be published is not overtaken by a referral submitted after it."""
from __future__ import annotations

from types import SimpleNamespace

from kafka.errors import KafkaTimeoutError

from gateways.metrics import Metrics
from gateways.relay import Relay
from gateways.store import Store
from refmesh import envelope, samples
from tests.policy_samples import signed_mesh

NOW = 1_790_000_000_000


class FlakyProducer:
    """Refuses the first ``refuse`` sends, then records what it is given."""

    def __init__(self, refuse: int) -> None:
        self.refuse, self.sent = refuse, []

    def send(self, topic, key, value):
        if self.refuse:
            self.refuse -= 1
            raise KafkaTimeoutError("broker away")
        self.sent.append(value)
        return SimpleNamespace(get=lambda timeout: None)


def test_a_refused_entry_keeps_its_place_before_later_entries(tmp_path):
    mesh = signed_mesh()
    hotline = mesh.keys["BH/GOV/HOTLINE"]
    store = Store(str(tmp_path / "gw.db"), hotline.agency_id, "BH/GOV/NCCTIP")
    consent = samples.consent(1, controller=hotline.agency_id)
    store.record_consent(consent, b"k", NOW)
    producer = FlakyProducer(refuse=1)
    link = SimpleNamespace(producer=lambda: producer, reset=lambda: None)
    settings = SimpleNamespace(resend_after_ms=5000, max_resend_after_ms=60000,
                               poll_interval_ms=200)
    now = [NOW + 10]
    relay = Relay(store, hotline, lambda: mesh.directory, link, Metrics(), settings,
                  clock=lambda: now[0])
    assert relay.tick() is False  # the broker refused the consent
    referral = samples.referral(sender=hotline.agency_id, recipient="BH/GOV/SHELTER", n=1)
    store.submit_referral(referral, b"k", NOW + 500)
    due = store.due(NOW + 600)
    assert [d.record_type for d in due] == ["Consent", "Referral"]
    now[0] = NOW + 1000
    assert relay.tick() is True
    kinds = [envelope.read_header(v)["eventType"] for v in producer.sent]
    assert kinds == ["Consent", "Referral"]


class Expiring:
    """The directory reference of a gateway whose edition has expired until ``renewed``."""

    def __init__(self, trusted) -> None:
        self.trusted, self.renewed = trusted, False

    def __call__(self):
        return self.trusted

    def stop_reason(self):
        return None if self.renewed else "signed directory serial 1 expired"


def test_nothing_is_sent_while_the_directory_has_expired(tmp_path):
    mesh = signed_mesh()
    hotline = mesh.keys["BH/GOV/HOTLINE"]
    store = Store(str(tmp_path / "gw.db"), hotline.agency_id, "BH/GOV/NCCTIP")
    store.record_consent(samples.consent(1, controller=hotline.agency_id), b"k", NOW)
    producer = FlakyProducer(refuse=0)
    link = SimpleNamespace(producer=lambda: producer, reset=lambda: None)
    settings = SimpleNamespace(resend_after_ms=5000, max_resend_after_ms=60000,
                               poll_interval_ms=200)
    ref = Expiring(mesh.directory)
    relay = Relay(store, hotline, ref, link, Metrics(), settings, clock=lambda: NOW + 10)
    assert relay.tick() is False and producer.sent == []
    (entry,) = store.due(NOW + 10)
    assert entry.attempts == 0  # waiting, not attempted: no backoff piles up meanwhile
    ref.renewed = True
    assert relay.tick() is True
    assert [envelope.read_header(v)["eventType"] for v in producer.sent] == ["Consent"]


def test_an_acknowledged_receipt_is_marked_sent_with_the_next_ticks_commit(tmp_path):
    """One commit per tick: the receipts the broker acknowledged are marked sent in the next
    tick's transaction, and the next tick does not send them again meanwhile."""
    mesh = signed_mesh()
    shelter = mesh.keys["BH/GOV/SHELTER"]
    store = Store(str(tmp_path / "gw.db"), shelter.agency_id, "BH/GOV/NCCTIP")
    referral = samples.referral(sender="BH/GOV/HOTLINE", recipient=shelter.agency_id, n=1)
    from refmesh import receive
    store.receive(receive.Event("ev-1", "Referral", "BH/GOV/NCCTIP", referral, b"k", NOW),
                  receive.Parties(shelter.agency_id, lambda _: "BH/GOV/NCCTIP"), NOW)
    producer = FlakyProducer(refuse=0)
    link = SimpleNamespace(producer=lambda: producer, reset=lambda: None)
    settings = SimpleNamespace(resend_after_ms=1, max_resend_after_ms=1, poll_interval_ms=200)
    relay = Relay(store, shelter, lambda: mesh.directory, link, Metrics(), settings,
                  clock=lambda: NOW + 10)

    def receipts_pending() -> int:
        return [d.record_type for d in store.due(NOW + 10_000)].count("Receipt")

    assert relay.tick() is True
    first = [envelope.read_header(v)["eventType"] for v in producer.sent]
    assert "Receipt" in first and receipts_pending() == 1  # acknowledged, not yet marked
    relay.tick()  # due again by its 1 ms re-send time, yet not sent again: marked instead
    assert [envelope.read_header(v)["eventType"] for v in producer.sent].count("Receipt") == 1
    assert receipts_pending() == 0


def test_a_slow_receipt_postpones_the_first_resend_instead_of_sending_a_copy(tmp_path):
    """Receipts that came slower than resend_after_ms stretch the re-send timeout
    (refmesh.resend): an entry whose first send is younger than it is rescheduled, not sent
    again; once older, it is re-sent."""
    mesh = signed_mesh()
    hotline = mesh.keys["BH/GOV/HOTLINE"]
    store = Store(str(tmp_path / "gw.db"), hotline.agency_id, "BH/GOV/NCCTIP")
    producer = FlakyProducer(refuse=0)
    link = SimpleNamespace(producer=lambda: producer, reset=lambda: None)
    settings = SimpleNamespace(resend_after_ms=1000, max_resend_after_ms=60000,
                               poll_interval_ms=200)
    now = [NOW]
    relay = Relay(store, hotline, lambda: mesh.directory, link, Metrics(), settings,
                  clock=lambda: now[0])
    # an earlier entry's receipt took 5 s: receipts are slow now
    now[0] = NOW - 5000
    relay._sent_once(SimpleNamespace(attempts=0, delivery_key="earlier"), now[0])
    now[0] = NOW
    relay.closed(["earlier"])
    assert relay.timeout_ms() > 5000
    store.submit_referral(samples.referral(sender=hotline.agency_id,
                                           recipient="BH/GOV/SHELTER", n=1), b"k", NOW)
    assert relay.tick() is True and len(producer.sent) == 1
    now[0] = NOW + 2000  # due by resend_after_ms, yet younger than the timeout
    relay.tick()
    assert len(producer.sent) == 1  # no copy
    assert [d.delivery_key for d in store.due(NOW + 2000)] == []  # rescheduled, not attempted
    assert store.due(NOW + 10**9)[0].attempts == 1
    now[0] = NOW + relay.timeout_ms() + 1
    relay.tick()
    assert len(producer.sent) == 2  # its receipt never came: re-sent after the timeout
