"""Core benchmark: microseconds per operation for the codec and the sealed envelope.

Baselines in the same run: the `avro` package (pure Python) for encode+decode, and the bare
cryptographic operations (HPKE seal+open and Ed25519 sign+verify, no Avro, no checks) for the
envelope. Usage: python bench/core.py [--runs 7] [--quick]
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import avro.io  # noqa: E402
import avro.schema  # noqa: E402

from bench.results import spread, write_section  # noqa: E402
from refmesh import codec, directory, envelope, keys, samples, schemas  # noqa: E402

NOW = 1_790_000_000_000


def per_op_us(fn, n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def mesh():
    """(sender, recipient, {suite: directory}): the recipient marked X25519-only (its ML-KEM
    key revoked) in the X25519 suite's directory, where that suite is the right one."""
    coord = keys.generate("BH/GOV/NCCTIP", 0)
    a, b = keys.generate("BH/NGO/HOTLINE", 0), keys.generate("BH/NGO/SHELTER", 0)
    d = directory.empty(coord.agency_id)
    for k, role in ((coord, "CentralGovernmentOrganisation"), (a, "NGO"), (b, "NGO")):
        d = directory.add_member(d, directory.member_entry(k, k.agency_id, role, "BH", None, 0))
    hybrid_key = next(k.key_id for k in b.decryption if k.kind == directory.HYBRID_KIND)
    x25519_only = directory.revoke_key(d, b.agency_id, hybrid_key, 0)
    anchor = directory.TrustAnchor.of(coord)
    return a, b, {envelope.HYBRID: directory.load(directory.sign(d, coord, 0), anchor, 1),
                  envelope.CLASSIC: directory.load(directory.sign(x25519_only, coord, 0),
                                                   anchor, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--json", metavar="PATH",
                    help="write the medians there as JSON (bench/ab.py), not RESULTS.md")
    args = ap.parse_args()
    n = 50 if args.quick else 2000
    referral = samples.referral()
    data = codec.encode("Referral", referral)

    avro_schema = avro.schema.parse(json.dumps(schemas.contract("Referral").raw))
    writer, reader = avro.io.DatumWriter(avro_schema), avro.io.DatumReader(avro_schema)

    def avro_roundtrip():
        buf = io.BytesIO()
        writer.write(referral, avro.io.BinaryEncoder(buf))
        buf.seek(0)
        reader.read(avro.io.BinaryDecoder(buf))

    sender, recipient, editions = mesh()
    trusted = editions[envelope.HYBRID]
    status = samples.status()
    ops = {
        "encode+decode referral (refmesh codec)":
            lambda: codec.decode(codec.encode("Referral", referral)),
        "encode+decode referral (avro package, baseline)": avro_roundtrip,
    }
    for suite, name in ((envelope.HYBRID, "ML-KEM-768+X25519"), (envelope.CLASSIC, "X25519")):
        kind, hs = envelope.SUITES[suite]
        pub = keys.hpke_public(kind, editions[suite].encryption_key(recipient.agency_id, kind,
                                                                    NOW)[1])
        priv = next(k for k in recipient.decryption if k.kind == kind).loaded

        def seal_open(suite=suite, trusted=editions[suite]):
            env = envelope.seal("Referral", referral, sender, recipient.agency_id, trusted, NOW,
                                suite=suite)
            envelope.open(env, recipient, trusted, NOW)

        def bare(hs=hs, pub=pub, priv=priv):
            ct = hs.encrypt(data, pub, info=b"i")
            hs.decrypt(ct, priv, info=b"i")
            sig = keys.sign(sender.signing, ct)
            keys.verify(sender.signing.public, sig, ct)

        ops[f"seal+open referral, {name} (refmesh envelope)"] = seal_open
        ops[f"HPKE+Ed25519 alone, {name} (baseline)"] = bare
    msg = data * 2
    ops["Ed25519 sign"] = lambda: keys.sign(sender.signing, msg)
    sig = keys.sign(sender.signing, msg)
    ops["Ed25519 verify"] = lambda: keys.verify(sender.signing.public, sig, msg)
    ops["seal+open status, ML-KEM-768+X25519"] = lambda: envelope.open(envelope.seal(
        "ReferralStatus", status, sender, recipient.agency_id, trusted, NOW),
        recipient, trusted, NOW)

    samples_us = {name: [] for name in ops}
    for _ in range(args.runs):
        for name, fn in ops.items():
            samples_us[name].append(per_op_us(fn, n if "seal" not in name else n // 4))
    # Ratios paired run by run (the two sides measured back to back), then their median: a
    # burst of load from other processes falls on one run's pair rather than on one side only.
    paired = {"codec: avro package / refmesh codec (x)": (
        "encode+decode referral (avro package, baseline)",
        "encode+decode referral (refmesh codec)")}
    for suite in ("ML-KEM-768+X25519", "X25519"):
        paired[f"seal+open / bare cryptography, {suite} (%)"] = (
            f"seal+open referral, {suite} (refmesh envelope)",
            f"HPKE+Ed25519 alone, {suite} (baseline)")
    ratios = {k: [a / b for a, b in zip(samples_us[top], samples_us[bottom])]
              for k, (top, bottom) in paired.items()}
    for k in ratios:
        if k.endswith("(%)"):
            ratios[k] = [100 * r for r in ratios[k]]
    med = {k: statistics.median(v) for k, v in {**samples_us, **ratios}.items()}
    rows = [f"| {k} | {spread(v)} |" for k, v in samples_us.items()]
    ratio_rows = [f"| {k} | {spread(v)} |" for k, v in ratios.items()]
    codec_us = med["encode+decode referral (refmesh codec)"]
    ratio_codec = med["codec: avro package / refmesh codec (x)"]
    hyb_x = med["seal+open / bare cryptography, ML-KEM-768+X25519 (%)"] / 100
    x25519_x = med["seal+open / bare cryptography, X25519 (%)"] / 100
    hyb = med["seal+open referral, ML-KEM-768+X25519 (refmesh envelope)"]
    codec_met = codec_us < 60 or ratio_codec >= 20
    body = "\n".join([
        f"Full synthetic referral: {len(data)} bytes encoded. {args.runs} runs; "
        f"median (min-max) microseconds per operation.", "",
        "| operation | us/op |", "|---|---|", *rows, "",
        "Ratios, paired run by run: median (min-max) over the runs.", "",
        "| ratio | median (min-max) |", "|---|---|", *ratio_rows, "",
        "Targets of issue 15, each a ratio in this run:",
        f"- codec encode+decode under 60 us, or at least 20x the avro package: "
        f"{'met' if codec_met else 'NOT met'} ({codec_us:.1f} us, {ratio_codec:.1f}x).",
        f"- seal+open at most 1.3x the bare cryptography of the same run (HPKE seal+open, "
        f"Ed25519 sign+verify), hybrid suite: {'met' if hyb_x <= 1.3 else 'NOT met'} "
        f"({hyb:.0f} us, {hyb_x:.2f}x; the X25519 suite {x25519_x:.2f}x).",
    ])
    print(body)
    if args.json:
        Path(args.json).write_text(json.dumps(med))
    elif not args.quick:
        write_section("Core: codec and envelope (bench/core.py)", body)


if __name__ == "__main__":
    main()
