"""A device buffer found corrupt when the agent daemon starts (a truncated file, a damaged
page): the daemon starts all the same, without hanging or crash-looping, moves the file aside,
and ships the loss, with its number, as a gap record in a new stream; what the app meters from
then on arrives exactly once."""

from __future__ import annotations

import os
import sqlite3

import pytest

from agent.record import Kind
from agent.rollup import CORRUPT_BUFFER
from collector.demo import processes
from tests.reliability.stream import check_exactly_once, wait_until_delivered

pytestmark = pytest.mark.timeout(180)

GAP = int(Kind.GAP)
LOST = 1500


def truncate(path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def damage_the_records_table(path) -> None:
    conn = sqlite3.connect(path)
    page, page_size = conn.execute(
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size()) FROM sqlite_master WHERE name = 'records'"
    ).fetchone()
    conn.close()
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(os.urandom(512))


@pytest.mark.parametrize("damage", [truncate, damage_the_records_table], ids=["truncated", "damaged-page"])
def test_a_corrupt_buffer_is_set_aside_and_its_loss_reaches_the_collector(damage, deployments, produce):
    deployment = deployments(energy=False)
    lost = produce(deployment, rate_per_s=2000)  # the collector is down: these stay on the device
    lost.wait_until_committed(LOST)
    lost.stop()
    damage(deployment.buffer_path)

    deployment.start_agent()  # returns once the daemon is ready: it did not hang
    deployment.start_collector()
    producer = produce(deployment, rate_per_s=1000)
    producer.wait_until_committed(1000)
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    (gap,) = deployment.stored_rows(
        "count, json_extract(tags, '$.\"infermeter.gap\"'), json_extract(tags, '$.\"infermeter.lost_records\"')",
        kind=GAP,
    )
    count, reason, lost_records = gap
    assert reason == CORRUPT_BUFFER
    # A truncated file may still show some of its records; the number is what could be read.
    assert lost_records == "unknown" or 0 < int(lost_records) <= lost.made, gap
    assert count >= 1
    moved = [p for p in deployment.buffer_path.parent.iterdir() if ".corrupt-" in p.name]
    assert moved, "the corrupt file is kept beside the new one"
    assert deployment.agent.poll() is None, "the daemon runs on"
    assert processes.stop(deployment.agent) == 0
    assert deployment.buffer_integrity() == "ok"
