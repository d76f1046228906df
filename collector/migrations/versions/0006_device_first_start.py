"""The start of each device's first record, kept on ingest: a device's service (the time its
idle capacity is counted over, collector.charges) starts then when that is before it was added.

Filled from the records stored before, or from the roll-ups where the records were pruned.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects: a batch (copy-and-move) of devices on SQLite would break
    # the foreign keys that point at it.
    op.add_column("devices", sa.Column("first_start_unix_ns", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE devices SET first_start_unix_ns = COALESCE("
        "(SELECT MIN(start_unix_ns) FROM records WHERE records.device_id = devices.device_id), "
        "(SELECT MIN(hour_unix_ns) FROM cost_rollups WHERE cost_rollups.device_id = devices.device_id))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE devices DROP COLUMN first_start_unix_ns")
