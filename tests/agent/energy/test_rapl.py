"""RAPL zones on copies of real powercap layouts (tests/fixtures/sysfs/rapl-*), read with a
hand-driven clock: exact energies, no sleeps.

The trees follow Documentation/power/powercap/powercap.rst and the zones drivers/powercap/
intel_rapl_*.c register: rapl-intel-desktop (package-0 with core, uncore, dram; psys; the
/sys/class/powercap links into /sys/devices/virtual/powercap), rapl-intel-laptop (a flat copy,
with intel-rapl-mmio showing package-0 a second time), rapl-xeon-2s (package-0/1, each with
dram, 15.3 µJ dram unit), rapl-amd (package-0 and core, 15.3 µJ unit, Linux 6.x). The links a
real tree has back up (device, subsystem) are not checked in, so that copying or walking the
fixtures never loops; test_links_back_up_are_not_followed adds them.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.energy.rapl import RaplSensor, probe_rapl
from agent.energy.sensor import (
    DOMAIN_BOARD,
    DOMAIN_DRAM,
    DOMAIN_PACKAGE,
    SOURCE_RAPL,
    Reading,
)
from agent.energy.sysfs import read_sysfs

POWERCAP = "class/powercap"
INTEL_MAX_UJ = 262_143_328_850  # 2^32 - 1 steps of 61.035 µJ
AMD_MAX_UJ = 65_532_610_987  # 2^32 - 1 steps of 15.258 µJ








def zone_sensor(root: Path, name: str, clock: Callable[[], int] = time.monotonic_ns) -> RaplSensor:
    return {sensor.name: sensor for sensor in probe_rapl(root / POWERCAP, clock_ns=clock)}[name]


def set_uj(sensor: RaplSensor, value: int | str) -> None:
    sensor.energy_path.write_text(f"{value}\n")


def denying(paths: Callable[[Path], bool]) -> Callable[[Path], str]:
    """Reads as the kernel does for a user without read access (EACCES at open) where
    paths(path) says so. Tests run as root, which no file mode stops."""

    def read(path: Path) -> str:
        if paths(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_sysfs(path)

    return read


def test_intel_desktop_counts_package_and_dram_only(sysfs):
    sensors = probe_rapl(sysfs("rapl-intel-desktop") / POWERCAP)

    # core and uncore are inside package-0, psys covers both: counting them would count twice.
    assert [(s.name, s.domain, s.source) for s in sensors] == [
        ("rapl:package-0", DOMAIN_PACKAGE, SOURCE_RAPL),
        ("rapl:dram-0", DOMAIN_DRAM, SOURCE_RAPL),
    ]


def test_nested_device_tree_gives_the_same_zones(sysfs):
    sensors = probe_rapl(sysfs("rapl-intel-desktop") / "devices/virtual/powercap")

    assert [s.name for s in sensors] == ["rapl:package-0", "rapl:dram-0"]


def test_xeon_two_sockets_each_with_dram(sysfs):
    sensors = probe_rapl(sysfs("rapl-xeon-2s") / POWERCAP)

    assert [(s.name, s.domain) for s in sensors] == [
        ("rapl:package-0", DOMAIN_PACKAGE),
        ("rapl:dram-0", DOMAIN_DRAM),
        ("rapl:package-1", DOMAIN_PACKAGE),
        ("rapl:dram-1", DOMAIN_DRAM),
    ]
    zone = {s.name: s.energy_path.parent.name for s in sensors}
    assert zone["rapl:dram-1"] == "intel-rapl:1:0"
    # Package steps are 61.035 µJ, the Xeon dram's 15.3 µJ: one step plus 1 µJ of rounding.
    assert {s.name: s.error_uj for s in sensors} == {
        "rapl:package-0": 63,
        "rapl:dram-0": 17,
        "rapl:package-1": 63,
        "rapl:dram-1": 17,
    }


def test_amd_package_without_its_core(sysfs):
    sensors = probe_rapl(sysfs("rapl-amd") / POWERCAP)

    assert [(s.name, s.domain) for s in sensors] == [("rapl:package-0", DOMAIN_PACKAGE)]
    assert sensors[0].error_uj == 17  # 15.258 µJ steps


def test_mmio_view_of_the_same_package_is_not_counted_again(sysfs):
    sensors = probe_rapl(sysfs("rapl-intel-laptop") / POWERCAP)

    assert [s.name for s in sensors] == ["rapl:package-0"]
    assert sensors[0].energy_path.parent.name == "intel-rapl:0"


def test_multi_die_packages_name_their_dram_by_die(sysfs):
    root = sysfs("rapl-xeon-2s")
    (root / POWERCAP / "intel-rapl:0/name").write_text("package-0-die-0\n")
    (root / POWERCAP / "intel-rapl:1/name").write_text("package-0-die-1\n")

    assert [s.name for s in probe_rapl(root / POWERCAP)] == [
        "rapl:package-0-die-0",
        "rapl:dram-0-die-0",
        "rapl:package-0-die-1",
        "rapl:dram-0-die-1",
    ]


def test_links_back_up_are_not_followed(sysfs):
    root = sysfs("rapl-intel-desktop")
    rapl = root / "devices/virtual/powercap/intel-rapl"
    (rapl / "subsystem").symlink_to("../../../../class/powercap")
    (rapl / "intel-rapl:0/device").symlink_to("../../intel-rapl")
    (rapl / "intel-rapl:0/subsystem").symlink_to("../../../../../class/powercap")
    (rapl / "intel-rapl:0/intel-rapl:0:2/device").symlink_to("../../intel-rapl:0")

    assert [s.name for s in probe_rapl(root / POWERCAP)] == ["rapl:package-0", "rapl:dram-0"]


def test_energy_is_counted_from_the_first_reading(sysfs, clock):
    package = zone_sensor(sysfs("rapl-intel-desktop"), "rapl:package-0", clock)

    set_uj(package, 1_000_000)
    clock.now_ns = 5_000
    assert package.read() == Reading("rapl:package-0", 0, 5_000, 0)
    set_uj(package, 3_000_000)
    clock.now_ns = 100_005_000
    assert package.read() == Reading("rapl:package-0", 2_000_000, 100_005_000, 63)


def test_counter_wrap_is_unwrapped(sysfs, clock):
    package = zone_sensor(sysfs("rapl-intel-desktop"), "rapl:package-0", clock)

    set_uj(package, INTEL_MAX_UJ - 500_000)
    assert package.read().energy_uj == 0
    set_uj(package, 1_500_000)
    # 500_000 µJ up to max, 1 from max to 0 (the counter holds max + 1 values), then 1_500_000.
    assert package.read().energy_uj == 2_000_001
    set_uj(package, 2_500_000)
    assert package.read().energy_uj == 3_000_001


def test_permission_denied_is_said_once_with_the_fix(sysfs, caplog):
    root = sysfs("rapl-xeon-2s")
    read_text = denying(lambda path: path.name == "energy_uj")

    with caplog.at_level(logging.INFO):
        sensors = probe_rapl(root / POWERCAP, read_text=read_text)

    assert sensors == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "readable by root only since Linux 5.10 (CVE-2020-8694)" in message
    assert "as root" in message and "udev rule" in message and "chmod o+r" in message
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1", "intel-rapl:1:0"):
        assert f"/{zone}/energy_uj" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_by_file_mode(sysfs, caplog):
    root = sysfs("rapl-amd")
    for zone in ("intel-rapl:0", "intel-rapl:0:0"):
        # Unreadable to this user, as 0400 root:root (Linux 5.10 on) is to the agent's user.
        (root / POWERCAP / zone / "energy_uj").chmod(0)

    assert probe_rapl(root / POWERCAP) == []
    assert "CVE-2020-8694" in caplog.text


def test_psys_stands_in_when_no_package_can_be_read(sysfs, caplog):
    root = sysfs("rapl-intel-desktop")
    unreadable = {"intel-rapl:0/energy_uj", "intel-rapl:0:2/energy_uj"}  # package-0, dram
    read_text = denying(lambda path: f"{path.parent.name}/{path.name}" in unreadable)

    sensors = probe_rapl(root / POWERCAP, read_text=read_text)

    assert [(s.name, s.domain) for s in sensors] == [("rapl:psys", DOMAIN_BOARD)]
    assert caplog.text.count("CVE-2020-8694") == 1


def test_zone_that_disappears_warns_once_and_resumes(sysfs, clock, caplog):
    package = zone_sensor(sysfs("rapl-xeon-2s"), "rapl:package-1", clock)
    set_uj(package, 1_000_000)
    assert package.read().energy_uj == 0

    package.energy_path.unlink()
    with caplog.at_level(logging.WARNING):
        assert package.read() is None
        assert package.read() is None
    assert len(caplog.records) == 1
    assert "rapl:package-1" in caplog.records[0].getMessage()

    set_uj(package, 4_000_000)  # the hardware counter ran on while the file was away
    clock.now_ns = 7
    assert package.read() == Reading("rapl:package-1", 3_000_000, 7, 63)


@pytest.mark.parametrize("garbage", ["", "garbage", "-5", "12.5", "0x10", str(INTEL_MAX_UJ + 1)])
def test_garbage_reads_as_none_and_counting_goes_on(sysfs, caplog, garbage):
    package = zone_sensor(sysfs("rapl-intel-desktop"), "rapl:package-0")
    set_uj(package, 1_000_000)
    package.read()

    set_uj(package, garbage)
    with caplog.at_level(logging.WARNING):
        assert package.read() is None
    assert "cannot read" in caplog.text and "energy_uj" in caplog.text

    set_uj(package, 1_250_000)
    assert package.read().energy_uj == 250_000


def test_zone_with_garbage_at_probe_is_left_out(sysfs):
    root = sysfs("rapl-xeon-2s")
    (root / POWERCAP / "intel-rapl:1:0/energy_uj").write_text("N/A\n")
    (root / POWERCAP / "intel-rapl:1/max_energy_range_uj").write_text("0\n")

    assert [s.name for s in probe_rapl(root / POWERCAP)] == ["rapl:package-0", "rapl:dram-0"]


def test_no_powercap_means_no_sensor(tmp_path):
    assert probe_rapl(tmp_path / "missing") == []
    assert probe_rapl(tmp_path) == []


def test_probe_never_raises(sysfs, caplog):
    def broken(path: Path) -> str:
        raise RuntimeError("driver bug")

    assert probe_rapl(sysfs("rapl-amd") / POWERCAP, read_text=broken) == []
    assert "RAPL probe" in caplog.text
