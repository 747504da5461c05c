"""Hostile envelopes that need real keys: forged, replayed, revoked, misaddressed, tampered.

``envelopes_for_gateway`` and ``envelopes_for_domain`` take a running mesh's keys (a dict
agency id -> AgencyKeys) and trusted directory and return ``HostileEvent``s, each with the
dead-letter reason the gateway or the domain must give it. ``revoke_extra_keys`` writes the
directory edition they need for the revoked-key case: an extra signing key of some agencies,
added and revoked (the agencies' own keys stay valid, so the rest of the mesh is unaffected).

``corpus_fixture`` is a small mesh of fixed keys (no randomness, no clock) for the static corpus
and the fuzz targets.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from functools import lru_cache

from refmesh import codec, directory, envelope, keys, samples
from refmesh.directory import TrustedDirectory
from refmesh.keys import AgencyKeys, PrivateKey

DAY_MS = 86_400_000
CORPUS_T0 = 1_790_000_000_000
CORPUS_T = CORPUS_T0 + 3_600_000


@dataclass(frozen=True)
class HostileEvent:
    name: str
    value: bytes | None  # the Kafka record value (None: no value at all)
    reason: str  # the refmesh-reason header the dead letter must carry
    what: str = ""


# --- a fixed mesh for the static corpus and the fuzz targets --------------------------------

def fixed_keys(agency_id: str, now: int = CORPUS_T0) -> AgencyKeys:
    """Keys derived from the agency id: the same on every machine and every run."""
    def secret(label: str, size: int) -> bytes:
        return hashlib.shake_256(f"refmesh-hostile|{agency_id}|{label}".encode()).digest(size)

    return AgencyKeys(agency_id, PrivateKey("Ed25519", secret("sig", 32), now), (
        PrivateKey("MLKEM768X25519", secret("mlkx", 96), now),
        PrivateKey("X25519", secret("x25519", 32), now)))


@lru_cache(maxsize=1)
def corpus_fixture() -> tuple[dict[str, AgencyKeys], TrustedDirectory, str]:
    """(keys by agency, directory, the id of an agency nothing is sealed for). The directory
    signature is Ed25519, deterministic, so the whole fixture is the same on every run."""
    coordinator = "ZZ/GOV/COORD"
    ids = (coordinator, "ZZ/GOV/SENDER", "ZZ/GOV/RECEIVER", "ZZ/GOV/STRANGER")
    all_keys = {a: fixed_keys(a) for a in ids}
    draft = directory.empty(coordinator)
    for agency_id, k in all_keys.items():
        draft = directory.add_member(draft, directory.member_entry(
            k, agency_id, "CentralGovernmentOrganisation", "ZZ",
            None if agency_id == coordinator else coordinator, CORPUS_T0))
    signed = directory.sign(draft, all_keys[coordinator], CORPUS_T0)
    trusted = directory.load(signed, directory.TrustAnchor.of(all_keys[coordinator]), CORPUS_T0)
    return all_keys, trusted, "ZZ/GOV/STRANGER"


# --- building blocks ----------------------------------------------------------------------

def _parts(data: bytes) -> dict:
    return codec.decode(data, expect="Envelope")[1]


def _encode(header: dict, ciphertext: bytes, signature: bytes) -> bytes:
    return codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                     "signature": signature})


def _sign(header: dict, ciphertext: bytes, signer: PrivateKey) -> bytes:
    signature = keys.sign(signer, envelope.LABEL + _encode(header, ciphertext, b""))
    return _encode(header, ciphertext, signature)


def forge(header: dict, inner: bytes, signer: PrivateKey, trusted: TrustedDirectory,
          now: int) -> bytes:
    """Seal by hand, as docs/protocol.md's envelope format says, with any header and inner bytes:
    what a sender holding ``signer`` can make."""
    kind, suite = envelope.SUITES[header["suite"]]
    _, public = trusted.encryption_key(header["recipient"], kind, now)
    info = envelope.LABEL + _encode(header, b"", b"")
    return _sign(header, suite.encrypt(inner, keys.hpke_public(kind, public), info=info), signer)


def _tampered(data: bytes, **changes) -> bytes:
    """``data`` with header fields changed after signing (re-encoded canonically)."""
    parts = _parts(data)
    return _encode({**parts["header"], **changes}, parts["ciphertext"], parts["signature"])


def _stranger(agency_id: str, now: int) -> AgencyKeys:
    return keys.generate(agency_id, now)


def _referral(sender: str, recipient: str, now: int, **over) -> dict:
    return samples.referral(referral_id=f"hostile-{uuid.uuid4()}", sender=sender,
                            recipient=recipient, created_at=now, **over)


def _common(signer: AgencyKeys, target: str, other: AgencyKeys, record_type: str,
            record: dict, trusted: TrustedDirectory, now: int,
            revoked: AgencyKeys | None) -> list[HostileEvent]:
    """What both a gateway and a domain must refuse, ``signer`` being a sender ``target``
    accepts this record from and ``other`` another member."""
    me, other_keys, other = signer.agency_id, other, other.agency_id
    good = envelope.seal(record_type, record, signer, target, trusted, now)
    header = _parts(good)["header"]
    inner = codec.encode(record_type, record)
    other_keys_id = trusted.member(other)["keys"][0]["keyId"]
    e = HostileEvent
    out = [
        e("forged: the sender's id, a key not in the directory", envelope.seal(
            record_type, record, AgencyKeys(me, _stranger(me, now).signing, ()), target,
            trusted, now), "unknown_key"),
        e("forged: an agency not in the directory", envelope.seal(
            record_type, record, _stranger("ZZ/GOV/FORGER", now), target, trusted, now),
          "unknown_sender"),
        e("forged: the sender's id and key id, signed by another agency",
          _sign(header, _parts(good)["ciphertext"], other_keys.signing),
          "bad_signature"),
        e("replayed: sealed 31 days ago with the sender's real key", forge(
            {**header, "createdAt": now - 31 * DAY_MS}, inner, signer.signing, trusted, now),
          "too_old"),
        e("from the future: sealed an hour ahead", forge(
            {**header, "createdAt": now + 3_600_000}, inner, signer.signing, trusted, now),
          "from_future"),
        e("addressed to another agency", envelope.seal(
            record_type, record, signer, other, trusted, now), "wrong_recipient"),
        e("valid header and signature, garbage ciphertext",
          _sign(header, hashlib.shake_256(b"garbage").digest(1200), signer.signing),
          "decrypt_failed"),
        e("header type differs from the inner record", forge(
            {**header, "eventType": "Receipt"}, inner, signer.signing, trusted, now),
          "inner_mismatch"),
        e("ciphertext changed after signing", _encode(
            header, bytes([_parts(good)["ciphertext"][0] ^ 1]) + _parts(good)["ciphertext"][1:],
            _parts(good)["signature"]), "bad_signature"),
        e("signature changed", _encode(header, _parts(good)["ciphertext"],
                                       bytes(64)), "bad_signature"),
    ]
    tamper = {  # each header field changed after signing: the reason the first failing check gives
        "eventId": (str(uuid.uuid4()), "bad_signature"),
        "eventType": ("Consent" if record_type != "Consent" else "Referral", "bad_signature"),
        "sender": (other, "unknown_key"),  # other has no key with the sender's key id
        "recipient": (other, "wrong_recipient"),
        "senderKeyId": (other_keys_id, "unknown_key"),
        "recipientKeyId": ("x25519-0000000000000000", "bad_signature"),
        "schemaFingerprint": (bytes(8), "bad_signature"),
        "createdAt": (now - 1, "bad_signature"),
        "suite": (envelope.CLASSIC if header["suite"] != envelope.CLASSIC else envelope.HYBRID,
                  "bad_signature"),
    }
    assert set(tamper) == set(header), "a header field has no tampering case"
    for field, (value, reason) in tamper.items():
        out.append(e(f"tampered header: {field}", _tampered(good, **{field: value}), reason))
    if revoked is not None:
        out.append(e("signed with a revoked key", envelope.seal(
            record_type, record, revoked, target, trusted, now), "revoked_key"))
    out.append(e("2 MiB ciphertext, signed by the real sender",
                 _sign(header, hashlib.shake_256(b"big").digest(2 * 1024 * 1024),
                       signer.signing), "decrypt_failed", "oversized"))
    return out


def envelopes_for_gateway(agency_keys: dict[str, AgencyKeys], trusted: TrustedDirectory, *,
                          gateway: str, domain: str, member: str, now: int,
                          revoked: dict[str, AgencyKeys] | None = None) -> list[HostileEvent]:
    """Envelopes for ``gateway``'s inbox topic that it must dead-letter: ``domain`` is its
    policy domain (the only sender of referrals it accepts), ``member`` another member
    gateway. ``agency_keys`` must hold the keys of ``domain`` and ``member``."""
    d, m = agency_keys[domain], agency_keys[member]
    referral = _referral(member, gateway, now)
    out = _common(d, gateway, m, "Referral", referral, trusted, now,
                  (revoked or {}).get(domain))
    e = HostileEvent
    out += [
        e("a referral straight from a member gateway, not through the domain",
          envelope.seal("Referral", referral, m, gateway, trusted, now), "sender_mismatch"),
        e("sealed for this gateway, the referral names another recipient", envelope.seal(
            "Referral", _referral(member, member, now), d, gateway, trusted, now),
          "misaddressed"),
        e("a consent sent to a gateway", envelope.seal(
            "Consent", samples.consent(controller=member), m, gateway, trusted, now),
          "unexpected_type"),
        e("a status whose setBy is not its signer", envelope.seal(
            "ReferralStatus", samples.status(referral_id=referral["referralId"],
                                             state="accepted", set_by=domain, at=now),
            m, gateway, trusted, now), "sender_mismatch"),
    ]
    return out


def envelopes_for_domain(agency_keys: dict[str, AgencyKeys], trusted: TrustedDirectory, *,
                         domain: str, member: str, other: str, now: int,
                         revoked: dict[str, AgencyKeys] | None = None) -> list[HostileEvent]:
    """Envelopes for ``domain``'s inbox topic that its agents must dead-letter: ``member`` and
    ``other`` are two of its member gateways, whose keys ``agency_keys`` must hold."""
    m = agency_keys[member]
    referral = _referral(member, other, now)
    out = _common(m, domain, agency_keys[other], "Referral", referral, trusted, now,
                  (revoked or {}).get(member))
    e = HostileEvent
    out += [
        e("a referral whose senderAgency is not its signer", envelope.seal(
            "Referral", _referral(other, member, now), m, domain, trusted, now),
          "sender_mismatch"),
        e("a consent whose controller is not its signer", envelope.seal(
            "Consent", samples.consent(controller=other), m, domain, trusted, now),
          "sender_mismatch"),
        e("a status that is no outcome sent to a domain", envelope.seal(
            "ReferralStatus", samples.status(set_by=member, at=now), m, domain, trusted, now),
          "not_an_outcome"),
        e("an outcome copy set by another agency", envelope.seal(
            "ReferralStatus", samples.status(set_by=other, state="accepted", at=now), m,
            domain, trusted, now), "sender_mismatch"),
    ]
    return out


def revoke_extra_keys(signed: bytes, anchor: directory.TrustAnchor, coordinator: AgencyKeys,
                      agencies: list[str], now: int) -> tuple[bytes, dict[str, AgencyKeys]]:
    """The next directory edition, in which each of ``agencies`` has one more signing key,
    already revoked; and for each, keys signing with that revoked key. Revoking an agency's
    real key would cut it off for the rest of a test; the extra key shows the same check."""
    draft = directory.load(signed, anchor, now).body
    revoked = {}
    for agency_id in agencies:
        extra = keys.generate(agency_id, now)
        member = next(m for m in draft["members"] if m["agencyId"] == agency_id)
        key = {"keyId": extra.signing.key_id, "kind": "Ed25519",
               "publicKey": extra.signing.public, "validFrom": now, "validUntil": None,
               "revokedAt": None}
        draft = directory.add_member(draft, {**member, "keys": [*member["keys"], key]})
        draft = directory.revoke_key(draft, agency_id, extra.signing.key_id, now)
        revoked[agency_id] = AgencyKeys(agency_id, extra.signing, ())
    return directory.sign(draft, coordinator, now), revoked
