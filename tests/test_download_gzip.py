"""The download travels gzipped, and a till reads a bounded answer (issue 15's cost:
the last page carries the chain's suggestions and their offers to every till)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from agent.ledger import Ledger
from agent.suggestions import suggestions_for
from sync import client as sync_client
from sync.client import HQClient, Signer
from sync.errors import SyncError
from sync.till_register import transport_key
from sync.wire import accepts_gzip
from tests.sync_helpers import cli, entries_of, two_stores


@pytest.mark.parametrize(
    ("header", "takes"),
    [
        ("gzip, deflate", True),
        ("deflate, gzip;q=0.5", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("br, deflate", False),
        ("", False),
        (None, False),
        ("identity", False),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(header: str | None, takes: bool) -> None:
    assert accepts_gzip(header) is takes


def _birthday(days: int) -> str:
    soon = dt.date.today() + dt.timedelta(days=days)
    return f"1990-{soon.month:02d}-{min(soon.day, 28):02d}"


def test_the_last_page_is_gzipped_for_a_till_and_applies_the_same(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hq.db'}"
    with two_stores(tmp_path, url, tmp_path / "hq.log") as (server, _, home, away):
        ledger = Ledger(home)
        try:
            members = [
                ledger.enrol(
                    name=f"Member {n}",
                    phone=f"0612{n:06d}",
                    birthday=_birthday(3),
                    consent_marketing=True,
                ).member_id
                for n in range(60)
            ]
        finally:
            ledger.close()
        for state in (home, away):
            assert cli(state, "sync")[0] == 0
        device = entries_of(away)[0].device
        target = f"/v1/devices/{device}/delta?cursor=0"
        client = HQClient(server.url, signer=Signer(device, transport_key(away)))
        try:
            sizes = {}
            for accept in ("gzip", "identity"):
                client.session.headers["Accept-Encoding"] = accept
                reply = client.get(target)
                page = reply.body["document"]
                assert reply.status == 200 and not page["more"]
                assert len(page["suggestions"]) == len(members)
                sizes[accept] = {**page, "hq_time": None}
            assert sizes["gzip"] == sizes["identity"]
        finally:
            client.close()
        raw = requests.get(
            server.url + target,
            headers={"Accept-Encoding": "gzip", **_signature(client, target)},
            stream=True,
            timeout=30,
        )
        on_wire = raw.raw.read()
        assert raw.headers["Content-Encoding"] == "gzip"
        plain = json.dumps(sizes["identity"]).encode()
        assert len(on_wire) * 5 < len(plain)  # 13 times smaller here: 3.8 kB for 50 kB
        ledger = Ledger(away)
        try:
            with ledger.store.transaction() as conn:
                shown = suggestions_for(conn, members[0], dt.date.today())
            assert [item.reason for item in shown] == ["birthday"]
        finally:
            ledger.close()


def _signature(client: HQClient, target: str) -> dict[str, str]:
    from sync.protocol import sign_request

    assert client.signer is not None
    return sign_request(client.signer.key, client.signer.device, "GET", target, b"", client.clock())


@contextlib.contextmanager
def _serving(body: bytes, headers: dict[str, str]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_gzip_bomb_from_the_network_is_refused_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few kB of gzip that inflate past the limit: refused with its own code, not
    retried, and never held whole."""
    monkeypatch.setattr(sync_client, "MAX_REPLY_BYTES", 1024 * 1024)
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with _serving(bomb, headers) as url:
        client = HQClient(url)
        try:
            with pytest.raises(SyncError) as caught:
                client.get("/v1/health")
        finally:
            client.close()
    assert caught.value.code == "reply_too_large"


def test_a_plain_answer_under_the_limit_reads_as_before() -> None:
    body = json.dumps({"ok": True, "pad": "x" * 100_000}).encode()
    with _serving(body, {"Content-Type": "application/json"}) as url:
        client = HQClient(url)
        try:
            reply = client.get("/v1/health")
        finally:
            client.close()
    assert reply.status == 200 and reply.body["ok"] is True
