"""Fuzz targets for what faces the wire and the API, coverage-guided with atheris (libFuzzer).

    codec.decode        arbitrary bytes, a known fingerprint then arbitrary bytes, mutations
                        of valid encodings of every contract: a whole valid value or a
                        CodecError, nothing else
    envelope.open       arbitrary bytes; mutations of valid envelopes; headers rewritten and
                        re-signed with a real sender key; arbitrary inner bytes properly sealed
                        and signed: an opened, valid record or a SealError, nothing else
    Referral.from_dict  arbitrary JSON-like values, JSON text, and edits of a valid referral
                        (wrong types, edge numbers, lone surrogates, nesting 3000 deep): a
                        Referral the codec can write, or a RecordError, nothing else

Each target takes bytes and reads its choices from them (``Data``), so the same targets run
under atheris (``python -m tests.fuzz_targets TARGET [libFuzzer flags]``, coverage of the
refmesh package) or under hypothesis (random bytes, no coverage feedback), which is the fallback
when atheris is not installed. ``run_fuzz(count)`` runs every target for ``count`` inputs and
returns {target: (inputs, crashes)}: tests/unit/test_fuzz.py runs it small in ``make test``;
bench/drills.py runs it large. Keys are fixed and time is injected: one input always takes one
path, except that the valid envelopes mutated in mode 1 are sealed afresh per process (HPKE
draws its ephemeral key), which changes ciphertext bytes, not which check fails.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "tests" / "data" / "hostile" / "fuzz"
SEED = 6
MAX_LEN = 4096


class Data:
    """Choices read from the front of a fuzz input (as atheris' FuzzedDataProvider, in pure
    Python so that hypothesis can drive the same targets); past the end every read is zero."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 0

    def take(self, n: int) -> bytes:
        out = self.raw[self.pos:self.pos + max(n, 0)]
        self.pos += len(out)
        return out

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        raw = self.take(((span - 1).bit_length() + 7) // 8)
        return lo + int.from_bytes(raw, "little") % span

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def text(self, max_len: int = 40) -> str:
        """A string of up to ``max_len`` BMP code points, lone surrogates included, or ASCII."""
        n = self.int(0, max_len)
        if self.bool():
            return self.take(n).decode("latin-1")
        raw = self.take(2 * n)
        return "".join(chr(int.from_bytes(raw[i:i + 2], "big")) for i in range(0, len(raw) - 1, 2))

    def rest(self) -> bytes:
        return self.take(len(self.raw))


def mutate(base: bytes, d: Data) -> bytes:
    """``base`` after 1 to 8 byte-level edits chosen by ``d``."""
    out = bytearray(base)
    for _ in range(d.int(1, 8)):
        op, pos = d.int(0, 6), d.int(0, max(len(out), 1) - 1)
        if op == 0 and out:
            out[pos] ^= 1 << d.int(0, 7)
        elif op == 1 and out:
            out[pos] = d.int(0, 255)
        elif op == 2:
            out[pos:pos] = d.take(d.int(1, 16))
        elif op == 3:
            del out[pos:pos + d.int(1, 64)]
        elif op == 4:
            del out[pos:]
        elif op == 5:  # a length or enum index: an Avro varint of any size
            n = d.pick([0, 1, -1, 63, 64, 2**31, -(2**31) - 1, 2**62, 2**63 - 1, -(2**63),
                        d.int(-(2**63), 2**63 - 1)])
            out[pos:pos + d.int(0, 10)] = _setup()["codec"].zigzag(n)
        else:
            out[pos:pos] = out[pos:pos + d.int(1, 64)]
    return bytes(out)


# --- the targets (refmesh is imported in _setup: atheris instruments it first) ---------------

_fx: dict = {}


def _setup() -> dict:
    if _fx:
        return _fx
    from refmesh import codec, envelope, records, samples, schemas
    from refmesh.errors import CodecError, DirectoryError, RecordError, SealError
    from refmesh.keys import sign
    from tests.hostile import sample
    from tests.hostile_envelopes import CORPUS_T, corpus_fixture, forge

    agency_keys, trusted, _ = corpus_fixture()
    sender, receiver = agency_keys["ZZ/GOV/SENDER"], agency_keys["ZZ/GOV/RECEIVER"]
    inner = {t: codec.encode(t, sample(t)) for t in envelope.EVENT_TYPES}
    envelopes = [envelope.seal(t, sample(t), sender, receiver.agency_id, trusted, CORPUS_T,
                               suite=suite, event_id=f"fuzz-{t}")
                 for t in envelope.EVENT_TYPES for suite in (envelope.CLASSIC, envelope.HYBRID)]
    key_ids = [k["keyId"] for m in trusted.members.values() for k in m["keys"]]
    symbols = sorted({s for t in schemas.NAMED.values() if t.get("type") == "enum"
                      for s in t["symbols"]})
    _fx.update(
        codec=codec, envelope=envelope, records=records, schemas=schemas, forge=forge,
        CodecError=CodecError, RecordError=RecordError, SealError=SealError,
        DirectoryError=DirectoryError, sign=sign,
        T=CORPUS_T, sender=sender, receiver=receiver, trusted=trusted, inner=inner,
        envelopes=envelopes, key_ids=key_ids, agencies=sorted(agency_keys), symbols=symbols,
        fingerprints=sorted(schemas.BY_FINGERPRINT),
        valid=[codec.encode(n, sample(n)) for n in sorted(schemas.CURRENT)],
        referral=samples.referral(), signers=[sender.signing, receiver.signing])
    return _fx


def codec_decode(data: bytes) -> None:
    fx = _setup()
    d = Data(data)
    mode = d.int(0, 2)
    if mode == 0:
        raw = d.rest()
    elif mode == 1:  # past the fingerprint lookup, into the body decoder
        raw = fx["codec"].MARKER + d.pick(fx["fingerprints"]) + d.rest()
    else:
        raw = mutate(d.pick(fx["valid"]), d)
    expect = d.pick([None, "Envelope", "Referral"])
    try:
        name, value = fx["codec"].decode(raw, expect=expect)
    except fx["CodecError"]:
        return
    fx["records"].check(name, value)  # whatever decodes is a whole, valid value


def _header(d: Data, fx: dict, base: dict) -> dict:
    """``base`` with some fields replaced by values ``d`` chooses, mostly plausible ones."""
    T, env = fx["T"], fx["envelope"]
    choices = {
        "eventId": lambda: d.text(40),
        "eventType": lambda: d.pick([*env.EVENT_TYPES, "Other"]),
        "sender": lambda: d.pick([*fx["agencies"], "ZZ/GOV/NOBODY", d.text(20)]),
        "recipient": lambda: d.pick([*fx["agencies"], d.text(20)]),
        "senderKeyId": lambda: d.pick([*fx["key_ids"], d.text(30)]),
        "recipientKeyId": lambda: d.pick([*fx["key_ids"], d.text(30)]),
        "schemaFingerprint": lambda: d.pick([*fx["fingerprints"], d.take(8).ljust(8, b"\0")]),
        "createdAt": lambda: d.pick([T, T - env.MAX_AGE_MS - 1, T + env.MAX_SKEW_MS + 1,
                                     d.int(-(2**63), 2**63 - 1)]),
        "suite": lambda: d.pick([env.CLASSIC, env.HYBRID]),
    }
    return {k: (choices[k]() if d.int(0, 3) == 0 else v) for k, v in base.items()}


def envelope_open(data: bytes) -> None:
    fx = _setup()
    codec, env = fx["codec"], fx["envelope"]
    d = Data(data)
    mode = d.int(0, 3)
    try:
        if mode == 0:
            raw = d.rest()
        elif mode == 1:
            raw = mutate(d.pick(fx["envelopes"]), d)
        else:
            base = codec.decode(d.pick(fx["envelopes"]), expect="Envelope")[1]
            header = _header(d, fx, base["header"])
            signer = d.pick(fx["signers"])
            if mode == 2:  # re-signed: past the signature check, into age, keys, decryption
                ciphertext = base["ciphertext"] if d.bool() else d.take(d.int(0, 1200))
                unsigned = codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                                     "signature": b""})
                signature = fx["sign"](signer, env.LABEL + unsigned)
                raw = codec.encode("Envelope", {"header": header, "ciphertext": ciphertext,
                                                "signature": signature})
            else:  # sealed properly: the decrypted inner bytes are what is fuzzed
                inner = d.pick(list(fx["inner"].values()))
                inner = d.pick([inner, mutate(inner, d), d.rest()])
                raw = fx["forge"](header, inner, signer, fx["trusted"], fx["T"])
    except (fx["CodecError"], fx["DirectoryError"]):
        return  # not an envelope anyone can write (text that is not Unicode, no such recipient)
    try:
        opened = env.open(raw, fx["receiver"], fx["trusted"], fx["T"] + 1000)
    except fx["SealError"]:
        return
    assert opened.header["recipient"] == fx["receiver"].agency_id
    fx["records"].check(opened.record_type, opened.record)


def _json_value(d: Data, depth: int = 0):
    kind = d.int(0, 10) if depth < 4 else d.int(0, 5)
    if kind == 0:
        return None
    if kind == 1:
        return d.bool()
    if kind == 2:
        return d.pick([0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1,
                       10**30, d.int(-(2**64), 2**64)])
    if kind == 3:
        return d.pick([math.nan, math.inf, -math.inf, -0.0, 1.5, 1e308, 5e-324])
    if kind == 4:
        return d.text(60)
    if kind == 5:
        return d.pick(_setup()["symbols"])
    if kind == 6:
        return [_json_value(d, depth + 1) for _ in range(d.int(0, 4))]
    if kind == 7:
        keys = [*_setup()["referral"], *_setup()["referral"]["person"], "x"]
        return {d.pick([d.pick(keys), d.text(10)]): _json_value(d, depth + 1)
                for _ in range(d.int(0, 4))}
    if kind == 8:  # deeper than json.loads allows, still JSON-like
        value = _json_value(d, 4)
        for _ in range(d.int(1, 3000)):
            value = [value]
        return value
    if kind == 9:
        return "A" * d.int(0, 100_000)
    return d.pick(["", " ", "2026-02-30", "BH/GOV/X", "\ud800", "\udfff\ud800", "\x00"])


def _paths(value, prefix: str = ""):
    """Every dotted path in a referral dict, array items as [i]."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(f"{prefix}{k}")
            out += _paths(v, f"{prefix}{k}.")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(f"{prefix}[{i}]".replace(".[", "["))
    return out


def referral_from_dict(data: bytes) -> None:
    fx = _setup()
    d = Data(data)
    mode = d.int(0, 2)
    if mode == 0:
        value = _json_value(d)
    elif mode == 2:  # JSON text, as the gateway's API parses it
        try:
            value = json.loads(d.rest())
        except (ValueError, RecursionError):
            return
    else:
        import copy
        value = copy.deepcopy(fx["referral"])
        for _ in range(d.int(1, 6)):
            path = d.pick(_paths(value) or ["x"]) if d.int(0, 7) else d.text(12)
            holder, key = _locate(value, path)
            if holder is None:
                continue
            if d.int(0, 5) == 0 and isinstance(holder, dict):
                holder.pop(key, None)
            else:
                holder[key] = _json_value(d)
    try:
        record = fx["records"].Referral.from_dict(value)
    except fx["RecordError"]:
        return
    fx["codec"].encode("Referral", record.to_dict())  # what from_dict accepts, the codec writes


def _locate(value, path: str):
    parts = re.findall(r"\[(\d+)\]|([^.\[\]]+)", path)
    holder = value
    for i, (index, name) in enumerate(parts):
        key = int(index) if index else name
        last = i == len(parts) - 1
        try:
            if last:
                return holder, key
            holder = holder[key]
        except (KeyError, IndexError, TypeError):
            return None, None
    return None, None


TARGETS = {"codec.decode": codec_decode, "envelope.open": envelope_open,
           "Referral.from_dict": referral_from_dict}


def _planted(data: bytes) -> None:
    """A target with a known bug, to show the harness reports crashes: it fails on every
    envelope that decodes."""
    fx = _setup()
    try:
        fx["codec"].decode(data, expect="Envelope")
    except fx["CodecError"]:
        return
    raise KeyError("planted")


RUNNABLE = {**TARGETS, "planted": _planted}


# --- seeds and runners -----------------------------------------------------------------------

def seed_inputs() -> dict[str, list[bytes]]:
    """Starting inputs per target (deterministic): each mode of each target on valid values."""
    import random

    from tests.hostile import SEED as CORPUS_SEED
    from tests.hostile import garbage_envelope

    fx = _setup()
    garbage, _ = garbage_envelope(random.Random(CORPUS_SEED))
    return {
        "codec.decode": [bytes([0]) + v for v in fx["valid"]]
        + [bytes([1, i]) for i in range(len(fx["fingerprints"]))]
        + [bytes([2, i, 1, 0, 0, 0]) for i in range(len(fx["valid"]))],
        "envelope.open": [bytes([0]) + garbage]
        + [bytes([m, i]) + bytes(8) for m in (1, 2, 3) for i in range(10)],
        "Referral.from_dict": [bytes([0, 7]), bytes([1, 1, 0, 1])]
        + [bytes([1, 1, i, 4, 10]) + b"x" * 12 for i in range(0, 250, 10)]
        + [bytes([2]) + json.dumps(fx["referral"]).encode()],
        "planted": [bytes([0]) + v for v in fx["valid"]] + [fx["envelopes"][0]],
    }


def write_seeds(root: Path = SEEDS) -> int:
    n = 0
    for name, inputs in seed_inputs().items():
        if name == "planted":
            continue
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for i, data in enumerate(inputs):
            (folder / f"seed-{i:03d}").write_bytes(data)
            n += 1
    return n


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _run_atheris(name: str, count: int, seconds: float | None) -> tuple[int, int, str]:
    with tempfile.TemporaryDirectory(prefix="refmesh-fuzz-") as tmp:
        seeds = SEEDS / name
        if name == "planted" or not seeds.is_dir():
            seeds = Path(tmp) / "seeds"
            seeds.mkdir()
            for i, data in enumerate(seed_inputs()[name]):
                (seeds / f"seed-{i:03d}").write_bytes(data)
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        flags = [f"-runs={count}", f"-seed={SEED}", f"-max_len={MAX_LEN}",
                 f"-artifact_prefix={tmp}/", "-print_final_stats=1", "-rss_limit_mb=4096"]
        if seconds:
            flags.append(f"-max_total_time={int(seconds)}")
        proc = subprocess.run(
            [sys.executable, "-m", "tests.fuzz_targets", name, *flags, str(corpus), str(seeds)],
            cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        log = proc.stdout + proc.stderr
        runs = re.findall(r"stat::number_of_executed_units: (\d+)", log)
        crashes = len(list(Path(tmp).glob("crash-*"))) + len(list(Path(tmp).glob("oom-*"))) \
            + len(list(Path(tmp).glob("timeout-*")))
        if proc.returncode != 0 and crashes == 0:
            crashes = 1  # the fuzzer died without writing a reproducer
        return int(runs[-1]) if runs else 0, crashes, log


def _run_hypothesis(name: str, count: int) -> tuple[int, int, str]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target = RUNNABLE[name]
    seen, failures = [0], []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=MAX_LEN))
    def run(data: bytes) -> None:
        seen[0] += 1
        try:
            target(data)
        except Exception as exc:  # counted, not raised: hypothesis would stop and shrink
            failures.append((data, exc))

    for data in seed_inputs()[name]:  # the same starting points as atheris
        seen[0] += 1
        try:
            target(data)
        except Exception as exc:
            failures.append((data, exc))
    run()
    report = "\n".join(f"{type(e).__name__}: {e} on {data[:80]!r}" for data, e in failures[:5])
    return seen[0], len(failures), report


def run_fuzz(count: int, *, engine: str = "auto", seconds: float | None = None,
             targets=tuple(TARGETS), report=None) -> dict[str, tuple[int, int]]:
    """Run each target for ``count`` inputs (or ``seconds``, with atheris); return
    {target: (inputs run, crashes)}. ``engine`` is "atheris" (coverage-guided, one process per
    target), "hypothesis" (in process, random bytes), or "auto" (atheris when installed).
    ``report(target, inputs, crashes, seconds, log)`` is called after each target."""
    if engine == "auto":
        engine = "atheris" if atheris_available() else "hypothesis"
    results = {}
    for name in targets:
        start = time.perf_counter()
        if engine == "atheris":
            inputs, crashes, log = _run_atheris(name, count, seconds)
        else:
            inputs, crashes, log = _run_hypothesis(name, count)
        results[name] = (inputs, crashes)
        if report is not None:
            report(name, inputs, crashes, time.perf_counter() - start, log)
    return results


def main(argv: list[str]) -> None:
    """``python -m tests.fuzz_targets TARGET [libFuzzer flags] [corpus dirs]``."""
    import atheris

    name = argv[1]
    with atheris.instrument_imports(include=["refmesh"]):
        import refmesh.codec  # noqa: F401
        import refmesh.envelope  # noqa: F401
        import refmesh.records  # noqa: F401
    _setup()
    atheris.Setup([argv[0], *argv[2:]], RUNNABLE[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
