"""Which energy sensors this device has, chosen so that their domains never overlap: summing
every chosen sensor must never count a joule twice.

With sensors = ["auto"] (the default):
    CPU side: Jetson rails, else RAPL (package and dram zones), else the CPU energy drivers of
              hwmon, else the estimate (CPU and memory);
    GPU side: NVML, else a configured Triton server's energy metric.
A list of families instead (["rapl", "nvml"]) takes exactly those; overlapping ones are the
configuration's responsibility, and a warning says so.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from agent.config import AgentConfig
from agent.energy.activity import CpuActivity
from agent.energy.estimate import CpuEstimate, MemoryEstimate, PowerModel
from agent.energy.sensor import DOMAIN_PACKAGE, Sensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Roots:
    """Where the host's interfaces are; tests point these into fixture trees."""

    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")


@dataclass
class EnergySetup:
    sensors: list[Sensor]
    cpu: CpuActivity
    gpu_load: Callable[[], float | None] | None = None
    gpu_memory: Callable[[], Mapping[int, int]] | None = None  # pid -> bytes on any GPU
    families: list[str] = field(default_factory=list)


def probe(config: AgentConfig, *, roots: Roots = Roots()) -> EnergySetup:
    """The sensors to sample, by config.energy_sensors; never raises."""
    cpu = CpuActivity(roots.proc)
    wanted = set(config.energy_sensors)
    auto = "auto" in wanted
    setup = EnergySetup([], cpu)
    cpu_side = _cpu_side(config, roots, cpu, wanted, auto)
    gpu_side = _gpu_side(config, roots, wanted, auto)
    for family, sensors, gpu_load, gpu_memory in (*cpu_side, *gpu_side):
        setup.sensors += sensors
        setup.families.append(family)
        setup.gpu_load = setup.gpu_load or gpu_load
        setup.gpu_memory = setup.gpu_memory or gpu_memory
    _check_disjoint(setup.sensors, explicit=not auto)
    logger.info(
        "energy sensors: %s",
        ", ".join(f"{s.name} ({s.domain}, {s.source})" for s in setup.sensors) or "none",
    )
    return setup


Found = tuple[str, list[Sensor], Callable[[], float | None] | None, Callable[[], Mapping[int, int]] | None]


def _cpu_side(config: AgentConfig, roots: Roots, cpu: CpuActivity, wanted: set[str], auto: bool) -> list[Found]:
    found: list[Found] = []
    for family, find in (("jetson", _jetson), ("rapl", _rapl), ("hwmon", _hwmon)):
        if family in wanted or (auto and not found):
            result = find(roots)
            if result is not None and result[0]:
                found.append((family, *result))
    if "estimate" in wanted or (auto and not found):
        model = PowerModel(config.idle_w_per_cpu, config.max_w_per_cpu, config.w_per_memory_gb)
        sensors: list[Sensor] = [CpuEstimate(cpu, model), MemoryEstimate(psutil.virtual_memory().total, model)]
        if auto:
            logger.warning(
                "no energy sensor can be read on this device: CPU and memory energy are estimated "
                "from a power model (+/- %d %%) and marked as estimates", round(model.error_fraction * 100),
            )
        found.append(("estimate", sensors, None, None))
    return found


def _gpu_side(config: AgentConfig, roots: Roots, wanted: set[str], auto: bool) -> list[Found]:
    found: list[Found] = []
    if "nvml" in wanted or auto:
        result = _nvml(roots)
        if result is not None and result[0]:
            found.append(("nvml", *result))
    if config.triton_metrics_url and ("triton" in wanted or (auto and not found)):
        from agent.energy.triton import probe_triton

        sensors = probe_triton(config.triton_metrics_url)
        if sensors:
            found.append(("triton", sensors, None, None))
    return found


def _jetson(roots: Roots):
    from agent.energy.jetson import JetsonGpuLoad, probe_jetson

    sensors = probe_jetson(roots.sys)
    return (sensors, JetsonGpuLoad(roots.sys).read, None) if sensors else None


def _rapl(roots: Roots):
    from agent.energy.rapl import probe_rapl

    return probe_rapl(roots.sys / "class" / "powercap"), None, None


def _hwmon(roots: Roots):
    from agent.energy.hwmon import probe_hwmon

    # Only CPU energy drivers: a board or supply meter would overlap everything else.
    return [s for s in probe_hwmon(roots.sys / "class" / "hwmon") if s.domain == DOMAIN_PACKAGE], None, None


def _nvml(roots: Roots):
    if not nvidia_driver(roots):
        # Not even imported: pynvml and ctypes are 3 MB of RSS that a device without an
        # NVIDIA GPU has no use for.
        logger.info("no NVIDIA GPU sensors: no NVIDIA driver on this machine")
        return None
    from agent.energy import nvidia, nvml_usage

    nvml = nvidia.pynvml_or_none()
    sensors = nvidia.probe_nvml(nvml) if nvml is not None else []
    if not sensors:
        return None
    return (
        sensors,
        functools.partial(nvml_usage.utilization_fraction, nvml),
        functools.partial(nvml_usage.memory_by_pid, nvml),
    )


def nvidia_driver(roots: Roots) -> bool:
    """Whether an NVIDIA driver shows itself: its control device (every Linux driver, containers
    with GPUs included), its /proc folder, or the GPU device of WSL, whose NVML needs neither."""
    return any(path.exists() for path in (roots.dev / "nvidiactl", roots.proc / "driver" / "nvidia", roots.dev / "dxg"))


def _check_disjoint(sensors: Iterable[Sensor], *, explicit: bool) -> None:
    by_domain: dict[str, list[str]] = {}
    for sensor in sensors:
        by_domain.setdefault(sensor.domain, []).append(sensor.source)
    for domain, sources in by_domain.items():
        if explicit and len(set(sources)) > 1:
            logger.warning(
                "energy sensors from %s all measure the %s domain: their energy is counted once "
                "per sensor; choose one family in [energy] sensors", " and ".join(sorted(set(sources))), domain,
            )


class MemoryProbe:
    """RSS of the watched processes (psutil) and their GPU memory (NVML, when present)."""

    def __init__(self, gpu_memory: Callable[[], Mapping[int, int]] | None = None) -> None:
        self._gpu_memory = gpu_memory
        self._processes: dict[int, psutil.Process] = {}

    def __call__(self, pids: Iterable[int]) -> dict[int, tuple[int | None, int | None]]:
        gpu = self._gpu_memory() if self._gpu_memory is not None else {}
        found = {}
        for pid in pids:
            try:
                process = self._processes.get(pid) or self._processes.setdefault(pid, psutil.Process(pid))
                rss = process.memory_info().rss
            except psutil.Error:  # gone, or not ours to look at
                self._processes.pop(pid, None)
                rss = None
            found[pid] = (rss, gpu.get(pid))
        return found
