"""Agency key material: generation, key ids, raw (de)serialisation and the keystore at rest.

With envelope.py, the only module that imports ``cryptography.hazmat`` (key handling and sealing
are both hazmat; keeping them in two small rooms is simpler than one 600-line module). Everyone
else holds an ``AgencyKeys`` and calls ``envelope.seal``/``envelope.open``, ``sign``/``verify``.

A keystore is a JSON document whose private part is encrypted with AES-256-GCM under a key derived
from the passphrase with scrypt; the clear part (format, agency, KDF parameters) is the AEAD's
associated data, so it cannot be changed without the unlock failing.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from refmesh.errors import KeystoreError

KEYSTORE_FORMAT = "refmesh-keystore/1"
SCRYPT_N = 2**15  # about 0.1 s per unlock on this class of machine: slows guessing, not use
MIN_SCRYPT_N, MAX_SCRYPT_N = 2**10, 2**20
PREFIX = {"Ed25519": "sig", "MLKEM768X25519": "mlkx", "X25519": "x25519"}
_MLKEM_PUB = 1184


def key_id(kind: str, public: bytes) -> str:
    """A key's id: kind prefix and 16 hex digits of the SHA-256 of its raw public key."""
    return f"{PREFIX[kind]}-{hashlib.sha256(public).hexdigest()[:16]}"


@dataclass(frozen=True)
class PrivateKey:
    """One private key with its id; ``secret`` is the raw private bytes (seed form for ML-KEM)."""

    kind: str
    secret: bytes = field(repr=False)
    created_at: int = 0

    # Deriving public keys and loading key objects costs more than an HPKE operation, so each
    # PrivateKey does it once (cached_property stores in __dict__, allowed on frozen classes).
    @cached_property
    def public(self) -> bytes:
        return _public_bytes(self.kind, self.secret)

    @cached_property
    def key_id(self) -> str:
        return key_id(self.kind, self.public)

    @cached_property
    def loaded(self):
        """The ``cryptography`` private-key object."""
        return _load_private(self.kind, self.secret)


@dataclass(frozen=True)
class AgencyKeys:
    """An agency's private keys: one signing key, one or more decryption keys (old ones are kept
    so that events sealed for them still open)."""

    agency_id: str
    signing: PrivateKey
    decryption: tuple[PrivateKey, ...]

    def decryption_key(self, kid: str) -> PrivateKey | None:
        return next((k for k in self.decryption if k.key_id == kid), None)

    def with_new_keys(self, now: int) -> "AgencyKeys":
        """Rotate: a fresh signing key and fresh encryption keys; old decryption keys stay."""
        fresh = generate(self.agency_id, now)
        return AgencyKeys(self.agency_id, fresh.signing, fresh.decryption + self.decryption)


def generate(agency_id: str, now: int) -> AgencyKeys:
    """Fresh keys for an agency: Ed25519 signing, ML-KEM-768+X25519 and X25519 decryption."""
    sig = ed25519.Ed25519PrivateKey.generate().private_bytes_raw()
    hybrid = (mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
              + x25519.X25519PrivateKey.generate().private_bytes_raw())
    classic = x25519.X25519PrivateKey.generate().private_bytes_raw()
    return AgencyKeys(agency_id, PrivateKey("Ed25519", sig, now), (
        PrivateKey("MLKEM768X25519", hybrid, now), PrivateKey("X25519", classic, now)))


def _public_bytes(kind: str, secret: bytes) -> bytes:
    if kind == "Ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    if kind == "X25519":
        return x25519.X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    if kind == "MLKEM768X25519":
        pq = mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:64]).public_key()
        ec = x25519.X25519PrivateKey.from_private_bytes(secret[64:]).public_key()
        return pq.public_bytes_raw() + ec.public_bytes_raw()
    raise KeystoreError(f"unknown key kind {kind!r}")


def _load_private(kind: str, secret: bytes):
    if kind == "Ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    if kind == "X25519":
        return x25519.X25519PrivateKey.from_private_bytes(secret)
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(secret[:64]),
        x25519.X25519PrivateKey.from_private_bytes(secret[64:]))


@lru_cache(maxsize=1024)
def hpke_public(kind: str, public: bytes):
    """The ``cryptography`` object for an HPKE encryption (public) key from the directory."""
    if kind == "X25519":
        return x25519.X25519PublicKey.from_public_bytes(public)
    if kind == "MLKEM768X25519" and len(public) == _MLKEM_PUB + 32:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(public[:_MLKEM_PUB]),
            x25519.X25519PublicKey.from_public_bytes(public[_MLKEM_PUB:]))
    raise ValueError(f"not an encryption key of kind {kind}")


def sign(key: PrivateKey, data: bytes) -> bytes:
    return key.loaded.sign(data)


@lru_cache(maxsize=1024)
def _ed25519_public(public: bytes):
    return ed25519.Ed25519PublicKey.from_public_bytes(public)


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` by ``public``."""
    try:
        _ed25519_public(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the keystore at rest -------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kek(passphrase: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase.encode("utf-8"))


def lock(keys: AgencyKeys, passphrase: str, salt: bytes, nonce: bytes,
         n: int | None = None) -> bytes:
    """Serialise ``keys`` encrypted under ``passphrase``. ``salt`` (16 bytes) and ``nonce``
    (12 bytes) must be fresh random bytes; they are parameters so tests can use fixed vectors."""
    if not passphrase:
        raise KeystoreError("an empty passphrase cannot protect a keystore; choose one")
    n = SCRYPT_N if n is None else n
    clear = {"format": KEYSTORE_FORMAT, "agency": keys.agency_id,
             "kdf": {"name": "scrypt", "n": n, "r": 8, "p": 1, "salt": _b64(salt)}}
    secret = json.dumps({"signing": _key_json(keys.signing),
                         "decryption": [_key_json(k) for k in keys.decryption]}).encode()
    aad = json.dumps(clear, sort_keys=True).encode()
    sealed = AESGCM(_kek(passphrase, salt, n)).encrypt(nonce, secret, aad)
    return json.dumps({**clear, "nonce": _b64(nonce), "ciphertext": _b64(sealed)},
                      indent=1).encode()


def unlock(data: bytes, passphrase: str, source: str = "keystore") -> AgencyKeys:
    """Open a keystore made by ``lock``; ``source`` names it in error messages."""
    try:
        doc = json.loads(data)
        clear = {k: doc[k] for k in ("format", "agency", "kdf")}
        if clear["format"] != KEYSTORE_FORMAT:
            raise KeystoreError(f"{source} has format {clear['format']!r}, "
                                f"expected {KEYSTORE_FORMAT}")
        kdf = clear["kdf"]
        n = int(kdf["n"])
        if not MIN_SCRYPT_N <= n <= MAX_SCRYPT_N or n & (n - 1):
            # n is read before the file is authenticated: bound it so that a crafted file
            # cannot make the unlock take gigabytes of memory.
            raise KeystoreError(f"{source} asks for scrypt n={n}; refmesh accepts powers of "
                                f"two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N}")
        kek = _kek(passphrase, base64.b64decode(kdf["salt"]), n)
        aad = json.dumps(clear, sort_keys=True).encode()
        secret = AESGCM(kek).decrypt(base64.b64decode(doc["nonce"]),
                                     base64.b64decode(doc["ciphertext"]), aad)
    except InvalidTag:
        raise KeystoreError(f"wrong passphrase for {source} (or the file was altered)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreError(f"{source} is not a refmesh keystore: {exc}") from exc
    inner = json.loads(secret)
    return AgencyKeys(clear["agency"], _key_from(inner["signing"]),
                      tuple(_key_from(k) for k in inner["decryption"]))


def _key_json(key: PrivateKey) -> dict:
    return {"kind": key.kind, "secret": _b64(key.secret), "createdAt": key.created_at}


def _key_from(doc: dict) -> PrivateKey:
    return PrivateKey(doc["kind"], base64.b64decode(doc["secret"]), int(doc["createdAt"]))
