"""Compaction: the cap is kept by rolling the oldest records up, then by dropping them into gap
records; the sums the collector prices stay, the head that may be on the collector stays as it
is, and a full buffer (the cap, or a real full disk) makes room for the app's records."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from agent import Meter
from agent.buffer import MIB, Buffer, BufferCounters, is_full
from agent.compaction import CompactionPolicy, Compactor
from agent.record import Kind, Status
from agent.rollup import BUFFER_FULL, GAP_REASON_TAG, LOST_RECORDS_TAG
from tests.agent.buffer_helpers import (
    MINUTE_NS,
    START_UNIX_NS,
    all_records,
    append,
    fill,
    make_record,
    totals,
)
from tests.small_disk import fill_disk, small_disk

CAP = 256 * 1024
# Compaction at any fill, all the way, with no dropping: to look at what roll-ups are made of.
EVERYTHING = CompactionPolicy(compact_at=1e-9, compact_to=1e-10, drop_at=2.0, keep_head_records=5)


@pytest.fixture
def buffer(tmp_path):
    with Buffer.open(tmp_path / "buffer.db", max_bytes=CAP) as buffer:
        yield buffer


@pytest.fixture
def roomy(tmp_path):
    """A buffer whose WAL share lets a batch hold a thousand records and more."""
    with Buffer.open(tmp_path / "roomy.db", max_bytes=16 * MIB) as buffer:
        yield buffer


def without_failed(sums):
    return {key: value for key, value in sums.items() if key != "failed"}


def test_below_the_threshold_nothing_changes(buffer):
    append(buffer, [make_record(i) for i in range(100)])
    before = all_records(buffer)

    report = Compactor(buffer).run_once()

    assert (report.rolled_up, report.dropped) == (0, 0) and report.fill_after < 0.8
    assert all_records(buffer) == before
    assert buffer.counters() == BufferCounters()


def test_the_oldest_attributed_records_become_per_minute_roll_ups_with_exact_sums(roomy):
    buffer = roomy
    append(buffer, [make_record(i) for i in range(1_800)])  # three minutes, two models, some errors
    invalid = append(buffer, [make_record(0, start_unix_ns=10**9)])  # 1970: the collector refuses it
    append(buffer, [make_record(1_800 + i) for i in range(20)])  # a fourth minute
    append(buffer, [make_record(1_900 + i) for i in range(30)], attributed=False)  # no energy yet
    before = all_records(buffer)

    report = Compactor(buffer, policy=EVERYTHING).run_once()

    after = all_records(buffer)
    seqs = [r.seq for r in after]
    assert seqs == sorted(set(seqs))
    assert after[:5] == before[:5]  # the head may be on the collector: as it was
    assert after[-30:] == before[-30:]  # waiting for energy: as they were
    assert [r for r in after if r.seq == invalid] == [r for r in before if r.seq == invalid]
    rollups = [r for r in after if r.kind is Kind.ROLLUP]
    # One per minute, model and outcome (4 x 2 x 2), a few more where a batch ends mid-minute;
    # a group of one record stays as it is.
    alone = [r for r in after[5:-31] if r.kind is Kind.INFERENCE]
    assert 12 <= len(rollups) <= 32 and len(alone) <= 4
    assert len(after) == 5 + len(rollups) + len(alone) + 1 + 30
    assert totals(after) == totals(before)
    assert sum(r.count for r in rollups) == report.rolled_up == 1_800 - 5 + 20 - len(alone)
    assert {r.error_type for r in rollups if r.status is Status.ERROR} == {"Timeout"}
    assert {r.error_type for r in rollups if r.status is Status.OK} == {""}
    assert {r.start_unix_ns // MINUTE_NS - START_UNIX_NS // MINUTE_NS for r in rollups} == {0, 1, 2, 3}
    assert {r.pid for r in rollups} == {4242}
    counters = buffer.counters()
    assert counters.compactions >= 1
    assert (counters.rolled_up_records, counters.rollups_written) == (report.rolled_up, len(rollups))


def test_each_roll_up_takes_the_smallest_seq_it_replaces_and_new_records_come_after(roomy):
    buffer = roomy
    append(buffer, [make_record(i, model="m") for i in range(50)])  # one minute, one model
    before = {r.seq: r for r in all_records(buffer)}

    Compactor(buffer, policy=EVERYTHING).run_once()

    after = all_records(buffer)
    kept, (ok_rollup, error_rollup) = after[:5], sorted(after[5:], key=lambda r: r.status)
    assert kept == [before[seq] for seq in range(1, 6)]
    # Past the head (seqs 1-5): seq 6 is the first call, seq 12 the first failure (i = 11).
    assert (ok_rollup.seq, error_rollup.seq) == (6, 12)
    assert (ok_rollup.count, error_rollup.count) == (41, 4)
    assert append(buffer, [make_record(99)]) == 51  # AUTOINCREMENT: never a seq handed out before


def test_a_full_file_is_compacted_and_takes_records_again(buffer):
    filled = fill(buffer)
    before = totals(all_records(buffer))

    report = Compactor(buffer, policy=CompactionPolicy(keep_head_records=100)).run_once()

    assert report.fill_before > 0.95 and report.fill_after <= 0.6
    assert totals(all_records(buffer)) == before
    assert fill(buffer, filled) > filled + 100  # room again


def test_records_that_roll_ups_cannot_shrink_are_dropped_into_gap_records(buffer, caplog):
    caplog.set_level(logging.INFO, logger="agent.compaction")
    # A minute and a tag set of its own each: every roll-up would be a record of one.
    def alone(i):
        return make_record(i, tags={"call": str(i)}, start_unix_ns=START_UNIX_NS + i * MINUTE_NS)

    filled = fill(buffer, batch=20, make=alone)
    before = all_records(buffer)

    report = Compactor(buffer, policy=CompactionPolicy(keep_head_records=10)).run_once()

    after = all_records(buffer)
    gaps = [r for r in after if r.kind is Kind.GAP]
    assert report.rolled_up == 0 and report.dropped > 0 and report.fill_after <= 0.85
    assert after[:10] == before[:10]
    assert sum(g.count for g in gaps) == report.dropped_units == report.dropped
    assert sum(int(g.tags[LOST_RECORDS_TAG]) for g in gaps) == report.dropped
    assert {g.tags[GAP_REASON_TAG] for g in gaps} == {BUFFER_FULL}
    assert gaps[0].seq == before[10].seq  # in place of the oldest dropped record
    assert without_failed(totals(after)) == without_failed(totals(before))
    counters = buffer.counters()
    assert (counters.dropped_records, counters.dropped_units, counters.gap_records) == (
        report.dropped, report.dropped_units, len(gaps)
    )
    assert fill(buffer, filled, make=alone) > filled
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "dropping" in warnings[1]


def test_a_streak_is_logged_when_it_starts_and_when_it_ends(buffer, caplog):
    caplog.set_level(logging.INFO, logger="agent.compaction")
    compactor = Compactor(buffer)
    i = 0
    while compactor.fill() < 0.9:  # past compact_at, short of drop_at
        append(buffer, [make_record(i + k) for k in range(10)])
        i += 10
    # The head alone keeps the buffer past compact_at: roll-ups cannot end the streak, and
    # there is nothing to drop.
    compactor = Compactor(buffer, policy=CompactionPolicy(keep_head_records=i - 50))

    first = compactor.run_once()
    compactor.run_once()
    assert first.rolled_up > 0 and compactor.fill() > 0.8
    assert [r.levelno for r in caplog.records] == [logging.WARNING]

    buffer.delete_through(buffer.stats().last_seq)  # shipped
    compactor.run_once()
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "rolled up" in caplog.records[-1].getMessage()


def test_a_buffer_that_only_its_head_fills_is_an_error_once_per_streak(buffer, caplog):
    caplog.set_level(logging.INFO, logger="agent.compaction")
    filled = fill(buffer)
    compactor = Compactor(buffer, policy=CompactionPolicy(keep_head_records=filled))

    reports = [compactor.run_once(), compactor.run_once()]

    assert [(r.rolled_up, r.dropped, r.fill_after) for r in reports] == [(0, 0, 1.0)] * 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]
    assert "nothing more can be dropped" in caplog.records[1].getMessage()


def test_a_disk_with_little_room_left_counts_as_a_full_buffer(tmp_path):
    with Buffer.open(tmp_path / "buffer.db", max_bytes=64 * MIB) as buffer:
        append(buffer, [make_record(i) for i in range(3_000)])
        assert Compactor(buffer).fill() < 0.1

        compactor = Compactor(buffer, policy=CompactionPolicy(keep_head_records=10), free_bytes=lambda _: 0)
        report = compactor.run_once()

    assert report.fill_before == 1.0 and report.rolled_up > 2_000


def test_an_app_at_the_cap_keeps_its_records_until_compaction_makes_room(tmp_path):
    path = tmp_path / "buffer.db"
    Buffer.open(path, max_bytes=CAP).close()  # the daemon sets the cap; the app obeys it
    meter = Meter(path, start_thread=False)
    made = 0
    while meter.flush():
        _spans(meter, 200)
        made += 200
    assert meter.stats().pending > 0 and meter.stats().dropped == 0

    with Buffer.open(path) as daemon_side:
        assert daemon_side.limits.max_bytes == CAP
        _attribute(daemon_side)
        Compactor(daemon_side, policy=CompactionPolicy(keep_head_records=100)).run_once()

    assert meter.flush()
    stats = meter.stats()
    assert (stats.recorded, stats.written, stats.dropped, stats.pending) == (made, made, 0, 0)
    meter.close()
    with Buffer.open(path) as daemon_side:
        assert sum(r.count for r in all_records(daemon_side)) == made


def _spans(meter: Meter, count: int) -> None:
    for _ in range(count):
        with meter.span("step", tags={"project": "search"}):
            pass


def _attribute(buffer: Buffer) -> None:
    """What energy attribution does to records, with no sensor (failing, as it does, on a full disk)."""
    try:
        with buffer.transaction() as conn:
            conn.execute("UPDATE records SET attributed = 1 WHERE attributed = 0")
    except sqlite3.Error as err:
        assert is_full(err), err


def test_on_a_small_real_disk_the_buffer_keeps_taking_records_and_recovers_when_it_fills(tmp_path):
    with small_disk(tmp_path / "small", "2m") as mount_point:
        path = mount_point / "buffer.db"
        Buffer.open(path, max_bytes=64 * MIB).close()  # a cap far beyond the disk
        meter = Meter(path, start_thread=False)
        daemon_side = Buffer.open(path)
        compactor = Compactor(daemon_side, policy=CompactionPolicy(keep_head_records=100))
        for _ in range(40):  # the daemon's rounds; 20,000 records would take 5 MB as they are
            _spans(meter, 500)
            assert meter.flush()
            _attribute(daemon_side)
            compactor.run_once()
        assert daemon_side.counters().rolled_up_records > 0

        filler = mount_point / "filler"  # something else fills the disk
        fill_disk(filler)
        _spans(meter, 3_000)  # more than the WAL's room left
        assert meter.flush() is False  # kept in memory, never raised into the app
        with pytest.raises(sqlite3.Error) as failed:  # the daemon logs a failing task once per streak
            append(daemon_side, [make_record(i) for i in range(3_000)])
        assert is_full(failed.value)
        shipped = daemon_side.delete_through(daemon_side.stats().first_seq)  # never raises

        filler.unlink()  # space comes back
        assert meter.flush()
        _attribute(daemon_side)
        compactor.run_once()
        stats = meter.stats()
        assert (stats.recorded, stats.written, stats.dropped, stats.pending) == (23_000, 23_000, 0, 0)
        assert sum(r.count for r in all_records(daemon_side)) + shipped == 23_000
        assert daemon_side.usage().file_bytes < 2 * MIB
        meter.close()
        daemon_side.close()


def test_a_delete_on_a_full_disk_is_retried_not_raised(tmp_path, caplog):
    class FullDisk(Buffer):
        def transaction(self):
            raise sqlite3.OperationalError("database or disk is full")

    caplog.set_level(logging.INFO, logger="agent.buffer")
    with FullDisk.open(tmp_path / "buffer.db") as buffer:
        assert is_full(sqlite3.OperationalError("database or disk is full"))
        assert buffer.delete_through(10) == 0
        assert buffer.delete_through(10) == 0
        assert buffer.reject([1], "bad") == 0
    assert sum("is full" in r.getMessage() for r in caplog.records) == 1
