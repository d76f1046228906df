"""Jetson power rails (INA3221 monitors) as energy sensors, and the Jetson GPU load.

Where the rails live (root is /sys):
- L4T 32 (Nano, Xavier NX): NVIDIA's ina3221x IIO driver, bus/i2c/drivers/ina3221x/<bus>-<addr>/
  iio:device<N>/ with rail_name_<i> and in_power<i>_input in mW. Nano: 6-0040 with POM_5V_IN,
  POM_5V_GPU, POM_5V_CPU; Xavier NX: 7-0040 with VDD_IN, VDD_CPU_GPU_CV, VDD_SOC. Sources: L4T
  Development Guide 32.x, "Power Management for Jetson Nano / Xavier NX", "Software-Based Power
  Consumption Modeling"; jetson-stats, jtop/core/power.py.
- L4T 35+ (JetPack 5-6): the mainline ina3221 hwmon driver, bus/i2c/drivers/ina3221/<bus>-<addr>/
  hwmon/hwmon<N>/ with in<i>_label, in<i>_input (bus voltage, mV) and curr<i>_input (mA) for
  channels 1-3 (in4-6 are shunt voltages, in7 their sum). AGX Orin: 1-0040 VDD_GPU_SOC,
  VDD_CPU_CV, VIN_SYS_5V0 and 1-0041 VDDQ_VDD2_1V8AO (other channels "NC"); Orin NX / Orin Nano:
  1-0040 VDD_IN, VDD_CPU_GPU_CV, VDD_SOC; Xavier NX on JetPack 5: the same at 7-0040. Sources:
  Linux Documentation/hwmon/ina3221.rst; Linux arch/arm64/boot/dts/nvidia/tegra234-p3701.dtsi and
  tegra234-p3767.dtsi; jtop/core/power.py; alumet, plugins/nvidia-jetson/README.md.

Domains never overlap, so the returned sensors can be summed: a rail that feeds other monitored
rails is not returned; the rest of it (its power minus theirs) is. POM_5V_IN and VDD_IN are the
module input (L4T guides; jtop takes them as the total), and the Jetson Linux guide for Orin
(r35, r36) says "VDDQ_VDD2_1V8AO power is also included in VIN_SYS_5V0 power". The rest is clamped
at 0 W: rails are read one after another, so for a moment the parts can exceed their feeder; a
clamped step makes the sum exceed the feeder by that much. The choice for each rail is in LAYOUTS.

Error bound: PowerIntegrator's trapezoid bound plus the INA3221's gain error, at most 0.25 % on
the shunt voltage and 0.25 % on the bus voltage (TI datasheet SBOS576), on all the power read for
the sensor (a rest sensor carries its feeder's and parts' errors). The offsets (shunt +-80 uV, bus
+-16 mV) and the shunts' tolerance are left out: they depend on each board's shunt resistors,
which the L4T 32 driver does not expose.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.energy.sensor import DOMAIN_BOARD, DOMAIN_CPU, DOMAIN_DRAM, DOMAIN_GPU, DOMAIN_SOC
from agent.energy.sensor import SOURCE_JETSON, PowerIntegrator, Reading, Sensor, WarnOnce
from agent.energy.sysfs import read_or_warn

logger = logging.getLogger(__name__)

GAIN_ERROR = 0.005  # INA3221 shunt-voltage + bus-voltage gain errors, datasheet maxima


@dataclass(frozen=True)
class Layout:
    boards: str
    domains: Mapping[str, str]  # rail -> domain, for the rails returned as they are
    feeds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # rail -> rails it feeds

    def rails(self) -> set[str]:
        return {*self.domains, *self.feeds}


REST_DOMAIN = DOMAIN_BOARD  # what a feeder rail powers besides the monitored rails
LAYOUTS = (
    # The module input feeds the GPU and CPU rails; its rest is the SoC, DRAM, I/O, regulators.
    Layout(
        "Jetson Nano",
        {"POM_5V_GPU": DOMAIN_GPU, "POM_5V_CPU": DOMAIN_CPU},
        {"POM_5V_IN": ("POM_5V_GPU", "POM_5V_CPU")},
    ),
    # CPU, GPU and CV (DLA, PVA) share one rail. Split by CPU time: the CPU drives every
    # inference, the GPU ones too, whereas a GPU-time split would leave CPU-only work unpaid.
    Layout(
        "Jetson Xavier NX, Orin NX, Orin Nano",
        {"VDD_CPU_GPU_CV": DOMAIN_CPU, "VDD_SOC": DOMAIN_SOC},
        {"VDD_IN": ("VDD_CPU_GPU_CV", "VDD_SOC")},
    ),
    # VDD_GPU_SOC is the GPU and the SoC core (memory subsystem, video engines): GPU, as under
    # inference the GPU is what moves it; its static share is idle power either way. VDD_CPU_CV
    # is the CPU and the DLA/PVA cores. VIN_SYS_5V0 (I/O, storage) also feeds the DRAM rail.
    Layout(
        "Jetson AGX Orin",
        {"VDD_GPU_SOC": DOMAIN_GPU, "VDD_CPU_CV": DOMAIN_CPU, "VDDQ_VDD2_1V8AO": DOMAIN_DRAM},
        {"VIN_SYS_5V0": ("VDDQ_VDD2_1V8AO",)},
    ),
)


@dataclass(frozen=True)
class Channel:
    """Where one rail is read: (power mW,) from L4T 32's ina3221x, or (bus voltage mV,
    current mA) from the hwmon ina3221, whose product / 1000 is mW."""

    files: tuple[Path, ...]

    def power_mw(self, warn: WarnOnce) -> float | None:
        values = [read_or_warn(path, warn, signed=True) for path in self.files]
        if None in values:
            return None
        # An idle rail can read a few mA below zero (shunt offset): no power, not negative power.
        return max(0.0, math.prod(values) / 1000 ** (len(values) - 1))  # type: ignore[arg-type]


def find_channels(root: Path) -> dict[str, Channel]:
    """Every INA3221 rail under root, by label; OSError or ValueError if a label is unreadable."""
    drivers = root / "bus" / "i2c" / "drivers"
    channels: dict[str, Channel] = {}
    for device in sorted(drivers.glob("ina3221x/*/iio:device*")):
        for label in sorted(device.glob("rail_name_*")):
            if match := re.fullmatch(r"rail_name_(\d+)", label.name):
                channel = Channel((device / f"in_power{match[1]}_input",))
                channels.setdefault(label.read_text().strip(), channel)
    for device in sorted(drivers.glob("ina3221/*/hwmon/hwmon*")):
        for label in sorted(device.glob("in*_label")):
            if match := re.fullmatch(r"in([123])_label", label.name):
                i = match[1]
                channel = Channel((device / f"in{i}_input", device / f"curr{i}_input"))
                channels.setdefault(label.read_text().strip(), channel)
    return channels


class RailSensor:
    """A rail's power as a Sensor, through PowerIntegrator; with `minus`, the rest of a feeder
    rail: its power minus that of the rails it feeds, clamped at 0. Each step's error bound
    gets the monitor's gain error on all the power read for it (feeder and parts)."""

    def __init__(self, name: str, domain: str, rail: Channel, *, minus: tuple[Channel, ...] = (),
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.name = name
        self.domain = domain
        self.source = SOURCE_JETSON
        self._rail = rail
        self._minus = minus
        self._warn = WarnOnce(name)
        self._read_mw = 0.0  # all the power read for the latest sample
        self._last: tuple[int, float] | None = None  # (t_ns, _read_mw then)
        self._integrator = PowerIntegrator(name, domain, SOURCE_JETSON, self._power_mw,
                                           clock_ns=clock_ns)

    def _power_mw(self) -> float | None:
        rail_mw = self._rail.power_mw(self._warn)
        minus_mw = [channel.power_mw(self._warn) for channel in self._minus]
        if rail_mw is None or None in minus_mw:
            return None
        parts_mw = sum(minus_mw)  # type: ignore[arg-type]  # no None left
        self._read_mw = rail_mw + parts_mw
        return max(0.0, rail_mw - parts_mw)

    def read(self) -> Reading | None:
        reading = self._integrator.read()
        if reading is None:
            return None
        gain_error_uj = 0
        if self._last is not None:
            last_t_ns, last_mw = self._last
            step_uj = (last_mw + self._read_mw) / 2 * (reading.t_ns - last_t_ns) / 1e6  # mW*ns
            gain_error_uj = math.ceil(GAIN_ERROR * step_uj)
        self._last = (reading.t_ns, self._read_mw)
        return dataclasses.replace(reading, error_uj=reading.error_uj + gain_error_uj)


def probe_jetson(
    root: Path = Path("/sys"), *, clock_ns: Callable[[], int] = time.monotonic_ns
) -> list[Sensor]:
    """The rail sensors of the Jetson under root, disjoint by domain; [] when it has no rails,
    rails of no board in LAYOUTS, or rails this process may not read. Never raises."""
    try:
        channels = find_channels(root)
    except (OSError, ValueError) as exc:
        logger.warning("cannot list the Jetson power rails under %s: %s", root, exc)
        return []
    if not channels:
        return []
    layout = next((layout for layout in LAYOUTS if layout.rails() <= channels.keys()), None)
    if layout is None:
        logger.warning("Jetson power rails %s match no known board, not metered", sorted(channels))
        return []
    files = [path for rail in sorted(layout.rails()) for path in channels[rail].files]
    if unreadable := [str(path) for path in files if not os.access(path, os.R_OK)]:
        # L4T 32 makes the rail files root-only: say so once here, not at every read.
        logger.warning("Jetson power rails not metered, cannot read %s", ", ".join(unreadable))
        return []
    sensors: list[Sensor] = [
        RailSensor(f"jetson:{rail}", domain, channels[rail], clock_ns=clock_ns)
        for rail, domain in layout.domains.items()
    ]
    for feeder, parts in layout.feeds.items():
        minus = tuple(channels[part] for part in parts)
        sensors.append(RailSensor(f"jetson:{feeder}-rest", REST_DOMAIN, channels[feeder],
                                  minus=minus, clock_ns=clock_ns))
    logger.info("%s power rails: %s", layout.boards, ", ".join(s.name for s in sensors))
    return sensors


# Per mille of the driver's last window that the GPU was busy (jtop: <gpu device>/load / 10 = %).
GPU_LOAD_FILES = (
    "devices/gpu.0/load",  # L4T 32: Nano (57000000.gpu), Xavier (17000000.gv11b)
    "devices/17000000.ga10b/load",  # L4T 35: Orin
    "devices/17000000.gv11b/load",  # L4T 35: Xavier
    "devices/platform/bus@0/17000000.gpu/load",  # L4T 36: Orin
    "devices/platform/gpu.0/load",  # L4T 36 images that keep the gpu.0 name
)


class JetsonGpuLoad:
    """The integrated GPU's busy fraction, 0..1, or None. Which file holds it is looked up on
    the first read and kept: a board without one reads None and never looks again."""

    name = "jetson:gpu-load"

    def __init__(self, root: Path = Path("/sys")) -> None:
        self._root = root
        self._path: Path | None = None
        self._probed = False
        self._warn = WarnOnce(self.name)

    @property
    def path(self) -> Path | None:
        if not self._probed:
            self._probed = True
            candidates = (self._root / name for name in GPU_LOAD_FILES)
            self._path = next((path for path in candidates if os.path.isfile(path)), None)
        return self._path

    def read(self) -> float | None:
        if self.path is None:
            return None
        load_permille = read_or_warn(self.path, self._warn, signed=True)
        if load_permille is None:
            return None
        if not 0 <= load_permille <= 1000:
            self._warn("range", "%s holds %d, outside 0..1000", self.path, load_permille)
            return None
        return load_permille / 1000
