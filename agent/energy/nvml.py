"""The NVML calls the agent makes, behind one small facade: the Nvml protocol, one method per
NVML call in NVML's units, and PynvmlNvml, which makes them through the nvidia-ml-py bindings
(module pynvml, the agent's optional "nvidia" extra). Every failure comes out as NvmlError with
NVML's return code, so that callers handle one kind of error. RecordedNvml (nvml_recorded.py)
replays recorded answers behind the same protocol, for running without a GPU.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple, Protocol

# NVML return codes (nvmlReturn_t in nvml.h) that the agent tells apart.
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
UNSUPPORTED = frozenset({NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND})


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
    """The NVML calls the agent makes, one method per call, in NVML's units. Each raises NvmlError
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
