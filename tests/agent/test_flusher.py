"""The flusher: lazy start, group commit, bounded memory, failures kept and retried, close."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent import Meter, MeterStats
from agent.buffer import Buffer
from agent.entry import STATUS_OK, static_fields
from agent.flusher import Flusher
from agent.record import Kind
from tests.agent.conftest import read_records

REPO_ROOT = Path(__file__).resolve().parents[2]


def _spans(meter: Meter, count: int) -> None:
    for _ in range(count):
        with meter.span("step"):
            pass


def _flusher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "infermeter-flusher"]


def test_a_meter_starts_its_thread_with_the_first_span_and_does_no_io_until_the_first_record(tmp_path):
    buffer_path = tmp_path / "not-yet" / "buffer.db"
    threads_before = _flusher_threads()

    meter = Meter(buffer_path)
    assert _flusher_threads() == threads_before
    meter.span("step")  # the thread starts, to watch for a long first call
    assert len(_flusher_threads()) == len(threads_before) + 1
    assert not buffer_path.parent.exists()

    _spans(meter, 1)
    assert meter.flush()
    assert len(read_records(buffer_path)) == 1

    meter.close()
    assert _flusher_threads() == threads_before


def test_each_round_is_one_transaction_of_everything_queued(meter, buffer_path):
    _spans(meter, 5)
    assert meter.flusher.run_once() == 5
    assert meter.flusher.run_once() == 0
    _spans(meter, 2)
    assert meter.flusher.run_once() == 2
    assert [r.seq for r in read_records(buffer_path)] == [1, 2, 3, 4, 5, 6, 7]
    assert meter.stats() == MeterStats(recorded=7, written=7, dropped=0, errors=0, pending=0)


def test_a_full_queue_drops_and_counts(buffer_path):
    with Meter(buffer_path, start_thread=False, max_queue=3) as meter:
        _spans(meter, 5)
        assert meter.stats() == MeterStats(recorded=3, written=0, dropped=2, errors=0, pending=3)
        assert meter.flush()
        _spans(meter, 1)  # room again once written
        assert meter.flush()
        assert meter.stats().written == 4


def _unwritable_under_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the buffer's directory should be")
    return blocker / "buffer.db"


def test_a_failing_buffer_keeps_records_logs_once_and_recovers(tmp_path, caplog):
    buffer_path = _unwritable_under_a_file(tmp_path)
    meter = Meter(buffer_path, start_thread=False)
    caplog.set_level(logging.INFO, logger="agent.flusher")

    _spans(meter, 2)
    assert meter.flush() is False
    assert meter.flush() is False
    assert meter.stats() == MeterStats(recorded=2, written=0, dropped=0, errors=2, pending=2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retrying" in warnings[0].getMessage()

    (tmp_path / "blocker").unlink()
    _spans(meter, 1)
    assert meter.flush() is True
    assert meter.stats() == MeterStats(recorded=3, written=3, dropped=0, errors=2, pending=0)
    assert any("again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    meter.close()
    assert len(read_records(buffer_path)) == 3


def test_a_file_that_is_not_a_buffer_is_a_counted_failure(tmp_path):
    buffer_path = tmp_path / "buffer.db"
    buffer_path.write_bytes(b"not an SQLite database" * 100)
    with Meter(buffer_path, start_thread=False) as meter:
        _spans(meter, 1)
        assert meter.flush() is False
        assert meter.stats().errors == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_read_only_directory_is_a_counted_failure(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        with Meter(read_only / "buffer.db", start_thread=False) as meter:
            _spans(meter, 1)
            assert meter.flush() is False
            assert meter.stats().errors == 1
    finally:
        read_only.chmod(0o700)


def test_the_backlog_of_a_failing_buffer_is_capped(tmp_path):
    meter = Meter(_unwritable_under_a_file(tmp_path), start_thread=False, max_queue=3)
    _spans(meter, 3)
    meter.flusher.run_once()
    _spans(meter, 3)
    meter.flusher.run_once()
    assert meter.stats() == MeterStats(recorded=6, written=0, dropped=3, errors=2, pending=3)
    meter.close()
    assert meter.stats().dropped == 6  # the held three could not be written at close either


def test_close_writes_what_is_pending_and_is_idempotent(buffer_path):
    meter = Meter(buffer_path)
    _spans(meter, 3)
    meter.close()
    meter.close()
    assert len(read_records(buffer_path)) == 3
    assert meter.stats() == MeterStats(recorded=3, written=3, dropped=0, errors=0, pending=0)


def test_metering_after_close_is_a_counted_no_op(buffer_path, tiny_session, feed):
    meter = Meter(buffer_path, start_thread=False)
    metered = meter.wrap_onnx(tiny_session)
    metered.run(None, feed)
    meter.close()

    assert metered.run(None, feed)[0].shape == (3, 4)
    _spans(meter, 1)
    assert meter.flush() is True

    assert len(read_records(buffer_path)) == 1
    assert meter.stats() == MeterStats(recorded=1, written=1, dropped=2, errors=0, pending=0)


def test_context_manager_closes(buffer_path):
    with Meter(buffer_path) as meter:
        _spans(meter, 2)
    assert meter.flusher.accept_limit == 0
    assert len(read_records(buffer_path)) == 2


def test_flush_gives_up_after_its_timeout_while_a_write_is_stuck(buffer_path):
    entered, release = threading.Event(), threading.Event()

    def slow_open() -> Buffer:
        entered.set()
        release.wait(timeout=30)
        return Buffer.open(buffer_path)

    flusher = Flusher(slow_open, start_thread=False)
    static = static_fields(
        Kind.SPAN, "step", model_version="", runtime="span", execution_provider="", tags={}
    )
    flusher.submit((static, None, 1_700_000_000 * 10**9, 1_000, 400, 0, 0, 0, 0, 0, STATUS_OK, ""))
    writer = threading.Thread(target=flusher.run_once)
    writer.start()
    assert entered.wait(timeout=30)
    try:
        assert flusher.flush(timeout_s=0.01) is False
    finally:
        release.set()
        writer.join(timeout=30)
    assert flusher.stats() == MeterStats(recorded=1, written=1, dropped=0, errors=0, pending=0)


def test_from_config_reads_buffer_and_tags(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'buffer = "{tmp_path / "b.db"}"\n[tags]\nsite = "plant-3"\n')
    with Meter.from_config(config, start_thread=False) as meter:
        assert meter.buffer_path == tmp_path / "b.db"
        assert meter.tags == {"site": "plant-3"}


def test_records_of_a_script_that_never_closes_are_written_at_exit(buffer_path):
    script = (
        "import sys\n"
        "from agent import Meter\n"
        "meter = Meter(sys.argv[1], flush_interval_s=3600)\n"
        "for _ in range(5):\n"
        "    with meter.span('step'):\n"
        "        pass\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(buffer_path)], cwd=REPO_ROOT, check=True, timeout=60
    )
    assert len(read_records(buffer_path)) == 5
