"""``hq simulate``: the model that continues a till's chain writes exactly what
the real ledger writes, the history is reproducible from its seed, and HQ
accepts and verifies every uploaded chain."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import fields
from agent.entries import Member
from agent.privacy import disclosed, key_from_text
from agent.till_secrets import parse_phone
from sync.hq.audit import verify_all
from sync.hq.db import unavailable
from sync.hq.devices import chain_phone, hq_key
from sync.hq.insight import simulate as simulate_module
from sync.hq.insight.aggregates import AGGREGATE_TABLES
from sync.hq.insight.facts import rebuild
from sync.hq.insight.population import Chain
from sync.hq.insight.simulate import DEFAULT_START, SIMULATED_PHONE_COST, simulate
from sync.hq.insight.till_model import Account, Sale, TillState
from sync.hq.stores import open_store
from tests.insight_helpers import rows_of
from tests.sync_helpers import pg_schema
from tillpoints.cli import build_parser
from tillpoints.cli_insight import COMMANDS
from tillpoints.commands import Context


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    """A simulation's summary without what the run cost (time, CPU, memory)."""
    return {k: v for k, v in summary.items() if k not in {"seconds", "cpu_seconds", "peak_rss_mib"}}


def _history(
    url: str, ledger_days: int, seed: int = 5, workers: int | None = None, days: int = 150
) -> tuple[dict[str, Any], dict[Any, Any]]:
    store = open_store(url)
    try:
        summary = simulate(
            store,
            stores=2,
            members=60,
            days=days,
            seed=seed,
            ledger_days=ledger_days,
            workers=workers,
        )
        assert verify_all(store)["ok"]
        pepper = parse_phone(chain_phone(store, hq_key(store)), "phone")
        with store.read() as tx:
            names = {d: f"{s}/{t}" for d, s, t in tx.all("SELECT device, store, till FROM devices")}
            rows = tx.all("SELECT device, seq, ts, kind, body FROM entries WHERE kind <> 'init'")
            keys = {str(m): str(k) for m, k in tx.all("SELECT member_id, key FROM hq_member_keys")}
    finally:
        store.close()
    population = Chain(seed, 2, 60, days, DEFAULT_START)
    history = {}
    for device, seq, ts, kind, text in rows:
        if kind == "enrol":
            text = _opened(text, keys)
        for raw, name in names.items():  # device ids come from fresh keys: name them
            text = text.replace(raw, name)
        body = json.loads(text)
        body.pop("fingerprint", None)  # a hash over the (renamed) account
        if kind == "enrol":
            # Each simulated HQ has its own key, so its own phone pepper: check the key
            # is the member's number under this chain's pepper, then name it.
            member = body["member"]
            index = int(member["name"].removeprefix("Member "))
            number = fields.phone(population.members[index].phone)
            assert member.pop("phone_key") == fields.phone_key(number, pepper)
            assert "phone_last4" not in member
            assert pepper.cost == SIMULATED_PHONE_COST
        history[(names[device], int(seq))] = (ts, kind, body)
    return summary, history


def _opened(text: str, keys: dict[str, str]) -> str:
    """An enrolment as the seal holds it: the ledger seals the personal fields under
    a random key and nonce (agent.privacy), which HQ holds; the model writes them
    in the clear."""
    body = json.loads(text)
    typed = Member.from_body(body["member"])
    if typed.sealed is None:
        return text
    member = disclosed(typed, key_from_text(keys[typed.member_id])).to_body()
    del member["sealed"]
    return json.dumps({**body, "member": member})


def test_model_writes_what_the_ledger_writes(tmp_path: Path) -> None:
    by_ledger, ledger_history = _history(f"sqlite:///{tmp_path}/l.db", ledger_days=10_000)
    by_model, model_history = _history(f"sqlite:///{tmp_path}/m.db", ledger_days=0)
    assert by_ledger["model_entries"] == 0 and by_model["ledger_entries"] == 2 * 2
    kinds = {kind for _, kind, _ in ledger_history.values()}
    assert {"enrol", "earn", "redeem", "refund"} <= kinds
    assert ledger_history == model_history


def test_a_hand_over_mid_way_writes_what_the_ledger_writes(tmp_path: Path) -> None:
    """The model continues a ledger's chain as the ledger would have: it learns the
    members the ledger enrolled from their sealed enrolments (agent.privacy), the
    birthday too, which a birthday month's points need. It read the seal as blank
    once, and each member the ledger enrolled earned single points in the birthday
    months after the hand-over (10 stores, 5,000 members, 90 days: 11 entries fewer)."""
    _, ledger_history = _history(f"sqlite:///{tmp_path}/l.db", ledger_days=10_000)
    handed, handed_history = _history(f"sqlite:///{tmp_path}/h.db", ledger_days=40)
    assert 0 < handed["ledger_entries"] < handed["entries"]
    handed_on = (DEFAULT_START + dt.timedelta(days=40)).date().isoformat()
    born = {  # the members the ledger enrolled: their birthdays' months
        body["member"]["member_id"]: body["member"]["birthday"][5:7]
        for _, kind, body in ledger_history.values()
        if kind == "enrol" and body["day"] < handed_on
    }
    assert any(  # the case: such a member earns in a birthday month after the hand-over
        kind == "earn"
        and body["day"] >= handed_on
        and body["day"][5:7] == born.get(body["member_id"])
        for _, kind, body in ledger_history.values()
    )
    assert handed_history == ledger_history


def test_pruning_what_can_no_longer_matter_writes_the_same_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model drops lots spent to nothing (once no refundable sale drew on them)
    and spend rows older than twelve months (issue 18's RSS): against the model
    that keeps them all, over more than a year, the very same entries."""
    pruned = {"lots": 0, "rows": 0}

    def release(state: TillState, sale: Sale) -> None:
        lots = state.account(sale.account).lots
        before = len(lots)
        real_release(state, sale)
        pruned["lots"] += before - len(lots)

    def spend_since(account: Account, since: str) -> int:
        before = len(account.sales)
        spend = real_spend_since(account, since)
        pruned["rows"] += before - len(account.sales)
        return spend

    real_release, real_spend_since = TillState._release, Account.spend_since
    monkeypatch.setattr(TillState, "_release", release)
    monkeypatch.setattr(Account, "spend_since", spend_since)
    lean, lean_history = _history(f"sqlite:///{tmp_path}/p.db", 0, workers=1, days=420)
    assert pruned["lots"] > 0 and pruned["rows"] > 0

    def keep_lots(state: TillState, sale: Sale) -> None:
        state.drawn.subtract(move.lot_id for move in sale.redeem_moves)

    def keep_rows(account: Account, since: str) -> int:
        rows, first = account.sales, dt.date.fromisoformat(since).toordinal()
        return sum(rows[at + 1] - rows[at + 2] for at in range(0, len(rows), 3) if rows[at] > first)

    monkeypatch.setattr(TillState, "_release", keep_lots)
    monkeypatch.setattr(Account, "spend_since", keep_rows)
    full, full_history = _history(f"sqlite:///{tmp_path}/f.db", 0, workers=1, days=420)
    assert {"redeem", "refund"} <= {kind for _, kind, _ in full_history.values()}
    assert lean_history == full_history
    assert _counts(lean) == _counts(full)


def test_forgetting_the_sales_no_refund_can_reach_each_day_writes_the_same_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shards forget each day the sales older than a refund can reach (issue
    18's RSS): against tills that hold every sale, the very same entries, refunds
    among them, through the ledger's first days and the model's after."""
    forgotten = {"sales": 0}

    def forget_sales(state: TillState, before: str) -> None:
        held = len(state.sales)
        real_forget(state, before)
        forgotten["sales"] += held - len(state.sales)

    real_forget = TillState.forget_sales
    monkeypatch.setattr(TillState, "forget_sales", forget_sales)
    lean, lean_history = _history(f"sqlite:///{tmp_path}/l.db", 10, workers=1)
    assert forgotten["sales"] > 0
    monkeypatch.setattr(TillState, "forget_sales", lambda state, before: None)
    full, full_history = _history(f"sqlite:///{tmp_path}/f.db", 10, workers=1)
    assert "refund" in {kind for _, kind, _ in full_history.values()}
    assert lean_history == full_history
    assert _counts(lean) == _counts(full)


def test_a_shards_tills_with_the_same_rules_share_one_rules_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the hand-over, a shard's models whose rules are equal run on one
    ``Rules`` (one rate cache for them all); the history is the tests' above."""
    made: list[Any] = []
    real_model = simulate_module.ModelTill

    def model(state: TillState, key: Any, rules: Any, pepper: Any) -> Any:
        made.append(rules)
        return real_model(state, key, rules, pepper)

    monkeypatch.setattr(simulate_module, "ModelTill", model)
    _history(f"sqlite:///{tmp_path}/s.db", 3, workers=1, days=20)
    assert len(made) == 4 and len({id(rules) for rules in made}) == 1


class _ListRows:
    """The spend rows as a list per row (the model before its flat array): the
    reference ``Account``'s rows are checked against."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.pruned: Counter[int] = Counter()

    def spend_since(self, since: str) -> int:
        while self.rows and self.rows[0][0] <= since:
            _, amount, refunded = self.rows.pop(0)
            if refunded == 0:
                self.pruned[amount] += 1
        return sum(amount - refunded for _, amount, refunded in self.rows)

    def mark_refunded(self, amount: int, refunded: int) -> None:
        if self.pruned[amount]:
            self.pruned[amount] -= 1
            return
        for row in self.rows:
            if row[1] == amount and row[2] == 0:
                row[2] = refunded
                return


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("sale", "refund", "spend")),
            st.integers(0, 3),  # days on
            st.sampled_from((100, 250, 999)),  # amount
            st.integers(1, 999),  # refunded
        ),
        max_size=60,
    )
)
def test_the_flat_spend_rows_answer_as_a_list_of_rows(
    steps: list[tuple[str, int, int, int]],
) -> None:
    """``Account.sales`` is one flat array (issue 18's RSS): against a list per row,
    the same twelve-month spend after every sale, refund and pruning."""
    account, reference = Account(), _ListRows()
    day = dt.date(2025, 1, 1)
    for op, days_on, amount, refunded in steps:
        day += dt.timedelta(days=days_on)
        if op == "sale":
            account.add_sale(day.isoformat(), amount)
            reference.rows.append([day.isoformat(), amount, 0])
        elif op == "refund":
            account.mark_refunded(amount, refunded)
            reference.mark_refunded(amount, refunded)
        else:
            since = (day - dt.timedelta(days=5)).isoformat()
            assert account.spend_since(since) == reference.spend_since(since)
    assert account.spend_since("2024-12-31") == reference.spend_since("2024-12-31")


def test_hand_over_mid_way_and_seed_reproduces(tmp_path: Path) -> None:
    first, history = _history(f"sqlite:///{tmp_path}/a.db", ledger_days=40)
    again, same = _history(f"sqlite:///{tmp_path}/b.db", ledger_days=40)
    assert 0 < first["ledger_entries"] < first["entries"]
    assert history == same
    assert _counts(first) == _counts(again)
    _, other = _history(f"sqlite:///{tmp_path}/c.db", ledger_days=40, seed=6)
    assert other != history


def test_the_history_does_not_depend_on_the_worker_processes(tmp_path: Path) -> None:
    """Tills in one process or shared among two: the same entries, the same batches."""
    alone, history = _history(f"sqlite:///{tmp_path}/one.db", ledger_days=40, workers=1)
    shared, same = _history(f"sqlite:///{tmp_path}/two.db", ledger_days=40, workers=2)
    assert history == same
    assert _counts(alone) == _counts(shared)
    # What each run cost, counted in every process: the workers' CPU comes back too.
    assert alone["cpu_seconds"] > 0 and shared["cpu_seconds"] > 0
    assert alone["peak_rss_mib"] > 0 and shared["peak_rss_mib"] > 0
    batches = [_batches(f"sqlite:///{tmp_path}/{name}.db") for name in ("one", "two")]
    assert batches[0] == batches[1] and len(batches[0]) > 4


def _batches(url: str) -> list[Any]:
    """Each stored batch: its till and its first and last entry."""
    return sorted(
        rows_of(
            url,
            "SELECT d.store, d.till, b.first_seq, b.last_seq FROM batches b "
            "JOIN devices d ON d.device = b.device",
        )
    )


def test_an_upload_that_finds_hq_s_file_taken_is_the_same_delivered_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose upload finds the other at HQ's file keeps the batches it cut
    and delivers them later (``Shard._deliver``): the same entries, the same batches,
    the same report tables as uploads never kept waiting."""
    prompt, history = _history(f"sqlite:///{tmp_path}/prompt.db", ledger_days=40, workers=1)
    refused = Counter[bool]()

    def busy(turn: Any, wait: bool = True) -> bool:
        # Taken for the first tries of each upload: only a wait or a late try gets it.
        refused[wait] += 1
        return wait or refused[False] % 7 == 0

    monkeypatch.setattr(simulate_module._Turn, "take", busy)
    late, same = _history(f"sqlite:///{tmp_path}/late.db", ledger_days=40, workers=1)
    assert refused[False] > 20
    assert history == same
    assert _counts(prompt) == _counts(late)
    assert _batches(f"sqlite:///{tmp_path}/prompt.db") == _batches(f"sqlite:///{tmp_path}/late.db")


def test_population_has_the_shape_of_a_chain() -> None:
    chain = Chain(3, stores=10, members=2_000, days=365, start=DEFAULT_START)
    events = list(chain.events())
    visits = [e for e in events if e.kind == "visit"]
    by_month = [0] * 12
    by_weekday = [0] * 7
    for event in visits:
        by_month[event.when.month - 1] += 1
        by_weekday[event.when.weekday()] += 1
    assert by_month[11] > 1.2 * by_month[1]  # December peak over February
    assert by_weekday[5] > 1.2 * by_weekday[0]  # Saturday over Monday
    assert {e.when.hour for e in visits} <= set(range(8, 22))
    away = sum(1 for e in visits if e.store != e.member.home)
    assert 0.03 < away / len(visits) < 0.25
    assert sum(m.lapse_day is not None for m in chain.members) > 300
    assert {m.region for m in chain.stores} == {"north", "south", "east", "west", "central"}


def _run(*argv: str) -> dict[str, Any]:
    parser = build_parser(COMMANDS)
    args = parser.parse_args([*argv, "--json"])
    ctx = Context.from_args(args)
    result: dict[str, Any] = args.command_obj.run(ctx)
    return result


def test_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hq.db"
    made = _run("hq", "simulate", "--db", url, "--stores", "2", "--members", "30", "--days", "40")
    assert {"stores", "devices", "members", "entries"} <= set(made)
    assert made["devices"] == 4 and made["members"] == 30
    out = tmp_path / "liability.html"
    result = _run("hq", "report", "liability", "--db", url, "--format", "html", "--out", str(out))
    assert {"report", "rows", "totals"} <= set(result)
    assert "<svg" in out.read_text()
    csv_out = tmp_path / "segments.csv"
    _run("hq", "report", "segments", "--db", url, "--format", "csv", "--out", str(csv_out))
    assert csv_out.read_text().startswith("member_id,store,recency_days")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("hq", "report", "nope", "--db", "sqlite:///{tmp}/x.db"), "unknown_report"),
        (("hq", "report", "sales", "--db", "sqlite:///{tmp}/x.db", "--from", "2025-13-01"),
         "invalid_date"),
        (("hq", "simulate", "--db", "sqlite:///{tmp}/x.db", "--stores", "0", "--members", "1",
          "--days", "1"), "invalid_stores"),
    ],
)  # fmt: skip
def test_bad_input_is_named(tmp_path: Path, argv: tuple[str, ...], code: str) -> None:
    from sync.errors import SyncError

    with pytest.raises(SyncError) as raised:
        _run(*(part.replace("{tmp}", str(tmp_path)) for part in argv))
    assert raised.value.code == code


_FACTS = ("ins_members", "ins_cards", "ins_sales", "ins_lines", "ins_lots")


def _tables(url: str) -> dict[str, list[Any]]:
    store = open_store(url)
    try:
        with store.read() as tx:
            return {
                table: sorted(map(tuple, tx.all(f"SELECT * FROM {table}")))
                for table in (*_FACTS, *AGGREGATE_TABLES)
            }
    finally:
        store.close()


def test_the_report_tables_followed_upload_by_upload_are_a_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shards refresh the report tables after each upload (a refresh that finds
    HQ busy is left to the next), from the typed bodies the model till built where
    they have them: the tables end as a rebuild from every batch's stored JSON."""
    calls = {"busy": 0, "typed": 0}

    def busy_at_first(store: Any, page: int = 200, known: Any = None, wait: bool = True) -> int:
        if calls["busy"] < 3:
            calls["busy"] += 1
            raise unavailable("database is locked")
        calls["typed"] += len(known or ())
        return real_refresh(store, page, known, wait)

    real_refresh = simulate_module.refresh
    monkeypatch.setattr(simulate_module, "refresh", busy_at_first)
    url = f"sqlite:///{tmp_path}/r.db"
    _history(url, ledger_days=20, workers=1)
    followed = _tables(url)
    assert calls["busy"] == 3 and calls["typed"] > 0 and followed["ins_sales"]
    store = open_store(url)
    try:
        rebuild(store)
    finally:
        store.close()
    assert _tables(url) == followed


def test_postgresql_workers_that_skip_a_busy_refresh_end_with_a_rebuild_s_tables(
    pg_database: str,
) -> None:
    """On PostgreSQL two workers refresh without waiting for each other
    (``refresh(wait=False)``), each page's facts stored in bulk (``Tx.add_new``):
    the report tables end as a rebuild from every batch's stored JSON."""
    with pg_schema(pg_database) as url:
        _history(url, ledger_days=20, workers=2, days=60)
        followed = _tables(url)
        store = open_store(url)
        try:
            rebuild(store)
        finally:
            store.close()
        assert followed["ins_lines"] and followed["agg_members"]
        assert _tables(url) == followed


def test_the_file_built_without_fsync_ends_durable(tmp_path: Path) -> None:
    """HQ's SQLite file is built with ``synchronous=OFF`` (``BUILDING_PRAGMAS``);
    the finished chain is checkpointed into the file and the caller's connection
    is back to ``synchronous=FULL``, also when the simulation fails."""
    path = tmp_path / "d.db"
    store = open_store(f"sqlite:///{path}")
    try:
        simulate(store, stores=2, members=40, days=20, seed=3, workers=2)
        conn = sqlite3.connect(path)
        try:
            # The WAL is empty: every page is in the file itself.
            assert conn.execute("PRAGMA wal_checkpoint").fetchone() == (0, 0, 0)
        finally:
            conn.close()
        with store.read() as tx:
            assert tx.one("PRAGMA synchronous") == (2,)
        # No store to draw a chain for (the CLI refuses it first, invalid_stores):
        # a simulation failing once it has begun.
        with pytest.raises(IndexError):
            simulate(store, stores=0, members=40, days=20, seed=3)
        with store.read() as tx:
            assert tx.one("PRAGMA synchronous") == (2,)
    finally:
        store.close()


def test_a_file_holding_a_chain_keeps_its_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a new file is built without fsyncs: a simulation into an HQ that holds
    entries already (a demo chain, or somebody's real one) keeps every commit
    durable, so a power cut cannot cost it what it held."""
    from sync.hq.insight import simulate as module

    relaxed: list[object] = []
    real = module._without_fsync

    def spied(store: object) -> object:
        relaxed.append(store)
        return real(store)

    monkeypatch.setattr(module, "_without_fsync", spied)
    store = open_store(f"sqlite:///{tmp_path / 'hq.db'}")
    try:
        simulate(store, stores=1, members=20, days=10, seed=3, workers=1)
        assert len(relaxed) == 2  # new: the caller's connection and the shard's
        relaxed.clear()
        simulate(store, stores=1, members=20, days=10, seed=4, workers=1)
        assert relaxed == []
        with store.read() as tx:
            assert tx.one("PRAGMA synchronous") == (2,)
    finally:
        store.close()


def test_an_event_crosses_to_a_worker_as_it_was_drawn() -> None:
    """What ``_Remote`` sends and ``_serve`` reads back (pickled between them): the
    same event, its member once in full and then by index, less only the fields
    no till reads (``_UNREAD``)."""
    import pickle
    from dataclasses import replace

    events = list(zip(range(300), Chain(2, 2, 30, 10, DEFAULT_START).events(), strict=False))
    sent: set[int] = set()
    members: dict[int, Any] = {}
    for _, event in events:
        index = event.member.index
        slim = replace(event.member, **simulate_module._UNREAD)
        message = simulate_module._crossing(event, index if index in sent else slim)
        sent.add(index)
        arrived = simulate_module._arrived(pickle.loads(pickle.dumps(message)), members)
        assert arrived == (simulate_module.EVENT, replace(event, member=slim))
    assert len(members) == len(sent) > 1


def test_the_workers_take_turns_at_hq_s_sqlite_file(tmp_path: Path) -> None:
    """Two workers' ``_Turn``s on one file: while one holds it the other cannot
    (each opens the file itself, as each worker process does); released, it can.
    One shard, or PostgreSQL, has no turn file."""
    import fcntl

    store = open_store(f"sqlite:///{tmp_path / 'hq.db'}")
    try:
        assert simulate_module._turn_file(store, 1) is None
        path = simulate_module._turn_file(store, 2)
    finally:
        store.close()
    assert path is not None
    first, second = simulate_module._Turn(path), simulate_module._Turn(path)
    try:
        assert second.handle is not None
        with first, pytest.raises(BlockingIOError):
            fcntl.flock(second.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(second.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(second.handle, fcntl.LOCK_UN)
        # A worker whose upload finds the file taken goes on without it (Shard._deliver).
        with first:
            assert not second.take(wait=False)
        assert second.take(wait=False)
        assert not first.take(wait=False)
        second.give()
        assert simulate_module._Turn(None).take(wait=False)
        with simulate_module._Turn(None):  # no file: no lock taken
            pass
    finally:
        first.close()
        second.close()
        path.unlink()


def test_the_collector_runs_less_often_only_while_a_simulation_runs() -> None:
    import gc

    before = gc.get_threshold()
    with simulate_module._fewer_collections():
        assert gc.get_threshold() == simulate_module.COLLECTOR_THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), simulate_module._fewer_collections():
        raise RuntimeError
    assert gc.get_threshold() == before


def test_a_chain_simulated_into_postgresql_leaves_its_tables_analysed(pg_database: str) -> None:
    """The planner knows the chain at once, not when autovacuum comes by: without
    statistics a member's balance took a second at the full size (issue 18)."""
    with pg_schema(pg_database) as url:
        store = open_store(url)
        try:
            simulate(store, stores=1, members=20, days=10, seed=1, workers=1)
            with store.read() as tx:
                unknown = tx.all(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                    "AND c.relkind = 'r' AND c.reltuples < 0"
                )
                entries = tx.one("SELECT reltuples FROM pg_class WHERE oid = 'entries'::regclass")
        finally:
            store.close()
    assert unknown == []
    assert entries is not None and entries[0] > 0
