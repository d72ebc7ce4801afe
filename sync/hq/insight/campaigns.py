"""Campaigns: offers HQ targets at members, sent to the counter, measured against a
hold-out (issue 8, "Offers: back to the counter").

A campaign names its target (an RFM segment, a home store, a list of member
ids, or the top N members by the response model of ``sync.hq.insight.model``), one
offer (a points multiplier, a money voucher or a gift), its days and a hold-out
share. Every targeted member is assigned once, deterministically from the
campaign's seed and the member id, to the offer or to the hold-out (who get
nothing, so that the response can be measured: ``sync.hq.insight.response``).
Assignments are rows of ``cmp_members``; offered members get an ``offer_id``.

Offers travel to tills in the signed download deltas (``sync.hq.directory`` calls
``device_offers``): the offers of the members whose home store is the till's
store, plus every offer of a chain-wide campaign (which is why a chain-wide
campaign is capped at ``CHAIN_WIDE_MAX`` offered members). The till takes an offer
with an ``offer_take`` journal entry, which ``sync.hq.insight.takes`` reads back
(the tables, the takes and the ``offer_reused`` alert live there, below both this
module and the response model that targets ``model:...`` campaigns).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import InvalidInput
from agent.money import format_amount, parse_amount
from sync.errors import invalid, refused
from sync.hq.db import HQStore, Tx
from sync.hq.insight.takes import ensure_tables, has_tables, refresh_takes

if TYPE_CHECKING:
    from sync.hq.insight.model import Fitted

CHAIN_WIDE_MAX = 5_000  # offered members of one chain-wide campaign (sent to every till)
DELTA_MAX = 20_000  # offers in one delta
MAX_DAYS = 366
MODEL_TOP_MAX = 1_000_000  # members one model:TOPN campaign targets
NO_SEGMENT = "no_purchase"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,59}", re.ASCII)


# -- the definition -------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    target_kind: str  # segment, store, members
    target: str  # the segment or store name, or the file
    members: tuple[str, ...]  # for members:FILE
    offer_kind: str
    offer_value: str
    title: str
    valid_from: str
    valid_to: str
    holdout_bp: int
    seed: int
    chain_wide: bool

    @property
    def campaign_id(self) -> str:
        return "c" + hashlib.sha256(self.name.encode()).hexdigest()[:8]


def _text(values: dict[str, Any], key: str, code: str) -> str:
    value = values.get(key)
    if not isinstance(value, str) or not value.strip():
        raise invalid(code, f"{key}: required")
    return value.strip()


def _date(values: dict[str, Any], key: str) -> dt.date:
    value = values.get(key)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(_text(values, key, "invalid_date"))
    except ValueError:
        raise invalid(
            "invalid_date", f"{key}: {str(value)[:20]!r} is not a date YYYY-MM-DD"
        ) from None


def parse_offer(text: str) -> tuple[str, str, str]:
    """``multiplier:2``, ``voucher:5.00`` or ``gift:TEXT`` -> (kind, value, default title)."""
    kind, _, value = text.partition(":")
    value = value.strip()
    if kind == "multiplier":
        try:
            factor = Decimal(value)
        except InvalidOperation:
            factor = Decimal(0)
        exponent = factor.as_tuple().exponent
        if (
            not factor.is_finite()
            or not 1 < factor <= 10
            or not isinstance(exponent, int)
            or (exponent < -2)
        ):
            raise invalid("invalid_offer", "offer: multiplier:M with 1 < M <= 10 (e.g. 2 or 1.5)")
        shown = format(factor.normalize(), "f")
        return kind, shown, f"{shown}x points"
    if kind == "voucher":
        try:
            minor = parse_amount(value, "offer")
        except InvalidInput as error:
            raise invalid("invalid_offer", f"offer: voucher:AMOUNT, {error.message}") from None
        if minor > 1000_00:
            raise invalid("invalid_offer", "offer: a voucher is at most 1000.00")
        return kind, format_amount(minor), f"{format_amount(minor)} voucher"
    if kind == "gift":
        if not 1 <= len(value) <= 80 or not value.isprintable():
            raise invalid("invalid_offer", "offer: gift:TEXT with 1 to 80 printable characters")
        return kind, value, value
    raise invalid("invalid_offer", "offer: one of multiplier:M, voucher:AMOUNT, gift:TEXT")


def _holdout(value: Any) -> int:
    """A share 0..0.9 as basis points (at most four decimals)."""
    if value is None:
        return 0
    try:
        share = Decimal(str(value))
    except InvalidOperation:
        share = Decimal(-1)
    if not share.is_finite() or not 0 <= share <= Decimal("0.9") or share * 10_000 % 1:
        raise invalid("invalid_holdout", "holdout: a share from 0 to 0.9 (e.g. 0.1)")
    return int(share * 10_000)


def _members_file(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise invalid("invalid_target", f"target: cannot read {path}: {error}") from None
    ids = []
    for line in text.splitlines():
        first = line.split(",")[0].strip()
        if first and not first.startswith("#") and first != "member_id":
            ids.append(first)
    if not ids:
        raise invalid("invalid_target", f"target: {path} lists no member ids")
    return tuple(dict.fromkeys(ids))


def parse_spec(values: dict[str, Any], base: Path | None = None) -> Spec:
    """Check a campaign definition (options, or a TOML file's keys) without touching
    the database. ``base``: the directory a ``members:FILE`` is relative to."""
    from sync.hq.insight.audience import SEGMENTS

    name = _text(values, "name", "invalid_name")
    if not _NAME.fullmatch(name):
        raise invalid("invalid_name", "name: 1 to 60 letters, digits, spaces and . _ -")
    target_text = _text(values, "target", "invalid_target")
    target_kind, _, target = target_text.partition(":")
    target = target.strip()
    members: tuple[str, ...] = ()
    if target_kind == "segment":
        if target not in SEGMENTS:
            raise invalid(
                "unknown_segment",
                f"target: {target[:40]!r} is not a segment ({', '.join(SEGMENTS)})",
            )
    elif target_kind == "store":
        if not target:
            raise invalid("invalid_target", "target: store:STORE")
    elif target_kind == "members":
        if not target:
            raise invalid("invalid_target", "target: members:FILE")
        path = Path(target)
        members = _members_file(path if path.is_absolute() or base is None else base / path)
    elif target_kind == "model":
        parse_model_target(target)
    else:
        raise invalid(
            "invalid_target",
            "target: one of segment:NAME, store:S, members:FILE, model:TOPN, model:CAMPAIGN:TOPN",
        )
    kind, value, title = parse_offer(_text(values, "offer", "invalid_offer"))
    start, end = _date(values, "from"), _date(values, "to")
    if end < start:
        raise invalid("invalid_date", "to: is before from")
    if (end - start).days >= MAX_DAYS:
        raise invalid("invalid_date", f"to: a campaign runs at most {MAX_DAYS} days")
    given_title = values.get("title")
    if given_title is not None:
        if not isinstance(given_title, str) or not 1 <= len(given_title.strip()) <= 80:
            raise invalid("invalid_title", "title: 1 to 80 characters")
        title = given_title.strip()
    seed = values.get("seed")
    if seed is None:
        seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
        raise invalid("invalid_seed", "seed: a whole number from 0")
    return Spec(
        name=name,
        target_kind=target_kind,
        target=target,
        members=members,
        offer_kind=kind,
        offer_value=value,
        title=title,
        valid_from=start.isoformat(),
        valid_to=end.isoformat(),
        holdout_bp=_holdout(values.get("holdout")),
        seed=seed,
        chain_wide=bool(values.get("chain_wide", False)),
    )


def parse_model_target(target: str) -> tuple[str | None, int]:
    """``TOPN`` or ``CAMPAIGN:TOPN`` (of ``model:...``) -> (campaign or None, N): the
    N members the response model (``sync.hq.insight.model``) scores highest, fitted on
    every campaign with takes or on CAMPAIGN alone. Names cannot hold a colon, so
    the last one splits."""
    campaign, _, count = target.rpartition(":")
    if not count.isdigit() or not 1 <= int(count) <= MODEL_TOP_MAX or (":" in campaign):
        raise invalid(
            "invalid_target",
            f"target: model:TOPN or model:CAMPAIGN:TOPN with TOPN from 1 to {MODEL_TOP_MAX}",
        )
    return (campaign.strip() or None), int(count)


def load_file(path: Path) -> dict[str, Any]:
    """A campaign as TOML: the options' names as keys (``from``, ``to``, ``holdout``)."""
    try:
        values = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise invalid("invalid_file", f"file: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise invalid("invalid_file", f"file: {path} is not TOML: {error}") from None
    campaign = values.get("campaign", values)
    if not isinstance(campaign, dict):
        raise invalid("invalid_file", "file: [campaign] must be a table")
    return dict(campaign)


def in_holdout(seed: int, member_id: str, holdout_bp: int) -> bool:
    """The deterministic draw: the same seed and member always land in the same arm."""
    digest = hashlib.sha256(f"{seed}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < holdout_bp


# -- creating and listing --------------------------------------------------------------


def _targets(tx: Tx, spec: Spec, dialect: str, model: Fitted | None) -> list[tuple[str, str, str]]:
    """(member_id, home store, segment) of every targeted member, sorted; ``model``
    scores a ``model:...`` target."""
    from sync.hq.insight.audience import segments
    from sync.hq.insight.model import newest_day
    from sync.hq.insight.reports import Period

    as_of = newest_day(tx) or dt.date.today()
    period = Period(None, as_of.isoformat(), None, as_of, dialect)
    segment_of = {r["member_id"]: r["segment"] for r in segments(tx, period)["rows"]}
    homes = {str(m): str(s) for m, s in tx.all("SELECT member_id, store FROM ins_members")}
    if spec.target_kind == "segment":
        chosen = sorted(m for m, seg in segment_of.items() if seg == spec.target and m in homes)
    elif spec.target_kind == "store":
        chosen = sorted(m for m, store in homes.items() if store == spec.target)
        if not chosen:
            raise invalid("unknown_store", f"target: no members enrolled at store {spec.target!r}")
    elif model is not None:
        from sync.hq.insight.stored_model import top_members

        _, count = parse_model_target(spec.target)
        chosen = sorted(m for m in top_members(tx, dialect, model, count) if m in homes)
    else:
        unknown = [m for m in spec.members if m not in homes]
        if unknown:
            raise invalid(
                "unknown_member",
                f"target: {len(unknown)} unknown member ids in {spec.target} "
                f"(first: {unknown[0][:40]!r})",
            )
        chosen = sorted(spec.members)
    return [(m, homes[m], segment_of.get(m, NO_SEGMENT)) for m in chosen]


def add_campaign(
    store: HQStore, spec: Spec, now: dt.datetime, audit: Callable[[Tx], None] | None = None
) -> dict[str, Any]:
    """Assign the targeted members and store the campaign, in one transaction
    (with ``audit``'s row, when the console adds it)."""
    from sync.hq.insight.facts import refresh

    refresh(store)
    ensure_tables(store)
    stored = None
    if spec.target_kind == "model":
        from sync.hq.insight.stored_model import ensure

        refresh_takes(store)  # the model learns from every take stored so far
        stored = ensure(store, parse_model_target(spec.target)[0], now)
    with store.read() as tx:
        targets = _targets(tx, spec, store.dialect, stored.model if stored else None)
    if not targets:
        raise refused("empty_target", f"target: {spec.target_kind}:{spec.target} has no members")
    rows: list[tuple[Any, ...]] = []
    offered = 0
    for member, home, segment in targets:
        if in_holdout(spec.seed, member, spec.holdout_bp):
            rows.append((spec.campaign_id, member, home, segment, "holdout", None))
        else:
            offered += 1
            offer_id = f"{spec.campaign_id}-{offered}"
            rows.append((spec.campaign_id, member, home, segment, "offer", offer_id))
    if spec.chain_wide and offered > CHAIN_WIDE_MAX:
        raise refused(
            "too_many_offers",
            f"target: a chain-wide campaign goes to every till: at most {CHAIN_WIDE_MAX} "
            f"offered members, not {offered}",
        )
    with store.write() as tx:
        clash = tx.locked(
            "SELECT name FROM cmp_campaigns WHERE name = ? OR campaign_id = ?",
            (spec.name, spec.campaign_id),
        )
        if clash is not None:
            raise refused("campaign_exists", f"name: a campaign {spec.name!r} already exists")
        tx.run(
            "INSERT INTO cmp_campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                spec.campaign_id,
                spec.name,
                f"{spec.target_kind}:{spec.target}",
                "chain" if spec.chain_wide else "home",
                spec.offer_kind,
                spec.offer_value,
                spec.title,
                spec.valid_from,
                spec.valid_to,
                spec.holdout_bp,
                spec.seed,
                now.astimezone(dt.UTC).isoformat(timespec="seconds"),
                offered,
                len(rows) - offered,
            ),
        )
        tx.many("INSERT INTO cmp_members VALUES (?, ?, ?, ?, ?, ?)", rows)
        if audit is not None:
            audit(tx)
    return {
        "campaign_id": spec.campaign_id,
        "name": spec.name,
        "target": f"{spec.target_kind}:{spec.target}",
        "offer": f"{spec.offer_kind}:{spec.offer_value}",
        "title": spec.title,
        "from": spec.valid_from,
        "to": spec.valid_to,
        "holdout": format(Decimal(spec.holdout_bp) / 10_000, "f"),
        "seed": spec.seed,
        "scope": "chain" if spec.chain_wide else "home",
        "targeted": len(rows),
        "offered": offered,
        "held_out": len(rows) - offered,
        **({"model": {"version": stored.version, "fitted_at": stored.fitted_at}} if stored else {}),
    }


def list_campaigns(store: HQStore) -> dict[str, Any]:
    ensure_tables(store)
    refresh_takes(store)
    with store.read() as tx:
        rows = tx.all(
            "SELECT c.campaign_id, c.name, c.target, c.scope, c.offer_kind, c.offer_value, "
            "c.title, c.valid_from, c.valid_to, c.holdout_bp, c.seed, c.offered, c.held_out, "
            "(SELECT COUNT(DISTINCT t.offer_id) FROM cmp_takes t JOIN cmp_members m "
            "ON m.offer_id = t.offer_id WHERE m.campaign_id = c.campaign_id) "
            "FROM cmp_campaigns c ORDER BY c.valid_from, c.name"
        )
    campaigns = []
    for row in rows:
        cid, name, target, scope, kind, value, title, start, end, bp, seed, offered, held = row[:13]
        campaigns.append(
            {
                "campaign_id": str(cid),
                "name": str(name),
                "target": str(target),
                "scope": str(scope),
                "offer": f"{kind}:{value}",
                "title": str(title),
                "from": str(start),
                "to": str(end),
                "holdout": format(Decimal(int(bp)) / 10_000, "f"),
                "seed": int(seed),
                "offered": int(offered),
                "held_out": int(held),
                "taken": int(row[13] or 0),
            }
        )
    return {"campaigns": campaigns}


# -- to the tills ----------------------------------------------------------------------


def device_offers(tx: Tx, dialect: str, store_id: str, today: dt.date) -> list[dict[str, str]]:
    """The offers a till of ``store_id`` holds: its home members' and chain-wide ones,
    not yet over, not yet seen taken anywhere (as of the last ``refresh_takes``)."""
    if not has_tables(tx, dialect):
        return []
    rows = tx.all(
        "SELECT m.offer_id, m.member_id, c.campaign_id, c.offer_kind, c.offer_value, c.title, "
        "c.valid_from, c.valid_to FROM cmp_members m "
        "JOIN cmp_campaigns c ON c.campaign_id = m.campaign_id "
        "WHERE m.arm = 'offer' AND c.valid_to >= ? AND (m.store = ? OR c.scope = 'chain') "
        "AND NOT EXISTS (SELECT 1 FROM cmp_takes t WHERE t.offer_id = m.offer_id) "
        "ORDER BY c.valid_to, m.offer_id LIMIT ?",
        ((today - dt.timedelta(days=1)).isoformat(), store_id, DELTA_MAX),
    )
    keys = ("offer_id", "member_id", "campaign", "kind", "value", "title")
    return [dict(zip((*keys, "valid_from", "valid_to"), map(str, r), strict=True)) for r in rows]
