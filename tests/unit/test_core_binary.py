"""refmesh.binary, the codec's compiled fast path, against fastavro and records.check: every
contract compiles, it writes fastavro's bytes, and whatever it decodes fastavro reads the same
and the strict check passes (so skipping records.check after it weakens nothing). Where it is
stricter than fastavro (a boolean byte other than 0 or 1, a negative enum index) it says so."""
from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refmesh import binary, codec, records, schemas
from refmesh.errors import MalformedBodyError, RecordError, SchemaMismatchError, TruncatedError
from tests.unit.test_core_codec import CONTRACTS, sample

ALL = sorted(schemas.BY_FINGERPRINT.values(), key=lambda c: (c.name, c.version))


@pytest.mark.parametrize("contract", ALL, ids=lambda c: f"{c.name}.v{c.version}")
def test_every_contract_and_release_compiles(contract):
    """No contract silently falls back to the slow path."""
    assert callable(binary.encoder(contract.raw)) and callable(binary.decoder(contract.raw))


def _fastavro_body(name: str, value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.contract(name).parsed, value)
    return out.getvalue()


@pytest.mark.parametrize("name", CONTRACTS)
def test_writes_fastavros_bytes_with_defaults_filled_in(name):
    value = sample(name)
    raw = schemas.contract(name).raw
    optional = {f["name"] for f in raw["fields"] if "default" in f}
    sparse = {k: v for k, v in value.items() if k not in optional}
    for v in (value, sparse):
        out = bytearray()
        binary.encoder(raw)(v, out)
        assert bytes(out) == _fastavro_body(name, v)


def test_long_strings_and_large_numbers_take_the_general_path():
    value = {**sample("ReferralStatus"), "detail": "é" * 3000, "at": -(2**63)}
    data = codec.encode("ReferralStatus", value)
    assert data[10:] == _fastavro_body("ReferralStatus", value)
    assert codec.decode(data) == ("ReferralStatus", value)


def _mutants():
    valid = [codec.encode(n, sample(n)) for n in CONTRACTS]
    return st.tuples(st.sampled_from(valid),
                     st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                              min_size=1, max_size=4),
                     st.integers(0, 3))


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_mutants())
def test_what_it_decodes_fastavro_reads_alike_and_the_check_passes(case):
    data, edits, cut = case
    body = bytearray(data)
    for pos, byte in edits:
        body[codec.HEADER_LEN + pos % (len(body) - codec.HEADER_LEN)] = byte
    body = bytes(body[:len(body) - cut])
    contract = schemas.BY_FINGERPRINT[body[2:10]]
    try:
        value, end = binary.decoder(contract.raw)(body, codec.HEADER_LEN)
    except (EOFError, IndexError, ValueError):
        return
    stream = io.BytesIO(body[codec.HEADER_LEN:])
    assert fastavro.schemaless_reader(stream, contract.parsed) == value
    if end == len(body):
        assert stream.tell() == len(body) - codec.HEADER_LEN
        try:
            records.check(contract.name, value)
        except RecordError as exc:
            pytest.fail(f"the compiled decoder returned an invalid {contract.name}: {exc}")


def _status_with_state_byte(byte: bytes) -> bytes:
    good = codec.encode("ReferralStatus", sample("ReferralStatus"))
    at = codec.HEADER_LEN + 1 + len(sample("ReferralStatus")["referralId"])
    return good[:at] + byte + good[at + 1:]


def test_stricter_than_fastavro_a_negative_enum_index():
    """fastavro reads enum index -1 as the last symbol (Python indexing); it is malformed."""
    with pytest.raises(MalformedBodyError):
        codec.decode(_status_with_state_byte(b"\x01"))


def test_a_non_minimal_enum_index_still_decodes_like_fastavro():
    data = _status_with_state_byte(b"\x82\x00")  # index 1 written in two bytes
    stream = io.BytesIO(data[10:])
    expected = fastavro.schemaless_reader(stream, schemas.contract("ReferralStatus").parsed)
    assert codec.decode(data) == ("ReferralStatus", expected)


@pytest.mark.parametrize("varint, error", [
    (b"\xff" * 10 + b"\x01", MalformedBodyError),  # 11 bytes
    (b"\xff" * 9 + b"\x7f", MalformedBodyError),   # 10 bytes, over 64 bits
    (b"\xff" * 4, TruncatedError),
])
def test_a_long_varint(varint, error):
    with pytest.raises(error):
        codec.decode(codec.MARKER + schemas.contract("ReferralStatus").fingerprint
                     + b"\x02a\x00\x00\x00\x02b" + varint)


def test_an_array_declaring_more_items_than_bytes_left_is_truncated():
    dec = binary.decoder({"type": "record", "name": "A", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "string"}}]})
    assert dec(b"\x04\x02a\x00\x00", 0) == ({"xs": ["a", ""]}, 5)
    with pytest.raises(EOFError):
        dec(binary.zigzag(2**40) + b"\x00" * 64, 0)


def test_a_schema_it_does_not_compile_is_left_to_fastavro():
    with pytest.raises(NotImplementedError):
        binary.decoder({"type": "record", "name": "M", "fields": [
            {"name": "m", "type": {"type": "map", "values": "long"}}]})


@pytest.mark.parametrize("bad", [2**31, -(2**31) - 1, True, 1.0, "1"])
def test_encode_refuses_what_the_check_refuses(bad):
    with pytest.raises(SchemaMismatchError, match="consent|version|Consent"):
        codec.encode("Consent", {**sample("Consent"), "version": bad})


def test_encode_refuses_a_lone_surrogate():
    with pytest.raises(SchemaMismatchError, match="surrogate"):
        codec.encode("ReferralStatus", {**sample("ReferralStatus"), "detail": "\ud800"})
