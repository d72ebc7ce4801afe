"""The response model kept at HQ: fitted once, reused, refitted when the campaign
data it learnt from has grown (issue 8, "use its scores to pick the next
campaign's targets").

A fit reads every offered member's features as of each campaign's eve and runs
scikit-learn (``sync.hq.insight.model``); doing that for every report and every
``model:TOPN`` campaign would cost the same time again and give the same answer.
So each fit is a row of ``cmp_models`` (migration ``005_campaign_models``),
numbered per scope (``*``: every campaign with takes; else one campaign's id):
when it was fitted, the campaigns it learnt from and a key of their data
(``model.training_data``), its hold-out AUC and sizes, and the columns,
standardisation, coefficients and intercept, which are all that scoring a member
needs (no scikit-learn).

``ensure`` answers the newest stored fit of a scope while its key matches the
campaign data, and fits and stores a new one when none exists or the data has
grown (a campaign gained a take, or a new campaign its first). ``hq campaign
model fit`` fits anew in any case: after ``facts.rebuild`` or a change of the
rules' tiers, which the key does not see. Fits are deterministic, so two HQ
workers that fit the same data at once store the same numbers; the second insert
of a version is a no-op.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from sync.errors import refused
from sync.hq.db import HQStore, Tx
from sync.hq.insight.model import (
    SCORES,
    Fitted,
    describe,
    fit,
    member_features,
    newest_day,
    training_data,
)
from sync.hq.insight.reports import Period, Report
from sync.hq.insight.takes import find_campaign, refresh_takes

SCOPE_ALL = "*"

# The table is created by migration 005_campaign_models (sync/hq/schema.py).
_FIELDS = (
    "version, fitted_at, campaigns, data_key, auc, n_train, n_test, base_rate, columns, "
    "mean, scale, coefficients, intercept"
)


@dataclass(frozen=True)
class Stored:
    """One stored fit: its scope, its version within the scope, when it was made."""

    scope: str
    version: int
    fitted_at: str
    model: Fitted


def _scope(tx: Tx, campaign: str | None) -> tuple[str, str | None]:
    """(scope, campaign id or None) for ``--campaign`` (a name or id) or every campaign."""
    if campaign is None:
        return SCOPE_ALL, None
    campaign_id = find_campaign(tx, campaign)
    return campaign_id, campaign_id


def load(tx: Tx, scope: str) -> Stored | None:
    """The newest stored fit of ``scope``."""
    row = tx.one(
        f"SELECT {_FIELDS} FROM cmp_models WHERE scope = ? ORDER BY version DESC LIMIT 1",  # noqa: S608
        (scope,),
    )
    if row is None:
        return None
    version, fitted_at, campaigns, key, auc, n_train, n_test, base_rate, *params = row
    columns, mean, scale, coefficients = (json.loads(str(text)) for text in params[:4])
    model = Fitted(
        columns=columns,
        mean=mean,
        scale=scale,
        coefficients=coefficients,
        intercept=float(params[4]),
        auc=None if auc is None else float(auc),
        n_train=int(n_train),
        n_test=int(n_test),
        base_rate=float(base_rate),
        campaigns=json.loads(str(campaigns)),
        data_key=str(key),
    )
    return Stored(scope, int(version), str(fitted_at), model)


def _save(store: HQStore, scope: str, model: Fitted, now: dt.datetime) -> Stored:
    fitted_at = now.astimezone(dt.UTC).isoformat(timespec="seconds")
    with store.write() as tx:
        row = tx.one("SELECT MAX(version) FROM cmp_models WHERE scope = ?", (scope,))
        version = int(row[0] or 0) + 1 if row else 1
        tx.run(
            f"INSERT INTO cmp_models (scope, {_FIELDS}) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                scope,
                version,
                fitted_at,
                json.dumps(model.campaigns),
                model.data_key,
                model.auc,
                model.n_train,
                model.n_test,
                model.base_rate,
                json.dumps(model.columns),
                json.dumps(model.mean),
                json.dumps(model.scale),
                json.dumps(model.coefficients),
                model.intercept,
            ),
        )
    return Stored(scope, version, fitted_at, model)


def ensure(
    store: HQStore, campaign: str | None, now: dt.datetime, *, refit: bool = False
) -> Stored:
    """The stored model of ``campaign`` (or of every campaign with takes), fitted
    and stored first when there is none, when the campaign data has grown since,
    or when ``refit``. Reads the facts and takes as they are: callers refresh
    them first (``facts.refresh``, ``takes.refresh_takes``)."""
    with store.read() as tx:
        scope, campaign_id = _scope(tx, campaign)
        current = load(tx, scope)
        _, key = training_data(tx, campaign_id)
    if current is not None and current.model.data_key == key and not refit:
        return current
    with store.read() as tx:
        fitted = fit(tx, store.dialect, campaign_id)
    return _save(store, scope, fitted, now)


def prepare(store: HQStore, campaign: str | None) -> None:
    """Before the ``campaign_model`` report's read snapshot: takes read, the model
    fitted and stored on first use or when stale."""
    refresh_takes(store)
    ensure(store, campaign, dt.datetime.now(dt.UTC))


def fit_command(store: HQStore, campaign: str | None, now: dt.datetime) -> dict[str, Any]:
    """``hq campaign model fit``: a new fit on the data as it is now, stored."""
    from sync.hq.insight.facts import refresh

    refresh(store)
    refresh_takes(store)
    stored = ensure(store, campaign, now, refit=True)
    with store.read() as tx:
        names = _names(tx, stored.model.campaigns)
    return {
        "scope": "all" if stored.scope == SCOPE_ALL else stored.scope,
        **_summary(stored, names),
        "n_train": stored.model.n_train,
        "n_test": stored.model.n_test,
        "base_rate": round(stored.model.base_rate, 4),
    }


def _names(tx: Tx, campaign_ids: list[str]) -> list[str]:
    marks = ", ".join("?" for _ in campaign_ids) or "NULL"
    found: dict[Any, Any] = dict(
        tx.all(
            f"SELECT campaign_id, name FROM cmp_campaigns WHERE campaign_id IN ({marks})",  # noqa: S608
            campaign_ids,
        )
    )
    return sorted(str(found.get(cid, cid)) for cid in campaign_ids)


def _summary(stored: Stored, names: list[str]) -> dict[str, Any]:
    auc = stored.model.auc
    return {
        "version": stored.version,
        "fitted_at": stored.fitted_at,
        "fitted_on": names,
        "auc": None if auc is None else round(auc, 4),
    }


# -- reading it --------------------------------------------------------------------------


def campaign_model(tx: Tx, period: Period) -> Report:
    """The report: the stored model's features, largest effect first, and how it
    measured. The model is chain-wide: the period and store do not apply."""
    scope, _ = _scope(tx, period.campaign)
    stored = load(tx, scope)
    if stored is None:
        raise refused(
            "no_training_data", "model: none stored yet (hq campaign model fit)", http_status=409
        )
    model = stored.model
    rows: list[dict[str, Any]] = []
    for column, coefficient in zip(model.columns, model.coefficients, strict=True):
        effect, words = describe(column, coefficient)
        kind = "score" if column in SCORES else column.partition("=")[0]
        rows.append(
            {
                "feature": column,
                "kind": {"age": "age_band", "store": "home_store"}.get(kind, kind),
                "coefficient": round(coefficient, 4),
                "odds_ratio": round(math.exp(coefficient), 4),
                "effect": effect,
                "description": words,
            }
        )
    rows.sort(key=lambda row: (-abs(row["coefficient"]), row["feature"]))
    totals: dict[str, Any] = {
        **_summary(stored, _names(tx, model.campaigns)),
        "n_train": model.n_train,
        "n_test": model.n_test,
        "base_rate": round(model.base_rate, 4),
        "campaigns": len(model.campaigns),
        "intercept": round(model.intercept, 4),
        "top_feature": rows[0]["feature"] if rows else None,
    }
    return {"report": "campaign_model", "rows": rows, "totals": totals}


def top_members(tx: Tx, dialect: str, model: Fitted, count: int) -> list[str]:
    """The ``count`` enrolled members ``model`` scores most likely to take an offer,
    as of the newest day in the data (ties: member id order, so the pick is
    reproducible)."""
    features = member_features(tx, dialect, newest_day(tx) or dt.date.today())
    ranked = sorted(features, key=lambda member: (-model.score(features[member]), member))
    return ranked[:count]
