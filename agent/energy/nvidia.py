"""NVIDIA GPUs through NVML: one energy sensor per physical GPU, and the per-process figures
(GPU memory, SM utilization) and device utilization that the sampler joins to records.

Energy comes from NVML's total energy counter (nvmlDeviceGetTotalEnergyConsumption: millijoules
since the driver loaded, Volta and newer) where the GPU has one; otherwise from its power draw
(nvmlDeviceGetPowerUsage, milliwatts), polled at every read and integrated by PowerIntegrator.

MIG: NVML counts energy and power for the physical GPU only (the calls are not supported on MIG
device handles), so a partitioned GPU is one sensor whatever its slices. Its energy reaches the
work in each slice through the processes' share: gpu_processes() lists every process with the
MIG device it runs on, and the attributor splits the physical GPU's energy over them.

All NVML access goes through the small Nvml protocol below, one method per NVML call:
PynvmlNvml over the nvidia-ml-py bindings (the agent's optional "nvidia" extra, imported only
when probing), and RecordedNvml, which replays recorded answers (tests/fixtures/nvml/) so that
everything above NVML runs without a GPU.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Protocol

from agent.energy.sensor import (
    DOMAIN_GPU,
    SOURCE_NVML,
    PowerIntegrator,
    Reading,
    Sensor,
    WarnOnce,
)

logger = logging.getLogger(__name__)

# NVML return codes (nvmlReturn_t in nvml.h) that the code below tells apart.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
ERROR_CODES = {
    "NVML_ERROR_UNINITIALIZED": NVML_ERROR_UNINITIALIZED,
    "NVML_ERROR_NOT_SUPPORTED": NVML_ERROR_NOT_SUPPORTED,
    "NVML_ERROR_NO_PERMISSION": NVML_ERROR_NO_PERMISSION,
    "NVML_ERROR_NOT_FOUND": NVML_ERROR_NOT_FOUND,
    "NVML_ERROR_DRIVER_NOT_LOADED": NVML_ERROR_DRIVER_NOT_LOADED,
    "NVML_ERROR_LIBRARY_NOT_FOUND": NVML_ERROR_LIBRARY_NOT_FOUND,
    "NVML_ERROR_FUNCTION_NOT_FOUND": NVML_ERROR_FUNCTION_NOT_FOUND,
    "NVML_ERROR_GPU_IS_LOST": NVML_ERROR_GPU_IS_LOST,
    "NVML_ERROR_UNKNOWN": NVML_ERROR_UNKNOWN,
}
_ERROR_NAMES = {code: name for name, code in ERROR_CODES.items()}

# Answers that mean "this GPU cannot do that" rather than "something went wrong".
_UNSUPPORTED = frozenset({NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND})
# nvmlDeviceGetProcessUtilization answers NOT_FOUND when it holds no sample newer than asked.
_NO_SAMPLES = _UNSUPPORTED | {NVML_ERROR_NOT_FOUND}


class NvmlError(Exception):
    """An NVML call failed; code is NVML's return code (one of the NVML_ERROR_* values)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    @property
    def name(self) -> str:
        return _ERROR_NAMES.get(self.code, f"NVML error {self.code}")

    def __str__(self) -> str:
        return f"{self.name} ({self.detail})" if self.detail else self.name


Handle = Any  # opaque: a ctypes device handle from pynvml, a key into a recording


class NvmlProcess(NamedTuple):
    pid: int
    used_memory_bytes: int | None  # None where the driver cannot tell (Windows WDDM)


class NvmlProcessSample(NamedTuple):
    pid: int
    timestamp_us: int  # CPU wall clock, µs since the epoch, as NVML stamps its samples
    sm_util_pct: int


class Nvml(Protocol):
    """The NVML calls made here, one method per call, in NVML's units. Each raises NvmlError
    when NVML answers with an error."""

    def init(self) -> None: ...
    def device_count(self) -> int: ...
    def handle_by_index(self, index: int) -> Handle: ...
    def name(self, handle: Handle) -> str: ...
    def uuid(self, handle: Handle) -> str: ...
    def mig_mode(self, handle: Handle) -> tuple[int, int]: ...  # (current, pending); 1: on
    def max_mig_device_count(self, handle: Handle) -> int: ...
    def mig_device_handle(self, handle: Handle, index: int) -> Handle: ...  # NOT_FOUND: empty
    def total_energy_mj(self, handle: Handle) -> int: ...
    def power_usage_mw(self, handle: Handle) -> int: ...
    def utilization_rates_pct(self, handle: Handle) -> tuple[int, int]: ...  # (gpu, memory)
    def compute_processes(self, handle: Handle) -> list[NvmlProcess]: ...
    def process_utilization(self, handle: Handle, since_us: int) -> list[NvmlProcessSample]: ...


class PynvmlNvml:
    """Nvml over the nvidia-ml-py bindings (module pynvml). Every failure, NVML's or the
    binding's, comes out as NvmlError, so that callers handle one kind of error."""

    def __init__(self, pynvml: ModuleType) -> None:
        self._nv = pynvml

    def _call(self, function: str, *args: Any) -> Any:
        call = getattr(self._nv, function, None)
        if call is None:  # bindings older than the call
            raise NvmlError(NVML_ERROR_FUNCTION_NOT_FOUND, f"pynvml has no {function}")
        try:
            return call(*args)
        except self._nv.NVMLError as error:
            raise NvmlError(error.value, function) from None
        except Exception as error:  # bindings and driver out of step, ctypes trouble ...
            raise NvmlError(NVML_ERROR_UNKNOWN, f"{function}: {error!r}") from None

    def init(self) -> None:
        self._call("nvmlInit")

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle_by_index(self, index: int) -> Handle:
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def name(self, handle: Handle) -> str:
        return _text(self._call("nvmlDeviceGetName", handle))

    def uuid(self, handle: Handle) -> str:
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def mig_mode(self, handle: Handle) -> tuple[int, int]:
        current, pending = self._call("nvmlDeviceGetMigMode", handle)
        return int(current), int(pending)

    def max_mig_device_count(self, handle: Handle) -> int:
        return int(self._call("nvmlDeviceGetMaxMigDeviceCount", handle))

    def mig_device_handle(self, handle: Handle, index: int) -> Handle:
        return self._call("nvmlDeviceGetMigDeviceHandleByIndex", handle, index)

    def total_energy_mj(self, handle: Handle) -> int:
        return int(self._call("nvmlDeviceGetTotalEnergyConsumption", handle))

    def power_usage_mw(self, handle: Handle) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", handle))

    def utilization_rates_pct(self, handle: Handle) -> tuple[int, int]:
        rates = self._call("nvmlDeviceGetUtilizationRates", handle)
        return int(rates.gpu), int(rates.memory)

    def compute_processes(self, handle: Handle) -> list[NvmlProcess]:
        infos = self._call("nvmlDeviceGetComputeRunningProcesses", handle)
        return [NvmlProcess(int(info.pid), _bytes_or_none(info.usedGpuMemory)) for info in infos]

    def process_utilization(self, handle: Handle, since_us: int) -> list[NvmlProcessSample]:
        try:
            samples = self._call("nvmlDeviceGetProcessUtilization", handle, since_us)
        except NvmlError as error:
            if error.code == 0:  # pynvml raises "success" when NVML had no sample to size
                return []
            raise
        return [NvmlProcessSample(int(s.pid), int(s.timeStamp), int(s.smUtil)) for s in samples]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes_or_none(value: int | None) -> int | None:
    return None if value is None else int(value)


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


class RecordedNvml:
    """Nvml replaying recorded answers: a dict (or a JSON file, see from_json) with "init",
    "device_count" and "devices", one entry per GPU keyed by the Nvml method names.

    An answer is a value; {"error": "NVML_ERROR_..."} for a call that failed; or
    {"calls": [answer, ...]} for one that changes, replayed in call order with the last answer
    repeating. A method a device does not record answers NVML_ERROR_NOT_SUPPORTED. A GPU's MIG
    devices are under "mig_devices" in slot order, each recorded like a device. Records use
    NVML's own field names: utilization {"gpu", "memory"}; processes {"pid", "usedGpuMemory"};
    process samples {"pid", "timeStamp", "smUtil"}.
    """

    def __init__(self, answers: dict[str, Any]) -> None:
        self._answers = answers
        self._calls: Counter[tuple[Any, ...]] = Counter()
        self._initialized = False

    @classmethod
    def from_json(cls, path: str | Path) -> RecordedNvml:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def _replay(self, key: tuple[Any, ...], answer: Any) -> Any:
        if isinstance(answer, dict) and "calls" in answer:
            calls = answer["calls"]
            answer = calls[min(self._calls[key], len(calls) - 1)]
            self._calls[key] += 1
        if isinstance(answer, dict) and "error" in answer:
            raise NvmlError(ERROR_CODES[answer["error"]], "recorded")
        return answer

    def _require_init(self) -> None:
        if not self._initialized:
            raise NvmlError(NVML_ERROR_UNINITIALIZED)

    def _device(self, handle: Handle) -> dict[str, Any]:
        self._require_init()
        index, *mig_slot = handle
        device = self._answers["devices"][index]
        return device["mig_devices"][mig_slot[0]] if mig_slot else device

    def _get(self, handle: Handle, method: str) -> Any:
        device = self._device(handle)
        if method not in device:
            raise NvmlError(NVML_ERROR_NOT_SUPPORTED, "not recorded")
        return self._replay((handle, method), device[method])

    def init(self) -> None:
        self._replay(("init",), self._answers.get("init"))
        self._initialized = True

    def device_count(self) -> int:
        self._require_init()
        return self._replay(("device_count",), self._answers["device_count"])

    def handle_by_index(self, index: int) -> Handle:
        self._require_init()
        if index >= len(self._answers["devices"]):
            raise NvmlError(NVML_ERROR_NOT_FOUND, "no such index")
        self._replay(((index,), "handle"), self._device((index,)))
        return (index,)

    def name(self, handle: Handle) -> str:
        return self._get(handle, "name")

    def uuid(self, handle: Handle) -> str:
        return self._get(handle, "uuid")

    def mig_mode(self, handle: Handle) -> tuple[int, int]:
        current, pending = self._get(handle, "mig_mode")
        return current, pending

    def max_mig_device_count(self, handle: Handle) -> int:
        return self._get(handle, "max_mig_device_count")

    def mig_device_handle(self, handle: Handle, index: int) -> Handle:
        slots = self._get(handle, "mig_devices")
        if index >= len(slots):
            raise NvmlError(NVML_ERROR_NOT_FOUND, "no such MIG slot")
        self._replay((handle, "mig_device", index), slots[index])
        return (*handle, index)

    def total_energy_mj(self, handle: Handle) -> int:
        return self._get(handle, "total_energy_mj")

    def power_usage_mw(self, handle: Handle) -> int:
        return self._get(handle, "power_usage_mw")

    def utilization_rates_pct(self, handle: Handle) -> tuple[int, int]:
        rates = self._get(handle, "utilization_rates")
        return rates["gpu"], rates["memory"]

    def compute_processes(self, handle: Handle) -> list[NvmlProcess]:
        infos = self._get(handle, "compute_processes")
        return [NvmlProcess(info["pid"], info["usedGpuMemory"]) for info in infos]

    def process_utilization(self, handle: Handle, since_us: int) -> list[NvmlProcessSample]:
        samples = [
            NvmlProcessSample(s["pid"], s["timeStamp"], s["smUtil"])
            for s in self._get(handle, "process_utilization")
            if s["timeStamp"] > since_us
        ]
        if not samples:  # as NVML does when nothing is newer than since_us
            raise NvmlError(NVML_ERROR_NOT_FOUND, "no samples")
        return samples


# ---- energy sensors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Gpu:
    index: int
    uuid: str
    name: str
    handle: Handle


def _warn_failure(warn: WarnOnce, gpu: _Gpu, call: str, error: NvmlError) -> None:
    if error.code == NVML_ERROR_GPU_IS_LOST:
        warn(
            "gpu-lost",
            "GPU %d (%s, %s) is lost: NVML answers NVML_ERROR_GPU_IS_LOST (it fell off the bus or "
            "stopped responding); its energy is not measured until the GPU is reset and the "
            "agent restarted",
            gpu.index,
            gpu.name,
            gpu.uuid,
        )
    else:
        warn(error.name, "%s failed on GPU %d (%s): %s", call, gpu.index, gpu.uuid, error)


class NvmlEnergySensor:
    """A GPU with NVML's total energy counter (Volta and newer), read as the microjoules
    counted since this sensor was created."""

    domain = DOMAIN_GPU
    source = SOURCE_NVML
    # The counter is in whole millijoules: a difference of two readings is off by less than one.
    RESOLUTION_UJ = 1_000

    def __init__(
        self, nvml: Nvml, gpu: _Gpu, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.name = f"nvml:gpu-{gpu.index}"
        self.gpu_index = gpu.index
        self.gpu_uuid = gpu.uuid
        self._nvml = nvml
        self._gpu = gpu
        self._clock_ns = clock_ns
        self._warn = WarnOnce(self.name)
        self._last_mj: int | None = None
        self._total_mj = 0

    def read(self) -> Reading | None:
        try:
            energy_mj = self._nvml.total_energy_mj(self._gpu.handle)
        except NvmlError as error:
            _warn_failure(self._warn, self._gpu, "nvmlDeviceGetTotalEnergyConsumption", error)
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


class NvmlPowerSensor:
    """A GPU without the energy counter (before Volta): its power draw, polled at every read
    and integrated (PowerIntegrator's trapezoid rule and error bound)."""

    domain = DOMAIN_GPU
    source = SOURCE_NVML

    def __init__(
        self, nvml: Nvml, gpu: _Gpu, *, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.name = f"nvml:gpu-{gpu.index}"
        self.gpu_index = gpu.index
        self.gpu_uuid = gpu.uuid
        self._nvml = nvml
        self._gpu = gpu
        self._warn = WarnOnce(self.name)
        self._integrator = PowerIntegrator(
            self.name, DOMAIN_GPU, SOURCE_NVML, self._power_mw, clock_ns=clock_ns
        )

    def read(self) -> Reading | None:
        return self._integrator.read()

    def _power_mw(self) -> float | None:
        try:
            return float(self._nvml.power_usage_mw(self._gpu.handle))
        except NvmlError as error:
            _warn_failure(self._warn, self._gpu, "nvmlDeviceGetPowerUsage", error)
            return None


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
        if error.code in _UNSUPPORTED:
            return False
        raise
    return True


# ---- per-process figures and device utilization, for the sampler --------------------------


@dataclass(frozen=True, slots=True)
class GpuProcess:
    gpu_index: int  # the physical GPU, whose energy the sensor "nvml:gpu-<index>" counts
    pid: int
    used_memory_bytes: int | None  # None where the driver cannot tell (Windows WDDM)
    # The process's share of SM time in NVML's latest sample for it; None when NVML holds no
    # sample or cannot sample per process (MIG devices, GPUs before Maxwell).
    sm_util_pct: int | None
    mig_uuid: str | None = None  # the MIG device it runs on, on a partitioned GPU


@dataclass(frozen=True, slots=True)
class GpuUtilization:
    gpu_index: int
    # Percent of NVML's last sample period during which a kernel ran / device memory was read
    # or written; None where NVML cannot say (MIG-enabled GPUs).
    gpu_util_pct: int | None
    memory_util_pct: int | None


def gpu_processes(
    nvml: Nvml, *, since_us: int = 0, sm_util: bool = True, warn: WarnOnce | None = None
) -> list[GpuProcess]:
    """The compute processes on every GPU (on each MIG device of a partitioned one), with their
    GPU memory and SM utilization from NVML's samples newer than since_us (CPU wall clock, µs
    since the epoch; 0: all it holds; sm_util=False skips the samples). nvml is the initialized
    facade the probe used. Never raises: a GPU that cannot be read is skipped and reported to
    warn (logged at debug without one)."""
    processes: list[GpuProcess] = []
    for index, handle in _physical_gpus(nvml, warn):
        try:
            devices = _compute_devices(nvml, handle)
        except NvmlError as error:
            _report(warn, f"{error.name}:gpu-{index}", "GPU %d: MIG devices: %s", index, error)
            continue
        for device, mig_uuid in devices:
            try:
                listed = nvml.compute_processes(device)
            except NvmlError as error:
                _report(warn, f"{error.name}:gpu-{index}", "GPU %d: processes: %s", index, error)
                continue
            util = _sm_util_by_pid(nvml, device, since_us, warn, index) if sm_util else {}
            processes += [
                GpuProcess(index, p.pid, p.used_memory_bytes, util.get(p.pid), mig_uuid)
                for p in listed
            ]
    return processes


def memory_by_pid(nvml: Nvml, *, warn: WarnOnce | None = None) -> dict[int, int]:
    """GPU memory per process in bytes, summed over its GPUs and MIG devices."""
    memory: dict[int, int] = {}
    for process in gpu_processes(nvml, sm_util=False, warn=warn):
        if process.used_memory_bytes is not None:
            memory[process.pid] = memory.get(process.pid, 0) + process.used_memory_bytes
    return memory


def gpu_utilization(nvml: Nvml, *, warn: WarnOnce | None = None) -> list[GpuUtilization]:
    """Each physical GPU's utilization rates. Never raises: a GPU that cannot say (MIG) or
    cannot be read has None rates, and a failure other than "not supported" is reported to
    warn (logged at debug without one)."""
    rates = []
    for index, handle in _physical_gpus(nvml, warn):
        gpu_pct: int | None
        memory_pct: int | None
        try:
            gpu_pct, memory_pct = nvml.utilization_rates_pct(handle)
        except NvmlError as error:
            if error.code not in _UNSUPPORTED:
                _report(warn, f"{error.name}:gpu-{index}", "GPU %d: utilization: %s", index, error)
            gpu_pct = memory_pct = None
        rates.append(GpuUtilization(index, gpu_pct, memory_pct))
    return rates


def utilization_fraction(nvml: Nvml, *, warn: WarnOnce | None = None) -> float | None:
    """The GPUs' busy fraction (0..1), averaged over those that report one; None where none
    does (MIG-enabled GPUs)."""
    known = [u.gpu_util_pct for u in gpu_utilization(nvml, warn=warn) if u.gpu_util_pct is not None]
    return sum(known) / (100 * len(known)) if known else None


def _physical_gpus(nvml: Nvml, warn: WarnOnce | None) -> list[tuple[int, Handle]]:
    try:
        count = nvml.device_count()
    except NvmlError as error:
        _report(warn, error.name, "NVML device count: %s", error)
        return []
    gpus = []
    for index in range(count):
        try:
            gpus.append((index, nvml.handle_by_index(index)))
        except NvmlError as error:
            _report(warn, f"{error.name}:gpu-{index}", "GPU %d: handle: %s", index, error)
    return gpus


def _compute_devices(nvml: Nvml, handle: Handle) -> list[tuple[Handle, str | None]]:
    """Where a GPU's processes are listed: the GPU itself, or each of its MIG devices (on the
    physical handle NVML lists them only to privileged callers)."""
    try:
        mig_enabled = nvml.mig_mode(handle)[0] == 1
    except NvmlError as error:
        if error.code not in _UNSUPPORTED:
            raise
        mig_enabled = False  # before Ampere: no MIG
    if not mig_enabled:
        return [(handle, None)]
    devices = []
    for slot in range(nvml.max_mig_device_count(handle)):
        try:
            mig = nvml.mig_device_handle(handle, slot)
        except NvmlError as error:
            if error.code == NVML_ERROR_NOT_FOUND:  # an empty slot
                continue
            raise
        devices.append((mig, nvml.uuid(mig)))
    return devices


def _sm_util_by_pid(
    nvml: Nvml, device: Handle, since_us: int, warn: WarnOnce | None, index: int
) -> dict[int, int]:
    try:
        samples = nvml.process_utilization(device, since_us)
    except NvmlError as error:
        if error.code not in _NO_SAMPLES:
            _report(warn, f"{error.name}:gpu-{index}", "GPU %d: process samples: %s", index, error)
        return {}
    latest: dict[int, NvmlProcessSample] = {}
    for sample in samples:
        # NVML has been seen to report nonsense (> 100 %) for processes it lost track of.
        if sample.sm_util_pct > 100:
            continue
        if sample.pid not in latest or sample.timestamp_us > latest[sample.pid].timestamp_us:
            latest[sample.pid] = sample
    return {pid: sample.sm_util_pct for pid, sample in latest.items()}


def _report(warn: WarnOnce | None, kind: str, message: str, *args: object) -> None:
    if warn is None:
        logger.debug(message, *args)
    else:
        warn(kind, message, *args)
