"""What the energy tests share: a monotonic clock that moves only when told, and writable
copies of the checked-in sysfs fixture trees (tests/fixtures/sysfs/<name>, real layouts)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

SYSFS_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"


class MonotonicClock:
    """CLOCK_MONOTONIC that moves only when the test says so (sensors take it as clock_ns)."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


@pytest.fixture
def sysfs(tmp_path: Path) -> Callable[[str], Path]:
    """A writable copy of a fixture tree (links kept as links), to change values in."""

    def copy(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(SYSFS_FIXTURES / name, root, symlinks=True)
        return root

    return copy
