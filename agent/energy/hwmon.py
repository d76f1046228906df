"""Energy and power meters of the generic hwmon interface (Documentation/hwmon/sysfs-interface.rst).

Layout: /sys/class/hwmon/hwmonN (a link into the device tree; the number is not stable across
boots) holds `name` (the driver: amd_energy, zenpower, amdgpu ...), and per channel N
`energyN_input` (µJ, cumulative), `powerN_input` (instantaneous) or `powerN_average` (µW both)
with an optional `energyN_label` / `powerN_label`. Energy counters are read as they are (a
counter that goes back was reset, e.g. by a driver reload: counting goes on from its new value);
power is integrated by PowerIntegrator. A chip with energy counters has its power read through
them already, so its power files are left out; of powerN_input and powerN_average, the
instantaneous one is taken (an average lags behind the 100 ms sampling).

Sensor names are "hwmon:<chip>/<label>" ("hwmon:amd_energy/Esocket0"), or the channel when
there is no label ("hwmon:power_meter/power1"); chips sharing a name are told apart by their
device ("hwmon:amdgpu@0000:0a:00.0/PPT"). The domain is CHIPS' (anything else measures the
board or a supply: DOMAIN_BOARD), and PARTS leaves out a chip's channels that are inside another
of its channels. Different chips can still overlap (an ACPI power meter counts the whole box,
an APU's amdgpu "PPT" the whole socket): which families are summed is probe.py's choice.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from agent.energy.sensor import DOMAIN_BOARD, DOMAIN_GPU, DOMAIN_PACKAGE, SOURCE_HWMON
from agent.energy.sensor import PowerIntegrator, Reading, Sensor, WarnOnce
from agent.energy.sysfs import ReadText, failure_kind, read_or_warn, read_sysfs, read_uint

logger = logging.getLogger(__name__)


class Chip(NamedTuple):
    domain: str
    energy_step_uj: int = 1  # the counter's step where the driver documents it, else µJ rounding


CHIPS = {
    "amd_energy": Chip(DOMAIN_PACKAGE, 16),  # the RAPL MSRs of AMD Zen: 1/2^16 J steps
    "zenergy": Chip(DOMAIN_PACKAGE, 16),  # amd_energy's successor for desktop Zen
    "zenpower": Chip(DOMAIN_PACKAGE),  # SVI2 telemetry: the core and SoC rails of a socket
    "fam15h_power": Chip(DOMAIN_PACKAGE),
    "amdgpu": Chip(DOMAIN_GPU),
    "i915": Chip(DOMAIN_GPU),
    "xe": Chip(DOMAIN_GPU),
    "nouveau": Chip(DOMAIN_GPU),
}
OTHER_CHIP = Chip(DOMAIN_BOARD)
# (chip, part, whole) by label: a part is left out when its chip has the whole.
PARTS = (
    ("amd_energy", "Ecore*", "Esocket*"),  # a core's energy is in its socket's
    ("zenergy", "Ecore*", "Esocket*"),
    ("xe", "pkg", "card"),  # the GPU package is on the card
    ("amdgpu", "fastPPT", "slowPPT"),  # one APU's power, averaged over a shorter window
    ("amdgpu", "PPT1", "PPT"),  # MI300: a second limit, over the same power
)
PERMISSION_HELP = (
    "cannot read %s: not readable by this user (amd_energy and zenergy restrict their counters "
    "to root, CVE-2020-12912). Run the agent as root, or give its group read access with a "
    "udev rule, or chmod o+r the files (until reboot). Until then these meters are left out."
)
_CHANNEL = re.compile(r"(?P<kind>energy|power)(?P<n>\d+)_(?P<attr>input|average)")


class EnergyCounter:
    """An energyN_input counter: energy counted since the first reading."""

    source = SOURCE_HWMON

    def __init__(
        self,
        path: Path,
        name: str,
        domain: str,
        *,
        step_uj: int = 1,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        read_text: ReadText = read_sysfs,
    ) -> None:
        self.name = name
        self.domain = domain
        self.path = path
        self.step_uj = step_uj
        self._clock_ns = clock_ns
        self._read_text = read_text
        self._warn = WarnOnce(name)
        self._last_uj: int | None = None
        self._total_uj = 0

    def read(self) -> Reading | None:
        raw_uj = read_or_warn(self.path, self._warn, self._read_text)
        if raw_uj is None:
            return None
        t_ns = self._clock_ns()
        error_uj = 0
        if self._last_uj is not None and raw_uj < self._last_uj:
            # Reset: what was used between the last reading and the reset is not known.
            self._warn("reset", "%s went back to %d µJ; counting from there", self.path, raw_uj)
        elif self._last_uj is not None:
            self._total_uj += raw_uj - self._last_uj
            error_uj = self.step_uj
        self._last_uj = raw_uj
        return Reading(self.name, self._total_uj, t_ns, error_uj)


class PowerInput:
    """A powerN_input / powerN_average file (µW) as mW, None when it cannot be read."""

    def __init__(self, path: Path, sensor: str, *, read_text: ReadText = read_sysfs) -> None:
        self.path = path
        self._read_text = read_text
        self._warn = WarnOnce(sensor)

    def __call__(self) -> float | None:
        power_uw = read_or_warn(self.path, self._warn, self._read_text)
        return None if power_uw is None else power_uw / 1000


class _Channel(NamedTuple):
    path: Path  # the file to read
    channel: str  # energy1, power2 ...
    label: str


def probe_hwmon(
    root: Path = Path("/sys/class/hwmon"),
    *,
    clock_ns: Callable[[], int] = time.monotonic_ns,
    read_text: ReadText = read_sysfs,
) -> list[Sensor]:
    """A sensor per readable energy or power channel of every chip; never raises."""
    try:
        chips = _chips(root, read_text)
        counts = Counter(name for name, _ in chips)
        sensors: list[Sensor] = []
        denied: list[str] = []
        for chip_name, chip_dir in chips:
            chip = CHIPS.get(chip_name, OTHER_CHIP)
            chip_id = chip_name if counts[chip_name] == 1 else f"{chip_name}@{_device(chip_dir)}"
            for path, channel, label in _channels(chip_name, chip_dir, read_text):
                try:
                    read_uint(path, read_text)
                except (OSError, ValueError) as err:
                    if failure_kind(err) == "denied":
                        denied.append(str(path))
                    else:
                        logger.info("hwmon %s left out: %s", path, err)
                    continue
                name = f"hwmon:{chip_id}/{label or channel}"
                sensors.append(_sensor(path, name, chip, clock_ns, read_text))
        if denied:
            logger.warning(PERMISSION_HELP, ", ".join(denied))
        return sensors
    except Exception:  # a probe must not stop the agent: no sensor is a valid answer
        logger.exception("hwmon probe under %s failed", root)
        return []


def _sensor(
    path: Path, name: str, chip: Chip, clock_ns: Callable[[], int], read_text: ReadText
) -> Sensor:
    if path.name.startswith("energy"):
        return EnergyCounter(
            path, name, chip.domain, step_uj=chip.energy_step_uj, clock_ns=clock_ns,
            read_text=read_text,
        )
    power_mw = PowerInput(path, name, read_text=read_text)
    return PowerIntegrator(name, chip.domain, SOURCE_HWMON, power_mw, clock_ns=clock_ns)


def _chips(root: Path, read_text: ReadText) -> list[tuple[str, Path]]:
    chips = []
    for chip_dir in sorted(root.glob("hwmon*"), key=lambda p: (len(p.name), p.name)):
        try:
            chips.append((read_text(chip_dir / "name").strip(), chip_dir))
        except (OSError, ValueError):
            continue  # no name: not a chip we can tell anything about
    return chips


def _channels(chip_name: str, chip_dir: Path, read_text: ReadText) -> list[_Channel]:
    """The chip's channels worth reading, in channel order: see the module docstring."""
    files: dict[tuple[str, int], Path] = {}  # ("power", 1) -> power1_input or power1_average
    try:
        paths = sorted(chip_dir.iterdir())
    except OSError:
        return []
    for path in paths:
        match = _CHANNEL.fullmatch(path.name)
        if match and not (match["kind"] == "energy" and match["attr"] == "average"):
            key = (match["kind"], int(match["n"]))
            if match["attr"] == "input" or key not in files:
                files[key] = path
    if any(kind == "energy" for kind, _ in files):
        files = {key: path for key, path in files.items() if key[0] == "energy"}
    channels = [
        _Channel(path, f"{kind}{n}", _label(chip_dir / f"{kind}{n}_label", read_text))
        for (kind, n), path in sorted(files.items())
    ]
    labels = [c.label for c in channels]
    channels = [c._replace(label="") if labels.count(c.label) > 1 else c for c in channels]
    return [c for c in channels if not _is_part(chip_name, c.label, labels)]


def _is_part(chip_name: str, label: str, labels: list[str]) -> bool:
    return any(
        chip == chip_name
        and fnmatch.fnmatchcase(label, part)
        and any(fnmatch.fnmatchcase(other, whole) for other in labels)
        for chip, part, whole in PARTS
    )


def _label(path: Path, read_text: ReadText) -> str:
    try:
        return "_".join(read_text(path).split()).replace("/", "_")
    except (OSError, ValueError):
        return ""


def _device(chip_dir: Path) -> str:
    """What tells two chips of one driver apart across boots: their device (a PCI address)."""
    device = chip_dir / "device"
    return device.resolve().name if device.is_symlink() else chip_dir.name
