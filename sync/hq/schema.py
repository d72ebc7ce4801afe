"""HQ's schema as named forward migrations, one list for both backends.

Each migration is a name and its statements, applied once in one transaction and
recorded in ``hq_migrations`` (the sqlite-migrate habit of docs/style.md). Where the
dialects differ (an auto-numbered key) the statement has a ``{serial}`` slot.
On PostgreSQL an advisory lock keeps two workers starting at once from migrating
twice.
"""

from __future__ import annotations

from sync.hq.db import HQStore
from sync.hq.keyfile import MIGRATION_LOCK, move_key_out

_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}
_MIGRATION_LOCK = MIGRATION_LOCK  # "tphq"

_001_HQ = (
    "CREATE TABLE hq_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One-time registration tokens, stored only as SHA-256 (a leaked table
    # hands out no usable token).
    "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, store TEXT NOT NULL, "
    "till TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, "
    "state TEXT NOT NULL, device TEXT)",
    # A device's head row is the lock every upload of that device takes.
    "CREATE TABLE devices (device TEXT PRIMARY KEY, store TEXT NOT NULL, till TEXT NOT NULL, "
    "public_key TEXT NOT NULL, current_key TEXT NOT NULL, transport_key TEXT NOT NULL, "
    "state TEXT NOT NULL, head_seq BIGINT NOT NULL, head_hash TEXT NOT NULL, "
    "registered_at TEXT NOT NULL, frozen_reason TEXT)",
    # The journals as uploaded, plus facts extracted once at ingest so that
    # balances and reports are SQL aggregations (sync.hq.extract).
    "CREATE TABLE entries (device TEXT NOT NULL, seq BIGINT NOT NULL, ts TEXT NOT NULL, "
    "kind TEXT NOT NULL, staff TEXT, body TEXT NOT NULL, prev TEXT NOT NULL, "
    "hash TEXT NOT NULL, sig TEXT NOT NULL, account TEXT, delta BIGINT NOT NULL, "
    "expired BIGINT NOT NULL, amount BIGINT NOT NULL, card TEXT, member_id TEXT, "
    "phone_key TEXT, visit SMALLINT NOT NULL, PRIMARY KEY (device, seq))",
    "CREATE INDEX entries_account ON entries (account)",
    "CREATE INDEX entries_member ON entries (member_id)",
    "CREATE INDEX entries_phone ON entries (phone_key)",
    # Batches are numbered in commit order (sync.hq.ingest): the download cursor.
    "CREATE TABLE batches (batch_no BIGINT PRIMARY KEY, device TEXT NOT NULL, "
    "first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, stored_at TEXT NOT NULL)",
    "CREATE TABLE batch_clock (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
    "INSERT INTO batch_clock (id, n) VALUES (1, 0)",
    "CREATE TABLE alerts (alert_id {serial}, kind TEXT NOT NULL, device TEXT, "
    "detail TEXT NOT NULL, dedupe TEXT NOT NULL UNIQUE, raised_at TEXT NOT NULL)",
)

# Operator credentials for the reports pages (sync.hq.insight.operators), stored only
# as SHA-256: bearer tokens, one-time login links and browser sessions.
_002_OPERATORS = (
    "CREATE TABLE hq_operator_tokens (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "kind TEXT NOT NULL, parent TEXT, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, "
    "used_at TEXT, revoked_at TEXT)",
    "CREATE INDEX hq_operator_tokens_name ON hq_operator_tokens (name)",
)

# Campaigns and their offers (sync.hq.insight.campaigns, which also runs these
# idempotently on its own: IF NOT EXISTS). Insight's tables are data here, so that
# HQ's storage imports no insight code (tests/test_floors.py).
CAMPAIGNS_DDL = (
    "CREATE TABLE IF NOT EXISTS cmp_campaigns (campaign_id TEXT PRIMARY KEY, "
    "name TEXT NOT NULL UNIQUE, target TEXT NOT NULL, scope TEXT NOT NULL, "
    "offer_kind TEXT NOT NULL, offer_value TEXT NOT NULL, title TEXT NOT NULL, "
    "valid_from TEXT NOT NULL, valid_to TEXT NOT NULL, holdout_bp INTEGER NOT NULL, "
    "seed BIGINT NOT NULL, created_at TEXT NOT NULL, offered BIGINT NOT NULL, "
    "held_out BIGINT NOT NULL)",
    # arm: 'offer' (offer_id set) or 'holdout'; segment and store as at assignment.
    "CREATE TABLE IF NOT EXISTS cmp_members (campaign_id TEXT NOT NULL, "
    "member_id TEXT NOT NULL, store TEXT NOT NULL, segment TEXT NOT NULL, arm TEXT NOT NULL, "
    "offer_id TEXT UNIQUE, PRIMARY KEY (campaign_id, member_id))",
    "CREATE INDEX IF NOT EXISTS cmp_members_store ON cmp_members (store)",
    "CREATE TABLE IF NOT EXISTS cmp_state (id INTEGER PRIMARY KEY, batch_no BIGINT NOT NULL)",
    # One row per offer_take entry stored at HQ (points: a multiplier's bonus; value:
    # a voucher's money value in minor units).
    "CREATE TABLE IF NOT EXISTS cmp_takes (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "offer_id TEXT NOT NULL, member TEXT, store TEXT NOT NULL, day TEXT NOT NULL, "
    "receipt TEXT, points BIGINT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (device, seq))",
    "CREATE INDEX IF NOT EXISTS cmp_takes_offer ON cmp_takes (offer_id)",
)

# Most entries are earns, with no member id or phone key: indexing only the rows
# that have one keeps ingest from writing two index entries per earn for nothing.
# Every query on these columns is `= ?` or `IS NOT NULL`, which both backends match
# to a partial index.
_004_PARTIAL_INDEXES = (
    "DROP INDEX entries_member",
    "DROP INDEX entries_phone",
    "CREATE INDEX entries_member ON entries (member_id) WHERE member_id IS NOT NULL",
    "CREATE INDEX entries_phone ON entries (phone_key) WHERE phone_key IS NOT NULL",
)

# Fitted campaign response models (sync.hq.insight.stored_model), one row per fit,
# numbered per scope ('*' or a campaign id). campaigns, columns, mean, scale and
# coefficients are JSON lists; floats are stored exactly (JSON and IEEE doubles).
_005_CAMPAIGN_MODELS = (
    "CREATE TABLE cmp_models (scope TEXT NOT NULL, version BIGINT NOT NULL, "
    "fitted_at TEXT NOT NULL, campaigns TEXT NOT NULL, data_key TEXT NOT NULL, "
    "auc DOUBLE PRECISION, n_train BIGINT NOT NULL, n_test BIGINT NOT NULL, "
    "base_rate DOUBLE PRECISION NOT NULL, columns TEXT NOT NULL, mean TEXT NOT NULL, "
    "scale TEXT NOT NULL, coefficients TEXT NOT NULL, intercept DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (scope, version))",
)

# Every phone lookup a till asked of HQ (sync.hq.directory.phone_lookup): the rate
# limit counts them, and they are the audit trail of who looked up whom.
_007_PHONE_LOOKUPS = (
    "CREATE TABLE phone_lookups (device TEXT NOT NULL, at TEXT NOT NULL, member_id TEXT)",
    "CREATE INDEX phone_lookups_device ON phone_lookups (device, at)",
)

# HQ's console (sync.hq.console, issue 16): operator roles, the audit log of every
# console action, cards blocked chain-wide (numbered from batch_clock, so a delta
# carries them in commit order with the batches), acknowledged alerts, and what
# HQ last heard from each till.
_008_CONSOLE = (
    "ALTER TABLE hq_operator_tokens ADD COLUMN role TEXT",
    "CREATE TABLE hq_audit (audit_id {serial}, at TEXT NOT NULL, operator TEXT NOT NULL, "
    "role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, "
    "detail TEXT NOT NULL)",
    "CREATE TABLE hq_card_blocks (card TEXT PRIMARY KEY, member_id TEXT, "
    "batch_no BIGINT NOT NULL, blocked_at TEXT NOT NULL, operator TEXT NOT NULL, "
    "reason TEXT NOT NULL)",
    "CREATE INDEX hq_card_blocks_batch ON hq_card_blocks (batch_no)",
    "CREATE TABLE hq_alert_acks (alert_key TEXT PRIMARY KEY, at TEXT NOT NULL, "
    "operator TEXT NOT NULL, note TEXT NOT NULL)",
    "ALTER TABLE devices ADD COLUMN last_seen_at TEXT",
    "ALTER TABLE devices ADD COLUMN clock_skew_s BIGINT",
    "ALTER TABLE devices ADD COLUMN software TEXT",
)

# Member privacy (issue 17, sync.hq.member_keys and sync.hq.scrub): the keys that open
# sealed enrolments, held outside the stored journals (destroying one erases the
# member's personal data); erasures, numbered from batch_clock so that the signed
# download carries them to every till in commit order; HQ-side consent decisions.
_009_PRIVACY = (
    "CREATE TABLE hq_member_keys (member_id TEXT PRIMARY KEY, key TEXT NOT NULL, "
    "device TEXT NOT NULL, stored_at TEXT NOT NULL)",
    "CREATE TABLE hq_erasures (member_id TEXT PRIMARY KEY, batch_no BIGINT NOT NULL, "
    "erased_at TEXT NOT NULL, operator TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE INDEX hq_erasures_batch ON hq_erasures (batch_no)",
    "CREATE TABLE hq_consents (member_id TEXT PRIMARY KEY, marketing SMALLINT NOT NULL, "
    "at TEXT NOT NULL, operator TEXT NOT NULL)",
)

# HQ's suggestions at the counter (issue 15, sync.hq.insight.suggestions): what HQ
# suggested (kept after a suggestion is over, so reports can count "suggested";
# ``current`` marks the set the download sends), and the answers the tills journaled
# (``suggestion_answer`` entries, read by batch cursor like the offer takes).
_010_SUGGESTIONS = (
    "CREATE TABLE hq_suggestions (suggestion_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, "
    "reason TEXT NOT NULL, text TEXT NOT NULL, offer_id TEXT NOT NULL, "
    "offer_kind TEXT NOT NULL, offer_value TEXT NOT NULL, offer_title TEXT NOT NULL, "
    "campaign TEXT NOT NULL, home_store TEXT NOT NULL, last_visit TEXT NOT NULL, "
    "valid_from TEXT NOT NULL, valid_to TEXT NOT NULL, rank INTEGER NOT NULL, "
    "made_at TEXT NOT NULL, current SMALLINT NOT NULL)",
    "CREATE INDEX hq_suggestions_current ON hq_suggestions (current, rank)",
    "CREATE INDEX hq_suggestions_member ON hq_suggestions (member_id)",
    "CREATE TABLE hq_suggestion_answers (device TEXT NOT NULL, seq BIGINT NOT NULL, "
    "suggestion_id TEXT NOT NULL, member_id TEXT NOT NULL, reason TEXT NOT NULL, "
    "outcome TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, PRIMARY KEY (device, seq))",
    "CREATE INDEX hq_suggestion_answers_id ON hq_suggestion_answers (suggestion_id)",
    "CREATE TABLE hq_suggestion_state (id INTEGER PRIMARY KEY, batch_no BIGINT NOT NULL)",
    "INSERT INTO hq_suggestion_state (id, batch_no) VALUES (1, 0)",
)

# Incremental aggregates (issue 18, sync.hq.insight.aggregates): what the reports
# page and the member reports read instead of scanning every fact. Each is kept up to
# date by the same SQL as the facts refresh reads each page of batches, and can be
# rebuilt from the facts at any time (``aggregates.rebuild``). Sales by store, day,
# hour and weekday; receipt lines by store, day and category; points issued, taken
# and expired by day; and one row per account (points, the first store it was seen
# at, earns, first and last earn day, visits, spend, and the points of its lots
# that expire more than 30 and 90 days after the newest sale: a30 and a90).
_011_AGGREGATES = (
    "CREATE TABLE agg_sales (store TEXT NOT NULL, day TEXT NOT NULL, hour INTEGER NOT NULL, "
    "weekday INTEGER NOT NULL, spend BIGINT NOT NULL, receipts BIGINT NOT NULL, "
    "PRIMARY KEY (store, day, hour, weekday))",
    "CREATE INDEX agg_sales_day ON agg_sales (day)",
    "CREATE TABLE agg_lines (store TEXT NOT NULL, day TEXT NOT NULL, category TEXT NOT NULL, "
    "spend BIGINT NOT NULL, receipts BIGINT NOT NULL, PRIMARY KEY (store, day, category))",
    "CREATE INDEX agg_lines_day ON agg_lines (day)",
    "CREATE TABLE agg_ledger (day TEXT PRIMARY KEY, issued BIGINT NOT NULL, "
    "taken BIGINT NOT NULL, expired BIGINT NOT NULL)",
    "CREATE TABLE agg_members (member TEXT PRIMARY KEY, seen TEXT, points BIGINT NOT NULL, "
    "entries BIGINT NOT NULL, earns BIGINT NOT NULL, last_no INTEGER, first_no INTEGER, "
    "visits BIGINT NOT NULL, monetary BIGINT NOT NULL, a30 BIGINT NOT NULL, "
    "a90 BIGINT NOT NULL)",
    # built: 0 until the aggregates are made from the facts stored before them;
    # expiry_day: the day a30 and a90 are counted from; lots_day: the newest lot's day.
    "CREATE TABLE agg_state (id INTEGER PRIMARY KEY, built SMALLINT NOT NULL, "
    "expiry_day TEXT, lots_day TEXT)",
    # The console's member page reads the few consent entries that name a member.
    "CREATE INDEX entries_consent ON entries (ts) WHERE kind = 'consent'",
    "INSERT INTO agg_state (id, built) VALUES (1, 0)",
)

# The reports page at a million members (issue 18): ``agg_members`` keeps the
# enrolled member's home store (``home``: NULL for an account no enrolment names),
# so liability and segments read no join; ``agg_liability`` holds the liability by
# store, kept as each member's row changes: ``dirty`` marks a row a refresh moved,
# ``c_*`` what the row is counted as in ``agg_liability`` (its store, points and
# what expires within 30 and 90 days) and in the segment sizes' histograms
# (``agg_recency``: last earn day and visits; ``agg_spend``: spend; enrolled members
# who earned), taken out and put back when it is recounted. ``agg_sales_total`` and
# ``agg_lines_total`` are ``agg_sales`` and ``agg_lines`` without the day: the page's
# whole history in a few thousand rows.
_012_REPORT_AGGREGATES = (
    "ALTER TABLE agg_members ADD COLUMN home TEXT",
    "ALTER TABLE agg_members ADD COLUMN dirty SMALLINT NOT NULL DEFAULT 1",
    "ALTER TABLE agg_members ADD COLUMN c_store TEXT",
    "ALTER TABLE agg_members ADD COLUMN c_points BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE agg_members ADD COLUMN c_x30 BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE agg_members ADD COLUMN c_x90 BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE agg_members ADD COLUMN c_last INTEGER",
    "ALTER TABLE agg_members ADD COLUMN c_visits BIGINT",
    "ALTER TABLE agg_members ADD COLUMN c_monetary BIGINT",
    "CREATE INDEX agg_members_dirty ON agg_members (member) WHERE dirty = 1",
    "CREATE INDEX agg_members_homeless ON agg_members (member) WHERE home IS NULL",
    "CREATE TABLE agg_liability (store TEXT PRIMARY KEY, accounts BIGINT NOT NULL, "
    "points BIGINT NOT NULL, x30 BIGINT NOT NULL, x90 BIGINT NOT NULL)",
    "CREATE TABLE agg_recency (last_no INTEGER NOT NULL, visits BIGINT NOT NULL, "
    "members BIGINT NOT NULL, PRIMARY KEY (last_no, visits))",
    "CREATE TABLE agg_spend (monetary BIGINT PRIMARY KEY, members BIGINT NOT NULL)",
    "CREATE TABLE agg_sales_total (store TEXT NOT NULL, hour INTEGER NOT NULL, "
    "weekday INTEGER NOT NULL, spend BIGINT NOT NULL, receipts BIGINT NOT NULL, "
    "PRIMARY KEY (store, hour, weekday))",
    "CREATE TABLE agg_lines_total (store TEXT NOT NULL, category TEXT NOT NULL, "
    "spend BIGINT NOT NULL, receipts BIGINT NOT NULL, PRIMARY KEY (store, category))",
    # From 011's aggregates; the member rows (all dirty) are counted at the next refresh.
    "INSERT INTO agg_sales_total (store, hour, weekday, spend, receipts) SELECT store, hour, "
    "weekday, SUM(spend), SUM(receipts) FROM agg_sales GROUP BY store, hour, weekday",
    "INSERT INTO agg_lines_total (store, category, spend, receipts) SELECT store, category, "
    "SUM(spend), SUM(receipts) FROM agg_lines GROUP BY store, category",
)

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("001_hq", _001_HQ),
    ("002_operators", _002_OPERATORS),
    ("003_campaigns", CAMPAIGNS_DDL),
    ("004_partial_indexes", _004_PARTIAL_INDEXES),
    ("005_campaign_models", _005_CAMPAIGN_MODELS),
    ("007_phone_lookups", _007_PHONE_LOOKUPS),
    ("008_console", _008_CONSOLE),
    ("009_privacy", _009_PRIVACY),
    ("010_suggestions", _010_SUGGESTIONS),
    ("011_aggregates", _011_AGGREGATES),
    ("012_report_aggregates", _012_REPORT_AGGREGATES),
)


def migrate(store: HQStore) -> None:
    with store.write() as tx:
        if store.dialect == "postgresql":
            tx.run(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        tx.run("CREATE TABLE IF NOT EXISTS hq_migrations (name TEXT PRIMARY KEY, at TEXT)")
        done = {str(row[0]) for row in tx.all("SELECT name FROM hq_migrations")}
        for name, statements in MIGRATIONS:
            if name in done:
                continue
            for statement in statements:
                tx.run(statement.replace("{serial}", _SERIAL[store.dialect]))
            tx.run("INSERT INTO hq_migrations (name, at) VALUES (?, CURRENT_TIMESTAMP)", (name,))
    # 006_key_file: a key an earlier version kept in hq_meta goes out to its file.
    move_key_out(store)
