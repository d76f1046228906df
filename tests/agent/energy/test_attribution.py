"""Attribution: every sensor's energy split over records and idle, adding up exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.energy.attribution import (
    METHOD_BASELINE,
    METHOD_OTHER_ACTIVITY,
    Activity,
    Counted,
    IdlePower,
    Interval,
    SensorInfo,
    apportion,
    attribute,
)
from agent.energy.sensor import DOMAIN_GPU, DOMAIN_PACKAGE

MS = 1_000_000
PACKAGE = SensorInfo("rapl:package-0", DOMAIN_PACKAGE, "rapl")
GPU = SensorInfo("nvml:gpu-0", DOMAIN_GPU, "nvml")
SENSORS = {PACKAGE.name: PACKAGE, GPU.name: GPU}


def totals(split, sensor):
    to_records = sum(parts[sensor][0] for parts in split.records.values() if sensor in parts)
    to_idle = sum(energy for (name, _), (energy, _) in split.idle.items() if name == sensor)
    return to_records, to_idle


def test_apportion_adds_up_and_follows_the_weights():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(100, [1, 3]) == [25, 75]
    assert apportion(7, [0, 0]) == [0, 7]
    assert apportion(0, [5, 5]) == [0, 0]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10**9),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
)
def test_apportion_is_exact_and_within_one_of_the_true_share(total, weights):
    parts = apportion(total, weights)
    assert sum(parts) == total and min(parts) >= 0
    if sum(weights):
        for part, weight in zip(parts, weights):
            assert abs(part - total * weight / sum(weights)) < 1 + 1e-9


def test_a_lone_record_gets_the_dynamic_energy_and_idle_the_baseline():
    # 100 ms at a known 10 W idle (1,000,000 µJ) plus 500,000 µJ of activity, all ours.
    idle_known = {PACKAGE.name: SensorInfo(PACKAGE.name, PACKAGE.domain, "estimate", idle_power_mw=10_000)}
    interval = Interval(0, 100 * MS, {PACKAGE.name: Counted(1_500_000, 1_000)}, cpu_busy_ns=40 * MS)
    record = Activity(seq=1, start_ns=10 * MS, duration_ns=50 * MS, cpu_time_ns=40 * MS)

    split = attribute([interval], [record], idle_known, IdlePower())

    assert split.records[1][PACKAGE.name][0] == 500_000
    assert split.idle[(PACKAGE.name, METHOD_BASELINE)][0] == 1_000_000
    assert split.idle[(PACKAGE.name, METHOD_OTHER_ACTIVITY)][0] == 0
    assert split.records[1][PACKAGE.name][1] + sum(e for _, e in split.idle.values()) == 1_000


def test_other_processes_keep_their_share_of_the_dynamic_energy():
    idle_known = {PACKAGE.name: SensorInfo(PACKAGE.name, PACKAGE.domain, "estimate", idle_power_mw=0)}
    interval = Interval(0, 100 * MS, {PACKAGE.name: Counted(900, 0)}, cpu_busy_ns=90 * MS)
    records = [
        Activity(seq=1, start_ns=0, duration_ns=100 * MS, cpu_time_ns=30 * MS),
        Activity(seq=2, start_ns=0, duration_ns=100 * MS, cpu_time_ns=15 * MS),
    ]

    split = attribute([interval], records, idle_known, IdlePower())

    assert (split.records[1][PACKAGE.name][0], split.records[2][PACKAGE.name][0]) == (300, 150)
    assert split.idle[(PACKAGE.name, METHOD_OTHER_ACTIVITY)][0] == 450


def test_a_record_spanning_intervals_is_charged_in_each_by_its_overlap():
    idle_known = {PACKAGE.name: SensorInfo(PACKAGE.name, PACKAGE.domain, "estimate", idle_power_mw=0)}
    intervals = [
        Interval(0, 100 * MS, {PACKAGE.name: Counted(1_000, 0)}, cpu_busy_ns=50 * MS),
        Interval(100 * MS, 200 * MS, {PACKAGE.name: Counted(3_000, 0)}, cpu_busy_ns=100 * MS),
    ]
    record = Activity(seq=7, start_ns=50 * MS, duration_ns=100 * MS, cpu_time_ns=100 * MS)

    split = attribute(intervals, [record], idle_known, IdlePower())

    # 50 ms of its CPU time in each: all of the first interval's activity, half of the second's.
    assert split.records[7][PACKAGE.name][0] == 1_000 + 1_500


def test_gpu_energy_goes_to_gpu_records_by_wall_overlap_only():
    idle_known = {GPU.name: SensorInfo(GPU.name, GPU.domain, "nvml", idle_power_mw=0)}
    interval = Interval(0, 100 * MS, {GPU.name: Counted(6_000, 0)})
    records = [
        Activity(seq=1, start_ns=0, duration_ns=20 * MS, cpu_time_ns=5 * MS, on_gpu=True),
        Activity(seq=2, start_ns=0, duration_ns=40 * MS, cpu_time_ns=5 * MS, on_gpu=True),
        Activity(seq=3, start_ns=0, duration_ns=90 * MS, cpu_time_ns=90 * MS),  # a CPU model
    ]

    split = attribute([interval], records, idle_known, IdlePower())

    assert (split.records[1][GPU.name][0], split.records[2][GPU.name][0]) == (2_000, 4_000)
    assert 3 not in split.records


def test_energy_with_nobody_active_is_idle():
    interval = Interval(0, 100 * MS, {PACKAGE.name: Counted(5_000, 10)}, cpu_busy_ns=0)

    split = attribute([interval], [], SENSORS, IdlePower())

    assert totals(split, PACKAGE.name) == (0, 5_000)


def test_idle_power_is_learned_from_power_against_activity():
    idle = IdlePower()
    # 20 W idle, 15 W per busy CPU, on 4 CPUs: P = 20 + 60 * busy_fraction.
    for busy_fraction in (0.1, 0.5, 0.3, 0.9, 0.2):
        idle.observe("s", 100 * MS, round((20 + 60 * busy_fraction) * 1e5), busy_fraction)
    assert abs(idle.baseline_mw("s") - 20_000) < 1
    flat = IdlePower()
    for power_w in (30, 25, 28):
        flat.observe("s", 100 * MS, power_w * 100_000, None)
    assert flat.baseline_mw("s") == 25_000  # no activity figures: the lowest power seen


@st.composite
def scenes(draw):
    t = 0
    intervals = []
    for _ in range(draw(st.integers(1, 12))):
        dt = draw(st.integers(1, 200)) * MS
        energy = {
            name: Counted(draw(st.integers(0, 10**7)), draw(st.integers(0, 10**4)))
            for name in SENSORS if draw(st.booleans())
        }
        busy = draw(st.one_of(st.none(), st.integers(0, 4 * dt)))
        gpu_busy = draw(st.one_of(st.none(), st.integers(0, dt)))
        intervals.append(Interval(t, t + dt, energy, busy, gpu_busy))
        t += dt
    activities = [
        Activity(
            seq=i + 1, start_ns=draw(st.integers(-50 * MS, t + 50 * MS)),
            duration_ns=draw(st.integers(0, 300 * MS)), cpu_time_ns=draw(st.integers(0, 300 * MS)),
            gpu_time_ns=draw(st.sampled_from([0, 0, 5 * MS])), on_gpu=draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 20)))
    ]
    return intervals, activities


@settings(max_examples=400, deadline=None)
@given(scenes())
def test_records_plus_idle_equal_what_each_sensor_measured(scene):
    intervals, activities = scene

    split = attribute(intervals, activities, SENSORS, IdlePower())

    for name in SENSORS:
        measured = sum(i.energy[name].energy_uj for i in intervals if name in i.energy)
        assert sum(totals(split, name)) == measured
        assert split.measured.get(name, 0) == measured
    for parts in split.records.values():
        assert all(energy >= 0 and error >= 0 for energy, error in parts.values())
