"""Jetson rails and GPU load on copies of real sysfs layouts (tests/fixtures/sysfs/jetson-*),
read with a hand-driven monotonic clock: exact energies, no sleeps."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from agent.energy.jetson import LAYOUTS, JetsonGpuLoad, probe_jetson
from agent.energy.sensor import (
    DOMAIN_BOARD,
    DOMAIN_CPU,
    DOMAIN_DRAM,
    DOMAIN_GPU,
    DOMAIN_SOC,
    SOURCE_JETSON,
    PowerIntegrator,
    Sensor,
)
from tests.agent.energy.conftest import SYSFS_FIXTURES, MonotonicClock

NANO = "bus/i2c/drivers/ina3221x/6-0040/iio:device0"  # rails 0 POM_5V_IN, 1 GPU, 2 CPU
XAVIER_NX = "bus/i2c/drivers/ina3221x/7-0040/iio:device0"  # 0 VDD_IN, 1 CPU_GPU_CV, 2 SOC
ORIN_40 = "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"  # 1 GPU_SOC, 2 CPU_CV, 3 VIN_SYS_5V0
ORIN_41 = "bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon4"  # 1 NC, 2 VDDQ_VDD2_1V8AO, 3 NC
S = 1_000_000_000  # ns








def write(root: Path, path: str, value: object) -> None:
    (root / path).write_text(f"{value}\n")


def by_name(sensors: list[Sensor]) -> dict[str, Sensor]:
    return {sensor.name: sensor for sensor in sensors}


def energy_uj(sensor: Sensor) -> int:
    reading = sensor.read()
    assert reading is not None
    return reading.energy_uj


def make_hwmon(root: Path, device: str, rails: list[tuple[str, int, int]]) -> Path:
    """An ina3221 hwmon directory as L4T 35+ has it: (label, bus mV, mA) per channel."""
    hwmon = root / "bus/i2c/drivers/ina3221" / device / "hwmon/hwmon1"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina3221\n")
    for i, (label, voltage_mv, current_ma) in enumerate(rails, start=1):
        write(hwmon, f"in{i}_label", label)
        write(hwmon, f"in{i}_input", voltage_mv)
        write(hwmon, f"curr{i}_input", current_ma)
    write(hwmon, "in7_label", "sum of shunt voltages")
    return hwmon


# --- which sensors, which domains ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "jetson-nano",
            {
                "jetson:POM_5V_GPU": DOMAIN_GPU,
                "jetson:POM_5V_CPU": DOMAIN_CPU,
                "jetson:POM_5V_IN-rest": DOMAIN_BOARD,
            },
        ),
        (
            "jetson-xavier-nx",
            {
                "jetson:VDD_CPU_GPU_CV": DOMAIN_CPU,
                "jetson:VDD_SOC": DOMAIN_SOC,
                "jetson:VDD_IN-rest": DOMAIN_BOARD,
            },
        ),
        (
            "jetson-agx-orin",
            {
                "jetson:VDD_GPU_SOC": DOMAIN_GPU,
                "jetson:VDD_CPU_CV": DOMAIN_CPU,
                "jetson:VDDQ_VDD2_1V8AO": DOMAIN_DRAM,
                "jetson:VIN_SYS_5V0-rest": DOMAIN_BOARD,
            },
        ),
    ],
)
def test_each_layout_gives_disjoint_rails_and_the_rest_of_the_feeder(fixture, expected):
    sensors = probe_jetson(SYSFS_FIXTURES / fixture, clock_ns=MonotonicClock())
    assert {sensor.name: sensor.domain for sensor in sensors} == expected
    assert {sensor.source for sensor in sensors} == {SOURCE_JETSON}


def test_layouts_feed_only_rails_they_return():
    for layout in LAYOUTS:
        for feeder, parts in layout.feeds.items():
            assert feeder not in layout.domains
            assert set(parts) <= set(layout.domains)


def test_driver_entries_that_link_into_devices_are_followed(sysfs):
    # On a sysfs, bus/i2c/drivers/<driver>/<bus>-<addr> is a link into /sys/devices.
    root = sysfs("jetson-nano")
    entry = root / "bus/i2c/drivers/ina3221x/6-0040"
    device = root / "devices/7000c400.i2c/i2c-6/6-0040"
    device.parent.mkdir(parents=True)
    entry.rename(device)
    entry.symlink_to(os.path.relpath(device, entry.parent))
    assert len(probe_jetson(root)) == 3


def test_orin_nx_on_the_hwmon_driver_uses_the_vdd_in_layout(tmp_path):
    make_hwmon(tmp_path, "1-0040", [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 400),
                                    ("VDD_SOC", 5000, 200)])
    sensors = probe_jetson(tmp_path, clock_ns=MonotonicClock())
    assert sorted(sensor.name for sensor in sensors) == [
        "jetson:VDD_CPU_GPU_CV", "jetson:VDD_IN-rest", "jetson:VDD_SOC"]


# --- energy -----------------------------------------------------------------------------------


def test_trapezoid_energy_and_error_bound_of_a_rail(sysfs, clock):
    root = sysfs("jetson-nano")
    write(root, f"{NANO}/in_power1_input", 5000)
    gpu = by_name(probe_jetson(root, clock_ns=clock))["jetson:POM_5V_GPU"]

    first = gpu.read()
    clock.now_ns = 2 * S
    second = gpu.read()
    write(root, f"{NANO}/in_power1_input", 7000)
    clock.now_ns = 3 * S
    third = gpu.read()

    assert first is not None and second is not None and third is not None
    assert (first.energy_uj, first.error_uj, first.t_ns) == (0, 0, 0)
    # 5 W for 2 s, then a 5 -> 7 W ramp over 1 s: 10 J + 6 J.
    assert second.energy_uj == 10_000_000
    assert third.energy_uj == 16_000_000
    assert third.t_ns == 3 * S
    # 0.5 % gain error of the energy read; plus the trapezoid's (7 - 5) / 2 W * 1 s when it moved.
    assert second.error_uj == 50_000
    assert third.error_uj == 1_000_000 + 30_000


def test_hwmon_rail_power_is_bus_voltage_times_current(sysfs, clock):
    root = sysfs("jetson-agx-orin")
    gpu = by_name(probe_jetson(root, clock_ns=clock))["jetson:VDD_GPU_SOC"]
    assert energy_uj(gpu) == 0
    clock.now_ns = 1 * S
    assert energy_uj(gpu) == 4_000_000  # 5000 mV * 800 mA = 4 W, for 1 s
    write(root, f"{ORIN_40}/in1_input", 4992)
    write(root, f"{ORIN_40}/curr1_input", 1000)
    clock.now_ns = 2 * S
    assert energy_uj(gpu) == 4_000_000 + (4000 + 4992) // 2 * 1000


def test_rest_is_the_feeder_minus_its_parts(sysfs, clock):
    root = sysfs("jetson-nano")  # POM_5V_IN 3 W, GPU 0.8 W, CPU 1.2 W
    rest = by_name(probe_jetson(root, clock_ns=clock))["jetson:POM_5V_IN-rest"]
    rest.read()
    clock.now_ns = 2 * S
    reading = rest.read()
    assert reading is not None
    assert reading.energy_uj == 2_000_000  # 1 W for 2 s
    # The gain error applies to all three rails read: 0.5 % of (3 + 2) W * 2 s.
    assert reading.error_uj == 50_000


def test_rest_is_clamped_at_zero_when_the_parts_read_more_than_the_feeder(sysfs, clock):
    root = sysfs("jetson-nano")
    write(root, f"{NANO}/in_power1_input", 2500)  # GPU + CPU = 3.7 W > POM_5V_IN 3 W
    rest = by_name(probe_jetson(root, clock_ns=clock))["jetson:POM_5V_IN-rest"]
    assert energy_uj(rest) == 0
    clock.now_ns = 1 * S
    assert energy_uj(rest) == 0


# Power of (feeder, part, part) at each second; the feeder is always above the parts' sum.
STEPS = [(3000, 800, 1200), (5200, 2000, 1700), (4100, 1500, 1500), (6000, 3100, 900)]


@pytest.mark.parametrize(("fixture", "device"), [("jetson-nano", NANO),
                                                 ("jetson-xavier-nx", XAVIER_NX)])
def test_sensors_sum_to_the_input_rail(sysfs, clock, fixture, device):
    root = sysfs(fixture)
    sensors = probe_jetson(root, clock_ns=clock)
    feeder_mw = 0.0
    feeder = PowerIntegrator("input", DOMAIN_BOARD, SOURCE_JETSON, lambda: feeder_mw,
                             clock_ns=clock)
    for second, powers in enumerate(STEPS):
        for channel, power_mw in enumerate(powers):
            write(root, f"{device}/in_power{channel}_input", power_mw)
        feeder_mw = powers[0]
        clock.now_ns = second * S
        total_uj = sum(energy_uj(sensor) for sensor in sensors)
        expected = feeder.read()
        assert expected is not None
        assert total_uj == expected.energy_uj
    assert total_uj > 0


def test_agx_orin_sensors_sum_to_its_three_supplies(sysfs, clock):
    root = sysfs("jetson-agx-orin")  # 4 W GPU_SOC, 3 W CPU_CV, 5 W SYS_5V0 holding 1 W DRAM
    sensors = probe_jetson(root, clock_ns=clock)
    assert sum(energy_uj(sensor) for sensor in sensors) == 0
    clock.now_ns = 2 * S
    assert sum(energy_uj(sensor) for sensor in sensors) == (4000 + 3000 + 5000) * 2000
    assert energy_uj(by_name(sensors)["jetson:VDDQ_VDD2_1V8AO"]) == 1000 * 2000


# --- failures ---------------------------------------------------------------------------------


def test_a_rail_that_vanishes_reads_none_warns_once_and_comes_back(sysfs, clock, caplog):
    root = sysfs("jetson-nano")
    sensors = by_name(probe_jetson(root, clock_ns=clock))
    gpu, rest = sensors["jetson:POM_5V_GPU"], sensors["jetson:POM_5V_IN-rest"]
    assert energy_uj(gpu) == 0
    power_file = root / NANO / "in_power1_input"
    power_file.unlink()
    with caplog.at_level(logging.WARNING):
        for second in (1, 2, 3):
            clock.now_ns = second * S
            assert gpu.read() is None
            assert rest.read() is None
    warnings = [r for r in caplog.records if "jetson:POM_5V_GPU" in r.getMessage()]
    assert len(warnings) == 1
    assert "in_power1_input" in warnings[0].getMessage()
    write(root, f"{NANO}/in_power1_input", 800)
    clock.now_ns = 4 * S
    assert energy_uj(gpu) == 800 * 4000  # the gap is bridged by the trapezoid


@pytest.mark.parametrize("garbage", [b"", b"abc", b"12.5", b"\x00\x00", b"\xff\xfe1"])
def test_garbage_reads_none(sysfs, clock, garbage):
    root = sysfs("jetson-agx-orin")
    cpu = by_name(probe_jetson(root, clock_ns=clock))["jetson:VDD_CPU_CV"]
    (root / ORIN_40 / "curr2_input").write_bytes(garbage)
    assert cpu.read() is None


def test_a_current_below_zero_is_no_power(sysfs, clock):
    root = sysfs("jetson-agx-orin")
    write(root, f"{ORIN_40}/curr1_input", -16)  # shunt offset on an idle rail
    gpu = by_name(probe_jetson(root, clock_ns=clock))["jetson:VDD_GPU_SOC"]
    assert energy_uj(gpu) == 0
    clock.now_ns = 1 * S
    assert energy_uj(gpu) == 0


def test_a_rail_set_of_no_known_board_is_not_metered(sysfs, caplog):
    root = sysfs("jetson-nano")
    (root / NANO / "rail_name_1").unlink()  # without the GPU rail the rest is unknown
    with caplog.at_level(logging.WARNING):
        assert probe_jetson(root) == []
    assert "match no known board" in caplog.text


def test_no_monitor_is_no_sensor_and_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert probe_jetson(tmp_path) == []
        assert probe_jetson(tmp_path / "missing") == []
    assert caplog.records == []


def test_an_unreadable_label_is_no_sensor_not_an_exception(sysfs, caplog):
    root = sysfs("jetson-nano")
    (root / NANO / "rail_name_2").unlink()
    (root / NANO / "rail_name_2").mkdir()
    with caplog.at_level(logging.WARNING):
        assert probe_jetson(root) == []
    assert "cannot list the Jetson power rails" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_rail_files_this_user_cannot_read_are_not_metered(sysfs, caplog):
    root = sysfs("jetson-nano")
    (root / NANO / "in_power0_input").chmod(0)
    with caplog.at_level(logging.WARNING):
        assert probe_jetson(root) == []
    assert "in_power0_input" in caplog.text


# --- GPU load ---------------------------------------------------------------------------------


def test_gpu_load_is_per_mille_as_a_fraction(sysfs):
    root = sysfs("jetson-nano")
    load = JetsonGpuLoad(root)
    assert load.read() == 0.0
    write(root, "devices/gpu.0/load", 437)
    assert load.read() == pytest.approx(0.437)
    write(root, "devices/gpu.0/load", 1000)
    assert load.read() == 1.0


@pytest.mark.parametrize(
    "path",
    [
        "devices/gpu.0/load",
        "devices/17000000.ga10b/load",
        "devices/17000000.gv11b/load",
        "devices/platform/bus@0/17000000.gpu/load",
        "devices/platform/gpu.0/load",
    ],
)
def test_gpu_load_is_found_on_each_l4t_layout(tmp_path, path):
    (tmp_path / path).parent.mkdir(parents=True)
    write(tmp_path, path, 250)
    load = JetsonGpuLoad(tmp_path)
    assert load.read() == 0.25
    assert load.path == tmp_path / path


def test_agx_orin_fixture_gpu_load(sysfs):
    root = sysfs("jetson-agx-orin")
    write(root, "devices/17000000.ga10b/load", 999)
    assert JetsonGpuLoad(root).read() == pytest.approx(0.999)


@pytest.mark.parametrize("value", ["", "n/a", "-1", "1001", "55.5"])
def test_gpu_load_garbage_reads_none(sysfs, value):
    root = sysfs("jetson-nano")
    (root / "devices/gpu.0/load").write_text(value)
    assert JetsonGpuLoad(root).read() is None


def test_no_gpu_load_file_reads_none(tmp_path):
    load = JetsonGpuLoad(tmp_path)
    assert load.read() is None
    assert load.path is None


def test_gpu_load_path_is_probed_once(sysfs, caplog):
    root = sysfs("jetson-agx-orin")
    load = JetsonGpuLoad(root)
    assert load.read() == 0.0
    # A file appearing at a path probed earlier does not move the reader.
    (root / "devices/gpu.0").mkdir()
    write(root, "devices/gpu.0/load", 500)
    assert load.read() == 0.0
    # A file that vanishes reads None, and is logged once.
    (root / "devices/17000000.ga10b/load").unlink()
    with caplog.at_level(logging.WARNING):
        assert load.read() is None
        assert load.read() is None
    assert len(caplog.records) == 1
