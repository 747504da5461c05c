"""Releases on the wire: the region's topic, the Aggregate record, its signature and its check.

Aggregates are not encrypted (they are meant to be shared) but signed by the policy domain; a
regional body trusts a release only when the domain named in it signed it with a key that the
signed directory lists as valid.
"""
from __future__ import annotations

import math
import re
import uuid
from typing import TYPE_CHECKING

from refmesh import codec, keys, schemas
from refmesh.aggregate.cells import kind_of
from refmesh.aggregate.windows import Window
from refmesh.directory import TrustedDirectory
from refmesh.errors import AggregateError, CodecError, ConfigError, DirectoryError

if TYPE_CHECKING:
    from refmesh.aggregate.rule import Release

RELEASE_NS = uuid.UUID("3b0f7c1e-5d2a-4e8b-9c6f-0a1b2c3d4e5f")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def check_region(region: str) -> str:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ConfigError(f"region {region!r} is not a region code (letters, digits, - and _, "
                          "at most 32, e.g. GCC)")
    return region


def topic(region: str) -> str:
    """The region's aggregate topic (topology.py style): refmesh.region.<R>.aggregates."""
    return f"refmesh.region.{check_region(region)}.aggregates"


def release_id(domain: str, region: str, window: Window, revision: int) -> str:
    """A stable id, so that publishing again after a crash repeats the same release."""
    return str(uuid.uuid5(RELEASE_NS, f"{domain}|{region}|{window[0]}|{window[1]}|{revision}"))


#: the Aggregate fields (v3) that state a release's noise: a reader can recompute the scale
#: from epsilon and the sensitivity, and the sensitivity from maxPerPerson (3m, sqrt(3) m)
NOISE_FIELDS = ("mechanism", "epsilon", "delta", "maxPerPerson", "sensitivityL1",
                "sensitivityL2", "noiseScale", "rho")
#: ... and what the region had spent after it (basic composition)
ACCOUNT_FIELDS = ("windowEpsilon", "windowDelta", "epsilonRemaining", "deltaRemaining")


def record_of(rel: Release, *, domain: str, region: str, window: Window) -> dict:
    """The Aggregate record of ``rel`` without signerKeyId and signature."""
    noise, account = rel.noise or {}, rel.account or {}
    return {"releaseId": release_id(domain, region, window, rel.revision), "domain": domain,
            "region": check_region(region), "windowStart": window[0], "windowEnd": window[1],
            "revision": rel.revision, "k": rel.k, "resolution": rel.resolution,
            **{name: noise.get(name) for name in NOISE_FIELDS},
            "threshold": rel.threshold, "finalRevision": rel.final_revision,
            **{name: account.get(name) for name in ACCOUNT_FIELDS},
            "cells": [dict(c) for c in rel.cells]}


def sign_release(aggregate: dict, domain_keys: keys.AgencyKeys) -> bytes:
    """The signed single-object encoding of an Aggregate dict (without signerKeyId and
    signature). As the contract says, the signature covers the encoding with an empty
    signature; the encoding starts with the Aggregate schema fingerprint, which separates it
    from the envelope, directory and policy signatures (those carry their own labels)."""
    if aggregate.get("domain") != domain_keys.agency_id:
        raise ConfigError(f"the release names domain {aggregate.get('domain')}, not "
                          f"{domain_keys.agency_id} whose key signs it")
    body = {**aggregate, "signerKeyId": domain_keys.signing.key_id, "signature": b""}
    signature = keys.sign(domain_keys.signing, codec.encode("Aggregate", body))
    return codec.encode("Aggregate", {**body, "signature": signature})


_KEY_REASONS = {"unknown_agency": "unknown_agency", "unknown_key": "wrong_signer",
                "revoked_key": "revoked_key", "expired_key": "expired_key"}


def verify_release(data: bytes, directory: TrustedDirectory, now: int) -> dict:
    """The Aggregate in ``data`` after checking that the policy domain it names signed it with a
    key valid ``now``; raise AggregateError (``reason``) otherwise."""
    try:
        writer, written = codec.decode_as_written(data, expect="Aggregate")
    except CodecError as exc:
        raise AggregateError(f"not an Aggregate record: {exc}") from exc
    if codec.encode_with(writer, written) != data:
        raise AggregateError("non-canonical Aggregate encoding")
    domain = written["domain"]
    try:
        if directory.member(domain)["domain"] is not None:
            raise AggregateError(f"{domain} is not a policy domain; only domains release "
                                 "statistics", "not_a_domain")
        public = directory.signing_key(domain, written["signerKeyId"], now)
    except DirectoryError as exc:
        raise AggregateError(f"release {written['releaseId']}: {exc}",
                             _KEY_REASONS.get(exc.reason, "wrong_signer")) from exc
    if not keys.verify(public, written["signature"],
                       codec.encode_with(writer, {**written, "signature": b""})):
        raise AggregateError(f"release {written['releaseId']} of {domain}: the signature does "
                             "not verify", "bad_signature")
    current = writer.fingerprint == schemas.contract("Aggregate").fingerprint
    value = written if current else codec.decode(data, expect="Aggregate")[1]
    _check_shape(value)
    return value


def _check_shape(value: dict) -> None:
    if not value["windowStart"] < value["windowEnd"] or value["k"] < 1 or \
            value["resolution"] < 1 or value["revision"] < 0:
        raise AggregateError(f"release {value['releaseId']}: window, k, resolution or revision "
                             "out of range")
    numbers = [value.get(n) for n in (*NOISE_FIELDS[1:], "threshold", "finalRevision",
                                      *ACCOUNT_FIELDS)]
    if any(n is not None and not (math.isfinite(n) and n >= 0) for n in numbers) or (
            value.get("finalRevision") is not None and value["finalRevision"] < value[
                "revision"]):
        raise AggregateError(f"release {value['releaseId']}: a noise or budget figure is "
                             "negative or not finite, or the revision is past the last")
    for cell in value["cells"]:
        if cell["count"] < 0 or kind_of(cell) == "invalid":
            raise AggregateError(f"release {value['releaseId']}: a cell has a negative count "
                                 "or an unknown shape")

