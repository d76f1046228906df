"""Running metered calls, found while they run, and the long-call mark the flusher keeps in the
buffer's `writers` table so that energy attribution waits for them.

An onnxruntime session cannot be made to block on demand, so a small stand-in does: its run()
waits on an Event, in a thread of its own. The clocks are a FakeClock: a call becomes "long" by
moving the clock, not by waiting.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent import Meter
from agent.boot import boot_key
from agent.buffer import Buffer
from agent.flusher import LONG_CALL_NS, LONG_CALL_SCAN_NS
from tests.agent.conftest import FakeClock, read_records


class BlockingSession:
    """Duck-types an InferenceSession whose runs last until the test releases them."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, output_names, input_feed, run_options=None):
        self.started.set()
        if not self.release.wait(10):
            raise TimeoutError("the test never released the call")
        return [np.zeros((2, 4), dtype=np.float32)]

    def run_with_ort_values(self, output_names, input_feed, run_options=None):
        return self.run(output_names, input_feed, run_options)

    def run_with_iobinding(self, iobinding, run_options=None):
        self.run(None, {}, run_options)

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


class RunningCall:
    """A metered run in a thread of its own, started at a known clock reading."""

    def __init__(self, meter: Meter, clock: FakeClock) -> None:
        self.session = BlockingSession()
        metered = meter.wrap_onnx(self.session, model="blocking")
        # The call reads the CPU clock, then the monotonic one: its start is the next step.
        self.start_ns = clock.perf_ns + clock.perf_step_ns
        feed = {"x": np.zeros((2, 3), dtype=np.float32)}
        self._thread = threading.Thread(target=metered.run, args=(None, feed))
        self._thread.start()
        assert self.session.started.wait(10)

    def end(self) -> None:
        self.session.release.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def started_meter(meter: Meter) -> Meter:
    """A meter whose flusher has started (the first record starts it, with this pid and boot)."""
    with meter.span("warm-up"):
        pass
    assert meter.flush()
    return meter


@pytest.fixture
def running(started_meter: Meter, clock: FakeClock) -> Iterator[RunningCall]:
    call = RunningCall(started_meter, clock)
    yield call
    call.end()


def marks(buffer_path: Path) -> list[tuple[int, int, int]]:
    with Buffer.open(buffer_path) as buffer:
        return buffer.query("SELECT boot, pid, in_flight_since_ns FROM writers")


def count_mark_writes(buffer_path: Path) -> None:
    """Log every insert into and delete from `writers` in a table of its own."""
    with sqlite3.connect(buffer_path) as conn:
        conn.executescript(
            """
            CREATE TABLE mark_writes (what TEXT);
            CREATE TRIGGER mark_set AFTER INSERT ON writers
                BEGIN INSERT INTO mark_writes VALUES ('set'); END;
            CREATE TRIGGER mark_cleared AFTER DELETE ON writers
                BEGIN INSERT INTO mark_writes VALUES ('cleared'); END;
            """
        )


def mark_writes(buffer_path: Path) -> list[str]:
    with sqlite3.connect(buffer_path) as conn:
        return [what for (what,) in conn.execute("SELECT what FROM mark_writes ORDER BY rowid")]


def test_a_running_session_call_is_found_with_its_start(started_meter, clock):
    in_flight = started_meter.flusher.in_flight
    assert in_flight.oldest_start_ns() is None

    call = RunningCall(started_meter, clock)
    try:
        assert in_flight.oldest_start_ns() == call.start_ns
    finally:
        call.end()

    assert in_flight.oldest_start_ns() is None


def test_a_span_is_found_while_entered(meter):
    in_flight = meter.flusher.in_flight
    with meter.span("llm") as span:
        assert in_flight.oldest_start_ns() == span.start_ns
        with meter.span("inner") as inner:
            assert inner.start_ns > span.start_ns
            assert in_flight.oldest_start_ns() == span.start_ns
    assert in_flight.oldest_start_ns() is None
    with pytest.raises(RuntimeError), meter.span("failing"):
        raise RuntimeError("the block fails")
    assert in_flight.oldest_start_ns() is None


def test_the_oldest_of_several_running_calls_counts(running, started_meter):
    with started_meter.span("later") as span:
        assert span.start_ns > running.start_ns
        assert started_meter.flusher.in_flight.oldest_start_ns() == running.start_ns


def test_a_call_running_for_long_is_marked_until_its_record_is_written(running, started_meter, clock, buffer_path):
    started_meter.flush()
    assert marks(buffer_path) == []  # not long yet

    clock.perf_ns += LONG_CALL_NS
    started_meter.flush()
    assert marks(buffer_path) == [(boot_key(), os.getpid(), running.start_ns)]

    running.end()
    clock.perf_ns += LONG_CALL_SCAN_NS  # the stacks are looked through again
    started_meter.flush()

    assert marks(buffer_path) == []
    assert [r.model for r in read_records(buffer_path)] == ["warm-up", "blocking"]


def test_the_mark_is_written_only_when_it_changes(running, started_meter, clock, buffer_path):
    count_mark_writes(buffer_path)
    clock.perf_ns += LONG_CALL_NS
    for _ in range(5):
        with started_meter.span("meanwhile"):
            pass
        started_meter.flush()

    running.end()
    for _ in range(3):
        clock.perf_ns += LONG_CALL_SCAN_NS
        started_meter.flush()

    assert mark_writes(buffer_path) == ["set", "cleared"]


def test_the_mark_stays_while_the_record_of_the_call_cannot_be_written(running, started_meter, clock, buffer_path):
    clock.perf_ns += LONG_CALL_NS
    started_meter.flush()
    with sqlite3.connect(buffer_path) as conn:  # a full disk, for records only
        conn.execute("CREATE TRIGGER full BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full'); END")

    running.end()
    assert not started_meter.flush()
    assert marks(buffer_path) == [(boot_key(), os.getpid(), running.start_ns)]

    with sqlite3.connect(buffer_path) as conn:
        conn.execute("DROP TRIGGER full")
    clock.perf_ns += LONG_CALL_SCAN_NS
    assert started_meter.flush()
    assert marks(buffer_path) == []
    assert read_records(buffer_path)[-1].model == "blocking"


def test_closing_the_meter_clears_its_mark(running, started_meter, clock, buffer_path):
    clock.perf_ns += LONG_CALL_NS
    started_meter.flush()
    assert len(marks(buffer_path)) == 1

    started_meter.close()

    assert marks(buffer_path) == []


def test_a_long_first_call_is_marked_before_any_record_is_written(meter, clock, buffer_path):
    call = RunningCall(meter, clock)  # wrapping started the flusher: it knows its pid and boot
    try:
        clock.perf_ns += LONG_CALL_NS
        meter.flush()
        assert marks(buffer_path) == [(boot_key(), os.getpid(), call.start_ns)]
        assert read_records(buffer_path) == []
    finally:
        call.end()
    clock.perf_ns += LONG_CALL_SCAN_NS
    meter.flush()
    assert marks(buffer_path) == []
    assert [r.model for r in read_records(buffer_path)] == ["blocking"]
