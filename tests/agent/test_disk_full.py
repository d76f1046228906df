"""A buffer with no room left, at its cap or on a real file system that is full (a small tmpfs;
skipped where it cannot be mounted): the app's inferences go on and every call is accounted
for (written, held or counted as dropped); the shipper stops at what it cannot delete, so
compaction never gets hold of a record the collector has; and the daemon waits for room
instead of exiting into a restart loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent import Meter
from agent.buffer import MIB, Buffer
from agent.compaction import CompactionPolicy, Compactor
from agent.shipper import Shipper
from tests.agent.buffer_helpers import (
    all_records,
    append,
    fill,
    make_record,
)
from tests.agent.test_buffer_state_machine import ModelCollector, sums
from tests.small_disk import fill_disk, small_disk

CAP = 256 * 1024
MAX_QUEUE = 50


@dataclass
class FullBuffer:
    path: Path
    make_room: Callable[[], None]


@pytest.fixture(params=["cap", "disk"])
def full_buffer(request, tmp_path) -> Iterator[FullBuffer]:
    """A buffer with records in it and no room for more: at its cap (the daemon's compaction
    makes room), or on a full file system (something else frees space)."""
    if request.param == "cap":
        path = tmp_path / "buffer.db"
        with Buffer.open(path, max_bytes=CAP) as buffer:
            fill(buffer)

        def compact() -> None:
            with Buffer.open(path) as daemon_side:
                Compactor(daemon_side, policy=CompactionPolicy(keep_head_records=100)).run_once()

        yield FullBuffer(path, compact)
        return
    with small_disk(tmp_path / "disk", "1m") as disk:
        path = disk / "buffer.db"
        with Buffer.open(path, max_bytes=64 * MIB) as buffer:
            append(buffer, [make_record(i) for i in range(200)])
        fill_disk(disk / "ballast")
        yield FullBuffer(path, (disk / "ballast").unlink)


def test_inference_goes_on_and_every_call_is_written_held_or_counted_as_dropped(full_buffer, tiny_session, feed):
    expected = tiny_session.run(None, feed)
    meter = Meter(full_buffer.path, start_thread=False, max_queue=MAX_QUEUE)
    session = meter.wrap_onnx(tiny_session, model="tiny")
    calls = 0
    for _ in range(3):
        for _ in range(40):
            outputs = session.run(None, feed)  # never raises, whatever the buffer does
            calls += 1
            np.testing.assert_array_equal(outputs[0], expected[0])
        assert meter.flush() is False
    stats = meter.stats()
    assert stats.written == 0 and stats.errors >= 3
    assert stats.pending == MAX_QUEUE and stats.dropped == calls - MAX_QUEUE

    full_buffer.make_room()
    session.run(None, feed)
    calls += 1
    assert meter.flush() is True
    stats = meter.stats()
    assert (stats.written, stats.pending) == (MAX_QUEUE + 1, 0)
    assert stats.written + stats.dropped == calls
    meter.close()
    with Buffer.open(full_buffer.path) as buffer:
        assert sum(1 for r in all_records(buffer) if r.model == "tiny") == MAX_QUEUE + 1


def test_what_cannot_be_written_at_close_is_counted_as_dropped(full_buffer, tiny_session, feed):
    meter = Meter(full_buffer.path, start_thread=False, max_queue=MAX_QUEUE)
    session = meter.wrap_onnx(tiny_session, model="tiny")
    for _ in range(10):
        session.run(None, feed)
    meter.close()
    assert (meter.stats().written, meter.stats().dropped, meter.stats().pending) == (0, 10, 0)


def test_on_a_full_disk_the_shipper_stops_at_what_it_cannot_delete_and_each_record_counts_once(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        path = disk / "buffer.db"
        with Buffer.open(path, max_bytes=64 * MIB) as buffer:
            append(buffer, [make_record(i) for i in range(1_000)])
        buffer = Buffer.open(path)  # before the disk fills: opening takes room for the WAL index
        appended = sums(all_records(buffer))
        collector = ModelCollector()
        fill_disk(disk / "ballast")

        report = Shipper(buffer, collector, batch_size=10, max_batches=50).run_once()

        # The first batch was acknowledged and could not be deleted; the second went out before
        # that was known. Nothing more went: the acknowledged records stay within the head.
        assert (report.batches, report.undeleted, report.failure) == (1, 10, None)
        assert sorted(collector.stored) == list(range(1, 21)) and buffer.stats().records == 1_000

        (disk / "ballast").unlink()
        policy = CompactionPolicy(compact_at=0.01, compact_to=0.005, keep_head_records=20)  # the daemon's: 2 batches
        assert Compactor(buffer, policy=policy).run_once().rolled_up > 0
        assert all_records(buffer)[:20] == [collector.stored[seq] for seq in range(1, 21)]
        Shipper(buffer, collector, batch_size=10, max_batches=10**6).run_once()
        assert buffer.stats().records == 0
        assert sums(list(collector.stored.values())) == appended
        buffer.close()


def write_config(tmp_path: Path, buffer_path: Path, collector_address: str) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'buffer = "{buffer_path}"\n'
        f'[collector]\naddress = "{collector_address}"\ntoken = "imd_test"\n'
        "[shipper]\ninterval_s = 0.1\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.3\n"
        "[energy]\nenabled = false\n"
    )
    return config


def test_the_daemon_waits_for_room_on_a_full_disk_instead_of_exiting(tmp_path, collector, start_daemon):
    ingest, address = collector
    with small_disk(tmp_path / "disk", "1m") as disk:
        path = disk / "buffer.db"
        with Buffer.open(path, max_bytes=64 * MIB) as buffer:
            append(buffer, [make_record(i) for i in range(100)])
        fill_disk(disk / "ballast")

        daemon = start_daemon(write_config(tmp_path, path, address))
        ready_s = daemon.listener.wait_for("READY=1")
        daemon.listener.wait_for("STATUS=waiting for room on the disk of")
        time.sleep(1.0)
        assert daemon.process.poll() is None  # waiting, not exiting into a restart loop
        assert len(daemon.listener.pings(ready_s, time.monotonic())) >= 3  # a full disk is no stall
        assert ingest.pushes == 0

        (disk / "ballast").unlink()
        deadline = time.monotonic() + 15
        while ingest.pushes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ingest.pushes > 0
        assert daemon.stop() == 0
        with Buffer.open(path) as buffer:
            assert buffer.stats().records == 0
    log = daemon.log_path.read_text()
    assert log.count("its disk is full: waiting for room") == 1 and "opened after" in log
