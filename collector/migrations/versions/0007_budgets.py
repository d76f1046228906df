"""Budgets, their spend per period, their events, and webhooks with their deliveries.

New tables only: a budget added later starts from its period's spend so far (collector.
budget_ledger), so nothing is filled here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("budget_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope_kind", sa.String(16), nullable=False),
        sa.Column("scope_value", sa.Text, nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("throttle_per_second", sa.Text, nullable=True),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("deleted_unix_ns", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("budget_id", name="pk_budgets"),
        sa.UniqueConstraint("name", name="uq_budgets_name"),
    )
    op.create_table(
        "budget_spend",
        sa.Column("budget_id", sa.String(32), nullable=False),
        sa.Column("period_start_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("spent_hi", sa.BigInteger, nullable=False),
        sa.Column("spent_lo", sa.BigInteger, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period_start_unix_ns", name="pk_budget_spend"),
        sa.ForeignKeyConstraint(["budget_id"], ["budgets.budget_id"], name="fk_budget_spend_budget_id_budgets"),
    )
    op.create_table(
        "budget_events",
        sa.Column("event_id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("budget_id", sa.String(32), nullable=False),
        sa.Column("period_start_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_budget_events"),
        sa.ForeignKeyConstraint(["budget_id"], ["budgets.budget_id"], name="fk_budget_events_budget_id_budgets"),
        sa.UniqueConstraint("budget_id", "period_start_unix_ns", "kind", "key", name="uq_budget_events_budget_id"),
    )
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("webhook_id", name="pk_webhooks"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("webhook_id", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("claimed_until_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("delivered_unix_ns", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "webhook_id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["budget_events.event_id"], name="fk_webhook_deliveries_event_id_budget_events"
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.webhook_id"], name="fk_webhook_deliveries_webhook_id_webhooks"
        ),
    )


def downgrade() -> None:
    for table in ("webhook_deliveries", "webhooks", "budget_events", "budget_spend", "budgets"):
        op.drop_table(table)
