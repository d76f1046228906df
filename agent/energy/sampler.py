"""The sampler: every period (100 ms by default) it reads every sensor, the machine's busy CPU
time and GPU load, and the memory of the processes that meter; it keeps these passes in memory
and writes them to the device buffer in one transaction every `passes_per_write` passes.

Reading is cheap (a few small sysfs or /proc files, an NVML call) and never raises: a sensor
that cannot be read in a pass is left out of it, and attribution spans the gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from agent.buffer import Buffer
from agent.energy import ledger
from agent.energy.activity import CpuActivity
from agent.energy.attribution import SensorInfo
from agent.energy.ledger import Pass
from agent.energy.sensor import Sensor

logger = logging.getLogger(__name__)

# pid -> (rss_bytes, gpu_memory_bytes), either None where unknown.
MemoryProbe = Callable[[Iterable[int]], Mapping[int, tuple[int | None, int | None]]]


def sensor_infos(sensors: Iterable[Sensor]) -> dict[str, SensorInfo]:
    return {
        sensor.name: SensorInfo(sensor.name, sensor.domain, sensor.source, getattr(sensor, "idle_power_mw", None))
        for sensor in sensors
    }


class Sampler:
    def __init__(
        self,
        buffer: Buffer,
        sensors: Sequence[Sensor],
        *,
        boot: int,
        cpu: CpuActivity | None = None,
        gpu_load: Callable[[], float | None] | None = None,
        memory: MemoryProbe | None = None,
        pids: Callable[[], Iterable[int]] = tuple,
        period_s: float = 0.1,
        passes_per_write: int = 10,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._buffer = buffer
        self._sensors = list(sensors)
        self.infos = sensor_infos(self._sensors)
        self._boot = boot
        self._cpu = cpu
        self._gpu_load = gpu_load
        self._memory = memory
        self._pids = pids
        self._watched: tuple[int, ...] = ()
        self.period_s = period_s
        self._passes_per_write = passes_per_write
        self._clock_ns = clock_ns
        self._kept: list[Pass] = []
        self._gpu_busy_ns = 0
        self._last_gpu_t_ns: int | None = None
        self.passes = 0
        self.failed_reads = 0
        self.write_errors = 0

    def run_once(self) -> Pass:
        """One pass: read everything now and keep it; write every passes_per_write passes."""
        t_ns = self._clock_ns()
        energy = {}
        for sensor in self._sensors:
            reading = sensor.read()
            if reading is None:
                self.failed_reads += 1
            else:
                energy[sensor.name] = (reading.energy_uj, reading.error_uj, reading.t_ns)
        one = Pass(
            t_ns, energy,
            cpu_busy_ns=self._cpu.busy_ns() if self._cpu is not None else None,
            gpu_busy_ns=self._gpu_busy(t_ns),
            memory=self._memory_now(),
        )
        self._kept.append(one)
        self.passes += 1
        if len(self._kept) >= self._passes_per_write:
            self.write()
        return one

    def write(self) -> int:
        """Write the passes kept so far; on failure keep them for the next try (bounded)."""
        kept, self._kept = self._kept, []
        if not kept:
            return 0
        try:
            ledger.write_passes(self._buffer, self._boot, kept, self.infos)
        except Exception as err:  # the disk, a lock: the next write tries again
            self.write_errors += 1
            self._kept = kept[-10 * self._passes_per_write:] + self._kept
            logger.warning("cannot write energy samples (%s); keeping %d passes", err, len(self._kept))
            return 0
        self._watched = tuple(self._pids())
        return len(kept)

    def serve(self, stop: threading.Event) -> None:
        """Sample every period until stop is set, on a fixed schedule (no drift), then write."""
        next_s = time.monotonic() + self.period_s
        while not stop.wait(max(next_s - time.monotonic(), 0)):
            self.run_once()
            next_s += self.period_s
            if next_s < time.monotonic():  # fell behind (a stalled disk): skip, do not burst
                next_s = time.monotonic() + self.period_s
        self.write()

    def _gpu_busy(self, t_ns: int) -> int | None:
        if self._gpu_load is None:
            return None
        load = self._gpu_load()
        if load is None:
            return None
        if self._last_gpu_t_ns is not None:
            self._gpu_busy_ns += round(min(max(load, 0.0), 1.0) * (t_ns - self._last_gpu_t_ns))
        self._last_gpu_t_ns = t_ns
        return self._gpu_busy_ns

    def _memory_now(self) -> list[tuple[int, int | None, int | None]]:
        if self._memory is None or not self._watched:
            return []
        return [(pid, rss, gpu) for pid, (rss, gpu) in self._memory(self._watched).items()]
