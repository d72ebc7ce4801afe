"""``tillpoints bench --only hq_scale``: HQ at a chain's scale on PostgreSQL (issue 18).

A chain of ``--members`` members and ``--entries`` journal entries is written
straight into a scratch PostgreSQL schema by ``generate_series`` (a signed upload
of twenty million entries takes hours; the figures here are about reading). The
rows have the shapes HQ's own code writes: ``entries`` with the bodies a till
writes (real ``agent.entries`` bodies with the numbers filled in; hashes and
signatures are stand-ins of the right length, so ``hq verify`` would refuse them)
and the insight facts ``facts.refresh`` derives from them. Then the aggregates
are built by ``aggregates.rebuild``, the very statements each refresh runs, and
four things are timed: the liability report, the segments report, a member's
lookup (``hq balance`` and the console's member page) and the reports page. Then
a night's uploads are stored (``night``: 3,000 sales a till, as ingest stores
them, unread) and the facts refresh that reads them into the report tables is
timed, and the reports page after it.

Members enrol in the first month, at their home till; every 10th sale is at
another store; every 15th is a redemption and every 50th a refund. Indexes are
dropped while the rows go in and made again after, as a bulk load should.
"""

# ruff: noqa: S608, E501 -- bulk-fill SQL from constants; sizes are bound.

from __future__ import annotations

import datetime as dt
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.chain import canonical
from agent.entries import Earn, Enrol, Lot, Member, Redeem, Refund, RefundLine, SaleLine
from sync.hq.db import HQStore
from sync.hq.insight import aggregates
from sync.hq.insight.catalog import run_report
from sync.hq.insight.facts import ensure_tables, refresh, set_stores
from sync.hq.insight.page import index_page
from sync.hq.projection import balance
from sync.hq.stores import open_store
from tillpoints.bench_hq import scratch_db

Figure = dict[str, Any]
START = dt.date(2025, 1, 1)
DAYS = 365
CATEGORIES = ("bakery", "dairy", "produce", "meat", "frozen", "drinks", "snacks",
              "household", "beauty", "baby", "pets", "deli")  # fmt: skip
TARGETS = {"liability": 5.0, "segments": 60.0, "balance": 0.05, "member_page": 0.05, "page": 2.0}
# What HQ's own tables are bulk-filled here (the rest stay as migrations made them).
FILLED = ("entries", "batches", "ins_members", "ins_cards", "ins_sales", "ins_lines", "ins_lots")


def _progress(text: str) -> None:
    print(f"  {dt.datetime.now(dt.UTC):%H:%M:%S} {text}", file=sys.stderr, flush=True)


def _template(body: dict[str, Any], slots: dict[str, str]) -> str:
    """SQL making a body's canonical JSON with the ``slots`` (a sentinel in the
    body -> an SQL text expression) filled in, by one ``format()``."""
    text = canonical(body).decode().replace("%", "%%")
    found: list[str] = []

    def slot(match: re.Match[str]) -> str:
        found.append(slots[match.group(0)])
        return "%s"

    text = re.sub("|".join(re.escape(sentinel) for sentinel in slots), slot, text)
    # Every % doubled again: the driver reads the statement for its own placeholders.
    literal = "'" + text.replace("'", "''").replace("%", "%%") + "'"
    return f"format({literal}, {', '.join(found)})"


def _bodies() -> dict[str, str]:
    lot = Lot(spendable_on="2099-01-01", expires_on="2099-12-31")
    common = {"@MEMBER@": "s.member_id", "2099-01-01": "s.day", "2099-12-31": "s.expires"}
    enrol = Enrol(
        member=Member(
            member_id="@MEMBER@", name=None, phone_key=None, birthday=None, gender=None,
            district=None, household=None, consent_marketing=1, enrolled_at="@AT@",
            enrolled_store="@STORE@", enrolled_till="T01", enrolled_by=None,
        ),
        card="@CARD@", card_kind="programme", day="2099-01-01", bonus=50, lot=lot,
        effects={"delta": 50, "expired": 0},
    ).to_body()  # fmt: skip
    # Whole-number sentinels no filled-in figure can contain (figures stay under 10^7).
    n = {name: 987654300 + i for i, name in enumerate(
        ("amount", "points", "amount1", "amount2", "points1", "points2", "delta", "value"))}  # fmt: skip
    lines = (
        SaleLine(category="@CAT1@", qty=1, amount=n["amount1"], points=n["points1"]),
        SaleLine(category="@CAT2@", qty=2, amount=n["amount2"], points=n["points2"]),
    )
    earn = Earn(
        account="@MEMBER@", member_id="@MEMBER@", card=None, receipt="@RECEIPT@",
        fingerprint="0" * 64, lines=lines, amount=n["amount"], points=n["points"], tier="base",
        day="2099-01-01", lot=lot, effects={"delta": n["delta"], "expired": 0},
    ).to_body()  # fmt: skip
    redeem = Redeem(
        account="@MEMBER@", member_id="@MEMBER@", day="2099-01-01", receipt="@RECEIPT@",
        fingerprint="0" * 64, points=n["points"], value=n["value"], amount=None,
        effects={"delta": n["delta"], "expired": 0},
    ).to_body()  # fmt: skip
    refund = Refund(
        account="@MEMBER@", member_id="@MEMBER@", day="2099-01-01", receipt="@RECEIPT@",
        lines=(RefundLine(line_no=0, qty=1, amount=n["amount"], points=n["points"]),),
        amount=n["amount"], taken=n["points"], returned=0,
        effects={"delta": n["delta"], "expired": 0},
    ).to_body()  # fmt: skip

    def slots(**figures: str) -> dict[str, str]:
        return {
            **common,
            "@RECEIPT@": "s.receipt",
            **{str(n[k]): f"({v})::text" for k, v in figures.items()},
        }

    return {
        "enrol": _template(
            enrol, {**common, "@AT@": "s.ts", "@STORE@": "s.store", "@CARD@": "s.card"}
        ),
        "earn": _template(
            earn,
            {
                **slots(
                    amount="s.amount",
                    points="s.points",
                    amount1="s.amount1",
                    amount2="s.amount - s.amount1",
                    points1="s.amount1 / 100",
                    points2="s.points - s.amount1 / 100",
                    delta="s.points",
                ),
                "@CAT1@": "s.cat1",
                "@CAT2@": "s.cat2",
            },
        ),
        "redeem": _template(
            redeem, slots(points="-s.points", value="-s.points * 100", delta="s.points")
        ),
        "refund": _template(
            refund, slots(amount="-s.amount", points="-s.points", delta="s.points")
        ),
    }


def _sales_sql(members: int, ks: tuple[int, int], devices: int, day: str) -> str:
    """One row per sale k (``ks``, first and last): who, where, when, what; every
    figure derived from k by arithmetic, so the fill is repeatable. ``day``: the
    sale's day number from ``START``, an SQL expression of k."""
    cats = "ARRAY[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    return (
        "CREATE UNLOGGED TABLE scale_sales AS SELECT k, m, d, day_no, hour, "
        "CASE WHEN mod(k, 15) = 0 THEN 'redeem' WHEN mod(k, 50) = 7 THEN 'refund' ELSE 'earn' END AS kind, "
        "300 + mod(k * 104729, 9700) AS gross, "
        f"({cats})[1 + mod(k, 12)] AS cat1, ({cats})[1 + mod(k * 7, 12)] AS cat2 "
        f"FROM (SELECT k, 1 + mod(k * 7919, {members}) AS m, "
        f"CASE WHEN mod(k, 10) = 0 THEN mod(k * 31, {devices}) ELSE mod(1 + mod(k * 7919, {members}), {devices}) END AS d, "
        f"{day} AS day_no, 8 + mod(k * 7, 13) AS hour "
        f"FROM generate_series(CAST({ks[0]} AS BIGINT), {ks[1]}) AS k) g"
    )


def fill(url: str, members: int, entries: int) -> dict[str, int]:
    """The chain, written in bulk; returns its counts."""
    stores = max(1, min(100, members // 100))
    devices = 2 * stores
    sales = max(0, entries - members)
    store = open_store(url)
    try:
        ensure_tables(store)
        set_stores(store, [(f"S{n:03d}", f"R{n % 5}") for n in range(stores)])
        with store.write() as tx:
            tx.run("SET LOCAL maintenance_work_mem = '512MB'")
            tx.run("SET LOCAL synchronous_commit = off")
            kept = tx.all(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                f"AND tablename IN ({', '.join(repr(t) for t in FILLED)})"
            )
            for name, _ in kept:
                tx.run(f"ALTER TABLE {name.rsplit('_pkey', 1)[0]} DROP CONSTRAINT {name}"
                       if name.endswith("_pkey") else f"DROP INDEX {name}")  # fmt: skip
            _load(tx.run, members, sales, stores, devices)
            for name, definition in kept:
                _progress(f"index {name}")
                tx.run(definition)
                if name.endswith("_pkey"):
                    tx.run(f"ALTER TABLE {name.rsplit('_pkey', 1)[0]} ADD CONSTRAINT {name} "
                           f"PRIMARY KEY USING INDEX {name}")  # fmt: skip
            # Every follower of the batches has read them all: the facts' cursor, and the
            # offer takes' and suggestion answers' (the chain has neither).
            tx.run("INSERT INTO cmp_state (id, batch_no) VALUES (1, 0) ON CONFLICT DO NOTHING")
            for cursor in ("ins_state", "cmp_state", "hq_suggestion_state"):
                tx.run(
                    f"UPDATE {cursor} SET batch_no = (SELECT MAX(batch_no) FROM batches) "
                    "WHERE id = 1"
                )
            row = tx.one("SELECT MAX(batch_no) FROM batches")
            tx.run("UPDATE batch_clock SET n = ? WHERE id = 1", (int(row[0]) if row else 0,))
        with store.write() as tx:
            for table in FILLED:
                tx.run(f"ANALYZE {table}")
        _progress("aggregates.rebuild")
        aggregates.rebuild(store)
        with store.write() as tx:
            for table in aggregates.AGGREGATE_TABLES:
                tx.run(f"ANALYZE {table}")
            counted = tx.one("SELECT COUNT(*) FROM entries")
    finally:
        store.close()
    return {"stores": stores, "devices": devices, "members": members,
            "entries": int(counted[0]) if counted else 0}  # fmt: skip


# SQL expressions of a device's number, a member's number and a day number.
_DEVICE = "'D' || lpad(({d})::text, 4, '0')"
_STORE_OF = "'S' || lpad((({d}) / 2)::text, 3, '0')"
_MEMBER_ID = "'M' || lpad(({m})::text, 8, '0')"
_STAMP = f"(DATE '{START}' + CAST({{day}} AS INTEGER))"
_TS = "to_char({stamp} + make_interval(hours => CAST({hour} AS INTEGER), secs => CAST({sec} AS INTEGER)), 'YYYY-MM-DD\"T\"HH24:MI:SS') || '.000+00:00'"


def _load(run: Callable[[str], int], members: int, sales: int, stores: int, devices: int) -> None:
    bodies = _bodies()
    device, store_of, member_id, stamp, ts = _DEVICE, _STORE_OF, _MEMBER_ID, _STAMP, _TS
    run("INSERT INTO devices (device, store, till, public_key, current_key, transport_key, state, "
        f"head_seq, head_hash, registered_at) SELECT {device.format(d='d')}, {store_of.format(d='d')}, "
        "'T' || lpad((mod(d, 2) + 1)::text, 2, '0'), repeat('k', 44), repeat('k', 44), repeat('t', 44), "
        f"'bound', 0, repeat('0', 64), '{START}' FROM generate_series(0, {devices - 1}) d")  # fmt: skip
    _progress("enrolments")
    # Days grow with seq on every device, so each day's batch is a range of its own.
    enrol_day = f"((i - 1) * 30 / {members})"
    run(
        "CREATE UNLOGGED TABLE scale_members AS SELECT i, "
        f"{member_id.format(m='i')} AS member_id, (1000000000000 + i)::text AS card, "
        f"{device.format(d=f'mod(i, {devices})')} AS device, {store_of.format(d=f'mod(i, {devices})')} AS store, "
        f"to_char({stamp.format(day=enrol_day)}, 'YYYY-MM-DD') AS day, "
        f"to_char({stamp.format(day=enrol_day)} + 365, 'YYYY-MM-DD') AS expires, "
        + ts.format(stamp=stamp.format(day=enrol_day), hour="9", sec="mod(i, 30000) / 10")
        + f" AS ts FROM generate_series(CAST(1 AS BIGINT), {members}) i"
    )
    run(
        "INSERT INTO entries SELECT s.device, s.i, s.ts, 'enrol', NULL, " + bodies["enrol"]
        + ", md5(s.i::text) || md5(s.card), md5(s.card) || md5(s.i::text), repeat(md5(s.member_id), 4), "
        "s.member_id, 50, 0, 0, s.card, s.member_id, md5('p' || s.card) || md5(s.card), 0 FROM scale_members s"
    )  # fmt: skip
    run(
        "INSERT INTO ins_members SELECT member_id, store, day, "
        f"(DATE '{START}' - DATE '1970-01-01') + {enrol_day}, 1940 + mod(i, 65), "
        "lpad((1 + mod(i, 12))::text, 2, '0') || '-' || lpad((1 + mod(i, 28))::text, 2, '0'), "
        "(ARRAY['F', 'M', 'X'])[1 + mod(i, 3)], 1 + mod(i, 4), mod(i, 3) FROM scale_members"
    )
    run("INSERT INTO ins_cards SELECT 'C' || card, member_id FROM scale_members")
    run("INSERT INTO ins_sales SELECT device, i, 'bonus', member_id, store, day, "
        f"(DATE '{START}' - DATE '1970-01-01') + {enrol_day}, 0, 0, NULL, 0, 50, 0, 0 FROM scale_members")  # fmt: skip
    run("INSERT INTO ins_lots SELECT device, i, member_id, day, 50, expires FROM scale_members")
    if sales:
        _progress(f"{sales:,} sales")
        _sale_entries(
            run, bodies, members, (1, sales), devices, f"30 + (k - 1) * {DAYS - 31} / {sales}"
        )
        _progress("facts")
        run(
            "INSERT INTO ins_sales SELECT device, seq, kind, member_id, store, day, day_no, hour, "
            "weekday, receipt, amount, CASE WHEN kind = 'redeem' THEN -points ELSE points END, "
            "CASE WHEN kind = 'redeem' THEN -points * 100 ELSE 0 END, "
            "CASE WHEN kind = 'redeem' THEN 1 ELSE 0 END FROM scale_rows"
        )
        run(
            "INSERT INTO ins_lines SELECT device, seq, 0, member_id, store, day, cat1, 1, amount1 "
            "FROM scale_rows WHERE kind = 'earn' UNION ALL SELECT device, seq, 1, member_id, store, "
            "day, cat2, 2, amount - amount1 FROM scale_rows WHERE kind = 'earn' UNION ALL "
            "SELECT device, seq, 0, member_id, store, day, cat1, -1, amount FROM scale_rows WHERE kind = 'refund'"
        )
        run("INSERT INTO ins_lots SELECT device, seq, member_id, day, points, expires FROM scale_rows "
            "WHERE kind = 'earn' AND points > 0")  # fmt: skip
    _progress("batches")
    _batches(run, "entries")
    for table in ("scale_rows", "scale_sales", "scale_members"):
        run(f"DROP TABLE IF EXISTS {table}")


def _batches(run: Callable[[str], int], stored: str) -> None:
    """The batches of the entries in ``stored`` (a table of entries' rows): a till
    uploads once a day, one batch per device and day, numbered in day order after
    the batches there are."""
    run(
        "INSERT INTO batches SELECT (SELECT COALESCE(MAX(batch_no), 0) FROM batches) "
        "+ ROW_NUMBER() OVER (ORDER BY day, device), device, MIN(seq), MAX(seq), MIN(day) "
        f"FROM (SELECT device, seq, substr(ts, 1, 10) AS day FROM {stored}) e GROUP BY day, device"
    )


def _sale_entries(
    run: Callable[[str], int],
    bodies: dict[str, str],
    members: int,
    ks: tuple[int, int],
    devices: int,
    day: str,
) -> None:
    """The sales ``ks`` as journal entries (``entries``), their figures in
    ``scale_rows`` for the facts."""
    device, store_of, member_id, stamp, ts = _DEVICE, _STORE_OF, _MEMBER_ID, _STAMP, _TS
    run(_sales_sql(members, ks, devices, day))
    run(
        "CREATE UNLOGGED TABLE scale_rows AS SELECT g.k, g.kind, g.cat1, g.cat2, "
        f"{device.format(d='g.d')} AS device, {store_of.format(d='g.d')} AS store, "
        f"{members} + g.k AS seq, {member_id.format(m='g.m')} AS member_id, "
        f"to_char({stamp.format(day='g.day_no')}, 'YYYY-MM-DD') AS day, "
        f"to_char({stamp.format(day='g.day_no')} + 365, 'YYYY-MM-DD') AS expires, "
        f"(DATE '{START}' - DATE '1970-01-01') + g.day_no AS day_no, g.hour, "
        f"EXTRACT(ISODOW FROM {stamp.format(day='g.day_no')})::int AS weekday, "
        + ts.format(stamp=stamp.format(day="g.day_no"), hour="g.hour", sec="mod(g.k, 3600)")
        + " AS ts, CASE WHEN g.kind = 'refund' THEN 'R' || (g.k - 1) ELSE 'R' || g.k END AS receipt, "
        "CASE g.kind WHEN 'earn' THEN g.gross WHEN 'refund' THEN -(g.gross / 3) ELSE 0 END AS amount, "
        "g.gross / 3 AS amount1, "
        "CASE g.kind WHEN 'earn' THEN g.gross / 100 WHEN 'refund' THEN -(g.gross / 300) ELSE -(g.gross / 200) END AS points "
        "FROM scale_sales g"
    )  # fmt: skip
    for kind in ("earn", "redeem", "refund"):
        run(
            "INSERT INTO entries SELECT s.device, s.seq, s.ts, s.kind, NULL, " + bodies[kind]
            + ", md5(s.seq::text) || md5(s.device), md5(s.device) || md5(s.seq::text), "
            "repeat(md5(s.receipt), 4), s.member_id, s.points, 0, s.amount, NULL, NULL, NULL, "
            f"CASE WHEN s.kind = 'refund' THEN 0 ELSE 1 END FROM scale_rows s WHERE s.kind = '{kind}'"
        )  # fmt: skip


def _timed(step: Callable[[], object], repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _figure(seconds: float, target: float) -> Figure:
    return {"value": round(seconds, 4), "unit": "s", "target": target}


def measure(url: str) -> dict[str, Figure]:
    """The four timings of issue 18 on a filled HQ."""
    store: HQStore = open_store(url)
    try:
        with store.read() as tx:
            some = [str(row[0]) for row in tx.all(
                "SELECT member_id FROM ins_members ORDER BY member_id DESC LIMIT 5")]  # fmt: skip
        run_report(store, "liability")  # the first refresh and a warm cache
        from sync.hq.console.members import story

        now = dt.datetime.now(dt.UTC)
        figures = {
            "hq_scale_liability_s": _figure(_timed(lambda: run_report(store, "liability")), 5.0),
            "hq_scale_segments_s": _figure(_timed(lambda: run_report(store, "segments")), 60.0),
            "hq_scale_balance_s": _figure(
                _timed(lambda: [balance(store, member) for member in some], 3) / len(some), 0.05
            ),
            "hq_scale_member_page_s": _figure(
                _timed(lambda: [story(store, member, now) for member in some], 3) / len(some), 0.05
            ),
            "hq_scale_reports_page_s": _figure(
                _timed(lambda: index_page(store, {}, "bench"), 3), 2.0
            ),
        }
    finally:
        store.close()
    return figures


NIGHT_PER_TILL = 3_000  # a busy till's night, as in ``chain_night_1000_tills_s``


def night(url: str, entries: int) -> int:
    """A night's uploads on a chain ``fill`` made: ``entries`` more sales by its
    members at its tills on the day after its last, stored as ingest stores them
    (entries, one batch a till) and not yet read by the facts refresh. Returns the
    night's batches."""
    store = open_store(url)
    try:
        with store.write() as tx:
            counted = [tx.one(f"SELECT {what}") for what in (
                "COUNT(*) FROM ins_members", "COUNT(*) FROM devices", "MAX(seq) FROM entries",
                "MAX(batch_no) FROM batches")]  # fmt: skip
            members, devices, last, batches = (int(row[0]) if row else 0 for row in counted)
            # A sale's seq is members + k (``_load``), so k goes on from the last one's.
            ks = (last - members + 1, last - members + entries)
            _sale_entries(tx.run, _bodies(), members, ks, devices, str(DAYS))
            _batches(tx.run, "scale_rows")
            tx.run("UPDATE batch_clock SET n = (SELECT MAX(batch_no) FROM batches) WHERE id = 1")
            added = tx.one("SELECT COUNT(*) FROM batches WHERE batch_no > ?", (batches,))
            for table in ("scale_rows", "scale_sales"):
                tx.run(f"DROP TABLE {table}")
    finally:
        store.close()
    return int(added[0]) if added else 0


def measure_night(url: str) -> dict[str, Figure]:
    """The facts refresh of a night (``night``) into the filled chain's report
    tables, and the reports page after it."""
    store: HQStore = open_store(url)
    try:
        began = time.perf_counter()
        read = refresh(store)
        seconds = time.perf_counter() - began
        page = _timed(lambda: index_page(store, {}, "bench"), 3)
    finally:
        store.close()
    return {
        "hq_scale_night_refresh_s": {
            "value": round(seconds, 2), "unit": "s", "entries": read,
            "entries_per_s": round(read / seconds, 1) if seconds else None,
        },
        "hq_scale_reports_page_after_night_s": _figure(page, TARGETS["page"]),
    }  # fmt: skip


def hq_scale(
    postgres: str, members: int, entries: int, night_entries: int | None = None
) -> dict[str, Figure]:
    """Fill a scratch schema, time the reports, then a night's refresh (``night``:
    ``NIGHT_PER_TILL`` entries a till unless given) and the reports page after it."""
    with scratch_db(postgres) as url:
        began = time.perf_counter()
        counts = fill(url, members, entries)
        filled = time.perf_counter() - began
        _progress(f"filled {json.dumps(counts)} in {filled:.0f} s; measuring")
        figures = measure(url)
        tonight = NIGHT_PER_TILL * counts["devices"] if night_entries is None else night_entries
        _progress(f"a night of {tonight:,} entries")
        night(url, tonight)
        figures.update(measure_night(url))
    figures["hq_scale_fill_s"] = {"value": round(filled, 1), "unit": "s"}
    figures["hq_scale_entries"] = {"value": counts["entries"], "unit": "entries"}
    # The machine is shared: the load the timings ran under goes with them.
    figures["hq_scale_load"] = {"value": round(os.getloadavg()[0], 2), "unit": "load (1 min)"}
    return figures
