"""Typed journal entries (agent.entries): every kind's body reads back to the very
keys and values it was written with, so the bytes a till signed stay the bytes signed."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import typing
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import canonical, sign_entry
from agent.entries import (
    BODIES,
    OMITTED,
    Body,
    Enrol,
    Kind,
    MalformedEntry,
    Part,
    _Refused,
    kind_of,
    read_body,
    readable,
)
from agent.errors import LedgerError
from agent.fields import Line
from agent.ledger import Ledger
from agent.projection import apply
from agent.rotation import rotate_device_key
from tests.conftest import Clock

CARD_A = "9900835840532866"
CARD_B = "9900568732746027"

_TEXT = st.text(max_size=12)
_INT = st.integers(min_value=-(2**53), max_value=2**53)
_JSON = st.recursive(
    st.none() | st.booleans() | _INT | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's annotation, as ``agent.entries`` reads them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return _INT
    if hint is str:
        return _TEXT
    if origin is tuple:
        return st.lists(_values(args[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(_TEXT, _INT if args[1] is int else _JSON, max_size=3)
    if args and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return st.none() | _values(inner)
    return _instances(hint)


def _instances(cls: type[Part]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls,
        **{item.name: _values(hints[item.name]) for item in dataclasses.fields(cls)},  # type: ignore[arg-type]
    )


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(BODIES)).flatmap(lambda kind: _instances(BODIES[kind])))
def test_every_body_reads_back_as_written(body: Body) -> None:
    written = body.to_body()
    # The generated writer against the field loop it unrolls: the same keys, in order.
    assert list(written.items()) == list(body._loop_to_body().items())
    assert type(body).from_body(written) == body
    assert read_body(body.kind, json.loads(canonical(written))) == body
    # What is signed: the canonical bytes of the body read back are the bytes written.
    assert canonical(read_body(body.kind, written).to_body()) == canonical(written)


def test_every_kind_has_one_body() -> None:
    assert set(BODIES) == set(Kind)
    assert all(BODIES[kind].kind is kind for kind in Kind)
    assert kind_of("earn") is Kind.EARN and kind_of("bonus") is None


def _journal(ledger: Ledger, clock: Clock) -> list[tuple[int, str, str]]:
    """A journal with an entry of every kind, written by the real ledger."""
    member = ledger.enrol(name="Ana", phone="5550001", card=CARD_A).member_id
    ledger.enrol(name="Bo", phone="5550002", birthday="1990-05-01", household=3)
    with ledger.store.transaction() as conn:
        conn.execute(
            "INSERT INTO hq_offers VALUES ('X2', ?, 'spring', 'multiplier', '2', 'Double', ?, ?)",
            (member, clock.now.date().isoformat(), clock.now.date().isoformat()),
        )
    ledger.earn(CARD_A, "R1", lines=(Line("grocery", 2, 10000), Line("wine", 1, 2500)))
    ledger.earn(CARD_B, "R2", amount=4000)  # a card not enrolled here: its own account
    ledger.take_offer(CARD_A, "X2", "R1")
    ledger.adjust(CARD_A, "-5", "goodwill", staff="S9")
    ledger.redeem(CARD_A, "R3", 100)
    ledger.refund("R1", (Line("grocery", 1, 5000),))
    ledger.refund("R3")
    ledger.card_replace(member, "9900390788616925", staff="S9")
    with ledger.store.transaction() as conn:
        conn.execute(
            "INSERT INTO hq_suggestions VALUES ('S1', ?, 'birthday', 'Birthday soon', '', "
            "'S001', '', ?, ?, 1)",
            (member, clock.now.date().isoformat(), clock.now.date().isoformat()),
        )
    ledger.record_suggestion(member, "S1", "later", staff="S9")
    ledger.consent(member, marketing=False, staff="S9")
    rotate_device_key(ledger.state_dir)
    rows = ledger.store.conn.execute("SELECT seq, kind, body FROM journal ORDER BY seq")
    return [(int(seq), str(kind), str(body)) for seq, kind, body in rows]


def test_a_real_journal_reads_back_to_its_signed_bytes(ledger: Ledger, clock: Clock) -> None:
    journal = _journal(ledger, clock)
    assert {kind for _, kind, _ in journal} == set(Kind)
    for seq, kind, text in journal:
        body = read_body(Kind(kind), json.loads(text), seq)
        # The journal stores the very bytes it signed (agent.ledger._append).
        assert canonical(body.to_body()).decode() == text, (seq, kind)
    from agent.audit import verify_ledger

    assert verify_ledger(ledger).ok


# An enrolment as tills wrote it before issue 12 (the number's last four digits) and
# a refund with an offer's bonus: bodies of today's code can be of these shapes too.
GOLDEN = {
    Kind.ENROL: (
        '{"bonus":0,"card":"9900835840532866","card_kind":"physical","day":"2025-01-02",'
        '"effects":{"delta":0,"expired":0},"member":{"birthday":null,"consent_marketing":0,'
        '"district":null,"enrolled_at":"2025-01-02T10:00:00+08:00","enrolled_by":null,'
        '"enrolled_store":"S001","enrolled_till":"T01","gender":null,"household":null,'
        '"member_id":"0123456789ab-1","name":"Ana","phone_key":"k1","phone_last4":"8000"},'
        '"result":{"balance":0,"card":"9900835840532866","card_kind":"physical",'
        '"member_id":"0123456789ab-1"}}'
    ),
    Kind.REFUND: (
        '{"account":"0123456789ab-1","amount":5000,"bonus_taken":50,"day":"2025-01-03",'
        '"effects":{"delta":-100,"expired":0},"lines":[{"amount":5000,"line_no":0,'
        '"points":50,"qty":1}],"member_id":"0123456789ab-1","receipt":"R1","returned":0,'
        '"taken":100}'
    ),
}


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_golden_bodies_keep_their_bytes(kind: Kind) -> None:
    text = GOLDEN[kind]
    assert canonical(read_body(kind, json.loads(text)).to_body()).decode() == text


def _earn_body() -> dict[str, Any]:
    return {
        "account": "0123456789ab-1",
        "member_id": "0123456789ab-1",
        "card": None,
        "receipt": "R1",
        "fingerprint": "f",
        "lines": [{"category": "grocery", "qty": 1, "amount": 100, "points": 1}],
        "amount": 100,
        "points": 1,
        "tier": "base",
        "day": "2025-01-02",
        "lot": {"spendable_on": "2025-01-09", "expires_on": "2026-01-02"},
    }


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda b: b.pop("receipt"), "missing key 'receipt'"),
        (lambda b: b.update(extra=1), "unknown key 'extra'"),
        (lambda b: b.update(amount="1.00"), "earn body.amount: not an integer"),
        (lambda b: b.update(points=True), "earn body.points: not an integer"),
        (lambda b: b.update(amount=1.5), "earn body.amount: not an integer"),
        (lambda b: b["lines"][0].pop("qty"), "earn body.lines[0]: missing key 'qty'"),
        (lambda b: b.update(lot=None), "earn body.lot: not a JSON object"),
        (lambda b: b.update(effects={"delta": "1"}), "earn body.effects: a value is not"),
        (lambda b: b.update(result=None), "earn body.result: null where the key is left out"),
        (lambda b: b.update(card=5), "earn body.card: not text"),
    ],
)
def test_a_malformed_body_is_refused_by_name(change: Any, named: str) -> None:
    body = _earn_body()
    assert read_body(Kind.EARN, body).to_body() == body
    change(body)
    with pytest.raises(MalformedEntry) as caught:
        read_body(Kind.EARN, body)
    assert caught.value.code == "malformed_entry"
    assert named in caught.value.message
    assert readable("earn", body) is None


def test_the_projection_refuses_unknown_kinds_and_malformed_bodies() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(LedgerError) as unknown:
        apply(conn, 7, "bonus", {})
    assert unknown.value.code == "unknown_entry_kind"
    assert "journal entry 7: unknown kind 'bonus'" in unknown.value.message
    with pytest.raises(MalformedEntry) as malformed:
        apply(conn, 8, "earn", {**_earn_body(), "amount": "many"})
    assert malformed.value.message == "journal entry 8: earn body.amount: not an integer"


def test_an_omitted_key_is_absent_not_null(ledger: Ledger) -> None:
    init = next(e for e in ledger.entries() if e.kind == Kind.INIT)
    assert init.body.keys() == {"store", "till", "device_id", "public_key", "effects"}
    ledger.enrol(name="Ana", phone="5550001", card=CARD_A)
    written = next(e for e in ledger.entries() if e.kind == Kind.ENROL).body
    body = Enrol.from_body(written)
    assert body.member.phone_last4 is None and "phone_last4" not in written["member"]
    fields = {item.name: item.metadata == OMITTED for item in dataclasses.fields(Enrol)}
    assert fields["lot"] and fields["effects"] and not fields["card"]


def _verdict(read: Any, body: Any) -> Any:
    try:
        return read(body)
    except MalformedEntry:
        return "refused"


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(BODIES)).flatmap(
        lambda kind: st.tuples(_instances(BODIES[kind]), _JSON, st.integers(0, 40), st.booleans())
    )
)
def test_the_compiled_reader_and_the_checked_reader_agree(case: Any) -> None:
    """``from_body``'s fast path is checked against the annotation walk it stands in
    for: on a body written by a till and on that body with one value replaced by
    any JSON (or one key removed), both read the same or both refuse."""
    body, junk, pick, remove = case
    written = json.loads(canonical(body.to_body()))
    places: list[tuple[dict[str, Any], str]] = []
    pending = [written]
    while pending:
        item = pending.pop()
        for key, value in item.items():
            places.append((item, key))
            for nested in value if isinstance(value, list) else [value]:
                if isinstance(nested, dict) and key not in {"effects", "result"}:
                    pending.append(nested)
    cls = type(body)
    assert cls._fast_from_body(written) == body
    holder, key = places[pick % len(places)]
    if remove:
        del holder[key]
    else:
        holder[key] = junk
    fast = _verdict(lambda b: cls.from_body(b), written)
    checked = _verdict(lambda b: cls._checked_from_body(b, "body"), written)
    assert fast == checked
    # The generated reader (one function per class) against the field loop it
    # unrolls: the same part, its __dict__ in the same order, or both refuse.
    generated, looped = (
        _unrolled(cls._fast_from_body, written),
        _unrolled(cls._loop_from_body, written),
    )
    assert generated == looped
    if generated != "refused":
        assert list(vars(cls._fast_from_body(written))) == list(vars(cls._loop_from_body(written)))


def _unrolled(read: Any, body: Any) -> Any:
    try:
        return read(body)
    except _Refused:
        return "refused"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(BODIES)).flatmap(lambda kind: _instances(BODIES[kind])),
    st.dictionaries(st.text(max_size=4), _JSON, max_size=3),
    st.lists(_JSON, max_size=3),
    st.sampled_from(["effects", "items", "both"]),
)
def test_the_compiled_reader_checks_inside_dicts_of_ints_and_lists_of_parts(
    body: Body, effects: dict[str, Any], items: list[Any], where: str
) -> None:
    """The generated reader checks a dict of ints (``effects``) and reads a list of
    parts (an earn's or a refund's ``lines``, a part's reader called directly)
    inline: with any JSON inside them, it reads what the field loop reads, and
    ``from_body`` what the checked reader reads, or all refuse."""
    written = json.loads(canonical(body.to_body()))
    if where in ("effects", "both"):
        written["effects"] = effects
    if where in ("items", "both") and "lines" in written:
        written["lines"] = [*written["lines"], *items]
    cls = type(body)
    assert _unrolled(cls._fast_from_body, written) == _unrolled(cls._loop_from_body, written)
    fast = _verdict(lambda b: cls.from_body(b), written)
    assert fast == _verdict(lambda b: cls._checked_from_body(b, "body"), written)


_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(BODIES)).flatmap(lambda kind: _instances(BODIES[kind])))
def test_a_typed_body_signs_the_same_without_the_float_walk(body: Body) -> None:
    """``sign_entry(typed=True)`` (the simulated till) skips only the walk that
    refuses floats: the same entry, byte for byte (Ed25519 is deterministic)."""
    fields = {"device": "d", "seq": 3, "ts": "2025-01-01T10:00:00.000+00:00", "staff": None}
    walked = sign_entry(_SIGNER, kind=body.kind, body=body.to_body(), prev="0" * 64, **fields)
    typed = sign_entry(
        _SIGNER, kind=body.kind, body=body.to_body(), prev="0" * 64, typed=True, **fields
    )
    assert typed == walked
    with pytest.raises(TypeError):
        sign_entry(_SIGNER, kind=body.kind, body={"x": 1.5}, prev="0" * 64, **fields)


def _readable_by_kind(kind: str, body: Any) -> Body | None:
    """``readable`` as it was before its fast path: the ``Kind`` looked up, then
    ``read_body`` (compiled reader, annotation walk on a refusal)."""
    known = kind_of(kind)
    if known is None:
        return None
    try:
        return read_body(known, body)
    except MalformedEntry:
        return None


@given(
    st.sampled_from([*sorted(BODIES), "bonus", "Earn", ""]).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            _instances(BODIES[Kind(kind)]) if kind in set(BODIES) else st.just(None),
            _JSON,
            st.integers(0, 40),
            st.sampled_from(["keep", "replace", "remove"]),
        )
    )
)
def test_readable_agrees_with_the_kind_lookup_and_read_body(case: Any) -> None:
    """``readable`` goes straight to a kind's compiled reader (HQ reads every ingested
    entry through it): the same typed body, or None, as the ``Kind`` lookup and
    ``read_body`` give, on a till's body, that body with one top-level value
    replaced by any JSON or removed, any JSON at all, and unknown kinds."""
    kind, body, junk, pick, change = case
    written: Any = junk if body is None else json.loads(canonical(body.to_body()))
    if isinstance(written, dict) and written and change != "keep":
        key = sorted(written)[pick % len(written)]
        if change == "remove":
            del written[key]
        else:
            written[key] = junk
    assert readable(kind, written) == _readable_by_kind(kind, written)
    assert readable(Kind(kind) if kind in set(BODIES) else kind, written) == readable(kind, written)
