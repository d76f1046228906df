"""RecordedNvml: the Nvml facade over recorded answers (tests/fixtures/nvml/), so that the
sensors, the probe and the per-process figures run, and are tested, without a GPU or a driver.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from agent.energy.nvml import (
    ERROR_CODES,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNINITIALIZED,
    Handle,
    NvmlError,
    NvmlProcess,
    NvmlProcessSample,
)


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
