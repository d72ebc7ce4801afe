"""HQ's one read of an uploaded body (``agent.chain.typed_digest``) against the
encoding it stands in for (``canonical_digest``, which walks every value for
floats) and the typed read it shares (``agent.entries.readable``): the same
digest and bytes, or the same refusal, and the same typed body."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import _TEXTS, Entry, canonical, canonical_digest, typed_digest
from agent.entries import (
    BODIES,
    Kind,
    Lot,
    Member,
    RefundLine,
    Refused,
    SaleLine,
    _text_reader_of,
    readable,
    text_reader,
)
from tests.test_entries import _JSON, _instances

_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
# JSON with floats, as an in-process caller (not the wire) could hand HQ.
_LOOSE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6) | _FLOATS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _entry(kind: str, body: Any) -> Entry:
    return Entry("d", 7, "2026-01-01T00:00:00.000+00:00", kind, None, body, "0" * 64, "", "")


def _outcome(encode: Any, entry: Entry) -> Any:
    try:
        return encode(entry)[:2]
    except (TypeError, ValueError) as error:
        return type(error)


_CASES = st.sampled_from([*sorted(BODIES), "bonus"]).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        _instances(BODIES[Kind(kind)]) if kind in set(BODIES) else st.just(None),
        _LOOSE | _JSON,
        st.integers(0, 60),
        st.sampled_from(["keep", "replace", "remove", "nested"]),
    )
)


def _mutated(case: Any) -> tuple[str, Any]:
    """A till's body as sent (or, for an unknown kind, any JSON), with one value
    (at any depth) replaced by any JSON, floats included, or removed."""
    kind, body, junk, pick, change = case
    written: Any = {"x": junk} if body is None else json.loads(canonical(body.to_body()))
    places: list[tuple[Any, Any]] = []
    pending = [written]
    while pending:
        item = pending.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item))
        for key in keys:
            places.append((item, key))
            if isinstance(item[key], dict | list) and (change == "nested" or item is written):
                pending.append(item[key])
    if places and change != "keep":
        holder, key = places[pick % len(places)]
        if change == "remove":
            del holder[key]
        else:
            # A copy: the place may lie inside ``junk`` itself (an unknown kind's
            # body), and a body that holds itself is no JSON anybody can send.
            holder[key] = copy.deepcopy(junk)
    return kind, written


@settings(max_examples=300, deadline=None)
@given(_CASES)
def test_typed_digest_agrees_with_canonical_digest(case: Any) -> None:
    """A till's body, that body with one value (at any depth) replaced by any JSON,
    floats included, or removed, and unknown kinds: ``typed_digest`` gives
    ``canonical_digest``'s digest and bytes or refuses as it does, and its typed
    body is ``readable``'s."""
    kind, written = _mutated(case)
    entry = _entry(kind, written)
    assert _outcome(typed_digest, entry) == _outcome(canonical_digest, entry)
    if not isinstance(_outcome(typed_digest, entry), type):
        assert typed_digest(entry)[2] == readable(kind, written)


@settings(max_examples=300, deadline=None)
@given(_CASES)
def test_the_text_reader_reads_as_the_reader_and_writes_the_canonical_text(case: Any) -> None:
    """The generated reader that writes as it reads (``text_reader``) against the
    compiled reader and ``canonical`` of the body, on mutated bodies: it takes a
    body the reader takes (or raises the TypeError or ValueError ``canonical``
    raises for it), gives the same typed body, and the canonical text."""
    kind, written = _mutated(case)
    read = text_reader(kind, _TEXTS)
    if read is None:
        assert readable(kind, written) is None
        return
    try:
        expected: Any = (BODIES[Kind(kind)]._fast_from_body(written), None)
    except Refused:
        with pytest.raises(Refused):
            read(written)
        return
    try:
        expected = (expected[0], canonical(written).decode("utf-8"))
    except (TypeError, ValueError) as error:
        with pytest.raises(type(error)):
            read(written)
        return
    assert read(written) == expected


@pytest.mark.parametrize(
    "result",
    [{"points": 1.5}, {"nested": [{"rate": 0.25}]}, {"big": float("inf")}],
)
def test_a_float_in_a_readable_body_is_still_refused(result: dict[str, Any]) -> None:
    """The typed readers take ``result`` as it is: it is the value walked for floats,
    and a float there is refused as ``canonical`` refuses it."""
    body = {
        "account": "M1",
        "member_id": "M1",
        "day": "2026-01-01",
        "points": 5,
        "reason": "goodwill",
        "lot": {"spendable_on": "2026-01-01", "expires_on": "2028-01-01"},
        "result": result,
    }
    typed = readable("adjust", body)
    assert typed is not None and typed.result == result
    entry = _entry("adjust", body)
    with pytest.raises((TypeError, ValueError)):
        canonical_digest(entry)
    with pytest.raises((TypeError, ValueError)):
        typed_digest(entry)


_PARTS = [*sorted(BODIES), Lot, Member, SaleLine, RefundLine]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_PARTS).flatmap(
        lambda part: _instances(BODIES[part] if isinstance(part, str) else part)
    )
)
def test_the_text_reader_writes_the_canonical_text_of_every_part(part: Any) -> None:
    """Every body and part as a till writes it: texts of any character (escapes,
    non-ASCII), ints of any size, keys a body may lack present or not, any
    ``result``: read back as itself, with ``canonical`` of the dict ``to_body``
    makes."""
    written = part.to_body()
    expected = canonical(written).decode("utf-8")
    assert _text_reader_of(type(part), _TEXTS)(json.loads(expected)) == (part, expected)
