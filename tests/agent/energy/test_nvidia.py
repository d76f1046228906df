"""NVIDIA GPU sensors and per-process figures, driven by recorded NVML answers
(tests/fixtures/nvml/) behind the Nvml facade; and the real pynvml path on a machine without a
driver."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.energy.nvidia import probe_nvml
from agent.energy.nvml import (
    ERROR_CODES,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_UNKNOWN,
    NvmlError,
    PynvmlNvml,
)
from agent.energy.nvml_recorded import RecordedNvml
from agent.energy.nvml_usage import (
    GpuProcess,
    GpuUtilization,
    gpu_processes,
    gpu_utilization,
    memory_by_pid,
    utilization_fraction,
)
from agent.energy.sensor import DOMAIN_GPU, SOURCE_NVML, Reading, WarnOnce
from tests.agent.energy.conftest import MonotonicClock

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nvml"
LOGGERS = {"agent.energy.nvidia", "agent.energy.nvml_usage", "agent.energy.sensor"}




def recorded(name: str) -> RecordedNvml:
    return RecordedNvml.from_json(FIXTURES / name)


def energy_log(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in LOGGERS and r.levelno >= level]


def read_at(sensor, clock: MonotonicClock, t_ns: int) -> Reading | None:
    clock.now_ns = t_ns
    return sensor.read()


# ---- energy sensors --------------------------------------------------------------------------


def test_volta_and_newer_read_the_energy_counter_in_microjoules():
    clock = MonotonicClock()
    sensors = probe_nvml(recorded("two_t4.json"), clock_ns=clock)

    assert [(s.name, s.domain, s.source) for s in sensors] == [
        ("nvml:gpu-0", DOMAIN_GPU, SOURCE_NVML),
        ("nvml:gpu-1", DOMAIN_GPU, SOURCE_NVML),
    ]
    assert [s.gpu_uuid for s in sensors] == [
        "GPU-3e9b1f02-6c5d-4a87-b1e4-0f92d7c6a5b3",
        "GPU-a6d40e8c-25f1-4b9a-8e73-c1d05f2b9e64",
    ]
    gpu0 = sensors[0]
    # The first reading is the baseline: nothing counted yet, and nothing to be wrong about.
    assert read_at(gpu0, clock, 1_000) == Reading("nvml:gpu-0", 0, 1_000, 0)
    # 81725980 - 81723412 = 2568 mJ; the counter is in whole mJ, so each step is off by < 1 mJ.
    assert read_at(gpu0, clock, 101_000) == Reading("nvml:gpu-0", 2_568_000, 101_000, 1_000)
    assert read_at(gpu0, clock, 201_000) == Reading("nvml:gpu-0", 5_459_000, 201_000, 1_000)


def test_two_gpus_count_separately():
    clock = MonotonicClock()
    gpu0, gpu1 = probe_nvml(recorded("two_t4.json"), clock_ns=clock)
    for t_ns in (0, 100_000_000, 200_000_000):
        clock.now_ns = t_ns
        last0, last1 = gpu0.read(), gpu1.read()
    assert (last0.energy_uj, last1.energy_uj) == (5_459_000, 5_129_000)


def test_before_volta_power_is_polled_and_integrated_exactly():
    clock = MonotonicClock()
    sensors = probe_nvml(recorded("k80.json"), clock_ns=clock)
    assert [s.name for s in sensors] == ["nvml:gpu-0", "nvml:gpu-1"]
    k80 = sensors[0]

    assert read_at(k80, clock, 0) == Reading("nvml:gpu-0", 0, 0, 0)  # 30.120 W
    # 30.120 W then 84.310 W over 0.1 s: trapezoid (30120 + 84310) / 2 mW * 0.1 s = 5721.5 mJ,
    # bounded by half the change in power over the step: 27095 mW * 0.1 s = 2709.5 mJ.
    step = Reading("nvml:gpu-0", 5_721_500, 100_000_000, 2_709_500)
    assert read_at(k80, clock, 100_000_000) == step
    # 84.310 W held for 0.2 s: 16862 mJ more, exact.
    assert read_at(k80, clock, 300_000_000) == Reading("nvml:gpu-0", 22_583_500, 300_000_000, 0)


def test_a_mig_gpu_is_one_sensor_on_the_physical_counter():
    clock = MonotonicClock()
    sensors = probe_nvml(recorded("a100_mig.json"), clock_ns=clock)

    assert [(s.name, s.gpu_uuid) for s in sensors] == [
        ("nvml:gpu-0", "GPU-5f2c8e71-0b3d-4a9e-8c16-27d4e9b0a3f2")
    ]
    readings = [read_at(sensors[0], clock, t) for t in (0, 100_000_000, 200_000_000)]
    # 912242113 - 912233871 = 8242 mJ, then 8389 mJ more.
    assert [r.energy_uj for r in readings] == [0, 8_242_000, 16_631_000]


def test_a_gpu_lost_mid_run_reads_none_and_is_warned_once(caplog):
    caplog.set_level(logging.INFO)
    clock = MonotonicClock()
    lost, healthy = probe_nvml(recorded("v100_gpu_lost.json"), clock_ns=clock)
    caplog.clear()

    readings = []
    for t_ns in (0, 100_000_000, 200_000_000, 300_000_000):
        clock.now_ns = t_ns
        readings.append((lost.read(), healthy.read()))

    assert [r.energy_uj if r else None for r, _ in readings] == [0, 2_235_000, None, None]
    assert [r.energy_uj for _, r in readings] == [0, 2_251_000, 4_530_000, 4_530_000]
    warnings = energy_log(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "nvml:gpu-0" in warnings[0] and "is lost" in warnings[0]
    assert "NVML_ERROR_GPU_IS_LOST" in warnings[0]
    assert "GPU-0f8e2d6a-9b17-4c35-a2d8-7e41c9b6f053" in warnings[0]


def test_a_power_only_gpu_lost_reads_none():
    nvml = RecordedNvml(
        {
            "device_count": 1,
            "devices": [
                {
                    "name": "Tesla K80",
                    "uuid": "GPU-1",
                    "power_usage_mw": {
                        "calls": [60_000, 60_000, {"error": "NVML_ERROR_GPU_IS_LOST"}]
                    },
                }
            ],
        }
    )
    clock = MonotonicClock()
    (sensor,) = probe_nvml(nvml, clock_ns=clock)
    assert read_at(sensor, clock, 0) == Reading("nvml:gpu-0", 0, 0, 0)
    assert read_at(sensor, clock, 100_000_000) is None


def test_a_counter_that_goes_back_counts_from_its_new_value():
    # The driver was reloaded under the agent: the counter restarted from zero.
    nvml = RecordedNvml(
        {
            "device_count": 1,
            "devices": [
                {
                    "name": "Tesla T4",
                    "uuid": "GPU-1",
                    "total_energy_mj": {"calls": [5000, 5000, 7000, 300]},
                }
            ],
        }
    )
    (sensor,) = probe_nvml(nvml, clock_ns=MonotonicClock())
    assert [sensor.read().energy_uj for _ in range(3)] == [0, 2_000_000, 2_300_000]


def test_gpus_that_cannot_be_measured_are_skipped(caplog):
    caplog.set_level(logging.INFO)
    nvml = RecordedNvml(
        {
            "device_count": 3,
            "devices": [
                {"error": "NVML_ERROR_NO_PERMISSION"},  # a GPU this container may not open
                {"name": "GeForce GT 710", "uuid": "GPU-2"},  # neither energy nor power
                {"name": "Tesla T4", "uuid": "GPU-3", "total_energy_mj": 42},
            ],
        }
    )
    sensors = probe_nvml(nvml)
    assert [s.name for s in sensors] == ["nvml:gpu-2"]
    log = "\n".join(energy_log(caplog))
    assert "NVIDIA GPU 0 skipped: NVML_ERROR_NO_PERMISSION" in log
    assert "GT 710) reports neither energy nor power" in log


def test_no_driver_loaded_gives_no_sensors_and_one_line(caplog):
    caplog.set_level(logging.DEBUG)
    assert probe_nvml(recorded("no_driver.json")) == []
    assert energy_log(caplog, logging.DEBUG) == [
        "no NVIDIA GPU sensors: NVML is not available (NVML_ERROR_DRIVER_NOT_LOADED (recorded))"
    ]


def test_without_nvidia_ml_py_there_are_no_sensors_and_one_info_line(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError

    assert probe_nvml() == []
    assert [(r.levelno, r.name) for r in caplog.records] == [(logging.INFO, "agent.energy.nvidia")]
    assert "nvidia-ml-py" in caplog.records[0].getMessage()


def test_the_real_pynvml_path_never_raises(caplog):
    """Runs the installed nvidia-ml-py against whatever this machine has: without a driver
    (the usual test machine) no sensors and one line; with GPUs, sensors that read."""
    pytest.importorskip("pynvml")
    caplog.set_level(logging.DEBUG)

    sensors = probe_nvml()

    if sensors:
        assert all(s.read() is not None for s in sensors)
    else:
        assert len(energy_log(caplog, logging.DEBUG)) == 1
        assert energy_log(caplog)[0].startswith("no NVIDIA GPU sensors: NVML is not available")


# ---- the pynvml facade -----------------------------------------------------------------------


def test_the_error_codes_are_nvmls():
    pynvml = pytest.importorskip("pynvml")
    for name, code in ERROR_CODES.items():
        assert getattr(pynvml, name) == code


def test_pynvml_failures_come_out_as_nvml_errors():
    pynvml = pytest.importorskip("pynvml")

    def lost(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    def broken(handle):
        raise TypeError("binding and driver out of step")

    facade = PynvmlNvml(
        SimpleNamespace(
            NVMLError=pynvml.NVMLError,
            nvmlDeviceGetPowerUsage=lost,
            nvmlDeviceGetTotalEnergyConsumption=broken,
            nvmlDeviceGetUUID=lambda handle: b"GPU-bytes",
        )
    )
    with pytest.raises(NvmlError) as lost_error:
        facade.power_usage_mw(object())
    assert lost_error.value.code == NVML_ERROR_GPU_IS_LOST
    with pytest.raises(NvmlError) as unknown:
        facade.total_energy_mj(object())
    assert unknown.value.code == NVML_ERROR_UNKNOWN
    with pytest.raises(NvmlError) as missing:
        facade.mig_mode(object())  # a binding without the call
    assert missing.value.code == NVML_ERROR_FUNCTION_NOT_FOUND
    assert facade.uuid(object()) == "GPU-bytes"


# ---- per-process figures and utilization -----------------------------------------------------


def started(name: str) -> RecordedNvml:
    nvml = recorded(name)
    nvml.init()
    return nvml


def test_processes_memory_and_latest_sm_sample_on_two_gpus():
    assert gpu_processes(started("two_t4.json")) == [
        GpuProcess(0, 2817, 1_497_366_528, 18),  # its latest of two samples
        GpuProcess(0, 3044, 3_433_037_824, 41),
        GpuProcess(1, 4101, 268_435_456, None),  # NVML holds no sample for GPU 1
    ]


def test_processes_only_take_samples_newer_than_asked():
    processes = gpu_processes(started("two_t4.json"), since_us=1_700_000_000_600_000)
    assert [(p.pid, p.sm_util_pct) for p in processes] == [(2817, 18), (3044, None), (4101, None)]


def test_a_nonsense_sm_sample_is_no_sample():
    nvml = RecordedNvml(
        {
            "device_count": 1,
            "devices": [
                {
                    "compute_processes": [{"pid": 10, "usedGpuMemory": 1}],
                    "process_utilization": [
                        {"pid": 10, "timeStamp": 1, "smUtil": 30},
                        {"pid": 10, "timeStamp": 2, "smUtil": 4294967295},
                    ],
                }
            ],
        }
    )
    nvml.init()
    assert [p.sm_util_pct for p in gpu_processes(nvml)] == [30]


def test_processes_on_a_mig_gpu_are_listed_per_mig_device():
    assert gpu_processes(started("a100_mig.json")) == [
        GpuProcess(0, 5120, 9_663_676_416, None, "MIG-0c7e4a1f-93b2-5d68-a1e0-4f8b2c9d7e35"),
        GpuProcess(0, 5388, 4_294_967_296, None, "MIG-7a91d2c4-1e0b-5f3a-b842-6c0e9d5f1a27"),
        GpuProcess(0, 5391, 2_147_483_648, None, "MIG-7a91d2c4-1e0b-5f3a-b842-6c0e9d5f1a27"),
    ]


def test_processes_before_maxwell_have_memory_but_no_sm_share():
    assert gpu_processes(started("k80.json")) == [GpuProcess(0, 1733, 2_147_483_648, None)]


def test_processes_of_a_lost_gpu_are_skipped_and_warned_once(caplog):
    caplog.set_level(logging.INFO)
    nvml = started("v100_gpu_lost.json")
    warn = WarnOnce("nvml:processes")

    first = gpu_processes(nvml, warn=warn)
    later = [gpu_processes(nvml, warn=warn) for _ in range(3)]

    assert [(p.gpu_index, p.pid, p.sm_util_pct) for p in first] == [(0, 7001, 95), (1, 7002, 93)]
    assert all([(p.gpu_index, p.pid) for p in found] == [(1, 7002)] for found in later)
    warnings = energy_log(caplog, logging.WARNING)
    assert len(warnings) == 1 and "GPU 0: processes: NVML_ERROR_GPU_IS_LOST" in warnings[0]
    assert warn.failures == 3


def test_memory_by_pid_sums_a_process_over_its_gpus():
    nvml = RecordedNvml(
        {
            "device_count": 2,
            "devices": [
                {
                    "compute_processes": [
                        {"pid": 10, "usedGpuMemory": 1000},
                        {"pid": 11, "usedGpuMemory": None},
                    ]
                },
                {"compute_processes": [{"pid": 10, "usedGpuMemory": 500}]},
            ],
        }
    )
    nvml.init()
    assert memory_by_pid(nvml) == {10: 1500}


def test_utilization_per_gpu():
    assert gpu_utilization(started("two_t4.json")) == [
        GpuUtilization(0, 63, 21),
        GpuUtilization(1, 0, 0),
    ]
    assert utilization_fraction(started("two_t4.json")) == pytest.approx(0.315)


def test_utilization_is_unknown_on_a_mig_gpu():
    assert gpu_utilization(started("a100_mig.json")) == [GpuUtilization(0, None, None)]
    assert utilization_fraction(started("a100_mig.json")) is None


def test_utilization_of_a_lost_gpu_is_unknown():
    nvml = started("v100_gpu_lost.json")
    gpu_utilization(nvml)
    assert gpu_utilization(nvml) == [GpuUtilization(0, None, None), GpuUtilization(1, 95, 41)]


def test_nothing_raises_before_nvml_is_initialized(caplog):
    caplog.set_level(logging.DEBUG)
    nvml = recorded("two_t4.json")
    assert gpu_processes(nvml) == []
    assert gpu_utilization(nvml) == []
    assert "NVML_ERROR_UNINITIALIZED" in energy_log(caplog, logging.DEBUG)[0]
