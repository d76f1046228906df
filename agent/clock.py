"""The clocks of metering, behind one small protocol so tests can fix them: a metered call reads
the monotonic and thread CPU clocks, the flusher the wall clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time_ns(self) -> int:
        """Wall clock, Unix epoch: read by the flusher, to map monotonic starts to wall time."""

    def perf_counter_ns(self) -> int:
        """Monotonic clock: how long the call took."""

    def thread_time_ns(self) -> int:
        """CPU time of the calling thread: how much CPU the call used."""


class SystemClock:
    """The real clocks. Staticmethods, so a wrapped session can bind them once and call the C
    functions directly on the hot path."""

    time_ns = staticmethod(time.time_ns)
    perf_counter_ns = staticmethod(time.perf_counter_ns)
    thread_time_ns = staticmethod(time.thread_time_ns)
