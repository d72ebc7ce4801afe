"""``tillpoints bench``: performance figures, each against the raw limit measured in
the same run where one exists (a ratio travels between machines; a rate does not).

Benchmarks report; they do not assert. Tests assert behaviour.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.ledger import Ledger

Figure = dict[str, Any]


def _progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def raw_commits_per_s(directory: Path, seconds: float = 2.0) -> float:
    """The raw limit: one-row durable commits (WAL, synchronous=FULL) on this disk."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 400,))
        conn.execute("COMMIT")
        count += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def earn_figures(directory: Path, seconds: float = 3.0) -> dict[str, Figure]:
    """Durable earns per second and their p99 latency, through the real ledger."""
    raw = raw_commits_per_s(directory)
    ledger = Ledger.init(directory / "state", "BENCH", "T01")
    try:
        members = [
            ledger.enrol(name=f"Bench {n}", phone=f"5550000{n:03d}")["card"] for n in range(20)
        ]
        latencies: list[float] = []
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            began = time.perf_counter()
            ledger.earn(members[count % len(members)], f"B{count}", amount=1234 + count % 500)
            latencies.append(time.perf_counter() - began)
            count += 1
        rate = count / (time.perf_counter() - start)
    finally:
        ledger.close()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return {
        "durable_earns_per_s": {
            "value": round(rate, 1),
            "unit": "earns/s",
            "limit": round(raw, 1),
            "ratio": round(rate / raw, 3),
        },
        "earn_latency_p99_ms": {"value": round(p99, 3), "unit": "ms"},
    }


def swipe_figures(directory: Path) -> dict[str, Figure]:
    from drivers.bench import swipe_to_scan_p99_ms

    return {"swipe_to_scan_p99_ms": swipe_to_scan_p99_ms()}


# Each group of figures, in the order they run; a package's figures are listed here.
GROUPS: list[tuple[str, Callable[[Path], dict[str, Figure]]]] = [
    ("ledger earns", earn_figures),
    ("card reader swipes", swipe_figures),
]


def run(only: list[str] | None = None) -> dict[str, Any]:
    figures: dict[str, Figure] = {}
    for name, measure in GROUPS:
        if only and not any(word in name for word in only):
            continue
        _progress(f"measuring {name} ...")
        with tempfile.TemporaryDirectory(prefix="tillpoints-bench-") as directory:
            figures.update(measure(Path(directory)))
    return {"figures": figures}


def render(result: dict[str, Any]) -> str:
    lines = []
    for name, figure in result["figures"].items():
        text = f"{name:32} {figure['value']:>12} {figure['unit']}"
        if "ratio" in figure:
            text += f"   (limit {figure['limit']}, ratio {figure['ratio']})"
        lines.append(text)
    return "\n".join(lines)
