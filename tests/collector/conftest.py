"""Fixtures of the collector's tests: a store on a SQLite file, and the real servers over it."""

from __future__ import annotations

import pytest

from collector.store import Store
from tests.collector.helpers import ServersThread


@pytest.fixture
def store(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'collector.db'}")
    yield store
    store.close()


@pytest.fixture
def servers(store):
    with ServersThread(store) as running:
        yield running
