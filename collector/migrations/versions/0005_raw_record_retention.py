"""Raw-record retention: the cutoff before which raw records were deleted (0: none yet), and
the highest seq pruned of each stream, which keeps a replayed batch from counting twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    retention = op.create_table(
        "retention",
        sa.Column("id", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("raw_before_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retention"),
    )
    op.bulk_insert(retention, [{"id": 1, "raw_before_unix_ns": 0, "updated_unix_ns": 0}])
    op.create_table(
        "pruned_streams",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("max_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "stream_id", name="pk_pruned_streams"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_pruned_streams_device_id_devices"),
    )


def downgrade() -> None:
    op.drop_table("pruned_streams")
    op.drop_table("retention")
