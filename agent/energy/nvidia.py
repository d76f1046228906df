"""NVIDIA GPUs through NVML: one energy sensor per physical GPU.

Energy comes from NVML's total energy counter (nvmlDeviceGetTotalEnergyConsumption: millijoules
since the driver loaded, Volta and newer) where the GPU has one; otherwise from its power draw
(nvmlDeviceGetPowerUsage, milliwatts), polled at every read and integrated by PowerIntegrator.

MIG: NVML counts energy and power for the physical GPU only (the calls are not supported on MIG
device handles), so a partitioned GPU is one sensor whatever its slices. Its energy reaches the
work in each slice through the processes' share (nvml_usage.py lists every process with the MIG
device it runs on).

NVML is reached through the Nvml facade (nvml.py): the real one over pynvml, imported only when
probing, or RecordedNvml (nvml_recorded.py) in tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.energy.nvml import (
    NVML_ERROR_GPU_IS_LOST,
    UNSUPPORTED,
    Handle,
    Nvml,
    NvmlError,
    PynvmlNvml,
)
from agent.energy.sensor import (
    DOMAIN_GPU,
    SOURCE_NVML,
    PowerIntegrator,
    Reading,
    Sensor,
    WarnOnce,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Gpu:
    index: int
    uuid: str
    name: str
    handle: Handle


class _NvmlSensor:
    """What both kinds of GPU sensor share: the GPU, the sensor's name, and NVML calls whose
    failures are warned once per kind."""

    domain = DOMAIN_GPU
    source = SOURCE_NVML

    def __init__(self, nvml: Nvml, gpu: _Gpu) -> None:
        self.name = f"nvml:gpu-{gpu.index}"
        self.gpu_index = gpu.index
        self.gpu_uuid = gpu.uuid
        self._nvml = nvml
        self._gpu = gpu
        self._warn = WarnOnce(self.name)

    def _ask(self, call: Callable[[Handle], int], function: str) -> int | None:
        """call's answer for this GPU, or None with the failure of NVML's function warned."""
        try:
            return call(self._gpu.handle)
        except NvmlError as error:
            gpu = self._gpu
            if error.code == NVML_ERROR_GPU_IS_LOST:
                self._warn(
                    "gpu-lost",
                    "GPU %d (%s, %s) is lost: NVML answers NVML_ERROR_GPU_IS_LOST (it fell off "
                    "the bus or stopped responding); its energy is not measured until the GPU is "
                    "reset and the agent restarted",
                    gpu.index,
                    gpu.name,
                    gpu.uuid,
                )
            else:
                self._warn(error.name, "%s failed on GPU %d (%s): %s", function, gpu.index,
                           gpu.uuid, error)
            return None


class NvmlEnergySensor(_NvmlSensor):
    """A GPU with NVML's total energy counter (Volta and newer), read as the microjoules
    counted since this sensor was created."""

    # The counter is in whole millijoules: a difference of two readings is off by less than one.
    RESOLUTION_UJ = 1_000

    def __init__(
        self, nvml: Nvml, gpu: _Gpu, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        super().__init__(nvml, gpu)
        self._clock_ns = clock_ns
        self._last_mj: int | None = None
        self._total_mj = 0

    def read(self) -> Reading | None:
        energy_mj = self._ask(self._nvml.total_energy_mj, "nvmlDeviceGetTotalEnergyConsumption")
        if energy_mj is None:
            return None
        t_ns = self._clock_ns()
        error_uj = 0
        if self._last_mj is not None:
            delta_mj = energy_mj - self._last_mj
            if delta_mj < 0:  # the driver was reloaded: its counter started again from zero
                logger.info("%s: energy counter restarted (driver reloaded?)", self.name)
                delta_mj = energy_mj
            self._total_mj += delta_mj
            error_uj = self.RESOLUTION_UJ
        self._last_mj = energy_mj
        return Reading(self.name, self._total_mj * 1_000, t_ns, error_uj)


class NvmlPowerSensor(_NvmlSensor):
    """A GPU without the energy counter (before Volta): its power draw, polled at every read
    and integrated (PowerIntegrator's trapezoid rule and error bound)."""

    def __init__(
        self, nvml: Nvml, gpu: _Gpu, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        super().__init__(nvml, gpu)
        self._integrator = PowerIntegrator(
            self.name, DOMAIN_GPU, SOURCE_NVML, self._power_mw, clock_ns=clock_ns
        )

    def read(self) -> Reading | None:
        return self._integrator.read()

    def _power_mw(self) -> float | None:
        power_mw = self._ask(self._nvml.power_usage_mw, "nvmlDeviceGetPowerUsage")
        return None if power_mw is None else float(power_mw)


def pynvml_or_none() -> PynvmlNvml | None:
    """Nvml over pynvml, or None (logged at info) where nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        logger.info(
            "no NVIDIA GPU sensors: the pynvml module (package nvidia-ml-py, the agent's "
            "'nvidia' extra) is not installed"
        )
        return None
    return PynvmlNvml(pynvml)


def probe_nvml(
    nvml: Nvml | None = None, *, clock_ns: Callable[[], int] = time.monotonic_ns
) -> list[Sensor]:
    """One energy sensor per physical NVIDIA GPU ("nvml:gpu-<index>", NVML's index order), or
    [] with one line logged at info where there is no NVML: nvidia-ml-py not installed, no
    driver. Never raises. Without nvml, the real NVML through pynvml."""
    if nvml is None:
        nvml = pynvml_or_none()
        if nvml is None:
            return []
    try:
        nvml.init()
        count = nvml.device_count()
    except NvmlError as error:
        logger.info("no NVIDIA GPU sensors: NVML is not available (%s)", error)
        return []
    sensors = [_probe_gpu(nvml, index, clock_ns) for index in range(count)]
    return [sensor for sensor in sensors if sensor is not None]


def _probe_gpu(nvml: Nvml, index: int, clock_ns: Callable[[], int]) -> Sensor | None:
    sensor: Sensor
    try:
        handle = nvml.handle_by_index(index)
        gpu = _Gpu(index, nvml.uuid(handle), nvml.name(handle), handle)
        if _supported(nvml.total_energy_mj, handle):
            how, sensor = "energy counter", NvmlEnergySensor(nvml, gpu, clock_ns=clock_ns)
        elif _supported(nvml.power_usage_mw, handle):
            how, sensor = "power, integrated", NvmlPowerSensor(nvml, gpu, clock_ns=clock_ns)
        else:
            logger.info("NVIDIA GPU %d (%s) reports neither energy nor power", index, gpu.name)
            return None
    except NvmlError as error:
        logger.warning("NVIDIA GPU %d skipped: %s", index, error)
        return None
    logger.info("energy sensor %s: %s %s (%s)", sensor.name, gpu.name, gpu.uuid, how)
    return sensor


def _supported(call: Callable[[Handle], object], handle: Handle) -> bool:
    """Whether the GPU answers this call: False if NVML says it cannot, NvmlError otherwise."""
    try:
        call(handle)
    except NvmlError as error:
        if error.code in UNSUPPORTED:
            return False
        raise
    return True
