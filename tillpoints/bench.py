"""``tillpoints bench``: performance figures, each against the raw limit measured in
the same run where one exists (a ratio travels between machines; a rate does not).

Benchmarks report; they do not assert. Tests assert behaviour.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import LedgerError
from agent.fields import SIMULATED_PHONE_COST
from agent.ledger import Ledger
from drivers.cards import luhn_digit
from tillpoints.bench_api import EarnRows, api_earn_figures, percentile_ms
from tillpoints.simulated_till import DEMO_CARD, SimulatedTill

Figure = dict[str, Any]


def _progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def _raw_table(directory: Path) -> sqlite3.Connection:
    """The raw limit's table: one-row durable commits (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    return conn


def _raw_commit(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 400,))
    conn.execute("COMMIT")


def _timed(step: Callable[[int], object], seconds: float) -> tuple[int, float, list[float]]:
    """Run ``step`` for ``seconds``: (count, elapsed, each call's latency)."""
    latencies: list[float] = []
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        step(count)
        latencies.append(time.perf_counter() - began)
        count += 1
    return count, time.perf_counter() - start, latencies


def earn_figures(
    directory: Path, rounds: int = 6, seconds: float = 0.5, members: int = 1_000
) -> dict[str, Figure]:
    """Durable earns per second and their p99 latency, through the real ledger.

    The raw limit, the earns and the earn's rows alone are measured in alternating
    rounds, so a change in the machine's load during the run touches all three
    alike. Earns go to 1,000 enrolled members, a store's worth: each member's
    history stays what a store sees and does not grow with the length of the run.
    Their phone keys are made cheap (the cost a simulated chain uses): enrolment is
    set-up here, not what is measured."""
    ledger = Ledger.init(directory / "state", "BENCH", "T01", phone_cost=SIMULATED_PHONE_COST)
    raw = _raw_table(directory)
    try:
        cards = [ledger.enrol(name=f"Bench {n}", phone=f"555{n:07d}").card for n in range(members)]
        ledger.earn(cards[0], "B-warm", amount=1234)
        rows = EarnRows(ledger, directory)
        ledger.start_checkpointer()  # as the agent runs it
        totals = {"raw": [0, 0.0], "earn": [0, 0.0], "rows": [0, 0.0]}
        latencies: list[float] = []
        done = 0

        def earn(count: int) -> None:
            ledger.earn(
                cards[(done + count) % len(cards)],
                f"B{done + count}",
                amount=1234 + (done + count) % 500,
            )

        for _ in range(rounds):
            for name, step in (
                ("raw", lambda _n: _raw_commit(raw)),
                ("earn", earn),
                ("rows", lambda _n: rows.commit()),
            ):
                count, elapsed, each = _timed(step, seconds)
                totals[name][0] += count
                totals[name][1] += elapsed
                if name == "earn":
                    latencies.extend(each)
                    done += count
        rows.close()
    finally:
        raw.close()
        ledger.close()
    rate = {name: count / elapsed for name, (count, elapsed) in totals.items()}
    latencies.sort()
    return {
        "durable_earns_per_s": {
            "value": round(rate["earn"], 1),
            "unit": "earns/s",
            "limit": round(rate["raw"], 1),
            "ratio": round(rate["earn"] / rate["raw"], 3),
        },
        "earn_latency_p99_ms": {"value": percentile_ms(latencies, 0.99), "unit": "ms"},
        "earn_rows_commits_per_s": {
            "value": round(rate["rows"], 1),
            "unit": "commits/s (an earn's rows, no logic)",
            "limit": round(rate["raw"], 1),
            "ratio": round(rate["rows"] / rate["raw"], 3),
        },
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _program_cards(count: int) -> list[str]:
    cards = []
    for number in range(count):
        body = f"9900{number + 10**10:011d}"[:15]
        cards.append(body + luhn_digit(body))
    return cards


def agent_figures(directory: Path, swipes: int = 200, entries: int = 100_000) -> dict[str, Figure]:
    """Swipe on the pty to `event: scan` on the socket, and the daemon's memory idle
    and over a ledger of ``entries`` journal entries."""
    (directory / "small").mkdir()
    till = SimulatedTill(directory / "small")
    till.start()
    try:
        events: queue.Queue[float] = queue.Queue()

        def listen() -> None:
            with contextlib.suppress(LedgerError, OSError):
                for event, _ in till.client.events(timeout=60):
                    if event == "scan":
                        events.put(time.perf_counter())

        threading.Thread(target=listen, daemon=True).start()
        time.sleep(0.5)
        latencies = []
        for card in _program_cards(swipes):
            began = time.perf_counter()
            till.swipe(f";{card}=3012?\r".encode())
            latencies.append((events.get(timeout=10) - began) * 1000)
        assert till.proc is not None
        idle = _rss_mb(till.proc.pid)
    finally:
        till.close()
    _progress(f"filling a ledger with {entries} entries ...")
    (directory / "big").mkdir()
    big = SimulatedTill(directory / "big")
    ledger = Ledger(big.state)
    cards = _program_cards(2_000)  # a busy till's year: many members, a few visits each
    try:
        for number in range(entries - 2):
            ledger.earn(cards[number % len(cards)], f"F{number}", amount=100 + number % 5000)
    finally:
        ledger.close()
    big.start()
    try:
        big.client.get("/v1/status")
        big.client.get(f"/v1/members/{DEMO_CARD}")
        big.client.post("/v1/earn", {"member": DEMO_CARD, "receipt": "LAST", "amount": "1.00"})
        assert big.proc is not None
        loaded = _rss_mb(big.proc.pid)
    finally:
        big.close()
    latencies.sort()
    return {
        "swipe_to_api_event_p99_ms": {
            "value": round(latencies[int(len(latencies) * 0.99) - 1], 3),
            "unit": "ms",
        },
        "agent_rss_mb": {"value": idle, "unit": "MiB (idle)"},
        "agent_rss_100k_entries_mb": {"value": loaded, "unit": f"MiB ({entries} entries)"},
    }


def swipe_figures(directory: Path) -> dict[str, Figure]:
    from tillpoints.bench_readers import swipe_to_scan_p99_ms

    return {"swipe_to_scan_p99_ms": swipe_to_scan_p99_ms()}


def hq_figures(directory: Path) -> dict[str, Figure]:
    """HQ ingest on both backends, a till's 30-day catch-up, 200 tills at once."""
    from tillpoints import bench_hq as hq

    postgres = os.environ.get("TILLPOINTS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    figures = {"hq_ingest_sqlite_entries_per_s": hq.hq_ingest_entries_per_s(None)}
    try:
        figures["hq_ingest_postgres_entries_per_s"] = hq.hq_ingest_entries_per_s(postgres)
    except Exception as error:  # noqa: BLE001 (a bench reports what it could not measure)
        _progress(f"PostgreSQL at {postgres} not measured: {error}")
    _progress("a till 30 days offline catches up ...")
    figures["catch_up_30_days_s"] = hq.catch_up_30_days_s()
    _progress("200 tills upload at once ...")
    figures["concurrent_tills_200_errors"] = hq.concurrent_tills_200_errors()
    return figures


def insight_figures(directory: Path) -> dict[str, Figure]:
    """A chain's history simulated through the real code, then HQ's analyses."""
    from tillpoints import bench_insight as insight

    postgres = os.environ.get("TILLPOINTS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    figures = {"hq_simulate_entries_per_s": insight.hq_simulate_entries_per_s(None)}
    _progress("the same chain simulated into PostgreSQL ...")
    try:
        on_postgres = insight.hq_simulate_entries_per_s(postgres)
    except Exception as error:  # noqa: BLE001 (a bench reports what it could not measure)
        _progress(f"PostgreSQL at {postgres} not measured: {error}")
    else:
        # Against the SQLite run just before it: how much a chain on PostgreSQL costs.
        on_sqlite = figures["hq_simulate_entries_per_s"]["value"]
        on_postgres["of_sqlite"] = round(on_postgres["value"] / on_sqlite, 3)
        figures["hq_simulate_postgres_entries_per_s"] = on_postgres
    for name, measure in (
        ("hq_segments_100k_members_s", insight.hq_segments_100k_members_s),
        ("hq_report_liability_1m_entries_s", insight.hq_report_liability_1m_entries_s),
    ):
        _progress(f"{name} on PostgreSQL ...")
        try:
            figures[name] = measure(postgres)
        except Exception as error:  # noqa: BLE001 (a bench reports what it could not measure)
            _progress(f"{name}: PostgreSQL at {postgres} not measured ({error}); SQLite instead")
            figures[name] = measure(None)
    return figures


def api_figures(directory: Path) -> dict[str, Figure]:
    return api_earn_figures(directory)


def scale_figures(directory: Path, members: int, entries: int) -> dict[str, Figure]:
    """HQ at a chain's scale (issue 18): a PostgreSQL HQ filled in bulk, then timed."""
    from tillpoints.bench_scale import hq_scale

    postgres = os.environ.get("TILLPOINTS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    return hq_scale(postgres, members, entries)


def ui_figures(directory: Path) -> dict[str, Figure]:
    """The cashier's screen: its first frame, and a swipe to the member's name."""
    from tillpoints import bench_ui as screen

    return {
        "ui_first_frame_s": screen.ui_first_frame_s(),
        "scan_to_member_panel_ms": screen.scan_to_member_panel_ms(),
        "scan_to_member_panel_10k_suggestions_ms": (
            screen.scan_to_member_panel_10k_suggestions_ms()
        ),
    }


def night_figures(directory: Path, tills: int = 1_000) -> dict[str, Figure]:
    """One night of a chain: ``tills`` tills upload 3,000 entries each to HQ on
    PostgreSQL over HTTP at once (``tillpoints.bench_night``)."""
    from tillpoints import bench_night as night

    postgres = os.environ.get("TILLPOINTS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        return night.chain_night(tills, url=postgres, progress=_progress)
    except Exception as error:  # noqa: BLE001 (a bench reports what it could not measure)
        _progress(f"the chain's night on PostgreSQL at {postgres} not measured: {error}")
        return {}


Group = tuple[str, Callable[[Path], dict[str, Figure]]]


def groups(tills: int = 1_000) -> list[Group]:
    """Each group of figures, in the order they run; a package's figures are listed
    here. ``tills``: the size of the chain whose night is uploaded."""
    return [
        ("ledger earns", earn_figures),
        ("card reader swipes", swipe_figures),
        ("agent daemon", agent_figures),
        ("agent api earns", api_figures),
        ("cashier ui", ui_figures),
        ("hq sync", hq_figures),
        ("hq insight", insight_figures),
        ("chain night", functools.partial(night_figures, tills=tills)),
    ]


# Run only when named (``--only hq_scale``): the full size fills tens of GiB.
SCALE = "hq_scale"


def run(
    only: list[str] | None = None,
    tills: int = 1_000,
    members: int = 1_000_000,
    entries: int = 20_000_000,
) -> dict[str, Any]:
    figures: dict[str, Figure] = {}
    for name, measure in groups(tills):
        if only and not any(word in name for word in only):
            continue
        _progress(f"measuring {name} ...")
        with tempfile.TemporaryDirectory(prefix="tillpoints-bench-") as directory:
            figures.update(measure(Path(directory)))
    if only and SCALE in only:
        _progress(f"measuring {SCALE}: {members:,} members, {entries:,} entries ...")
        with tempfile.TemporaryDirectory(prefix="tillpoints-bench-") as directory:
            figures.update(scale_figures(Path(directory), members, entries))
    return {"figures": figures}


def render(result: dict[str, Any]) -> str:
    lines = []
    for name, figure in result["figures"].items():
        text = f"{name:32} {figure['value']:>12} {figure['unit']}"
        if "ratio" in figure:
            text += f"   (limit {figure['limit']}, ratio {figure['ratio']})"
        if "target" in figure:
            text += f"   (target {figure['target']})"
        lines.append(text)
    return "\n".join(lines)
