"""The domain's memory of accepted events (``refmesh.replay``): keys scoped by sender, digests
that a re-seal keeps, forgetting at the envelope's maximum age, and a table that stays bounded."""
from __future__ import annotations

import hashlib
from dataclasses import asdict

import pytest

from refmesh import codec, envelope, replay, samples
from refmesh.errors import SealError
from tests import policy_samples as S

MESH = S.signed_mesh()
NCC = "BH/GOV/NCCTIP"
OWNER = MESH.keys[NCC]
DAY = S.DAY


def seen(outcome: str = "Forwarded", until: int = S.NOW + 30 * DAY) -> replay.Seen:
    return replay.Seen(replay.digest("Referral", samples.referral()), outcome, None, until)


def apply(table: dict, writes) -> dict:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def test_event_ids_are_scoped_by_signer_and_sender():
    key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-1")
    assert key == replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-1")
    others = {replay.entry_key(S.SECRET, S.SHELTER, S.SHELTER, "ev-1"),  # another sender
              replay.entry_key(S.SECRET, NCC, S.HOTLINE, "ev-1"),  # handed over by a domain
              replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-2"),
              replay.entry_key(b"\x09" * 32, S.HOTLINE, S.HOTLINE, "ev-1")}
    assert key not in others and len(others) == 4
    assert b"ev-1" not in key and S.HOTLINE.encode() not in key  # a keyed hash, in clear


def test_a_re_seal_keeps_the_digest_a_change_does_not():
    referral = samples.referral()
    first = envelope.seal("Referral", referral, MESH.keys[S.HOTLINE], NCC, MESH.directory,
                          S.NOW, event_id="ev-1")
    again = envelope.seal("Referral", referral, MESH.keys[S.HOTLINE], NCC, MESH.directory,
                          S.NOW + 60_000, event_id="ev-1")
    assert first != again
    records = [envelope.open(d, OWNER, MESH.directory, S.NOW + 60_000).record
               for d in (first, again)]
    assert replay.digest("Referral", records[0]) == replay.digest("Referral", records[1])
    changed = {**referral, "recipientAgency": S.PSYCH}
    assert replay.digest("Referral", changed) != replay.digest("Referral", referral)


def test_the_digest_of_the_encoding_as_it_arrived_is_the_digest_of_the_record():
    """The domain and the gateways hash the inner record's encoding as it was decrypted
    (``Opened.inner``) instead of encoding the record again: the same digest, so that an event
    remembered before keeps its digest; an encoding by another contract version (another
    fingerprint) is not hashed as it is, but encoded again in the current one."""
    referral = samples.referral()
    sealed = envelope.seal("Referral", referral, MESH.keys[S.HOTLINE], NCC, MESH.directory,
                           S.NOW, event_id="ev-1")
    opened = envelope.open(sealed, OWNER, MESH.directory, S.NOW)
    assert opened.inner == codec.encode("Referral", referral)
    assert replay.digest("Referral", opened.record, opened.inner) == \
        replay.digest("Referral", opened.record)
    older = codec.MARKER + b"\x00" * 8 + opened.inner[codec.HEADER_LEN:]  # another writer
    assert replay.digest("Referral", opened.record, older) == \
        replay.digest("Referral", opened.record)
    as_is = hashlib.sha256(b"Referral\0" + older).hexdigest()
    assert replay.digest("Referral", opened.record, older) != as_is


def test_an_event_is_forgotten_once_its_envelope_could_no_longer_open():
    assert replay.until(S.NOW, S.NOW) == S.NOW + envelope.MAX_AGE_MS
    # sealed a little in the future (clock skew): remembered as long as it can open
    assert replay.until(S.NOW + 1000, S.NOW) == S.NOW + 1000 + envelope.MAX_AGE_MS
    table: dict = {}
    key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-1")
    apply(table, replay.remember(OWNER, table.get, key, seen(until=S.NOW + DAY), 0, S.NOW))
    assert replay.read(OWNER, table.get, key, S.NOW + DAY) == seen(until=S.NOW + DAY)
    assert replay.read(OWNER, table.get, key, S.NOW + DAY + 1) is None


def test_values_are_encrypted_for_the_domain_and_bound_to_their_key():
    table: dict = {}
    key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-1")
    apply(table, replay.remember(OWNER, table.get, key, seen(), 0, S.NOW))
    other = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-2")
    with pytest.raises(SealError):  # moved to another key: does not open
        replay.read(OWNER, {other: table[key]}.get, other, S.NOW)
    with pytest.raises(SealError):  # another domain's keys
        replay.read(MESH.keys["ET/GOV/NCC"], table.get, key, S.NOW)
    assert b"Forwarded" not in table[key]


def test_the_table_stays_bounded_by_expiry():
    """A day of events, one every ten minutes, each remembered for a day; a week of them
    leaves only the last day's entries (and their index buckets and the cursor)."""
    table: dict = {}
    step, kept = 10 * 60_000, 144  # one event per ten minutes; 144 in a day
    for n in range(7 * kept):
        now = S.NOW + n * step
        key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"ev-{n}")
        apply(table, replay.remember(OWNER, table.get, key, seen(until=now + DAY), 0, now))
    entries = [k for k in table if k.startswith(b"e|")]
    assert kept - 2 <= len(entries) <= kept + 2
    assert len([k for k in table if k.startswith(b"x|") and k.count(b"|") == 2]) <= kept + 2
    assert [k for k in table if k.startswith(b"c|")] == [b"c|0"]
    last = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"ev-{7 * kept - 1}")
    first = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-0")
    assert last in table and first not in table


def test_each_partition_purges_its_own_index_a_bounded_step_at_a_time():
    table: dict = {}
    for partition in (0, 1):
        key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"p{partition}")
        apply(table, replay.remember(OWNER, table.get, key, seen(until=S.NOW + 1), partition,
                                     S.NOW))
    later = S.NOW + 2 * replay.BUCKET_MS
    key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "late")
    apply(table, replay.remember(OWNER, table.get, key, seen(until=later + DAY), 0, later))
    assert replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "p0") not in table
    assert replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "p1") in table  # not purged yet
    # run-out buckets with entries: at most PURGE_STEPS of them per event; empty ones skipped
    many = [replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"many-{n}")
            for n in range(replay.PURGE_STEPS + 5)]
    for n, key in enumerate(many):
        until = later + (3 * n + 1) * replay.BUCKET_MS
        apply(table, replay.remember(OWNER, table.get, key, seen(until=until), 2, later))
    much_later = later + 1000 * replay.BUCKET_MS
    writes = replay.remember(OWNER, table.get, b"e|x", seen(until=much_later + DAY), 2,
                             much_later)
    deleted = [key for key, value in writes if value is None]
    assert len([k for k in deleted if k.startswith(b"x|") and k.count(b"|") == 2]) == \
        replay.PURGE_STEPS
    assert len([k for k in deleted if k.startswith(b"e|")]) == replay.PURGE_STEPS
    apply(table, writes)
    writes = replay.remember(OWNER, table.get, b"e|y", seen(until=much_later + DAY), 2,
                             much_later)  # added to e|x's bucket: no purge
    assert [k for k, _ in writes] == [b"e|y", b"x|2|%d" % ((much_later + DAY)
                                                            // replay.BUCKET_MS)]
    apply(table, writes)
    assert [k for k in many if k in table]
    next_bucket = much_later + DAY + replay.BUCKET_MS
    apply(table, replay.remember(OWNER, table.get, b"e|z", seen(until=next_bucket), 2,
                                 much_later))  # the next event to start a bucket purges the rest
    assert not [k for k in many if k in table]
    buckets = [b"x|2|%d" % (t // replay.BUCKET_MS) for t in (much_later + DAY, next_bucket)]
    assert sorted(k for k in table if k.startswith(b"x|2|")) == buckets


def test_only_an_event_that_starts_a_bucket_or_chunk_reads_the_cursor():
    table: dict = {}
    reads: list[bytes] = []

    def get(key):
        reads.append(key)
        return table.get(key)

    for n in range(replay.CHUNK + 2):
        reads.clear()
        key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"ev-{n}")
        apply(table, replay.remember(OWNER, get, key, seen(until=S.NOW + DAY), 0, S.NOW))
        starts = n in (0, replay.CHUNK, replay.CHUNK + 1)  # the bucket, chunk 0, chunk 1
        assert (b"c|0" in reads) == starts, n


def test_an_entry_remembered_again_after_it_ran_out_is_not_purged_early():
    table: dict = {}
    key = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "ev-1")
    apply(table, replay.remember(OWNER, table.get, key, seen(until=S.NOW + 1), 0, S.NOW))
    # run out, then accepted again (the same id and content, sealed anew) before any purge
    again = S.NOW + replay.BUCKET_MS // 2
    apply(table, replay.remember(OWNER, table.get, key, seen(until=again + DAY), 1, again))
    later = S.NOW + 3 * replay.BUCKET_MS
    apply(table, replay.remember(OWNER, table.get, b"e|other", seen(until=later + DAY), 0,
                                 later))  # purges partition 0's old bucket
    assert replay.read(OWNER, table.get, key, later) == seen(until=again + DAY)


def test_a_busy_bucket_is_indexed_in_chunks_and_purged_whole():
    """However many events expire in one bucket, an event re-encrypts one list of at most
    CHUNK + 1 keys: the first CHUNK in the index entry, then chunks; a bucket written before
    chunks (one list, however long) is read and extended too."""
    table: dict = {}
    n = 2 * replay.CHUNK + 3
    keys = [replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, f"busy-{i}") for i in range(n)]
    for key in keys:
        writes = replay.remember(OWNER, table.get, key, seen(until=S.NOW + 1), 0, S.NOW)
        assert len([k for k, _ in writes if k.startswith(b"x|")]) <= 2
        assert all(len(replay._open_json(OWNER, k, v)) <= replay.CHUNK + 1
                   for k, v in writes if k.startswith(b"x|") and v is not None and
                   isinstance(replay._open_json(OWNER, k, v), list))
        apply(table, writes)
    index = b"x|0|%d" % ((S.NOW + 1) // replay.BUCKET_MS)
    assert sorted(k for k in table if k.startswith(index)) == [
        index, index + b"|0", index + b"|1", index + b"|2"]
    later = S.NOW + 3 * replay.BUCKET_MS
    apply(table, replay.remember(OWNER, table.get, b"e|late", seen(until=later + DAY), 0, later))
    assert not [k for k in keys if k in table]
    assert not [k for k in table if k.startswith(index)]
    # a bucket as written before chunks: a list under the index key
    legacy = b"x|1|%d" % ((S.NOW + 1) // replay.BUCKET_MS)
    old = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "old")
    table[old] = replay._protect(OWNER, old, asdict(seen(until=S.NOW + 1)))
    table[legacy] = replay._protect(OWNER, legacy, [old.decode()])
    cursor = b"c|1"  # the old code wrote the cursor with the list's first key
    table[cursor] = replay._protect(OWNER, cursor, S.NOW // replay.BUCKET_MS)
    new = replay.entry_key(S.SECRET, S.HOTLINE, S.HOTLINE, "new")
    apply(table, replay.remember(OWNER, table.get, new, seen(until=S.NOW + 1), 1, S.NOW))
    apply(table, replay.remember(OWNER, table.get, b"e|late1", seen(until=later + DAY), 1,
                                 later))
    assert old not in table and new not in table and legacy not in table
