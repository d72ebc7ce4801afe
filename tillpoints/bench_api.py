"""Earns as a POS sends them: a separate client process posts ``/v1/earn`` over the
agent's Unix socket, one at a time on one kept-alive connection, and waits for each
answer (issue 18: ``api_earn_p99_ms``, ``api_earns_per_s``).

The limit in the same run is ``earn_rows_commits_per_s``: an earn's own rows, copied
under new keys, committed durably on the same disk (``EarnRows``).
API rounds and row rounds alternate, so a change in the machine's load touches both.

``python -m tillpoints.bench_api SOCKET CARD...`` is the client: for each line
``SECONDS FIRST`` on stdin it posts earns for that long (receipts numbered from
FIRST) and prints one JSON line, ``{"count", "elapsed", "latencies"}``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.checkpointer import Checkpointer
from agent.fields import SIMULATED_PHONE_COST
from agent.journal import Journal
from agent.ledger import Ledger
from agent.store import HANDED_OVER_CHECKPOINT_PAGES

Figure = dict[str, Any]


class EarnRows:
    """An earn's writes without the earn: the journal, receipt and lot rows and the
    recorded head of a real earn, copied under new keys, in one durable commit each.
    It measures what the earn's commit costs on this disk (four B-trees and their
    indexes, about seven pages), apart from deciding, pricing and signing. Its WAL
    is checkpointed by a thread of its own, as the agent's ledger is
    (``agent.checkpointer``): a commit here pays for what an earn's commit pays."""

    def __init__(self, ledger: Ledger, directory: Path) -> None:
        self.conn = sqlite3.connect(
            directory / "rows.db", isolation_level=None, check_same_thread=False
        )
        ledger.store.backup_to(self.conn)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(f"PRAGMA wal_autocheckpoint={HANDED_OVER_CHECKPOINT_PAGES}")
        self.checkpointer = Checkpointer(directory / "rows.db")
        self.checkpointer.start()
        self.rows = Journal(self.conn)
        last = self.rows.last_row()
        assert last is not None  # the warm-up earn
        self.journal = last
        self.receipt = self.conn.execute(
            "SELECT * FROM receipts WHERE seq = ?", (self.journal[0],)
        ).fetchone()
        self.lot = self.conn.execute(
            "SELECT * FROM lots WHERE lot_id = ?", (self.journal[0],)
        ).fetchone()
        self.seq = int(self.journal[0])

    def commit(self) -> None:
        self.seq += 1
        seq = self.seq
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        self.rows.copy_in(conn, [(seq, *self.journal[1:])])  # and the recorded head
        receipt = (self.receipt[0], f"ROWS{seq}", self.receipt[2], seq, *self.receipt[4:])
        conn.execute("INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", receipt)
        conn.execute("INSERT INTO lots VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (seq, *self.lot[1:]))
        conn.execute("COMMIT")
        self.checkpointer.noted()

    def close(self) -> None:
        self.checkpointer.stop()
        self.conn.close()


class _Poster:
    """One kept-alive HTTP/1.1 connection to the agent's socket, as a POS holds it."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        payload = json.dumps(body).encode()
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        )
        while len(self.buffer) < length:
            self._more()
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, answer

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        self.buffer += chunk


def percentile_ms(ordered: list[float], share: float) -> float:
    """The ``share`` percentile of latencies in seconds, sorted, in milliseconds."""
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000, 3)


def client(socket_path: str, cards: list[str]) -> None:
    poster = _Poster(socket_path)
    for line in sys.stdin:
        seconds_text, first_text = line.split()
        seconds, first = float(seconds_text), int(first_text)
        latencies: list[float] = []
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            number = first + count
            body = {
                "member": cards[number % len(cards)],
                "receipt": f"API{number}",
                "amount": f"{12 + number % 500}.34",
            }
            began = time.perf_counter()
            status, answer = poster.post("/v1/earn", body)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"earn {number}: {status} {answer[:200]!r}")
            count += 1
        elapsed = time.perf_counter() - start
        print(json.dumps({"count": count, "elapsed": elapsed, "latencies": latencies}), flush=True)


def api_earn_figures(
    directory: Path, rounds: int = 6, seconds: float = 0.5, members: int = 1_000
) -> dict[str, Figure]:
    """An agent over a till with ``members`` enrolled (a store's worth), a client
    process posting earns, and the earn's rows alone in alternating rounds."""
    from tillpoints.simulated_till import SimulatedTill

    till = SimulatedTill(directory, members=False)
    ledger = Ledger.init(till.state, "S001", "T01", phone_cost=SIMULATED_PHONE_COST)
    try:
        cards = [ledger.enrol(name=f"Pos {n}", phone=f"555{n:07d}").card for n in range(members)]
        ledger.earn(cards[0], "API-warm", amount=1234)
        rows = EarnRows(ledger, directory)
    finally:
        ledger.close()
    till.start()
    poster = subprocess.Popen(
        [sys.executable, "-m", "tillpoints.bench_api", str(till.client.socket_path), *cards],
        env=till.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert poster.stdin is not None and poster.stdout is not None
    totals = {"api": [0, 0.0], "rows": [0, 0.0]}
    latencies: list[float] = []
    agent_cpu = 0.0  # the agent's CPU seconds (all its threads) in the API rounds
    assert till.proc is not None
    try:
        poster.stdin.write("0.2 0\n")  # warm-up: the connection, the agent's caches
        poster.stdin.flush()
        done = json.loads(poster.stdout.readline())["count"]
        for _ in range(rounds):
            before = _cpu_seconds(till.proc.pid)
            poster.stdin.write(f"{seconds} {done}\n")
            poster.stdin.flush()
            measured = json.loads(poster.stdout.readline())
            agent_cpu += _cpu_seconds(till.proc.pid) - before
            totals["api"][0] += measured["count"]
            totals["api"][1] += measured["elapsed"]
            latencies.extend(measured["latencies"])
            done += measured["count"]
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                rows.commit()
                count += 1
            totals["rows"][0] += count
            totals["rows"][1] += time.perf_counter() - start
    finally:
        poster.stdin.close()
        poster.wait(10)
        rows.close()
        till.close()
    rate = {name: count / elapsed for name, (count, elapsed) in totals.items()}
    latencies.sort()
    return {
        "api_earns_per_s": {
            "value": round(rate["api"], 1),
            "unit": "earns/s (a POS process, one at a time over the socket)",
            "limit": round(rate["rows"], 1),
            "ratio": round(rate["api"] / rate["rows"], 3),
            "target": 0.6,
            "earns": totals["api"][0],
        },
        "api_earn_p50_ms": {"value": percentile_ms(latencies, 0.5), "unit": "ms"},
        "api_earn_p99_ms": {"value": percentile_ms(latencies, 0.99), "unit": "ms", "target": 3},
        # CPU beside the rates (issue 18): on a shared machine the rates move with the
        # load, what the agent spends on an earn much less.
        "api_agent_cpu_us_per_earn": {
            "value": round(agent_cpu / max(1, totals["api"][0]) * 1e6, 1),
            "unit": "µs of the agent's CPU (all threads) per earn over the socket",
        },
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (``/proc/PID/stat``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    client(sys.argv[1], sys.argv[2:])
