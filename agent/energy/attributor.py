"""The attributor: in the daemon, before shipping, gives every record its energy and memory
from the sampler's passes, and writes the rest of the measured energy as idle records.

Time up to a watermark is final: every record that overlaps it is in the buffer. Records reach
the buffer within a flush round (50 ms) of their end, so the watermark trails the present by
`slack_ns` (1 s by default), and stops at the start of any call that a live process marked as
running for long (agent.in_flight). A record still running at the watermark keeps what it got
so far and gets the rest in later runs; one that arrives after time it overlaps was final (its
process was stalled for longer than the slack) gets energy only for what was not, and is
counted as late. Records that have waited `max_wait_ns` (no samples came: the sampler is
failing) are let go with the energy they have, so that shipping never stalls on attribution.
Records of an earlier boot are finished with that boot's samples. Idle energy is gathered into
one idle record per `idle_record_ns` (a minute), not one per run.

A run goes through the intervals in steps of at most `max_intervals` (a second of samples at the
default 10 Hz), each step read, split and written back before the next: after a long round of
shipping a backlog, the records that waited meanwhile are held in memory a step at a time,
not all at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.buffer import Buffer
from agent.energy import ledger
from agent.energy.attribution import IdlePower, SensorInfo, attribute, record_method
from agent.energy.ledger import Waiting

logger = logging.getLogger(__name__)

# Sampling intervals attributed in one step of a run (see the module docstring).
MAX_INTERVALS = 10


@dataclass(slots=True)
class AttributionReport:
    records: int = 0  # records given energy in this run
    finished: int = 0  # records whose attribution is now complete
    late: int = 0  # records that arrived after time they overlap was final
    let_go: int = 0  # records finished without (all of) their energy: no samples came
    closed: int = 0  # records of an earlier boot finished


class Attributor:
    def __init__(
        self,
        buffer: Buffer,
        sensors: Mapping[str, SensorInfo],
        *,
        boot: int,
        cpu_count: int,
        sample_period_ns: int,
        device_tags: Mapping[str, str] | None = None,
        slack_ns: int = 1_000_000_000,
        idle_record_ns: int = 60_000_000_000,
        max_wait_ns: int = 60_000_000_000,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        max_intervals: int = MAX_INTERVALS,
    ) -> None:
        self._buffer = buffer
        self._max_intervals = max_intervals
        self._sensors = dict(sensors)
        self._boot = boot
        self._cpu_count = cpu_count
        self._period_ns = sample_period_ns
        self._device_tags = dict(device_tags or {})
        self._slack_ns = slack_ns
        self._idle_record_ns = idle_record_ns
        self._max_wait_ns = max_wait_ns
        self._clock_ns = clock_ns
        self._wall_ns = wall_ns
        self._idle = IdlePower()

    def run_once(self) -> AttributionReport:
        report = AttributionReport()
        now_ns = self._clock_ns()
        unix_offset_ns = self._wall_ns() - now_ns
        for boot in ledger.boots_waiting(self._buffer):
            if boot == self._boot:
                self._attribute(boot, self._watermark_ns(now_ns), self._sensors, unix_offset_ns, report)
                report.let_go += ledger.let_go(self._buffer, boot, ended_before_ns=now_ns - self._max_wait_ns)
            else:
                last_ns = ledger.last_pass_ns(self._buffer, boot)
                if last_ns is not None:
                    # Its monotonic times are on its own clock: the wall offset it last saw, or,
                    # if it never attributed, the latest it can have been (it ended before ours began).
                    earlier_offset_ns = ledger.unix_offset_ns(self._buffer, boot)
                    if earlier_offset_ns is None:
                        earlier_offset_ns = unix_offset_ns - last_ns
                    self._attribute(boot, last_ns, ledger.sensors_in(self._buffer, boot), earlier_offset_ns, report)
                report.closed += ledger.close_boot(
                    self._buffer, boot, interval_ns=self._period_ns,
                    unix_offset_ns=ledger.unix_offset_ns(self._buffer, boot) or unix_offset_ns,
                    device_tags=self._device_tags,
                )
        if report.late or report.let_go:
            logger.warning(
                "energy attribution: %d record(s) arrived late, %d let go without samples",
                report.late, report.let_go,
            )
        return report

    def _watermark_ns(self, now_ns: int) -> int:
        """Time up to which every record of this boot is in the buffer: `slack_ns` ago, or the
        start of the oldest call still running for long in a live process."""
        watermark_ns = now_ns - self._slack_ns
        for pid, since_ns in ledger.long_calls(self._buffer, self._boot):
            if _alive(pid):
                watermark_ns = min(watermark_ns, since_ns)
            else:  # it died mid-call: its record will never come
                ledger.forget_long_call(self._buffer, self._boot, pid)
        return watermark_ns

    def _attribute(
        self, boot: int, until_ns: int, sensors: Mapping[str, SensorInfo], unix_offset_ns: int,
        report: AttributionReport,
    ) -> None:
        """Attribute the boot's intervals up to until_ns, max_intervals at a time."""
        given: set[int] = set()  # the records given energy, once each whatever the steps
        while True:
            spans = ledger.intervals(self._buffer, boot, until_ns=until_ns)
            if not spans:
                break
            step = _first_step(spans, self._max_intervals)
            self._attribute_step(boot, step, sensors, unix_offset_ns, report, given)
            if len(step) == len(spans):
                break
        report.records += len(given)

    def _attribute_step(
        self, boot: int, spans: list, sensors: Mapping[str, SensorInfo], unix_offset_ns: int,
        report: AttributionReport, given: set[int],
    ) -> None:
        after_ns = ledger.done_until(self._buffer, boot)
        # The latest pass used: spans are in order of their starts, and one across a sensor's
        # gap may end after the last of them.
        done_ns = max(span.t1_ns for span in spans)
        waiting = ledger.waiting(self._buffer, boot, start_before_ns=done_ns)
        split = attribute(spans, [w.activity for w in waiting], sensors, self._idle, cpu_count=self._cpu_count)
        for record in waiting:
            # First seen now, though it began before time already final: its process was late.
            if after_ns is not None and record.activity.start_ns < after_ns and not record.seen:
                report.late += 1
            _add_energy(record, split.records.get(record.activity.seq, {}), sensors)
        finishing = [w for w in waiting if w.activity.end_ns <= done_ns]
        ledger.peak_memory(self._buffer, boot, waiting, margin_ns=self._period_ns)
        idle: dict[tuple[str, str, str], list[int]] = {}
        for (name, method), (energy_uj, error_uj) in split.idle.items():
            parts = idle.setdefault((sensors[name].domain, sensors[name].source, method), [0, 0])
            parts[0] += energy_uj
            parts[1] += error_uj
        ledger.save(
            self._buffer, boot, waiting, done_ns=done_ns, interval_ns=self._period_ns, idle=idle,
            idle_span_ns=(spans[0].t0_ns if after_ns is None else after_ns, done_ns),
            unix_offset_ns=unix_offset_ns, device_tags=self._device_tags, idle_record_ns=self._idle_record_ns,
        )
        given.update(w.activity.seq for w in waiting if split.records.get(w.activity.seq))
        report.finished += len(finishing)


def _first_step(spans: list, max_intervals: int) -> list:
    """The first max_intervals spans (in order of their starts), and every later one that
    starts before one of them ends (a span across a sensor's gap can end after many others
    begin): the step's done mark is the latest end, and the samples before it are let go
    once the step is saved, so every span that starts before it must be in the step."""
    count = min(max_intervals, len(spans))
    done_ns = max(span.t1_ns for span in spans[:count])
    while count < len(spans) and spans[count].t0_ns < done_ns:
        done_ns = max(done_ns, spans[count].t1_ns)
        count += 1
    return spans[:count]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def _add_energy(record: Waiting, parts: Mapping[str, list[int]], sensors: Mapping[str, SensorInfo]) -> None:
    for name, (energy_uj, error_uj) in parts.items():
        info = sensors[name]
        key = (info.domain, info.source, record_method(info.domain, record.activity))
        total = record.energy.setdefault(key, [0, 0])
        total[0] += energy_uj
        total[1] += error_uj
