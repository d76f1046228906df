"""collector.database on a real SQLite file and a real PostgreSQL database: the migrated schema
is the declared one, migrations are idempotent and safe to race, URLs are checked, and errors
are classified as retryable or not."""

from __future__ import annotations

import functools
import sqlite3

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, exc

from collector.database import (
    StoreNotFound,
    StoreUnavailable,
    alembic_config,
    create_engine,
    is_retryable,
    migrate,
    transaction,
)
from collector.schema import devices, metadata, price_books
from tests.collector.databases import postgres_url, run_together, store_url  # noqa: F401

DEVICE = {
    "device_id": "dev_0123456789abcdef", "name": "edge-1", "profile": "default", "site": "default",
    "created_unix_ns": 1, "revoked_unix_ns": None, "last_seen_unix_ns": 0, "hostname": "", "cpu_cores": 0,
    "platform": "", "agent_version": "", "record_count": 0,
}


@pytest.fixture
def engine(store_url):  # noqa: F811
    engine = create_engine(store_url)
    yield engine
    engine.dispose()


def schema_differences(engine: sa.Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def newest_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_migrated_schema_is_the_declared_one(engine):
    assert schema_differences(engine) != []  # a fresh database: everything is missing

    migrate(engine)

    assert schema_differences(engine) == []
    assert revision(engine) == newest_revision()


def test_migrating_again_changes_nothing(engine):
    migrate(engine)
    with engine.connect() as connection:
        books = connection.execute(sa.select(price_books)).all()

    migrate(engine)
    migrate(engine)

    with engine.connect() as connection:
        assert connection.execute(sa.select(price_books)).all() == books
    assert len(books) == 1  # the default book, added once
    assert schema_differences(engine) == []


def test_replicas_starting_together_on_a_fresh_database_migrate_it_once(store_url):  # noqa: F811
    engines = [create_engine(store_url) for _ in range(8)]
    try:
        run_together([functools.partial(migrate, engine) for engine in engines])

        with engines[0].connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(price_books)).scalar_one() == 1
        assert schema_differences(engines[0]) == []
        assert revision(engines[0]) == newest_revision()
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("url", [
    "mysql://meter@db/infermeter",
    "oracle://meter@db/infermeter",
    "postgresql+asyncpg://meter@db/infermeter",
    "mssql+pyodbc://meter@db/infermeter",
])
def test_an_unsupported_database_url_is_a_value_error(url):
    with pytest.raises(ValueError, match="unsupported database URL"):
        create_engine(url)


@pytest.mark.parametrize(("url", "driver"), [
    ("postgresql://meter@db:5432/infermeter", "postgresql+psycopg"),
    ("postgres://meter@db/infermeter", "postgresql+psycopg"),
    ("postgresql+psycopg://meter@db/infermeter", "postgresql+psycopg"),
    ("sqlite:///{tmp}/collector.db", "sqlite+pysqlite"),
    ("sqlite+pysqlite:///{tmp}/collector.db", "sqlite+pysqlite"),
])
def test_each_spelling_of_a_supported_url_gets_its_driver(tmp_path, url, driver):
    engine = create_engine(url.format(tmp=tmp_path))

    assert engine.url.drivername == driver
    engine.dispose()


def test_the_refusal_of_a_url_does_not_show_its_password():
    with pytest.raises(ValueError) as caught:
        create_engine("mysql://meter:s3cret@db/infermeter")

    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("url", [
    "sqlite://",
    "sqlite:///",
    "sqlite:///:memory:",
    "sqlite:///file::memory:?uri=true",
    "sqlite:///file:collector?mode=memory&cache=shared&uri=true",
])
def test_an_in_memory_sqlite_database_is_a_value_error(url):
    with pytest.raises(ValueError, match="in-memory SQLite"):
        create_engine(url)


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_a_missing_sqlite_file_is_not_created_when_creation_is_off(tmp_path, scheme):
    path = tmp_path / "missing" / "collector.db"

    with pytest.raises(StoreNotFound, match="no collector database at"):
        create_engine(f"{scheme}:///{path}", create=False)

    assert list(tmp_path.iterdir()) == []


def test_an_existing_sqlite_file_opens_when_creation_is_off(tmp_path):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    created = create_engine(url)
    migrate(created)
    created.dispose()

    engine = create_engine(url, create=False)

    assert schema_differences(engine) == []
    engine.dispose()


def test_a_new_sqlite_file_gets_its_directories(tmp_path):
    path = tmp_path / "a" / "b" / "collector.db"
    engine = create_engine(f"sqlite:///{path}")

    migrate(engine)

    engine.dispose()
    assert path.is_file()


def test_sqlite_runs_in_wal_mode_with_full_sync_and_foreign_keys(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'collector.db'}")

    with engine.connect() as connection:
        pragmas = [connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                   for name in ("journal_mode", "synchronous", "foreign_keys")]

    engine.dispose()
    assert pragmas == ["wal", 2, 1]  # synchronous=FULL is 2


def test_a_locked_sqlite_database_is_retryable(tmp_path):
    path = tmp_path / "collector.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine)
    # Wait 10 ms for the lock instead of the engine's 10 s: it is not going to come free.
    event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA busy_timeout=10"))
    engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="database is locked") as caught:
            with transaction(engine, write=True) as connection:
                connection.execute(sa.insert(devices), DEVICE)
    finally:
        holder.rollback()
        holder.close()

    cause = caught.value.__cause__
    assert isinstance(cause, exc.OperationalError)
    assert cause.orig.sqlite_errorname == "SQLITE_BUSY"
    assert is_retryable(cause)
    # Nothing was written, and with the lock free the same call now succeeds.
    with transaction(engine, write=True) as connection:
        connection.execute(sa.insert(devices), DEVICE)
    engine.dispose()


def test_a_constraint_violation_is_not_retryable(engine):
    migrate(engine)
    with transaction(engine, write=True) as connection:
        connection.execute(sa.insert(devices), DEVICE)

    with pytest.raises(exc.IntegrityError) as caught:
        with transaction(engine, write=True) as connection:
            connection.execute(sa.insert(devices), {**DEVICE, "device_id": "dev_fedcba9876543210"})

    assert not is_retryable(caught.value)


def test_a_lock_timeout_on_postgresql_is_retryable(postgres_url):  # noqa: F811
    engine = create_engine(postgres_url)
    migrate(engine)
    with transaction(engine, write=True) as connection:
        connection.execute(sa.insert(devices), DEVICE)
    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(sa.update(devices).values(hostname="holder"))
            with pytest.raises(StoreUnavailable, match="lock timeout") as caught:
                with transaction(engine, write=True) as connection:
                    connection.exec_driver_sql("SET LOCAL lock_timeout = '10ms'")
                    connection.execute(sa.update(devices).values(hostname="waiter"))

        assert caught.value.__cause__.orig.sqlstate == "55P03"
        assert is_retryable(caught.value.__cause__)
    finally:
        engine.dispose()


def test_errors_that_are_not_from_the_database_are_not_retryable():
    assert not is_retryable(ValueError("no"))
    assert is_retryable(exc.TimeoutError("QueuePool limit reached"))
