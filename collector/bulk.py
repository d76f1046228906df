"""Idempotent bulk insert: INSERT ... VALUES (...), (...) ON CONFLICT (key) DO NOTHING RETURNING,
in pages, on SQLite and PostgreSQL.

Why not SQLAlchemy's executemany with RETURNING ("insertmanyvalues"): it builds and processes a
parameter dict per row, which costs about twice what SQLite itself spends inserting the row.
Here rows arrive as tuples in column order, already in database form (JSON already encoded),
and go to the driver unchanged; the statement text is built once per page size and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain

import sqlalchemy as sa

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def insert_new_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    key: Sequence[str],
    returning: str,
    rows: Sequence[tuple],
) -> list:
    """Insert the rows whose `key` is not yet in `table`; return `returning` of each inserted one.

    A row that conflicts with a stored row, or with a concurrent transaction's row, is skipped
    (on PostgreSQL, after waiting for that transaction to end), so concurrent writers of the
    same rows each see a row as inserted exactly once.
    """
    dialect = connection.dialect
    page_rows = max(1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // len(columns)))
    inserted = []
    for first in range(0, len(rows), page_rows):
        page = rows[first:first + page_rows]
        sql = _statement(dialect, table.name, tuple(columns), tuple(key), returning, len(page))
        parameters = tuple(chain.from_iterable(page))
        inserted += connection.exec_driver_sql(sql, parameters).scalars().all()
    return inserted


@lru_cache(maxsize=64)
def _statement(dialect: sa.Dialect, table: str, columns: tuple[str, ...], key: tuple[str, ...], returning: str, rows: int) -> str:
    quote = dialect.identifier_preparer.quote
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    values = "(" + ", ".join([placeholder] * len(columns)) + ")"
    return (
        f"INSERT INTO {quote(table)} ({', '.join(map(quote, columns))}) VALUES {', '.join([values] * rows)}"
        f" ON CONFLICT ({', '.join(map(quote, key))}) DO NOTHING RETURNING {quote(returning)}"
    )
