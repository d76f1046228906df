"""Devices, device tokens, price books and priced records; a default price book.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The book a fresh collector prices with, effective from 2000-01-01 (the earliest start a
# record may have), so every record has a price. Frozen here: later defaults are new revisions.
DEFAULT_PRICE_BOOK = {
    "currency": "USD",
    "hardware": {
        "default": {
            "purchase": "1200.00", "residual": "0", "lifetime_years": 4, "upkeep_per_year": "120.00",
            "cpu_cores": None,
        },
    },
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "0.15", "pue": "1.0"}},
}
DEFAULT_EFFECTIVE_FROM_UNIX_NS = 946_684_800 * 10**9


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_unix_ns", sa.BigInteger, nullable=True),
        sa.Column("last_seen_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("cpu_cores", sa.Integer, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("agent_version", sa.Text, nullable=False),
        sa.Column("record_count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
    )
    op.create_table(
        "device_tokens",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_device_tokens"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_device_tokens_device_id_devices"),
    )
    op.create_index("ix_device_tokens_device_id", "device_tokens", ["device_id"])
    price_books = op.create_table(
        "price_books",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("effective_from_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("created_unix_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_price_books"),
    )
    _create_records()
    op.bulk_insert(price_books, [{
        "effective_from_unix_ns": DEFAULT_EFFECTIVE_FROM_UNIX_NS,
        "currency": DEFAULT_PRICE_BOOK["currency"],
        "document": DEFAULT_PRICE_BOOK,
        "created_unix_ns": time.time_ns(),
    }])


def _create_records() -> None:
    op.create_table(
        "records",
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("runtime", sa.Text, nullable=False),
        sa.Column("execution_provider", sa.Text, nullable=False),
        sa.Column("batch_size", sa.BigInteger, nullable=False),
        sa.Column("input_bytes", sa.BigInteger, nullable=False),
        sa.Column("output_bytes", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("start_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("duration_ns", sa.BigInteger, nullable=False),
        sa.Column("cpu_time_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("error_type", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("pid", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("gpu_time_ns", sa.BigInteger, nullable=False),
        sa.Column("energy_uj", sa.BigInteger, nullable=False),
        sa.Column("energy", sa.JSON, nullable=True),
        sa.Column("peak_rss_bytes", sa.BigInteger, nullable=True),
        sa.Column("peak_gpu_memory_bytes", sa.BigInteger, nullable=True),
        sa.Column("model_resident_bytes", sa.BigInteger, nullable=True),
        sa.Column("received_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("price_book_id", sa.Integer, nullable=False),
        sa.Column("price_cpu_cores", sa.Integer, nullable=False),
        sa.Column("compute_cost_pico", sa.BigInteger, nullable=False),
        sa.Column("energy_cost_pico", sa.BigInteger, nullable=False),
        sa.Column("cost_pico", sa.BigInteger, nullable=False),
        sa.Column("list_cost_pico", sa.BigInteger, nullable=False),
        sa.Column("pricing_note", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "stream_id", "seq", name="pk_records"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"], name="fk_records_device_id_devices"),
        sa.ForeignKeyConstraint(["price_book_id"], ["price_books.id"], name="fk_records_price_book_id_price_books"),
    )
    op.create_index("ix_records_start_unix_ns", "records", ["start_unix_ns"])


def downgrade() -> None:
    op.drop_table("records")
    op.drop_table("price_books")
    op.drop_index("ix_device_tokens_device_id", table_name="device_tokens")
    op.drop_table("device_tokens")
    op.drop_table("devices")
