"""Which boot of the machine this is: CLOCK_MONOTONIC restarts at every boot, so monotonic times
are only comparable within one. Records and samples carry this key beside their times."""

from __future__ import annotations

from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_key(path: Path = BOOT_ID_PATH) -> int:
    """The kernel's random boot id as an integer (its first 60 bits: collisions between two
    boots of one device are out of the question), or 0 where the kernel gives none."""
    try:
        return int(path.read_text().strip().replace("-", "")[:15], 16)
    except (OSError, ValueError):
        return 0
