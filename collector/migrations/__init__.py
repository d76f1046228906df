"""Alembic migrations of the collector's schema (run by collector.database.migrate)."""
