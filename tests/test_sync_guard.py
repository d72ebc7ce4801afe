"""Issue #12, the uploader's side: a journal with a hole or a cut tail, an HQ that
keeps asking for the same place, and a cloned till that must tell HQ about
itself. Real `tillpoints sync` processes, real HTTP on loopback, real SQLite."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import Ledger
from sync.client import HQClient, Signer
from sync.hq.db import HQStore
from sync.hq.devices import hq_key
from sync.hq.ingest import signed_head
from sync.till_register import transport_key
from tests import sync_helpers
from tests.sync_helpers import (
    HQServer,
    cli,
    entries_of,
    hq_count,
    make_till,
    register_till,
    running_hq,
    utc_now,
)

db_url = sync_helpers.db_url
hq_store = sync_helpers.hq_store
pg_database = sync_helpers.pg_database

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[1]


def _earn(state: Path, times: int, member: str | None = None) -> str:
    ledger = Ledger(state)
    try:
        if member is None:
            member = ledger.enrol(name="Di", phone=f"06{abs(hash(state)) % 10**8:08d}").member_id
        for number in range(times):
            ledger.earn(member, f"G{len(list(ledger.entries()))}-{number}", amount=1500)
        return member
    finally:
        ledger.close()


def _sync_process(state: Path, *extra: str, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """`tillpoints sync` as its own process, killed (and the test failed) if it
    does not end within ``timeout``: a run that never ends is the attack."""
    command = [sys.executable, "-m", "tillpoints.cli", "--state", str(state), "--config", "/x"]
    done = subprocess.run(
        [*command, "sync", *extra, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def _batch_requests(log: Path) -> int:
    count = 0
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("path", "").endswith("/batches"):
            count += 1
    return count


def _delete(state: Path, where: str) -> None:
    conn = sqlite3.connect(state / "ledger.db")
    with conn:
        conn.execute(f"DELETE FROM journal WHERE {where}")
    conn.close()


@contextlib.contextmanager
def _synced(
    tmp_path: Path, db_url: str, hq: HQStore, more: int
) -> Iterator[tuple[HQServer, Path, int]]:
    """A served HQ and a till it acknowledged, with ``more`` entries unsynced;
    yields the server, the till, and HQ's acknowledged head."""
    state = make_till(tmp_path, "till")
    with running_hq(db_url, tmp_path / "hq.log") as server:
        register_till(server, hq, state)
        member = _earn(state, 2)
        assert cli(state, "sync")[0] == 0
        acked = len(entries_of(state))
        _earn(state, more, member)
        yield server, state, acked


def test_a_hole_after_the_acknowledged_head_stops_the_run(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    hq = hq_store
    with _synced(tmp_path, db_url, hq, 5) as (server, state, acked):
        _delete(state, f"seq = {acked + 1}")  # the entry just after HQ's head
        before = _batch_requests(server.log)
        code, answer = _sync_process(state, timeout=60)
        assert (code, answer["error"]) == (4, "chain_broken"), answer
        assert f"entry {acked + 1}" in answer["message"]
        assert _batch_requests(server.log) == before  # refused before uploading
        assert hq_count(hq)[0] == acked


def test_a_tail_cut_below_the_recorded_head_is_refused(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    hq = hq_store
    with _synced(tmp_path, db_url, hq, 4) as (_server, state, acked):
        _delete(state, f"seq > {acked + 1}")  # one entry left of four
        code, answer = _sync_process(state)
        assert (code, answer["error"]) == (4, "chain_broken"), answer
        assert "truncated" in answer["message"]
        assert hq_count(hq)[0] == acked  # nothing was uploaded as if all were well
        _delete(state, f"seq > {acked}")  # nothing left above HQ's head either
        code, answer = _sync_process(state)
        assert (code, answer["error"]) == (4, "chain_broken"), answer


class _StuckHQ:
    """An HQ that signs heads with the real HQ key but answers every upload with
    409 ``expected_seq`` at the same head, as a buggy or hostile HQ could."""

    def __init__(self, store: HQStore, device: str) -> None:
        key, posts = hq_key(store), [0]
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(200, signed_head(key, device, 0, "0" * 64, utc_now()))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts[0] += 1
                head = signed_head(key, device, 0, "0" * 64, utc_now())
                self._answer(
                    409,
                    {"error": "expected_seq", "message": "x", "expected_seq": 1, "head": head},
                )

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_resends_that_never_move_hqs_head_stop_the_run(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    hq = hq_store
    state = make_till(tmp_path, "till")
    with running_hq(db_url, tmp_path / "hq.log") as server:
        register_till(server, hq, state)
    _earn(state, 30)
    stuck = _StuckHQ(hq, entries_of(state)[0].device)
    try:
        code, answer = _sync_process(state, "--hq", stuck.url, timeout=60)
    finally:
        stuck.close()
    assert (code, answer["error"]) == (1, "sync_stalled"), answer
    assert "expected_seq" in answer["message"] or "head" in answer["message"]
    assert stuck.posts[0] <= 4  # one round, one resend, each of two batches at most


# -- a cloned till ------------------------------------------------------------------------


def _alerts(url: str) -> list[dict[str, Any]]:
    code, found = cli(None, "hq", "alerts", "--db", url)
    assert code == 0, found
    return list(found["alerts"])


def test_a_clone_tells_hq_which_freezes_the_device(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    hq = hq_store
    original = make_till(tmp_path, "till")
    with running_hq(db_url, tmp_path / "hq.log") as server:
        register_till(server, hq, original)
        member = _earn(original, 2)
        assert cli(original, "sync")[0] == 0
        clone = tmp_path / "clone"
        shutil.copytree(original, clone)
        device = entries_of(original)[0].device
        _earn(original, 2, member)
        assert cli(original, "sync")[0] == 0
        held = hq_count(hq, device)
        _earn(clone, 4, member)  # a second history, longer than HQ's
        assert not [a for a in _alerts(db_url) if a["kind"] == "fork"]
        code, answer = _sync_process(clone)
        assert (code, answer["error"]) == (3, "restored_from_backup"), answer
        assert answer["fork_reported"] is True and "froze the device" in answer["message"]
        forks = [a for a in _alerts(db_url) if a["kind"] == "fork"]
        assert [a["device"] for a in forks] == [device]
        assert hq_count(hq, device) == held  # nothing of the clone stored
        _earn(original, 1, member)
        code, answer = cli(original, "sync")  # the original is frozen too now
        assert (code, answer["error"]) == (3, "device_frozen"), answer


def test_a_clone_behind_hq_is_reported_and_a_false_report_is_refused(
    tmp_path: Path, db_url: str, hq_store: HQStore
) -> None:
    hq = hq_store
    original = make_till(tmp_path, "till")
    with running_hq(db_url, tmp_path / "hq.log") as server:
        register_till(server, hq, original)
        member = _earn(original, 2)
        device = entries_of(original)[0].device
        clone = tmp_path / "clone"
        shutil.copytree(original, clone)
        _earn(original, 3, member)
        assert cli(original, "sync")[0] == 0
        head = len(entries_of(original))
        head_hash = entries_of(original)[-1].hash
        client = HQClient(server.url, signer=Signer(device, transport_key(original)))
        target = f"/v1/devices/{device}/fork"
        try:
            # HQ checks a report against what it holds: the till's own head is no fork.
            reply = client.post(
                target, {"device": device, "seq": head, "hash": head_hash, "head_seq": head}
            )
            assert (reply.status, reply.body["error"]) == (422, "no_fork"), reply
            for bad in (
                {"device": device, "seq": head},
                {"device": device, "seq": 0, "hash": head_hash, "head_seq": 0},
                {"device": device, "seq": head + 1, "hash": head_hash, "head_seq": head + 1},
                {"device": "elsewhere", "seq": 1, "hash": head_hash, "head_seq": 1},
            ):
                reply = client.post(target, bad)
                assert reply.status in (400, 403, 422), (bad, reply)
            unsigned = HQClient(server.url).post(target, {"device": device})
            assert (unsigned.status, unsigned.body["error"]) == (401, "unauthenticated")
        finally:
            client.close()
        assert not [a for a in _alerts(db_url) if a["kind"] == "fork"]
        assert cli(original, "sync")[0] == 0  # not frozen by any of that
        code, answer = _sync_process(clone)  # behind HQ, same entries so far
        assert (code, answer["error"], answer["fork_reported"]) == (
            3,
            "restored_from_backup",
            True,
        ), answer
        forks = [a for a in _alerts(db_url) if a["kind"] == "fork"]
        assert [a["device"] for a in forks] == [device]
        assert "behind" in json.dumps(forks[0])
