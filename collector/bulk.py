"""Bulk writes on SQLite and PostgreSQL: the idempotent insert, INSERT ... ON CONFLICT (key) DO
NOTHING RETURNING; and the adding upsert, ON CONFLICT (key) DO UPDATE SET n = n + excluded.n,
that keeps sums.

Why not SQLAlchemy's executemany with RETURNING ("insertmanyvalues"): it builds and processes a
parameter dict per row, which costs about twice what SQLite itself spends inserting the row.
Here rows arrive as tuples in column order, already in database form (JSON already encoded),
and go to the driver unchanged; the statement text is built once and cached.

SQLite gets VALUES (...), (...) in pages. PostgreSQL gets all the rows as one JSON array of
arrays, taken apart by the server: psycopg parses a long statement's text for its placeholders
on every execution, and with a placeholder per value that parsing cost several times what the
server spent inserting (one typed array per column was better, but psycopg dumps arrays in
Python, at about twice the cost of the C JSON encoder and the server's parsing together).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import lru_cache
from itertools import chain

import sqlalchemy as sa

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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
    on_conflict = f"DO NOTHING RETURNING {connection.dialect.identifier_preparer.quote(returning)}"
    inserted = []
    for sql, parameters in _statements(connection.dialect, table, tuple(columns), tuple(key), on_conflict, rows):
        inserted += connection.exec_driver_sql(sql, parameters).scalars().all()
    return inserted


def add_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[tuple],
    *,
    counters: Sequence[str],
    split_counters: Sequence[str],
    split: int,
) -> None:
    """Insert the rows; where a row's `key` is already stored, add its values to the stored
    row's instead: each of `counters` adds, and each NAME of `split_counters` (a non-negative
    number stored as NAME_hi * split + NAME_lo, 0 <= NAME_lo < split) adds with the carry.

    The rows must have distinct keys (PostgreSQL refuses to update a row twice in a statement).
    Concurrent writers wait for each other's rows; give the rows in key order, so that two
    writers never wait for each other (a deadlock).
    """
    on_conflict = _adding_update(connection.dialect, table.name, tuple(counters), tuple(split_counters), split)
    for sql, parameters in _statements(connection.dialect, table, tuple(columns), tuple(key), on_conflict, rows):
        connection.exec_driver_sql(sql, parameters)


def _statements(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], key: tuple[str, ...], on_conflict: str,
    rows: Sequence[tuple],
) -> Iterator[tuple[str, Sequence]]:
    """(statement, parameters) to run, in order, to write the rows."""
    if not rows:
        return
    if dialect.name == "postgresql":
        yield _json_statement(dialect, table, columns, key, on_conflict), (_json(rows),)
        return
    page_rows = max(1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // len(columns)))
    for first in range(0, len(rows), page_rows):
        page = rows[first:first + page_rows]
        yield _values_statement(dialect, table.name, columns, key, on_conflict, len(page)), tuple(chain.from_iterable(page))


@lru_cache(maxsize=64)
def _values_statement(
    dialect: sa.Dialect, table: str, columns: tuple[str, ...], key: tuple[str, ...], on_conflict: str, rows: int
) -> str:
    quote = dialect.identifier_preparer.quote
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    values = "(" + ", ".join([placeholder] * len(columns)) + ")"
    return (
        f"INSERT INTO {quote(table)} ({', '.join(map(quote, columns))}) VALUES {', '.join([values] * rows)}"
        f" ON CONFLICT ({', '.join(map(quote, key))}) {on_conflict}"
    )


@lru_cache(maxsize=16)
def _json_statement(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], key: tuple[str, ...], on_conflict: str
) -> str:
    quote = dialect.identifier_preparer.quote
    # Integers pass through jsonb's numeric exactly; a JSON column's value arrives as its text.
    values = ", ".join(f"(row->>{i})::{table.c[name].type.compile(dialect=dialect)}" for i, name in enumerate(columns))
    # WITH ORDINALITY ... ORDER BY: rows are written (and locked) in the order given.
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
        f" SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS page(row, n) ORDER BY n"
        f" ON CONFLICT ({', '.join(map(quote, key))}) {on_conflict}"
    )


@lru_cache(maxsize=16)
def _adding_update(
    dialect: sa.Dialect, table: str, counters: tuple[str, ...], split_counters: tuple[str, ...], split: int
) -> str:
    quote = dialect.identifier_preparer.quote
    # With the format paramstyles a literal % is written %%.
    modulo = "%" if dialect.paramstyle == "qmark" else "%%"

    def stored(column: str) -> str:
        return f"{quote(table)}.{quote(column)}"

    updates = [f"{quote(name)} = {stored(name)} + excluded.{quote(name)}" for name in counters]
    for name in split_counters:
        hi, lo = quote(f"{name}_hi"), quote(f"{name}_lo")
        # Both dialects divide integers exactly, rounding toward zero; every part is >= 0. The
        # SET expressions read the row as it was before the update.
        low_sum = f"({stored(f'{name}_lo')} + excluded.{lo})"
        updates.append(f"{hi} = {stored(f'{name}_hi')} + excluded.{hi} + {low_sum} / {split}")
        updates.append(f"{lo} = {low_sum} {modulo} {split}")
    return f"DO UPDATE SET {', '.join(updates)}"
