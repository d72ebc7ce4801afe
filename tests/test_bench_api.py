"""The POS bench end to end at a toy size: a client process posts earns over the
agent's socket, and every one it counted is in the ledger (no timing is asserted)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tillpoints.bench_api import api_earn_figures


def test_api_earns_are_real_earns_in_the_ledger(tmp_path: Path) -> None:
    figures = api_earn_figures(tmp_path, rounds=2, seconds=0.1, members=5)
    earns = figures["api_earns_per_s"]
    assert set(earns) == {"value", "unit", "limit", "ratio", "target", "earns"}
    assert earns["earns"] > 0
    assert abs(earns["ratio"] - earns["value"] / earns["limit"]) < 0.01
    assert 0 < figures["api_earn_p50_ms"]["value"] <= figures["api_earn_p99_ms"]["value"]
    ledger = sqlite3.connect(tmp_path / "state" / "ledger.db")
    try:
        (posted,) = ledger.execute(
            "SELECT count(*) FROM journal WHERE kind = 'earn' AND json_extract(body, '$.receipt') "
            "LIKE 'API%' AND json_extract(body, '$.receipt') != 'API-warm'"
        ).fetchone()
    finally:
        ledger.close()
    assert posted >= earns["earns"]  # the measured ones and the warm-up's
