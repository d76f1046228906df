"""One Triton server for the whole directory (starting one takes seconds), and a Meter whose
flusher the test drives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.meter import Meter


@pytest.fixture(scope="session")
def server():
    """The running server (tests.triton.server.Server); skips without nvidia-pytriton."""
    from tests.triton.server import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def buffer_path(tmp_path):
    return tmp_path / "buffer.db"


@pytest.fixture
def meter(buffer_path) -> Iterator[Meter]:
    meter = Meter(buffer_path, tags={"project": "search"}, start_thread=False)
    yield meter
    meter.close()
