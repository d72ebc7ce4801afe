"""Hostile input at HQ over real HTTP on loopback, on both backends (issue #12).

- Entries a till's key signed but no till could have recorded (an adjustment of
  10^12 points, an earn far beyond the rules' best rate) are stored and raise an
  ``implausible_entry`` alert naming the device, the sequence and why.
- Lone surrogates, integers beyond 64 bits, deep nesting and bodies that are not
  objects get a 4xx with a stable code on every endpoint, never a 500, and
  nothing is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from agent.chain import Entry, sign_draft
from agent.keys import read_private_key
from agent.ledger import Ledger
from sync.client import HQClient, Signer
from sync.errors import SyncError
from sync.hq.db import HQStore
from sync.hq.devices import add_device
from sync.hq.stores import open_store
from sync.till_register import registration_request, transport_key
from sync.wire import decode_json
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


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[HQServer, HQStore]]:
    store = open_store(db_url)
    with running_hq(db_url, tmp_path / "hq.log") as server:
        yield server, store
    store.close()


def _tables(hq: HQStore) -> dict[str, int]:
    counts = {}
    with hq.read() as tx:
        for table in ("tokens", "devices", "entries", "batches", "alerts", "hq_meta"):
            row = tx.one(f"SELECT COUNT(*) FROM {table}")
            counts[table] = int(row[0]) if row else 0
    return counts


def _alerts(server: HQServer, kind: str) -> list[dict[str, Any]]:
    code, found = cli(None, "hq", "alerts", "--db", server.db_url)
    assert code == 0, found
    return [alert for alert in found["alerts"] if alert["kind"] == kind]


def _no_server_errors(server: HQServer) -> None:
    assert '"status": 500' not in server.log.read_text()


class Forger:
    """A thief with one till's disk: its journal key and its transport key."""

    def __init__(self, server: HQServer, state: Path) -> None:
        self.state = state
        self.key = read_private_key(state / "device.key")
        self.device = entries_of(state)[0].device
        self.client = HQClient(server.url, signer=Signer(self.device, transport_key(state)))

    def entries(self, kind: str, body: dict[str, Any]) -> list[Entry]:
        """The till's journal, and one more entry of the forger's choosing, signed
        and chained like any other."""
        held = entries_of(self.state)
        last = held[-1]
        draft = Entry(self.device, last.seq + 1, last.ts, kind, "c1", body, last.hash, "", "")
        return [*held, sign_draft(self.key, draft)[0]]

    def upload(self, entries: list[Entry]) -> tuple[int, dict[str, Any]]:
        document = {"device": self.device, "entries": [entry.to_json() for entry in entries]}
        reply = self.client.call(
            "POST", f"/v1/devices/{self.device}/batches", json.dumps(document).encode(), {}
        )
        return reply.status, reply.body

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def forger(tmp_path: Path, served: tuple[HQServer, HQStore]) -> Iterator[tuple[Forger, str]]:
    server, hq = served
    state = make_till(tmp_path, "stolen")
    register_till(server, hq, state)
    ledger = Ledger(state)
    member = ledger.enrol(name="Eve", phone="0698765432").member_id
    ledger.close()
    thief = Forger(server, state)
    yield thief, member
    thief.close()


def _effects(points: int) -> dict[str, int]:
    return {"delta": points, "expired": 0}


# -- item 3: signed but implausible ------------------------------------------------------


def test_a_signed_adjustment_of_a_trillion_points_is_stored_and_alerted(
    served: tuple[HQServer, HQStore], forger: tuple[Forger, str]
) -> None:
    server, hq = served
    thief, member = forger
    body = {"account": member, "member_id": member, "points": 10**12, "reason": "x"}
    entries = thief.entries("adjust", {**body, "effects": _effects(10**12)})
    status, ack = thief.upload(entries)
    assert status == 200, ack
    assert hq_count(hq, thief.device) == (len(entries), len(entries))
    found = _alerts(server, "implausible_entry")
    assert [(a["device"], a["seq"], a["entry_kind"]) for a in found] == [
        (thief.device, entries[-1].seq, "adjust")
    ]
    assert found[0]["points"] == 10**12 and "adjustment" in found[0]["reason"]
    # A retried upload adds neither entries nor alerts.
    assert thief.upload(entries)[0] == 200
    assert len(_alerts(server, "implausible_entry")) == 1
    _no_server_errors(server)


def test_an_earn_beyond_the_best_rate_is_alerted_and_honest_traffic_is_not(
    served: tuple[HQServer, HQStore], forger: tuple[Forger, str]
) -> None:
    server, _hq = served
    thief, member = forger
    # An honest till's busiest day: fresh food, on a promotion day, no alert.
    ledger = Ledger(thief.state)
    from agent.fields import Line

    for number in range(3):
        ledger.earn(member, f"OK{number}", lines=(Line("fresh", 2, 123_45), Line("goods", 1, 5)))
    ledger.adjust(member, "-50", "correction", "sup1")
    ledger.close()
    assert cli(thief.state, "sync")[0] == 0
    assert _alerts(server, "implausible_entry") == []
    # 1.00 of sale cannot earn 10,000 points under any rule of the chain.
    body = {"account": member, "member_id": member, "amount": 100, "points": 10_000}
    body |= {"lines": [{"category": "goods", "qty": 1, "amount": 100, "points": 10_000}]}
    entries = thief.entries("earn", {**body, "effects": _effects(10_000)})
    assert thief.upload(entries)[0] == 200
    (alert,) = _alerts(server, "implausible_entry")
    assert (alert["seq"], alert["entry_kind"], alert["points"]) == (entries[-1].seq, "earn", 10_000)
    assert "12 points per 1.00" in alert["reason"]


def test_limits_are_configured_at_hq(
    served: tuple[HQServer, HQStore], forger: tuple[Forger, str]
) -> None:
    server, _hq = served
    thief, member = forger
    code, shown = cli(None, "hq", "limits", "--db", server.db_url)
    assert (code, shown) == (
        0,
        {
            "limit_adjust_points": 100_000,
            "limit_entry_points": 1_000_000,
            "limit_earn_points_per_unit": "12",
        },
    )
    code, shown = cli(
        None, "hq", "limits", "--db", server.db_url, "--adjust-points", "40", "--earn-rate", "2.5"
    )
    assert code == 0 and shown["limit_adjust_points"] == 40
    assert shown["limit_earn_points_per_unit"] == "2.5"
    for bad in (("--adjust-points", "-1"), ("--earn-rate", "1e3"), ("--entry-points", "0")):
        code, answer = cli(None, "hq", "limits", "--db", server.db_url, *bad)
        assert (code, answer["error"]) == (2, "invalid_limit")
    ledger = Ledger(thief.state)
    ledger.adjust(member, "50", "goodwill", "sup1")  # honest, but over the new limit
    ledger.close()
    assert cli(thief.state, "sync")[0] == 0
    (alert,) = _alerts(server, "implausible_entry")
    assert alert["points"] == 50 and "limit of 40" in alert["reason"]
    # A limit edited by hand into nonsense counts as unset; uploads go on.
    with _hq.write() as tx:
        tx.run("UPDATE hq_meta SET value = 'lots' WHERE key = 'limit_adjust_points'")
    assert cli(None, "hq", "limits", "--db", server.db_url)[1]["limit_adjust_points"] == 100_000
    ledger = Ledger(thief.state)
    ledger.adjust(member, "60", "goodwill", "sup1")
    ledger.close()
    assert cli(thief.state, "sync")[0] == 0
    assert len(_alerts(server, "implausible_entry")) == 1


# -- item 4: 4xx, never a 500, nothing written -------------------------------------------


def test_a_registration_with_a_lone_surrogate_is_refused_and_writes_nothing(
    tmp_path: Path, served: tuple[HQServer, HQStore]
) -> None:
    server, hq = served
    state = make_till(tmp_path, "new")
    ledger = Ledger(state)
    device, store_id, till = ledger.device_id, ledger.store_id, ledger.till_id
    ledger.close()
    token = add_device(hq, store_id, till, utc_now())["token"]
    request = registration_request(state, token, device, store_id, till)
    before = _tables(hq)
    for field in request:
        for text in ("\ud800", "tp_\udfff", "\ud800\ud800"):
            reply = requests.post(
                f"{server.url}/v1/register", data=json.dumps({**request, field: text}), timeout=10
            )
            assert (reply.status_code, reply.json()["error"]) == (400, "invalid_text"), field
    assert _tables(hq) == before
    # The token was not spent: the till registers with it as it should.
    assert requests.post(f"{server.url}/v1/register", json=request, timeout=10).status_code == 200
    _no_server_errors(server)


def test_a_signed_entry_with_an_integer_over_64_bits_is_refused_whole(
    served: tuple[HQServer, HQStore], forger: tuple[Forger, str]
) -> None:
    server, hq = served
    thief, member = forger
    before = _tables(hq)
    for points in (2**63, -(2**63) - 1, 10**40):
        body = {"account": member, "member_id": member, "points": points, "reason": "x"}
        status, answer = thief.upload(thief.entries("adjust", {**body, "effects": _effects(5)}))
        assert (status, answer["error"]) == (400, "integer_out_of_range")
    after = _tables(hq)
    assert after["entries"] == before["entries"] == 0
    assert after["alerts"] == before["alerts"] + 1  # refused, and reported once
    (alert,) = _alerts(server, "implausible_entry")
    assert alert["device"] == thief.device and "64 bits" in alert["reason"]
    # The largest 64-bit integers are stored as they are.
    body = {"account": member, "member_id": member, "points": 2**63 - 1, "reason": "x"}
    entries = thief.entries("adjust", {**body, "effects": _effects(5)})
    assert thief.upload(entries)[0] == 200
    _no_server_errors(server)


def _hostile_bodies(valid: dict[str, Any]) -> list[tuple[bytes, int, set[str]]]:
    """(body, status, acceptable codes): every way of being wrong we know of."""
    surrogate = {**valid, next(iter(valid)): "\ud800"}
    as_text = json.dumps(valid)
    return [
        (json.dumps(surrogate).encode(), 400, {"invalid_text"}),
        (json.dumps({"\udfff": "x", **valid}).encode(), 400, {"invalid_text"}),
        (
            as_text.replace("{", '{"n": 18446744073709551616, ', 1).encode(),
            400,
            {"integer_out_of_range"},
        ),
        (
            as_text.replace("{", '{"n": -9' + "9" * 5000 + ", ", 1).encode(),
            400,
            {"integer_out_of_range"},
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, {"malformed_json"}),
        (b'{"a": ' * 900 + b"1" + b"}" * 900, 400, {"*"}),
        (b"[" * 900 + b"]" * 900, 400, {"*"}),
        (b"[]", 400, {"*"}),
        (b'"text"', 400, {"*"}),
        (b"null", 400, {"*"}),
        (b"12", 400, {"*"}),
        (b"1e400", 400, {"*"}),
        (b'{"a": NaN}', 400, {"malformed_json"}),
        (b'{"a": "\xed\xa0\x80"}', 400, {"malformed_json"}),  # a surrogate in raw UTF-8
        (b"\xff\xfe", 400, {"malformed_json"}),
        (b"", 400, {"malformed_json"}),
    ]


def test_every_endpoint_answers_hostile_bodies_with_a_4xx(
    served: tuple[HQServer, HQStore], forger: tuple[Forger, str]
) -> None:
    server, hq = served
    thief, _member = forger
    assert cli(thief.state, "sync")[0] == 0
    before = _tables(hq)
    batch = {"device": thief.device, "entries": [e.to_json() for e in entries_of(thief.state)]}
    posts = {
        "/v1/register": {"token": "tp_x", "device": thief.device, "store": "S", "till": "T"},
        f"/v1/devices/{thief.device}/batches": batch,
        "/v1/reports/login": {"token": "tp_operator"},
    }
    for path, valid in posts.items():
        for body, status, codes in _hostile_bodies(valid):
            if path.endswith("/batches"):
                reply = thief.client.call("POST", path, body, {})
                got, answer = reply.status, reply.body
            else:
                sent = requests.post(
                    server.url + path,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                    allow_redirects=False,
                )
                got, answer = sent.status_code, sent.json()
            # A report sign-in without a usable token is 401, like any other.
            expected = {status, 401} if path.endswith("/login") else {status}
            assert got in expected, (path, body[:60], got, answer)
            assert codes == {"*"} or got == 401 or answer["error"] in codes, (path, answer)
    gets = [
        f"/v1/devices/{thief.device}/delta?cursor=%ED%A0%80",
        f"/v1/devices/{thief.device}/delta?cursor=" + "9" * 40,
        f"/v1/devices/{thief.device}/delta?cursor=-1",
        "/v1/devices/%ED%A0%80/head",
        "/v1/devices/%ED%A0%80/delta",
        "/v1/reports/%ED%A0%80",
        "/v1/reports?from=%ED%A0%80",
    ]
    for target in gets:
        reply = thief.client.call("GET", target, b"", {})
        assert 400 <= reply.status < 500, (target, reply.status, reply.body)
        assert isinstance(reply.body, dict) and reply.body.get("error"), target
    after = _tables(hq)
    # Only the refused-upload alert of the huge integer: nothing else is written.
    assert after == {**before, "alerts": before["alerts"] + 1}
    _no_server_errors(server)


# -- the wire check itself, for any JSON value ---------------------------------------------

# Text with lone surrogates, a pair as two escapes, an escaped backslash before "u".
_PIECES = st.characters(exclude_categories=["Cs"]) | st.sampled_from(
    ["\ud800", "\udfff", "\U0001f600", "\\ud800"]
)
_TEXT = st.lists(_PIECES, max_size=6).map("".join)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _lone(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, dict):
        return any(_lone(key) or _lone(item) for key, item in value.items())
    return isinstance(value, list) and any(_lone(item) for item in value)


def _wide(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return any(_wide(item) for item in value.values())
    return isinstance(value, list) and any(_wide(item) for item in value)


@given(_JSON, st.booleans(), st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", "\t:\r")]))
def test_decode_json_refuses_exactly_what_hq_cannot_store(
    value: Any, ascii_only: bool, separators: tuple[str, str]
) -> None:
    text_of = json.dumps(value, ensure_ascii=ascii_only, separators=separators)
    body = text_of.encode("utf-8", "surrogatepass")
    try:
        # What the standard parser makes of it (an escaped pair is one character).
        text: str | None = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None  # a surrogate unescaped is not UTF-8 at all
    expected = json.loads(text) if text is not None else None
    try:
        decoded = decode_json(body, None)
    except SyncError as error:
        assert error.http_status == 400
        if text is None:
            assert error.code in ("malformed_json", "integer_out_of_range")
        elif error.code == "integer_out_of_range":
            assert _wide(expected)
        else:
            assert (error.code, _wide(expected), _lone(expected)) == ("invalid_text", False, True)
        return
    assert decoded == expected
    assert text is not None and not _lone(expected) and not _wide(expected)
