"""A/B in one run: the same benchmark against an earlier commit ("before") and the working tree
("after"), the two alternating round by round so that a drift of the machine's load falls on
both alike.

The benchmark script must take ``--json PATH`` and write there one object ``{figure: number}``
(its medians), and then write nothing to bench/RESULTS.md. The before tree is ``git archive`` of
``--before`` with the working tree's ``bench/`` copied over it, so both sides are measured by the
same code; each side runs with ``PYTHONPATH`` at its own tree (child processes inherit it, so a
benchmark that starts gateways and agents measures that tree's).

Usage: python bench/ab.py --before HEAD~3 [--rounds 3] [--write "codec: compiled checks"]
       -- bench/core.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import spread, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def before_tree(ref: str, into: Path) -> Path:
    """``ref``'s files in ``into``, with today's bench/ over them."""
    archive = into / "before.tar"
    done = subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), ref],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"ab: --before {ref!r} is not a commit git can archive here: "
                 f"{done.stderr.strip()}")
    tree = into / "before"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    shutil.rmtree(tree / "bench", ignore_errors=True)
    shutil.copytree(ROOT / "bench", tree / "bench",
                    ignore=shutil.ignore_patterns("__pycache__", "RESULTS.md"))
    return tree


def run_side(tree: Path, script: str, args: list[str], out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / script), *args, "--json", str(out)],
                          cwd=tree, env=env)
    if done.returncode:
        sys.exit(f"ab: {script} failed in {tree} (exit {done.returncode})")
    return {k: float(v) for k, v in json.loads(out.read_text()).items()}


def table(before: list[dict], after: list[dict]) -> list[str]:
    rows = ["| figure | before | after | after / before (rounds paired) |", "|---|---|---|---|"]
    for name in after[0]:
        if not all(name in side for side in before + after):
            continue
        b, a = [r[name] for r in before], [r[name] for r in after]
        ratios = [y / x for x, y in zip(b, a) if x]
        rows.append(f"| {name} | {spread(b)} | {spread(a)} | "
                    f"{spread(ratios, 2) if ratios else '-'} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the commit to compare with (git ref)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side")
    ap.add_argument("--write", metavar="TITLE",
                    help="also write the table into bench/RESULTS.md as 'A/B: TITLE'")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="-- SCRIPT [ARGS]: a benchmark under bench/ that takes --json PATH")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not (ROOT / command[0]).is_file():
        sys.exit("ab: name the benchmark after --, e.g. -- bench/core.py --quick")
    script, rest = command[0], command[1:]
    with tempfile.TemporaryDirectory(prefix="refmesh-ab-") as tmp:
        old = before_tree(args.before, Path(tmp))
        sides = {"before": [], "after": []}
        for r in range(args.rounds):
            order = [("before", old), ("after", ROOT)]
            for side, tree in order if r % 2 == 0 else order[::-1]:
                print(f"ab: round {r + 1}/{args.rounds}, {side}", file=sys.stderr, flush=True)
                sides[side].append(run_side(tree, script, rest, Path(tmp) / f"{side}{r}.json"))
    commit = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    body = "\n".join([
        f"`python bench/ab.py --before {args.before} --rounds {args.rounds} -- "
        f"{' '.join(command)}`: before = commit {commit}, after = "
        f"{'the working tree (uncommitted changes)' if dirty else 'this commit'}; "
        f"{args.rounds} rounds, the sides alternating; each figure the benchmark's own median "
        "per round, then median (min-max) over the rounds.", "",
        *table(sides["before"], sides["after"])])
    print(body)
    if args.write:
        write_section(f"A/B: {args.write}", body)


if __name__ == "__main__":
    main()
