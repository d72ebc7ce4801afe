"""``hq report campaign_model`` and ``hq campaign add --target model:TOPN``: who takes
an offer, learnt from past campaigns (issue 8, "Offers: back to the counter").

A campaign's offered arm is a labelled sample: each offered member took the offer
(an ``offer_take`` entry stored at HQ, ``cmp_takes``) or did not. A logistic
regression of that label on what HQ knew about the member *the day before the
campaign started* (so the campaign's own visits cannot leak into its features):

- ``r``, ``f``, ``m``: the RFM quintile scores 1-5 of ``sync.hq.insight.audience``
  (0: no purchase yet), the same scores the segments are named from;
- ``tier=NAME``: the tier the member's 12-month spend reaches under HQ's rules;
- ``age=BAND``: the age bands of the ``sales`` report (``unknown`` without a
  birthday);
- ``store=S``: the home store;
- ``accepted``: how many of HQ's suggestions the member accepted at the counter
  (``suggestion_answer`` entries, issue 15), a sign of who answers an offer.

Columns are standardised on the training rows, so coefficients compare across
features: each is the change in log-odds of taking the offer per standard
deviation of the feature, and the report says in words which features raise
take-up. Members are split into training and hold-out (test) rows by a hash of
campaign and member, like the campaign's own hold-out: the same data always gives
the same split, the same fit and the same AUC (the area under the ROC curve of the
test rows' scores: 0.5 is guessing, 1.0 a perfect ranking).

This module learns; ``sync.hq.insight.stored_model`` keeps what it learnt at HQ (the
coefficients and the standardisation, which is all a score needs) and refits
only when the campaign data it learnt from has grown. A fit needs numpy and
scikit-learn, the optional ``insight`` extra (HQ works without them and says
``insight_extra_missing``, like ``clusters``); scoring a member with a fitted
model is plain arithmetic.
"""

# ruff: noqa: S608 -- SQL here is built from constant fragments; values are bound.

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from sync.errors import SyncError, refused
from sync.hq.db import Tx
from sync.hq.insight.audience import _rfm_sql
from sync.hq.insight.reports import AGE_BANDS, Period, rules_of

TEST_BP = 3_000  # share of labelled members kept out of the fit to measure it (30 %)
MIN_ROWS = 20  # labelled members below which a fit says nothing
MIN_CLASS = 5  # takers (and non-takers) below which a fit says nothing
LITTLE = 0.05  # |coefficient| below which a feature is said to have little effect
SCORES = {
    "r": "recency score",
    "f": "frequency score",
    "m": "monetary score",
    "accepted": "number of HQ suggestions accepted at the counter",
}
AGE_ORDER = (*(name for _, name in AGE_BANDS), "65+", "unknown")


def _libraries() -> tuple[Any, Any, Any]:
    """numpy, ``LogisticRegression`` and ``roc_auc_score``, or the stable error."""
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
    except ImportError:
        raise SyncError(
            "insight_extra_missing",
            "the response model needs numpy and scikit-learn: pip install 'tillpoints[insight]'",
            exit_status=1,
        ) from None
    return np, LogisticRegression, roc_auc_score


# -- features --------------------------------------------------------------------------


def newest_day(tx: Tx) -> dt.date | None:
    """The newest day with a sale in the facts: what "as of now" means for data that
    arrives nightly."""
    row = tx.one("SELECT MAX(day) FROM ins_sales")
    return dt.date.fromisoformat(str(row[0])) if row and row[0] else None


def member_features(tx: Tx, dialect: str, as_of: dt.date) -> dict[str, dict[str, Any]]:
    """What HQ knew of every enrolled member at the end of ``as_of``: RFM scores,
    tier, age band, home store and suggestions accepted. The tier's 12-month spend
    is earn minus refunds in ``ins_sales`` (a refund counts on its own day, where the
    till nets it from the earn's: close enough to rank, not to decide a member's
    tier)."""
    period = Period(None, as_of.isoformat(), None, as_of, dialect)
    sql, params = _rfm_sql(tx, period)
    scores = {
        str(member): (int(r), int(f), int(mo))
        for member, r, f, mo in tx.all(sql + "SELECT member, r, f, mo FROM named", params)
    }
    since = (as_of - dt.timedelta(days=365)).isoformat()
    spend = {
        str(member): int(total or 0)
        for member, total in tx.all(
            "SELECT member, SUM(amount) FROM ins_sales WHERE kind IN ('earn', 'refund') "
            "AND day > ? AND day <= ? GROUP BY member",
            (since, as_of.isoformat()),
        )
    }
    accepted = {
        str(member): int(n)
        for member, n in tx.all(
            "SELECT member_id, COUNT(*) FROM hq_suggestion_answers WHERE outcome = 'accepted' "
            "AND day <= ? GROUP BY member_id",
            (as_of.isoformat(),),
        )
    }
    rules = rules_of(tx)
    out: dict[str, dict[str, Any]] = {}
    for member, home, born in tx.all(
        "SELECT member_id, store, birth_year FROM ins_members WHERE enrolled_day <= ?",
        (as_of.isoformat(),),
    ):
        r, f, mo = scores.get(str(member), (0, 0, 0))
        out[str(member)] = {
            "r": r,
            "f": f,
            "m": mo,
            "tier": rules.tier_for(spend.get(str(member), 0)).name,
            "age": _age_band(as_of.year, born),
            "store": str(home),
            "accepted": accepted.get(str(member), 0),
        }
    return out


def _age_band(year: int, born: Any) -> str:
    """The ``sales`` report's bands (``reports._age_band``), in Python."""
    if born is None:
        return "unknown"
    age = year - int(born)
    return next((name for upper, name in AGE_BANDS if age < upper), "65+")


# -- the labelled sample -----------------------------------------------------------------


def _in_test(campaign_id: str, member: str) -> bool:
    digest = hashlib.sha256(f"model:{campaign_id}:{member}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < TEST_BP


def training_data(tx: Tx, campaign_id: str | None) -> tuple[list[str], str]:
    """The campaigns a fit learns from and a key of their data: every campaign with
    at least one take (one nobody took yet has not been heard from, not refused by
    everyone), or ``campaign_id`` alone. The key is a SHA-256 of each campaign's
    offered members and takers: it changes when a campaign gains a take or a new
    campaign its first, which is when a stored model is out of date."""
    where, params = "m.arm = 'offer'", []
    if campaign_id is not None:
        where, params = "m.arm = 'offer' AND m.campaign_id = ?", [campaign_id]
    counts = sorted(
        (str(cid), int(offered), int(takers))
        for cid, offered, takers in tx.all(
            "SELECT m.campaign_id, COUNT(*), COUNT(t.offer_id) FROM cmp_members m "
            "LEFT JOIN (SELECT DISTINCT offer_id FROM cmp_takes) t ON t.offer_id = m.offer_id "
            f"WHERE {where} GROUP BY m.campaign_id",
            params,
        )
        if campaign_id is not None or int(takers) > 0
    )
    key = hashlib.sha256(json.dumps(counts).encode()).hexdigest()
    return [cid for cid, _, _ in counts], key


def _labelled(
    tx: Tx, dialect: str, campaigns: list[str]
) -> tuple[list[dict[str, Any]], list[int], list[bool]]:
    """Features, took (1/0) and is-test of every offered member of ``campaigns``, in
    campaign and member order (sorted here: PostgreSQL's collation may not be
    byte order, and the same rows in the same order give the same fit)."""
    marks = ", ".join("?" for _ in campaigns) or "NULL"
    rows = sorted(
        (str(cid), str(start), str(member), int(took))
        for cid, start, member, took in tx.all(
            "SELECT c.campaign_id, c.valid_from, m.member_id, CASE WHEN EXISTS (SELECT 1 FROM "
            "cmp_takes t WHERE t.offer_id = m.offer_id) THEN 1 ELSE 0 END FROM cmp_members m "
            "JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
            f"WHERE m.arm = 'offer' AND c.campaign_id IN ({marks})",
            campaigns,
        )
    )
    newest = newest_day(tx)
    known: dict[str, dict[str, dict[str, Any]]] = {}
    features, labels, tests = [], [], []
    for cid, start, member, took in rows:
        if cid not in known:
            as_of = dt.date.fromisoformat(start) - dt.timedelta(days=1)
            if newest is not None:
                as_of = min(as_of, newest)
            known[cid] = member_features(tx, dialect, as_of)
        found = known[cid].get(member)
        if found is None:
            continue  # enrolled after the campaign's features were taken
        features.append(found)
        labels.append(took)
        tests.append(_in_test(cid, member))
    return features, labels, tests


# -- the fit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A fitted model as plain numbers: its columns, the training rows' mean and
    scale of each, a coefficient each and the intercept; with how it measured."""

    columns: list[str]
    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    auc: float | None
    n_train: int
    n_test: int
    base_rate: float
    campaigns: list[str]
    data_key: str

    def score(self, feature: dict[str, Any]) -> float:
        """The log-odds of taking an offer: a member's standardised features times
        the coefficients (ranking by it ranks by probability)."""
        total = self.intercept
        for value, mean, scale, weight in zip(
            _row(self.columns, feature), self.mean, self.scale, self.coefficients, strict=True
        ):
            total += weight * (value - mean) / scale
        return total


def _row(columns: list[str], feature: dict[str, Any]) -> list[float]:
    out = []
    for column in columns:
        if column in SCORES:
            out.append(float(feature[column]))
        else:
            kind, _, value = column.partition("=")
            out.append(1.0 if str(feature[kind]) == value else 0.0)
    return out


def _columns(tx: Tx, features: list[dict[str, Any]]) -> list[str]:
    """RFM scores, then one column per tier, age band and store seen in training
    (a value never seen cannot be learnt; members with one score 0 on it)."""
    seen = {kind: {str(f[kind]) for f in features} for kind in ("tier", "age", "store")}
    tiers = [t.name for t in sorted(rules_of(tx).tiers, key=lambda t: t.min_spend)]
    return [
        *SCORES,
        *(f"tier={name}" for name in tiers if name in seen["tier"]),
        *(f"age={name}" for name in AGE_ORDER if name in seen["age"]),
        *(f"store={name}" for name in sorted(seen["store"])),
    ]


def fit(tx: Tx, dialect: str, campaign_id: str | None = None) -> Fitted:
    """Fit on the training rows, measure on the test rows (``no_training_data``
    when there are too few takers or non-takers to learn anything)."""
    np, regression, roc_auc = _libraries()
    campaigns, key = training_data(tx, campaign_id)
    features, labels, tests = _labelled(tx, dialect, campaigns)
    takers = sum(labels)
    train = [i for i, test in enumerate(tests) if not test]
    train_takers = sum(labels[i] for i in train)
    if (
        len(labels) < MIN_ROWS
        or min(takers, len(labels) - takers) < MIN_CLASS
        or min(train_takers, len(train) - train_takers) < 2
    ):
        raise refused(
            "no_training_data",
            f"model: {len(labels)} offered members and {takers} takes to learn from; it needs "
            f"at least {MIN_ROWS} offered members, {MIN_CLASS} who took the offer and "
            f"{MIN_CLASS} who did not (campaigns with stored takes)",
            http_status=409,
        )
    columns = _columns(tx, [features[i] for i in train])
    raw = np.array([_row(columns, f) for f in features], dtype=float)
    y = np.array(labels)
    train_mask = ~np.array(tests)
    mean = raw[train_mask].mean(axis=0)
    spread = raw[train_mask].std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    x = (raw - mean) / scale
    model = regression(C=1.0, max_iter=1_000).fit(x[train_mask], y[train_mask])
    test_y = y[~train_mask]
    auc = None
    if len(set(test_y.tolist())) == 2:
        auc = float(roc_auc(test_y, model.predict_proba(x[~train_mask])[:, 1]))
    return Fitted(
        columns=columns,
        mean=[float(v) for v in mean],
        scale=[float(v) for v in scale],
        coefficients=[float(c) for c in model.coef_[0]],
        intercept=float(model.intercept_[0]),
        auc=auc,
        n_train=int(train_mask.sum()),
        n_test=int((~train_mask).sum()),
        base_rate=takers / len(labels),
        campaigns=campaigns,
        data_key=key,
    )


# -- in words ----------------------------------------------------------------------------


def describe(column: str, coefficient: float) -> tuple[str, str]:
    """(``raises``, ``lowers`` or ``little``; a sentence for the people who pick
    targets, who read words, not log-odds)."""
    if abs(coefficient) < LITTLE:
        effect, verb = "little", "has little effect on"
    else:
        effect = verb = "raises" if coefficient > 0 else "lowers"
    if column in SCORES:
        odds = math.exp(coefficient)
        return effect, (
            f"a higher {SCORES[column]} {verb} take-up (odds x{odds:.2f} per standard deviation)"
        )
    kind, _, value = column.partition("=")
    subject = {"tier": "tier", "age": "age band", "store": "home store"}[kind]
    return effect, f"{subject} {value} {verb} take-up (against the other members)"
