"""Write one benchmark's table into bench/RESULTS.md, replacing that benchmark's old section."""
from __future__ import annotations

import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nWritten by `make bench` (and `make drills`). Every figure is a "
          "median over several runs with its spread (min-max), next to a baseline measured in "
          "the same run: these machines are shared and noisy, so the ratios are what to compare."
          "\n")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in
                         ("fastavro", "avro", "cryptography", "kafka-python", "faust-streaming"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=RESULTS.parent).stdout.strip() or "unknown"
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {cpu}, "
            f"{platform.machine()}, Python {sys.version.split()[0]}; {versions}")


def spread(samples: list[float], digits: int = 1) -> str:
    """``median (min-max)`` of the samples, with ``digits`` decimals."""
    f = f",.{digits}f"
    return (f"{statistics.median(samples):{f}} ({min(samples):{f}}-{max(samples):{f}})")


def write_section(name: str, body: str) -> None:
    """Replace (or add) the section headed ``## name`` in RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = f"## {name}\n\n{machine()}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
