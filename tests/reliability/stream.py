"""A stream of metered inferences and its oracle.

The producer runs the bundled ONNX model through a real Meter, on a thread, at a steady rate;
each run carries a per-call tag `rid` that names it. A run enters the oracle only once the
Meter has confirmed that its record is committed to the device buffer (flush() returned True):
from then on, the promise is that the collector counts it exactly once. The oracle knows each
record's payload and its cost, because the producer's clock charges every run a known amount
of thread CPU time (the monotonic clock is the real one: the daemon attributes energy on it).

check_exactly_once() diffs the collector's store against the oracle: ids, payload and cost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from agent import Meter
from collector.demo.model import INPUT_NAME, INPUT_WIDTH

MODEL = "tiny-mlp"
# The default price book: a 1,200 box over 4 years plus 120 a year of upkeep, per device-second.
DEFAULT_RATE_PER_S = Fraction(1200, 4 * 365 * 86400) + Fraction(120, 365 * 86400)
DEFAULT_KWH = Fraction(15, 100)
PICOS, NS_PER_S, UJ_PER_KWH = 10**12, 10**9, 3_600 * 10**9


def round_half_even(value: Fraction) -> int:
    return round(value)  # Fraction rounds half to even


def compute_cost_pico(cpu_time_ns: int, cpu_cores: int) -> int:
    """What the default price book charges for cpu_time_ns on a device of cpu_cores."""
    return round_half_even(DEFAULT_RATE_PER_S * cpu_time_ns * PICOS / NS_PER_S / cpu_cores)


def energy_cost_pico(energy_uj: int) -> int:
    return round_half_even(DEFAULT_KWH * energy_uj * PICOS / UJ_PER_KWH)


class DeviceClock:
    """The clocks a producer's Meter reads (agent.clock.Clock). Monotonic: the real one.
    Wall: the real one plus wall_offset_ns, which a test may step (a device whose clock is set
    back or forward). Thread CPU: every metered run is charged exactly charge_ns, so the
    oracle knows each record's CPU time, hence its cost. Only the producer's thread may run
    metered calls (reads alternate: a run's start, then its end)."""

    perf_counter_ns = staticmethod(time.perf_counter_ns)

    def __init__(self) -> None:
        self.wall_offset_ns = 0
        self.charge_ns = 0
        self._cpu_ns = 0
        self._reads = 0

    def time_ns(self) -> int:
        return time.time_ns() + self.wall_offset_ns

    def thread_time_ns(self) -> int:
        self._reads += 1
        if self._reads % 2 == 0:  # the end of a run
            self._cpu_ns += self.charge_ns
        return self._cpu_ns


@dataclass(frozen=True, slots=True)
class Expected:
    """What the collector must hold for one run."""

    batch_size: int
    cpu_time_ns: int
    wall_offset_ns: int  # how far the device's wall clock was off when the run was made


def cpu_ns_of(rid: int) -> int:
    """The CPU time charged to run rid: varied, so that a record swapped with another shows."""
    return 20_000 + (rid * 7919) % 180_000


class Producer:
    """Meters runs of session on a thread, about rate_per_s of them a second, until stop()."""

    def __init__(self, buffer_path, session, *, rate_per_s: float = 1000, chunk: int = 25) -> None:
        self.clock = DeviceClock()
        self.oracle: dict[int, Expected] = {}
        self._meter = Meter(buffer=buffer_path, tags={"project": "reliability"}, clock=self.clock)
        self._session = self._meter.wrap_onnx(session, model=MODEL, version="1")
        self._inputs = [np.ones((batch, INPUT_WIDTH), np.float32) for batch in range(1, 5)]
        self._interval_s = chunk / rate_per_s
        self._chunk = chunk
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self.error: BaseException | None = None
        self.made = 0

    def start(self) -> Producer:
        self._thread.start()
        return self

    def committed(self) -> int:
        with self._lock:
            return len(self.oracle)

    def wait_until_committed(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.committed() < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"the producer committed {self.committed()} of {count}"
            time.sleep(0.02)

    def stop(self) -> dict[int, Expected]:
        """Stop producing, commit what is left, close the Meter; the oracle."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the producer did not stop"
        if self.error is not None:
            raise self.error
        stats = self._meter.stats()
        self._meter.close()
        assert stats.dropped == 0 and stats.pending == 0, stats
        return self.oracle

    def abandon(self) -> None:
        """Stop producing and close the Meter, checking nothing (after a test that failed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
        self._meter.close()

    def _run(self) -> None:
        try:
            pending: list[tuple[int, Expected]] = []
            next_at = time.monotonic()
            while not self._stop.is_set():
                for _ in range(self._chunk):
                    pending.append(self._make_one())
                self._commit(pending)
                next_at += self._interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))
            deadline = time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                self._commit(pending)
            assert not pending, f"{len(pending)} records could not be committed to the buffer"
        except BaseException as err:  # the test thread re-raises it
            self.error = err

    def _make_one(self) -> tuple[int, Expected]:
        rid = self.made
        self.made += 1
        batch = 1 + rid % 4
        self.clock.charge_ns = cpu_ns_of(rid)
        self._session.run(None, {INPUT_NAME: self._inputs[batch - 1]}, tags={"rid": str(rid)})
        return rid, Expected(batch, cpu_ns_of(rid), self.clock.wall_offset_ns)

    def _commit(self, pending: list[tuple[int, Expected]]) -> None:
        """Into the oracle once the buffer holds them (a failed write keeps them pending)."""
        if self._meter.flush(timeout_s=10):
            with self._lock:
                self.oracle.update(pending)
            pending.clear()


@dataclass
class Diff:
    lost: list[int] = field(default_factory=list)
    duplicated: dict[int, int] = field(default_factory=dict)  # rid -> times stored
    unexpected: list[int] = field(default_factory=list)  # stored, never committed by the producer
    wrong: list[tuple[int, tuple, tuple]] = field(default_factory=list)  # rid, stored, expected

    def __bool__(self) -> bool:
        return bool(self.lost or self.duplicated or self.unexpected or self.wrong)

    def summary(self) -> str:
        return (
            f"{len(self.lost)} lost {self.lost[:10]}, {len(self.duplicated)} duplicated "
            f"{list(self.duplicated.items())[:10]}, {len(self.unexpected)} unexpected "
            f"{self.unexpected[:10]}, {len(self.wrong)} wrong {self.wrong[:3]}"
        )


STORED_COLUMNS = (
    "json_extract(tags, '$.rid'), model, batch_size, cpu_time_ns, compute_cost_pico, "
    "energy_uj, energy_cost_pico, cost_pico, stream_id, seq"
)


def diff(oracle: dict[int, Expected], rows: list[tuple], *, cpu_cores: int) -> Diff:
    """Rows (STORED_COLUMNS, the collector's inference records) against the oracle."""
    result = Diff()
    times = Counter(int(row[0]) for row in rows)
    result.duplicated = {rid: n for rid, n in sorted(times.items()) if n > 1}
    result.unexpected = sorted(rid for rid in times if rid not in oracle)
    result.lost = sorted(rid for rid in oracle if rid not in times)
    for rid, model, batch, cpu, compute, energy_uj, energy_cost, cost, *_ in rows:
        expected = oracle.get(int(rid))
        if expected is None:
            continue
        have = (model, batch, cpu, compute, energy_cost, cost)
        want = (
            MODEL, expected.batch_size, expected.cpu_time_ns,
            compute_cost_pico(expected.cpu_time_ns, cpu_cores), energy_cost_pico(energy_uj),
            compute_cost_pico(expected.cpu_time_ns, cpu_cores) + energy_cost_pico(energy_uj),
        )
        if have != want:
            result.wrong.append((int(rid), have, want))
    return result


def check_exactly_once(deployment, oracle: dict[int, Expected], *, cpu_cores: int) -> list[tuple]:
    """Assert the collector holds every record of the oracle once, with its payload and cost,
    in one stream whose seqs follow the order the records were made in, and that its cost
    report adds up to the oracle's totals. The stored rows, for more checks."""
    rows = deployment.stored_rows(STORED_COLUMNS)
    found = diff(oracle, rows, cpu_cores=cpu_cores)
    assert not found, found.summary() + "\n" + deployment.logs()
    assert len({row[8] for row in rows}) == 1, "one device buffer, one stream"
    # Seq order is the order of production (one producer thread, one buffer).
    rids = [int(row[0]) for row in rows]
    assert rids == sorted(rids)

    (group,) = [g for g in deployment.costs("model")["groups"] if g["key"] == [MODEL]]
    assert group["inferences"] == len(oracle)
    expected_compute = sum(compute_cost_pico(e.cpu_time_ns, cpu_cores) for e in oracle.values())
    assert Fraction(group["compute_cost"]) * PICOS == expected_compute
    assert Fraction(group["cost"]) * PICOS == expected_compute + sum(row[6] for row in rows)
    return rows


def wait_until_delivered(deployment, count: int, *, timeout_s: float = 60) -> float:
    """Wait until the collector holds `count` inference records and the device buffer none
    (the agent deleted what was acknowledged); the seconds it took. A safety net, not a pace:
    it returns as soon as both hold."""
    started = time.monotonic()
    while True:
        stored, buffered = deployment.stored_count(), deployment.buffered_count()
        if stored >= count and buffered == 0:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, (
            f"after {timeout_s} s the collector holds {stored} of {count} records and the buffer "
            f"{buffered}\n{deployment.logs()}"
        )
        time.sleep(0.05)
