"""What metering lost or failed at, counted, and logged once per kind: a failing meter may no
more flood the application's log than break its calls."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


class Health:
    """Counters for the rare paths (drops, metering errors). Taking a lock is fine here: the
    common path, a record accepted into the queue, never comes through this class."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self.dropped = 0
        self.errors = 0

    def error(self, kind: str, err: object, *, log: bool = True) -> None:
        """Count one metering failure; log the first of each kind (unless the caller logs)."""
        with self._lock:
            self.errors += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if log and first:
            logger.warning(
                "metering failed (%s): %s; the application is unaffected, further failures "
                "of this kind are counted without logging", kind, err,
            )

    def drop(self, count: int, reason: str) -> None:
        """Count records that will never reach the buffer; log the first of each reason."""
        with self._lock:
            self.dropped += count
            first = reason not in self._logged
            self._logged.add(reason)
        if first:
            logger.warning("metering dropped %d record(s): %s", count, reason)
