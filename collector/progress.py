"""Progress of long commands (exports, re-pricing) on stderr, so that stdout keeps only the
result (and --json stays parseable).

On a terminal it is a bar drawn in place by tqdm: done, total and percentage where the total is
known, rate and time left. Anywhere else (a pipe, a log, systemd's journal) it is a plain line
every `line_every` units, which reads well where a redrawn bar would be a smear of carriage
returns; the last line, at close(), says what was done in all.

    with Progress("re-pricing", total=records, unit="records") as progress:
        for page in pages:
            ...
            progress.update(len(page))

Units done beyond a known total (work that grew meanwhile) show as more than 100 %.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm

DEFAULT_LINE_EVERY = 100_000


class Progress:
    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "records",
        stream: TextIO | None = None,
        line_every: int = DEFAULT_LINE_EVERY,
        bar: bool | None = None,
    ) -> None:
        """label: what is being done, as a line starts ("re-pricing"). total: the units the
        work comes to, if known. line_every: units between plain lines (0: none). bar: draw a
        bar (default: when the stream is a terminal)."""
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._total = total
        self._unit = unit
        self._line_every = line_every
        self._done = self._lined = 0
        self._next_line = line_every
        if bar is None:
            bar = self._stream.isatty()
        self._bar = (
            tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, file=self._stream, dynamic_ncols=True)
            if bar else None
        )

    @property
    def done(self) -> int:
        return self._done

    def update(self, units: int, *, total: int | None = None) -> None:
        """`units` more are done; `total`, if given, is what the work now comes to."""
        self._done += units
        if total is not None and total != self._total:
            self._total = total
            if self._bar is not None:
                self._bar.total = total
        if self._bar is not None:
            self._bar.update(units)
            return
        if self._line_every and self._done >= self._next_line:
            self._next_line = (self._done // self._line_every + 1) * self._line_every
            self._line()

    def _line(self) -> None:
        done = f"{self._done:,}" if not self._total else f"{self._done:,} of {self._total:,}"
        share = f" ({self._done * 100 // self._total}%)" if self._total else ""
        print(f"infermeter: {self._label}: {done} {self._unit}{share}", file=self._stream, flush=True)
        self._lined = self._done

    def close(self) -> None:
        """Finish the bar, or print the last line (what was done in all) if it was not printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._line_every and self._done != self._lined:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.close()
