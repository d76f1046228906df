"""Shadow AI: each device's latest discovery scan, and the processes in it that run an inference
runtime but meter nothing (collector.shadow).

New tables only: they fill as devices report.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_scans",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("scanned_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("received_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("interval_ms", sa.BigInteger, nullable=False),
        sa.Column("runtime_processes", sa.Integer, nullable=False),
        sa.Column("unreadable_processes", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_shadow_scans"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_shadow_scans_device_id_devices"),
    )
    op.create_table(
        "shadow_processes",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("pid", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("start_unix_ns", sa.BigInteger, nullable=False, autoincrement=False),
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
        sa.PrimaryKeyConstraint("device_id", "pid", "start_unix_ns", name="pk_shadow_processes"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name="fk_shadow_processes_device_id_devices"
        ),
    )


def downgrade() -> None:
    op.drop_table("shadow_processes")
    op.drop_table("shadow_scans")
