"""The hostile-input corpus (issue 6, section 2): what an attacker, a broken client or a confused
operator can put on the mesh's topics or send to a gateway's API.

Static part, written by ``python -m tests.hostile`` to ``tests/data/hostile/`` (deterministic:
fixed seed, fixed keys, no clock; about 200 KB):

    events/index.json   one entry per event: name, what it is, the dead-letter reason expected
                        at any gateway or domain, and its file (events/*.bin), or a recipe for
                        the events too big to commit (2 MiB), or a null Kafka value
    fuzz/<target>/      starting inputs for the fuzz targets (tests/fuzz_targets.py)
    api/*.json          requests for POST /v1/referrals, /v1/consents and
                        /v1/referrals/{id}/status: body (a patch of a valid template, raw bytes
                        or a recipe), expected status class and, where the gateway names it,
                        the field (tests/hostile_api.py)

Dynamic part (needs a running mesh's keys and directory): ``envelopes_for_gateway``,
``envelopes_for_domain`` (forged, replayed, revoked, misaddressed, tampered envelopes) and
``revoke_extra_keys`` (a directory edition in which an extra signing key of some agencies is
revoked). The envelope forging itself is in ``tests/hostile_envelopes.py``.
"""
from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path

import fastavro

from refmesh import codec, envelope, keys, records, samples, schemas
from refmesh.errors import SealError
from tests.hostile_api import load_api_cases as _load_api_cases
from tests.hostile_api import request_body, request_path, write_api  # noqa: F401
from tests.hostile_envelopes import (  # noqa: F401  (re-exported: the dynamic part)
    CORPUS_T,
    HostileEvent,
    corpus_fixture,
    envelopes_for_domain,
    envelopes_for_gateway,
    revoke_extra_keys,
)

SEED = 6
ROOT = Path(__file__).resolve().parent / "data" / "hostile"
MiB = 1024 * 1024
_SAMPLES = json.loads((ROOT.parent / "core_sample_values.json").read_text())["values"]


# --- events --------------------------------------------------------------------------------

def sample(name: str) -> dict:
    if name == "Referral":
        return samples.referral()
    if name == "Consent":
        return samples.consent()
    if name == "ReferralStatus":
        return samples.status()
    return records.record_class(name).from_json(_SAMPLES[name]).to_dict()


def _reason(data: bytes | None) -> str:
    """The SealError reason ``envelope.open`` gives these bytes at an agency they are not
    sealed for (every gateway and domain of a test mesh)."""
    agency_keys, directory, stranger = corpus_fixture()
    try:
        envelope.open(data or b"", agency_keys[stranger], directory, CORPUS_T)
    except SealError as exc:
        return exc.reason
    raise AssertionError("a corpus event opened")


def garbage_envelope(rng: random.Random, size: int = 200) -> tuple[bytes, bytes]:
    """(envelope, header prefix): a well-formed, signed envelope whose ciphertext is random
    bytes, and the encoding up to (not including) the ciphertext's length."""
    agency_keys, directory, _ = corpus_fixture()
    sender, receiver = agency_keys["ZZ/GOV/SENDER"], "ZZ/GOV/RECEIVER"
    header = {
        "eventId": "00000000-0000-4000-8000-00000000dead", "eventType": "Referral",
        "sender": sender.agency_id, "recipient": receiver,
        "senderKeyId": sender.signing.key_id,
        "recipientKeyId": directory.encryption_key(receiver, "X25519", CORPUS_T)[0],
        "schemaFingerprint": schemas.contract("Referral").fingerprint,
        "createdAt": CORPUS_T, "suite": envelope.CLASSIC}
    ciphertext = rng.randbytes(size)
    bare = codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                     "signature": b""})
    signature = keys.sign(sender.signing, envelope.LABEL + bare)
    data = codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                     "signature": signature})
    prefix = codec.encode("Envelope", {"header": header, "ciphertext": b"",
                                       "signature": b""})[:-2]
    return data, prefix


def expand(recipe: dict) -> bytes:
    """The bytes of an event too big to commit: ``oversized`` is the garbage envelope's header
    followed by ``size`` bytes in all: a ciphertext declared ``declared`` bytes long (or
    exactly as long as what follows, then a 64-byte signature: a complete envelope)."""
    if recipe["kind"] != "oversized":
        raise ValueError(f"unknown recipe {recipe['kind']!r}")
    _, prefix = garbage_envelope(random.Random(SEED))
    rng = random.Random(recipe["seed"])
    if recipe.get("declared") is not None:
        head = prefix + codec.zigzag(recipe["declared"])
        return head + rng.randbytes(recipe["size"] - len(head))
    body = recipe["size"] - len(prefix) - 64 - 1 - 8  # room for two length varints
    return prefix + codec.zigzag(body) + rng.randbytes(body) + codec.zigzag(64) + rng.randbytes(64)


def static_events() -> list[dict]:
    """Index entries, each with ``data`` (bytes), ``recipe`` or ``null``; no reasons yet."""
    rng = random.Random(SEED)
    env, prefix = garbage_envelope(rng)
    fp_env = schemas.contract("Envelope").fingerprint
    out: list[dict] = []

    def add(name: str, what: str, data: bytes | None = None, **extra) -> None:
        out.append({"name": name, "what": what, "data": data, **extra})

    add("empty", "a zero-length value", b"")
    add("null-value", "a Kafka record with no value (a tombstone)", null=True)
    for size in (1, 2, 9, 10, 11, 64, 1000, 65536):
        add(f"random-{size}", f"{size} random bytes", rng.randbytes(size))
    add("random-after-marker", "the marker c301 then 500 random bytes",
        codec.MARKER + rng.randbytes(500))
    for marker in (b"\xc3\x00", b"\xc2\x01", b"\x01\xc3", b"\x00\x00"):
        add(f"marker-{marker.hex()}", f"a whole envelope behind the wrong marker {marker.hex()}",
            marker + env[2:])
    out_file = io.BytesIO()  # an Avro object container file, not a single object
    fastavro.writer(out_file, schemas.contract("Envelope").parsed,
                    [codec.decode(env, expect="Envelope")[1]], sync_marker=b"\x06" * 16)
    add("container-file", "an Avro object container file (Obj\\x01) holding an envelope",
        out_file.getvalue())
    add("json-envelope", "an envelope's header as JSON text",
        json.dumps({"header": {"eventId": "x", "sender": "ZZ/GOV/SENDER"}}).encode())
    for fp in (b"\x00" * 8, b"\xff" * 8, rng.randbytes(8)):
        add(f"fingerprint-{fp.hex()}", "a whole envelope body under an unknown schema fingerprint",
            codec.MARKER + fp + env[10:])
    for name in sorted(schemas.CURRENT):
        if name != "Envelope":
            add(f"wrong-type-{name}", f"a valid single-object {name} where an envelope belongs",
                codec.encode(name, sample(name)))
    for contract in schemas.RELEASED:
        if contract.name == "Envelope":
            add(f"envelope-v{contract.version}-garbage",
                f"released Envelope v{contract.version} fingerprint, random body",
                codec.MARKER + contract.fingerprint + rng.randbytes(120))
    for cut in (11, 20, len(env) // 2, len(env) - 65, len(env) - 1):
        add(f"truncated-{cut}", f"the first {cut} of {len(env)} bytes of an envelope", env[:cut])
    add("trailing-byte", "an envelope and one more byte", env + b"\x00")
    add("trailing-envelope", "two envelopes in one record", env + env)
    add("noncanonical-varint", "the event id's length as a padded two-byte varint",
        env[:10] + bytes([env[10] | 0x80, 0x00]) + env[11:])
    for label, n in (("2^62", 2**62), ("2^31", 2**31), ("negative", -5)):
        add(f"event-id-length-{label}", f"an event id declared {n} bytes long",
            codec.MARKER + fp_env + codec.zigzag(n) + b"x" * 16)
        add(f"ciphertext-length-{label}", f"a ciphertext declared {n} bytes long",
            prefix + codec.zigzag(n) + rng.randbytes(32))
    # enum indexes: eventType is the second field, suite the last of the header
    bad_type = bytearray(env)
    bad_type[11 + env[10] // 2] = 200  # zig-zag 100: no such EventType
    add("event-type-index-100", "eventType enum index 100", bytes(bad_type))
    add("suite-index-5", "suite enum index 5", prefix[:-1] + codec.zigzag(5) + env[len(prefix):])
    add("garbage-ciphertext", "a well-formed envelope signed by a stranger, random ciphertext, "
        "sealed for another agency", env)
    add("oversized-declared", "2 MiB: an envelope header, then a ciphertext declared 2^40 "
        "bytes long", recipe={"kind": "oversized", "size": 2 * MiB, "declared": 2**40,
                              "seed": SEED + 1})
    add("oversized-complete", "2 MiB: a complete, canonical envelope with a 2 MiB ciphertext",
        recipe={"kind": "oversized", "size": 2 * MiB, "declared": None, "seed": SEED + 2})
    return out


def load_events(root: Path = ROOT) -> list[HostileEvent]:
    """The committed event corpus, oversized recipes expanded."""
    index = json.loads((root / "events" / "index.json").read_text())
    events = []
    for entry in index:
        if entry.get("null"):
            value = None
        elif "recipe" in entry:
            value = expand(entry["recipe"])
        else:
            value = (root / "events" / entry["file"]).read_bytes()
        events.append(HostileEvent(entry["name"], value, entry["reason"], entry["what"]))
    return events


# --- writing the corpus --------------------------------------------------------------------

def write(root: Path = ROOT) -> dict[str, int]:
    """Write the static corpus under ``root``; return {"events": n, "api": n, "bytes": n}."""
    events_dir, api_dir = root / "events", root / "api"
    for folder in (events_dir, api_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
    index = []
    for i, event in enumerate(static_events()):
        entry = {"name": event["name"], "what": event["what"]}
        if event.get("null"):
            entry.update(null=True, reason=_reason(None))
        elif "recipe" in event:
            entry.update(recipe=event["recipe"], reason=_reason(expand(event["recipe"])))
        else:
            entry["file"] = f"{i:02d}-{event['name']}.bin"
            (events_dir / entry["file"]).write_bytes(event["data"])
            entry["reason"] = _reason(event["data"])
        index.append(entry)
    (events_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    api = write_api(api_dir)
    from tests.fuzz_targets import write_seeds
    seeds = write_seeds(root / "fuzz")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"events": len(index), "api": api, "seeds": seeds, "bytes": size}


def load_api_cases(root: Path = ROOT) -> dict[str, list[dict]]:
    """The committed API corpus: {endpoint: cases} (see tests/hostile_api.py)."""
    return _load_api_cases(root / "api")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else ROOT
    counts = write(root)
    print(f"wrote {counts['events']} events, {counts['api']} API requests and "
          f"{counts['seeds']} fuzz seeds to {root} ({counts['bytes'] / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
