"""Who uses the NVIDIA GPUs, and how busy they are, for the sampler: each compute process with
its GPU memory and share of SM time (per MIG device on a partitioned GPU), and each physical
GPU's utilization rates, read through the Nvml facade that the probe initialized.

MIG: energy is counted for the physical GPU only (nvidia.py); its processes are listed with
the MIG device each runs on, and the attributor splits the physical GPU's energy over them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.energy.nvml import (
    NVML_ERROR_NOT_FOUND,
    UNSUPPORTED,
    Handle,
    Nvml,
    NvmlError,
    NvmlProcessSample,
)
from agent.energy.sensor import WarnOnce

logger = logging.getLogger(__name__)

# nvmlDeviceGetProcessUtilization answers NOT_FOUND when it holds no sample newer than asked.
_NO_SAMPLES = UNSUPPORTED | {NVML_ERROR_NOT_FOUND}


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
            _report_gpu(warn, index, "MIG devices", error)
            continue
        for device, mig_uuid in devices:
            try:
                listed = nvml.compute_processes(device)
            except NvmlError as error:
                _report_gpu(warn, index, "processes", error)
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
            if error.code not in UNSUPPORTED:
                _report_gpu(warn, index, "utilization", error)
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
            _report_gpu(warn, index, "handle", error)
    return gpus


def _compute_devices(nvml: Nvml, handle: Handle) -> list[tuple[Handle, str | None]]:
    """Where a GPU's processes are listed: the GPU itself, or each of its MIG devices (on the
    physical handle NVML lists them only to privileged callers)."""
    try:
        mig_enabled = nvml.mig_mode(handle)[0] == 1
    except NvmlError as error:
        if error.code not in UNSUPPORTED:
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
            _report_gpu(warn, index, "process samples", error)
        return {}
    latest: dict[int, NvmlProcessSample] = {}
    for sample in samples:
        # NVML has been seen to report nonsense (> 100 %) for processes it lost track of.
        if sample.sm_util_pct > 100:
            continue
        if sample.pid not in latest or sample.timestamp_us > latest[sample.pid].timestamp_us:
            latest[sample.pid] = sample
    return {pid: sample.sm_util_pct for pid, sample in latest.items()}


def _report_gpu(warn: WarnOnce | None, index: int, what: str, error: NvmlError) -> None:
    _report(warn, f"{error.name}:gpu-{index}", "GPU %d: %s: %s", index, what, error)


def _report(warn: WarnOnce | None, kind: str, message: str, *args: object) -> None:
    if warn is None:
        logger.debug(message, *args)
    else:
        warn(kind, message, *args)
