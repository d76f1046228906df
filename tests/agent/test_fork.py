"""Fork safety: a Meter used in a parent keeps working in a forked child, which meters into the
same buffer through its own flusher thread and SQLite connection, while the parent goes on.

Each record is tagged with who made it, so the buffer itself is the oracle: every record once,
with the pid of the process that made it. Children report back through a pipe and always leave
with os._exit, never through pytest's code."""

from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import Meter, MeterStats
from agent.buffer import Buffer
from agent.entry import STATUS_OK, static_fields
from agent.flusher import Flusher
from agent.record import Kind
from tests.agent.conftest import read_records, single_thread_session

pytestmark = [
    pytest.mark.timeout(60),  # a deadlocked child must fail the test, not hang the run
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

# Long enough that the background thread never writes during a test: what is written, and
# when, is decided by the test's flush()/close() calls.
NEVER_S = 3600.0


def _stats(**counts: int) -> dict:
    """MeterStats as a child reports them (a dict): the given counts, zero elsewhere."""
    zeros = dict.fromkeys(("recorded", "written", "dropped", "errors", "pending"), 0)
    return dataclasses.asdict(MeterStats(**{**zeros, **counts}))


def _flusher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "infermeter-flusher" and t.is_alive()]


def _run(session, feed, count: int, who: str) -> None:
    for _ in range(count):
        session.run(None, feed, tags={"who": who})


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _in_forked_child(body: Callable[[], dict]) -> tuple[int, dict]:
    """Run body in a forked child that leaves with os._exit (never through pytest's code);
    return the child's pid and what body returned."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "w") as out:
                json.dump(body(), out)
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as results:
            report = results.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed (traceback above)"
    return pid, json.loads(report)


@pytest.mark.parametrize("child_ends_with", ["flush", "close"])
def test_a_forked_child_meters_into_the_same_buffer_and_the_parent_goes_on(
    buffer_path, tiny_model_path, feed, child_ends_with
):
    meter = Meter(buffer_path, flush_interval_s=NEVER_S)
    session = meter.wrap_onnx(single_thread_session(tiny_model_path), model="tiny-mlp")
    _run(session, feed, 3, "parent-written")
    assert meter.flush()  # the parent's connection is open when it forks
    _run(session, feed, 4, "parent-queued")  # queued, not yet written, at the fork

    def child() -> dict:
        _run(session, feed, 5, "child")
        with meter.span("child-step", tags={"who": "child"}):
            pass
        threads = len(_flusher_threads())
        if child_ends_with == "flush":
            assert meter.flush()
        else:
            meter.close()
        return {"stats": dataclasses.asdict(meter.stats()), "flusher_threads": threads}

    child_pid, child = _in_forked_child(child)
    _run(session, feed, 2, "parent-after")
    meter.close()

    assert child["flusher_threads"] == 1  # its own, started by its first record
    assert child["stats"] == _stats(recorded=6, written=6)
    assert meter.stats() == MeterStats(recorded=9, written=9, dropped=0, errors=0, pending=0)
    records = read_records(buffer_path)
    assert sorted(r.seq for r in records) == list(range(1, 16))
    made = collections.Counter((r.tags["who"], r.pid) for r in records)
    parent_pid = os.getpid()
    assert made == {
        ("parent-written", parent_pid): 3,
        ("parent-queued", parent_pid): 4,  # written once, by the parent, not again by the child
        ("child", child_pid): 6,
        ("parent-after", parent_pid): 2,
    }
    assert _integrity(buffer_path) == "ok"


def test_a_child_forked_before_the_first_record_starts_its_own_flusher(buffer_path):
    meter = Meter(buffer_path, flush_interval_s=NEVER_S)

    def child() -> dict:
        with meter.span("child-step"):
            pass
        threads = len(_flusher_threads())
        meter.close()
        return {"flusher_threads": threads, "stats": dataclasses.asdict(meter.stats())}

    child_pid, child = _in_forked_child(child)
    with meter.span("parent-step"):
        pass
    meter.close()

    assert child["flusher_threads"] == 1
    assert child["stats"]["written"] == 1
    assert sorted((r.model, r.pid) for r in read_records(buffer_path)) == [
        ("child-step", child_pid), ("parent-step", os.getpid()),
    ]
    assert _integrity(buffer_path) == "ok"


def test_a_child_of_a_closed_meter_records_nothing_and_counts_it(buffer_path):
    meter = Meter(buffer_path, flush_interval_s=NEVER_S)
    with meter.span("parent-step"):
        pass
    meter.close()

    def child() -> dict:
        with meter.span("child-step"):
            pass
        assert meter.flush()
        threads = len(_flusher_threads())
        return {"stats": dataclasses.asdict(meter.stats()), "flusher_threads": threads}

    _, child = _in_forked_child(child)

    assert child == {"stats": _stats(dropped=1), "flusher_threads": 0}
    assert [r.model for r in read_records(buffer_path)] == ["parent-step"]


# Pool workers get the metered session through their initializer: under the fork start method
# the initializer's arguments are inherited, not pickled.
_worker_state: dict = {}


def _start_worker(session, feed) -> None:
    _worker_state.update(session=session, feed=feed)


def _run_task(task: int) -> int:
    _worker_state["session"].run(None, _worker_state["feed"], tags={"task": str(task)})
    return os.getpid()


def test_every_run_in_a_fork_pool_is_recorded_once_with_its_worker_pid(
    buffer_path, tiny_model_path, feed
):
    tasks = 120
    meter = Meter(buffer_path, flush_interval_s=NEVER_S)
    session = meter.wrap_onnx(single_thread_session(tiny_model_path), model="tiny-mlp")
    session.run(None, feed, tags={"task": "parent"})  # queued in the parent at the fork

    pool = multiprocessing.get_context("fork").Pool(
        4, initializer=_start_worker, initargs=(session, feed)
    )
    try:
        pids = pool.map_async(_run_task, range(tasks), chunksize=5).get(timeout=30)
        worker_of = dict(enumerate(pids))
        pool.close()
        pool.join()  # workers leave as multiprocessing ends them: metering must not lose their runs
    finally:
        pool.terminate()
    meter.close()

    records = read_records(buffer_path)
    assert collections.Counter(r.tags["task"] for r in records) == {
        "parent": 1, **{str(task): 1 for task in range(tasks)}
    }
    assert {r.tags["task"]: r.pid for r in records} == {
        "parent": os.getpid(), **{str(task): pid for task, pid in worker_of.items()}
    }
    assert sorted(r.seq for r in records) == list(range(1, tasks + 2))
    assert meter.stats() == MeterStats(recorded=1, written=1, dropped=0, errors=0, pending=0)
    assert _integrity(buffer_path) == "ok"


class PausingBuffer(Buffer):
    """A buffer whose first write pauses inside its transaction, holding SQLite's write lock,
    until `resume` is set (or PAUSE_S at most, so that a fork which waits for the write to end
    still goes ahead). Writes after the first one, also in a forked child, do not pause."""

    PAUSE_S = 1.0
    in_write: threading.Event
    resume: threading.Event

    def append(self, rows):
        if not self.in_write.is_set():
            with self.transaction():
                self.in_write.set()
                self.resume.wait(self.PAUSE_S)
        return super().append(rows)


def _span_entry(name: str) -> tuple:
    static = static_fields(
        Kind.SPAN, name, model_version="", runtime="span", execution_provider="", tags={}
    )
    return (static, None, 0, 1_000, 400, 0, 0, 0, 0, 0, STATUS_OK, "")


def test_a_child_forked_while_the_parent_writes_can_write_too(buffer_path):
    in_write, resume = threading.Event(), threading.Event()

    def open_buffer() -> Buffer:
        # A short busy timeout keeps a failure quick: no write here waits on another for long.
        buffer = PausingBuffer.open(buffer_path, busy_timeout_ms=1_000)
        buffer.in_write, buffer.resume = in_write, resume
        return buffer

    flusher = Flusher(open_buffer, start_thread=False)
    flusher.submit(_span_entry("parent-step"))
    writer = threading.Thread(target=flusher.run_once, name="parent-writer")
    writer.start()
    try:
        assert in_write.wait(timeout=30)  # the parent's flusher is inside a write transaction

        def child() -> dict:
            flusher.submit(_span_entry("child-step"))
            written = flusher.flush(timeout_s=30)
            stats = dataclasses.asdict(flusher.stats())
            flusher.close(timeout_s=30)
            return {"written": written, "stats": stats}

        child_pid, child = _in_forked_child(child)
    finally:
        resume.set()
        writer.join(timeout=30)
    flusher.close()

    assert child == {"written": True, "stats": _stats(recorded=1, written=1)}
    assert sorted((r.model, r.pid) for r in read_records(buffer_path)) == [
        ("child-step", child_pid), ("parent-step", os.getpid()),
    ]
    assert _integrity(buffer_path) == "ok"
