"""Workload classes, business KPIs, and the model registry's tables (hourly usage per model
variant and tag set, and each variant's deployments), the last two filled from the records
already stored.

Ingest keeps the model tables from now on. As with the roll-ups (0003), the fill reads the
records as they are when the upgrade runs: records pruned before it (collector.retention) are
gone, so the registry's history starts at the retention cutoff of that moment.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen here, as the tables are in this revision: collector.model_usage makes the same rows.
HOUR_NS = 3_600 * 10**9
SPLIT = 1_000_000
SUMS = ("count", "cost_pico", "energy_uj", "duration_ns", "batch_size", "input_tokens", "output_tokens")
VARIANT = ("model", "model_version", "runtime", "execution_provider")
KINDS = (1, 2, 4)  # inference, span, roll-up: not idle energy, not gaps
PAGE_ROWS = 1_000
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def upgrade() -> None:
    op.create_table(
        "workload_classes",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("criticality", sa.String(16), nullable=True),
        sa.Column("latency", sa.String(16), nullable=True),
        sa.Column("scaling", sa.String(16), nullable=True),
        sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_workload_classes"),
    )
    op.create_table(
        "kpis",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("measure", sa.String(16), nullable=False),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("tag_key", sa.Text, nullable=True),
        sa.Column("tag_value", sa.Text, nullable=True),
        sa.Column("value_per_unit_pico", sa.BigInteger, nullable=True),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_kpis"),
    )
    usage = op.create_table(
        "model_usage",
        sa.Column("hour_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("group_sha256", sa.String(64), nullable=False),
        *(sa.Column(name, sa.Text, nullable=False) for name in VARIANT),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        *(sa.Column(f"{name}_{part}", sa.BigInteger, nullable=False) for name in SUMS for part in ("hi", "lo")),
        sa.PrimaryKeyConstraint("hour_unix_ns", "device_id", "group_sha256", name="pk_model_usage"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_model_usage_device_id_devices"),
    )
    deployments = op.create_table(
        "model_deployments",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("variant_sha256", sa.String(64), nullable=False),
        *(sa.Column(name, sa.Text, nullable=False) for name in VARIANT),
        sa.Column("first_start_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("last_start_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "variant_sha256", name="pk_model_deployments"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_model_deployments_device_id_devices"),
    )
    fill(op.get_bind(), usage, deployments)


def fill(connection: sa.Connection, usage: sa.Table, deployments: sa.Table) -> None:
    """One usage row per hour, device, variant and tag set of the stored records, and one
    deployment row per device and variant. The database sums, in parts that cannot pass int64."""
    records = sa.table(
        "records", sa.column("start_unix_ns", sa.BigInteger), sa.column("device_id"), sa.column("kind"),
        *(sa.column(name) for name in VARIANT), sa.column("tags"), *(sa.column(name, sa.BigInteger) for name in SUMS),
    )
    counted = sa.and_(records.c.kind.in_(KINDS), records.c.model != "")
    variant = [records.c[name] for name in VARIANT]
    keys = [
        records.c.start_unix_ns - records.c.start_unix_ns % HOUR_NS, records.c.device_id, *variant,
        sa.cast(records.c.tags, sa.Text),
    ]
    parts = [
        part for name in SUMS
        for part in (sa.func.sum(records.c[name] // SPLIT), sa.func.sum(records.c[name] % SPLIT))
    ]
    merged: dict[tuple, list] = {}
    for row in connection.execute(sa.select(*keys, sa.func.count(), *parts).where(counted).group_by(*keys)):
        hour, device_id, *group, tags = row[:7]
        tags = _json(dict(sorted(json.loads(tags).items())))
        digest = hashlib.sha256(_json([*group, tags]).encode()).hexdigest()
        values = [int(value) for value in row[8:]]
        sums = [hi * SPLIT + lo for hi, lo in zip(values[::2], values[1::2])]
        entry = merged.setdefault((hour, device_id, digest), [(*group, tags), 0, [0] * len(SUMS)])
        entry[1] += row[7]
        entry[2] = [a + b for a, b in zip(entry[2], sums)]
    rows = []
    for (hour, device_id, digest), (group, count, sums) in sorted(merged.items()):
        row = {"hour_unix_ns": hour, "device_id": device_id, "group_sha256": digest, "records": count}
        row.update(zip(VARIANT, group))
        row["tags"] = json.loads(group[-1])
        for name, total in zip(SUMS, sums):
            row[f"{name}_hi"], row[f"{name}_lo"] = divmod(total, SPLIT)
        rows.append(row)
        if len(rows) == PAGE_ROWS:
            connection.execute(sa.insert(usage), rows)
            rows = []
    if rows:
        connection.execute(sa.insert(usage), rows)
    found = sa.select(
        records.c.device_id, *variant, sa.func.min(records.c.start_unix_ns), sa.func.max(records.c.start_unix_ns),
    ).where(counted).group_by(records.c.device_id, *variant)
    placed = [
        {"device_id": row[0], "variant_sha256": hashlib.sha256(_json(list(row[1:5])).encode()).hexdigest(),
         **dict(zip(VARIANT, row[1:5])), "first_start_unix_ns": row[5], "last_start_unix_ns": row[6]}
        for row in connection.execute(found)
    ]
    if placed:
        connection.execute(sa.insert(deployments), placed)


def downgrade() -> None:
    for table in ("model_deployments", "model_usage", "kpis", "workload_classes"):
        op.drop_table(table)
