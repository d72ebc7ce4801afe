"""HQ's ingest reads each new body once (``agent.chain.typed_digest``) and takes its
columns from that read (``sync.hq.extract.facts_of_body``): checked against the slow
path, ``entry_row`` of each entry (``facts_of``, which reads the body again), on
bodies of every kind with any values, and bodies no till of this version writes."""

from __future__ import annotations

import datetime as dt
import tempfile
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chain import GENESIS_PREV, Entry, sign_entry
from agent.entries import BODIES, Kind
from agent.keys import device_id_for
from sync.hq.devices import hq_key, init_hq
from sync.hq.ingest import ENTRY_COLUMNS, entry_row, ingest
from sync.hq.stores import open_store
from sync.protocol import Batch
from tests.test_entries import _JSON, _instances
from tillpoints.bench_hq import _bind

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_NOW = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.UTC)

# A body of any kind as a till writes it, or one it does not (an unknown kind, a
# known kind's body with a key too many or of the wrong type).
_BODY = st.one_of(
    st.sampled_from(sorted(set(BODIES) - {Kind.KEY_ROTATE})).flatmap(
        lambda kind: _instances(BODIES[kind]).map(lambda body: (str(kind), body.to_body()))
    ),
    st.tuples(
        st.sampled_from(["bonus", "earn", "enrol"]), st.dictionaries(st.text(max_size=8), _JSON)
    ),
)


def _chain(bodies: list[tuple[str, dict[str, Any]]]) -> list[Entry]:
    device = device_id_for(_KEY.public_key())
    entries, prev = [], GENESIS_PREV
    for seq, (kind, body) in enumerate(bodies, start=1):
        entry = sign_entry(
            _KEY,
            device=device,
            seq=seq,
            ts=f"2026-12-04T17:{seq % 60:02d}:00.000+00:00",
            kind=kind,
            staff=None,
            body=body,
            prev=prev,
        )
        entries.append(entry)
        prev = entry.hash
    return entries


@settings(max_examples=25, deadline=None)
@given(st.lists(_BODY, min_size=1, max_size=12))
def test_ingest_stores_the_rows_entry_row_makes(bodies: list[tuple[str, dict[str, Any]]]) -> None:
    entries = _chain(bodies)
    with tempfile.TemporaryDirectory() as root:
        store = open_store(f"sqlite:///{root}/hq.db")
        try:
            init_hq(store)
            device = _bind(store, _KEY)
            ingest(store, hq_key(store), device, Batch(device, tuple(entries)), _NOW, _NOW)
            with store.read() as tx:
                stored = tx.all(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries ORDER BY seq")
        finally:
            store.close()
    assert stored == [entry_row(entry) for entry in entries]


def test_the_facts_are_the_last_columns_of_an_entry_row() -> None:
    """``entry_row`` appends a ``Facts`` tuple as it is: its fields are the columns'
    names, in their order."""
    from sync.hq.extract import Facts
    from sync.hq.ingest import ENTRY_COLUMNS

    assert ENTRY_COLUMNS[-len(Facts._fields) :] == Facts._fields
