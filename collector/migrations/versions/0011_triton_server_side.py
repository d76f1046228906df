"""Server-side figures of records: each record's share of the queue and compute times its
inference server (Triton) reported, with their provenance, as the agent joined them
(agent.triton_join).

One nullable JSON column: records stored before, and records of other runtimes, have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects (as 0006): a batch copy of records on SQLite would be
    # slow on a large table, and a nullable column needs none.
    op.add_column("records", sa.Column("server", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE records DROP COLUMN server")
