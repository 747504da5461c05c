"""refmesh.envelope: seal/open round trips, one test per SealError reason, single-bit flips, canary
values that must never appear in sealed bytes, event ids and key rotation.

Time is injected: every ``now`` is a fixed epoch-millisecond value; nothing reads the clock.
"""
from __future__ import annotations

import collections
import copy
import hashlib
import io
import json
import re
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from refmesh import codec, directory, envelope, keys, records, samples, schemas
from refmesh.errors import SealError

T0 = 1_790_000_000_000  # keys valid and directory issued from here
HOUR, DAY = 3_600_000, 86_400_000
T = T0 + HOUR  # events are sealed at T
LATER = T + 1_000  # ... and opened at LATER
COORD, HOTLINE, SHELTER, MOI = "BH/GOV/NCCT", "BH/NGO/HOTLINE", "BH/NGO/SHELTER", "BH/GOV/MOI"
ROLES = {COORD: "CentralGovernmentOrganisation", HOTLINE: "NGO", SHELTER: "NGO",
         MOI: "LawEnforcement"}
SUITES = [envelope.HYBRID, envelope.CLASSIC]
_JSON_VALUES = json.loads((Path(__file__).resolve().parents[2] / "tests" / "data" /
                           "core_sample_values.json").read_text())["values"]


def sample(record_type: str) -> dict:
    if record_type == "Referral":
        return samples.referral()
    if record_type == "Consent":
        return samples.consent()
    if record_type == "ReferralStatus":
        return samples.status()
    return records.record_class(record_type).from_json(_JSON_VALUES[record_type]).to_dict()


def x25519_only(draft: dict, agency_id: str, now: int = T0) -> dict:
    """``draft`` with every ML-KEM key of ``agency_id`` revoked: the directory's mark of an
    X25519-only member (refmesh.directory.is_hybrid_member)."""
    member = next(m for m in draft["members"] if m["agencyId"] == agency_id)
    for key in member["keys"]:
        if key["kind"] == directory.HYBRID_KIND:
            draft = directory.revoke_key(draft, agency_id, key["keyId"], now)
    return draft


class Mesh:
    """A coordinator and three agencies, and a loaded directory of all four; ``classic`` is the
    same directory with SHELTER (the recipient of most tests) marked X25519-only, where the
    X25519 suite is the right one for it."""

    def __init__(self) -> None:
        self.keys = {a: keys.generate(a, T0) for a in ROLES}
        self.anchor = directory.TrustAnchor.of(self.keys[COORD])
        self.draft = self.draft_of(self.keys)
        self.directory = self.load(self.draft)
        self.classic = self.load(x25519_only(self.draft, SHELTER))

    def trusted_for(self, suite: str | None) -> directory.TrustedDirectory:
        return self.classic if suite == envelope.CLASSIC else self.directory

    @staticmethod
    def draft_of(agencies: dict[str, keys.AgencyKeys], now: int = T0) -> dict:
        draft = directory.empty(COORD)
        for agency_id, agency in agencies.items():
            draft = directory.add_member(draft, directory.member_entry(
                agency, agency_id, ROLES[agency_id], "BH", None, now))
        return draft

    def load(self, draft: dict, now: int = T0) -> directory.TrustedDirectory:
        return directory.load(directory.sign(draft, self.keys[COORD], now), self.anchor, now)

    def seal(self, record_type="ReferralStatus", record=None, sender=HOTLINE, recipient=SHELTER,
             now=T, suite=None, sender_keys=None, trusted=None, **kw) -> bytes:
        return envelope.seal(record_type, sample(record_type) if record is None else record,
                             sender_keys or self.keys[sender], recipient,
                             trusted or self.directory, now, suite=suite, **kw)

    def open(self, data, recipient=SHELTER, now=LATER, recipient_keys=None, trusted=None, **kw):
        return envelope.open(data, recipient_keys or self.keys[recipient],
                             trusted or self.directory, now, **kw)


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return Mesh()


def _envelope_bytes(header: dict, ciphertext: bytes, signature: bytes) -> bytes:
    return codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                     "signature": signature})


def forge(header: dict, inner: bytes, signer: keys.PrivateKey, recipient_public: bytes,
          ciphertext: bytes | None = None) -> bytes:
    """Seal by hand, following the envelope format of docs/protocol.md, with any header and
    inner bytes."""
    kind, suite = envelope.SUITES[header["suite"]]
    if ciphertext is None:
        info = envelope.LABEL + _envelope_bytes(header, b"", b"")
        ciphertext = suite.encrypt(inner, keys.hpke_public(kind, recipient_public), info=info)
    signature = keys.sign(signer, envelope.LABEL + _envelope_bytes(header, ciphertext, b""))
    return _envelope_bytes(header, ciphertext, signature)


def _parts(data: bytes) -> dict:
    return codec.decode(data, expect="Envelope")[1]


def _shelter_public(mesh: Mesh, header: dict) -> bytes:
    kind = envelope.SUITES[header["suite"]][0]
    return mesh.directory.encryption_key(SHELTER, kind, LATER)[1]


# --- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("record_type", envelope.EVENT_TYPES)
def test_round_trip(mesh, record_type, suite):
    value = sample(record_type)
    trusted = mesh.trusted_for(suite)
    data = mesh.seal(record_type, value, suite=suite, event_id=f"evt-{record_type}",
                     trusted=trusted)
    opened = mesh.open(data, trusted=trusted)
    assert opened.record_type == record_type
    assert opened.record == value
    h = opened.header
    shelter_key = next(k for k in mesh.keys[SHELTER].decryption
                       if k.kind == envelope.SUITES[suite][0])
    assert h == {"eventId": f"evt-{record_type}", "eventType": record_type, "sender": HOTLINE,
                 "recipient": SHELTER, "senderKeyId": mesh.keys[HOTLINE].signing.key_id,
                 "recipientKeyId": shelter_key.key_id,
                 "schemaFingerprint": schemas.contract(record_type).fingerprint,
                 "createdAt": T, "suite": suite}
    assert envelope.read_header(data) == h


def test_the_directory_chooses_the_suite(mesh):
    """Hybrid for a member with an unrevoked ML-KEM key, X25519 for one the directory marks
    X25519-only; either opens where it was sealed for."""
    assert envelope.suite_for(mesh.directory, SHELTER) == envelope.HYBRID
    assert envelope.suite_for(mesh.classic, SHELTER) == envelope.CLASSIC
    for trusted, suite in ((mesh.directory, envelope.HYBRID), (mesh.classic, envelope.CLASSIC)):
        data = mesh.seal(trusted=trusted)
        assert envelope.read_header(data)["suite"] == suite
        assert mesh.open(data, trusted=trusted).record == samples.status()


def test_the_recipients_entry_decides_not_the_senders(mesh):
    """HOTLINE marked X25519-only changes nothing for what SHELTER (hybrid) accepts; SHELTER
    marked X25519-only accepts X25519 from a hybrid sender."""
    sender_classic = mesh.load(x25519_only(mesh.draft, HOTLINE))
    data = mesh.seal(suite=envelope.CLASSIC, trusted=sender_classic)
    with pytest.raises(SealError) as err:
        mesh.open(data, trusted=sender_classic)
    assert err.value.reason == "suite_downgrade"
    assert mesh.open(mesh.seal(suite=envelope.CLASSIC, trusted=mesh.classic),
                     trusted=mesh.classic).record


def test_a_downgrade_is_refused_only_after_the_signature(mesh):
    """An unsigned or forged X25519 envelope is refused for its signature first, so the audit
    names what an outsider did; a sender's genuine downgrade is named as such."""
    data = mesh.seal(suite=envelope.CLASSIC, trusted=mesh.classic)
    parts = _parts(data)
    with pytest.raises(SealError) as err:
        mesh.open(_envelope_bytes(parts["header"], parts["ciphertext"], bytes(64)))
    assert err.value.reason == "bad_signature"


def test_every_event_type_has_a_sample():
    for record_type in envelope.EVENT_TYPES:
        assert records.from_dict(record_type, sample(record_type)).to_dict() == sample(record_type)


def test_forge_helper_makes_envelopes_that_open(mesh):
    """The hand-made envelopes below differ from an honest one only in what each test changes."""
    honest = _parts(mesh.seal())
    inner = codec.encode("ReferralStatus", samples.status())
    data = forge(honest["header"], inner, mesh.keys[HOTLINE].signing,
                 _shelter_public(mesh, honest["header"]))
    assert mesh.open(data).record == samples.status()


def test_event_ids_are_unique_per_seal(mesh):
    ids = [envelope.read_header(mesh.seal())["eventId"] for _ in range(50)]
    assert len(set(ids)) == 50
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(uuid4, i) for i in ids)


def test_sealing_twice_gives_different_ciphertexts(mesh):
    a, b = mesh.seal(event_id="same"), mesh.seal(event_id="same")
    assert _parts(a)["header"] == _parts(b)["header"]
    assert _parts(a)["ciphertext"] != _parts(b)["ciphertext"]


def test_age_and_skew_limits_are_inclusive(mesh):
    data = mesh.seal()
    assert mesh.open(data, now=T + envelope.MAX_AGE_MS).record
    assert mesh.open(data, now=T - envelope.MAX_SKEW_MS).record
    with pytest.raises(SealError) as err:
        mesh.open(data, now=T + 1_001, max_age_ms=1_000)
    assert err.value.reason == "too_old"


def test_seal_refuses_a_record_that_is_not_an_event(mesh):
    with pytest.raises(SealError) as err:
        envelope.seal("Directory", sample("Directory"), mesh.keys[HOTLINE], SHELTER,
                      mesh.directory, T)
    assert str(err.value) == "envelope rejected"


# --- one test per reason ------------------------------------------------------------------------

def _malformed_noncanonical(mesh):
    """The eventId length as a padded two-byte varint: decodes to the same value."""
    data = mesh.seal(event_id="e" * 36)
    assert data[10] == 72  # zig-zag 36
    return data[:10] + b"\xc8\x00" + data[11:], {}


def _unknown_sender(mesh):
    without = {a: k for a, k in mesh.keys.items() if a != HOTLINE}
    return mesh.seal(), {"trusted": mesh.load(Mesh.draft_of(without))}


def _sender_key_not_in_directory(mesh):
    rotated = mesh.keys[HOTLINE].with_new_keys(T)
    return mesh.seal(sender_keys=rotated), {}


def _recipient_lacks_key(mesh):
    fresh = keys.generate(SHELTER, T)
    rotated_away = keys.AgencyKeys(SHELTER, fresh.signing, fresh.decryption)
    return mesh.seal(), {"recipient_keys": rotated_away}


def _suite_and_key_kind_disagree(mesh):
    honest = _parts(mesh.seal())
    kind = envelope.SUITES[honest["header"]["suite"]][0]
    other = next(k for k in mesh.keys[SHELTER].decryption if k.kind != kind)
    header = {**honest["header"], "recipientKeyId": other.key_id}
    return forge(header, b"", mesh.keys[HOTLINE].signing, b"", ciphertext=b"x" * 64), {}


def _revoked_sender_key(mesh):
    draft = directory.revoke_key(mesh.draft, HOTLINE, mesh.keys[HOTLINE].signing.key_id, T0 + 1)
    return mesh.seal(), {"trusted": mesh.load(draft)}


def _swapped_signature(mesh):
    a, b = _parts(mesh.seal()), _parts(mesh.seal())
    return _envelope_bytes(a["header"], a["ciphertext"], b["signature"]), {}


def _signed_by_another_agency(mesh):
    honest = _parts(mesh.seal())
    return forge(honest["header"], b"", mesh.keys[MOI].signing, b"",
                 ciphertext=honest["ciphertext"]), {}


def _impersonation(mesh):
    """HOTLINE claims to be MOI (MOI's id and key id in the header) but can only sign as itself."""
    honest = _parts(mesh.seal())
    header = {**honest["header"], "sender": MOI, "senderKeyId": mesh.keys[MOI].signing.key_id}
    inner = codec.encode("ReferralStatus", samples.status())
    return forge(header, inner, mesh.keys[HOTLINE].signing, _shelter_public(mesh, header)), {}


def _flipped_ciphertext_resigned(mesh):
    honest = _parts(mesh.seal())
    ct = bytearray(honest["ciphertext"])
    ct[-1] ^= 1
    return forge(honest["header"], b"", mesh.keys[HOTLINE].signing, b"", ciphertext=bytes(ct)), {}


def _ciphertext_of_another_header(mesh):
    """The HPKE info binds the header: a ciphertext moved under another (re-signed) header fails."""
    a, b = _parts(mesh.seal()), _parts(mesh.seal())
    return forge(a["header"], b"", mesh.keys[HOTLINE].signing, b"", ciphertext=b["ciphertext"]), {}


def _type_mismatch(mesh):
    honest = _parts(mesh.seal())
    header = {**honest["header"], "eventType": "Consent"}
    inner = codec.encode("ReferralStatus", samples.status())
    return forge(header, inner, mesh.keys[HOTLINE].signing, _shelter_public(mesh, header)), {}


def _inner_not_a_record(mesh):
    honest = _parts(mesh.seal())
    return forge(honest["header"], b"\xc3\x01 not a record", mesh.keys[HOTLINE].signing,
                 _shelter_public(mesh, honest["header"])), {}


def _fingerprint_mismatch(mesh):
    honest = _parts(mesh.seal())
    header = {**honest["header"], "schemaFingerprint": bytes(8)}
    inner = codec.encode("ReferralStatus", samples.status())
    return forge(header, inner, mesh.keys[HOTLINE].signing, _shelter_public(mesh, header)), {}


def _x25519_for_a_hybrid_recipient(mesh):
    """Sealed with X25519 alone (as an edition that marked SHELTER X25519-only allowed), opened
    by SHELTER under the directory that gives it an ML-KEM key: a downgrade."""
    return mesh.seal(suite=envelope.CLASSIC, trusted=mesh.classic), {}


def _x25519_forged_for_a_hybrid_recipient(mesh):
    """A sender that builds the X25519 envelope itself, with a correct header and signature."""
    honest = _parts(mesh.seal())
    kind = "X25519"
    key_id, public = mesh.directory.encryption_key(SHELTER, kind, T)
    header = {**honest["header"], "suite": envelope.CLASSIC, "recipientKeyId": key_id}
    inner = codec.encode("ReferralStatus", samples.status())
    return forge(header, inner, mesh.keys[HOTLINE].signing, public), {}


def _unknown_suite(mesh):
    mesh.seal(suite="X448_HKDFSHA512_CHACHA20POLY1305")
    raise AssertionError("seal accepted an unknown suite")


SCENARIOS = [
    ("garbage", "malformed", lambda m: (b"\x00" * 40, {})),
    ("empty", "malformed", lambda m: (b"", {})),
    ("truncated", "malformed", lambda m: (m.seal()[:-1], {})),
    ("trailing byte", "malformed", lambda m: (m.seal() + b"\x00", {})),
    ("not an envelope", "malformed",
     lambda m: (codec.encode("ReferralStatus", samples.status()), {})),
    ("non-canonical encoding", "malformed", _malformed_noncanonical),
    ("wrong recipient", "wrong_recipient", lambda m: (m.seal(), {"recipient": MOI})),
    ("sender not in directory", "unknown_sender", _unknown_sender),
    ("sender key not in directory", "unknown_key", _sender_key_not_in_directory),
    ("recipient lacks the decryption key", "unknown_key", _recipient_lacks_key),
    ("suite and key kind disagree", "unknown_key", _suite_and_key_kind_disagree),
    ("sender key revoked", "revoked_key", _revoked_sender_key),
    ("swapped signature", "bad_signature", _swapped_signature),
    ("signed by another agency", "bad_signature", _signed_by_another_agency),
    ("impersonation", "bad_signature", _impersonation),
    ("too old", "too_old", lambda m: (m.seal(), {"now": T + envelope.MAX_AGE_MS + 1})),
    ("from the future", "from_future", lambda m: (m.seal(), {"now": T - envelope.MAX_SKEW_MS - 1})),
    ("flipped ciphertext, re-signed", "decrypt_failed", _flipped_ciphertext_resigned),
    ("ciphertext of another header", "decrypt_failed", _ciphertext_of_another_header),
    ("header type differs from inner", "inner_mismatch", _type_mismatch),
    ("inner is not a record", "inner_mismatch", _inner_not_a_record),
    ("inner fingerprint differs", "inner_mismatch", _fingerprint_mismatch),
    ("X25519 for a hybrid recipient", "suite_downgrade", _x25519_for_a_hybrid_recipient),
    ("X25519 forged for a hybrid recipient", "suite_downgrade",
     _x25519_forged_for_a_hybrid_recipient),
    ("unknown suite", "unsupported_suite", _unknown_suite),
]


def test_every_reason_has_a_scenario():
    assert {reason for _, reason, _ in SCENARIOS} == set(SealError.REASONS)


@pytest.mark.parametrize("build, reason", [(b, r) for _, r, b in SCENARIOS],
                         ids=[name for name, _, _ in SCENARIOS])
def test_each_reason(mesh, build, reason):
    with pytest.raises(SealError) as err:
        data, where = build(mesh)
        mesh.open(data, **where)
    assert err.value.reason == reason, err.value.detail
    # A peer learns nothing from the error: one message, whatever the reason.
    assert str(err.value) == "envelope rejected"
    assert err.value.args == ("envelope rejected",)


# --- bit flips ----------------------------------------------------------------------------------

def test_every_single_bit_flip_is_rejected(mesh):
    """All 8 x len bits of one sealed X25519 ReferralStatus envelope (a few thousand opens,
    well under a second): each flip must raise SealError, never open, never another error."""
    data = mesh.seal("ReferralStatus", samples.status(), suite=envelope.CLASSIC,
                     trusted=mesh.classic)
    assert mesh.open(data, trusted=mesh.classic).record == samples.status()
    reasons = collections.Counter()
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            mesh.open(bytes(flipped), trusted=mesh.classic)
        except SealError as err:
            reasons[err.reason] += 1
        else:
            pytest.fail(f"bit {bit} flipped and the envelope still opened")
    assert sum(reasons.values()) == len(data) * 8 > 2000
    assert reasons["bad_signature"] > 0 and reasons["malformed"] > 0


# --- canaries -----------------------------------------------------------------------------------

def _canary(path: str) -> str:
    return f"CANARY-{path}-{hashlib.sha256(path.encode()).hexdigest()[:4]}-\u00e9"


def _plant(t, value, path: str, planted: dict):
    """A copy of ``value`` with every string (recursively, array items too) replaced by a
    canary naming its path; empty or null string arrays get two canaries."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        assert len(branches) == 1, path
        if value is None and not (branches[0] == "string" or isinstance(branches[0], dict)
                                  and branches[0].get("type") == "array"
                                  and branches[0]["items"] == "string"):
            return None
        return _plant(branches[0], value, path, planted)
    if t == "string":
        planted[path] = _canary(path)
        return planted[path]
    if isinstance(t, dict) and t["type"] == "record":
        return {f["name"]: _plant(f["type"], (value or {}).get(f["name"]),
                                  f"{path}.{f['name']}" if path else f["name"], planted)
                for f in t["fields"]}
    if isinstance(t, dict) and t["type"] == "array":
        items = list(value or [])
        if t["items"] == "string":
            items = items + [None] * max(0, 2 - len(items))
        return [_plant(t["items"], v, f"{path}[{i}]", planted) for i, v in enumerate(items)]
    return value  # enums and numbers: not strings


@pytest.fixture(scope="module")
def canary_referral():
    planted: dict[str, str] = {}
    value = _plant(schemas.contract("Referral").raw, samples.referral(), "", planted)
    return value, planted


def test_canaries_cover_every_string_field(canary_referral):
    value, planted = canary_referral
    assert records.Referral.from_dict(value).to_dict() == value
    for path in ("referralId", "person.firstName", "person.middleName", "person.citizenship[1]",
                 "victim.caseComment", "victim.typeOfSexExploitation[0]", "needs.medicalNotes",
                 "service.details", "service.dueDate", "senderAgency"):
        assert path in planted, path
    assert len(set(planted.values())) == len(planted) >= 40
    inner = codec.encode("Referral", value)
    for canary in planted.values():
        assert canary.encode("utf-8") in inner  # the search below would see them in clear


@pytest.mark.parametrize("suite", SUITES)
def test_no_canary_in_sealed_bytes(mesh, canary_referral, suite):
    value, planted = canary_referral
    trusted = mesh.trusted_for(suite)
    data = mesh.seal("Referral", value, suite=suite, trusted=trusted)
    leaked = [p for p, c in planted.items() if c.encode("utf-8") in data]
    assert leaked == []
    assert b"CANARY" not in data
    # ... while the clear header still routes it.
    assert HOTLINE.encode() in data and SHELTER.encode() in data
    header = envelope.read_header(data)
    assert (header["sender"], header["recipient"]) == (HOTLINE, SHELTER)
    assert mesh.open(data, trusted=trusted).record == value


# --- key rotation -------------------------------------------------------------------------------

def test_recipient_key_rotation(mesh):
    before = mesh.seal("Referral", suite=envelope.HYBRID)
    before_classic = mesh.seal("ReferralStatus", suite=envelope.CLASSIC, trusted=mesh.classic)
    rotated = mesh.keys[SHELTER].with_new_keys(T0 + DAY)
    draft = directory.add_member(mesh.draft, directory.member_entry(
        rotated, SHELTER, "NGO", "BH", None, T0 + DAY))
    # the same edition for each suite: SHELTER hybrid, or marked X25519-only
    editions = {envelope.HYBRID: mesh.load(draft, T0 + DAY),
                envelope.CLASSIC: mesh.load(x25519_only(draft, SHELTER, T0 + DAY), T0 + DAY)}
    now = T0 + DAY + 1
    # Events sealed for the old keys still open: the rotated keystore keeps them.
    for data, suite in ((before, envelope.HYBRID), (before_classic, envelope.CLASSIC)):
        assert mesh.open(data, now=now, recipient_keys=rotated, trusted=editions[suite]).record
    # New events use the new keys ...
    for suite, fresh in zip(SUITES, rotated.decryption[:2]):
        trusted = editions[suite]
        after = mesh.seal(suite=suite, now=now, trusted=trusted)
        assert envelope.read_header(after)["recipientKeyId"] == fresh.key_id
        assert mesh.open(after, now=now, recipient_keys=rotated, trusted=trusted).record
        # ... which the old keystore cannot open.
        with pytest.raises(SealError) as err:
            mesh.open(after, now=now, trusted=trusted)
        assert err.value.reason == "unknown_key"


def test_sender_key_rotation(mesh):
    before = mesh.seal()
    rotated = mesh.keys[HOTLINE].with_new_keys(T0 + DAY)
    draft = directory.add_member(mesh.draft, directory.member_entry(
        rotated, HOTLINE, "NGO", "BH", None, T0 + DAY))
    trusted = mesh.load(draft, T0 + DAY)
    now = T0 + DAY + 1
    after = mesh.seal(sender_keys=rotated, now=now, trusted=trusted)
    assert envelope.read_header(after)["senderKeyId"] == rotated.signing.key_id
    assert mesh.open(after, now=now, trusted=trusted).record
    assert mesh.open(before, now=now, trusted=trusted).record


# --- Envelope schema evolution ------------------------------------------------------------------

def _writer_variant(change) -> schemas.Contract:
    raw = copy.deepcopy(schemas.contract("Envelope").raw)
    change(raw)
    parsed = fastavro.parse_schema(raw)
    fp = bytes.fromhex(fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    return schemas.Contract("Envelope", 0, raw, parsed, fp)


def _header_fields(raw: dict) -> list:
    return raw["fields"][0]["type"]["fields"]


def _newer(raw):
    _header_fields(raw).append({"name": "traceId", "type": ["null", "string"], "default": None,
                                "doc": "A field a newer gateway adds."})


def _older(raw):
    event_type = _header_fields(raw)[1]["type"]
    event_type["symbols"] = [s for s in event_type["symbols"] if s != "Other"]
    del event_type["default"]


@pytest.mark.parametrize("change", [_newer, _older], ids=["newer writer", "older writer"])
def test_envelope_from_another_envelope_version_opens(mesh, monkeypatch, change):
    """codec promises that events written by an older or newer gateway are read and resolved;
    an Envelope written with another (compatible) Envelope schema must open too, during a
    rolling upgrade. The sender signs what it wrote; the reader has to check canonicity and the
    signature against the writer's schema, not its own."""
    writer = _writer_variant(change)
    monkeypatch.setitem(schemas.BY_FINGERPRINT, writer.fingerprint, writer)

    def encode(header, ct, sig):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, writer.parsed,
                                   {"header": header, "ciphertext": ct, "signature": sig})
        return codec.MARKER + writer.fingerprint + out.getvalue()

    current = _parts(mesh.seal())["header"]
    header = {**current, "traceId": "t-1"} if change is _newer else current
    inner = codec.encode("ReferralStatus", samples.status())
    kind, suite = envelope.SUITES[header["suite"]]
    info = envelope.LABEL + encode(header, b"", b"")
    ct = suite.encrypt(inner, keys.hpke_public(kind, _shelter_public(mesh, header)), info=info)
    sig = keys.sign(mesh.keys[HOTLINE].signing, envelope.LABEL + encode(header, ct, b""))
    try:
        opened = mesh.open(encode(header, ct, sig))
    except SealError as err:
        pytest.fail(f"refused as {err.reason}: {err.detail}")
    assert opened.record == samples.status()
    assert opened.header == current
