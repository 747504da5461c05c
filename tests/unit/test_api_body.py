"""gateways.api.json_body against hostile and awkward bodies, without a server: a body that
arrives in pieces is read whole, an oversized one is refused however it arrives, and every
JSON Python cannot parse is a 400 (RecordError), never another exception (a 500)."""
from __future__ import annotations

import asyncio
import json
from unittest import mock

import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from gateways.api import MAX_BODY, json_body
from refmesh import records, samples
from refmesh.errors import RecordError


def _read(pieces: list[bytes], length: bool = True):
    """json_body of a request whose body arrives as ``pieces``, one per event-loop turn."""
    async def run():
        loop = asyncio.get_running_loop()
        reader = streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
        headers = {"Content-Length": str(sum(map(len, pieces)))} if length else {}
        request = make_mocked_request("POST", "/v1/referrals", headers=headers, payload=reader)

        def feed(rest):
            if not rest:
                reader.feed_eof()
                return
            reader.feed_data(rest[0])
            loop.call_soon(feed, rest[1:])

        feed(pieces)
        return await json_body(request)

    return asyncio.run(run())


def test_a_body_that_arrives_in_pieces_is_read_whole():
    body = json.dumps(samples.referral()).encode()
    assert _read([body[:100], body[100:2000], body[2000:]]) == samples.referral()


def test_a_body_over_the_limit_is_refused_however_it_arrives():
    big = b'{"x": "' + b"A" * MAX_BODY + b'"}'
    for pieces, length in (([big], True), ([big[:1000], big[1000:]], False)):
        with pytest.raises(RecordError) as refused:
            _read(pieces, length)
        assert refused.value.path == "body" and "larger than" in str(refused.value)


@pytest.mark.parametrize("body", [
    b'{"a": ' + b"1" * 5000 + b"}",  # ValueError: over Python's 4300-digit limit
    b"[" * 100_000 + b"]" * 100_000,  # RecursionError
    b'{"a": "\xc3\x28"}', b"\xff\xfe", b"", b"{", b"[]", b"null",
])
def test_what_python_cannot_take_is_a_bad_body(body):
    with pytest.raises(RecordError) as refused:
        _read([body])
    assert refused.value.path == "body"


def test_a_lone_surrogate_is_not_text_and_the_field_is_named():
    referral = samples.referral()
    referral["person"]["firstName"] = "\ud800"
    with pytest.raises(RecordError) as refused:
        records.Referral.from_dict(referral)
    assert refused.value.path == "Referral.person.firstName"
    with pytest.raises(RecordError):
        records.check("Referral", referral)


def test_a_wrong_value_nested_a_thousand_deep_is_named_not_repr():
    deep: list = []
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(RecordError) as refused:
        records.Referral.from_dict({**samples.referral(), "caseRef": deep})
    assert str(refused.value) == "Referral.caseRef: expected string, got list"
    with pytest.raises(RecordError) as long_enum:
        records.Referral.from_dict({**samples.referral(), "purpose": "x" * 100_000})
    assert len(str(long_enum.value)) < 300
