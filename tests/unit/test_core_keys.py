"""refmesh.keys: key ids, signatures, rotation and the passphrase-protected keystore.

Keystores here use scrypt n=2**10, passed explicitly or through ``keys.SCRYPT_N``; one test uses
the real default cost.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from refmesh import keys
from refmesh.errors import KeystoreError, MeshError

T0 = 1_790_000_000_000
FAST_N = 2**10
SALT, NONCE = bytes(range(16)), bytes(range(100, 112))
PASS = "correct horse battery staple"
VECTOR = json.loads((Path(__file__).resolve().parents[2] / "tests" / "data" /
                     "keystore_v1.json").read_text())


@pytest.fixture(scope="module")
def agency() -> keys.AgencyKeys:
    return keys.generate("BH/NGO/SHELTER", T0)


@pytest.fixture(scope="module")
def locked(agency) -> bytes:
    return keys.lock(agency, PASS, SALT, NONCE, n=FAST_N)


def _edit(data: bytes, change) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


# --- keys and ids -------------------------------------------------------------------------------

def test_generate(agency):
    assert agency.agency_id == "BH/NGO/SHELTER"
    assert agency.signing.kind == "Ed25519"
    assert [k.kind for k in agency.decryption] == ["MLKEM768X25519", "X25519"]
    assert {k.created_at for k in (agency.signing, *agency.decryption)} == {T0}
    assert len(agency.signing.public) == 32
    assert len(agency.decryption[0].public) == 1184 + 32
    assert len(agency.decryption[1].public) == 32


def test_key_ids_are_prefix_and_16_hex(agency):
    prefix = {"Ed25519": "sig", "MLKEM768X25519": "mlkx", "X25519": "x25519"}
    for k in (agency.signing, *agency.decryption):
        assert re.fullmatch(r"(sig|mlkx|x25519)-[0-9a-f]{16}", k.key_id), k.key_id
        assert k.key_id == f"{prefix[k.kind]}-{hashlib.sha256(k.public).hexdigest()[:16]}"
        assert keys.key_id(k.kind, k.public) == k.key_id


def test_fresh_keys_differ():
    a, b = keys.generate("BH/NGO/A", T0), keys.generate("BH/NGO/A", T0)
    ids_a = {k.key_id for k in (a.signing, *a.decryption)}
    ids_b = {k.key_id for k in (b.signing, *b.decryption)}
    assert ids_a.isdisjoint(ids_b)


def test_secrets_stay_out_of_repr(agency):
    text = repr(agency)
    for k in (agency.signing, *agency.decryption):
        assert k.secret.hex() not in text and repr(k.secret) not in text


def test_sign_and_verify(agency):
    other = keys.generate("BH/NGO/OTHER", T0)
    sig = keys.sign(agency.signing, b"message")
    assert keys.verify(agency.signing.public, sig, b"message")
    assert not keys.verify(agency.signing.public, sig, b"messagE")
    assert not keys.verify(other.signing.public, sig, b"message")
    assert not keys.verify(agency.signing.public, bytes([sig[0] ^ 1]) + sig[1:], b"message")
    assert not keys.verify(agency.signing.public, sig[:-1], b"message")
    assert not keys.verify(b"short", sig, b"message")


def test_rotation_keeps_old_decryption_keys(agency):
    rotated = agency.with_new_keys(T0 + 1000)
    assert rotated.agency_id == agency.agency_id
    assert rotated.signing.key_id != agency.signing.key_id
    assert rotated.signing.created_at == T0 + 1000
    old_ids = [k.key_id for k in agency.decryption]
    new_ids = [k.key_id for k in rotated.decryption]
    assert new_ids[2:] == old_ids  # fresh keys first, old ones kept after them
    assert set(new_ids[:2]).isdisjoint(old_ids)
    assert [k.kind for k in rotated.decryption[:2]] == ["MLKEM768X25519", "X25519"]
    for k in agency.decryption:
        assert rotated.decryption_key(k.key_id) == k
    assert rotated.decryption_key("x25519-0000000000000000") is None
    twice = rotated.with_new_keys(T0 + 2000)
    assert [k.key_id for k in twice.decryption][2:] == new_ids


# --- the keystore -------------------------------------------------------------------------------

def test_lock_unlock_round_trip(agency, locked):
    opened = keys.unlock(locked, PASS)
    assert opened == agency
    assert [k.key_id for k in opened.decryption] == [k.key_id for k in agency.decryption]
    assert opened.signing.public == agency.signing.public


def test_round_trip_after_rotation(agency):
    rotated = agency.with_new_keys(T0 + 1000)
    assert keys.unlock(keys.lock(rotated, PASS, SALT, NONCE, n=FAST_N), PASS) == rotated


def test_keystore_clear_part_and_no_secret_in_clear(agency, locked):
    doc = json.loads(locked)
    assert doc["format"] == keys.KEYSTORE_FORMAT
    assert doc["agency"] == agency.agency_id
    assert doc["kdf"] == {"name": "scrypt", "n": FAST_N, "r": 8, "p": 1,
                          "salt": base64.b64encode(SALT).decode()}
    for k in (agency.signing, *agency.decryption):
        assert base64.b64encode(k.secret) not in locked
        assert k.secret not in locked and k.secret.hex().encode() not in locked


def test_default_cost_is_used_and_unlocks(agency):
    """The one test with the real scrypt cost."""
    data = keys.lock(agency, PASS, SALT, NONCE)
    assert keys.SCRYPT_N >= 2**15
    assert json.loads(data)["kdf"]["n"] == keys.SCRYPT_N
    assert keys.unlock(data, PASS) == agency


def test_default_cost_follows_scrypt_n(agency, monkeypatch):
    """Tests and benchmarks lower the cost through keys.SCRYPT_N; lock must read it when called,
    not when the module was imported."""
    monkeypatch.setattr(keys, "SCRYPT_N", 2 * FAST_N)
    data = keys.lock(agency, PASS, SALT, NONCE)
    assert json.loads(data)["kdf"]["n"] == 2 * FAST_N
    assert keys.unlock(data, PASS) == agency


def test_wrong_passphrase(locked):
    with pytest.raises(KeystoreError) as err:
        keys.unlock(locked, PASS + "!", source="shelter.keystore")
    assert "wrong passphrase" in str(err.value)
    assert "shelter.keystore" in str(err.value)
    assert issubclass(KeystoreError, MeshError)


def test_empty_passphrase_refused(agency):
    with pytest.raises(KeystoreError):
        keys.lock(agency, "", SALT, NONCE, n=FAST_N)


TAMPER = {
    "agency id": lambda d: d.update(agency="BH/NGO/HOTLINE"),
    "kdf n": lambda d: d["kdf"].update(n=2 * FAST_N),
    "kdf r": lambda d: d["kdf"].update(r=1),
    "kdf p": lambda d: d["kdf"].update(p=2),
    "salt": lambda d: d["kdf"].update(salt=base64.b64encode(bytes(16)).decode()),
    "nonce": lambda d: d.update(nonce=base64.b64encode(bytes(12)).decode()),
    "ciphertext": lambda d: d.update(ciphertext=base64.b64encode(
        bytes([base64.b64decode(d["ciphertext"])[0] ^ 1]) + base64.b64decode(d["ciphertext"])[1:]
    ).decode()),
    "format": lambda d: d.update(format="refmesh-keystore/2"),
    "missing nonce": lambda d: d.pop("nonce"),
}


@pytest.mark.parametrize("change", TAMPER.values(), ids=TAMPER.keys())
def test_tampering_makes_unlock_fail(locked, change):
    with pytest.raises(KeystoreError):
        keys.unlock(_edit(locked, change), PASS)


@pytest.mark.parametrize("n", [-1, 0, 1000, 2**40], ids=["negative", "zero", "not-2^k", "2^40"])
def test_hostile_kdf_cost_is_a_keystore_error(locked, n):
    """A damaged or hostile keystore must fail with KeystoreError, not OverflowError or
    MemoryError (and never try to allocate terabytes)."""
    with pytest.raises(KeystoreError):
        keys.unlock(_edit(locked, lambda d: d["kdf"].update(n=n)), PASS)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"null", b"{}", b'"text"', b"\xff\xfe"])
def test_not_a_keystore(data):
    with pytest.raises(KeystoreError):
        keys.unlock(data, PASS)


# --- a stored keystore (known answer) -----------------------------------------------------------

def _fixed(label: str, size: int) -> bytes:
    out, i = b"", 0
    while len(out) < size:
        out += hashlib.sha256(f"refmesh-test-vector/{label}/{i}".encode()).digest()
        i += 1
    return out[:size]


def test_stored_keystore_still_unlocks():
    opened = keys.unlock(VECTOR["keystore"].encode(), VECTOR["passphrase"])
    expect = VECTOR["expect"]
    assert opened.agency_id == expect["agency"]
    got = [{"kind": k.kind, "keyId": k.key_id,
            "secretSha256": hashlib.sha256(k.secret).hexdigest(), "createdAt": k.created_at}
           for k in (opened.signing, *opened.decryption)]
    assert got == expect["keys"]


def test_stored_keystore_secrets_derive_the_stored_key_ids():
    """The vector's secrets are documented (SHA-256 chains), so the key ids are a known answer for
    public-key derivation too, independent of the keystore format."""
    sizes = {"Ed25519": ("sig", 32), "MLKEM768X25519": ("mlkx", 96), "X25519": ("x25519", 32)}
    for entry in VECTOR["expect"]["keys"]:
        label, size = sizes[entry["kind"]]
        key = keys.PrivateKey(entry["kind"], _fixed(label, size), entry["createdAt"])
        assert hashlib.sha256(key.secret).hexdigest() == entry["secretSha256"]
        assert key.key_id == entry["keyId"]


def test_lock_is_deterministic_given_salt_and_nonce(agency, locked):
    assert keys.lock(agency, PASS, SALT, NONCE, n=FAST_N) == locked
    assert keys.lock(agency, PASS, SALT, bytes(12), n=FAST_N) != locked
