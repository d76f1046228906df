"""The device buffer: schema, stream identity, seq order, concurrent writers, rejects."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import stat
import time

import pytest

from agent.buffer import (
    APPEND_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    Buffer,
    BufferError,
    decode_json,
    encode_energy,
    encode_memory,
    encode_tags,
    row_from_record,
)
from agent.record import EnergyShare, Kind, Memory, Status, UsageRecord


def make_record(i: int = 0, **fields) -> UsageRecord:
    values = dict(
        seq=1, kind=Kind.INFERENCE, model="m", start_unix_ns=time.time_ns(), duration_ns=1000 + i,
        cpu_time_ns=500, batch_size=1, tags={"project": "x"},
    )
    values.update(fields)
    return UsageRecord(**values)


def test_what_the_buffer_encodes_decodes_back():
    shares = [EnergyShare("cpu", 12, 'rapl:"package-0", die 1', "cpu-time", 100_000_000, 3),
              EnergyShare("gpu", 0, "nvml:0 ü", "gpu-time", 1, 0)]
    assert [EnergyShare(*share) for share in decode_json(encode_energy(shares))] == shares
    assert Memory(*decode_json(encode_memory(Memory(1, 2, 3)))) == Memory(1, 2, 3)
    tags = {"project": "a,b", "user": 'x"y', "site": "Zürich"}
    assert decode_json(encode_tags(tags)) == tags
    for text in ("", "[1,", "not json"):
        with pytest.raises(ValueError):
            decode_json(text)


def test_new_buffer_has_schema_and_a_random_stream(tmp_path):
    first = Buffer.open(tmp_path / "a.db")
    second = Buffer.open(tmp_path / "b.db")
    assert len(first.stream_id) == 32 and int(first.stream_id, 16) >= 0
    assert first.stream_id != second.stream_id
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_keeps_the_stream(tmp_path):
    stream = Buffer.open(tmp_path / "b.db").stream_id
    assert Buffer.open(tmp_path / "b.db").stream_id == stream


def test_round_trip_keeps_every_field(tmp_path):
    record = make_record(
        model_version="3", runtime="onnxruntime", execution_provider="CPUExecutionProvider",
        input_bytes=64, output_bytes=16, input_tokens=7, output_tokens=9, status=Status.ERROR,
        error_type="Fail", pid=42, count=1, gpu_time_ns=5,
        energy=(EnergyShare("cpu", 12, "rapl", "cpu-time", 100, 1),), memory=Memory(1, 2, 3),
        tags={"user": "ä, \"quoted\""},
    )
    with Buffer.open(tmp_path / "b.db") as buffer:
        last = buffer.append([row_from_record(record)])
        (stored,) = buffer.read()
    record.seq = last
    assert stored == record


def test_seqs_increase_and_are_never_reused_after_delete(tmp_path):
    path = tmp_path / "b.db"
    with Buffer.open(path) as buffer:
        buffer.append([row_from_record(make_record(i)) for i in range(5)])
        assert buffer.delete_through(5) == 5
    with Buffer.open(path) as buffer:
        last = buffer.append([row_from_record(make_record())])
        assert last == 6
        assert [r.seq for r in buffer.read()] == [6]


def test_read_pages_in_seq_order(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        buffer.append([row_from_record(make_record(i)) for i in range(10)])
        page = buffer.read(limit=4)
        assert [r.seq for r in page] == [1, 2, 3, 4]
        assert [r.seq for r in buffer.read(after_seq=8)] == [9, 10]


def test_reject_moves_records_aside_with_the_reason(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        buffer.append([row_from_record(make_record(i)) for i in range(3)])
        assert buffer.reject([2], "bad clock") == 1
        assert [r.seq for r in buffer.read()] == [1, 3]
        ((record, reason),) = buffer.rejected()
        assert (record.seq, reason) == (2, "bad clock")
        stats = buffer.stats()
        assert (stats.records, stats.rejected, stats.first_seq, stats.last_seq) == (2, 1, 1, 3)


def test_failed_append_changes_nothing(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        good = row_from_record(make_record())
        with pytest.raises(sqlite3.Error):
            buffer.append([good, good[:-1]])  # second row is short: the whole batch fails
        assert buffer.stats().records == 0
        assert buffer.append([good]) == 1


def test_a_newer_schema_is_refused_clearly(tmp_path):
    path = tmp_path / "b.db"
    Buffer.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BufferError, match="newer than this infermeter"):
        Buffer.open(path)


def test_another_sqlite_file_is_not_taken_over(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with pytest.raises(BufferError, match="not an infermeter buffer"):
        Buffer.open(path)
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("mine",)]


def _schema_1_buffer(path, records: list[UsageRecord], stream_id: str) -> None:
    """A buffer file as infermeter wrote it before energy attribution (schema 1)."""
    columns = APPEND_COLUMNS[:-3]  # schema 1 had no start_mono_ns, boot, attributed
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO meta (key, value) VALUES ('stream_id', ?), ('created_unix_ns', '1')", (stream_id,))
    conn.executemany(
        f"INSERT INTO records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [row_from_record(record)[: len(columns)] for record in records],
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_a_schema_1_buffer_keeps_its_records_and_stream_and_ships_them_as_attributed(tmp_path, caplog):
    path = tmp_path / "old.db"
    old = [
        make_record(i, seq=i + 1, energy=(EnergyShare("cpu", 12, "rapl", "cpu-time", 100, 1),) if i else ())
        for i in range(3)
    ]
    _schema_1_buffer(path, old, "0123456789abcdef0123456789abcdef")
    caplog.set_level(logging.INFO, logger="agent.buffer")

    with Buffer.open(path) as buffer:
        assert buffer.stream_id == "0123456789abcdef0123456789abcdef"
        assert buffer.read() == old
        assert buffer.read(attributed_only=True) == old
        assert buffer.query("SELECT start_mono_ns, boot, attributed FROM records") == [(None, 0, 1)] * 3
        assert buffer.query("SELECT count(*) FROM writers") == [(0,)]
        assert buffer.append([row_from_record(make_record())]) == 4

    assert f"schema 1 -> {SCHEMA_VERSION}" in caplog.text
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BufferError, match="cannot open buffer"):
        Buffer.open(path)


def _writer(path: str, writer: int, batches: int, per_batch: int) -> None:
    with Buffer.open(path) as buffer:
        for b in range(batches):
            rows = [row_from_record(make_record(pid=writer, duration_ns=b * per_batch + i))
                    for i in range(per_batch)]
            buffer.append(rows)


def test_several_processes_append_at_once_and_seqs_stay_a_prefix(tmp_path):
    path = str(tmp_path / "shared.db")
    Buffer.open(path).close()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(path, w, 20, 50)) for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    with Buffer.open(path) as buffer:
        records = buffer.read(limit=10_000)
    assert [r.seq for r in records] == list(range(1, 4001))
    for writer in range(4):
        mine = [r.duration_ns for r in records if r.pid == writer]
        assert mine == list(range(1000))  # each writer's records kept its own order


def test_a_new_buffer_is_group_writable_whatever_the_umask(tmp_path):
    """The daemon and the apps that meter run as different users of one group: whichever
    creates the buffer, the others must be able to write it (and its WAL)."""
    old_umask = os.umask(0o077)
    try:
        with Buffer.open(tmp_path / "buffer.db") as buffer:
            buffer.append([])
            with buffer.transaction() as conn:
                conn.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old_umask)
    assert modes == {"buffer.db": 0o660, "buffer.db-wal": 0o660, "buffer.db-shm": 0o660}
