"""The tag policy's versions and the default tags of devices.

New tables only: with no policy every record is tagged, and a device without a row has no
default tags, so nothing is filled here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_policies",
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_tag_policies"),
    )
    op.create_table(
        "device_default_tags",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_default_tags"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name="fk_device_default_tags_device_id_devices"
        ),
    )


def downgrade() -> None:
    for table in ("device_default_tags", "tag_policies"):
        op.drop_table(table)
