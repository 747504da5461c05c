"""bench/profile.py's aggregation of py-spy's collapsed stacks: categories, idle samples, own and
inclusive functions, and the conversion to CPU ms per referral (no broker, no clock)."""
from bench.profile import (
    COMMIT, CRYPTO, IDLE, KAFKA, OTHER, SOCKETS, Frame, aggregate, categorise, parse_frame,
    parse_raw, tables)

LOOP = "<module> (gateways/run.py:40);Gateway.run (/tmp/before/gateways/gateway.py:88)"
RAW = "\n".join([
    f"{LOOP};seal (/tmp/before/refmesh/envelope.py:120) 5",
    "<module> (agents/run.py:9);encode (refmesh/codec.py:33);deepcopy (copy.py:128);"
    "_deepcopy_dict (copy.py:231) 3",
    f"{LOOP};EpollSelector.select (selectors.py:468) 7",
    f"{LOOP};Store.batch (gateways/store.py:170);Store._tx (gateways/store.py:149) 4",
    f"{LOOP};SSLSocket.recv (ssl.py:1200) 2",
    "thread (0x7f00);Thread.run (threading.py:982);"
    "KafkaProtocol.receive_bytes (kafka/protocol/parser.py:138) 1",
    "Handle._run (asyncio/events.py:80);AIOKafkaConnection.send (aiokafka/conn.py:423);"
    "_SelectorSocketTransport.write (asyncio/selector_events.py:1069) 6",
    f"{LOOP};socket.send (socket.py:10) 1",
    "not a stack line",
    "",
])
LINES = {("refmesh/envelope.py", 120): "        signature = key.sign(header + body)",
         ("gateways/store.py", 149): '        self._db.execute("COMMIT")'}


def source(frame: Frame) -> str:
    return LINES.get((frame.file, frame.line), "")


def test_frames_are_cut_to_the_package_and_pseudo_frames_dropped():
    assert parse_frame("seal (/tmp/x/before/refmesh/envelope.py:120)") == \
        Frame("seal", "refmesh/envelope.py", 120)
    assert parse_frame("get (/usr/lib/python3.11/queue.py:171)") == Frame("get", "queue.py", 171)
    assert parse_frame("f (a/site-packages/kafka/conn.py)") == Frame("f", "kafka/conn.py", None)
    stacks = parse_raw(RAW)
    assert len(stacks) == 8
    assert stacks[5][0][0] == Frame("Thread.run", "threading.py", 982)


def test_categories_split_our_lines_by_the_native_call_they_make():
    profile = aggregate(RAW, source)
    assert profile.samples == 29 and profile.idle == 7 and profile.busy == 22
    assert profile.categories == {
        CRYPTO: 5,
        "Avro codec and record checks (refmesh codec/records/schemas, fastavro)": 3,
        COMMIT: 4, "TLS (ssl)": 2, KAFKA: 1 + 6, SOCKETS: 1}
    assert IDLE not in profile.categories


def test_without_source_lines_a_frame_counts_for_its_file():
    profile = aggregate(RAW)
    assert profile.categories["envelope without its crypto calls (headers, framing)"] == 5
    assert profile.categories["gateway store logic (gateways/store.py, Python)"] == 4


def test_a_stack_of_generic_helpers_alone_is_other():
    assert categorise([Frame("deepcopy", "copy.py", 1), Frame("<lambda>", "<string>", 1)]) \
        == OTHER


def test_own_and_inclusive_functions_and_ms_per_referral():
    profile = aggregate(RAW, source)
    assert profile.own.most_common(2) == [
        ("_SelectorSocketTransport.write (asyncio/selector_events.py)", 6),
        ("seal (refmesh/envelope.py)", 5)]
    assert profile.inclusive["Gateway.run (gateways/gateway.py)"] == 12  # not the 7 idle
    assert profile.inclusive["Store.batch (gateways/store.py)"] == 4
    rows = tables(profile, cpu_ms=4.4, top=2)  # 22 busy samples: 0.2 ms each
    assert f"| {CRYPTO} | 1.00 | 23% |" in rows
    assert "| `seal (refmesh/envelope.py)` | 1.00 | 1.00 |" in rows
    assert "| `_SelectorSocketTransport.write (asyncio/selector_events.py)` | 1.20 | 1.20 |" \
        in rows
    assert sum(r.startswith("| `") for r in rows) == 2
