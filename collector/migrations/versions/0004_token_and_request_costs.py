"""Token and request costs: two cost components of a record, and their hourly sums.

Records stored before cost nothing for tokens or requests (their books had no model prices), so
both columns are 0 on existing rows and in existing roll-ups.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RECORD_COLUMNS = ("token_cost_pico", "request_cost_pico")
ROLLUP_COLUMNS = tuple(f"{name}_{part}" for name in RECORD_COLUMNS for part in ("hi", "lo"))


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        for name in RECORD_COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("cost_rollups") as batch:
        for name in ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("cost_rollups") as batch:
        for name in ROLLUP_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("records") as batch:
        for name in RECORD_COLUMNS:
            batch.drop_column(name)
