"""The signed policy file: the domain operator signs the policy text with the domain's Ed25519
key, as the coordinator signs the directory; the agents verify it against the trusted directory
and refuse to start on an unsigned, tampered, foreign or revoked-key policy.

The file is a small JSON document that carries the YAML text unchanged (so the signed bytes are
exactly what the operator reviewed, comments included):

    {"format": "refmesh-policy/1", "domain": "BH/GOV/NCCTIP", "keyId": "sig-...",
     "signedAt": 1795000000000, "policy": "<the YAML text>", "signature": "<hex>"}

The Ed25519 signature covers LABEL followed by the format, domain, key id, signing time and
policy text, each as an 8-byte big-endian length and its UTF-8 bytes: a domain-separated,
unambiguous encoding that does not depend on how any JSON library writes the document.
Parsing and validating the YAML itself is for the edge and ``refmesh.policy.parse``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from refmesh import keys
from refmesh.directory import TrustedDirectory
from refmesh.errors import DirectoryError, PolicyError

FORMAT = "refmesh-policy/1"
LABEL = b"refmesh-policy-v1\0"
KEYS = ("format", "domain", "keyId", "signedAt", "policy", "signature")


@dataclass(frozen=True)
class Signer:
    """Who signed a verified policy, with which key, and when."""

    domain: str
    key_id: str
    signed_at: int


def _signed_bytes(domain: str, key_id: str, signed_at: int, text: str) -> bytes:
    out = bytearray(LABEL)
    for part in (FORMAT, domain, key_id, str(signed_at), text):
        data = part.encode("utf-8")
        out += len(data).to_bytes(8, "big") + data
    return bytes(out)


def _text(policy_text: bytes, source: str) -> str:
    try:
        return policy_text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"the policy is not UTF-8 text (byte {exc.start}); save it as UTF-8",
                          source=source) from None


def sign(policy_text: bytes, domain_keys: keys.AgencyKeys, now: int) -> bytes:
    """The signed policy file for ``policy_text`` (the YAML, already validated by the caller),
    signed now by the domain's signing key."""
    text = _text(policy_text, "policy")
    key_id = domain_keys.signing.key_id
    signature = keys.sign(domain_keys.signing,
                          _signed_bytes(domain_keys.agency_id, key_id, now, text))
    doc = {"format": FORMAT, "domain": domain_keys.agency_id, "keyId": key_id,
           "signedAt": now, "policy": text, "signature": signature.hex()}
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def no_duplicate_keys(pairs: list) -> dict:
    """``json.loads`` object hook refusing a key repeated in one object (plain JSON loading
    silently keeps the last one)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _document(data: bytes, source: str) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PolicyError(f"not a signed policy ({FORMAT}); an unsigned policy is refused: "
                          "sign it with `refmesh policy sign`", source=source, reason="unsigned")
    unknown = sorted(set(doc) - set(KEYS))
    missing = [k for k in KEYS if k not in doc]
    if unknown or missing:
        raise PolicyError(f"signed policy has {'unknown' if unknown else 'no'} key(s) "
                          f"{', '.join(unknown or missing)}; sign the policy again",
                          source=source, reason="malformed")
    types = {"domain": str, "keyId": str, "signedAt": int, "policy": str, "signature": str}
    for key, wanted in types.items():
        if not isinstance(doc[key], wanted) or isinstance(doc[key], bool):
            raise PolicyError(f"signed policy key {key} must be {wanted.__name__}; sign the "
                              "policy again", source=source, reason="malformed")
    return doc


_KEY_REASONS = {"unknown_agency": "unknown_key", "unknown_key": "unknown_key",
                "revoked_key": "revoked_key", "expired_key": "expired_key"}


def load_signed(data: bytes, directory: TrustedDirectory, domain_id: str, now: int,
                source: str = "policy") -> tuple[bytes, Signer]:
    """Verify a signed policy file for ``domain_id``; return the policy text (bytes, to be
    parsed by the edge and ``policy.parse(..., domain=signer.domain)``) and its signer.

    Raises PolicyError (``reason``: unsigned, malformed, wrong_domain, unknown_key, revoked_key,
    expired_key, bad_signature) when the policy cannot be trusted.
    """
    doc = _document(data, source)
    if doc["domain"] != domain_id:
        raise PolicyError(f"the policy was signed for {doc['domain']}, not for {domain_id}; use "
                          f"the policy signed by {domain_id}", source=source,
                          reason="wrong_domain")
    try:
        public = directory.signing_key(domain_id, doc["keyId"], now)
    except DirectoryError as exc:
        raise PolicyError(f"the policy's signing key cannot be trusted: {exc}; sign it again "
                          f"with {domain_id}'s current key", source=source,
                          reason=_KEY_REASONS.get(exc.reason, "unknown_key")) from exc
    try:
        signature = bytes.fromhex(doc["signature"])
    except ValueError:
        signature = b""
    signed = _signed_bytes(doc["domain"], doc["keyId"], doc["signedAt"], doc["policy"])
    if not keys.verify(public, signature, signed):
        raise PolicyError(f"the policy's signature does not verify with {domain_id}'s key "
                          f"{doc['keyId']}: the file was changed after signing; get the signed "
                          "policy from the domain operator again", source=source,
                          reason="bad_signature")
    return doc["policy"].encode("utf-8"), Signer(doc["domain"], doc["keyId"], doc["signedAt"])
