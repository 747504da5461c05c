"""The agency directory: who is in the mesh, their roles, jurisdictions and public keys.

The coordinating body edits a draft (a plain ``Directory`` dict, kept as JSON), then signs it.
A gateway only ever uses a ``TrustedDirectory``, which ``load`` builds after checking the
coordinator's signature against a trust anchor obtained out of band, the expiry, and the serial.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from refmesh import codec, keys, schemas
from refmesh.errors import CodecError, ConfigError, DirectoryError, RecordError
from refmesh.records import Directory, Member

AGENCY_ID = re.compile(r"^[A-Z]{2}/(GOV|NGO|IO|COM|EDU|MUN)/[A-Z0-9][A-Z0-9_-]{0,31}$")
ROLES = schemas.symbols("AgencyRole")
LABEL = b"refmesh-directory-v1\0"
DAY_MS = 86_400_000


def check_agency_id(agency_id: str) -> str:
    """Return ``agency_id`` if it is an X-Road style id (COUNTRY/CLASS/CODE), else raise."""
    if not isinstance(agency_id, str) or not AGENCY_ID.fullmatch(agency_id):
        raise ConfigError(
            f"agency id {agency_id!r} is not COUNTRY/CLASS/CODE, e.g. BH/GOV/MOI "
            "(ISO 3166 country, class GOV, NGO, IO, COM, EDU or MUN, code in capitals)")
    return agency_id


@dataclass(frozen=True)
class TrustAnchor:
    """The coordinator's public signing key, given to every gateway out of band."""

    agency_id: str
    key_id: str
    public: bytes

    @classmethod
    def of(cls, coordinator: keys.AgencyKeys) -> "TrustAnchor":
        s = coordinator.signing
        return cls(coordinator.agency_id, s.key_id, s.public)

    def to_json(self) -> dict:
        return {"agencyId": self.agency_id, "keyId": self.key_id, "publicKey": self.public.hex()}

    @classmethod
    def from_json(cls, doc: dict) -> "TrustAnchor":
        try:
            anchor = cls(doc["agencyId"], doc["keyId"], bytes.fromhex(doc["publicKey"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"trust anchor needs agencyId, keyId and publicKey (hex): {exc}")
        if keys.key_id("Ed25519", anchor.public) != anchor.key_id:
            raise ConfigError("trust anchor keyId does not match its publicKey")
        return anchor


def member_entry(agency: keys.AgencyKeys, name: str, role: str, jurisdiction: str,
                 domain: str | None, now: int) -> dict:
    """The public ``Member`` entry (as a dict) an agency hands to the coordinator."""
    check_agency_id(agency.agency_id)
    if domain is not None:
        check_agency_id(domain)
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Z]{2}", jurisdiction or ""):
        raise ConfigError(f"jurisdiction {jurisdiction!r} is not an ISO 3166 code such as BH")
    pub = [{"keyId": k.key_id, "kind": k.kind, "publicKey": k.public, "validFrom": now,
            "validUntil": None, "revokedAt": None} for k in (agency.signing, *agency.decryption)]
    return Member.from_dict({"agencyId": agency.agency_id, "name": name, "role": role,
                             "jurisdiction": jurisdiction, "domain": domain,
                             "keys": pub}).to_dict()


def empty(coordinator: str) -> dict:
    """A new, empty draft for ``coordinator``."""
    check_agency_id(coordinator)
    return {"serial": 0, "coordinator": coordinator, "issuedAt": 0, "expiresAt": 0, "members": []}


def add_member(draft: dict, member: dict) -> dict:
    """Add a member, or update it: new details win, new keys are added, and a key already in
    the draft stays exactly as it is there (so re-adding an old member file can never
    un-revoke a key or move its validity)."""
    entry = Member.from_dict(member).to_dict()
    check_agency_id(entry["agencyId"])
    if entry["domain"] is not None:
        check_agency_id(entry["domain"])
    if entry["role"] not in ROLES or not re.fullmatch(r"[A-Z]{2}", entry["jurisdiction"]):
        raise ConfigError(f"{entry['agencyId']}: role or jurisdiction is not valid")
    for k in entry["keys"]:
        if keys.key_id(k["kind"], k["publicKey"]) != k["keyId"]:
            raise ConfigError(f"{entry['agencyId']}: key id {k['keyId']} does not match its "
                              "public key; use the member file written by 'agency init'")
    members = [m for m in draft["members"] if m["agencyId"] != entry["agencyId"]]
    old = next((m for m in draft["members"] if m["agencyId"] == entry["agencyId"]), None)
    if old is not None:
        known = {k["keyId"] for k in old["keys"]}
        entry["keys"] = old["keys"] + [k for k in entry["keys"] if k["keyId"] not in known]
    return {**draft, "members": sorted([*members, entry], key=lambda m: m["agencyId"])}


def revoke_key(draft: dict, agency_id: str, key_id: str, now: int) -> dict:
    """Mark one key of one member revoked from ``now`` on."""
    found = False
    members = []
    for m in draft["members"]:
        ks = []
        for k in m["keys"]:
            if m["agencyId"] == agency_id and k["keyId"] == key_id:
                found, k = True, {**k, "revokedAt": k["revokedAt"] or now}
            ks.append(k)
        members.append({**m, "keys": ks})
    if not found:
        raise DirectoryError(f"{agency_id} has no key {key_id} in the draft", "unknown_key")
    return {**draft, "members": members}


def sign(draft: dict, coordinator: keys.AgencyKeys, now: int, valid_days: int = 90) -> bytes:
    """The next signed edition of ``draft``: serial + 1, issued now, expiring after valid_days."""
    if coordinator.agency_id != draft["coordinator"]:
        raise ConfigError(f"the draft's coordinator is {draft['coordinator']}, "
                          f"not {coordinator.agency_id}; sign with the coordinator's keystore")
    body = Directory.from_dict({**draft, "serial": draft["serial"] + 1, "issuedAt": now,
                                "expiresAt": now + valid_days * DAY_MS}).to_dict()
    data = codec.encode("Directory", body)
    return codec.encode("SignedDirectory", {
        "directory": data, "signerKeyId": coordinator.signing.key_id,
        "signature": keys.sign(coordinator.signing, LABEL + data)})


def verify(signed: bytes, anchor: TrustAnchor) -> "TrustedDirectory":
    """Check a signed directory's signature against the trust anchor and return it, expired or
    not (an edge that must know when to stop traffic decides that with ``expiry_problem``);
    raise DirectoryError when it is not the coordinator's."""
    try:
        _, outer = codec.decode(signed, expect="SignedDirectory")
    except CodecError as exc:
        raise DirectoryError(f"not a signed directory: {exc}") from exc
    if outer["signerKeyId"] != anchor.key_id or not keys.verify(
            anchor.public, outer["signature"], LABEL + outer["directory"]):
        raise DirectoryError("directory signature does not verify against the trust anchor "
                             f"{anchor.key_id}; get the directory from the coordinator again",
                             "bad_signature")
    try:
        _, body = codec.decode(outer["directory"], expect="Directory")
    except CodecError as exc:
        raise DirectoryError(f"signed directory body does not decode: {exc}") from exc
    if body["coordinator"] != anchor.agency_id:
        raise DirectoryError(f"directory coordinator {body['coordinator']} is not the trust "
                             f"anchor's {anchor.agency_id}", "bad_signature")
    return TrustedDirectory(body)


def load(signed: bytes, anchor: TrustAnchor, now: int, min_serial: int = 0) -> "TrustedDirectory":
    """Verify a signed directory and return it; raise DirectoryError when it cannot be trusted:
    not the coordinator's, expired at ``now`` (reason expired), or older than ``min_serial``
    (reason stale)."""
    trusted = verify(signed, anchor)
    expired = expiry_problem(trusted.expires_at, now, trusted.serial)
    if expired is not None:
        raise DirectoryError(expired, "expired")
    stale = rollback_problem(trusted.serial, min_serial)
    if stale is not None:
        raise DirectoryError(stale, "stale")
    return trusted


def load_draft(doc: dict, source: str = "draft") -> dict:
    """Check a JSON draft (bytes as hex) against the contract and return it as a Directory dict."""
    try:
        return Directory.from_json(doc).to_dict()
    except RecordError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


class TrustedDirectory:
    """A verified directory: look agencies and their valid keys up."""

    def __init__(self, body: dict) -> None:
        self.serial = body["serial"]
        self.coordinator = body["coordinator"]
        self.expires_at = body["expiresAt"]
        self.body = body
        self.members = {m["agencyId"]: m for m in body["members"]}

    def member(self, agency_id: str) -> dict:
        try:
            return self.members[agency_id]
        except KeyError:
            raise DirectoryError(f"agency {agency_id} is not in directory serial "
                                 f"{self.serial}", "unknown_agency") from None

    def _key(self, agency_id: str, key_id: str, now: int) -> dict:
        key = next((k for k in self.member(agency_id)["keys"] if k["keyId"] == key_id), None)
        if key is None:
            raise DirectoryError(f"{agency_id} has no key {key_id}", "unknown_key")
        if key["revokedAt"] is not None:
            raise DirectoryError(f"key {key_id} of {agency_id} is revoked", "revoked_key")
        if now < key["validFrom"] or (key["validUntil"] is not None and now >= key["validUntil"]):
            raise DirectoryError(f"key {key_id} of {agency_id} is not valid now", "expired_key")
        return key

    def signing_key(self, agency_id: str, key_id: str, now: int) -> bytes:
        """The raw Ed25519 public key, if it is the agency's, valid now and not revoked."""
        key = self._key(agency_id, key_id, now)
        if key["kind"] != "Ed25519":
            raise DirectoryError(f"key {key_id} of {agency_id} is not a signing key",
                                 "unknown_key")
        return key["publicKey"]

    def encryption_key(self, agency_id: str, kind: str, now: int) -> tuple[str, bytes]:
        """(key id, raw public key) of the agency's current encryption key of ``kind``: the
        newest one that is valid now and not revoked."""
        usable = []
        for k in self.member(agency_id)["keys"]:
            if k["kind"] == kind:
                try:
                    usable.append(self._key(agency_id, k["keyId"], now))
                except DirectoryError:
                    continue
        if not usable:
            raise DirectoryError(f"{agency_id} has no valid {kind} encryption key",
                                 "unknown_key")
        best = max(usable, key=lambda k: k["validFrom"])
        return best["keyId"], best["publicKey"]


# Issue 12, item 8: the pure decisions the edges apply (time and the persisted serial passed in).
HYBRID_KIND = "MLKEM768X25519"


def expiry_problem(expires_at: int, now: int, serial: int | None = None,
                   shown: str | None = None) -> str | None:
    """The /healthz reason when the directory has expired at ``now``, else None. ``shown`` is
    how to show ``expires_at`` (an edge passes a calendar time; default: epoch milliseconds)."""
    if now < expires_at:
        return None
    edition = "signed directory" if serial is None else f"signed directory serial {serial}"
    when = f"{expires_at} (ms since epoch)" if shown is None else shown
    return f"{edition} expired at {when}: install a newer edition from the coordinator"


def rollback_problem(serial: int, highest_seen: int) -> str | None:
    """Why a directory with ``serial`` is refused when ``highest_seen`` is persisted, else None."""
    if serial >= highest_seen:
        return None
    return (f"directory serial {serial} is older than serial {highest_seen} already seen; "
            "refusing a rollback (install the newest edition from the coordinator)")


def is_hybrid_member(member: dict) -> bool:
    """Rule: a member that publishes an unrevoked ML-KEM-768+X25519 key is hybrid; a member that
    publishes none is X25519-only (the Directory schema has no other way to mark it)."""
    return any(k["kind"] == HYBRID_KIND and k["revokedAt"] is None for k in member["keys"])


def suite_problem(member: dict, kem_kind: str) -> str | None:
    """Why an envelope sealed with ``kem_kind`` by or for ``member`` is a downgrade, else None."""
    if kem_kind == HYBRID_KIND or not is_hybrid_member(member):
        return None
    return (f"{member['agencyId']} publishes a hybrid ML-KEM key; an {kem_kind} envelope is a "
            "downgrade and is refused")
