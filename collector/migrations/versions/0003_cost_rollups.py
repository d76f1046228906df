"""Hourly cost roll-ups, filled from the records already stored.

Ingest keeps the roll-ups from now on. The fill reads the records as they are when the upgrade
runs: collectors of an older version must be stopped before it, since what they store later
would be missing from the roll-ups (and so from the reports that read them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here, as the table is in this revision: collector.rollups makes the same rows.
HOUR_NS = 3_600 * 10**9
SPLIT = 1_000_000
SUMS = ("count", "cost_pico", "compute_cost_pico", "energy_cost_pico", "energy_uj", "duration_ns", "cpu_time_ns")
GROUP = ("model", "model_version", "runtime", "site", "kind", "tags")
PAGE_ROWS = 1_000
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def upgrade() -> None:
    rollups = op.create_table(
        "cost_rollups",
        sa.Column("hour_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("group_sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("runtime", sa.Text, nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        *(sa.Column(f"{name}_{part}", sa.BigInteger, nullable=False) for name in SUMS for part in ("hi", "lo")),
        sa.PrimaryKeyConstraint("hour_unix_ns", "device_id", "group_sha256", name="pk_cost_rollups"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_cost_rollups_device_id_devices"),
    )
    fill(op.get_bind(), rollups)


def fill(connection: sa.Connection, rollups: sa.Table) -> None:
    """One roll-up row per hour, device and group of the stored records. The database sums, in
    parts that cannot pass int64; tag sets that differ only in key order merge here."""
    records = sa.table(
        "records", sa.column("start_unix_ns", sa.BigInteger), sa.column("device_id"),
        *(sa.column(name) for name in GROUP[:-1]), sa.column("tags"), *(sa.column(name, sa.BigInteger) for name in SUMS),
    )
    keys = [
        records.c.start_unix_ns - records.c.start_unix_ns % HOUR_NS, records.c.device_id,
        *(records.c[name] for name in GROUP[:-1]), sa.cast(records.c.tags, sa.Text),
    ]
    parts = [
        part for name in SUMS
        for part in (sa.func.sum(records.c[name] // SPLIT), sa.func.sum(records.c[name] % SPLIT))
    ]
    merged: dict[tuple, list] = {}
    canonical: dict[str, str] = {}
    for row in connection.execute(sa.select(*keys, sa.func.count(), *parts).group_by(*keys)):
        hour, device_id, model, version, runtime, site, kind, tags = row[:8]
        tags = canonical.get(tags) or canonical.setdefault(tags, _json(dict(sorted(json.loads(tags).items()))))
        digest = hashlib.sha256(_json([model, version, runtime, site, kind, tags]).encode()).hexdigest()
        values = [int(value) for value in row[9:]]
        sums = [hi * SPLIT + lo for hi, lo in zip(values[::2], values[1::2])]
        entry = merged.setdefault((hour, device_id, digest), [(model, version, runtime, site, kind, tags), 0, [0] * len(SUMS)])
        entry[1] += row[8]
        entry[2] = [a + b for a, b in zip(entry[2], sums)]
    rows = []
    for (hour, device_id, digest), (group, count, sums) in sorted(merged.items()):
        row = {"hour_unix_ns": hour, "device_id": device_id, "group_sha256": digest, "records": count}
        row.update(zip(GROUP, group))
        row["tags"] = json.loads(group[-1])
        for name, total in zip(SUMS, sums):
            row[f"{name}_hi"], row[f"{name}_lo"] = divmod(total, SPLIT)
        rows.append(row)
        if len(rows) == PAGE_ROWS:
            connection.execute(sa.insert(rollups), rows)
            rows = []
    if rows:
        connection.execute(sa.insert(rollups), rows)


def downgrade() -> None:
    op.drop_table("cost_rollups")
