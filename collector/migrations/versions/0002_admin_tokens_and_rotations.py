"""Admin tokens with roles; device token rotations under way.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_rotations",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("old_token_sha256", sa.String(64), nullable=False),
        sa.Column("new_token_sha256", sa.String(64), nullable=True),
        sa.Column("started_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_rotations"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_device_rotations_device_id_devices"),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("token_id", name="pk_admin_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_admin_tokens_token_sha256"),
    )


def downgrade() -> None:
    op.drop_table("admin_tokens")
    op.drop_table("device_rotations")
