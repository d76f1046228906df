"""Fixtures of the collector's tests: a store on a SQLite file, the real servers over it, and
admin tokens of each role in that store."""

from __future__ import annotations

import grpc
import pytest

from collector import tokens
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


@pytest.fixture
def admin_token(store) -> str:
    """An admin-role token of `store`: reads and changes through the operators' APIs."""
    return store.add_admin_token(tokens.ADMIN, name="operator").token


@pytest.fixture
def viewer_token(store) -> str:
    """A viewer-role token of `store`: reads only."""
    return store.add_admin_token(tokens.VIEWER, name="dashboard").token


@pytest.fixture
def device(store):
    """A device registered in the test's store."""
    return store.add_device("edge-1")


@pytest.fixture
def channel(servers):
    """A plaintext gRPC channel to the test's servers."""
    with grpc.insecure_channel(servers.grpc_address) as channel:
        yield channel
