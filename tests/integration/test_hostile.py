"""The hostile-input corpus (tests/hostile.py) against a real mesh: HOTLINE and SHELTER gateways
and the BH/GOV/NCCTIP domain's agents on the embedded broker.

Every hostile event written straight onto a gateway's or the domain's inbox topic ends in its
dead-letter topic with the expected reason and nothing is stored; every hostile API request
gets a 4xx with a JSON error and stores nothing (injection strings in free text are stored
verbatim, as text); no token or another agency's token gets 401; and then a good referral
still goes through.
"""
from __future__ import annotations

import http.client
import json
import sqlite3
import uuid
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError

from kafkaedge import topic_reader
from kafkaedge.loading import keystore_path, load_anchor, now_ms, write_file
from devmesh.supervise import wait_until
from refmesh import envelope, samples, topology
from refmesh.keys import unlock
from tests import hostile
from tests.integration.meshfix import start_mesh

HOTLINE, SHELTER, NCC, IOM = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP", "BH/IO/IOM"
BIG = 900 * 1024  # events above this are too big for a default producer to dead-letter
BROKER_LIMIT = 1024 * 1024 + 12  # Apache Kafka's default message.max.bytes (1 MiB + headers)


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    revoked = {}

    def revoke(files, ids):  # before any process starts: every reader sees the revocation
        coordinator = unlock(keystore_path(files.keystore, ids[NCC]).read_bytes(),
                             files.env["REFMESH_PASSPHRASE"])
        signed, extra = hostile.revoke_extra_keys(
            files.directory.read_bytes(), load_anchor(files.anchor), coordinator,
            [ids[HOTLINE], ids[NCC]], now_ms())
        write_file(files.directory, signed)
        revoked.update(extra)

    m = start_mesh(tmp_path_factory.mktemp("hostile"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC], prepare=revoke)
    m.revoked = revoked
    yield m
    m.running.stop()


def _keys(mesh, *agencies) -> dict:
    return {mesh.id(a): mesh.keys(a) for a in agencies}


def _produce(mesh, topic: str, events) -> dict[str, hostile.HostileEvent]:
    """Write each event as it is (up to 8 MiB); return {source: event}, the source being what
    the dead letter's refmesh-source header must say.

    Apache Kafka refuses a record over its topics' max.message.bytes (1 MiB by default): such an
    event never reaches a receiver, which is the broker's own defence; it is checked to be
    refused for its size, and left out of the events a receiver must dead-letter. Tansu takes
    up to 8 MiB, so there the receivers meet them."""
    producer = KafkaProducer(**{**mesh.kafka.producer_config(), "enable_idempotence": False},
                             max_request_size=8 * 1024 * 1024)
    sources = {}
    try:
        for event in events:
            try:
                sent = producer.send(topic, value=event.value, key=b"hostile").get(timeout=30)
            except MessageSizeTooLargeError:
                assert mesh.kafka.kind == "apache" and len(event.value) > BROKER_LIMIT, \
                    f"{event.name}: {len(event.value)} bytes refused"
                continue
            sources[f"{topic}/{sent.partition}@{sent.offset}"] = event
    finally:
        producer.close()
    return sources


def _dead_letters(mesh, topic: str, sources, timeout: float = 30.0) -> dict:
    """{source: dead-letter message} once every one of ``sources`` is in ``topic``."""
    consumer = topic_reader.consumer(mesh.consumer_config())
    found = {}
    try:
        topic_reader.assign(consumer, topic)

        def all_there():
            for batch in consumer.poll(timeout_ms=200).values():
                for message in batch:
                    source = dict(message.headers).get("refmesh-source", b"").decode()
                    if source in sources:
                        found[source] = message
            return len(found) == len(sources)

        try:
            wait_until(all_there, timeout, f"{len(sources)} dead letters on {topic}")
        except Exception:
            missing = [sources[s].name for s in sources if s not in found]
            pytest.fail(f"never dead-lettered on {topic}: {missing}")
        return found
    finally:
        consumer.close(autocommit=False)


def _check_dead_letters(sources: dict, dead: dict) -> None:
    """Each dead letter has the expected reason and the event as it came (a large one cut to
    topology.DEADLETTER_MAX_VALUE bytes, its size in a header)."""
    wrong = {}
    for source, event in sources.items():
        message = dead[source]
        headers = dict(message.headers)
        reason = headers["refmesh-reason"].decode()
        kept, size = event.value, None
        if event.value is not None and len(event.value) > topology.DEADLETTER_MAX_VALUE:
            kept, size = event.value[:topology.DEADLETTER_MAX_VALUE], str(len(event.value))
        got_size = headers.get("refmesh-value-size", b"").decode() or None
        if (reason, message.value, got_size) != (event.reason, kept, size):
            wrong[event.name] = (event.reason, reason, message.value == kept, got_size)
    assert wrong == {}


def _database(mesh, agency: str) -> Path:
    config = yaml.safe_load(mesh.files.gateway_config(mesh.id(agency)).read_text())
    return Path(config["database"])


def _rows(mesh, agency: str) -> dict[str, int]:
    """Rows per table of a gateway's SQLite database (read-only; the gateway keeps writing).
    Not the record of access, which grows with every read and refused attempt by design (ids
    only: tests/unit/test_access_record.py)."""
    db = sqlite3.connect(f"file:{_database(mesh, agency)}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                           "AND name != 'access_log'")]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        db.close()


def _http(url: str, method: str, path: str, body: bytes | None = None,
          headers: dict | None = None) -> tuple[int, dict, bytes]:
    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# --- events --------------------------------------------------------------------------------

def test_every_hostile_event_on_a_gateway_inbox_is_dead_lettered(mesh):
    shelter = mesh.client(SHELTER)
    inbox, rows = shelter.inbox(), _rows(mesh, SHELTER)
    events = hostile.load_events() + hostile.envelopes_for_gateway(
        _keys(mesh, NCC, HOTLINE), mesh.directory(), gateway=mesh.id(SHELTER),
        domain=mesh.id(NCC), member=mesh.id(HOTLINE), now=now_ms(), revoked=mesh.revoked)
    assert {"revoked_key", "too_old", "bad_signature", "wrong_recipient", "misaddressed",
            "malformed", "unknown_key", "unknown_sender"} <= {e.reason for e in events}
    topic = topology.agency_inbox(mesh.id(SHELTER))
    sources = _produce(mesh, topic, events)
    dead = _dead_letters(mesh, topology.deadletter(mesh.id(SHELTER)), sources)
    _check_dead_letters(sources, dead)
    assert shelter.inbox() == inbox
    assert _rows(mesh, SHELTER) == rows


def test_every_hostile_event_on_the_domain_inbox_is_dead_lettered(mesh):
    events = hostile.load_events() + hostile.envelopes_for_domain(
        _keys(mesh, HOTLINE, SHELTER), mesh.directory(), domain=mesh.id(NCC),
        member=mesh.id(HOTLINE), other=mesh.id(SHELTER), now=now_ms(), revoked=mesh.revoked)
    events = [e for e in events if e.value is None or len(e.value) <= BIG]  # see the last test
    topic = topology.domain_inbox(mesh.id(NCC))
    sources = _produce(mesh, topic, events)
    dead = _dead_letters(mesh, topology.deadletter(mesh.id(NCC), "domain"), sources)
    _check_dead_letters(sources, dead)


# --- API -----------------------------------------------------------------------------------

def _seed_referral(mesh) -> str:
    """A referral the shelter holds (state received) for the status requests: sealed by the
    domain straight onto the shelter's inbox. Its sender is IOM, whose gateway does not run
    here, so the shelter's receipt and status for it change nothing at the hotline."""
    referral = samples.referral(referral_id=f"hostile-seed-{uuid.uuid4()}",
                                sender=mesh.id(IOM), recipient=mesh.id(SHELTER),
                                created_at=now_ms())
    data = envelope.seal("Referral", referral, mesh.keys(NCC), mesh.id(SHELTER),
                         mesh.directory(), now_ms())
    producer = mesh.producer()
    producer.send(topology.agency_inbox(mesh.id(SHELTER)), value=data, key=b"k").get(timeout=10)
    producer.close()
    shelter = mesh.client(SHELTER)
    wait_until(lambda: any(r["referral_id"] == referral["referralId"] for r in shelter.inbox()),
               30, "the seeded referral at the shelter")
    return referral["referralId"]


def _send(mesh, case: dict, subst: dict) -> tuple[int, dict, bytes]:
    agency = SHELTER if case["kind"] == "status" else HOTLINE
    client = mesh.client(agency)
    return _http(client.url, "POST", hostile.request_path(case, subst),
                 hostile.request_body(case, subst),
                 {"Authorization": f"Bearer {client.token}",
                  "Content-Type": "application/json"})


def _problem(case: dict, status: int, headers: dict, raw: bytes) -> str | None:
    """What is wrong with the gateway's answer to a case, or None."""
    if headers.get("content-type", "").split(";")[0] != "application/json":
        return f"{status} with Content-Type {headers.get('content-type')}"
    if headers.get("x-content-type-options") != "nosniff":
        return "no X-Content-Type-Options: nosniff"
    doc = json.loads(raw)
    if case["status"] == "2xx":
        return None if 200 <= status < 300 else f"{status} {doc}"
    if not 400 <= status < 500:
        return f"{status} {doc}"
    if not isinstance(doc.get("error"), str) or not doc["error"]:
        return f"{status} without an error message: {doc}"
    if "field" in case and doc.get("field") != case["field"]:
        return f"{status} names field {doc.get('field')!r}, not {case['field']!r}: {doc}"
    return None


def test_hostile_api_requests_get_a_4xx_and_store_nothing(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    rid = _seed_referral(mesh)
    subst = {"@RECIPIENT@": mesh.id(SHELTER), "@REFERRAL@": rid,
             "@UNIQUE@": f"hostile-{uuid.uuid4().hex[:8]}"}
    cases = [c for items in hostile.load_api_cases().values() for c in items]
    refused = [c for c in cases if c["status"] == "4xx"]
    before = {a: _rows(mesh, a) for a in (HOTLINE, SHELTER)}
    outbox, inbox = hotline.outbox(), shelter.inbox()
    problems = {}
    for case in refused:
        status, headers, raw = _send(mesh, case, subst)
        problem = _problem(case, status, headers, raw)
        if problem:
            problems[f"{case['kind']}: {case['name']}"] = problem
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in sorted(problems.items()))
    assert {a: _rows(mesh, a) for a in (HOTLINE, SHELTER)} == before
    assert (hotline.outbox(), shelter.inbox()) == (outbox, inbox)
    assert shelter.show(rid)["state"] == "received"


def test_injection_strings_in_free_text_are_stored_verbatim(mesh):
    """SQL and HTML in every free-text field is text like any other: accepted, stored and
    returned exactly (as JSON, never as markup), and the databases keep every table."""
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    rid = _seed_referral(mesh)
    subst = {"@RECIPIENT@": mesh.id(SHELTER), "@REFERRAL@": rid,
             "@UNIQUE@": f"hostile-{uuid.uuid4().hex[:8]}"}
    cases = [c for items in hostile.load_api_cases().values() for c in items
             if c["status"] == "2xx"]
    assert len(cases) >= 15
    for case in cases:
        status, headers, raw = _send(mesh, case, subst)
        assert _problem(case, status, headers, raw) is None, (case["name"], status, raw)
        sent = json.loads(hostile.request_body(case, subst))
        if case["kind"] == "referrals":
            stored = hotline.show(sent["referralId"])["record"]
        elif case["kind"] == "consents":
            stored = hotline._call("GET", f"/v1/consents/{sent['consentId']}")
        else:
            stored = shelter.show(rid)["history"][-1]
        assert {k: stored[k] for k in sent if k != "state"} == \
            {k: v for k, v in sent.items() if k != "state"}, case["name"]
    for agency in (HOTLINE, SHELTER):
        assert {"referrals", "outbox", "inbox", "history", "consents"} <= set(_rows(mesh, agency))


ROUTES = [("GET", "/v1/inbox"), ("GET", "/v1/outbox"), ("GET", "/v1/referrals/x"),
          ("POST", "/v1/referrals"), ("POST", "/v1/referrals/x/status"), ("GET", "/v1/consents"),
          ("POST", "/v1/consents"), ("GET", "/v1/consents/x"),
          ("POST", "/v1/consents/x/withdraw"), ("GET", "/v1/erasures"), ("GET", "/metrics"),
          ("GET", "/openapi.json"), ("GET", "/v1/no-such-route")]


def test_no_token_or_another_agencys_token_gets_401_everywhere(mesh):
    shelter = mesh.client(SHELTER)
    own, other = shelter.token, mesh.client(HOTLINE).token
    authorizations = {
        "none": None, "empty": "", "Bearer only": "Bearer ", "wrong": "Bearer wrong",
        "another agency's": f"Bearer {other}", "lower-case scheme": f"bearer {own}",
        "Basic": "Basic " + own,
        "token twice": f"Bearer {own}{own}", "prefix of the token": f"Bearer {own[:-1]}",
        "non-ASCII": "Bearer \u00ff\u00fe", "injection": "Bearer ' OR '1'='1",
    }
    problems = {}
    for method, path in ROUTES:
        for name, value in authorizations.items():
            headers = {} if value is None else {"Authorization": value}
            body = b"{}" if method == "POST" else None
            status, got, raw = _http(shelter.url, method, path, body, headers)
            ok = status == 401 and got.get("content-type", "").startswith("application/json") \
                and "error" in json.loads(raw) and got.get("www-authenticate")
            if not ok:
                problems[f"{method} {path} with {name} token"] = (status, raw[:200])
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in sorted(problems.items()))


HOSTILE_IDS = ["x'%20OR%20'1'%3D'1", "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "%FF%FE",
               "%ED%A0%80", "%00", "..%2F..%2Fhealthz", "A" * 4000]


def test_hostile_ids_in_paths_get_a_json_4xx(mesh):
    hotline = mesh.client(HOTLINE)
    auth = {"Authorization": f"Bearer {hotline.token}"}
    problems = {}
    for rid in HOSTILE_IDS:
        for method, path, body in (("GET", f"/v1/referrals/{rid}", None),
                                   ("GET", f"/v1/consents/{rid}", None),
                                   ("POST", f"/v1/consents/{rid}/withdraw", b"{}"),
                                   ("POST", f"/v1/referrals/{rid}/status",
                                    b'{"state": "accepted"}')):
            status, headers, raw = _http(hotline.url, method, path, body, auth)
            if not (400 <= status < 500 and headers.get("content-type", "").startswith(
                    "application/json") and json.loads(raw).get("error")):
                problems[f"{method} {path[:60]}"] = (status, raw[:200])
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in sorted(problems.items()))


def test_the_next_good_referral_is_still_delivered(mesh):
    hotline, shelter = mesh.client(HOTLINE), mesh.client(SHELTER)
    mesh.consent(61, HOTLINE)
    referral = mesh.referral(61, HOTLINE, SHELTER)
    rid = hotline.submit(referral)["referralId"]
    wait_until(lambda: any(r["referral_id"] == rid for r in shelter.inbox()), 30,
               "the good referral at the shelter")
    wait_until(lambda: hotline.show(rid)["state"] == "received", 30, "its receipt")
    assert shelter.show(rid)["record"]["person"]["firstName"] == referral["person"]["firstName"]


def test_an_oversized_event_on_the_domain_inbox_is_dead_lettered(mesh):
    """A 2 MiB event is dead-lettered cut to a size any producer can write (whole, aiokafka
    could not send it and the agent would retry forever, stuck). Last in the module."""
    events = [e for e in hostile.load_events() if e.value is not None and len(e.value) > BIG]
    assert events
    topic = topology.domain_inbox(mesh.id(NCC))
    sources = _produce(mesh, topic, events)
    if mesh.kafka.kind == "apache":  # every one refused by the broker: nothing to dead-letter
        assert sources == {}
        return
    dead = _dead_letters(mesh, topology.deadletter(mesh.id(NCC), "domain"), sources,
                         timeout=30)
    _check_dead_letters(sources, dead)
