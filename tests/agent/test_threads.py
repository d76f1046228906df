"""Thread safety: many threads metering at once through one Meter, with its real background
flusher writing meanwhile. Each call carries a tag naming its thread and its index, so the
buffer itself is the oracle: every call written once, with its own tags, or counted as dropped."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import pytest

from agent import Meter, MeterStats
from agent.record import Kind
from tests.agent.conftest import read_records

pytestmark = pytest.mark.timeout(60)

THREADS = 8
JOIN_TIMEOUT_S = 30  # a safety net only: the work takes well under a second


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run work(index) on `count` threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait(timeout=JOIN_TIMEOUT_S)
            work(index)
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=body, args=(i,), name=f"caller-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "a metering thread hung"
    if failures:
        raise failures[0]


def test_concurrent_runs_and_spans_are_each_written_once_with_their_own_tags(
    buffer_path, tiny_session, feed
):
    calls = 150  # per thread, each a run and a span
    meter = Meter(buffer_path, tags={"project": "search"}, flush_interval_s=0.005)
    session = meter.wrap_onnx(tiny_session, model="tiny-mlp", tags={"user": "alice"})

    def work(thread: int) -> None:
        for call in range(calls):
            tags = {"thread": str(thread), "call": str(call)}
            assert session.run(None, feed, tags=tags)[0].shape == (3, 4)
            with meter.span("step", tags=tags) as span:
                span.set_tokens(input=thread, output=call)

    _run_threads(THREADS, work)
    meter.close()

    total = THREADS * calls * 2
    assert meter.stats() == MeterStats(
        recorded=total, written=total, dropped=0, errors=0, pending=0
    )
    records = read_records(buffer_path)
    assert sorted(r.seq for r in records) == list(range(1, total + 1))
    made = collections.Counter((r.kind, r.tags["thread"], r.tags["call"]) for r in records)
    assert made == {
        (kind, str(thread), str(call)): 1
        for kind in (Kind.INFERENCE, Kind.SPAN)
        for thread in range(THREADS)
        for call in range(calls)
    }
    for r in records:
        if r.kind is Kind.INFERENCE:
            assert r.tags == {"project": "search", "user": "alice", "thread": r.tags["thread"],
                              "call": r.tags["call"]}
            assert r.batch_size == 3
        else:  # the span's own numbers travel with its own tags
            assert (r.input_tokens, r.output_tokens) == (int(r.tags["thread"]), int(r.tags["call"]))


def test_a_small_queue_under_contention_writes_or_counts_every_call(buffer_path):
    calls = 300  # per thread
    meter = Meter(buffer_path, max_queue=2, flush_interval_s=0.001)

    def work(thread: int) -> None:
        for call in range(calls):
            with meter.span("step", tags={"thread": str(thread), "call": str(call)}):
                pass

    _run_threads(THREADS, work)
    meter.close()

    total = THREADS * calls
    stats = meter.stats()
    assert stats.dropped > 0  # eight threads outrun a two-slot queue drained by fsynced commits
    assert (stats.errors, stats.pending) == (0, 0)
    assert stats.recorded == stats.written
    assert stats.recorded + stats.dropped == total
    records = read_records(buffer_path)
    assert len(records) == stats.written
    assert sorted(r.seq for r in records) == list(range(1, stats.written + 1))
    made = collections.Counter((r.tags["thread"], r.tags["call"]) for r in records)
    assert set(made.values()) == {1}  # a written call is written once
