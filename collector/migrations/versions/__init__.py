"""Alembic revisions, oldest first; append new ones, never edit a released one."""
