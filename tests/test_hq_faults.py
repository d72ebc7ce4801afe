"""Faults on the way: connections cut at random points of requests and responses
(a fault-injection proxy on loopback), and HQ killed with SIGKILL mid-ingest.
In every case HQ ends with each entry exactly once and the journals' points."""

from __future__ import annotations

import contextlib
import random
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.ledger import Ledger
from sync.client import Reply, RetryPolicy
from sync.errors import SyncError
from sync.hq.audit import verify_all
from sync.hq.stores import open_store
from sync.till_sync import sync_till
from tests import sync_helpers
from tests.sync_helpers import (
    entries_of,
    hq_count,
    hq_points,
    journal_points,
    make_till,
    register_till,
    running_hq,
    start_hq,
)

# Fixtures shared with the other sync tests (tests/sync_helpers.py).
db_url = sync_helpers.db_url
pg_database = sync_helpers.pg_database

pytestmark = pytest.mark.slow
QUICK = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05, connect_timeout_s=2, read_timeout_s=10)


class CuttingProxy:
    """Forward loopback TCP to HQ, cutting some connections after a random number
    of bytes of the request or of the response (seeded, bounded, stops itself).
    The client keeps connections alive, so a connection carries several requests:
    most are cut somewhere in their first 8 kB, mid-request or mid-response."""

    def __init__(self, upstream: int, seed: int, cut_rate: float = 0.8) -> None:
        self.upstream, self.random, self.cut_rate = upstream, random.Random(seed), cut_rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            cut = self.random.random() < self.cut_rate
            direction = self.random.choice(["request", "response"])
            after = self.random.randrange(0, 8_000)
            threading.Thread(
                target=self._pipe, args=(client, cut, direction, after), daemon=True
            ).start()

    def _pipe(self, client: socket.socket, cut: bool, direction: str, after: int) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        budget = {
            "request": after if cut and direction == "request" else -1,
            "response": after if cut and direction == "response" else -1,
        }

        def pump(source: socket.socket, sink: socket.socket, way: str) -> None:
            try:
                while True:
                    data = source.recv(4096)
                    if not data:
                        break
                    if budget[way] >= 0:
                        if len(data) >= budget[way]:
                            sink.sendall(data[: budget[way]])
                            self.cuts += 1
                            break
                        budget[way] -= len(data)
                    sink.sendall(data)
            except OSError:
                pass
            for end in (client, upstream):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pump, args=(upstream, client, "response"), daemon=True)
        other.start()
        pump(client, upstream, "request")
        other.join(timeout=30)
        client.close()
        upstream.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.listener.close()


def _fill(state: Path, count: int) -> None:
    ledger = Ledger(state)
    try:
        member = ledger.enrol(name="Eve", phone=f"06{secrets.randbelow(10**8):08d}").member_id
        for number in range(count):
            ledger.earn(member, f"F{number}", amount=1000 + number)
    finally:
        ledger.close()


def _sync_until_done(state: Path, url: str, runs: int = 60) -> dict[str, int]:
    for _ in range(runs):
        try:
            return sync_till(state, url, policy=QUICK, batch_entries=15)
        except SyncError as error:
            assert error.code == "hq_unreachable", error.as_json()
    raise AssertionError("sync never completed")


def _assert_exactly_once(url: str, *states: Path) -> None:
    hq = open_store(url)
    try:
        total = sum(len(entries_of(state)) for state in states)
        assert hq_count(hq) == (total, total)
        assert hq_points(hq) == journal_points(*states)
        assert verify_all(hq)["ok"] is True
    finally:
        hq.close()


def test_cut_connections_lose_and_duplicate_nothing(tmp_path: Path, db_url: str) -> None:
    hq = open_store(db_url)
    tills = [make_till(tmp_path, f"till{n}", till=f"T{n}") for n in range(2)]
    with running_hq(db_url, tmp_path / "hq.log", workers=2) as server:
        for state in tills:
            register_till(server, hq, state)
            _fill(state, 120)
        proxy = CuttingProxy(server.port, seed=5)
        try:
            for state in tills:
                _sync_until_done(state, f"http://127.0.0.1:{proxy.port}")
        finally:
            proxy.stop()
        assert proxy.cuts > 3
    hq.close()
    _assert_exactly_once(db_url, *tills)


def test_hq_killed_mid_ingest_and_restarted(tmp_path: Path, db_url: str) -> None:
    hq = open_store(db_url)
    state = make_till(tmp_path, "till")
    server = start_hq(db_url, tmp_path / "hq.log", workers=2)
    try:
        register_till(server, hq, state)
        _fill(state, 400)
        total = len(entries_of(state))
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["result"] = sync_till(state, server.url, policy=QUICK, batch_entries=10)
            except SyncError as error:
                outcome["error"] = error.code

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while hq_count(hq)[0] < total // 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()
        worker.join(timeout=60)
        held = hq_count(hq)[0]
        assert 0 < held < total, "the kill should land mid-ingest"
        assert outcome.get("error") == "hq_unreachable"
        server = start_hq(db_url, tmp_path / "hq.log", port=server.port, workers=2)
        _sync_until_done(state, server.url)
    finally:
        server.stop()
        hq.close()
    _assert_exactly_once(db_url, state)


def test_a_batch_that_overtakes_the_one_before_is_sent_again(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two batches are on the wire at once; hold the first back so that HQ sees the
    # second first and answers it with the sequence it expects.
    from sync import till_sync

    hq = open_store(db_url)
    state = make_till(tmp_path, "till")
    answers: list[tuple[int, int]] = []
    send = till_sync._Senders._send

    def first_one_late(self: till_sync._Senders, target: str, batch: till_sync._Upload) -> Reply:
        if batch.first_seq == 1:
            time.sleep(0.6)
        reply = send(self, target, batch)
        answers.append((batch.first_seq, reply.status))
        return reply

    monkeypatch.setattr(till_sync._Senders, "_send", first_one_late)
    with running_hq(db_url, tmp_path / "hq.log", workers=2) as server:
        register_till(server, hq, state)
        _fill(state, 60)
        result = sync_till(state, batch_entries=20)
    hq.close()
    total = len(entries_of(state))
    assert result["acked_seq"] == total and result["uploaded"] == total
    assert answers[0] == (21, 409) and (1, 200) in answers and (21, 200) in answers
    _assert_exactly_once(db_url, state)
