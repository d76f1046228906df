"""A corrupt device buffer (a damaged page, a truncated or garbage file, a bit-flipped WAL) is
moved aside when the daemon opens it; a new buffer, with a new stream, takes its path, and the
loss is reported with a number as a gap record, once, through crashes at each step and a full
disk. App processes writing to the old file go on in the new one."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from agent import Meter
from agent.buffer import MIB, Buffer, BufferError
from agent.quarantine import open_checked, quarantine_if_corrupt
from agent.record import Kind
from agent.rollup import CORRUPT_BUFFER, GAP_REASON_TAG, LOST_RECORDS_TAG
from agent.wal_check import FRAME_HEADER_BYTES, HEADER_BYTES
from tests.agent.buffer_helpers import (
    all_records,
    append,
    make_record,
)
from tests.small_disk import fill_disk, small_disk


def make_buffer(path: Path, records: int) -> str:
    """A buffer at path with records in it, its WAL folded into the file; its stream id."""
    with Buffer.open(path) as buffer:
        append(buffer, [make_record(i) for i in range(records)])
        return buffer.stream_id


def damage_a_page(path: Path) -> None:
    """Garbage over the root page of the table of rejected records: quick_check finds it, and
    appends, which never touch that table, do not."""
    conn = sqlite3.connect(path)
    page, page_size = conn.execute(
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size()) FROM sqlite_master WHERE name = 'rejected'"
    ).fetchone()
    conn.close()
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(b"\xff" * 64)


def quarantined(path: Path) -> list[str]:
    """The names of the database files moved aside from path."""
    return sorted(
        p.name for p in path.parent.iterdir()
        if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm", ".unreported"))
    )


def the_gap(buffer: Buffer):
    (gap,) = all_records(buffer)
    assert gap.kind is Kind.GAP and gap.tags[GAP_REASON_TAG] == CORRUPT_BUFFER
    return gap


def test_a_damaged_page_is_quarantined_and_its_records_reported_lost_in_a_new_stream(tmp_path, caplog):
    path = tmp_path / "buffer.db"
    old_stream = make_buffer(path, 300)
    damage_a_page(path)
    caplog.set_level(logging.INFO, logger="agent.quarantine")

    with open_checked(path) as buffer:
        gap = the_gap(buffer)
        assert (gap.count, gap.tags[LOST_RECORDS_TAG]) == (300, "300")
        assert buffer.stream_id != old_stream
        counters = buffer.counters()
        assert (counters.quarantined_files, counters.gap_records) == (1, 1)

    (moved,) = quarantined(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".unreported")] == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"moved to {tmp_path / moved}" in errors[0] and "(300, as far" in errors[0]
    with open_checked(path) as again:  # a healthy file is left as it is
        assert the_gap(again) == gap


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_file_nothing_can_be_read_from_is_reported_as_an_unknown_loss(tmp_path, damage):
    path = tmp_path / "buffer.db"
    make_buffer(path, 300)
    if damage == "truncated":
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
    else:
        path.write_bytes(os.urandom(16_384))

    with open_checked(path) as buffer:
        gap = the_gap(buffer)
    assert (gap.count, gap.tags[LOST_RECORDS_TAG]) == (1, "unknown")
    assert len(quarantined(path)) == 1


def test_a_wal_whose_committed_frames_sqlite_would_skip_is_quarantined(tmp_path):
    live = tmp_path / "live.db"
    writer = Buffer.open(live)
    for i in range(5):  # five transactions, in the WAL
        append(writer, [make_record(10 * i + k) for k in range(10)])
    path = tmp_path / "buffer.db"  # what a power cut leaves: the file and its WAL as they are
    shutil.copy(live, path)
    shutil.copy(live.with_name("live.db-wal"), path.with_name("buffer.db-wal"))
    writer.close()
    with path.with_name("buffer.db-wal").open("r+b") as wal:
        wal.seek(HEADER_BYTES + FRAME_HEADER_BYTES + 100)  # a bit flip in the first frame's page
        byte = wal.read(1)[0]
        wal.seek(-1, os.SEEK_CUR)
        wal.write(bytes([byte ^ 0x10]))

    with open_checked(path) as buffer:
        the_gap(buffer)
    assert len(quarantined(path)) == 1


def test_the_loss_of_a_file_moved_before_a_crash_is_reported_at_the_next_start(tmp_path):
    path = tmp_path / "buffer.db"
    make_buffer(path, 40)
    damage_a_page(path)
    assert quarantine_if_corrupt(path).lost_records == 40  # and the daemon dies here
    assert not path.exists()
    Meter(path, start_thread=False).close()  # an app starts the new buffer meanwhile

    with open_checked(path) as buffer:
        assert the_gap(buffer).count == 40


def test_a_report_that_outlived_its_note_is_not_made_twice(tmp_path):
    path = tmp_path / "buffer.db"
    make_buffer(path, 40)
    damage_a_page(path)
    with open_checked(path) as buffer:
        gap = the_gap(buffer)
    (moved,) = quarantined(path)
    (tmp_path / f"{moved}.unreported").write_text("the daemon died before it deleted this\n")

    with open_checked(path) as buffer:
        assert the_gap(buffer) == gap
    assert not (tmp_path / f"{moved}.unreported").exists()


def test_a_note_whose_file_never_moved_reports_nothing(tmp_path):
    path = tmp_path / "buffer.db"
    make_buffer(path, 40)
    note = tmp_path / "buffer.db.corrupt-20260101T000000Z.unreported"
    note.write_text("the daemon died before it moved the file\n")

    with open_checked(path) as buffer:
        assert buffer.stats().records == 40 and buffer.counters().quarantined_files == 0
    assert not note.exists()


@pytest.mark.parametrize("held_open", [False, True], ids=["closed", "held-open-by-an-app"])
def test_on_a_full_disk_nothing_moves_until_there_is_room_and_the_loss_is_reported_once(tmp_path, held_open):
    with small_disk(tmp_path / "disk", "1m") as disk:
        path = disk / "buffer.db"
        make_buffer(path, 100)
        damage_a_page(path)
        app = Buffer.open(path) if held_open else None  # its WAL index exists: the file can be checked
        fill_disk(disk / "ballast")
        # Unchecked, the file cannot be opened (no room for its WAL index); checked, the note of
        # the loss cannot be written. Either way the daemon waits and tries again
        # (agent.daemon.open_buffer).
        with pytest.raises(OSError if held_open else BufferError):
            open_checked(path, max_bytes=64 * MIB)
        assert path.exists() and quarantined(path) == []

        (disk / "ballast").unlink()
        with open_checked(path, max_bytes=64 * MIB) as buffer:
            assert the_gap(buffer).count == 100
        with open_checked(path) as buffer:
            assert buffer.counters().quarantined_files == 1
        if app is not None:
            app.close()


def test_an_app_writing_to_the_corrupt_file_goes_on_in_the_new_one(tmp_path):
    path = tmp_path / "buffer.db"
    make_buffer(path, 10)
    damage_a_page(path)
    meter = Meter(path, start_thread=False)
    for _ in range(5):
        with meter.span("before"):
            pass
    assert meter.flush()  # into the corrupt file, which appends do not notice

    open_checked(path).close()  # the daemon starts: the file moves aside under its lock
    for _ in range(3):
        with meter.span("after"):
            pass
    assert meter.flush() is False  # its connection has the old file: BufferMoved, held
    assert meter.flush() is True  # reopened: the new buffer
    meter.close()

    assert len(quarantined(path)) == 1
    with Buffer.open(path) as buffer:
        records = all_records(buffer)
    assert records[0].kind is Kind.GAP and records[0].count == 15  # 10 and the app's 5
    assert [r.model for r in records[1:]] == ["after"] * 3
    assert meter.stats().dropped == 0
