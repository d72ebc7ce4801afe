"""The campaign response model (issue 8): learnt from a past campaign whose take-up
was planted on one feature, it must find that feature and rank members better
than chance, and ``--target model:TOPN`` must pick the members it scores highest.
The fit is stored at HQ: reused while the campaign data stays the same (even
without scikit-learn), refitted when a campaign gains takes, the same on SQLite
and PostgreSQL.

One small chain is simulated once (SQLite); each test works on its own copy of
the database. Takes are planted in ``cmp_takes`` (``tests.insight_helpers``).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.hq.insight.model import member_features
from sync.hq.insight.simulate import simulate
from sync.hq.stores import open_store
from tests.insight_helpers import copy_chain, everyone_campaign, newest_day, plant_takes, rows_of
from tests.sync_helpers import cli, pg_schema

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


@pytest.fixture
def pg_url(chain: Path, pg_database: str) -> Iterator[str]:
    """The same chain's rows in a PostgreSQL schema of its own."""
    with pg_schema(pg_database) as url:
        copy_chain(f"sqlite:///{chain}", url)
        yield url


def _past_campaign(url: str, tmp_path: Path) -> tuple[dt.date, dict[str, Any]]:
    """A campaign offered to every member the day after the data ends."""
    start = newest_day(url) + dt.timedelta(days=1)
    return start, everyone_campaign(url, tmp_path, "Past", start)


def _report(url: str, *options: str) -> tuple[int, dict[str, Any]]:
    return cli(None, "hq", "report", "campaign_model", "--db", url, *options)


def _next(url: str, target: str, name: str = "Next") -> tuple[int, dict[str, Any]]:
    return cli(
        None, "hq", "campaign", "add", "--db", url, "--name", name, "--target", target,
        "--offer", "voucher:2.00", "--from", "2030-01-01", "--to", "2030-01-31",
        "--holdout", "0.2",
    )  # fmt: skip


def _targeted(url: str, name: str) -> set[str]:
    rows = rows_of(
        url,
        "SELECT m.member_id FROM cmp_members m JOIN cmp_campaigns c "
        "ON c.campaign_id = m.campaign_id WHERE c.name = ?",
        (name,),
    )
    return {str(member) for (member,) in rows}


def test_model_finds_the_planted_feature_and_targets_its_top_members(
    url: str, tmp_path: Path
) -> None:
    start, made = _past_campaign(url, tmp_path)
    takers = plant_takes(url, "Past", start)
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
    code, alone = _report(url, "--campaign", "Past")  # its own model, the same fit
    assert code == 0 and alone["rows"] == report["rows"], alone
    assert _unstamped(alone["totals"]) == _unstamped(totals)
    assert alone["period"]["campaign"] == "Past"
    assert _report(url, "--campaign", "Nope")[1]["error"] == "unknown_campaign"

    code, picked = _next(url, "model:25")
    assert code == 0, picked
    assert picked["targeted"] == 25 and picked["offered"] + picked["held_out"] == 25
    assert picked["held_out"] > 0  # the hold-out still applies
    chosen = _targeted(url, "Next")
    store = open_store(url)
    try:
        with store.read() as tx:
            features = member_features(tx, store.dialect, newest_day(url))
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


def _unstamped(totals: dict[str, Any]) -> dict[str, Any]:
    """A model's totals without the moment of its fit."""
    return {key: value for key, value in totals.items() if key != "fitted_at"}


def _fit(url: str, *options: str) -> tuple[int, dict[str, Any]]:
    return cli(None, "hq", "campaign", "model", "fit", "--db", url, *options)


def _stored_model(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One backend's run: fit, reuse (without scikit-learn, so no refit can hide),
    a campaign without takes changes nothing, one with takes makes it stale."""
    start, _ = _past_campaign(url, tmp_path)
    plant_takes(url, "Past", start)
    code, fitted = _fit(url)
    assert code == 0, fitted
    assert (fitted["scope"], fitted["version"], fitted["fitted_on"]) == ("all", 1, ["Past"])
    assert fitted["n_train"] > fitted["n_test"] > 0 and fitted["auc"] > 0.6
    code, first = _report(url)
    assert code == 0, first
    assert first["totals"]["version"] == 1 and first["totals"]["fitted_at"] == fitted["fitted_at"]
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "sklearn.linear_model", None)
        assert _report(url) == (0, first)
        code, picked = _next(url, "model:25")
        assert code == 0 and picked["model"]["version"] == 1, picked
        assert _report(url) == (0, first)  # a campaign nobody took yet teaches nothing
        later = start + dt.timedelta(days=30)
        made = everyone_campaign(url, tmp_path, "Later", later)
        plant_takes(url, "Later", later)
        code, stale = _report(url)
        assert (code, stale["error"]) == (1, "insight_extra_missing"), stale
    code, refitted = _report(url)
    assert code == 0, refitted
    assert refitted["totals"]["version"] == 2
    assert refitted["totals"]["fitted_on"] == ["Later", "Past"]
    assert refitted["totals"]["n_train"] > first["totals"]["n_train"]
    assert _report(url)[1]["totals"]["version"] == 2
    code, again = _fit(url)
    assert (code, again["version"]) == (0, 3)  # an explicit fit always fits
    code, alone = _fit(url, "--campaign", "Later")
    assert code == 0, alone
    assert (alone["scope"], alone["version"], alone["fitted_on"]) == (
        made["campaign_id"],
        1,
        ["Later"],
    )
    return {
        "first": {**first, "totals": _unstamped(first["totals"])},
        "refitted": {**refitted, "totals": _unstamped(refitted["totals"])},
        "targets": sorted(_targeted(url, "Next")),
    }


def test_stored_model_is_reused_refitted_when_stale_and_the_same_on_both_backends(
    url: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_sqlite = _stored_model(url, tmp_path, monkeypatch)
    on_postgresql = _stored_model(pg_url, tmp_path, monkeypatch)
    assert on_sqlite == on_postgresql
    assert len(on_sqlite["targets"]) == 25


def test_no_takes_no_model(url: str, tmp_path: Path) -> None:
    code, answer = _report(url)
    assert (code, answer["error"]) == (3, "no_training_data"), answer
    code, answer = _fit(url)
    assert (code, answer["error"]) == (3, "no_training_data"), answer
    code, answer = _fit(url, "--campaign", "Nope")
    assert (code, answer["error"]) == (2, "unknown_campaign"), answer
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
