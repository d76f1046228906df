"""The systemd watchdog: WATCHDOG=1 comes only from a healthy main loop.

Under systemd (`WatchdogSec=` in the unit, WATCHDOG_USEC in the environment) the daemon must
ping at least every half of the timeout, or systemd kills it (SIGABRT: the journal then holds
every thread's traceback) and starts it again. The rule for sending a ping:

1. **The main loop is alive.** Pings are sent by the main loop itself, at the end of each step:
   after each task (energy attribution, compaction), after each batch the collector
   acknowledged, at the end of each shipping round, and while it sleeps between rounds. Each
   step is bounded (a batch waits at most `collector.timeout_s` for its answer, a buffer write
   at most the busy timeout for the lock), so a main loop stuck in one call (an SQLite write or
   fsync that never returns, a deadlock, a wedged driver) stops the pings, and only then.
2. **The sampler makes progress** (energy on): its thread took a pass within `stall_s` (the
   watchdog timeout). A sampler stuck in a sensor read or a write stops the pings too, though
   the main loop is alive: attribution, and so shipping, would wait on it forever.

What does *not* stop the pings: the collector down, slow, refusing the device token or some
records; a full disk; records waiting for a long call's energy. Those are conditions of the
world, not of this process: the daemon sees them, keeps every record, backs off and retries,
and says so in STATUS=, the log and `infermeter agent status`. A restart cannot cure them, and
a daemon killed for them would restart in a loop, losing its in-memory state (the sampler's
unwritten passes, the backoff) and hiding the cause behind the restarts. Likewise, a backlog
that does not move while the collector answers is the collector's or the disk's doing (acks
that cover nothing, deletes refused on a full disk), and is reported, not punished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from agent import systemd

logger = logging.getLogger(__name__)


class Check(Protocol):
    """A part of the daemon whose progress the watchdog requires."""

    def problem(self, now_s: float) -> str | None:
        """Why the daemon is not healthy at monotonic time now_s, or None if it is."""


class SamplerProgress:
    """The sampler's thread must keep taking passes: `passes()` (its pass counter) must change
    within stall_s."""

    def __init__(self, passes: Callable[[], int], *, stall_s: float) -> None:
        self._passes = passes
        self._stall_s = stall_s
        self._last: int | None = None
        self._since_s = 0.0

    def problem(self, now_s: float) -> str | None:
        passes = self._passes()
        if passes != self._last:
            self._last, self._since_s = passes, now_s
            return None
        if now_s - self._since_s < self._stall_s:
            return None
        return f"the energy sampler has taken no pass for {now_s - self._since_s:.0f} s"


class Watchdog:
    """Pings systemd's watchdog from the main loop: kick() after each step; a ping is sent when
    one is due (every quarter of the timeout at most, so pings come at least every half) and
    every check passes. Disabled (kick() does nothing) without a timeout."""

    def __init__(
        self,
        timeout_s: float | None,
        *,
        checks: Sequence[Check] = (),
        notify: Callable[[str], object] = systemd.notify,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._checks = list(checks)
        self._notify = notify
        self._monotonic = monotonic
        self._last_ping_s = float("-inf")
        self.pings = 0
        # Why the last due ping was withheld, or None while healthy.
        self.problem: str | None = None

    @property
    def enabled(self) -> bool:
        return self.timeout_s is not None

    @property
    def wake_s(self) -> float:
        """How long the main loop may sleep between kicks."""
        return self.timeout_s / 4 if self.timeout_s is not None else float("inf")

    def kick(self) -> bool:
        """A step of the main loop is done: ping if due and healthy. True if a ping was sent."""
        if self.timeout_s is None:
            return False
        now_s = self._monotonic()
        if now_s - self._last_ping_s < self.wake_s:
            return False
        problem = next(filter(None, (check.problem(now_s) for check in self._checks)), None)
        if problem is not None:
            if self.problem is None:
                logger.error(
                    "not pinging the systemd watchdog: %s; systemd restarts the daemon after %.0f s",
                    problem, self.timeout_s,
                )
            self.problem = problem
            return False
        if self.problem is not None:
            logger.info("healthy again; pinging the systemd watchdog")
            self.problem = None
        self._last_ping_s = now_s
        self.pings += 1
        self._notify("WATCHDOG=1")
        return True
