"""The collector's database connection: engines for SQLite and PostgreSQL, transactions, schema
migrations, and which database errors a retry could fix.

SQLite: WAL so reports read while ingest writes; synchronous=FULL because an ack must survive
power loss; writes take the lock up front (BEGIN IMMEDIATE), since a read transaction that
later upgrades to a write fails at once, without waiting, if another writer got in between.
PostgreSQL: READ COMMITTED; `ON CONFLICT` on the idempotency key makes concurrent replicas safe.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, exc

from agent.sqlite_wal import enable_wal

logger = logging.getLogger(__name__)

# The busy timeout first, so that the others wait for a lock instead of failing.
_SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)
_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
# An execution option of our own: the begin hook reads it to take SQLite's write lock at once.
_WRITE = "infermeter_write"
# Serializes schema upgrades of replicas that start together (pg_advisory_xact_lock key).
_MIGRATION_LOCK_KEY = 0x696E6665726D  # "inferm"
_MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Errors a retry could fix. SQLite: by base result code; PostgreSQL: by SQLSTATE prefix
# (connection, serialization/deadlock, out of resources, shutdown, I/O, lock timeout, and a
# read-only standby during failover).
_RETRYABLE_SQLITE = frozenset({
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY",
    "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_NOMEM",
})
_RETRYABLE_SQLSTATES = ("08", "40", "53", "57P", "58", "55P03", "25006")


class StoreNotFound(LookupError):
    """The SQLite file named by the URL does not exist, and the caller asked not to create it."""


class StoreUnavailable(Exception):
    """The database cannot take the operation now (locked, full, read-only, connection lost);
    nothing was committed and the same call can be retried."""


def create_engine(url: str, *, create: bool = True) -> sa.Engine:
    """An engine for `sqlite:///PATH` or `postgresql://...`; ValueError for anything else.
    create=False: StoreNotFound when the SQLite file does not exist (a report must not conjure
    up an empty database from a mistyped path)."""
    parsed = sa.make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        shown = parsed.render_as_string(hide_password=True)
        raise ValueError(f"unsupported database URL {shown!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    parsed = parsed.set(drivername=driver)
    serializer = functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)
    if driver == "postgresql+psycopg":
        engine = sa.create_engine(parsed, pool_pre_ping=True, json_serializer=serializer)
    else:
        engine = sa.create_engine(_sqlite_file_url(parsed, create=create), json_serializer=serializer)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
    return engine


def _sqlite_file_url(url: sa.URL, *, create: bool) -> sa.URL:
    database = url.database or ""
    # "file::memory:" is SQLite's URI spelling of ":memory:" (with ?uri=true).
    if database in ("", ":memory:") or database.startswith("file::memory:") or url.query.get("mode") == "memory":
        raise ValueError("an in-memory SQLite database would lose every acked record: give a file, sqlite:///PATH")
    if database.startswith("file:"):
        return url
    path = Path(database)
    if not create and not path.is_file():
        raise StoreNotFound(
            f"no collector database at {path.resolve()} (give --db or $INFERMETER_DB; "
            "`infermeter collector serve --db sqlite:///PATH` creates one)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return url


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # The driver's own implicit BEGIN is off: _begin_sqlite says which kind of BEGIN to emit.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    enable_wal(cursor)
    cursor.close()


def _begin_sqlite(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Database errors a retry could fix become StoreUnavailable; everything else passes."""
    try:
        yield
    except (exc.DBAPIError, exc.TimeoutError) as err:
        if is_retryable(err):
            raise StoreUnavailable(_describe(err)) from err
        raise


def is_retryable(err: Exception) -> bool:
    if isinstance(err, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(err, exc.DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    orig = err.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(_RETRYABLE_SQLSTATES)
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", None)
        if name is None:  # Python 3.10 has no error names; its OperationalError covers these
            return isinstance(orig, sqlite3.OperationalError)
        return "_".join(name.split("_")[:2]) in _RETRYABLE_SQLITE
    return isinstance(err, exc.OperationalError)


def _describe(err: exc.DBAPIError | exc.TimeoutError) -> str:
    orig = getattr(err, "orig", None)
    return str(orig if orig is not None else err).strip().splitlines()[0]


@contextmanager
def transaction(engine: sa.Engine, *, write: bool = False) -> Iterator[sa.Connection]:
    """One transaction, committed when the block ends without an exception; database errors
    a retry could fix surface as StoreUnavailable, including those of the COMMIT itself."""
    with translate_errors(), engine.connect() as connection:
        if write:
            connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision, in one transaction, and log a line when
    that changed it."""
    with transaction(engine, write=True) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        logger.info("database schema upgraded from %s to revision %s", before or "empty", after)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration, built in code: the collector ships no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config
