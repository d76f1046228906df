"""How busy the machine's CPUs were: the whole machine's busy CPU time from /proc/stat, the
figure attribution divides the measured dynamic energy by (our records' share of it)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.energy.sysfs import read_head

# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal guest
# guest_nice, in clock ticks. Busy is everything but idle and iowait; guest time is already
# counted in user and nice.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
# The aggregate line comes first: 11 counters of at most 20 digits.
_HEAD_BYTES = 512


class CpuActivity:
    def __init__(self, proc: Path = Path("/proc"), *, ticks_per_s: int | None = None) -> None:
        self._stat = proc / "stat"
        self._ns_per_tick = 10**9 // (ticks_per_s or os.sysconf("SC_CLK_TCK"))

    def busy_ns(self) -> int | None:
        """CPU time spent busy by all CPUs since boot, or None if /proc/stat is unreadable."""
        try:
            first = read_head(self._stat, _HEAD_BYTES).split(b"\n", 1)[0].split()
            if first[0] != b"cpu":
                return None
            return sum(int(first[1 + i]) for i in _BUSY_FIELDS) * self._ns_per_tick
        except (OSError, ValueError, IndexError):
            return None

    def cpu_count(self) -> int:
        """CPUs online (the per-CPU lines of /proc/stat), at least 1."""
        try:
            with open(self._stat, encoding="ascii") as stat:
                count = sum(1 for line in stat if line.startswith("cpu") and line[3:4].isdigit())
        except OSError:
            count = 0
        return count or os.cpu_count() or 1
