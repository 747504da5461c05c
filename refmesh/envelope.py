"""Sealed envelopes: HPKE (RFC 9180) encryption for one recipient, Ed25519 signature by the sender.

Wire format: an ``Envelope`` record in Avro single-object encoding (docs/protocol.md,
"Envelope format"):

    header      clear routing data: event id and type, sender, recipient, key ids, inner
                schema fingerprint, created-at, suite; nothing about the person
    ciphertext  HPKE single-shot output (encapsulated key || AEAD ciphertext) of the inner
                record's single-object encoding, with info = LABEL || encoding of the envelope
                with empty ciphertext and signature (so the header is bound to the ciphertext)
    signature   Ed25519 over LABEL || encoding of the envelope with an empty signature

Opening checks, in order: the bytes decode and are canonical (re-encoding gives the same bytes,
so no bit can change without changing a value), the recipient is us, the sender's signing key is
in the trusted directory and not revoked, the signature verifies, the event is neither too old
nor from the future, the suite is the hybrid one if the directory gives us (the recipient) an
unrevoked ML-KEM key (refmesh.directory.suite_problem: X25519 alone is then a downgrade), we
hold the decryption key, decryption succeeds, and the inner record's type and fingerprint match
the header. Any failure raises ``SealError`` whose ``reason`` says which check failed, for the
audit log; the message a peer could see is always the same.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from refmesh import codec, keys
from refmesh.directory import TrustedDirectory, is_hybrid_member, suite_problem
from refmesh.errors import CodecError, DirectoryError, SealError

LABEL = b"refmesh-envelope-v1\0"
HYBRID = "MLKEM768X25519_HKDFSHA256_AES256GCM"
CLASSIC = "X25519_HKDFSHA256_AES256GCM"
_KDF, _AEAD = hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
SUITES = {HYBRID: ("MLKEM768X25519", hpke.Suite(hpke.KEM.MLKEM768_X25519, _KDF, _AEAD)),
          CLASSIC: ("X25519", hpke.Suite(hpke.KEM.X25519, _KDF, _AEAD))}
EVENT_TYPES = ("Referral", "ReferralStatus", "Consent", "ErasureNotice", "Receipt")
MAX_AGE_MS = 30 * 86_400_000  # an event older than 30 days is refused (replay window)
MAX_SKEW_MS = 5 * 60_000  # clocks may disagree by 5 minutes


@dataclass(frozen=True)
class Opened:
    """An opened event: its clear header and the inner record (as a dict of its contract),
    and that record's single-object encoding as signed and decrypted (``inner``: what a
    re-send has in common with the first copy, ``replay.digest``)."""

    header: dict
    record_type: str
    record: dict
    inner: bytes = field(default=b"", repr=False, compare=False)


def seal(record_type: str, record: dict, sender: keys.AgencyKeys, recipient: str,
         directory: TrustedDirectory, now: int, *, suite: str | None = None,
         event_id: str | None = None) -> bytes:
    """Seal ``record`` (a dict of contract ``record_type``) from ``sender`` for ``recipient``.

    The suite is the directory's choice (``suite_for``) unless ``suite`` names one: an explicit
    X25519 suite for a recipient with a hybrid key is sealed as asked (tests and attackers), and
    that recipient refuses it (``suite_downgrade``)."""
    if record_type not in EVENT_TYPES:
        raise SealError("inner_mismatch", f"{record_type} is not an event type")
    if suite is None:
        suite = suite_for(directory, recipient)
    if suite not in SUITES:
        raise SealError("unsupported_suite", f"unknown suite {suite}")
    kind, hpke_suite = SUITES[suite]
    recipient_key_id, recipient_public = directory.encryption_key(recipient, kind, now)
    try:
        public_key = keys.hpke_public(kind, recipient_public)
    except ValueError as exc:
        raise DirectoryError(f"{recipient} key {recipient_key_id} is malformed",
                             "unknown_key") from exc
    inner = codec.encode(record_type, record)
    header = {
        "eventId": event_id or str(uuid.uuid4()), "eventType": record_type,
        "sender": sender.agency_id, "recipient": recipient,
        "senderKeyId": sender.signing.key_id, "recipientKeyId": recipient_key_id,
        "schemaFingerprint": codec.fingerprint_of(inner), "createdAt": now, "suite": suite,
    }
    framed = _framer(codec.encode("Envelope", {"header": header, "ciphertext": b"",
                                               "signature": b""}))
    ciphertext = hpke_suite.encrypt(inner, public_key, info=LABEL + framed(b"", b""))
    signature = keys.sign(sender.signing, LABEL + framed(ciphertext, b""))
    return framed(ciphertext, signature)


def suite_for(directory: TrustedDirectory, recipient: str) -> str:
    """The suite to seal with for ``recipient``: the hybrid one, unless its directory entry
    publishes no unrevoked ML-KEM key (the directory's mark of an X25519-only member)."""
    return HYBRID if is_hybrid_member(directory.member(recipient)) else CLASSIC


def _framer(empty: bytes):
    """``framed(ciphertext, signature)``: the envelope's encoding from ``empty``, its encoding
    with an empty ciphertext and signature. An Avro record is the concatenation of its fields
    and the last two are these (each empty one is the single byte 0), so the header is encoded
    once for the HPKE info, the signed bytes and the envelope, instead of three times."""
    if empty[-2:] != b"\0\0":
        raise SealError("malformed", "envelope encoding does not end with its two bytes fields")
    prefix = empty[:-2]
    return lambda ciphertext, signature: b"".join(
        (prefix, codec.zigzag(len(ciphertext)), ciphertext, codec.zigzag(len(signature)),
         signature))


def read_header(data: bytes) -> dict:
    """The clear header of an envelope, unverified: for routing and logs only."""
    try:
        return codec.decode(data, expect="Envelope")[1]["header"]
    except CodecError as exc:
        raise SealError("malformed", str(exc)) from exc


def open(data: bytes, recipient: keys.AgencyKeys, directory: TrustedDirectory, now: int, *,
         max_age_ms: int = MAX_AGE_MS, max_skew_ms: int = MAX_SKEW_MS) -> Opened:
    """Verify and decrypt an envelope sealed for ``recipient``; raise SealError otherwise.

    The byte-exact checks (canonical form, signature, HPKE info) use the schema version that
    wrote the envelope, so gateways on different compatible versions still read each other.
    """
    try:
        writer, as_written = codec.decode_as_written(data, expect="Envelope")
        current = writer.fingerprint == codec.schemas.contract("Envelope").fingerprint
        envelope = as_written if current else codec.decode(data, expect="Envelope")[1]
    except CodecError as exc:
        raise SealError("malformed", str(exc)) from exc
    ciphertext = envelope["ciphertext"]
    written = _framer(codec.encode_with(writer, {**as_written, "ciphertext": b"",
                                                 "signature": b""}))
    if written(as_written["ciphertext"], as_written["signature"]) != data:
        raise SealError("malformed", "non-canonical encoding")

    header = envelope["header"]
    if header["recipient"] != recipient.agency_id:
        raise SealError("wrong_recipient", f"sealed for {header['recipient']}")
    try:
        sender_public = directory.signing_key(header["sender"], header["senderKeyId"], now)
    except DirectoryError as exc:
        reason = {"unknown_agency": "unknown_sender", "revoked_key": "revoked_key"}.get(
            exc.reason, "unknown_key")
        raise SealError(reason, str(exc)) from exc
    if not keys.verify(sender_public, envelope["signature"], LABEL + written(ciphertext, b"")):
        raise SealError("bad_signature", f"event {header['eventId']}")
    age = now - header["createdAt"]
    if age > max_age_ms:
        raise SealError("too_old", f"event {header['eventId']} is {age} ms old")
    if -age > max_skew_ms:
        raise SealError("from_future", f"event {header['eventId']} is {-age} ms ahead")
    kind, hpke_suite = SUITES[header["suite"]]  # an unknown symbol cannot decode
    # The recipient's entry decides: its KEM key is the one the envelope is sealed for. A
    # recipient no longer in the directory publishes no key, so it is X25519-only.
    me = directory.members.get(recipient.agency_id, {"agencyId": recipient.agency_id,
                                                     "keys": []})
    downgrade = suite_problem(me, kind)
    if downgrade is not None:
        raise SealError("suite_downgrade", f"event {header['eventId']}: {downgrade}")
    private = recipient.decryption_key(header["recipientKeyId"])
    if private is None or private.kind != kind:
        raise SealError("unknown_key", f"no decryption key {header['recipientKeyId']}")
    try:
        inner = hpke_suite.decrypt(ciphertext, private.loaded, info=LABEL + written(b"", b""))
    except (InvalidTag, ValueError) as exc:
        raise SealError("decrypt_failed", f"event {header['eventId']}") from exc
    try:
        record_type, record = codec.decode(inner)
    except CodecError as exc:
        raise SealError("inner_mismatch", str(exc)) from exc
    if record_type != header["eventType"] or codec.fingerprint_of(inner) != header[
            "schemaFingerprint"]:
        raise SealError("inner_mismatch", f"header says {header['eventType']}")
    return Opened(header, record_type, record, inner)


# --- the domain's own state at rest on the broker ---------------------------------------------

_STATE_INFO = b"refmesh-state-v1"


def _state_cipher(owner: keys.AgencyKeys) -> AESSIV:
    # Derived from the owner's oldest X25519 decryption key, which rotation keeps (old keys stay
    # so that old events open), so state written before a rotation still opens after it.
    base = [k for k in owner.decryption if k.kind == "X25519"][-1]
    return _cipher_of(base.secret)


@functools.lru_cache(maxsize=64)
def _cipher_of(secret: bytes) -> AESSIV:
    """The state cipher of one base key, derived once (the agent protects and unprotects
    several table values per event; HKDF and the key schedule each time cost about 6 us)."""
    return AESSIV(HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                       info=_STATE_INFO).derive(secret))


def protect(owner: keys.AgencyKeys, context: bytes, plaintext: bytes) -> bytes:
    """Encrypt state only ``owner`` reads back (a policy domain's consent table and forwarding
    log live in Kafka changelog topics, on the untrusted broker). AES-SIV: deterministic, so no
    nonce to draw, and misuse-resistant; ``context`` (e.g. the table and key) is bound as
    associated data, so a value cannot be moved to another key."""
    return _state_cipher(owner).encrypt(plaintext, [_STATE_INFO, context])


def unprotect(owner: keys.AgencyKeys, context: bytes, data: bytes) -> bytes:
    try:
        return _state_cipher(owner).decrypt(data, [_STATE_INFO, context])
    except (InvalidTag, ValueError) as exc:
        raise SealError("decrypt_failed", "protected state does not open") from exc
