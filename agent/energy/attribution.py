"""Splitting measured energy over the records that used it, so that the parts add up.

For each sampling interval and each sensor, the energy E the sensor counted is cut in three:

    baseline  = idle power * interval length (capped at E)         -> idle, method "baseline"
    dynamic   = E - baseline, split in proportion to activity:
        each record overlapping the interval: its activity in it   -> the record
        the rest of the machine's activity (other processes)       -> idle, method "other-activity"

A record's activity in an interval is, for CPU-side domains (package, cpu, dram, soc, board),
its thread CPU time spread evenly over its duration; for GPU domains, its GPU time if it has
one, else its wall-clock overlap (records on a GPU execution provider only). The machine's
activity is its busy CPU time (/proc/stat) or GPU busy time in the interval, and never less
than the records' own. Every split is done on integers with the largest-remainder method, so
that for every sensor

    sum(energy given to records) + sum(energy kept as idle) == energy the sensor counted

exactly, to the microjoule. Error bounds are split in the same proportions.

Idle power comes from the sensor when it knows it (an estimate), else it is learned: the
intercept of a least-squares line of interval power against machine activity over a window of
recent intervals (the current run's included), bounded by the lowest power seen; with too few
points or too little spread in activity to fit a line, the lowest power seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.energy.sensor import GPU_DOMAINS

METHOD_CPU_TIME = "cpu-time"
METHOD_GPU_TIME = "gpu-time"
METHOD_WALL_OVERLAP = "wall-overlap"
METHOD_BASELINE = "baseline"
METHOD_OTHER_ACTIVITY = "other-activity"

# Execution providers that run a model on a GPU: their records share GPU energy.
GPU_PROVIDERS = frozenset({
    "CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
    "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
})


@dataclass(frozen=True, slots=True)
class SensorInfo:
    name: str
    domain: str
    source: str
    idle_power_mw: float | None = None  # known baseline (estimates); None: learn it


class Counted(NamedTuple):
    """What one sensor counted in an interval. elapsed_ns: the time between the sensor's own
    two readings, which the baseline is taken over (its readings come a little after the
    interval's bounds, and not always equally late); None: the interval's length."""

    energy_uj: int
    error_uj: int
    elapsed_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Interval:
    """One sampling interval: what each sensor counted in it, and the machine's busy CPU time
    (all CPUs) and GPU busy time in it, where known."""

    t0_ns: int
    t1_ns: int
    energy: Mapping[str, Counted]
    cpu_busy_ns: int | None = None
    gpu_busy_ns: int | None = None


@dataclass(slots=True)
class Activity:
    """What attribution needs of a record (times on CLOCK_MONOTONIC). Not frozen: the daemon
    makes one per record, and a frozen dataclass takes four times as long to make."""

    seq: int
    start_ns: int
    duration_ns: int
    cpu_time_ns: int
    gpu_time_ns: int = 0
    on_gpu: bool = False
    end_ns: int = field(init=False)  # read many times per record: kept, not a property

    def __post_init__(self) -> None:
        self.end_ns = self.start_ns + self.duration_ns


@dataclass
class Split:
    """What attribution gave out: per record and per (sensor, method) of idle, [energy_uj,
    error_uj] summed over the intervals processed."""

    records: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    idle: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)  # per sensor, for checking

    def _give_record(self, seq: int, sensor: str, energy_uj: int, error_uj: int) -> None:
        parts = self.records.setdefault(seq, {}).setdefault(sensor, [0, 0])
        parts[0] += energy_uj
        parts[1] += error_uj

    def _give_idle(self, sensor: str, method: str, energy_uj: int, error_uj: int) -> None:
        parts = self.idle.setdefault((sensor, method), [0, 0])
        parts[0] += energy_uj
        parts[1] += error_uj


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split a non-negative integer total in proportion to non-negative integer weights, the
    parts summing to total exactly (largest remainder; ties to the earlier weight). All weights
    zero: everything to the last one."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0] * (len(weights) - 1) + [total]
    quotients = [divmod(total * weight, weight_sum) for weight in weights]
    parts = [quotient for quotient, _ in quotients]
    short = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: -quotients[i][1])
    for i in by_remainder[:short]:
        parts[i] += 1
    return parts


class IdlePower:
    """Learns each sensor's idle power from recent intervals (see the module docstring)."""

    # A line needs this many points, spread this much (standard deviation of the busy fraction
    # of all CPUs, or of the GPU); a machine whose load never moves cannot tell idle from
    # busy, and falls back on the lowest power seen (its records then get too little).
    MIN_POINTS = 5
    MIN_SPREAD = 0.01

    def __init__(self, *, window: int = 600) -> None:
        self._window = window
        self._points: dict[str, deque[tuple[float, float]]] = {}  # sensor -> (activity, mW)

    def observe(self, sensor: str, dt_ns: int, energy_uj: int, busy_fraction: float | None) -> None:
        if dt_ns <= 0:
            return
        points = self._points.setdefault(sensor, deque(maxlen=self._window))
        points.append((busy_fraction if busy_fraction is not None else 0.0, energy_uj * 1e6 / dt_ns))

    def baseline_mw(self, sensor: str) -> float:
        points = self._points.get(sensor)
        if not points:
            return 0.0
        lowest = min(power for _, power in points)
        xs = [x for x, _ in points]
        mean_x = sum(xs) / len(xs)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if len(points) < self.MIN_POINTS or spread < self.MIN_SPREAD**2 * len(points):
            return lowest
        mean_y = sum(power for _, power in points) / len(points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
        return min(max(mean_y - slope * mean_x, 0.0), lowest)


def attribute(
    intervals: Sequence[Interval],
    activities: Sequence[Activity],
    sensors: Mapping[str, SensorInfo],
    idle_power: IdlePower,
    *,
    cpu_count: int = 1,
) -> Split:
    """Split every interval's energy (intervals in time order) over the activities that overlap
    it and idle; see the module docstring. The run's intervals first teach idle_power, so that
    even the first run has a line to go by; then each sensor's baseline holds for the run."""
    for interval in intervals:
        for name, counted in interval.energy.items():
            domain = sensors[name].domain
            idle_power.observe(name, _elapsed_ns(interval, counted), counted.energy_uj, _busy_fraction(interval, domain, cpu_count))
    baseline_mw = {
        name: info.idle_power_mw if info.idle_power_mw is not None else idle_power.baseline_mw(name)
        for name, info in sensors.items()
    }
    split = Split()
    ordered = sorted(activities, key=lambda a: a.start_ns)
    next_index = 0
    active: list[Activity] = []
    for interval in intervals:
        while next_index < len(ordered) and ordered[next_index].start_ns < interval.t1_ns:
            active.append(ordered[next_index])
            next_index += 1
        # Zero-length records count where they start.
        active = [a for a in active if a.end_ns > interval.t0_ns or (a.duration_ns == 0 and a.start_ns >= interval.t0_ns)]
        overlapping = [a for a in active if a.start_ns < interval.t1_ns]
        _split_interval(interval, overlapping, sensors, baseline_mw, split)
    return split


def _elapsed_ns(interval: Interval, counted: Counted) -> int:
    return counted.elapsed_ns if counted.elapsed_ns is not None else interval.t1_ns - interval.t0_ns


def _busy_fraction(interval: Interval, domain: str, cpu_count: int) -> float | None:
    """How busy the machine was in the interval: the share of all CPUs, or of the GPU."""
    dt_ns = interval.t1_ns - interval.t0_ns
    busy_ns, capacity = (interval.gpu_busy_ns, 1) if domain in GPU_DOMAINS else (interval.cpu_busy_ns, cpu_count)
    return busy_ns / dt_ns / capacity if busy_ns is not None and dt_ns else None


def _split_interval(
    interval: Interval, overlapping: list[Activity], sensors: Mapping[str, SensorInfo],
    baseline_mw: Mapping[str, float], split: Split,
) -> None:
    cpu_weights = [_cpu_share(a, interval) for a in overlapping]
    on_gpu = [a for a in overlapping if a.on_gpu or a.gpu_time_ns]
    gpu_weights = [_gpu_share(a, interval) for a in on_gpu]
    for name, counted in interval.energy.items():
        energy_uj, error_uj = counted.energy_uj, counted.error_uj
        split.measured[name] = split.measured.get(name, 0) + energy_uj
        if sensors[name].domain in GPU_DOMAINS:
            parties, weights, busy_ns = on_gpu, gpu_weights, interval.gpu_busy_ns
        else:
            parties, weights, busy_ns = overlapping, cpu_weights, interval.cpu_busy_ns
        # mW * ns = 1e-6 µJ
        baseline_uj = min(energy_uj, max(round(baseline_mw[name] * _elapsed_ns(interval, counted) / 1e6), 0))
        if energy_uj - baseline_uj <= 1:  # a microjoule of rounding is not activity
            baseline_uj = energy_uj
        records_weight = sum(weights)
        # The machine was at least as busy as our records; unknown activity: only ours.
        others = max((busy_ns if busy_ns is not None else records_weight) - records_weight, 0)
        if not records_weight and not others:
            others = 1  # nothing active that we know of: the dynamic part is someone else's
        amounts = apportion(energy_uj - baseline_uj, [*weights, others])
        errors = apportion(error_uj, [*amounts[:-1], amounts[-1] + baseline_uj])
        for activity, amount, error in zip(parties, amounts, errors):
            if amount or error:
                split._give_record(activity.seq, name, amount, error)
        # Idle: the baseline and the other activity's share, the error bound shared out too.
        baseline_error, other_error = apportion(errors[-1], [baseline_uj, amounts[-1]])
        split._give_idle(name, METHOD_BASELINE, baseline_uj, baseline_error)
        split._give_idle(name, METHOD_OTHER_ACTIVITY, amounts[-1], other_error)


def _overlap_ns(activity: Activity, interval: Interval) -> int:
    return max(min(activity.end_ns, interval.t1_ns) - max(activity.start_ns, interval.t0_ns), 0)


def _cpu_share(activity: Activity, interval: Interval) -> int:
    """The record's CPU time in the interval, its CPU time spread evenly over its duration."""
    if activity.duration_ns == 0:
        return activity.cpu_time_ns
    return activity.cpu_time_ns * _overlap_ns(activity, interval) // activity.duration_ns


def _gpu_share(activity: Activity, interval: Interval) -> int:
    if activity.duration_ns == 0:
        return activity.gpu_time_ns or 1
    overlap = _overlap_ns(activity, interval)
    if activity.gpu_time_ns:
        return activity.gpu_time_ns * overlap // activity.duration_ns
    return overlap


def record_method(domain: str, activity: Activity) -> str:
    """How a record's energy in a domain was split, for its provenance."""
    if domain in GPU_DOMAINS:
        return METHOD_GPU_TIME if activity.gpu_time_ns else METHOD_WALL_OVERLAP
    return METHOD_CPU_TIME
