"""hwmon energy counters and power meters on copies of real layouts (tests/fixtures/sysfs/
hwmon-*), read with a hand-driven clock: exact energies, no sleeps.

The trees follow Documentation/hwmon/sysfs-interface.rst, with /sys/class/hwmon/hwmonN linking
into the device tree: hwmon-amd-energy (amd_energy: Ecore000... then Esocket0, µJ, per
Documentation/hwmon/amd_energy.rst; k10temp and nvme with temperatures only), hwmon-desktop
(the ACPI power meter, zenpower's SVI2_P_Core / SVI2_P_SoC, amdgpu's PPT as power1_average and
power1_input, in µW; nvme). The device links back up are left out of the checked-in trees (they
loop); the tests that need them add them.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from agent.energy.hwmon import EnergyCounter, probe_hwmon
from agent.energy.sensor import (
    DOMAIN_BOARD,
    DOMAIN_GPU,
    DOMAIN_PACKAGE,
    SOURCE_HWMON,
    PowerIntegrator,
    Reading,
)
from agent.energy.sysfs import read_sysfs

HWMON = "class/hwmon"
S = 1_000_000_000  # ns








def write(path: Path, value: int | str) -> None:
    path.write_text(f"{value}\n")


def make_chip(hwmon: Path, files: dict[str, object]) -> None:
    hwmon.mkdir(parents=True)
    for name, value in files.items():
        write(hwmon / name, value)


def test_amd_energy_counts_sockets_not_their_cores(sysfs):
    sensors = probe_hwmon(sysfs("hwmon-amd-energy") / HWMON)

    assert [(s.name, s.domain, s.source) for s in sensors] == [
        ("hwmon:amd_energy/Esocket0", DOMAIN_PACKAGE, SOURCE_HWMON),
    ]
    assert isinstance(sensors[0], EnergyCounter)
    assert sensors[0].path.name == "energy5_input"


def test_energy_counter_counts_and_restarts_after_a_reset(sysfs, clock, caplog):
    root = sysfs("hwmon-amd-energy")
    [socket] = probe_hwmon(root / HWMON, clock_ns=clock)
    counter = root / HWMON / "hwmon2/energy5_input"

    write(counter, 1_000_000)
    clock.now_ns = 1 * S
    assert socket.read() == Reading("hwmon:amd_energy/Esocket0", 0, 1 * S, 0)
    write(counter, 3_500_000)
    clock.now_ns = 2 * S
    assert socket.read() == Reading("hwmon:amd_energy/Esocket0", 2_500_000, 2 * S, 16)

    write(counter, 200_000)  # the driver was reloaded: its counter starts again
    with caplog.at_level(logging.WARNING):
        assert socket.read().energy_uj == 2_500_000
    assert "went back to 200000" in caplog.text
    write(counter, 700_000)
    assert socket.read().energy_uj == 3_000_000


def test_desktop_power_meters_by_chip(sysfs):
    sensors = probe_hwmon(sysfs("hwmon-desktop") / HWMON)

    assert [(s.name, s.domain) for s in sensors] == [
        ("hwmon:power_meter/power1", DOMAIN_BOARD),
        ("hwmon:zenpower/SVI2_P_Core", DOMAIN_PACKAGE),
        ("hwmon:zenpower/SVI2_P_SoC", DOMAIN_PACKAGE),
        ("hwmon:amdgpu/PPT", DOMAIN_GPU),
    ]
    assert all(isinstance(s, PowerIntegrator) and s.source == SOURCE_HWMON for s in sensors)


def test_power_is_integrated_in_microwatts(sysfs, clock):
    root = sysfs("hwmon-desktop")
    gpu = {s.name: s for s in probe_hwmon(root / HWMON, clock_ns=clock)}["hwmon:amdgpu/PPT"]
    power = root / HWMON / "hwmon3/power1_input"  # the instantaneous one, not power1_average

    clock.now_ns = 10 * S
    assert gpu.read() == Reading("hwmon:amdgpu/PPT", 0, 10 * S, 0)  # 36 W
    write(power, 40_000_000)
    clock.now_ns = 11 * S
    # 38 W on average over 1 s; the trapezoid's bound is half the change times the time.
    assert gpu.read() == Reading("hwmon:amdgpu/PPT", 38_000_000, 11 * S, 2_000_000)
    write(root / HWMON / "hwmon3/power1_average", 1)  # not read
    clock.now_ns = 11 * S + S // 10
    assert gpu.read().energy_uj == 42_000_000


def test_unreadable_power_warns_once_and_resumes(sysfs, clock, caplog):
    root = sysfs("hwmon-desktop")
    meter = {s.name: s for s in probe_hwmon(root / HWMON, clock_ns=clock)}[
        "hwmon:power_meter/power1"
    ]
    power = root / HWMON / "hwmon0/power1_average"
    assert meter.read().energy_uj == 0  # 112.5 W

    with caplog.at_level(logging.WARNING):
        power.unlink()
        clock.now_ns = 1 * S
        assert meter.read() is None
        write(power, "garbage")
        assert meter.read() is None
        assert meter.read() is None
    assert len(caplog.records) == 2  # one per kind of failure, not one per reading
    assert "hwmon:power_meter/power1" in caplog.records[0].getMessage()

    write(power, 87_500_000)
    clock.now_ns = 2 * S
    assert meter.read().energy_uj == 200_000_000  # (112.5 + 87.5) / 2 W over 2 s


def test_permission_denied_is_said_once(sysfs, caplog):
    def read_text(path: Path) -> str:
        if path.name.startswith("energy") and path.name.endswith("_input"):  # mode 0440 root
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_sysfs(path)

    sensors = probe_hwmon(sysfs("hwmon-amd-energy") / HWMON, read_text=read_text)

    assert sensors == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "CVE-2020-12912" in warnings[0] and "as root" in warnings[0]
    assert "hwmon2/energy5_input" in warnings[0]


def test_parts_and_second_views_are_left_out(tmp_path):
    xe = {"name": "xe", "power1_max": 190_000_000, "power1_label": "card"}  # Intel Arc
    xe |= {"energy1_input": 5_000_000, "energy1_label": "card"}
    xe |= {"energy2_input": 3_000_000, "energy2_label": "pkg"}  # the GPU package, on the card
    make_chip(tmp_path / "hwmon0", xe)
    # A shunt monitor: the power and the energy of one rail.
    make_chip(tmp_path / "hwmon1", {"name": "ina238", "energy1_input": 1, "power1_input": 2})
    apu = {"name": "amdgpu", "power1_average": 9_000_000, "power1_label": "slowPPT"}  # Van Gogh
    apu |= {"power2_average": 9_500_000, "power2_label": "fastPPT"}  # the same, averaged less
    make_chip(tmp_path / "hwmon2", apu)

    assert [(s.name, s.domain) for s in probe_hwmon(tmp_path)] == [
        ("hwmon:xe/card", DOMAIN_GPU),
        ("hwmon:ina238/energy1", DOMAIN_BOARD),
        ("hwmon:amdgpu/slowPPT", DOMAIN_GPU),
    ]


def test_chips_sharing_a_name_are_told_apart_by_device(sysfs):
    root = sysfs("hwmon-desktop")
    first = root / "devices/pci0000:00/0000:00:03.1/0000:09:00.0/0000:0a:00.0/0000:0b:00.0"
    second = root / "devices/pci0000:00/0000:00:03.2/0000:0c:00.0"
    shutil.copytree(first / "hwmon/hwmon3", second / "hwmon/hwmon4")
    (first / "hwmon/hwmon3/device").symlink_to("../../../0000:0b:00.0")
    (second / "hwmon/hwmon4/device").symlink_to("../../../0000:0c:00.0")
    (root / HWMON / "hwmon4").symlink_to(os.path.relpath(second / "hwmon/hwmon4", root / HWMON))

    names = [s.name for s in probe_hwmon(root / HWMON) if s.domain == DOMAIN_GPU]

    assert names == ["hwmon:amdgpu@0000:0b:00.0/PPT", "hwmon:amdgpu@0000:0c:00.0/PPT"]


def test_unlabelled_and_same_labelled_channels_use_the_channel(tmp_path):
    psu = {"name": "acme_psu", "power1_input": 1_000_000, "power1_label": "12V rail"}
    psu |= {"power2_input": 2_000_000, "power2_label": "aux"}
    psu |= {"power3_input": 3_000_000, "power3_label": "aux", "power4_input": 4_000_000}
    make_chip(tmp_path / "hwmon10", psu)
    make_chip(tmp_path / "hwmon9", {"name": "nct6798", "temp1_input": 30_000})
    make_chip(tmp_path / "hwmon8", {"power1_input": 1})  # no name: nothing to say about it

    assert [s.name for s in probe_hwmon(tmp_path)] == [
        "hwmon:acme_psu/12V_rail",
        "hwmon:acme_psu/power2",
        "hwmon:acme_psu/power3",
        "hwmon:acme_psu/power4",
    ]


def test_channel_with_garbage_at_probe_is_left_out(sysfs):
    root = sysfs("hwmon-desktop")
    write(root / HWMON / "hwmon2/power2_input", "")

    names = [s.name for s in probe_hwmon(root / HWMON)]

    assert "hwmon:zenpower/SVI2_P_Core" in names and "hwmon:zenpower/SVI2_P_SoC" not in names


def test_no_hwmon_means_no_sensor(tmp_path):
    assert probe_hwmon(tmp_path / "missing") == []
    assert probe_hwmon(tmp_path) == []


def test_probe_never_raises(sysfs, caplog):
    def broken(path: Path) -> str:
        raise RuntimeError("driver bug")

    assert probe_hwmon(sysfs("hwmon-desktop") / HWMON, read_text=broken) == []
    assert "hwmon probe" in caplog.text
