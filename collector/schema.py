"""The collector's tables (SQLAlchemy Core). Alembic revisions create exactly this; a test
compares the migrated database with this metadata on SQLite and PostgreSQL.

Times are Unix nanoseconds and money is integer picos (1e-12 of the price book's currency), in
BIGINT columns, so both dialects store and sum them exactly.
"""

from __future__ import annotations

import sqlalchemy as sa

# Explicit constraint names: migrations can refer to them, and both dialects agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    # Keys of the price book: `profile` of hardware or cloud, `site` of energy.
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
    sa.Column("last_seen_unix_ns", sa.BigInteger, nullable=False),
    # What the device last reported about itself.
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("cpu_cores", sa.Integer, nullable=False),
    sa.Column("platform", sa.Text, nullable=False),
    sa.Column("agent_version", sa.Text, nullable=False),
    # Kept by ingest in the same transaction as the inserts: counting records would scan them.
    sa.Column("record_count", sa.BigInteger, nullable=False),
    # The earliest start of its records (NULL before the first): its service starts then if it
    # was added later (collector.charges). Since migration 0006.
    sa.Column("first_start_unix_ns", sa.BigInteger, nullable=True),
)

# Up to two live tokens per device, so a rotation never locks the device out.
device_tokens = sa.Table(
    "device_tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), nullable=False, index=True),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
)

# A token rotation under way (at most one per device). The new token is derived from the old
# one and the nonce (collector.tokens.rotated_token) when the device presents the old one; its
# SHA-256 is recorded here and in device_tokens then, and the old token's row goes when the
# device first pushes with the new one.
device_rotations = sa.Table(
    "device_rotations",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("old_token_sha256", sa.String(64), nullable=False),
    # NULL until the new token is first handed to the device.
    sa.Column("new_token_sha256", sa.String(64), nullable=True),
    sa.Column("started_unix_ns", sa.BigInteger, nullable=False),
)

# Operators' bearer tokens for the HTTP and gRPC admin APIs (collector.auth), by role.
admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(64), nullable=False),
    # collector.tokens.ROLES
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
)

price_books = sa.Table(
    "price_books",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("effective_from_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
)

records = sa.Table(
    "records",
    metadata,
    # The idempotency key: a replayed batch conflicts here and is not counted twice.
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    # agent.record.UsageRecord, field for field.
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
    sa.Column("execution_provider", sa.Text, nullable=False),
    sa.Column("batch_size", sa.BigInteger, nullable=False),
    sa.Column("input_bytes", sa.BigInteger, nullable=False),
    sa.Column("output_bytes", sa.BigInteger, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("start_unix_ns", sa.BigInteger, nullable=False, index=True),
    sa.Column("duration_ns", sa.BigInteger, nullable=False),
    sa.Column("cpu_time_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("error_type", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("pid", sa.BigInteger, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("gpu_time_ns", sa.BigInteger, nullable=False),
    sa.Column("energy_uj", sa.BigInteger, nullable=False),
    # The energy shares with their provenance (sensor, method, interval, error); NULL when none.
    sa.Column("energy", sa.JSON(none_as_null=True), nullable=True),
    # NULL when the record carries no memory figures (not the same as zero bytes).
    sa.Column("peak_rss_bytes", sa.BigInteger, nullable=True),
    sa.Column("peak_gpu_memory_bytes", sa.BigInteger, nullable=True),
    sa.Column("model_resident_bytes", sa.BigInteger, nullable=True),
    # What the collector added on ingest.
    sa.Column("received_unix_ns", sa.BigInteger, nullable=False),
    # The device's price book keys at ingest, so reports by site keep history as it was.
    sa.Column("profile", sa.String(64), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    # Pricing and what it was derived from: the book, and the CPU share's divisor (share =
    # cpu_time_ns / 1e9 / price_cpu_cores); the book gives the rate per device-second.
    sa.Column("price_book_id", sa.Integer, sa.ForeignKey(price_books.c.id), nullable=False),
    sa.Column("price_cpu_cores", sa.Integer, nullable=False),
    sa.Column("compute_cost_pico", sa.BigInteger, nullable=False),
    sa.Column("energy_cost_pico", sa.BigInteger, nullable=False),
    # The model's token prices (input and output per 1M tokens) and its fee per request.
    sa.Column("token_cost_pico", sa.BigInteger, nullable=False),
    sa.Column("request_cost_pico", sa.BigInteger, nullable=False),
    # Effective cost (compute + energy + tokens + requests) and list cost; equal until discounts exist.
    sa.Column("cost_pico", sa.BigInteger, nullable=False),
    sa.Column("list_cost_pico", sa.BigInteger, nullable=False),
    # "" when the device's own book entries priced it; otherwise which defaults stood in.
    sa.Column("pricing_note", sa.Text, nullable=False),
    # The record's share of its inference server's queue and compute times, with provenance
    # (agent.record.ServerSide as an object); NULL when not joined. Since migration 0011.
    sa.Column("server", sa.JSON(none_as_null=True), nullable=True),
)

# Hourly sums of the records, so that a report reads one row per hour and group instead of
# every record (collector.rollups). Ingest adds the rows it actually inserted, in the same
# transaction, so the roll-ups always equal the sums of the stored records; migration 0003
# filled them from the records stored before.
ROLLUP_SPLIT = 1_000_000
ROLLUP_SUMS = (
    "count", "cost_pico", "compute_cost_pico", "energy_cost_pico", "energy_uj", "duration_ns", "cpu_time_ns",
    "token_cost_pico", "request_cost_pico",  # since migration 0004
)


def _rollup_table(name: str, time_column: str) -> sa.Table:
    """A roll-up table; `time_column` holds the start of the UTC hour or day the records
    started in."""
    return sa.Table(
        name,
        metadata,
        sa.Column(time_column, sa.BigInteger, primary_key=True),
        sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
        # SHA-256 of the group below: its texts (up to 256 characters each, and 64 tags) would
        # not fit in an index entry.
        sa.Column("group_sha256", sa.String(64), primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("runtime", sa.Text, nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        # The tag set, keys sorted.
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        # Each sum of a records column (ROLLUP_SUMS) as NAME_hi * ROLLUP_SPLIT + NAME_lo, with
        # 0 <= NAME_lo < ROLLUP_SPLIT: a few records' BIGINTs may add up past int64, where
        # SQLite would turn the sum into an inexact REAL.
        *(
            sa.Column(f"{name}_{part}", sa.BigInteger, nullable=False)
            for name in ROLLUP_SUMS for part in ("hi", "lo")
        ),
    )


cost_rollups = _rollup_table("cost_rollups", "hour_unix_ns")
# The same sums per UTC day, kept beside the hours (collector.rollups): reports read a whole
# day of the range as one row per device and group, not 24. Since migration 0012.
cost_rollups_daily = _rollup_table("cost_rollups_daily", "day_unix_ns")

# The raw-record retention policy (collector.retention): one row, id 1, inserted by migration
# 0005. Raw records that started before raw_before_unix_ns (a whole UTC hour; 0: none) have
# been deleted; their hourly roll-ups stay. It only ever moves forward.
retention = sa.Table(
    "retention",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("raw_before_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
)

# The highest seq pruned of each stream: once its raw row is gone, ON CONFLICT cannot see a
# replayed record, so ingest treats a seq at or below this one as a duplicate.
pruned_streams = sa.Table(
    "pruned_streams",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("max_seq", sa.BigInteger, nullable=False),
)

# Budgets (collector.budgets): the parsed document's fields; a deleted budget keeps its row
# (deleted_unix_ns set) so that its events keep their name.
budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("budget_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("scope_kind", sa.String(16), nullable=False),
    sa.Column("scope_value", sa.Text, nullable=False),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    # Picos of the collector's currency, or µJ.
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("thresholds", sa.JSON, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("throttle_per_second", sa.Text, nullable=True),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("deleted_unix_ns", sa.BigInteger, nullable=True),
)

# What each budget's scope spent per period (collector.budget_ledger), kept by ingest from the
# rows it inserted, in the same transaction; spent = spent_hi * ROLLUP_SPLIT + spent_lo.
budget_spend = sa.Table(
    "budget_spend",
    metadata,
    sa.Column("budget_id", sa.String(32), sa.ForeignKey(budgets.c.budget_id), primary_key=True),
    sa.Column("period_start_unix_ns", sa.BigInteger, primary_key=True),
    sa.Column("spent_hi", sa.BigInteger, nullable=False),
    sa.Column("spent_lo", sa.BigInteger, nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
)

# Threshold crossings, forecasts and anomalies: the unique key stores each exactly once,
# whichever replica or retry makes it.
budget_events = sa.Table(
    "budget_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("budget_id", sa.String(32), sa.ForeignKey(budgets.c.budget_id), nullable=False),
    sa.Column("period_start_unix_ns", sa.BigInteger, nullable=False),
    # "threshold" (key: the percent), "forecast" (key: "exceeds"), "anomaly" (key: the UTC date)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.UniqueConstraint("budget_id", "period_start_unix_ns", "kind", "key"),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", sa.String(32), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    # The HMAC-SHA256 key of the signatures (shown once when added).
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
)

# A delivery per (event, webhook live when the event was stored), inserted with the event.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("event_id", sa.Integer, sa.ForeignKey(budget_events.c.event_id), primary_key=True),
    sa.Column("webhook_id", sa.String(32), sa.ForeignKey(webhooks.c.webhook_id), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_unix_ns", sa.BigInteger, nullable=False),
    # 0: unclaimed; else a sender holds it until then.
    sa.Column("claimed_until_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("delivered_unix_ns", sa.BigInteger, nullable=True),
    sa.Column("last_error", sa.Text, nullable=False),
)

# The tag policy (collector.tag_policy): each change adds a version; the newest applies to
# every report made after it. Since migration 0008.
tag_policies = sa.Table(
    "tag_policies",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
)

# Tags an operator gives a device: its agent adds them to every record it ships that does not
# carry those keys itself (collector.device_tags). Since migration 0008.
device_default_tags = sa.Table(
    "device_default_tags",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
)

# Workload classes an operator sets per model (collector.workload_classes): NULL leaves that
# dimension to the records' own tag. Since migration 0009.
workload_classes = sa.Table(
    "workload_classes",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("criticality", sa.String(16), nullable=True),
    sa.Column("latency", sa.String(16), nullable=True),
    sa.Column("scaling", sa.String(16), nullable=True),
    sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
)

# Business KPIs (collector.kpis): the work of a model or a tag counted in a business unit,
# optionally worth value_per_unit_pico each. Since migration 0009.
kpis = sa.Table(
    "kpis",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("unit", sa.Text, nullable=False),
    # collector.kpis.MEASURES: what one unit is.
    sa.Column("measure", sa.String(16), nullable=False),
    # Exactly one of: the model, or the tag KEY=VALUE.
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("tag_key", sa.Text, nullable=True),
    sa.Column("tag_value", sa.Text, nullable=True),
    sa.Column("value_per_unit_pico", sa.BigInteger, nullable=True),
    sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
)

# Hourly sums of the records per model variant (model, version, runtime, execution provider)
# and tag set (collector.model_usage): what the model registry, right-sizing and KPI units
# read. Kept by ingest (and re-pricing) like cost_rollups, so they outlive raw-record retention.
# Since migration 0009.
MODEL_USAGE_SUMS = ("count", "cost_pico", "energy_uj", "duration_ns", "batch_size", "input_tokens", "output_tokens")
model_usage = sa.Table(
    "model_usage",
    metadata,
    sa.Column("hour_unix_ns", sa.BigInteger, primary_key=True),
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("group_sha256", sa.String(64), primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
    sa.Column("execution_provider", sa.Text, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    *(sa.Column(f"{name}_{part}", sa.BigInteger, nullable=False) for name in MODEL_USAGE_SUMS for part in ("hi", "lo")),
)

# Where each model variant runs: one row per variant and device, with the first and last record
# start seen (collector.model_usage). Since migration 0009.
model_deployments = sa.Table(
    "model_deployments",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("variant_sha256", sa.String(64), primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
    sa.Column("execution_provider", sa.Text, nullable=False),
    sa.Column("first_start_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("last_start_unix_ns", sa.BigInteger, nullable=False),
)

# Shadow AI (collector.shadow): each device's latest discovery scan, and the processes in it
# that run an inference runtime but meter nothing. A report replaces the device's list; a
# process (pid and start) keeps the time it was first reported. Since migration 0010.
shadow_scans = sa.Table(
    "shadow_scans",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("scanned_unix_ns", sa.BigInteger, nullable=False),  # the device's clock
    sa.Column("received_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("interval_ms", sa.BigInteger, nullable=False),
    sa.Column("runtime_processes", sa.Integer, nullable=False),
    sa.Column("unreadable_processes", sa.Integer, nullable=False),
)
shadow_processes = sa.Table(
    "shadow_processes",
    metadata,
    sa.Column("device_id", sa.String(32), sa.ForeignKey(devices.c.device_id), primary_key=True),
    sa.Column("pid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("start_unix_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("cmdline", sa.Text, nullable=False),
    sa.Column("uid", sa.BigInteger, nullable=False),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("runtimes", sa.JSON, nullable=False),
    sa.Column("rss_bytes", sa.BigInteger, nullable=False),
    sa.Column("cpu_time_ns", sa.BigInteger, nullable=False),
    sa.Column("cpu_ns_per_s", sa.BigInteger, nullable=False),
    sa.Column("gpu_memory_bytes", sa.BigInteger, nullable=False),
    sa.Column("last_record_unix_ns", sa.BigInteger, nullable=False),
    sa.Column("first_seen_unix_ns", sa.BigInteger, nullable=False),
)
