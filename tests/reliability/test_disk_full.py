"""A full disk on either side of a stream.

The collector's database on a small file system that fills up: its pushes are refused with a
retryable status (never an OK for rows that were not stored), the agent keeps the records and
retries, and once space returns everything arrives exactly once.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.reliability.stream import check_exactly_once, wait_until_delivered
from tests.small_disk import fill_disk, small_disk

pytestmark = pytest.mark.timeout(240)



def wait_until(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def test_a_full_collector_disk_is_retried_and_loses_nothing(tmp_path, deployments, produce):
    with small_disk(tmp_path / "collector-disk", "64m") as disk:
        check_a_full_collector_disk(disk, deployments, produce)


def check_a_full_collector_disk(disk, deployments, produce) -> None:
    deployment = deployments(collector_dir=disk, energy=False)
    deployment.start_collector()
    deployment.start_agent()
    producer = produce(deployment, rate_per_s=1000)
    producer.wait_until_committed(1000)
    wait_until(lambda: deployment.stored_count() > 0, "the first records stored")

    fill_disk(disk / "ballast", leave_bytes=64 * 1024)  # the database and its WAL cannot grow much more
    stored = deployment.stored_count()
    wait_until(lambda: "store unavailable" in collector_log(deployment), "a push refused for a full disk")
    producer.wait_until_committed(producer.committed() + 2000)
    # While the disk is full the backlog grows on the device; the collector holds at most a
    # few batches more than when it filled (what fitted in its last pages).
    assert deployment.buffered_count() > 1000
    assert deployment.stored_count() < stored + 2000
    assert deployment.collector.process.poll() is None, "the collector must keep running"

    (disk / "ballast").unlink()
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))
    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    assert "UNAVAILABLE" in (deployment.workdir / "agent.log").read_text()


def collector_log(deployment) -> str:
    return (deployment.workdir / "collector.log").read_text(errors="replace")
