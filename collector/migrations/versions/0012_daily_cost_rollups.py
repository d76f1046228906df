"""Daily cost roll-ups beside the hourly ones, so that a report over a month reads one row per
device, group and day instead of 24 (collector.rollups, collector.reports).

Filled from the hourly roll-ups: each day's sums are its hours' sums, the low parts carried
into the high ones so that 0 <= NAME_lo < ROLLUP_SPLIT holds as in rows written by ingest.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DAY_NS = 86_400 * 10**9
ROLLUP_SPLIT = 1_000_000
SUMS = (
    "count", "cost_pico", "compute_cost_pico", "energy_cost_pico", "energy_uj", "duration_ns", "cpu_time_ns",
    "token_cost_pico", "request_cost_pico",
)


def upgrade() -> None:
    op.create_table(
        "cost_rollups_daily",
        sa.Column("day_unix_ns", sa.BigInteger, primary_key=True),
        sa.Column("device_id", sa.String(32), sa.ForeignKey("devices.device_id"), primary_key=True),
        sa.Column("group_sha256", sa.String(64), primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("runtime", sa.Text, nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        *(sa.Column(f"{name}_{part}", sa.BigInteger, nullable=False) for name in SUMS for part in ("hi", "lo")),
    )
    # A group's texts and tags are the same in every hour (its key is their hash): any hour's
    # will do. PostgreSQL's json has no ordering, so its tags go through text.
    tags = "MIN(tags)" if op.get_bind().dialect.name == "sqlite" else "CAST(MIN(CAST(tags AS TEXT)) AS JSON)"
    sums = ", ".join(
        # Integer division on both: PostgreSQL's SUM of BIGINTs is a NUMERIC.
        f"CAST(SUM({name}_hi) AS BIGINT) + CAST(SUM({name}_lo) AS BIGINT) / {ROLLUP_SPLIT}, "
        f"CAST(SUM({name}_lo) AS BIGINT) % {ROLLUP_SPLIT}"
        for name in SUMS
    )
    columns = ", ".join(f"{name}_{part}" for name in SUMS for part in ("hi", "lo"))
    op.execute(
        "INSERT INTO cost_rollups_daily (day_unix_ns, device_id, group_sha256, model, model_version, runtime, "
        f"site, kind, tags, records, {columns}) "
        f"SELECT hour_unix_ns - hour_unix_ns % {DAY_NS}, device_id, group_sha256, MIN(model), MIN(model_version), "
        f"MIN(runtime), MIN(site), MIN(kind), {tags}, SUM(records), {sums} "
        f"FROM cost_rollups GROUP BY hour_unix_ns - hour_unix_ns % {DAY_NS}, device_id, group_sha256"
    )


def downgrade() -> None:
    op.drop_table("cost_rollups_daily")
