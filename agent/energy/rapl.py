"""RAPL energy counters through the powercap sysfs interface (Intel, and AMD Zen since Linux 5.8).

Layout (Documentation/power/powercap/powercap.rst): /sys/class/powercap holds a link per zone,
`intel-rapl:0` (package-0), its subzones `intel-rapl:0:0`, `intel-rapl:0:1` ... (core, uncore,
dram) and top-level zones such as `intel-rapl:1` (psys); the same tree is nested under
/sys/devices/virtual/powercap/intel-rapl. Each zone has `name`, `energy_uj` (a hardware counter
in µJ that wraps at `max_energy_range_uj`) and power-limit files we never touch. Multi-die
packages name their zones package-N-die-M; AMD exposes package-N with a core subzone and no
dram. The walk accepts the flat view, the nested one, or a copy of either, and follows only
zone and control-type names, never the `device`/`subsystem` links that point back up.

Domains are chosen disjoint, so that the sensors returned add up without counting anything
twice: package-N and its dram. core and uncore are inside their package; psys is the whole
platform (packages and dram included) and stands in only when no package can be read.

Resolution: the hardware counter is 32 bits of 1/2^ESU J (61.0 µJ on Intel client and Xeon
packages, 15.3 µJ on AMD and on Xeon dram); the kernel scales it to whole µJ, so
max_energy_range_uj / 2^32 is the counter's step. A difference of two readings is off by less
than one step plus the kernel's 1 µJ rounding: that is each reading's error_uj.

Since Linux 5.10 (CVE-2020-8694, backported to stable kernels) energy_uj is readable by root
only; the probe says so once, with the fix, and leaves those zones out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from agent.energy.sensor import (
    DOMAIN_BOARD,
    DOMAIN_DRAM,
    DOMAIN_PACKAGE,
    SOURCE_RAPL,
    Reading,
    Sensor,
    WarnOnce,
    WrappingCounter,
)
from agent.energy.sysfs import ReadText, failure_kind, read_or_warn, read_sysfs, read_uint

logger = logging.getLogger(__name__)

# Control types counting RAPL domains, most direct first. Several can show the same package
# (intel-rapl-mmio is the MMIO view of what intel-rapl reads from MSRs): the first to name a
# sensor wins, so a package is counted once. Mainline registers AMD zones under intel-rapl;
# amd-rapl is accepted for out-of-tree drivers that use that name.
CONTROL_TYPES = ("intel-rapl", "intel-rapl-tpmi", "amd-rapl", "intel-rapl-mmio")
# What each kind of zone counts. core and uncore are parts of their package: never returned.
KIND_DOMAINS = {"package": DOMAIN_PACKAGE, "dram": DOMAIN_DRAM, "psys": DOMAIN_BOARD}
# Which readable kinds to return, first match wins (see the module docstring).
SELECTIONS = (
    ("package", frozenset({"package", "dram"})),
    ("psys", frozenset({"psys"})),
    ("dram", frozenset({"dram"})),
)
COUNTER_BITS = 32  # ENERGY_STATUS_MASK in drivers/powercap/intel_rapl_common.c
PERMISSION_HELP = (
    "cannot read %s: RAPL energy counters are readable by root only since Linux 5.10 "
    "(CVE-2020-8694). Run the agent as root, or give its group read access with a udev rule "
    '(SUBSYSTEM=="powercap", RUN+="/bin/chgrp infermeter /sys%%p/energy_uj", '
    'RUN+="/bin/chmod g+r /sys%%p/energy_uj"), or chmod o+r the files (until reboot); '
    "until then these zones are left out"
)
_ZONE = re.compile(r"(?P<type>[a-z][a-z-]*)(?::\d+)+")


class RaplSensor:
    """One zone's energy_uj, unwrapped: energy counted since the first reading."""

    source = SOURCE_RAPL

    def __init__(
        self,
        zone_dir: Path,
        name: str,
        domain: str,
        *,
        max_energy_uj: int,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        read_text: ReadText = read_sysfs,
    ) -> None:
        self.name = name
        self.domain = domain
        self.energy_path = zone_dir / "energy_uj"
        self.error_uj = -(-max_energy_uj // 2**COUNTER_BITS) + 1  # one step, kernel rounding
        self._max_energy_uj = max_energy_uj
        self._counter = WrappingCounter(max_energy_uj)
        self._clock_ns = clock_ns
        self._read_text = read_text
        self._warn = WarnOnce(name)
        self._started = False

    def read(self) -> Reading | None:
        # The hardware counter runs on while the file is away: a zone that comes back resumes
        # from the last value seen, the gap counted.
        raw_uj = read_or_warn(self.energy_path, self._warn, self._read_text)
        if raw_uj is None:
            return None
        if raw_uj > self._max_energy_uj:
            self._warn(
                "garbage", "cannot read %s: %d is above max_energy_range_uj %d",
                self.energy_path, raw_uj, self._max_energy_uj,
            )
            return None
        t_ns = self._clock_ns()
        energy_uj = self._counter.update(raw_uj)
        error_uj = self.error_uj if self._started else 0
        self._started = True
        return Reading(self.name, energy_uj, t_ns, error_uj)


class _Zone(NamedTuple):
    path: Path
    kind: str  # package, dram, psys, core, uncore ...
    sensor_name: str  # package-0, dram-0-die-1, psys ...


def probe_rapl(
    root: Path = Path("/sys/class/powercap"),
    *,
    clock_ns: Callable[[], int] = time.monotonic_ns,
    read_text: ReadText = read_sysfs,
) -> list[Sensor]:
    """A sensor per readable zone, over disjoint domains; [] without RAPL. Never raises."""
    try:
        found: dict[str, tuple[RaplSensor, str]] = {}  # sensor name -> (sensor, kind)
        denied: list[str] = []
        for zone in _zones(root, read_text):
            name = "rapl:" + zone.sensor_name
            if zone.kind not in KIND_DOMAINS or name in found:
                continue  # part of a package, or the same zone through another control type
            try:
                max_uj = read_uint(zone.path / "max_energy_range_uj", read_text)
                if max_uj == 0:
                    raise ValueError("max_energy_range_uj is 0")
                read_uint(zone.path / "energy_uj", read_text)  # readable by us?
            except (OSError, ValueError) as err:
                if failure_kind(err) == "denied":
                    denied.append(str(zone.path / "energy_uj"))
                else:
                    logger.info("RAPL zone %s left out: %s", zone.path, err)
                continue
            sensor = RaplSensor(
                zone.path, name, KIND_DOMAINS[zone.kind], max_energy_uj=max_uj,
                clock_ns=clock_ns, read_text=read_text,
            )
            found[name] = (sensor, zone.kind)
        if denied:
            logger.warning(PERMISSION_HELP, ", ".join(denied))
        return _disjoint(list(found.values()))
    except Exception:  # a probe must not stop the agent: no sensor is a valid answer
        logger.exception("RAPL probe under %s failed", root)
        return []


def _disjoint(found: list[tuple[RaplSensor, str]]) -> list[Sensor]:
    kinds = {kind for _, kind in found}
    for needed, kept in SELECTIONS:
        if needed in kinds:
            left_out = [sensor.name for sensor, kind in found if kind not in kept]
            if left_out:
                logger.info("RAPL %s left out: overlaps the %s zones", ", ".join(left_out), needed)
            return [sensor for sensor, kind in found if kind in kept]
    return []


def _zones(root: Path, read_text: ReadText) -> list[_Zone]:
    """Zones in CONTROL_TYPES order, each once, whichever view of the tree root is."""
    paths: dict[str, Path] = {}  # intel-rapl:0:2 -> its directory

    def walk(directory: Path, depth: int) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return
        for entry in entries:
            zone = _ZONE.fullmatch(entry.name)
            is_zone = zone is not None and zone["type"] in CONTROL_TYPES
            # control type / zone / subzone: sysfs nests no deeper
            if (is_zone or entry.name in CONTROL_TYPES) and depth < 4 and entry.is_dir():
                if is_zone:
                    paths.setdefault(entry.name, entry)
                walk(entry, depth + 1)

    walk(root, 0)
    names: dict[str, str] = {}
    for sysfs_name, path in paths.items():
        try:
            names[sysfs_name] = read_text(path / "name").strip()
        except (OSError, ValueError) as err:
            logger.info("RAPL zone %s has no readable name: %s", path, err)
    zones = []
    for sysfs_name in sorted(names, key=_zone_order):
        name, parent = names[sysfs_name], names.get(sysfs_name.rpartition(":")[0], "")
        kind = name.split("-")[0]
        # Subzone names repeat in every package: qualify them with the package's number.
        suffix = parent.partition("-")[2] if parent.startswith("package-") else ""
        sensor_name = f"{kind}-{suffix}" if suffix and kind != "package" else name
        zones.append(_Zone(paths[sysfs_name], kind, sensor_name))
    return zones


def _zone_order(sysfs_name: str) -> tuple[int, list[int]]:
    control_type, *ids = sysfs_name.split(":")
    return CONTROL_TYPES.index(control_type), [int(i) for i in ids]
