"""Ships the device buffer to the collector, in seq order, deleting only what was acknowledged.

Delivery is at-least-once (a lost ack means the batch is sent again) and the collector makes it
exactly-once by ignoring (device, stream, seq) keys it already has. So the rules here are:
never delete a record the collector has not acknowledged, never stop retrying, and never let
one bad record block the ones behind it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.buffer import Buffer
from agent.exporter import Exporter, ExportOutcome, ExportResult, export
from agent.failpoints import failpoint
from agent.record import UsageRecord

logger = logging.getLogger(__name__)


class Backoff:
    """Capped exponential backoff with full jitter: delay n is uniform in
    [0, min(max_s, initial_s * 2**n)]. Full jitter keeps a fleet of devices that lost the
    collector at the same moment from reconnecting in lockstep."""

    def __init__(
        self,
        *,
        initial_s: float = 0.5,
        max_s: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._rand = rand
        self.failures = 0

    def next_delay_s(self) -> float:
        ceiling = min(self._max_s, self._initial_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return ceiling * self._rand()

    def reset(self) -> None:
        self.failures = 0


@dataclass(slots=True)
class ShipReport:
    """What one run_once() did. `failure` is the ExportResult that stopped it, or None."""

    batches: int = 0
    shipped: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failure: ExportResult | None = None
    message: str = ""
    # True when run_once stopped at max_batches with records still waiting.
    more_pending: bool = False
    # Records the collector acknowledged that the buffer could not delete (it is full): they
    # are sent again, and the collector counts them once.
    undeleted: int = 0


class Shipper:
    def __init__(
        self,
        buffer: Buffer,
        exporter: Exporter,
        *,
        batch_size: int = 2000,
        max_batches: int = 50,
        attributed_only: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """attributed_only: ship only the records energy attribution is done with (the daemon
        attributes energy before shipping)."""
        self._buffer = buffer
        self._attributed_only = attributed_only
        self._exporter = exporter
        self._batch_size = batch_size
        # Shrinks when the collector says a batch is too large, grows back after successes.
        self._current_batch_size = batch_size
        self._max_batches = max_batches
        self._monotonic = monotonic
        self.last_success_monotonic: float | None = None

    def run_once(self) -> ShipReport:
        """Ship up to max_batches batches; stop early when the buffer is empty, a batch fails,
        or the buffer cannot delete what the collector acknowledged.

        One batch is in flight at a time, so acknowledgements come in seq order; while the
        collector stores it, the next batch is read and encoded (and dropped if this one
        fails), and it is sent before the acknowledged records are deleted, which keeps both
        sides busy."""
        report = ShipReport()
        stream_id = self._buffer.stream_id
        limit = self._current_batch_size
        records = self._buffer.read(limit=limit, attributed_only=self._attributed_only)
        pending = self._exporter.send(self._exporter.prepare(stream_id, records)) if records else None
        while records:
            last_batch = report.batches + 1 == self._max_batches
            # The next batch has the size this one's success would grow the batches to.
            next_limit = min(self._batch_size, self._current_batch_size * 2)
            upcoming = [] if last_batch else self._buffer.read(
                after_seq=records[-1].seq, limit=next_limit, attributed_only=self._attributed_only
            )
            upcoming_prepared = self._exporter.prepare(stream_id, upcoming) if upcoming else None
            failpoint("ship.after_send")
            outcome = pending.result()
            sent_upcoming = outcome.result is ExportResult.SUCCESS and bool(upcoming)
            if sent_upcoming:
                # On its way before this batch's records are deleted: the collector need not
                # wait for the device's disk.
                pending = self._exporter.send(upcoming_prepared)
            if not self._settle(records, outcome, report):
                break
            report.batches += 1
            self._current_batch_size = next_limit
            if report.undeleted:
                # Sending on would leave acknowledged records past the head of the buffer that
                # compaction leaves as it is, where a roll-up could take the seq of one the
                # collector has (agent.compaction): wait for room.
                break
            if last_batch:
                # The last batch was full: more is probably waiting behind it.
                report.more_pending = len(records) == limit
                break
            if upcoming and not sent_upcoming:
                # This batch was refused and bisected: the next one was held back until now.
                pending = self._exporter.send(upcoming_prepared)
            records, limit = upcoming, next_limit
        return report

    def _ship(self, records: Sequence[UsageRecord], report: ShipReport) -> bool:
        """Deliver records and wait; False when delivery must be retried later."""
        return self._settle(records, export(self._exporter, self._buffer.stream_id, records), report)

    def _settle(self, records: Sequence[UsageRecord], outcome: ExportOutcome, report: ShipReport) -> bool:
        """Act on the outcome of delivering records; False when delivery must be retried later
        (report.failure says why)."""
        result = outcome.result
        if result is ExportResult.SUCCESS:
            # Never delete past what this batch contained, whatever the reply says.
            acked = min(outcome.acked_through_seq, records[-1].seq)
            failpoint("ship.before_delete")
            if not self._buffer.delete_through(acked):  # a full buffer deletes nothing
                report.undeleted += sum(1 for record in records if record.seq <= acked)
            report.shipped += len(records)
            report.inserted += outcome.inserted
            report.duplicates += outcome.duplicates
            self.last_success_monotonic = self._monotonic()
            return True
        if result is ExportResult.REJECTED:
            if len(records) == 1:
                logger.error(
                    "record %d set aside: the collector refuses it: %s",
                    records[0].seq, outcome.message,
                )
                self._buffer.reject([records[0].seq], outcome.message)
                report.rejected += 1
                return True
            # Bisect to isolate the records the collector refuses; the others go through.
            middle = len(records) // 2
            return self._ship(records[:middle], report) and self._ship(records[middle:], report)
        if result is ExportResult.TOO_LARGE and len(records) > 1:
            self._current_batch_size = max(1, len(records) // 2)
        report.failure = result
        report.message = outcome.message
        return False
