"""Avro single-object encoding: marker C3 01, 8-byte little-endian CRC-64-AVRO fingerprint, body.

Every event says which schema wrote it, so no registry server is needed: a reader looks the
fingerprint up among the contracts it knows and resolves the writer's schema to its own
(schema evolution). Decoding either returns a whole value or raises one ``CodecError`` subclass
that names the problem; it never returns half a record.
"""
from __future__ import annotations

import io

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from refmesh import binary, records, schemas
from refmesh.binary import zigzag  # noqa: F401  (the envelope and tests use codec.zigzag)
from refmesh.errors import (
    BadMarkerError,
    MalformedBodyError,
    RecordError,
    SchemaMismatchError,
    TrailingBytesError,
    TruncatedError,
    UnknownFingerprintError,
)

MARKER = b"\xc3\x01"
HEADER_LEN = 10


def encode(name: str, value: dict) -> bytes:
    """Encode ``value`` (a dict shaped like the contract ``name``) as a single object, after
    checking it strictly (fastavro alone would write 1.5 as 1, or drop unknown fields).

    The compiled encoder checks as it writes; on a value it refuses, ``records.check`` says
    which field is wrong (and a value the check passes goes to fastavro, as before)."""
    contract = schemas.contract(name)
    out = _compiled_encode(contract, value)
    if out is not None:
        return out
    try:
        records.check(name, value)
    except RecordError as exc:
        raise SchemaMismatchError(f"value does not match schema {name}: {exc}") from exc
    return _fastavro_encode(contract, value)


def encode_with(contract: schemas.Contract, value: dict) -> bytes:
    """Encode an already checked value with a given (possibly older) contract."""
    out = _compiled_encode(contract, value)
    return _fastavro_encode(contract, value) if out is None else out


def _compiled_encode(contract: schemas.Contract, value: dict) -> bytes | None:
    enc = _compiled(_ENCODERS, contract, binary.encoder)
    if enc is None:
        return None
    out = bytearray(MARKER + contract.fingerprint)
    try:
        enc(value, out)
    except (binary.Invalid, UnicodeEncodeError, OverflowError):
        return None
    return bytes(out)


def _fastavro_encode(contract: schemas.Contract, value: dict) -> bytes:
    out = io.BytesIO()
    out.write(MARKER)
    out.write(contract.fingerprint)
    try:
        schemaless_writer(out, contract.parsed, value)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise SchemaMismatchError(f"value does not match {contract.name}: {exc}") from exc
    return out.getvalue()


_ENCODERS: dict = {}  # fingerprint -> compiled encoder, or None: fastavro for that schema
_DECODERS: dict = {}


def _compiled(cache: dict, contract: schemas.Contract, compile_):
    """The schema's compiled encoder or decoder, compiled at its first use; None when the
    schema uses what ``binary`` does not compile."""
    try:
        return cache[contract.fingerprint]
    except KeyError:
        pass
    try:
        fn = compile_(contract.raw)
    except NotImplementedError:
        fn = None
    cache[contract.fingerprint] = fn
    return fn


def fingerprint_of(data: bytes) -> bytes:
    """The writer-schema fingerprint in a single-object encoding, after checking the marker."""
    if len(data) < HEADER_LEN:
        raise TruncatedError(
            f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte single-object header"
        )
    if data[:2] != MARKER:
        raise BadMarkerError(f"bytes start with {data[:2].hex()}, not the Avro marker c301")
    return bytes(data[2:HEADER_LEN])


def decode(data: bytes, expect: str | None = None) -> tuple[str, dict]:
    """Decode a single object; return (contract name, value) in the current reader schema.

    ``expect`` names the record type the caller wants; any other type is a SchemaMismatchError.
    """
    writer, value = _decode(data, expect, resolve=True)
    return writer.name, value


def decode_as_written(data: bytes, expect: str | None = None) -> tuple[schemas.Contract, dict]:
    """Decode with the writer's own schema, no resolution: for checks that must re-create the
    exact bytes (an envelope's signature), whatever version wrote them."""
    return _decode(data, expect, resolve=False)


def _decode(data: bytes, expect: str | None, resolve: bool) -> tuple[schemas.Contract, dict]:
    fp = fingerprint_of(data)
    writer = schemas.BY_FINGERPRINT.get(fp)
    if writer is None:
        raise UnknownFingerprintError(f"unknown writer-schema fingerprint {fp.hex()}")
    if expect is not None and writer.name != expect:
        raise SchemaMismatchError(f"expected a {expect} record, got a {writer.name} record")
    reader = schemas.CURRENT.get(writer.name)
    if reader is None:
        raise UnknownFingerprintError(f"{writer.name} is not a record type this reader handles")
    target = reader if resolve else writer
    dec = None
    if writer.fingerprint == target.fingerprint:  # the same schema: no resolution to do
        dec = _compiled(_DECODERS, target, binary.decoder)
    if dec is None:
        return target, _fastavro_decode(data, writer, target, check=target is reader)
    try:
        value, end = dec(bytes(data), HEADER_LEN)
    except (EOFError, IndexError) as exc:
        raise TruncatedError(f"{writer.name} record ends early") from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        # The type only: the message may quote a value of the (decrypted) body.
        raise MalformedBodyError(f"{writer.name} body does not decode: {type(exc).__name__}") \
            from exc
    if end != len(data):
        raise TrailingBytesError(f"{len(data) - end} bytes after the end of the {writer.name} "
                                 "record")
    # No records.check: what the compiled decoder returns is valid by construction.
    return target, value


def _fastavro_decode(data: bytes, writer: schemas.Contract, target: schemas.Contract,
                     check: bool) -> dict:
    body = io.BytesIO(data)
    body.seek(HEADER_LEN)
    try:
        value = schemaless_reader(body, writer.parsed,
                                  None if target is writer else target.parsed)
    except SchemaResolutionError as exc:
        raise SchemaMismatchError(f"{writer.name} v{writer.version} cannot be read: {exc}") from exc
    except (EOFError, StopIteration) as exc:
        raise TruncatedError(f"{writer.name} record ends early") from exc
    except (ValueError, IndexError, UnicodeDecodeError, TypeError, OverflowError,
            MemoryError, KeyError) as exc:
        raise MalformedBodyError(f"{writer.name} body does not decode: {type(exc).__name__}") from exc
    if body.tell() != len(data):
        raise TrailingBytesError(
            f"{len(data) - body.tell()} bytes after the end of the {writer.name} record"
        )
    if check:
        try:  # validate on every decode: e.g. an int wider than 32 bits on the wire
            records.check(target.name, value)
        except RecordError as exc:
            raise MalformedBodyError(f"{writer.name} body out of range: {exc}") from exc
    return value
