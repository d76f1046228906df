"""What every energy source reduces to: a cumulative counter, read as a Reading.

A Sensor measures one *domain* (the part of the machine whose energy it counts: cpu package,
dram, gpu, soc, board ...) and reads as the energy it has counted since it was created, in
microjoules, never decreasing: a hardware counter that wraps is unwrapped by its sensor, and a
source that only gives power is integrated by PowerIntegrator. Time is the monotonic clock
(CLOCK_MONOTONIC, the clock metered calls are timed with), so readings and records line up.

read() never raises: a reading that fails (the file vanished, the driver answered nonsense)
returns None and is logged once per sensor; the sampler counts it and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

# Provenance: which kind of source a figure came from (EnergyShare.sensor on the wire).
SOURCE_RAPL = "rapl"
SOURCE_NVML = "nvml"
SOURCE_JETSON = "jetson-ina3221"
SOURCE_HWMON = "hwmon"
SOURCE_TRITON = "triton-metrics"
SOURCE_ESTIMATE = "estimate"

# Domains. CPU-side domains are split over records by CPU time, GPU ones by GPU busy time.
DOMAIN_PACKAGE = "package"  # a CPU socket: cores, caches, uncore
DOMAIN_DRAM = "dram"
DOMAIN_CPU = "cpu"  # CPU cores (Jetson CPU rails, or an estimate)
DOMAIN_GPU = "gpu"
DOMAIN_SOC = "soc"  # the rest of a system on chip (Jetson: memory controller, engines ...)
DOMAIN_BOARD = "board"  # a whole board or platform (psys, a board input rail)
GPU_DOMAINS = frozenset({DOMAIN_GPU})


@dataclass(frozen=True, slots=True)
class Reading:
    sensor: str  # the Sensor's name
    energy_uj: int  # counted since the sensor was created; never decreases
    t_ns: int  # CLOCK_MONOTONIC when read
    # Bound on the error of the energy counted since this sensor's previous reading (counter
    # resolution, integration error, or an estimate's model error).
    error_uj: int = 0


class Sensor(Protocol):
    name: str  # unique and stable on the device: "rapl:package-0", "nvml:gpu-0", ...
    domain: str  # one of the DOMAIN_* names
    source: str  # one of the SOURCE_* names

    def read(self) -> Reading | None:
        """The cumulative reading now, or None if the source cannot be read now. Never raises."""


class WarnOnce:
    """Logs the first failure of a kind for one sensor, then counts silently: a sensor that
    fails ten times a second must not flood the journal."""

    def __init__(self, sensor: str) -> None:
        self._sensor = sensor
        self._seen: set[str] = set()
        self.failures = 0

    def __call__(self, kind: str, message: str, *args: object) -> None:
        self.failures += 1
        if kind not in self._seen:
            self._seen.add(kind)
            logger.warning("energy sensor %s: " + message, self._sensor, *args)


class WrappingCounter:
    """Unwraps a hardware energy counter that rolls over at max_uj (RAPL energy_uj wraps at
    max_energy_range_uj): the cumulative energy since the first value seen. Correct as long as
    the counter is read at least once per wrap period (minutes, at full power)."""

    def __init__(self, max_uj: int) -> None:
        self._max_uj = max_uj
        self._last_raw: int | None = None
        self.total_uj = 0

    def update(self, raw_uj: int) -> int:
        if self._last_raw is not None:
            delta = raw_uj - self._last_raw
            if delta < 0:  # wrapped (max_uj is the largest value the counter holds)
                delta += self._max_uj + 1
            self.total_uj += delta
        self._last_raw = raw_uj
        return self.total_uj


class PowerIntegrator:
    """A Sensor over a source that only gives power (Jetson rails, hwmon power*_input, NVML
    power on GPUs without an energy counter): the trapezoid rule between readings. The error
    bound of a step is half the change in power times its length, the trapezoid's worst case
    for a power that moved monotonically between the two samples."""

    def __init__(
        self,
        name: str,
        domain: str,
        source: str,
        power_mw: Callable[[], float | None],
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.name = name
        self.domain = domain
        self.source = source
        self._power_mw = power_mw
        self._clock_ns = clock_ns
        self._last: tuple[int, float] | None = None  # (t_ns, mW)
        self._energy_nj = 0  # nanojoules: 1 mW over 1 ns is 1e-12 J, kept exact enough

    def read(self) -> Reading | None:
        power_mw = self._power_mw()
        t_ns = self._clock_ns()
        if power_mw is None:
            return None
        error_uj = 0
        if self._last is not None:
            last_t_ns, last_mw = self._last
            dt_ns = t_ns - last_t_ns
            # mW * ns = 1e-12 J = 1e-6 µJ; kept in nJ (1e-9 J) for the running sum.
            self._energy_nj += round((power_mw + last_mw) / 2 * dt_ns / 1000)
            error_uj = round(abs(power_mw - last_mw) / 2 * dt_ns / 1e6)  # mW * ns = 1e-6 µJ
        self._last = (t_ns, power_mw)
        return Reading(self.name, self._energy_nj // 1000, t_ns, error_uj)
