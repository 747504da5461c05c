"""The Avro contracts in schemas/: they parse, they are documented, they evolve compatibly, released
copies stay frozen, and their fingerprints are the CRC-64-AVRO of the Avro spec in the byte order
single-object encoding uses (little-endian).

The files are read straight from disk here, not through refmesh.schemas, so that a loader bug
cannot hide a contract bug (and vice versa).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from refmesh import schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
RELEASED_DIR = SCHEMA_DIR / "released"
DATA = ROOT / "tests" / "data"

CURRENT_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
RELEASED_FILES = sorted(RELEASED_DIR.glob("*.avsc"))
ALL_FILES = CURRENT_FILES + RELEASED_FILES
VECTORS = json.loads((DATA / "crc64_avro_vectors.json").read_text())["vectors"]
REGISTER = json.loads((DATA / "released_contracts.json").read_text())["released"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _rel(path: Path) -> str:
    return str(path.relative_to(SCHEMA_DIR))


def _released_versions(name: str) -> dict[int, Path]:
    """{version: path} of the released copies of contract ``name``."""
    found = {}
    for p in RELEASED_FILES:
        stem, _, version = p.name[: -len(".avsc")].rpartition(".v")
        if stem == name:
            found[int(version)] = p
    return found


# --- an independent CRC-64-AVRO, written from the Avro spec ("Schema Fingerprints") -------------

_EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def single_object_fingerprint(raw: dict) -> bytes:
    """What the single-object header must carry: the CRC-64-AVRO of the parsing canonical form,
    as 8 little-endian bytes."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(raw))
    return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")


# --- walking a schema ---------------------------------------------------------------------------

def _walk_types(t, namespace: str, path: str):
    """Yield (path, field) for every record field and (fullname, definition) for every named type
    defined inline, recursively: nested records, union branches, array items, map values."""
    if isinstance(t, list):
        for branch in t:
            yield from _walk_types(branch, namespace, path)
        return
    if not isinstance(t, dict):
        return
    kind = t.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name = t["name"]
        ns = t.get("namespace", namespace) if "." not in name else name.rpartition(".")[0]
        full = name if "." in name else f"{ns}.{name}"
        yield ("type", full, t)
        if kind in ("record", "error"):
            for f in t["fields"]:
                where = f"{path}.{f['name']}"
                yield ("field", where, f)
                yield from _walk_types(f["type"], ns, where)
        return
    if kind == "array":
        yield from _walk_types(t["items"], namespace, f"{path}[]")
    elif kind == "map":
        yield from _walk_types(t["values"], namespace, f"{path}{{}}")
    elif isinstance(kind, (dict, list)):
        yield from _walk_types(kind, namespace, path)


def _fields(raw: dict):
    return [(where, f) for what, where, f in _walk_types(raw, "", raw["name"]) if what == "field"]


def _named(raw: dict):
    return [(full, t) for what, full, t in _walk_types(raw, "", raw["name"]) if what == "type"]


# --- parsing and documentation ------------------------------------------------------------------

def test_there_are_contracts_and_released_copies():
    names = {p.stem for p in CURRENT_FILES}
    assert {"Referral", "Consent", "ReferralStatus", "Envelope", "Directory"} <= names
    assert RELEASED_FILES, "schemas/released/ is empty"
    assert set(schemas.CURRENT) == names


def test_the_package_reads_these_files():
    """refmesh reads its contracts as the package's resources, ``refmesh/contracts``: a link to
    schemas/ in the repository (a wheel holds copies: tests/integration/test_wheel.py), so the
    fingerprints checked here are those of the contracts refmesh loads."""
    link = ROOT / "refmesh" / "contracts"
    assert link.is_symlink() and link.resolve() == SCHEMA_DIR.resolve()
    assert Path(str(schemas.SCHEMA_DIR)).resolve() == SCHEMA_DIR.resolve()
    assert [c.raw for c in schemas.RELEASED] == [_load(p) for p in RELEASED_FILES]
    assert [c.raw for c in schemas.CURRENT.values()] == [_load(p) for p in CURRENT_FILES]


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_parses_with_fastavro(path):
    parsed = fastavro.parse_schema(_load(path))
    assert parsed["name"] == f"org.refmesh.{_load(path)['name']}"


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_parses_with_the_avro_package(path):
    parsed = avro.schema.parse(path.read_text(encoding="utf-8"))
    assert parsed.fullname == f"org.refmesh.{_load(path)['name']}"


def test_the_field_walker_sees_nested_fields():
    """Guards the doc test below: nested records inside unions and arrays are visited."""
    referral = dict(_fields(_load(SCHEMA_DIR / "Referral.avsc")))
    assert "Referral.person.firstName" in referral
    assert "Referral.service.details" in referral
    directory = dict(_fields(_load(SCHEMA_DIR / "Directory.avsc")))
    assert "Directory.members[].keys[].revokedAt" in directory


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_every_field_has_a_doc(path):
    undocumented = [where for where, f in _fields(_load(path))
                    if not isinstance(f.get("doc"), str) or not f["doc"].strip()]
    assert undocumented == [], f"{_rel(path)}: fields without a doc: {undocumented}"


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_every_named_type_has_a_doc(path):
    undocumented = [full for full, t in _named(_load(path))
                    if not isinstance(t.get("doc"), str) or not t["doc"].strip()]
    assert undocumented == [], f"{_rel(path)}: types without a doc: {undocumented}"


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_namespace_name_and_integer_version(path):
    raw = _load(path)
    assert raw["type"] == "record"
    assert raw.get("namespace") == schemas.NAMESPACE == "org.refmesh"
    outside = [full for full, _ in _named(raw) if not full.startswith("org.refmesh.")
               or "." in full[len("org.refmesh."):]]
    assert outside == [], f"named types outside org.refmesh: {outside}"
    version = raw.get("refmesh.version")
    assert isinstance(version, int) and not isinstance(version, bool) and version >= 1
    if path.parent == RELEASED_DIR:
        assert path.name == f"{raw['name']}.v{version}.avsc"
    else:
        assert path.stem == raw["name"]


def test_named_types_defined_in_several_files_are_identical():
    seen: dict[str, tuple[str, dict]] = {}
    shared = set()
    for path in CURRENT_FILES:
        for full, t in _named(_load(path)):
            if full in seen:
                first_file, first = seen[full]
                assert t == first, f"{full} differs between {first_file} and {_rel(path)}"
                shared.add(full)
            else:
                seen[full] = (_rel(path), t)
    # The test must have something to compare: these two are known to be repeated.
    assert {"org.refmesh.Purpose", "org.refmesh.AgencyRole"} <= shared


# --- evolution: current against the latest released copy ----------------------------------------

def _compatible(reader: dict, writer: dict) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer)))
    return result.compatibility is SchemaCompatibilityType.compatible


@pytest.mark.parametrize("path", CURRENT_FILES, ids=_rel)
def test_every_current_contract_has_a_released_copy(path):
    raw = _load(path)
    released = _released_versions(raw["name"])
    assert released, f"{raw['name']} has no copy in schemas/released/"
    assert max(released) <= raw["refmesh.version"], (
        f"{raw['name']} is released as v{max(released)} but the current file says "
        f"v{raw['refmesh.version']}")


@pytest.mark.parametrize("path", CURRENT_FILES, ids=_rel)
def test_current_is_backward_and_forward_compatible_with_latest_release(path):
    current = _load(path)
    released = _released_versions(current["name"])
    latest = _load(released[max(released)])
    assert _compatible(reader=current, writer=latest), "backward: current cannot read released"
    assert _compatible(reader=latest, writer=current), "forward: released cannot read current"


@pytest.mark.parametrize("path", CURRENT_FILES, ids=_rel)
def test_same_version_means_same_file(path):
    """A released contract is frozen: while the current file keeps its version number it must be
    byte-identical to the released copy; any change needs a new refmesh.version."""
    current = _load(path)
    released = _released_versions(current["name"])
    same = released.get(current["refmesh.version"])
    if same is None:
        pytest.skip(f"{current['name']} v{current['refmesh.version']} is not released yet")
    assert path.read_bytes() == same.read_bytes()


@pytest.mark.parametrize("path", RELEASED_FILES, ids=_rel)
def test_released_copy_matches_the_register(path):
    """Catches an in-place edit of a released copy (done together with the current file, the
    'same file' test above cannot see it): peers that already run the released contract name
    the old fingerprint on the wire, and a reader that forgot it can no longer decode them."""
    assert path.name in REGISTER, (
        f"{path.name} is not in tests/data/released_contracts.json; releasing a contract means "
        "registering its fingerprint there")
    entry = REGISTER[path.name]
    canonical = to_parsing_canonical_form(fastavro.parse_schema(_load(path)))
    assert f"{crc64_avro(canonical.encode()):016x}" == entry["crc64_avro"], (
        f"{path.name}: the wire contract changed after release; restore it and add "
        f"{path.name.split('.')[0]}.v<N+1> instead")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], (
        f"{path.name}: the released text changed")


def test_every_registered_release_is_present():
    assert sorted(REGISTER) == sorted(p.name for p in RELEASED_FILES)


def test_checker_accepts_identity():
    referral = _load(SCHEMA_DIR / "Referral.avsc")
    assert _compatible(referral, copy.deepcopy(referral))


def test_checker_detects_a_new_field_without_default():
    released = _load(RELEASED_DIR / "Referral.v1.avsc")
    changed = copy.deepcopy(released)
    changed["fields"].append({"name": "priority", "type": "int", "doc": "No default."})
    assert not _compatible(reader=changed, writer=released)


def test_checker_detects_a_removed_enum_symbol():
    released = _load(RELEASED_DIR / "Referral.v1.avsc")
    changed = copy.deepcopy(released)
    purpose = next(f for f in changed["fields"] if f["name"] == "purpose")["type"]
    assert "default" not in purpose
    purpose["symbols"].remove("Statistics")
    assert not _compatible(reader=changed, writer=released)
    assert _compatible(reader=released, writer=changed)  # fewer symbols can still be read


def test_checker_detects_a_changed_type():
    released = _load(RELEASED_DIR / "Referral.v1.avsc")
    changed = copy.deepcopy(released)
    next(f for f in changed["fields"] if f["name"] == "createdAt")["type"] = "string"
    assert not _compatible(reader=changed, writer=released)
    assert not _compatible(reader=released, writer=changed)


# --- fingerprints -------------------------------------------------------------------------------

@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_crc64_oracle_matches_the_avro_test_vectors(vector):
    assert crc64_avro(vector["canonical"].encode()) == vector["fingerprint"] % 2**64


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_fastavro_canonical_form_matches_the_avro_test_vectors(vector):
    parsed = fastavro.parse_schema(json.loads(vector["input"]))
    assert to_parsing_canonical_form(parsed) == vector["canonical"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_libraries_give_the_fingerprint_little_endian(vector):
    """fastavro's hex string and the avro package's bytes are both the little-endian bytes of the
    CRC-64-AVRO value, i.e. already the single-object byte order (both libraries say so in their
    source, following Java's SchemaNormalization)."""
    little = (vector["fingerprint"] % 2**64).to_bytes(8, "little")
    assert bytes.fromhex(fastavro_fingerprint(vector["canonical"], "CRC-64-AVRO")) == little
    assert avro.schema.parse(vector["input"]).fingerprint("CRC-64-AVRO") == little


def test_null_known_answer():
    """CRC-64-AVRO of the canonical schema "null" is 0x63dd24e7cc258f8a (Avro schema-tests.txt,
    7195948357588979594); a single-object header carries it as 8a 8f 25 cc e7 24 dd 63."""
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    hex_fp = fastavro_fingerprint('"null"', "CRC-64-AVRO")
    assert hex_fp == "8a8f25cce724dd63"
    assert bytes.fromhex(hex_fp) == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_refmesh_fingerprint_conversion_on_known_answers():
    """The conversion in refmesh/schemas.py, run on the named-type vectors of the Avro suite."""
    named = [v for v in VECTORS if v["canonical"].startswith('{"name"')]
    assert len(named) >= 8
    wrong = {}
    for v in named:
        got = schemas._contract(json.loads(v["input"])).fingerprint
        want = (v["fingerprint"] % 2**64).to_bytes(8, "little")
        if got != want:
            wrong[v["id"]] = f"got {got.hex()}, want {want.hex()}"
    assert wrong == {}


def test_refmesh_fingerprints_equal_the_avro_package():
    """Every contract refmesh knows (current and released) carries, as its single-object
    fingerprint, the avro package's CRC-64-AVRO bytes (little-endian) = the spec oracle above."""
    wrong = {}
    for where, c in [*(("current", c) for c in schemas.CURRENT.values()),
                     *(("released", c) for c in schemas.RELEASED)]:
        expected = avro.schema.parse(json.dumps(c.raw)).fingerprint("CRC-64-AVRO")
        assert expected == single_object_fingerprint(c.raw)
        assert len(c.fingerprint) == 8
        if c.fingerprint != expected:
            wrong[f"{where} {c.name}.v{c.version}"] = (
                f"refmesh {c.fingerprint.hex()}, avro {expected.hex()}")
    assert wrong == {}


def test_fingerprint_index_covers_every_contract():
    for c in [*schemas.CURRENT.values(), *schemas.RELEASED]:
        assert schemas.BY_FINGERPRINT[c.fingerprint].name == c.name
    assert len({c.fingerprint for c in schemas.CURRENT.values()}) == len(schemas.CURRENT)
