"""refmesh.codec: Avro single-object encoding (C3 01, fingerprint, body) of every contract, each
distinct decoding error, schema evolution through writer fingerprints, and fuzzing: whatever bytes
arrive, decode returns a whole value of its contract or raises a CodecError subclass."""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refmesh import codec, records, samples, schemas
from refmesh.errors import (
    BadMarkerError,
    CodecError,
    ConfigError,
    MalformedBodyError,
    MeshError,
    RecordError,
    SchemaMismatchError,
    TrailingBytesError,
    TruncatedError,
    UnknownFingerprintError,
)

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
_JSON_VALUES = json.loads((DATA / "core_sample_values.json").read_text())["values"]


def sample(name: str) -> dict:
    """A representative, fully filled value of contract ``name``."""
    if name == "Referral":
        return samples.referral()
    if name == "Consent":
        return samples.consent()
    if name == "ReferralStatus":
        return samples.status(reason="Other", detail="queued")
    return records.record_class(name).from_json(_JSON_VALUES[name]).to_dict()


def _body(name: str, value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.contract(name).parsed, value)
    return out.getvalue()


def _writer_contract(raw: dict, version: int = 0) -> schemas.Contract:
    """A contract for a writer schema that is not in schemas/, with its fingerprint computed
    here (fastavro's hex is already the little-endian single-object byte order)."""
    parsed = fastavro.parse_schema(raw)
    fp = bytes.fromhex(fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    return schemas.Contract(raw["name"], version, raw, parsed, fp)


def _single_object(contract: schemas.Contract, value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, contract.parsed, value)
    return codec.MARKER + contract.fingerprint + out.getvalue()


CONTRACTS = sorted(schemas.CURRENT)
REFERRAL = codec.encode("Referral", samples.referral())
STATUS = codec.encode("ReferralStatus", samples.status())


# --- round trips --------------------------------------------------------------------------------

def test_every_contract_has_a_sample():
    missing = [n for n in CONTRACTS if n not in ("Referral", "Consent", "ReferralStatus")
               and n not in _JSON_VALUES]
    assert missing == [], f"add a value for {missing} to tests/data/core_sample_values.json"


@pytest.mark.parametrize("name", CONTRACTS)
def test_sample_is_a_valid_full_value(name):
    value = sample(name)
    assert records.from_dict(name, value).to_dict() == value


@pytest.mark.parametrize("name", CONTRACTS)
def test_round_trip(name):
    value = sample(name)
    data = codec.encode(name, value)
    assert codec.decode(data) == (name, value)
    assert codec.decode(data, expect=name) == (name, value)


@pytest.mark.parametrize("name", CONTRACTS)
def test_encoding_is_marker_fingerprint_body(name):
    value = sample(name)
    data = codec.encode(name, value)
    fp = schemas.contract(name).fingerprint
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == fp
    assert codec.fingerprint_of(data) == fp
    assert data[10:] == _body(name, value)


def test_encoding_is_deterministic():
    assert codec.encode("Referral", samples.referral()) == REFERRAL


# --- each error ---------------------------------------------------------------------------------

def test_error_classes():
    for cls in (BadMarkerError, UnknownFingerprintError, TruncatedError, TrailingBytesError,
                MalformedBodyError, SchemaMismatchError):
        assert issubclass(cls, CodecError)
    assert issubclass(CodecError, MeshError) and issubclass(CodecError, ValueError)


@pytest.mark.parametrize("marker", [b"\xc3\x00", b"\xc2\x01", b"\x01\xc3", b"\x00\x00", b"Ob"])
def test_bad_marker(marker):
    with pytest.raises(BadMarkerError):
        codec.decode(marker + STATUS[2:])


def test_unknown_fingerprint():
    with pytest.raises(UnknownFingerprintError):
        codec.decode(codec.MARKER + b"\x00" * 8 + STATUS[10:])


def test_writer_known_but_not_a_current_type(monkeypatch):
    retired = _writer_contract({"type": "record", "name": "Retired", "namespace": "org.refmesh",
                                "fields": [{"name": "x", "type": "long", "doc": "x"}]})
    monkeypatch.setitem(schemas.BY_FINGERPRINT, retired.fingerprint, retired)
    with pytest.raises(UnknownFingerprintError):
        codec.decode(_single_object(retired, {"x": 1}))


@pytest.mark.parametrize("length", range(codec.HEADER_LEN))
def test_shorter_than_the_header_is_truncated(length):
    with pytest.raises(TruncatedError):
        codec.decode(REFERRAL[:length])


def test_every_proper_prefix_of_a_referral_is_refused():
    kinds = {}
    for length in range(len(REFERRAL)):
        with pytest.raises(CodecError) as err:
            codec.decode(REFERRAL[:length])
        if length > codec.HEADER_LEN:
            assert isinstance(err.value, (TruncatedError, MalformedBodyError)), (length, err.value)
        kinds[type(err.value).__name__] = kinds.get(type(err.value).__name__, 0) + 1
    # Cutting a record short is mostly reported as what it is.
    assert kinds["TruncatedError"] > 0.9 * len(REFERRAL)


@pytest.mark.parametrize("extra", [b"\x00", b"\x02", b"trailing bytes"])
def test_trailing_bytes(extra):
    with pytest.raises(TrailingBytesError):
        codec.decode(STATUS + extra)


def test_malformed_body():
    # ReferralStatus.state is an enum of 9 symbols; index 100 (zig-zag 200 = c8 01) is not one.
    good = codec.encode("ReferralStatus", samples.status())
    id_len = 1 + len(samples.status()["referralId"])
    bad = good[:10 + id_len] + b"\xc8\x01" + good[10 + id_len + 1:]
    with pytest.raises(MalformedBodyError):
        codec.decode(bad)


def test_decode_expecting_another_type():
    with pytest.raises(SchemaMismatchError):
        codec.decode(STATUS, expect="Referral")


WRONG_STATUS_VALUES = {
    "bad enum symbol": {"state": "lost"},
    "string for long": {"at": "yesterday"},
    "null for required string": {"setBy": None},
    "int for string": {"detail": 5},
    "long out of 64-bit range": {"at": 2**64},
    "float for long": {"at": 1.5},
    "unknown field": {"nickname": "x"},
}


@pytest.mark.parametrize("change", WRONG_STATUS_VALUES.values(), ids=WRONG_STATUS_VALUES.keys())
def test_encode_refuses_a_wrong_value(change):
    with pytest.raises(SchemaMismatchError):
        codec.encode("ReferralStatus", {**samples.status(), **change})


def test_encode_refuses_a_missing_field():
    value = samples.status()
    del value["setBy"]
    with pytest.raises(SchemaMismatchError):
        codec.encode("ReferralStatus", value)


@pytest.mark.parametrize("value", [None, 5, "text", ["list"]])
def test_encode_refuses_a_non_record(value):
    with pytest.raises(SchemaMismatchError):
        codec.encode("ReferralStatus", value)


def test_encode_refuses_an_int_out_of_32_bit_range():
    """Consent.version is an Avro int (32 bits); 2**40 cannot be written as one."""
    with pytest.raises(SchemaMismatchError):
        codec.encode("Consent", samples.consent(version=2**40))


def test_decode_refuses_an_int_out_of_32_bit_range_on_the_wire():
    """An int varint that does not fit 32 bits is invalid Avro (Java: "Invalid int encoding");
    the decoder must not hand a 2**40 "int" to the caller."""
    data = _single_object(schemas.contract("Consent"), samples.consent(version=2**40))
    with pytest.raises(MalformedBodyError):
        codec.decode(data)


def test_encode_unknown_contract():
    with pytest.raises(ConfigError):
        codec.encode("Nickname", {})


# --- schema evolution ---------------------------------------------------------------------------

def _status_without_detail() -> dict:
    raw = copy.deepcopy(schemas.contract("ReferralStatus").raw)
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "detail"]
    return raw


def test_older_writer_is_read_with_defaults(monkeypatch):
    old = _writer_contract(_status_without_detail())
    assert old.fingerprint not in schemas.BY_FINGERPRINT
    monkeypatch.setitem(schemas.BY_FINGERPRINT, old.fingerprint, old)
    value = {k: v for k, v in samples.status(reason="LackOfCapacity", state="rejected").items()
             if k != "detail"}
    name, decoded = codec.decode(_single_object(old, value), expect="ReferralStatus")
    assert name == "ReferralStatus"
    assert decoded == {**value, "detail": None}


def test_newer_writer_with_an_extra_field_is_read(monkeypatch):
    raw = copy.deepcopy(schemas.contract("ReferralStatus").raw)
    raw["fields"].append({"name": "note", "type": ["null", "string"], "default": None,
                          "doc": "A field this reader does not know."})
    new = _writer_contract(raw, version=99)
    monkeypatch.setitem(schemas.BY_FINGERPRINT, new.fingerprint, new)
    value = samples.status()
    _, decoded = codec.decode(_single_object(new, {**value, "note": "skip me"}))
    assert decoded == value


def test_incompatible_writer_is_a_schema_mismatch(monkeypatch):
    raw = copy.deepcopy(schemas.contract("ReferralStatus").raw)
    next(f for f in raw["fields"] if f["name"] == "at")["type"] = "string"
    odd = _writer_contract(raw)
    monkeypatch.setitem(schemas.BY_FINGERPRINT, odd.fingerprint, odd)
    with pytest.raises(SchemaMismatchError):
        codec.decode(_single_object(odd, {**samples.status(), "at": "noon"}))


def test_unregistered_writer_is_unknown():
    old = _writer_contract(_status_without_detail())
    value = {k: v for k, v in samples.status().items() if k != "detail"}
    with pytest.raises(UnknownFingerprintError):
        codec.decode(_single_object(old, value))


# --- fuzzing ------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
KNOWN_FPS = sorted(schemas.BY_FINGERPRINT)
VALID = [codec.encode(n, sample(n)) for n in CONTRACTS]


def _decode_or_codec_error(data: bytes) -> None:
    try:
        name, value = codec.decode(data)
    except CodecError:
        return
    # Whatever decodes is a whole, valid value of its contract ("validate on every decode").
    try:
        records.from_dict(name, value)
    except RecordError as exc:
        pytest.fail(f"decode returned an invalid {name}: {exc}")


@FUZZ
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(data):
    _decode_or_codec_error(data)


@FUZZ
@given(st.sampled_from(KNOWN_FPS), st.binary(max_size=512))
def test_fuzz_known_header_then_arbitrary_body(fp, body):
    _decode_or_codec_error(codec.MARKER + fp + body)


@FUZZ
@given(st.sampled_from(VALID),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(min_value=0))
def test_fuzz_mutated_valid_encodings(data, edits, cut):
    body = bytearray(data)
    for pos, byte in edits:
        body[codec.HEADER_LEN + pos % (len(body) - codec.HEADER_LEN)] = byte
    _decode_or_codec_error(bytes(body[: max(codec.HEADER_LEN, len(body) - cut % 4)]))


@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01"),
    (2**63 - 1, b"\xfe" + b"\xff" * 8 + b"\x01"), (-(2**63), b"\xff" * 9 + b"\x01"),
])
def test_zigzag_is_avros_long_encoding(n, encoded):
    assert codec.zigzag(n) == encoded
    assert fastavro.schemaless_reader(io.BytesIO(encoded), "long") == n
