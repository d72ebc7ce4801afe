"""k-means clusters of members on standardised RFM and category shares.

RFM quintiles (``sync.hq.insight.audience``) cut each measure separately; clusters
find the groups the measures form together with what members buy (a young
family's baby-and-dairy trips against a smoker's quick visits). The features
come from SQL (one aggregation each); numpy and scikit-learn do the rest, from
the optional ``insight`` extra, which a till never installs.

The number of clusters is the k in 2..8 with the best silhouette score (mean
over members of how much closer each is to its own cluster than to the next;
computed on a fixed sample of at most 5,000 members for speed). Seeds are
fixed, so the same data gives the same clusters.
"""

# ruff: noqa: S608 -- SQL from constant fragments; values are bound parameters.

from __future__ import annotations

from typing import Any

from sync.errors import SyncError
from sync.hq.db import Tx
from sync.hq.insight.audience import _rfm_sql
from sync.hq.insight.reports import Period, Report

K_RANGE = range(2, 9)
SAMPLE = 5_000


def _features(tx: Tx, period: Period) -> tuple[list[str], list[str], list[list[float]]]:
    sql, params = _rfm_sql(tx, period)
    rfm = {
        str(member): [float(recency), float(frequency), float(monetary or 0)]
        for member, recency, frequency, monetary in tx.all(
            sql + "SELECT member, recency, frequency, monetary FROM named", params
        )
    }
    where, extra = period.where()
    shares: dict[str, dict[str, float]] = {}
    for member, category, amount in tx.all(
        f"SELECT member, category, SUM(amount) FROM ins_lines WHERE {where} "
        "GROUP BY member, category",
        extra,
    ):
        if str(member) in rfm and amount and amount > 0:
            shares.setdefault(str(member), {})[str(category)] = float(amount)
    categories = sorted({c for row in shares.values() for c in row})
    members = sorted(rfm)
    rows = []
    for member in members:
        spent = shares.get(member, {})
        total = sum(spent.values()) or 1.0
        rows.append(rfm[member] + [spent.get(c, 0.0) / total for c in categories])
    return members, categories, rows


def clusters(tx: Tx, period: Period) -> Report:
    try:
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score
    except ImportError:
        raise SyncError(
            "insight_extra_missing",
            "clusters need numpy and scikit-learn: pip install 'tillpoints[insight]'",
            exit_status=1,
        ) from None
    members, categories, rows = _features(tx, period)
    if len(members) < 10:
        return {"report": "clusters", "rows": [], "totals": {"members": len(members), "k": 0}}
    raw = np.array(rows, dtype=float)
    shaped = raw.copy()
    shaped[:, 1:3] = np.log1p(np.clip(shaped[:, 1:3], 0, None))  # visits and spend are skewed
    spread = shaped.std(axis=0)
    scaled = (shaped - shaped.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    best: tuple[float, int, Any] = (-2.0, 0, None)
    scores = {}
    for k in K_RANGE:
        if k >= len(members):
            break
        model = KMeans(n_clusters=k, n_init=4, random_state=0).fit(scaled)
        size = min(SAMPLE, len(members))
        score = float(silhouette_score(scaled, model.labels_, sample_size=size, random_state=0))
        scores[str(k)] = round(score, 4)
        if score > best[0]:
            best = (score, k, model)
    score, k, model = best
    labels = model.labels_
    means = raw[:, :3].mean(axis=0)
    out: list[dict[str, Any]] = []
    for cluster in range(k):
        chosen = raw[labels == cluster]
        centre = chosen.mean(axis=0)
        top = [categories[i] for i in np.argsort(-centre[3:])[:3]] if categories else []
        out.append(
            {
                "cluster": cluster,
                "size": len(chosen),
                "recency_days": round(float(centre[0]), 1),
                "visits": round(float(centre[1]), 1),
                "spend": f"{centre[2] / 100:.2f}",
                "top_categories": "+".join(top),
                "description": _words(centre, means, top),
            }
        )
    out.sort(key=lambda row: -int(row["size"]))
    totals = {"members": len(members), "k": k, "silhouette": round(score, 4), "tried": scores}
    return {"report": "clusters", "rows": out, "totals": totals}


def _words(centre: Any, means: Any, top: list[str]) -> str:
    """Each measure against the mean member's."""
    recency = "recent" if centre[0] <= means[0] else "lapsing"
    visits = "frequent" if centre[1] >= means[1] else "occasional"
    spend = "high-spending" if centre[2] >= means[2] else "modest"
    buys = ", ".join(top[:2]) if top else "nothing in particular"
    return f"{recency}, {visits}, {spend} members who mostly buy {buys}"
