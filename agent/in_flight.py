"""Which metered calls are running right now, and since when: found by the flusher, at no cost
to the calls themselves.

Energy attribution must not close a stretch of time while a call that overlaps it is still
running (its record is written only when it ends). A wrapped session's run() is a Python frame
for as long as the model runs, so the flusher finds running calls by looking through the
threads' stacks for that frame and reading its start time; spans, whose work runs in the
caller's own code, register themselves between __enter__ and __exit__.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import Protocol


class _Running(Protocol):
    start_ns: int


class InFlight:
    def __init__(self, codes: Iterable[CodeType]) -> None:
        self._codes = frozenset(codes)
        self.spans: set[_Running] = set()

    def oldest_start_ns(self) -> int | None:
        """The monotonic start of the oldest metered call running now, or None."""
        starts = [span.start_ns for span in list(self.spans)]
        for frame in sys._current_frames().values():
            starts += self._starts_in(frame)
        return min(starts, default=None)

    def _starts_in(self, frame: FrameType | None) -> list[int]:
        starts = []
        while frame is not None:
            if frame.f_code in self._codes:
                start_ns = frame.f_locals.get("start_ns")
                if type(start_ns) is int:  # unset until the call has read its clocks
                    starts.append(start_ns)
            frame = frame.f_back
        return starts
