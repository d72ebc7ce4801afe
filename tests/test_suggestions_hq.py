"""HQ's suggestions at the counter, HQ's side (issue 15): the rules, the set in the
signed download, the answers back in ``hq report suggestions``.

The proof runs over real HTTP: HQ serving, two tills of two stores registered and
synced with ``tillpoints sync``; a consenting member with a birthday in five days,
enrolled at one store, has a ``birthday`` suggestion (with its offer) at the other
store's till; a member without consent has none; the answer recorded there is
counted by the report; a consent withdrawn at HQ and an erasure remove the member's
suggestions at the next sync. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.ledger import Ledger
from agent.offers import offers_for
from agent.suggestions import suggestions_for
from sync.hq.db import HQStore
from sync.hq.devices import init_hq
from sync.hq.insight.suggestions import (
    DEFAULT_RULES,
    birthday_window,
    block,
    parse_rules,
    prepare,
    suggestion_id,
)
from sync.hq.stores import open_store
from tests.sync_helpers import cli, pg_schema, two_stores

TODAY = dt.date.today()


def _birthday(days: int) -> str:
    soon = TODAY + dt.timedelta(days=days)
    day = 28 if soon.month == 2 and soon.day == 29 else soon.day
    return f"1990-{soon.month:02d}-{day:02d}"


@dataclass
class Chain:
    url: str
    hq: HQStore
    home: Path
    away: Path
    fan: str  # consents, birthday in five days
    quiet: str  # no consent, birthday in five days
    leaver: str  # consents, then withdraws at HQ
    erased: str  # consents, then is erased at HQ


def _shown(state: Path, member: str) -> list[Any]:
    ledger = Ledger(state)
    try:
        with ledger.store.transaction() as conn:
            offers = offers_for(conn, member, TODAY)
            return list(suggestions_for(conn, member, TODAY, offers))
    finally:
        ledger.close()


def _hq(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    return cli(None, "hq", *args, "--db", url)


@contextlib.contextmanager
def _chain(root: Path, url: str) -> Iterator[Chain]:
    with two_stores(root, url, root / "hq.log") as (_, hq, home, away):
        ledger = Ledger(home)
        try:
            soon = _birthday(5)
            ids = [
                ledger.enrol(
                    name=f"Member {n}",
                    phone=f"06123400{n:02d}",
                    birthday=soon,
                    consent_marketing=consent,
                ).member_id
                for n, consent in enumerate((True, False, True, True))
            ]
            for n, member in enumerate(ids):
                ledger.earn(member, f"H{n}", amount=2500)
        finally:
            ledger.close()
        for state in (home, away):
            assert cli(state, "sync")[0] == 0
        yield Chain(url, hq, home, away, *ids)


def _row(report: dict[str, Any], store: str, reason: str) -> dict[str, Any]:
    found = [r for r in report["rows"] if (r["store"], r["reason"]) == (store, reason)]
    assert len(found) == 1, report["rows"]
    return found[0]


def _prove(chain: Chain) -> None:
    # At the other store's till: the fan's birthday suggestion, with its offer.
    shown = _shown(chain.away, chain.fan)
    assert [s.reason for s in shown] == ["birthday"]
    assert shown[0].offer is not None and shown[0].offer.kind == "gift"
    assert shown[0].id.startswith("s") and shown[0].offer.offer_id == shown[0].id + "-o"
    assert _shown(chain.away, chain.quiet) == []
    assert [s.reason for s in _shown(chain.home, chain.leaver)] == ["birthday"]
    assert [s.reason for s in _shown(chain.home, chain.erased)] == ["birthday"]

    ledger = Ledger(chain.home)
    try:
        card = ledger.store.conn.execute(
            "SELECT card FROM cards WHERE account = ?", (chain.fan,)
        ).fetchone()[0]
    finally:
        ledger.close()
    ledger = Ledger(chain.away)  # the member is known there by card (HQ's directory)
    try:
        answer = ledger.record_suggestion(card, shown[0].id, "accepted", "cashier-7")
    finally:
        ledger.close()
    assert answer.outcome == "accepted"
    assert cli(chain.away, "sync")[0] == 0

    code, report = _hq(chain.url, "report", "suggestions")
    assert code == 0, report
    away, home = _row(report, "S002", "birthday"), _row(report, "S001", "birthday")
    assert (away["accepted"], away["declined"], away["later"]) == (1, 0, 0)
    assert away["shown"] == 1 and away["acceptance"] == "1.0000"
    # Three consenting members have their home at S001 (the quiet one gets none);
    # each earned there within the window, so each was shown there.
    assert (home["suggested"], home["shown"], home["accepted"]) == (3, 3, 0)
    assert report["totals"]["suggested"] == 3

    # The answered suggestion is not sent again; consent withdrawn at HQ and an
    # erasure take the member's suggestions away at the next sync.
    assert (
        _hq(chain.url, "member", "consent", "--member", chain.leaver, "--marketing", "no")[0] == 0
    )
    erased = _hq(chain.url, "member", "erase", "--member", chain.erased, "--reason", "asked")
    assert erased[0] == 0, erased
    assert cli(chain.home, "sync")[0] == 0
    assert _shown(chain.home, chain.fan) == []
    assert _shown(chain.home, chain.leaver) == []
    assert _shown(chain.home, chain.erased) == []


def test_a_birthday_reaches_another_store_and_the_answer_comes_back(tmp_path: Path) -> None:
    with _chain(tmp_path, f"sqlite:///{tmp_path}/hq.db") as chain:
        _prove(chain)


def test_the_same_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    with pg_schema(pg_database) as url, _chain(tmp_path, url) as chain:
        _prove(chain)


# -- the rules ----------------------------------------------------------------------------


@pytest.fixture
def hq_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/hq.db"
    store = open_store(url)
    init_hq(store)
    store.close()
    return url


def test_the_rules_show_their_defaults_and_take_a_file(hq_url: str, tmp_path: Path) -> None:
    code, shown = _hq(hq_url, "suggestion-rules")
    assert code == 0 and shown["set"] is False
    assert shown["rules"]["reasons"]["birthday"]["days"] == 14
    assert shown["rules"]["max_per_download"] == DEFAULT_RULES["max_per_download"]
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "max_per_download": 50,
                "reasons": {
                    "lapsed": {"on": False},
                    "birthday": {"days": 7, "text": "Happy birthday soon", "offer": "voucher:3"},
                },
            }
        )
    )
    code, answer = _hq(hq_url, "suggestion-rules", "--set", str(rules))
    assert code == 0 and answer["set"] is True
    code, shown = _hq(hq_url, "suggestion-rules")
    birthday = shown["rules"]["reasons"]["birthday"]
    assert (birthday["days"], birthday["offer"], birthday["text"]) == (
        7,
        "voucher:3",
        "Happy birthday soon",
    )
    assert shown["rules"]["reasons"]["lapsed"]["on"] is False
    assert shown["rules"]["max_per_download"] == 50
    store = open_store(hq_url)
    try:
        with store.read() as tx:
            audit = tx.all("SELECT operator, action, detail FROM hq_audit")
    finally:
        store.close()
    assert [(row[1], json.loads(row[2])["max_per_download"]) for row in audit] == [
        ("suggestion_rules", 50)
    ]
    assert str(audit[0][0]).startswith("cli")


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "file: a JSON object"),
        ('{"max_per_dowload": 5}', "max_per_dowload: unknown key"),
        ('{"max_per_download": 0}', "max_per_download: a whole number"),
        ('{"reasons": {"bday": {}}}', "reasons.bday: unknown key"),
        ('{"reasons": {"birthday": {"days": 365}}}', "reasons.birthday.days"),
        ('{"reasons": {"birthday": {"on": "yes"}}}', "reasons.birthday.on: true or false"),
        ('{"reasons": {"birthday": {"text": ""}}}', "reasons.birthday.text"),
        ('{"reasons": {"birthday": {"text": "two\\nlines"}}}', "reasons.birthday.text"),
        ('{"reasons": {"at_risk": {"offer": "voucher:abc"}}}', "reasons.at_risk.offer"),
        ('{"reasons": {"at_risk": {"offer": "discount:5"}}}', "reasons.at_risk.offer"),
        ('{"reasons": {"campaign": {"offer": "gift:x"}}}', "reasons.campaign.offer: unknown"),
        ('{"reasons": {"expiring_points": {"days": 45}}}', "reasons.expiring_points.days"),
        ('{"reasons": {"new_member": {"within_days": 10}}}', "reasons.new_member.within_days"),
        ('{"reasons": {"birthday": {"rank": true}}}', "reasons.birthday.rank"),
    ],
)
def test_a_bad_rules_file_is_refused_and_nothing_is_written(
    hq_url: str, tmp_path: Path, document: str, named: str
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(document)
    code, answer = _hq(hq_url, "suggestion-rules", "--set", str(rules))
    assert (code, answer["error"]) == (2, "invalid_rules"), answer
    assert named in answer["message"]
    store = open_store(hq_url)
    try:
        with store.read() as tx:
            assert tx.one("SELECT value FROM hq_meta WHERE key = 'suggestion_rules'") is None
            assert tx.one("SELECT COUNT(*) FROM hq_audit") == (0,)
    finally:
        store.close()


def test_a_missing_rules_file_is_refused(hq_url: str, tmp_path: Path) -> None:
    code, answer = _hq(hq_url, "suggestion-rules", "--set", str(tmp_path / "none.json"))
    assert (code, answer["error"]) == (2, "invalid_rules")


# -- ids, windows, the pace of recomputing ---------------------------------------------------


def test_ids_are_stable_per_member_reason_and_window() -> None:
    start, end = block(dt.date(2026, 12, 4), 14)
    assert (end - start).days == 13 and start <= dt.date(2026, 12, 4) <= end
    assert block(start, 14) == block(end, 14) != block(end + dt.timedelta(days=1), 14)
    same = suggestion_id("M1", "at_risk", start, end)
    assert same == suggestion_id("M1", "at_risk", start, end)
    assert same != suggestion_id("M2", "at_risk", start, end)
    assert same != suggestion_id("M1", "lapsed", start, end)
    # A birthday's window: from 14 days before the 14-day block that holds it to the
    # block's end; the till learns the block, not the day.
    around = block(dt.date(2027, 1, 5), 14)
    window = birthday_window("01-05", dt.date(2026, 12, 24), 14, 14)
    assert window == (around[0] - dt.timedelta(days=14), around[1])
    assert birthday_window("01-05", dt.date(2027, 1, 5), 14, 14) == window
    assert birthday_window("01-05", around[1], 14, 14) == window
    assert birthday_window("01-05", around[1] + dt.timedelta(days=1), 14, 14) is None
    assert birthday_window("01-05", dt.date(2026, 11, 1), 14, 14) is None
    leap = birthday_window("02-29", dt.date(2027, 2, 20), 14, 14)
    assert leap is not None and leap[0] <= dt.date(2027, 2, 28) <= leap[1]
    for days_ahead in range(15):  # the contract: within the next 14 days, always
        day = dt.date(2026, 12, 4) + dt.timedelta(days=days_ahead)
        assert birthday_window(day.strftime("%m-%d"), dt.date(2026, 12, 4), 14, 14)
    assert parse_rules({}).reasons.keys() == set(DEFAULT_RULES["reasons"])


def test_the_set_is_worked_out_at_most_every_few_minutes(hq_url: str) -> None:
    store = open_store(hq_url)
    try:
        now = dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC)
        assert prepare(store, now) is True
        assert prepare(store, now + dt.timedelta(minutes=4)) is False
        assert prepare(store, now + dt.timedelta(minutes=5)) is True
        assert prepare(store, now + dt.timedelta(minutes=6), force=True) is True
    finally:
        store.close()


def _card(chain: Chain, member: str) -> str:
    ledger = Ledger(chain.home)
    try:
        row = ledger.store.conn.execute("SELECT card FROM cards WHERE account = ?", (member,))
        return str(row.fetchone()[0])
    finally:
        ledger.close()


def _rules(chain: Chain, root: Path, **rules: Any) -> None:
    path = root / "rules.json"
    path.write_text(json.dumps(rules))
    code, answer = _hq(chain.url, "suggestion-rules", "--set", str(path))
    assert code == 0, answer


def test_a_campaign_offer_travels_with_its_suggestion_and_the_answer_feeds_the_response(
    tmp_path: Path,
) -> None:
    from sync.hq.insight.model import member_features
    from sync.hq.insight.page import charts_for

    with _chain(tmp_path, f"sqlite:///{tmp_path}/hq.db") as chain:
        targets = tmp_path / "targets.csv"
        targets.write_text(f"member_id\n{chain.fan}\n{chain.quiet}\n")
        end = (TODAY + dt.timedelta(days=10)).isoformat()
        code, added = _hq(
            chain.url, "campaign", "add", "--name", "Winter", "--target", f"members:{targets}",
            "--offer", "voucher:2.00", "--from", TODAY.isoformat(), "--to", end,
        )  # fmt: skip
        assert code == 0, added
        # Only the campaign's suggestions, worked out at every download from now on.
        _rules(
            chain,
            tmp_path,
            refresh_minutes=0,
            reasons={name: {"on": name == "campaign"} for name in DEFAULT_RULES["reasons"]},
        )
        assert cli(chain.away, "sync")[0] == 0
        shown = _shown(chain.away, chain.fan)
        assert [s.reason for s in shown] == ["campaign"]
        assert shown[0].text == "Offer for this member: 2.00 voucher"
        # A home-store campaign's offer, at a till of another store: it came with the
        # suggestion, under the campaign's own offer id.
        assert shown[0].offer is not None and shown[0].offer.offer_id.startswith(
            added["campaign_id"]
        )
        assert _shown(chain.away, chain.quiet) == []  # targeted, but no consent
        card = _card(chain, chain.fan)
        ledger = Ledger(chain.away)
        try:
            ledger.record_suggestion(card, shown[0].id, "accepted")
            ledger.take_offer(card, shown[0].offer.offer_id, "A1")
        finally:
            ledger.close()
        assert cli(chain.away, "sync")[0] == 0
        code, response = _hq(chain.url, "report", "campaign_response")
        assert code == 0, response
        everyone = next(row for row in response["rows"] if row["segment"] == "all")
        assert (everyone["suggestion_accepted"], everyone["suggestion_declined"]) == (1, 0)
        assert everyone["takers"] == 1 and response["totals"]["suggestion_accepted"] == 1
        code, report = _hq(chain.url, "report", "suggestions")
        assert _row(report, "S002", "campaign")["accepted"] == 1
        charts = charts_for(report)
        assert len(charts) == 2 and "Suggestions accepted by reason" in charts[0]
        assert ">campaign<" in charts[0] and ">S002<" in charts[1] and ">100<" in charts[1]
        hq = open_store(chain.url)
        try:
            with hq.read() as tx:
                # As of now by the tills' clock, not the module's TODAY: a run
                # that passes midnight enrols its members on the next day.
                features = member_features(tx, "sqlite", dt.datetime.now(dt.UTC).date())
        finally:
            hq.close()
        assert features[chain.fan]["accepted"] == 1 and features[chain.leaver]["accepted"] == 0

        # The set is bounded: at most max_per_download suggestions in a download.
        _rules(chain, tmp_path, refresh_minutes=0, max_per_download=1)
        assert cli(chain.home, "sync")[0] == 0
        ledger = Ledger(chain.home)
        try:
            held = ledger.store.conn.execute("SELECT COUNT(*) FROM hq_suggestions").fetchone()
        finally:
            ledger.close()
        assert held[0] == 1

        # A withdrawal recorded at one till reaches HQ with its upload and takes the
        # member's suggestions off every other till at their next download.
        _rules(chain, tmp_path, refresh_minutes=0)
        assert cli(chain.home, "sync")[0] == 0
        assert [s.reason for s in _shown(chain.home, chain.leaver)] == ["birthday"]
        code, said = cli(
            chain.away, "consent", "--member", _card(chain, chain.leaver), "--marketing", "no"
        )
        assert code == 0, said
        assert cli(chain.away, "sync")[0] == 0
        assert cli(chain.home, "sync")[0] == 0
        assert _shown(chain.home, chain.leaver) == []
        assert [s.reason for s in _shown(chain.home, chain.erased)] == ["birthday"]
        code, only = _hq(chain.url, "report", "suggestions", "--store", "S002")
        assert code == 0 and {row["store"] for row in only["rows"]} == {"S002"}
