"""The sampler (passes kept, written in groups, kept through failed writes; GPU busy time; which
processes' memory it asks for), /proc/stat busy time, the power-model estimate, the choice of
sensor families on fixture trees, and the energy service wired from a configuration.

Clocks are hand-driven, /proc/stat is a file under tmp_path, sysfs trees are copies of
tests/fixtures/sysfs: exact figures, no sleeps.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pytest

from agent.buffer import APPEND_COLUMNS, Buffer
from agent.config import AgentConfig
from agent.energy.activity import CpuActivity
from agent.energy.estimate import CpuEstimate, MemoryEstimate, PowerModel
from agent.energy.probe import Roots, nvidia_driver, probe
from agent.energy.sampler import Sampler
from agent.energy.sensor import (
    DOMAIN_CPU,
    DOMAIN_DRAM,
    DOMAIN_PACKAGE,
    SOURCE_ESTIMATE,
    Reading,
)
from agent.energy.service import EnergyService

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
MS = 1_000_000
S = 1_000_000_000
CPU_FAMILIES = {"jetson", "rapl", "hwmon", "estimate"}  # the GPU side depends on the host's NVML


class FakeClock:
    """CLOCK_MONOTONIC that moves only when the test says so."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


class HandSensor:
    """A cumulative counter set by hand; None while `missing`."""

    domain = DOMAIN_PACKAGE
    source = "fake"

    def __init__(self, clock: FakeClock, name: str = "fake:package-0") -> None:
        self.name = name
        self.energy_uj = 0
        self.missing = False
        self._clock = clock

    def read(self) -> Reading | None:
        return None if self.missing else Reading(self.name, self.energy_uj, self._clock(), error_uj=3)


def write_stat(proc: Path, busy_ticks: int, *, idle_ticks: int = 1_000, cpus: int = 4) -> None:
    """/proc/stat with the busy ticks as user time (one tick is 10 ms at ticks_per_s=100)."""
    lines = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(cpus))
    (proc / "stat").write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n{lines}intr 0\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    write_stat(proc, 0)
    return proc


@pytest.fixture
def buffer(tmp_path: Path):
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        yield buffer


def sample_times(buffer: Buffer) -> list[int]:
    return [t for (t,) in buffer.query("SELECT t_ns FROM activity_samples ORDER BY t_ns")]


def fail_writes(path: Path, table: str = "activity_samples") -> None:
    """Make every write of samples fail, as a full disk would (a real SQLite error)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )


def heal_writes(path: Path, table: str = "activity_samples") -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"DROP TRIGGER fail_{table}")


# --- the sampler ---------------------------------------------------------------------------


def test_passes_are_kept_in_memory_and_written_every_passes_per_write(buffer, clock, proc):
    sensor = HandSensor(clock)
    cpu = CpuActivity(proc, ticks_per_s=100)
    sampler = Sampler(buffer, [sensor], boot=7, cpu=cpu, passes_per_write=3, clock_ns=clock)
    for step in range(5):
        clock.now_ns = step * 100 * MS
        sensor.energy_uj = 1_000 * step
        write_stat(proc, busy_ticks=2 * step)
        one = sampler.run_once()

    assert one.energy == {sensor.name: (4_000, 3, 400 * MS)} and one.cpu_busy_ns == 80 * MS
    assert sample_times(buffer) == [0, 100 * MS, 200 * MS]  # two passes still in memory
    assert sampler.write() == 2
    (*_, last) = buffer.query("SELECT * FROM energy_samples ORDER BY t_ns")
    assert last == (7, 400 * MS, sensor.name, DOMAIN_PACKAGE, "fake", 4_000, 3, 400 * MS)
    assert sampler.passes == 5 and sampler.write() == 0


def test_a_sensor_that_cannot_be_read_is_left_out_of_the_pass_and_counted(buffer, clock):
    present, missing = HandSensor(clock), HandSensor(clock, "fake:package-1")
    missing.missing = True
    sampler = Sampler(buffer, [present, missing], boot=7, passes_per_write=1, clock_ns=clock)

    one = sampler.run_once()

    assert set(one.energy) == {present.name} and sampler.failed_reads == 1
    assert buffer.query("SELECT sensor FROM energy_samples") == [(present.name,)]
    assert buffer.query("SELECT cpu_busy_ns, gpu_busy_ns FROM activity_samples") == [(None, None)]


def test_a_failing_write_keeps_the_passes_for_the_next_one(buffer, clock, caplog):
    sampler = Sampler(buffer, [HandSensor(clock)], boot=7, passes_per_write=2, clock_ns=clock)
    fail_writes(buffer.path)
    for step in range(3):
        clock.now_ns = step * 100 * MS
        sampler.run_once()
    assert sampler.write_errors == 2 and sample_times(buffer) == []
    assert "cannot write energy samples" in caplog.text

    heal_writes(buffer.path)
    clock.now_ns = 300 * MS
    sampler.run_once()

    assert sample_times(buffer) == [0, 100 * MS, 200 * MS, 300 * MS]
    assert len(buffer.query("SELECT * FROM energy_samples")) == 4


def test_passes_kept_through_failing_writes_are_bounded_to_the_newest(buffer, clock):
    sampler = Sampler(buffer, [HandSensor(clock)], boot=7, passes_per_write=2, clock_ns=clock)
    fail_writes(buffer.path)
    for step in range(30):
        clock.now_ns = step * 100 * MS
        sampler.run_once()

    heal_writes(buffer.path)
    clock.now_ns = 30 * 100 * MS
    sampler.run_once()

    # 10 writes' worth (20 passes) survive the failures, the newest, and then the pass in hand.
    assert sample_times(buffer) == [step * 100 * MS for step in range(10, 31)]


def test_gpu_busy_time_integrates_the_load_between_passes(buffer, clock):
    loads = iter([0.5, 1.0, 2.0, -1.0, None, 0.5])  # out of range: clamped; None: no reading
    sampler = Sampler(buffer, [], boot=7, gpu_load=lambda: next(loads), clock_ns=clock)

    busy = []
    for step in range(6):
        clock.now_ns = step * 100 * MS
        busy.append(sampler.run_once().gpu_busy_ns)

    # The load read at a pass holds for the time since the last pass that had one.
    assert busy == [0, 100 * MS, 200 * MS, 200 * MS, None, 300 * MS]
    assert Sampler(buffer, [], boot=7, clock_ns=clock).run_once().gpu_busy_ns is None


class MemoryProbeLog:
    """Answers a fixed RSS per pid, and keeps the pids it was asked about."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, ...]] = []

    def __call__(self, pids: Iterable[int]) -> dict[int, tuple[int | None, int | None]]:
        pids = tuple(sorted(pids))
        self.asked.append(pids)
        return {pid: (1_000 * pid, None) for pid in pids}


def record_row(pid: int, *, attributed: int) -> tuple:
    values = dict.fromkeys(APPEND_COLUMNS, 0) | {
        "kind": 1, "model": "m", "model_version": "", "runtime": "", "execution_provider": "",
        "error_type": "", "tags": "{}", "status": 1, "energy": None, "memory": None, "pid": pid,
        "start_mono_ns": 0, "attributed": attributed,
    }
    return tuple(values[column] for column in APPEND_COLUMNS)


def test_memory_is_sampled_for_the_processes_with_records_waiting(buffer, clock):
    memory = MemoryProbeLog()
    def waiting_pids() -> list[int]:
        return [pid for (pid,) in buffer.query("SELECT DISTINCT pid FROM records WHERE attributed = 0")]

    sampler = Sampler(buffer, [], boot=7, memory=memory, pids=waiting_pids, passes_per_write=1, clock_ns=clock)
    sampler.run_once()  # nobody waits: the probe is not asked
    buffer.append([record_row(11, attributed=0), record_row(12, attributed=0), record_row(13, attributed=1)])

    clock.now_ns = 100 * MS
    first = sampler.run_once()  # the pids are looked up after each write: for the next pass
    clock.now_ns = 200 * MS
    second = sampler.run_once()

    assert memory.asked == [(11, 12)]
    assert first.memory == [] and sorted(second.memory) == [(11, 11_000, None), (12, 12_000, None)]
    assert buffer.query("SELECT t_ns, pid, rss_bytes FROM memory_samples ORDER BY pid") == [
        (200 * MS, 11, 11_000), (200 * MS, 12, 12_000),
    ]


# --- /proc/stat ----------------------------------------------------------------------------


def test_busy_time_is_every_cpu_field_but_idle_and_iowait(proc):
    (proc / "stat").write_text(
        "cpu  10 20 30 400 500 60 70 80 90 100\ncpu0 10 20 30 400 500 60 70 80 90 100\ncpu1 0 0 0 0 0 0 0 0 0 0\n"
    )
    activity = CpuActivity(proc, ticks_per_s=100)

    # user + nice + system + irq + softirq + steal; guest is inside user and nice already.
    assert activity.busy_ns() == (10 + 20 + 30 + 60 + 70 + 80) * 10 * MS
    assert activity.cpu_count() == 2


@pytest.mark.parametrize(
    "text",
    [
        "", "\n", "intr 12 0 0\ncpu  1 2 3 4 5 6 7 8\n", "cpu  1 2 three 4 5 6 7 8\n", "cpu  1 2 3\n",
        "\x00\x01garbage", "cpu  1 2 3 4 5 é 7 8\n",
    ],
    ids=["empty", "blank", "no-cpu-line-first", "not-a-number", "too-few-fields", "garbage", "not-ascii"],
)
def test_an_unparsable_proc_stat_reads_as_unknown(proc, text):
    (proc / "stat").write_text(text)
    assert CpuActivity(proc, ticks_per_s=100).busy_ns() is None


def test_a_missing_proc_stat_reads_as_unknown_with_the_os_cpu_count(tmp_path):
    activity = CpuActivity(tmp_path / "no-proc", ticks_per_s=100)
    assert activity.busy_ns() is None
    assert activity.cpu_count() == (os.cpu_count() or 1)


def test_the_real_proc_stat_reads(tmp_path):
    activity = CpuActivity()
    assert activity.busy_ns() > 0 and activity.cpu_count() >= 1


# --- the estimate ----------------------------------------------------------------------------


def test_cpu_estimate_charges_idle_power_per_cpu_and_more_per_busy_cpu(proc, clock):
    write_stat(proc, busy_ticks=100)
    estimate = CpuEstimate(CpuActivity(proc, ticks_per_s=100), PowerModel(), clock_ns=clock)
    assert estimate.idle_power_mw == pytest.approx(4 * 740)
    assert (estimate.domain, estimate.source, estimate.name) == (DOMAIN_CPU, SOURCE_ESTIMATE, "estimate:cpu")
    assert estimate.read() == Reading("estimate:cpu", 0, 0, 0)

    clock.now_ns = 100 * MS
    write_stat(proc, busy_ticks=120)  # 200 ms busy of 400 ms of CPU time

    # 4 CPUs * 0.74 W * 100 ms + (3.5 - 0.74) W * 200 ms = 296 mJ + 552 mJ, +/- 50 %.
    assert estimate.read() == Reading("estimate:cpu", 848_000, 100 * MS, 424_000)


def test_cpu_estimate_caps_busy_time_at_the_cpus_and_ignores_a_counter_going_back(proc, clock):
    estimate = CpuEstimate(CpuActivity(proc, ticks_per_s=100), PowerModel(), clock_ns=clock)
    estimate.read()
    clock.now_ns = 100 * MS
    write_stat(proc, busy_ticks=1_000)  # 10 s busy in 100 ms: only 400 ms fit in 4 CPUs
    assert estimate.read().energy_uj == 296_000 + 1_104_000

    clock.now_ns = 200 * MS
    write_stat(proc, busy_ticks=0)  # went back: nothing busy
    assert estimate.read().energy_uj == 1_400_000 + 296_000


def test_cpu_estimate_keeps_fractions_of_a_microjoule_between_readings(proc, clock):
    estimate = CpuEstimate(CpuActivity(proc, ticks_per_s=100), PowerModel(idle_w_per_cpu=0.001), clock_ns=clock)
    estimate.read()
    readings = []
    for step in range(1, 4):
        clock.now_ns = step * 100_000  # 4 CPUs * 1 mW * 0.1 ms = 0.4 µJ each
        readings.append(estimate.read().energy_uj)
    assert readings == [0, 0, 1]


def test_cpu_estimate_reads_none_while_proc_stat_is_unreadable_and_warns_once(proc, clock, caplog):
    estimate = CpuEstimate(CpuActivity(proc, ticks_per_s=100), PowerModel(), clock_ns=clock)
    (proc / "stat").unlink()
    caplog.set_level(logging.WARNING, logger="agent.energy.sensor")

    assert estimate.read() is None and estimate.read() is None

    assert caplog.text.count("/proc/stat is unreadable") == 1


def test_memory_estimate_is_constant_power_per_gigabyte(clock):
    estimate = MemoryEstimate(8 * 10**9, PowerModel(), clock_ns=clock)
    assert estimate.idle_power_mw == pytest.approx(8 * 392)
    assert (estimate.domain, estimate.source) == (DOMAIN_DRAM, SOURCE_ESTIMATE)
    clock.now_ns = 5 * S
    assert estimate.read() == Reading("estimate:dram", 0, 5 * S, 0)  # counted from the first reading

    clock.now_ns = 6 * S

    assert estimate.read() == Reading("estimate:dram", 3_136_000, 6 * S, 1_568_000)


# --- which sensors ---------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path, proc: Path) -> Roots:
    """A /sys with a Jetson's rails, Intel RAPL zones and AMD's hwmon energy driver all at once
    (no real machine has them all: the order of preference decides)."""
    sys_root = tmp_path / "sys"
    for tree in ("jetson-xavier-nx", "rapl-intel-desktop", "hwmon-amd-energy"):
        shutil.copytree(FIXTURES / tree, sys_root, symlinks=True, dirs_exist_ok=True)
    return Roots(sys=sys_root, proc=proc)


def chosen(roots: Roots, *families: str) -> tuple[list[str], list[str]]:
    setup = probe(AgentConfig(energy_sensors=families or ("auto",)), roots=roots)
    cpu_side = [s.name for s in setup.sensors if s.domain != "gpu"]
    return [family for family in setup.families if family in CPU_FAMILIES], cpu_side


def test_auto_prefers_jetson_rails_then_rapl_then_hwmon_then_the_estimate(host, caplog):
    caplog.set_level(logging.WARNING, logger="agent.energy.probe")
    assert chosen(host) == (["jetson"], ["jetson:VDD_CPU_GPU_CV", "jetson:VDD_SOC", "jetson:VDD_IN-rest"])
    shutil.rmtree(host.sys / "bus")
    assert chosen(host) == (["rapl"], ["rapl:package-0", "rapl:dram-0"])
    shutil.rmtree(host.sys / "class" / "powercap")
    assert chosen(host) == (["hwmon"], ["hwmon:amd_energy/Esocket0"])
    assert "estimated" not in caplog.text

    shutil.rmtree(host.sys / "class" / "hwmon")

    assert chosen(host) == (["estimate"], ["estimate:cpu", "estimate:dram"])
    assert "no energy sensor can be read on this device" in caplog.text


def test_jetson_rails_come_with_the_gpu_load(host):
    setup = probe(AgentConfig(), roots=host)
    assert setup.gpu_load is not None and setup.gpu_load() is not None


def test_named_families_are_taken_as_they_are(host, caplog):
    caplog.set_level(logging.WARNING, logger="agent.energy.probe")
    assert chosen(host, "rapl") == (["rapl"], ["rapl:package-0", "rapl:dram-0"])
    assert chosen(host, "estimate") == (["estimate"], ["estimate:cpu", "estimate:dram"])
    assert caplog.text == ""  # an estimate asked for is no surprise

    assert chosen(host, "rapl", "hwmon")[0] == ["rapl", "hwmon"]

    assert "rapl and hwmon" not in caplog.text and "hwmon and rapl" in caplog.text
    assert "package domain" in caplog.text


def test_a_named_family_the_device_lacks_gives_no_sensor_and_no_fallback(tmp_path, proc):
    bare = Roots(sys=tmp_path / "empty-sys", proc=proc)
    assert chosen(bare, "rapl") == ([], [])


def test_the_estimate_uses_the_configured_power_model(host):
    config = AgentConfig(energy_sensors=("estimate",), idle_w_per_cpu=2.0, max_w_per_cpu=10.0)
    (cpu, _dram) = probe(config, roots=host).sensors
    assert cpu.idle_power_mw == pytest.approx(4 * 2_000)  # 4 CPUs in the fixture /proc/stat


# --- the service -----------------------------------------------------------------------------


def test_the_service_samples_the_configured_sensors_for_the_waiting_processes(tmp_path, host, buffer):
    (host.proc / "sys" / "kernel" / "random").mkdir(parents=True)
    (host.proc / "sys" / "kernel" / "random" / "boot_id").write_text("0b1a5e3c-8d8f-4f3e-9a3b-2c1d0e9f8a7b\n")
    config = AgentConfig(buffer_path=buffer.path, energy_sensors=("rapl",), sample_period_s=0.25)
    buffer.append([record_row(os.getpid(), attributed=0)])

    service = EnergyService.create(config, buffer, roots=host)
    service.sampler.run_once()
    service.sampler.write()  # and learns whose records wait
    (memory,) = service.sampler.run_once().memory
    service.start()  # a first pass, now; then the thread's
    service.stop()  # and its last write

    assert memory[0] == os.getpid() and memory[1] > 0
    assert sorted(service.sampler.infos) == ["rapl:dram-0", "rapl:package-0"]
    assert service.sampler.period_s == 0.25
    boots = {boot for (boot,) in buffer.query("SELECT boot FROM activity_samples")}
    assert boots == {0x0B1A5E3C8D8F4F3}
    assert buffer.query("SELECT count(DISTINCT sensor), count(DISTINCT t_ns) >= 3 FROM energy_samples") == [(2, 1)]


def test_nvml_is_not_even_loaded_without_an_nvidia_driver(tmp_path, proc, monkeypatch):
    from agent.energy import nvidia

    loads = []
    monkeypatch.setattr(nvidia, "pynvml_or_none", lambda: loads.append("pynvml"))
    bare = Roots(sys=tmp_path / "sys", proc=proc, dev=tmp_path / "dev")
    assert chosen(bare, "nvml") == ([], [])
    assert loads == []

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()
    assert chosen(bare, "nvml") == ([], [])
    assert loads == ["pynvml"]
    assert nvidia_driver(Roots(sys=tmp_path / "sys", proc=proc, dev=tmp_path / "none")) is False
