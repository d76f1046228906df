"""The sampler's passes and the attributor's runs on a real device buffer: energy conserved in
the database, time final only up to the watermark, samples pruned, restarts, late records,
earlier boots, long calls, memory, idle records, and what may be shipped.

The machine is simulated: a monotonic clock the test moves, a /proc/stat under tmp_path that it
rewrites, and sensors whose counters it moves by hand, read by a real Sampler. Each step is one
100 ms sampling interval. A CPU-bound call keeps one CPU busy for its whole duration, so in an
interval where only calls are busy, each call's share of the dynamic energy is exactly its
overlap: the energies below are computed by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.buffer import APPEND_COLUMNS, Buffer, encode_tags
from agent.daemon import Daemon
from agent.energy import ledger
from agent.energy.activity import CpuActivity
from agent.energy.attribution import METHOD_BASELINE, METHOD_OTHER_ACTIVITY
from agent.energy.attributor import AttributionReport, Attributor
from agent.energy.sampler import Sampler
from agent.energy.sensor import DOMAIN_GPU, DOMAIN_PACKAGE, Reading
from agent.exporter import InMemoryExporter
from agent.record import Kind, Status
from agent.shipper import Shipper

MS = 1_000_000
STEP_MS = 100
T0_NS = 10_000 * MS  # monotonic time of the first pass
WALL_OFFSET_NS = 1_700_000_000 * 10**9  # wall minus monotonic time, in the boot under test
BOOT = 0x0ABC
PID = os.getpid()
IDLE_MW = 1_000  # the package sensor's baseline: 100,000 µJ per interval
PACKAGE_UJ_PER_BUSY_MS = 500
GPU_UJ_PER_BUSY_MS = 30
DEVICE_TAGS = {"site": "plant-3"}


class CountingSensor:
    """A cumulative counter the test moves; reads None while `missing`."""

    source = "fake"

    def __init__(self, name: str, domain: str, machine: Machine, *, idle_power_mw: float) -> None:
        self.name = name
        self.domain = domain
        self.idle_power_mw = idle_power_mw
        self.energy_uj = 0
        self.missing = False
        self._machine = machine

    def read(self) -> Reading | None:
        if self.missing:
            return None
        return Reading(self.name, self.energy_uj, self._machine.now_ns)


@dataclass(frozen=True)
class Call:
    """A metered call, in ms from the first pass: CPU-bound (one CPU busy throughout), on the
    GPU (GPU fully busy throughout, no CPU time), or waiting (on I/O: busy nowhere)."""

    start_ms: int
    end_ms: int
    gpu: bool = False
    pid: int = PID
    waiting: bool = False

    def row(self, *, boot: int = BOOT, attributed: int = 0) -> tuple:
        start_ns = T0_NS + self.start_ms * MS
        duration_ns = (self.end_ms - self.start_ms) * MS
        values = {
            "kind": int(Kind.INFERENCE), "model": "resnet50", "model_version": "3",
            "runtime": "onnxruntime",
            "execution_provider": "CUDAExecutionProvider" if self.gpu else "CPUExecutionProvider",
            "batch_size": 1, "input_bytes": 64, "output_bytes": 16, "input_tokens": 0,
            "output_tokens": 0, "start_unix_ns": start_ns + WALL_OFFSET_NS,
            "duration_ns": duration_ns, "cpu_time_ns": 0 if self.gpu or self.waiting else duration_ns,
            "status": int(Status.OK), "error_type": "", "tags": encode_tags({"project": "search"}),
            "pid": self.pid, "count": 1, "gpu_time_ns": 0, "energy": None, "memory": None,
            "start_mono_ns": start_ns, "boot": boot, "attributed": attributed,
        }
        return tuple(values[column] for column in APPEND_COLUMNS)

    def overlap_ms(self, t0_ms: int, t1_ms: int) -> int:
        if self.waiting:
            return 0
        return max(min(self.end_ms, t1_ms) - max(self.start_ms, t0_ms), 0)


# Runs in one step, and in steps of one and three intervals (agent.energy.attributor): the
# same energy, and the sums still add up.
STEPS = pytest.mark.parametrize("max_intervals", [10_000, 1, 3])


class Machine:
    """The device under the daemon: the clock, /proc/stat, two sensors and a sampler on them."""

    def __init__(self, tmp_path: Path, buffer: Buffer, *, boot: int = BOOT, name: str = "proc") -> None:
        self.now_ns = T0_NS
        self.buffer = buffer
        self.boot = boot
        self.wall_offset_ns = WALL_OFFSET_NS
        self.proc = tmp_path / name
        self.proc.mkdir()
        self._busy_ticks = 0  # 10 ms each (ticks_per_s=100)
        self._write_stat()
        self.package = CountingSensor("fake:package-0", DOMAIN_PACKAGE, self, idle_power_mw=IDLE_MW)
        self.gpu = CountingSensor("fake:gpu-0", DOMAIN_GPU, self, idle_power_mw=0)
        self.gpu_load = 0.0
        self.rss: dict[int, int] = {}
        self.memory_asked: list[tuple[int, ...]] = []
        self.sampler = Sampler(
            buffer, [self.package, self.gpu], boot=boot, cpu=CpuActivity(self.proc, ticks_per_s=100),
            gpu_load=lambda: self.gpu_load, memory=self._memory, pids=self._waiting_pids,
            period_s=STEP_MS / 1000, passes_per_write=1, clock_ns=self.clock_ns,
        )
        self.counters: dict[int, dict[str, int]] = {}  # pass time -> sensor -> reading
        self._take_pass()

    @property
    def now_ms(self) -> int:
        return (self.now_ns - T0_NS) // MS

    def clock_ns(self) -> int:
        return self.now_ns

    def wall_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    def attributor(self, buffer: Buffer | None = None, **knobs) -> Attributor:
        """An attributor on the machine's clocks; its idle energy becomes an idle record at
        every run (in one step) unless idle_record_ns (max_intervals) says otherwise."""
        return Attributor(
            buffer or self.buffer, self.sampler.infos, boot=self.boot, cpu_count=4,
            sample_period_ns=STEP_MS * MS, device_tags=DEVICE_TAGS, clock_ns=self.clock_ns,
            wall_ns=self.wall_ns, **{"idle_record_ns": 0, "max_intervals": 10_000, **knobs},
        )

    def play(self, calls: Iterable[Call], *, until_ms: int, other_busy_ms: Mapping[int, int] | None = None) -> None:
        """Step to until_ms with these calls running; other_busy_ms: CPU time other processes
        used in the interval ending at a given time."""
        calls = list(calls)
        other_busy_ms = other_busy_ms or {}
        while self.now_ms < until_ms:
            t0_ms, t1_ms = self.now_ms, self.now_ms + STEP_MS
            busy_ms = sum(c.overlap_ms(t0_ms, t1_ms) for c in calls if not c.gpu)
            gpu_busy_ms = sum(c.overlap_ms(t0_ms, t1_ms) for c in calls if c.gpu)
            self.step(busy_ms=busy_ms + other_busy_ms.get(t1_ms, 0), gpu_busy_ms=gpu_busy_ms)

    def step(self, *, busy_ms: int = 0, gpu_busy_ms: int = 0) -> None:
        """One interval: the sensors count idle plus what the busy time costs, then a pass."""
        self.now_ns += STEP_MS * MS
        self.package.energy_uj += IDLE_MW * STEP_MS + PACKAGE_UJ_PER_BUSY_MS * busy_ms
        self.gpu.energy_uj += GPU_UJ_PER_BUSY_MS * gpu_busy_ms
        self.gpu_load = gpu_busy_ms / STEP_MS
        self._busy_ticks += busy_ms // 10
        self._write_stat()
        self._take_pass()

    def counted(self, domain: str, from_ns: int, to_ns: int) -> int:
        """What the sensors of a domain counted between two passes (by their own readings)."""
        names = [s.name for s in (self.package, self.gpu) if s.domain == domain]
        return sum(self.counters[to_ns][name] - self.counters[from_ns][name] for name in names)

    def _take_pass(self) -> None:
        one = self.sampler.run_once()
        self.counters[one.t_ns] = {name: energy for name, (energy, _, _) in one.energy.items()}

    def _write_stat(self) -> None:
        idle_ticks = 4 * (self.now_ns // (10 * MS)) - self._busy_ticks
        cpus = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(4))
        (self.proc / "stat").write_text(f"cpu  {self._busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n{cpus}")

    def _memory(self, pids: Iterable[int]) -> dict[int, tuple[int | None, int | None]]:
        pids = tuple(pids)
        self.memory_asked.append(pids)
        return {pid: (self.rss[pid], None) for pid in pids if pid in self.rss}

    def _waiting_pids(self) -> list[int]:
        return [pid for (pid,) in self.buffer.query("SELECT DISTINCT pid FROM records WHERE attributed = 0")]


@pytest.fixture
def buffer(tmp_path: Path):
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        yield buffer


@pytest.fixture
def machine(tmp_path: Path, buffer: Buffer) -> Machine:
    return Machine(tmp_path, buffer)


def ms(t_ms: int) -> int:
    """Monotonic ns of a time given in ms from the first pass."""
    return T0_NS + t_ms * MS


def energy_by_domain(buffer: Buffer) -> Counter:
    """Energy in the records' energy JSON (idle records included), per domain."""
    total: Counter = Counter()
    for (energy,) in buffer.query("SELECT energy FROM records WHERE energy IS NOT NULL"):
        for domain, energy_uj, *_ in json.loads(energy):
            total[domain] += energy_uj
    return total


def stored(buffer: Buffer, seq: int) -> tuple[dict[str, int], int]:
    """A record's energy per domain and its attributed flag."""
    energy, attributed = buffer.query("SELECT energy, attributed FROM records WHERE seq = ?", (seq,))[0]
    per_domain: Counter = Counter()
    for domain, energy_uj, *_ in json.loads(energy) if energy else ():
        per_domain[domain] += energy_uj
    return dict(per_domain), attributed


def append(buffer: Buffer, *calls: Call, **row_knobs) -> list[int]:
    """Append the calls' records; their seqs."""
    last = buffer.append([call.row(**row_knobs) for call in calls])
    return list(range(last - len(calls) + 1, last + 1))


def assert_conserved(machine: Machine, buffer: Buffer) -> None:
    done_ns = ledger.done_until(buffer, machine.boot)
    attributed = energy_by_domain(buffer)
    for domain in (DOMAIN_PACKAGE, DOMAIN_GPU):
        assert attributed[domain] == machine.counted(domain, T0_NS, done_ns), domain


CPU_CALL = Call(200, 500)
GPU_CALL = Call(300, 700, gpu=True)
SPANNING = Call(1200, 1800)  # across the first run's watermark, 1500 ms


@STEPS
def test_records_and_idle_records_hold_exactly_what_the_sensors_counted(machine, buffer, max_intervals):
    calls = [CPU_CALL, GPU_CALL, Call(250, 300), SPANNING]
    machine.play(calls, until_ms=2500, other_busy_ms={900: 60, 1400: 30})
    append(buffer, *calls)

    machine.attributor(max_intervals=max_intervals).run_once()

    assert ledger.done_until(buffer, BOOT) == ms(1500)
    assert_conserved(machine, buffer)
    machine.play([], until_ms=3500)
    machine.attributor(max_intervals=max_intervals).run_once()
    assert ledger.done_until(buffer, BOOT) == ms(2500)
    assert_conserved(machine, buffer)


def test_each_call_gets_the_energy_its_activity_cost(machine, buffer):
    seqs = append(buffer, CPU_CALL, GPU_CALL)
    machine.play([CPU_CALL, GPU_CALL], until_ms=2000, other_busy_ms={900: 60})

    report = machine.attributor().run_once()

    assert report == AttributionReport(records=2, finished=2)
    assert stored(buffer, seqs[0]) == ({DOMAIN_PACKAGE: 300 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert stored(buffer, seqs[1]) == ({DOMAIN_GPU: 400 * GPU_UJ_PER_BUSY_MS}, 1)
    (idle,) = buffer.read(after_seq=seqs[1])
    methods = {(s.domain, s.method): s.energy_uj for s in idle.energy}
    assert methods == {
        (DOMAIN_PACKAGE, METHOD_BASELINE): 10 * IDLE_MW * STEP_MS,  # 10 intervals to 1000 ms
        (DOMAIN_PACKAGE, METHOD_OTHER_ACTIVITY): 60 * PACKAGE_UJ_PER_BUSY_MS,
    }


def test_a_record_across_the_watermark_keeps_its_part_and_gets_the_rest_once(machine, buffer):
    machine.play([SPANNING], until_ms=2500)
    (seq,) = append(buffer, SPANNING)

    first = machine.attributor().run_once()

    assert (first.records, first.finished) == (1, 0)
    assert stored(buffer, seq) == ({DOMAIN_PACKAGE: 300 * PACKAGE_UJ_PER_BUSY_MS}, 0)
    machine.play([], until_ms=3000)
    second = machine.attributor().run_once()
    assert (second.records, second.finished) == (1, 1)
    assert stored(buffer, seq) == ({DOMAIN_PACKAGE: 600 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert_conserved(machine, buffer)


def test_records_that_end_after_the_watermark_are_left_for_a_later_run(machine, buffer):
    machine.play([Call(1400, 1500), Call(1600, 1700)], until_ms=2500)
    before, after = append(buffer, Call(1400, 1500), Call(1600, 1700))

    machine.attributor().run_once()

    assert stored(buffer, before) == ({DOMAIN_PACKAGE: 100 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert stored(buffer, after) == ({}, 0)


def test_samples_are_pruned_up_to_the_last_attributed_pass(machine, buffer):
    machine.rss[PID] = 1_000
    append(buffer, Call(0, 2400))
    machine.play([], until_ms=2500)

    machine.attributor().run_once()

    for table in ("energy_samples", "activity_samples", "memory_samples"):
        (first_ns,) = buffer.query(f"SELECT min(t_ns) FROM {table}")[0]
        assert first_ns == ms(1500), table
    assert buffer.query("SELECT count(*) FROM energy_samples WHERE t_ns = ?", (ms(1500),)) == [(2,)]


def test_a_restarted_attributor_goes_on_from_the_done_mark(machine, buffer, tmp_path):
    machine.play([SPANNING], until_ms=2500)
    (seq,) = append(buffer, SPANNING)
    machine.attributor().run_once()
    machine.play([], until_ms=3000)

    with Buffer.open(tmp_path / "buffer.db") as reopened:
        report = machine.attributor(reopened).run_once()

    assert report.finished == 1 and report.late == 0
    assert ledger.done_until(buffer, BOOT) == ms(2000)
    assert stored(buffer, seq) == ({DOMAIN_PACKAGE: 600 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert_conserved(machine, buffer)


def test_a_record_written_after_its_time_was_final_is_late_and_gets_only_later_energy(machine, buffer):
    late = Call(1300, 1700)
    machine.play([late], until_ms=2500)
    machine.attributor().run_once()  # final to 1500 ms: the late call's 200 ms there went to others
    (seq,) = append(buffer, late)
    machine.play([], until_ms=3000)

    report = machine.attributor().run_once()

    assert report.late == 1
    assert stored(buffer, seq) == ({DOMAIN_PACKAGE: 200 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert_conserved(machine, buffer)


def test_a_record_that_got_no_energy_before_the_watermark_is_not_late(machine, buffer):
    waiting_on_io = Call(1200, 1800, waiting=True)
    append(buffer, waiting_on_io)
    machine.play([], until_ms=2500)
    machine.attributor().run_once()  # nothing for it to 1500 ms: it used no CPU
    machine.play([], until_ms=3000)

    report = machine.attributor().run_once()

    assert (report.late, report.finished) == (0, 1)


def test_records_of_an_earlier_boot_are_finished_with_its_samples_which_are_dropped(tmp_path, buffer):
    earlier_boot = 0x0FED
    earlier = Machine(tmp_path, buffer, boot=earlier_boot, name="proc-earlier")
    earlier.play([Call(100, 300), Call(900, 1300)], until_ms=1200)  # powered off at 1200 ms
    ended, cut_off = append(buffer, Call(100, 300), Call(900, 1300), boot=earlier_boot)
    earlier.attributor().run_once()  # the daemon's last run in that boot: final to 200 ms
    assert stored(buffer, ended) == ({DOMAIN_PACKAGE: 100 * PACKAGE_UJ_PER_BUSY_MS}, 0)

    rebooted = Machine(tmp_path, buffer, name="proc-now")
    rebooted.wall_offset_ns = WALL_OFFSET_NS + 3_600 * 10**9  # the new boot's clock starts later
    report = rebooted.attributor().run_once()

    assert report.closed == 1 and report.finished == 1
    assert stored(buffer, ended) == ({DOMAIN_PACKAGE: 200 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    assert stored(buffer, cut_off) == ({DOMAIN_PACKAGE: 300 * PACKAGE_UJ_PER_BUSY_MS}, 1)
    for table in ("energy_samples", "activity_samples", "memory_samples"):
        assert buffer.query(f"SELECT count(*) FROM {table} WHERE boot = ?", (earlier_boot,)) == [(0,)]
    assert ledger.done_until(buffer, earlier_boot) is None
    assert energy_by_domain(buffer)[DOMAIN_PACKAGE] == earlier.counted(DOMAIN_PACKAGE, T0_NS, ms(1200))
    # Idle records of that boot are placed in time by that boot's clocks, not this one's.
    idle_starts = buffer.query(
        "SELECT start_mono_ns, start_unix_ns FROM records WHERE kind = ? AND boot = ? ORDER BY seq",
        (int(Kind.IDLE), earlier_boot),
    )
    assert [start_unix_ns - start_mono_ns for start_mono_ns, start_unix_ns in idle_starts] == [WALL_OFFSET_NS] * 2


def test_an_earlier_boot_that_never_attributed_is_placed_before_this_boot_began(tmp_path, buffer):
    earlier = Machine(tmp_path, buffer, boot=0x0FED, name="proc-earlier")
    earlier.play([], until_ms=1200)
    rebooted = Machine(tmp_path, buffer, name="proc-now")
    rebooted.now_ns = 20 * 10**9

    rebooted.attributor().run_once()

    (idle,) = buffer.read()
    this_boot_began_unix_ns = rebooted.wall_ns() - rebooted.now_ns
    assert idle.start_unix_ns + idle.duration_ns == this_boot_began_unix_ns
    assert idle.duration_ns == 1200 * MS


def test_records_are_let_go_when_no_samples_come_for_them(machine, buffer):
    machine.play([], until_ms=500)
    stalled, recent = append(buffer, Call(1000, 1100), Call(60_000, 60_100))
    machine.now_ns = ms(61_200)  # the sampler has written nothing since 500 ms

    report = machine.attributor(max_wait_ns=60_000 * MS).run_once()

    assert report.let_go == 1
    assert stored(buffer, stalled) == ({}, 1)
    assert stored(buffer, recent) == ({}, 0)


def test_a_long_call_of_a_live_process_holds_the_watermark_at_its_start(machine, buffer):
    machine.play([Call(700, 800)], until_ms=2500)
    (seq,) = append(buffer, Call(700, 800))
    buffer.mark_long_call(BOOT, PID, ms(600))  # a call of this (live) process, running since 600 ms

    report = machine.attributor().run_once()

    assert ledger.done_until(buffer, BOOT) == ms(600)
    assert report.finished == 0 and stored(buffer, seq) == ({}, 0)
    assert ledger.long_calls(buffer, BOOT) == [(PID, ms(600))]


def test_the_long_call_mark_of_a_dead_process_is_removed(machine, buffer):
    process = subprocess.Popen(["true"])
    process.wait()
    machine.play([], until_ms=2500)
    buffer.mark_long_call(BOOT, process.pid, ms(600))

    machine.attributor().run_once()

    assert ledger.done_until(buffer, BOOT) == ms(1500)
    assert ledger.long_calls(buffer, BOOT) == []


def test_finished_records_get_the_peak_memory_their_process_had_while_they_ran(machine, buffer):
    other_pid = PID + 1
    append(buffer, Call(1200, 1800), Call(1200, 1300, pid=other_pid))
    machine.play([], until_ms=1100)  # the sampler has learnt which processes have records waiting
    rss_by_time = {1300: 9_000, 1600: 5_000, 2200: 99_000}  # 2200: after the calls and the margin
    while machine.now_ms < 2500:
        machine.rss = {PID: rss_by_time.get(machine.now_ms + STEP_MS, 1_000), other_pid: 2_000}
        machine.step()

    machine.attributor().run_once()  # final to 1500 ms: the short call finishes
    machine.play([], until_ms=3000)
    machine.attributor().run_once()  # final to 2000 ms: the long one finishes

    assert {pid for asked in machine.memory_asked for pid in asked} == {PID, other_pid}
    memory = {r.pid: r.memory for r in buffer.read() if r.kind is Kind.INFERENCE}
    assert (memory[PID].peak_rss_bytes, memory[other_pid].peak_rss_bytes) == (9_000, 2_000)
    assert memory[PID].peak_gpu_memory_bytes == 0


def test_idle_records_carry_the_device_tags_and_start_in_wall_time(machine, buffer):
    machine.play([], until_ms=2500)

    machine.attributor().run_once()

    (idle,) = buffer.read()
    assert (idle.kind, idle.count, idle.model, idle.status, idle.pid) == (Kind.IDLE, 0, "", Status.OK, 0)
    assert idle.tags == DEVICE_TAGS
    assert idle.start_unix_ns == T0_NS + WALL_OFFSET_NS
    assert idle.duration_ns == 1500 * MS
    assert [(s.domain, s.energy_uj, s.sensor, s.method, s.interval_ns) for s in idle.energy] == [
        (DOMAIN_PACKAGE, 15 * IDLE_MW * STEP_MS, "fake", METHOD_BASELINE, STEP_MS * MS),
    ]


def test_only_the_attributed_prefix_is_read_for_shipping(machine, buffer):
    machine.play([], until_ms=2500)
    done, waiting, behind = append(buffer, Call(100, 200), Call(1400, 1600), Call(1700, 1800))
    machine.attributor().run_once()
    idle = buffer.read()[-1].seq

    assert [r.seq for r in buffer.read()] == [done, waiting, behind, idle]
    assert [r.seq for r in buffer.read(attributed_only=True)] == [done]
    assert [r.seq for r in buffer.read(after_seq=done, attributed_only=True)] == []


def test_the_daemon_attributes_then_ships_only_what_attribution_is_done_with(machine, buffer):
    finished, spanning = append(buffer, Call(100, 200), SPANNING)
    machine.play([Call(100, 200), SPANNING], until_ms=2500)
    exporter = InMemoryExporter()
    daemon = Daemon(Shipper(buffer, exporter, attributed_only=True), tasks=[machine.attributor()])

    daemon.run_once()

    assert [r.seq for r in exporter.received] == [finished]
    assert exporter.received[0].energy_uj == 100 * PACKAGE_UJ_PER_BUSY_MS
    machine.play([], until_ms=3000)
    daemon.run_once()
    assert [r.seq for r in exporter.received[1:]] == [spanning, spanning + 1, spanning + 2]  # and 2 idle
    assert buffer.stats().records == 0


def test_attribution_failures_do_not_stop_shipping(tmp_path, buffer, caplog):
    broken = Buffer.open(tmp_path / "other.db")
    broken.close()
    (seq,) = append(buffer, Call(100, 200), attributed=1)
    exporter = InMemoryExporter()
    attributor = Attributor(broken, {}, boot=BOOT, cpu_count=4, sample_period_ns=STEP_MS * MS)
    daemon = Daemon(Shipper(buffer, exporter, attributed_only=True), tasks=[attributor])

    daemon.run_once()
    daemon.run_once()

    assert [r.seq for r in exporter.received] == [seq]
    assert caplog.text.count("Attributor failed") == 1


def test_a_sensor_missing_from_some_passes_gets_one_interval_across_the_gap(machine, buffer):
    machine.step(busy_ms=10)
    machine.gpu.missing = True
    machine.step(gpu_busy_ms=100)
    machine.step(gpu_busy_ms=50)
    machine.gpu.missing = False
    machine.step()

    spans = ledger.intervals(buffer, BOOT, until_ns=ms(400))

    gpu = machine.gpu.name
    gpu_spans = [(s.t0_ns, s.t1_ns, s.energy[gpu].energy_uj) for s in spans if gpu in s.energy]
    assert gpu_spans == [(ms(0), ms(100), 0), (ms(100), ms(400), 150 * GPU_UJ_PER_BUSY_MS)]
    (gap,) = [s for s in spans if (s.t0_ns, s.t1_ns) == (ms(100), ms(400))]
    assert gap.cpu_busy_ns == 0 and gap.gpu_busy_ns == 150 * MS
    assert [s.t1_ns for s in spans if machine.package.name in s.energy] == [ms(100), ms(200), ms(300), ms(400)]


@STEPS
def test_energy_counted_across_a_sensor_gap_at_the_watermark_is_kept(machine, buffer, max_intervals):
    machine.gpu.missing = True
    machine.play([GPU_CALL], until_ms=1700)  # the GPU sensor misses 100 .. 1700 ms
    machine.gpu.missing = False
    machine.play([], until_ms=2500)
    (seq,) = append(buffer, GPU_CALL)

    machine.attributor(max_intervals=max_intervals).run_once()  # final to 1500 ms, inside the gap
    machine.play([], until_ms=3000)
    machine.attributor(max_intervals=max_intervals).run_once()

    assert energy_by_domain(buffer)[DOMAIN_GPU] == 400 * GPU_UJ_PER_BUSY_MS
    assert_conserved(machine, buffer)
    assert stored(buffer, seq)[1] == 1


@STEPS
def test_sensors_missing_from_different_passes_are_each_counted_once(machine, buffer, max_intervals):
    calls = [Call(100, 400), Call(1300, 1700, gpu=True)]
    machine.gpu.missing = True  # from 100 to 1400 ms
    machine.play(calls, until_ms=1400)
    machine.gpu.missing, machine.package.missing = False, True  # the package sensor misses 1500
    machine.play(calls, until_ms=1500)
    machine.package.missing = False
    machine.play(calls, until_ms=2500)
    append(buffer, *calls)

    machine.attributor(max_intervals=max_intervals).run_once()  # the last span to start ends at 1400, the GPU's at 1500
    assert ledger.done_until(buffer, BOOT) == ms(1500)
    machine.play([], until_ms=3500)
    machine.attributor(max_intervals=max_intervals).run_once()

    assert_conserved(machine, buffer)


def test_records_a_meter_writes_get_their_energy(tmp_path, buffer):
    from agent import Meter
    from agent.boot import boot_key
    from tests.agent.conftest import FakeClock

    clock = FakeClock(perf_step_ns=50 * MS, cpu_step_ns=50 * MS)
    clock.perf_ns = T0_NS + 1200 * MS
    machine = Machine(tmp_path, buffer, boot=boot_key())
    with Meter(buffer.path, start_thread=False, clock=clock) as meter:
        with meter.span("step"):  # 1250 .. 1300 ms on the meter's clock
            pass
        assert meter.flush()
    machine.play([Call(1250, 1300)], until_ms=2500)

    machine.attributor().run_once()

    (record,) = [r for r in buffer.read() if r.kind is Kind.SPAN]
    assert record.energy_uj == 50 * PACKAGE_UJ_PER_BUSY_MS
    assert record.start_unix_ns == T0_NS + 1250 * MS + FakeClock.WALL_START_NS


def idle_records(buffer: Buffer) -> list[tuple[int, int]]:
    return buffer.query(f"SELECT start_mono_ns, duration_ns FROM records WHERE kind = {int(Kind.IDLE)}")


def test_idle_energy_gathers_into_one_record_per_idle_span_and_stays_conserved(machine, buffer):
    attributor = machine.attributor(idle_record_ns=3000 * MS)
    for until_ms in (1500, 2500, 3500):  # three runs, the span open across them
        machine.play([], until_ms=until_ms)
        attributor.run_once()
    assert idle_records(buffer) == []

    machine.play([], until_ms=4500)
    attributor.run_once()

    assert idle_records(buffer) == [(ms(0), 3500 * MS)]
    assert_conserved(machine, buffer)  # the whole span's idle energy, in that one record
    machine.play([], until_ms=5500)
    attributor.run_once()
    assert len(idle_records(buffer)) == 1  # a new span is open, not yet a record


def test_a_closed_boot_writes_its_open_idle_span(tmp_path, buffer):
    earlier = Machine(tmp_path, buffer, boot=0x0FED, name="proc-earlier")
    earlier.play([], until_ms=2000)
    earlier.attributor(idle_record_ns=60_000 * MS).run_once()
    assert idle_records(buffer) == []

    Machine(tmp_path, buffer, name="proc-now").attributor(idle_record_ns=60_000 * MS).run_once()

    assert idle_records(buffer) == [(ms(0), 2000 * MS)]  # up to that boot's last pass
    assert energy_by_domain(buffer)[DOMAIN_PACKAGE] == earlier.counted(DOMAIN_PACKAGE, T0_NS, ms(2000))
