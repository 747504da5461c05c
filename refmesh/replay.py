"""What a policy domain remembers of the events it accepted: replays refused, re-sends known.

Event ids are unique per sender (THREATS.md), and an envelope is refused once it is older than
``envelope.MAX_AGE_MS``. So the domain remembers each event it accepted for that long, under a
keyed hash of (signer, originating sender, event id): a digest of what was signed (the event
type and the inner record's encoding), what the domain did, and when it may forget.

- The same id with the same content again is a **re-send**: gateways re-seal and re-send an
  event until it is receipted (docs/operators.md, The gateway). ``refmesh.domain`` answers it as it
  answered the first copy, without deciding, auditing or counting it again.
- The same id with other content is a **replay** (an old id reused for something else):
  dead-lettered. An event the domain refused (dead-lettered) is not remembered.

The memory is the domain's table ``seen`` on the broker, like its other tables: values
encrypted for the domain and bound to their key (``envelope.protect``), keys keyed hashes or
numbers. It stays bounded: each partition keeps an expiry index, the entry keys by the ten
minutes in which they expire, and a cursor; an event that starts a bucket or a chunk (below)
removes the run-out buckets of its partition with their entries (empty ones cost a look-up; at
most ``PURGE_STEPS`` that hold entries at a time). Buckets run out one per ten minutes, and
while events come a bucket starts as often, and a chunk every ``CHUNK`` events, so the purge
keeps up; the other events read neither the cursor nor run-out buckets (what has run out and
waits is never read as remembered: ``read`` checks the time). A
bucket's first ``CHUNK`` keys are listed in its index entry itself; a busier bucket moves
them to chunk 0 and goes on in chunks of about ``CHUNK`` keys (so an event re-encrypts one
short list, however busy the bucket).

    entry   b"e|" + keyed hash                  -> Seen
    index   b"x|<partition>|<bucket>"           -> the bucket's entry keys, or how many
                                                   chunks it has
    chunk   b"x|<partition>|<bucket>|<n>"       -> entry keys that expire in that bucket
    cursor  b"c|<partition>"                    -> the first bucket not purged yet

(Before chunks, the index entry held every key of its bucket: such a list is read the same way,
and moved to chunk 0 by the next event that expires in that bucket.)
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from refmesh import codec, envelope, schemas
from refmesh.keys import AgencyKeys

SEEN_LABEL = b"refmesh-seen-v1\0"
CONTEXT = b"seen|"  # associated data of every protected value, with its table key
BUCKET_MS = 600_000  # the expiry index's granularity
PURGE_STEPS = 64  # index buckets holding entries purged per accepted event, at most
CHUNK = 32  # entry keys per index chunk (each event re-encrypts its bucket's last chunk)

Read = Callable[[bytes], "bytes | None"]
Write = tuple[bytes, "bytes | None"]  # (table key, protected value, or None to delete)


@dataclass(frozen=True)
class Seen:
    """One accepted event as the domain remembers it."""

    digest: str  # SHA-256 of the event type and the inner record's encoding, hex
    outcome: str  # the first audit decision (Forwarded, Refused, ConsentRecorded...) or type
    reason: str | None  # the audit reason (a refusal's code)
    until: int  # epoch ms after which it is forgotten


def entry_key(secret: bytes, signer: str, origin: str, event_id: str) -> bytes:
    """The table key of an event: a keyed hash of who signed it, who it comes from (a
    referral's sender, whose domain may be the signer) and its id. Event ids are unique per
    sender, so two agencies cannot squat each other's ids."""
    name = "\0".join((signer, origin, event_id)).encode("utf-8")
    return b"e|" + hmac.digest(secret, SEEN_LABEL + name, "sha256").hex()[:32].encode()


def digest(record_type: str, record: dict, encoded: bytes = b"") -> str:
    """What a re-send has in common with the first copy: its type and inner record (a re-seal
    changes the envelope's time, ciphertext and signature, never these).

    ``encoded``: the record's single-object encoding as it arrived (``envelope.Opened.inner``).
    Written with the current contract it is what encoding ``record`` again gives (Avro's
    binary form is canonical, and refmesh writes nothing else), so it is hashed as it is,
    saving the encoding (about 10 us for a full referral); an older writer's encoding, or
    none, is encoded again in the current contract, as digests always were."""
    if not encoded or codec.fingerprint_of(encoded) != \
            schemas.contract(record_type).fingerprint:
        encoded = codec.encode(record_type, record)
    return hashlib.sha256(record_type.encode() + b"\0" + encoded).hexdigest()


def until(created_at: int, now: int, max_age_ms: int = envelope.MAX_AGE_MS) -> int:
    """When an event accepted at ``now`` may be forgotten: once its envelope (sealed at
    ``created_at``, up to the allowed clock skew in the future) is too old to open."""
    return max(created_at, now) + max_age_ms


def read(owner: AgencyKeys, get: Read, key: bytes, now: int) -> Seen | None:
    """The remembered event under ``key``, or None (never seen, or forgotten by now)."""
    seen = _load(owner, key, get(key))
    return seen if seen is not None and seen.until >= now else None


def remember(owner: AgencyKeys, get: Read, key: bytes, seen: Seen, partition: int,
             now: int) -> tuple[Write, ...]:
    """The table writes that remember ``seen`` under ``key`` (an event handled in
    ``partition``) and, when it starts a bucket or a chunk, forget what has run out there."""
    bucket = seen.until // BUCKET_MS
    index = b"x|%d|%d" % (partition, bucket)
    held = _open_json(owner, index, get(index))
    writes: list[Write] = [(key, _protect(owner, key, {
        "digest": seen.digest, "outcome": seen.outcome, "reason": seen.reason,
        "until": seen.until}))]
    if held is None:  # the bucket's first key: listed in the index entry
        writes.append((index, _protect(owner, index, [key.decode()])))
    elif isinstance(held, list):  # the bucket's keys
        if len(held) < CHUNK:
            writes.append((index, _protect(owner, index, [*held, key.decode()])))
            return tuple(writes)
        # full: the list and the key become chunk 0
        writes += [(_chunk(index, 0), _protect(owner, _chunk(index, 0),
                                               [*held, key.decode()])),
                   (index, _protect(owner, index, 1))]
    else:
        last = _chunk(index, held - 1) if held else None
        listed = _open_json(owner, last, get(last)) if last is not None else None
        if listed is not None and len(listed) < CHUNK:
            writes.append((last, _protect(owner, last, [*listed, key.decode()])))
            return tuple(writes)
        new = _chunk(index, held)
        writes += [(new, _protect(owner, new, [key.decode()])),
                   (index, _protect(owner, index, held + 1))]
    return (*writes, *_purge(owner, get, partition, now))  # a bucket or chunk started


def _chunk(index: bytes, n: int) -> bytes:
    return index + b"|%d" % n


def _listed(owner: AgencyKeys, get: Read, index: bytes) -> tuple[list[str], list[bytes]] | None:
    """The entry keys of a bucket and its chunk keys; None when the bucket holds nothing."""
    held = _open_json(owner, index, get(index))
    if held is None:
        return None
    if isinstance(held, list):
        return held, []
    names: list[str] = []
    chunks = [_chunk(index, n) for n in range(held)]
    for chunk in chunks:
        names += _open_json(owner, chunk, get(chunk)) or []
    return names, chunks


def _purge(owner: AgencyKeys, get: Read, partition: int, now: int) -> list[Write]:
    cursor_key = b"c|%d" % partition
    held = _open_json(owner, cursor_key, get(cursor_key))
    # the first time: nothing accepted from now on runs out before now + the maximum age
    start = cursor = now // BUCKET_MS if held is None else held
    writes: list[Write] = []
    purged = 0
    while cursor < now // BUCKET_MS and purged < PURGE_STEPS:  # the buckets that ran out
        index = b"x|%d|%d" % (partition, cursor)
        held = _listed(owner, get, index)
        if held is not None:
            purged += 1
            names, chunks = held
            for name in names:
                key = name.encode()
                seen = _load(owner, key, get(key))
                # an entry remembered again later (after it ran out) expires in a later bucket
                if seen is not None and seen.until < (cursor + 1) * BUCKET_MS:
                    writes.append((key, None))
            writes += [(chunk, None) for chunk in chunks]
            writes.append((index, None))
        cursor += 1
    if held is None or cursor != start:
        writes.append((cursor_key, _protect(owner, cursor_key, cursor)))
    return writes


def _protect(owner: AgencyKeys, key: bytes, value) -> bytes:
    return envelope.protect(owner, CONTEXT + key, json.dumps(value).encode())


def _open_json(owner: AgencyKeys, key: bytes, data: bytes | None):
    return None if data is None else json.loads(envelope.unprotect(owner, CONTEXT + key, data))


def _load(owner: AgencyKeys, key: bytes, data: bytes | None) -> Seen | None:
    value = _open_json(owner, key, data)
    return None if value is None else Seen(**value)
