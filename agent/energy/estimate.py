"""An honest estimate where no sensor can be read (virtual machines, containers): a linear
power model of the CPUs over their busy time, and a constant for memory. Every figure it gives
is marked `estimate` with its error bound, never passed off as measured.

    P_cpu = cpus * idle_w_per_cpu + busy_cpus * (max_w_per_cpu - idle_w_per_cpu)
    P_dram = memory_gb * w_per_memory_gb

The default coefficients are the averages the Cloud Carbon Footprint methodology uses for AWS
(https://www.cloudcarbonfootprint.org/docs/methodology/): 0.74 W per vCPU idle, 3.5 W per vCPU
at full load, 0.392 W per GB of memory. A hardware profile in the agent's configuration sets
its own ([energy.estimate] in agent.toml). Real machines differ from such averages by tens of
percent; the error bound is +/- error_fraction of the estimate (50 % by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.energy.activity import CpuActivity
from agent.energy.sensor import DOMAIN_CPU, DOMAIN_DRAM, SOURCE_ESTIMATE, Reading, WarnOnce


@dataclass(frozen=True, slots=True)
class PowerModel:
    idle_w_per_cpu: float = 0.74
    max_w_per_cpu: float = 3.5
    w_per_memory_gb: float = 0.392
    error_fraction: float = 0.5


class CpuEstimate:
    """Estimated CPU energy. `idle_power_mw` is the model's own idle baseline, which attribution
    uses instead of learning one."""

    domain = DOMAIN_CPU
    source = SOURCE_ESTIMATE

    def __init__(
        self, activity: CpuActivity, model: PowerModel, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.name = "estimate:cpu"
        self._activity = activity
        self._model = model
        self._cpus = activity.cpu_count()
        self.idle_power_mw = self._cpus * model.idle_w_per_cpu * 1000
        self._clock_ns = clock_ns
        self._last: tuple[int, int] | None = None  # (t_ns, busy_ns)
        self._energy_nj = 0
        self._warn = WarnOnce(self.name)

    def read(self) -> Reading | None:
        busy_ns = self._activity.busy_ns()
        t_ns = self._clock_ns()
        if busy_ns is None:
            self._warn("unreadable", "/proc/stat is unreadable; no CPU estimate until it is")
            return None
        step_nj = 0
        if self._last is not None:
            last_t_ns, last_busy_ns = self._last
            dt_ns = max(t_ns - last_t_ns, 0)
            busy_step_ns = min(max(busy_ns - last_busy_ns, 0), dt_ns * self._cpus)
            # W * ns = nJ
            step_nj = round(
                self._cpus * self._model.idle_w_per_cpu * dt_ns
                + (self._model.max_w_per_cpu - self._model.idle_w_per_cpu) * busy_step_ns
            )
            self._energy_nj += step_nj
        self._last = (t_ns, busy_ns)
        return Reading(self.name, self._energy_nj // 1000, t_ns, round(step_nj * self._model.error_fraction / 1000))


class MemoryEstimate:
    """Estimated memory energy: constant power, so all of it is idle baseline."""

    domain = DOMAIN_DRAM
    source = SOURCE_ESTIMATE

    def __init__(
        self, memory_bytes: int, model: PowerModel, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.name = "estimate:dram"
        self.idle_power_mw = memory_bytes / 1e9 * model.w_per_memory_gb * 1000
        self._model = model
        self._clock_ns = clock_ns
        self._first_t_ns: int | None = None
        self._last_uj = 0

    def read(self) -> Reading:
        t_ns = self._clock_ns()
        if self._first_t_ns is None:
            self._first_t_ns = t_ns
        energy_uj = round(self.idle_power_mw * (t_ns - self._first_t_ns) / 1e6)  # mW * ns = 1e-6 µJ
        error_uj = round((energy_uj - self._last_uj) * self._model.error_fraction)
        self._last_uj = energy_uj
        return Reading(self.name, energy_uj, t_ns, error_uj)
