"""The Avro contracts in ``schemas/``, parsed once, with their CRC-64-AVRO fingerprints.

``schemas/*.avsc`` are the current contracts; ``schemas/released/NAME.vN.avsc`` are frozen copies
of every released version. A reader knows all of them, so it can read events written by an
older (or newer) gateway and resolve them to the current schema.

The repository's ``schemas/`` is the source of truth; the package reaches it as its resource
``refmesh/contracts``, a symbolic link to ``../schemas`` that a wheel holds as plain files
(pyproject.toml, package-data), so an installed package reads the same contracts through
``importlib.resources``. Reading them is loading the package's own static contracts, not
environment I/O.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import to_parsing_canonical_form

from refmesh.errors import ConfigError

SCHEMA_DIR: Traversable = files(__package__) / "contracts"
RELEASED_DIR: Traversable = SCHEMA_DIR / "released"
NAMESPACE = "org.refmesh"


@dataclass(frozen=True)
class Contract:
    name: str  # short name, e.g. "Referral"
    version: int
    raw: dict  # the JSON as written, docs included
    parsed: dict  # fastavro's parsed form, for writing and reading
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of the canonical form


def _contract(raw: dict) -> Contract:
    parsed = fastavro.parse_schema(raw)
    # fastavro gives the fingerprint's bytes in little-endian order, as single-object
    # encoding carries them (the Avro spec's "null" vector: 8a8f25cce724dd63).
    fp = bytes.fromhex(_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    return Contract(raw["name"], int(raw.get("refmesh.version", 1)), raw, parsed, fp)


def _load(path: Traversable) -> Contract:
    return _contract(json.loads(path.read_text(encoding="utf-8")))


def _avsc(folder: Traversable) -> list[Traversable]:
    """The .avsc files of ``folder``, by name."""
    return sorted((p for p in folder.iterdir() if p.name.endswith(".avsc")),
                  key=lambda p: p.name)


CURRENT: dict[str, Contract] = {p.name.removesuffix(".avsc"): _load(p)
                                for p in _avsc(SCHEMA_DIR)}
RELEASED: list[Contract] = [_load(p) for p in _avsc(RELEASED_DIR)]
BY_FINGERPRINT: dict[bytes, Contract] = {c.fingerprint: c for c in [*RELEASED, *CURRENT.values()]}


def contract(name: str) -> Contract:
    """The current contract called ``name`` (e.g. "Referral")."""
    try:
        return CURRENT[name]
    except KeyError:
        known = ", ".join(sorted(CURRENT))
        raise ConfigError(f"no schema called {name!r}; known schemas: {known}") from None


def _named(t, found: dict) -> None:
    if isinstance(t, list):
        for branch in t:
            _named(branch, found)
    elif isinstance(t, dict):
        if "name" in t and t.get("type") in ("enum", "record", "fixed"):
            found.setdefault(t["name"], t)
        for f in t.get("fields", ()):
            _named(f["type"], found)
        if t.get("type") == "array":
            _named(t["items"], found)


NAMED: dict[str, dict] = {}
for _c in CURRENT.values():
    _named(_c.raw, NAMED)


def symbols(enum_name: str) -> list[str]:
    """The symbols of a named enum of the current contracts, e.g. symbols("AgencyRole")."""
    try:
        return list(NAMED[enum_name]["symbols"])
    except KeyError:
        raise ConfigError(f"no enum called {enum_name!r} in the contracts") from None
