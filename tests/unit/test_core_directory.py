"""refmesh.directory: building, signing and loading the agency directory, key lookup and revocation,
and the agency id rules. Time is a fixed epoch-millisecond value passed in."""
from __future__ import annotations

import pytest

from refmesh import codec, directory, keys
from refmesh.errors import ConfigError, DirectoryError

T0 = 1_790_000_000_000
DAY = directory.DAY_MS
COORD, HOTLINE, SHELTER, MOI = "BH/GOV/NCCT", "BH/NGO/HOTLINE", "BH/NGO/SHELTER", "BH/GOV/MOI"
ROLES = {COORD: "CentralGovernmentOrganisation", HOTLINE: "NGO", SHELTER: "NGO",
         MOI: "LawEnforcement"}


@pytest.fixture(scope="module")
def mesh() -> dict[str, keys.AgencyKeys]:
    return {a: keys.generate(a, T0) for a in ROLES}


def _draft(mesh, now=T0) -> dict:
    draft = directory.empty(COORD)
    for agency_id, role in ROLES.items():
        domain = None if agency_id == COORD else COORD
        draft = directory.add_member(draft, directory.member_entry(
            mesh[agency_id], f"Example {agency_id}", role, "BH", domain, now))
    return draft


@pytest.fixture(scope="module")
def signed(mesh) -> bytes:
    return directory.sign(_draft(mesh), mesh[COORD], T0)


@pytest.fixture(scope="module")
def anchor(mesh) -> directory.TrustAnchor:
    return directory.TrustAnchor.of(mesh[COORD])


def _member(draft: dict, agency_id: str) -> dict:
    return next(m for m in draft["members"] if m["agencyId"] == agency_id)


# --- building and loading -----------------------------------------------------------------------

def test_empty_draft():
    assert directory.empty(COORD) == {"serial": 0, "coordinator": COORD, "issuedAt": 0,
                                      "expiresAt": 0, "members": []}
    with pytest.raises(ConfigError):
        directory.empty("coordinator")


def test_member_entry(mesh):
    entry = directory.member_entry(mesh[SHELTER], "Shelter", "NGO", "BH", COORD, T0)
    agency = mesh[SHELTER]
    assert entry["agencyId"] == SHELTER and entry["domain"] == COORD
    assert [k["keyId"] for k in entry["keys"]] == [
        k.key_id for k in (agency.signing, *agency.decryption)]
    assert [k["publicKey"] for k in entry["keys"]] == [
        k.public for k in (agency.signing, *agency.decryption)]
    assert all(k["validFrom"] == T0 and k["validUntil"] is None and k["revokedAt"] is None
               for k in entry["keys"])
    secrets = [k.secret for k in (agency.signing, *agency.decryption)]
    assert not any(s in e["publicKey"] for s in secrets for e in entry["keys"])


def test_add_member_sorts_and_replaces(mesh):
    draft = _draft(mesh)
    assert [m["agencyId"] for m in draft["members"]] == sorted(ROLES)
    renamed = directory.add_member(draft, directory.member_entry(
        mesh[SHELTER], "Renamed Shelter", "NGO", "BH", COORD, T0))
    assert len(renamed["members"]) == 4
    assert _member(renamed, SHELTER)["name"] == "Renamed Shelter"
    assert _member(draft, SHELTER)["name"] == f"Example {SHELTER}"  # the draft is not mutated


def test_load_with_the_right_anchor(mesh, signed, anchor):
    trusted = directory.load(signed, anchor, T0 + 1)
    assert trusted.serial == 1
    assert trusted.coordinator == COORD
    assert trusted.expires_at == T0 + 90 * DAY
    assert sorted(trusted.members) == sorted(ROLES)
    for agency_id, agency in mesh.items():
        public = trusted.signing_key(agency_id, agency.signing.key_id, T0 + 1)
        assert public == agency.signing.public
        for k in agency.decryption:
            assert trusted.encryption_key(agency_id, k.kind, T0 + 1) == (k.key_id, k.public)


def test_sign_increments_the_serial(mesh, anchor):
    draft = _draft(mesh)
    first = directory.sign(draft, mesh[COORD], T0)
    _, body = codec.decode(codec.decode(first)[1]["directory"])
    second = directory.sign(body, mesh[COORD], T0 + DAY)
    assert directory.load(second, anchor, T0 + DAY).serial == 2


def test_only_the_coordinator_signs(mesh):
    with pytest.raises(ConfigError):
        directory.sign(_draft(mesh), mesh[HOTLINE], T0)


def test_wrong_anchor_key(mesh, signed):
    impostor = keys.generate(COORD, T0)
    with pytest.raises(DirectoryError) as err:
        directory.load(signed, directory.TrustAnchor.of(impostor), T0 + 1)
    assert err.value.reason == "bad_signature"


def test_anchor_with_right_id_but_other_key(mesh, signed, anchor):
    other = keys.generate(COORD, T0).signing.public
    with pytest.raises(DirectoryError) as err:
        directory.load(signed, directory.TrustAnchor(COORD, anchor.key_id, other), T0 + 1)
    assert err.value.reason == "bad_signature"


def test_directory_signed_by_another_agency_is_refused(mesh, anchor):
    """A member that builds its own directory naming the real coordinator cannot get it loaded."""
    forged = directory.sign({**_draft(mesh), "coordinator": HOTLINE}, mesh[HOTLINE], T0)
    with pytest.raises(DirectoryError):
        directory.load(forged, anchor, T0 + 1)


def test_every_flipped_byte_is_refused(signed, anchor):
    refused = 0
    for i in range(len(signed)):
        tampered = signed[:i] + bytes([signed[i] ^ 0x01]) + signed[i + 1:]
        with pytest.raises(DirectoryError):
            directory.load(tampered, anchor, T0 + 1)
        refused += 1
    assert refused == len(signed) > 1000


def test_flip_inside_the_signed_directory_bytes_is_a_bad_signature(signed, anchor):
    outer = codec.decode(signed)[1]
    inner = bytearray(outer["directory"])
    inner[len(inner) // 2] ^= 0x80
    tampered = codec.encode("SignedDirectory", {**outer, "directory": bytes(inner)})
    with pytest.raises(DirectoryError) as err:
        directory.load(tampered, anchor, T0 + 1)
    assert err.value.reason == "bad_signature"


def test_not_a_signed_directory(mesh, anchor):
    for data in (b"", b"garbage bytes here", codec.encode("ReferralStatus", {
            "referralId": "r", "state": "received", "reason": None, "detail": None,
            "setBy": SHELTER, "at": T0})):
        with pytest.raises(DirectoryError) as err:
            directory.load(data, anchor, T0 + 1)
        assert err.value.reason == "malformed"


def test_expiry(signed, anchor):
    expires = T0 + 90 * DAY
    assert directory.load(signed, anchor, expires - 1).serial == 1
    for now in (expires, expires + 1):
        with pytest.raises(DirectoryError) as err:
            directory.load(signed, anchor, now)
        assert err.value.reason == "expired"


def test_custom_validity(mesh, anchor):
    short = directory.sign(_draft(mesh), mesh[COORD], T0, valid_days=1)
    assert directory.load(short, anchor, T0 + DAY - 1).expires_at == T0 + DAY
    with pytest.raises(DirectoryError):
        directory.load(short, anchor, T0 + DAY)


def test_serial_below_min_serial(signed, anchor):
    assert directory.load(signed, anchor, T0 + 1, min_serial=1).serial == 1
    with pytest.raises(DirectoryError) as err:
        directory.load(signed, anchor, T0 + 1, min_serial=2)
    assert err.value.reason == "stale"


def test_coordinator_mismatch(mesh, signed, anchor):
    other = directory.TrustAnchor("BH/GOV/OTHER", anchor.key_id, anchor.public)
    with pytest.raises(DirectoryError):
        directory.load(signed, other, T0 + 1)


def test_trust_anchor_json(anchor):
    doc = anchor.to_json()
    assert directory.TrustAnchor.from_json(doc) == anchor
    with pytest.raises(ConfigError):
        directory.TrustAnchor.from_json({**doc, "keyId": "sig-0000000000000000"})
    with pytest.raises(ConfigError):
        directory.TrustAnchor.from_json({**doc, "publicKey": "zz"})
    with pytest.raises(ConfigError):
        directory.TrustAnchor.from_json({"agencyId": COORD})


def test_load_draft_from_json(mesh):
    from refmesh.records import Directory
    draft = _draft(mesh)
    assert directory.load_draft(Directory.from_dict(draft).to_json()) == draft
    with pytest.raises(ConfigError) as err:
        directory.load_draft({**Directory.from_dict(draft).to_json(), "extra": 1}, "draft.json")
    assert "draft.json" in str(err.value)


# --- keys: lookup, revocation, rotation ---------------------------------------------------------

def test_unknown_agency_and_key(signed, anchor, mesh):
    trusted = directory.load(signed, anchor, T0 + 1)
    with pytest.raises(DirectoryError) as err:
        trusted.member("BH/NGO/NOBODY")
    assert err.value.reason == "unknown_agency"
    with pytest.raises(DirectoryError) as err:
        trusted.signing_key(SHELTER, "sig-0000000000000000", T0 + 1)
    assert err.value.reason == "unknown_key"
    with pytest.raises(DirectoryError) as err:  # an encryption key is not a signing key
        trusted.signing_key(SHELTER, mesh[SHELTER].decryption[1].key_id, T0 + 1)
    assert err.value.reason == "unknown_key"


def test_key_not_valid_before_valid_from(signed, anchor, mesh):
    trusted = directory.load(signed, anchor, T0 - 1)
    with pytest.raises(DirectoryError) as err:
        trusted.signing_key(SHELTER, mesh[SHELTER].signing.key_id, T0 - 1)
    assert err.value.reason == "expired_key"


def test_revoke_key_then_resign(mesh, anchor):
    sig_id = mesh[HOTLINE].signing.key_id
    draft = directory.revoke_key(_draft(mesh), HOTLINE, sig_id, T0 + 10)
    assert next(k for k in _member(draft, HOTLINE)["keys"]
                if k["keyId"] == sig_id)["revokedAt"] == T0 + 10
    trusted = directory.load(directory.sign(draft, mesh[COORD], T0 + 20), anchor, T0 + 30)
    with pytest.raises(DirectoryError) as err:
        trusted.signing_key(HOTLINE, sig_id, T0 + 30)
    assert err.value.reason == "revoked_key"
    # A revoked key is refused for every event, old or new: also before the revocation time.
    with pytest.raises(DirectoryError):
        trusted.signing_key(HOTLINE, sig_id, T0 + 5)
    # Other agencies are untouched.
    assert trusted.signing_key(SHELTER, mesh[SHELTER].signing.key_id, T0 + 30)


def test_revoke_unknown_key(mesh):
    with pytest.raises(DirectoryError) as err:
        directory.revoke_key(_draft(mesh), HOTLINE, mesh[SHELTER].signing.key_id, T0)
    assert err.value.reason == "unknown_key"


def test_revoking_twice_keeps_the_first_time(mesh):
    sig_id = mesh[HOTLINE].signing.key_id
    draft = directory.revoke_key(_draft(mesh), HOTLINE, sig_id, T0 + 10)
    draft = directory.revoke_key(draft, HOTLINE, sig_id, T0 + 99)
    assert next(k for k in _member(draft, HOTLINE)["keys"]
                if k["keyId"] == sig_id)["revokedAt"] == T0 + 10


def test_encryption_key_picks_the_newest_valid_key_after_rotation(mesh, anchor):
    old = mesh[SHELTER]
    rotated = old.with_new_keys(T0 + DAY)
    draft = directory.add_member(_draft(mesh), directory.member_entry(
        rotated, "Shelter", "NGO", "BH", COORD, T0 + DAY))
    trusted = directory.load(directory.sign(draft, mesh[COORD], T0 + DAY), anchor, T0 + DAY)
    for fresh in rotated.decryption[:2]:
        assert trusted.encryption_key(SHELTER, fresh.kind, T0 + DAY) == (fresh.key_id, fresh.public)
    # The old signing key is still known (events it signed keep verifying).
    assert trusted.signing_key(SHELTER, old.signing.key_id, T0 + DAY) == old.signing.public
    assert trusted.signing_key(SHELTER, rotated.signing.key_id, T0 + DAY) == rotated.signing.public


def test_encryption_key_skips_revoked_keys(mesh, anchor):
    old = mesh[SHELTER]
    rotated = old.with_new_keys(T0 + DAY)
    draft = directory.add_member(_draft(mesh), directory.member_entry(
        rotated, "Shelter", "NGO", "BH", COORD, T0 + DAY))
    draft = directory.revoke_key(draft, SHELTER, rotated.decryption[1].key_id, T0 + DAY)
    trusted = directory.load(directory.sign(draft, mesh[COORD], T0 + DAY), anchor, T0 + DAY)
    assert trusted.encryption_key(SHELTER, "X25519", T0 + DAY)[0] == old.decryption[1].key_id
    draft = directory.revoke_key(draft, SHELTER, old.decryption[1].key_id, T0 + DAY)
    trusted = directory.load(directory.sign(draft, mesh[COORD], T0 + DAY), anchor, T0 + DAY)
    with pytest.raises(DirectoryError) as err:
        trusted.encryption_key(SHELTER, "X25519", T0 + DAY)
    assert err.value.reason == "unknown_key"


def test_add_member_keeps_the_entries_of_known_keys(mesh):
    """add_member: "new keys are added, known keys are kept". A rotated member entry lists the
    old decryption keys again (with_new_keys keeps them); re-adding it must neither un-revoke a
    key the coordinator revoked nor move its validFrom."""
    old = mesh[SHELTER]
    revoked_id = old.decryption[1].key_id
    draft = directory.revoke_key(_draft(mesh), SHELTER, revoked_id, T0 + 10)
    rotated = old.with_new_keys(T0 + DAY)
    draft = directory.add_member(draft, directory.member_entry(
        rotated, "Shelter", "NGO", "BH", COORD, T0 + DAY))
    entries = {k["keyId"]: k for k in _member(draft, SHELTER)["keys"]}
    assert entries[revoked_id]["revokedAt"] == T0 + 10, "add_member un-revoked a revoked key"
    assert entries[old.decryption[0].key_id]["validFrom"] == T0
    assert entries[rotated.decryption[0].key_id]["validFrom"] == T0 + DAY
    assert len(entries) == 6


# --- agency ids and member checks ---------------------------------------------------------------

@pytest.mark.parametrize("agency_id", ["BH/GOV/MOI", "BH/NGO/HOTLINE", "PH/IO/IOM-MNL",
                                       "AE/MUN/DXB_1", "QA/COM/A", "KW/EDU/" + "X" * 32])
def test_check_agency_id_accepts(agency_id):
    assert directory.check_agency_id(agency_id) == agency_id


@pytest.mark.parametrize("agency_id", [
    "bh/GOV/MOI", "BH/gov/MOI", "BH/GOV/moi", "BH/GOV", "BH//MOI", "/GOV/MOI", "BH/GOV/",
    "BH/XYZ/MOI", "BHR/GOV/MOI", "B/GOV/MOI", "BH/GOV/MOI/X", "BH/GOV/-MOI", "BH/GOV/M OI",
    "KW/EDU/" + "X" * 33, "", None, 7, "BH/GOV/MOI\n", " BH/GOV/MOI", "BH/GOV/MOI ",
])
def test_check_agency_id_rejects(agency_id):
    with pytest.raises(ConfigError):
        directory.check_agency_id(agency_id)


@pytest.mark.parametrize("role", ["Police", "ngo", "", None])
def test_member_entry_rejects_a_bad_role(mesh, role):
    with pytest.raises(ConfigError):
        directory.member_entry(mesh[SHELTER], "Shelter", role, "BH", None, T0)


@pytest.mark.parametrize("jurisdiction", ["bh", "BHR", "B", "", None, "B1"])
def test_member_entry_rejects_a_bad_jurisdiction(mesh, jurisdiction):
    with pytest.raises(ConfigError):
        directory.member_entry(mesh[SHELTER], "Shelter", "NGO", jurisdiction, None, T0)


def test_member_entry_rejects_a_bad_domain_or_agency(mesh):
    with pytest.raises(ConfigError):
        directory.member_entry(mesh[SHELTER], "Shelter", "NGO", "BH", "ncct", T0)
    with pytest.raises(ConfigError):
        directory.member_entry(keys.generate("shelter", T0), "Shelter", "NGO", "BH", None, T0)
