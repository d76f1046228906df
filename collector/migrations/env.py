"""Alembic environment: runs on the connection that collector.database.migrate opened (and
locked), inside its transaction; there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

from collector.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the collector's migrations through collector.database.migrate()")

# render_as_batch: SQLite alters tables by copying them, which Alembic's batch mode does.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
