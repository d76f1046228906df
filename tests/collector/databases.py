"""The databases the store tests run on: a SQLite file under tmp_path, and a fresh PostgreSQL
database per test on the server at 127.0.0.1:5432, dropped afterwards; and a way to run calls
at the same moment from several threads, as replicas would.

Import `store_url` into a test module to run its tests on both (or `new_database` with
DIALECTS for a module-scoped fixture); the PostgreSQL ones carry the `postgres` marker and are
skipped, saying why, only when the server cannot be reached.
"""

from __future__ import annotations

import functools
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_SERVER_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}"
_UNREACHABLE = f"the PostgreSQL server at {POSTGRES_HOST}:{POSTGRES_PORT} is not reachable"


@functools.cache
def postgres_reachable() -> bool:
    try:
        with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1.0):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    if not postgres_reachable():
        pytest.skip(_UNREACHABLE)


@contextmanager
def fresh_postgres_database(server_url: str = POSTGRES_SERVER_URL, *, prefix: str = "infermeter_test") -> Iterator[str]:
    """The URL of a new, empty database with a random name on the server at server_url
    (postgresql://USER@HOST:PORT); dropped on exit, even while connections to it are still open."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    # CREATE / DROP DATABASE cannot run inside a transaction.
    admin = sa.create_engine(
        f"{server_url.replace('postgresql://', 'postgresql+psycopg://', 1)}/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server_url}/{name}"
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@contextmanager
def new_database(dialect: str, directory: Path) -> Iterator[str]:
    """A URL to a database no one has opened yet: a SQLite file in `directory`, or a new
    PostgreSQL database (skipping the test when the server cannot be reached)."""
    if dialect == "sqlite":
        yield f"sqlite:///{directory / 'collector.db'}"
        return
    require_postgres()
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=DIALECTS)
def store_url(request, tmp_path) -> Iterator[str]:
    with new_database(request.param, tmp_path) as url:
        yield url


# A single marked param, so that the marker is on the test at collection (`-m "not postgres"`).
@pytest.fixture(params=DIALECTS[1:])
def postgres_url(request, tmp_path) -> Iterator[str]:
    """A fresh PostgreSQL database, for the tests that only make sense there."""
    with new_database(request.param, tmp_path) as url:
        yield url


def run_together(calls: Sequence[Callable[[], object]], *, timeout_s: float = 60.0) -> list:
    """Run each call on its own thread, all released at once by a barrier; return their results
    in order, or raise the first call's exception. A call still running after `timeout_s` fails
    the test instead of hanging it (daemon threads: a deadlocked one is left behind)."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[bool, object] | None] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout_s)
            outcomes[index] = (True, call())
        except BaseException as err:  # handed to the test's thread below
            outcomes[index] = (False, err)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        pytest.fail(f"{stuck} of {len(calls)} concurrent calls still running after {timeout_s} s: a deadlock?")
    for succeeded, value in outcomes:
        if not succeeded:
            raise value
    return [value for _, value in outcomes]
