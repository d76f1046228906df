"""The device's wall clock is set a day forward and a day back while a producer meters a
stream (an NTP step, a dead RTC battery, an operator's mistake), and the agent daemon is
killed while the clock is off. Nothing that matters is keyed on wall time: records keep their
seq order, nothing is lost or counted twice, and each record keeps the start time the device's
clock gave it."""

from __future__ import annotations

import os
import time

import pytest

from collector.demo import processes
from tests.reliability.stream import check_exactly_once, wait_until_delivered

pytestmark = pytest.mark.timeout(240)

DAY_NS = 86_400 * 10**9
# The wall clock's offsets, in turn; each holds for RUNS_PER_STEP committed runs.
STEPS = (+DAY_NS, -DAY_NS, 0, -DAY_NS, +DAY_NS, 0)
RUNS_PER_STEP = 400
# At most the records of one flusher round (50 ms at 1,000 runs a second, in chunks of 25).
ROUND_RECORDS = 100


def test_device_clock_jumps_of_a_day_change_neither_dedupe_nor_order(deployment, produce):
    deployment.start_collector()
    deployment.start_agent()
    started_ns = time.time_ns()
    producer = produce(deployment, rate_per_s=1000)
    for step, offset_ns in enumerate(STEPS):
        producer.clock.wall_offset_ns = offset_ns
        producer.wait_until_committed(producer.committed() + RUNS_PER_STEP)
        if step % 2 == 0:  # a restart while the clock is off: what was in flight is sent again
            processes.kill(deployment.agent)
            deployment.start_agent()
    oracle = producer.stop()
    finished_ns = time.time_ns()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    assert deployment.buffer_integrity() == "ok"
    # Each record's start is the device's clock at the time: the real time plus the offset
    # of its step. The Meter reads the wall clock once per flusher round (every 50 ms) and
    # maps the round's monotonic starts with it, so the runs of a round that crossed a step
    # carry the new offset: a round's worth of records per step may be off by the step.
    starts = dict(deployment.stored_rows("CAST(json_extract(tags, '$.rid') AS INTEGER), start_unix_ns"))

    def in_window(rid: int, offset_ns: int) -> bool:
        return started_ns <= starts[rid] - offset_ns <= finished_ns

    off_by_a_step = [rid for rid, expected in oracle.items() if not in_window(rid, expected.wall_offset_ns)]
    assert all(any(in_window(rid, offset) for offset in STEPS) for rid in off_by_a_step)
    assert len(off_by_a_step) <= ROUND_RECORDS * len(STEPS), off_by_a_step[:10]
    shifted = {offset: sum(1 for e in oracle.values() if e.wall_offset_ns == offset) for offset in set(STEPS)}
    assert all(count >= RUNS_PER_STEP for count in shifted.values()), shifted
