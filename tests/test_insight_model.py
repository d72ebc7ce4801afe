"""The campaign response model (issue 8): learnt from a past campaign whose take-up
was planted on one feature, it must find that feature and rank members better
than chance, and ``--target model:TOPN`` must pick the members it scores highest.

One small chain is simulated once (SQLite); each test works on its own copy of
the database. Takes are written into ``cmp_takes`` directly (what
``refresh_takes`` makes of stored ``offer_take`` entries): a till round trip is
``test_insight_campaigns``' job, and the model only reads that table.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from sync.hqdb import Tx, open_store
from sync.insight.model import member_features
from sync.insight.simulate import simulate
from tests.sync_helpers import cli

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "hq.db"
    store = open_store(f"sqlite:///{path}")
    try:
        simulate(store, stores=3, members=300, days=90, seed=5, ledger_days=7)
    finally:
        store.close()
    return path


@pytest.fixture
def url(chain: Path, tmp_path: Path) -> str:
    copy = tmp_path / "hq.db"
    shutil.copy(chain, copy)
    return f"sqlite:///{copy}"


def _newest(tx: Tx) -> dt.date:
    row = tx.one("SELECT MAX(day) FROM ins_sales")
    assert row is not None
    return dt.date.fromisoformat(str(row[0]))


def _past_campaign(url: str, tmp_path: Path) -> tuple[dt.date, dict[str, Any]]:
    """A campaign offered to every member the day after the data ends."""
    store = open_store(url)
    try:
        with store.read() as tx:
            members = [str(m) for (m,) in tx.all("SELECT member_id FROM ins_members")]
            newest = _newest(tx)
    finally:
        store.close()
    ids = tmp_path / "everyone.txt"
    ids.write_text("\n".join(members))
    start = newest + dt.timedelta(days=1)
    code, made = cli(
        None, "hq", "campaign", "add", "--db", url, "--name", "Past", "--target",
        f"members:{ids}", "--offer", "gift:Mug", "--from", start.isoformat(), "--to",
        (start + dt.timedelta(days=20)).isoformat(), "--holdout", "0.1", "--seed", "1",
    )  # fmt: skip
    assert code == 0, made
    return start, made


def _plant_takes(url: str, start: dt.date) -> int:
    """Frequent buyers (F score 4-5 the day before the campaign) take the offer,
    others not, with every eighth member (in member id order) the other way round:
    take-up depends on frequency, but not perfectly."""
    store = open_store(url)
    try:
        with store.read() as tx:
            features = member_features(tx, store.dialect, start - dt.timedelta(days=1))
            offered = tx.all(
                "SELECT member_id, offer_id, store FROM cmp_members WHERE arm = 'offer' "
                "ORDER BY member_id"
            )
        takes = []
        for number, (member, offer, home) in enumerate(offered):
            took = features[str(member)]["f"] >= 4
            if number % 8 == 0:
                took = not took
            if took:
                takes.append(("sim", number, offer, member, home, start.isoformat(), None, 0, 0))
        with store.write() as tx:
            tx.many("INSERT INTO cmp_takes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", takes)
        return len(takes)
    finally:
        store.close()


def _report(url: str, *options: str) -> tuple[int, dict[str, Any]]:
    return cli(None, "hq", "report", "campaign_model", "--db", url, *options)


def _next(url: str, target: str, name: str = "Next") -> tuple[int, dict[str, Any]]:
    return cli(
        None, "hq", "campaign", "add", "--db", url, "--name", name, "--target", target,
        "--offer", "voucher:2.00", "--from", "2030-01-01", "--to", "2030-01-31",
        "--holdout", "0.2",
    )  # fmt: skip


def _targeted(url: str, name: str) -> set[str]:
    store = open_store(url)
    try:
        with store.read() as tx:
            rows = tx.all(
                "SELECT m.member_id FROM cmp_members m JOIN cmp_campaigns c "
                "ON c.campaign_id = m.campaign_id WHERE c.name = ?",
                (name,),
            )
        return {str(member) for (member,) in rows}
    finally:
        store.close()


def test_model_finds_the_planted_feature_and_targets_its_top_members(
    url: str, tmp_path: Path
) -> None:
    start, made = _past_campaign(url, tmp_path)
    takers = _plant_takes(url, start)
    assert 0 < takers < made["offered"]
    code, report = _report(url)
    assert code == 0, report
    totals = report["totals"]
    assert totals["auc"] > 0.6, totals
    assert totals["top_feature"] == "f", report["rows"][:3]
    top = report["rows"][0]
    assert top["effect"] == "raises" and "frequency" in top["description"]
    assert totals["n_train"] + totals["n_test"] == made["offered"]
    assert 0 < totals["n_test"] < totals["n_train"]
    assert totals["base_rate"] == round(takers / made["offered"], 4)
    assert {row["kind"] for row in report["rows"]} >= {"score", "tier", "home_store"}
    assert _report(url, "--campaign", "Past") == (code, report)  # the same deterministic fit
    assert _report(url, "--campaign", "Nope")[1]["error"] == "unknown_campaign"

    code, picked = _next(url, "model:25")
    assert code == 0, picked
    assert picked["targeted"] == 25 and picked["offered"] + picked["held_out"] == 25
    assert picked["held_out"] > 0  # the hold-out still applies
    chosen = _targeted(url, "Next")
    store = open_store(url)
    try:
        with store.read() as tx:
            newest = _newest(tx)
            features = member_features(tx, store.dialect, newest)
    finally:
        store.close()
    mean_chosen = sum(features[m]["f"] for m in chosen) / len(chosen)
    mean_all = sum(f["f"] for f in features.values()) / len(features)
    assert mean_chosen > mean_all + 1, (mean_chosen, mean_all)
    code, again = _next(url, "model:Past:25", name="Next2")
    assert code == 0, again
    assert _targeted(url, "Next2") == chosen  # one campaign with takes: the same model
    code, wrong = _next(url, "model:Nope:5", name="Next3")
    assert (code, wrong["error"]) == (2, "unknown_campaign")


def test_no_takes_no_model(url: str, tmp_path: Path) -> None:
    code, answer = _report(url)
    assert (code, answer["error"]) == (3, "no_training_data"), answer
    _past_campaign(url, tmp_path)
    code, answer = _report(url, "--campaign", "Past")
    assert (code, answer["error"]) == (3, "no_training_data"), answer
    assert "0 takes" in answer["message"]
    code, answer = _next(url, "model:10")
    assert (code, answer["error"]) == (3, "no_training_data"), answer
    assert _targeted(url, "Next") == set()


def test_without_scikit_learn(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    code, answer = _report(url)
    assert (code, answer["error"]) == (1, "insight_extra_missing"), answer
    assert "tillpoints[insight]" in answer["message"]
    code, answer = _next(url, "model:10")
    assert (code, answer["error"]) == (1, "insight_extra_missing"), answer


@pytest.mark.parametrize("target", ["model:0", "model:x", "model:", "model:a:b:3", "model:-1"])
def test_bad_model_targets(url: str, target: str) -> None:
    code, answer = _next(url, target)
    assert (code, answer["error"]) == (2, "invalid_target"), answer
