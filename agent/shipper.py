"""Ships the device buffer to the collector, in seq order, deleting only what was acknowledged.

Delivery is at-least-once (a lost ack means the batch is sent again) and the collector makes it
exactly-once by ignoring (device, stream, seq) keys it already has. So the rules here are:
never delete a record the collector has not acknowledged, never stop retrying, and never let
one bad record block the ones behind it.

Each successful reply goes to on_reply with the seq through which the collector holds the
stream (the daemon keeps the reply's budget state: agent.budget_store). When nothing has gone
out for heartbeat_s, a heartbeat carries the budget changes to an idle device, or to one that
never shipped a record: an empty Push (first_seq and last_seq 0), which the collector answers
like any other and acknowledges nothing by (acked_through_seq 0).
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
        heartbeat_s: float = 0.0,
        on_reply: Callable[[ExportOutcome, int], None] | None = None,
    ) -> None:
        """attributed_only: ship only the records energy attribution is done with (the daemon
        attributes energy before shipping). heartbeat_s: push at least this often (0: never),
        an empty Push when nothing is waiting. on_reply: each successful outcome, with
        acked_seq (the highest seq the collector acknowledged to this shipper; 0: none yet)."""
        self._buffer = buffer
        self._attributed_only = attributed_only
        self._exporter = exporter
        self._batch_size = batch_size
        # Shrinks when the collector says a batch is too large, grows back after successes.
        self._current_batch_size = batch_size
        self._max_batches = max_batches
        self._monotonic = monotonic
        self.last_success_monotonic: float | None = None
        self._heartbeat_s = heartbeat_s
        self._on_reply = on_reply
        self._last_push_monotonic = monotonic()
        self.acked_seq = 0

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
        if not records and self._heartbeat_due():
            self._heartbeat(report)
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

    def _heartbeat_due(self) -> bool:
        return self._heartbeat_s > 0 and self._monotonic() - self._last_push_monotonic >= self._heartbeat_s

    def _heartbeat(self, report: ShipReport) -> None:
        """Send an empty batch, for the reply; it acknowledges nothing and deletes nothing."""
        self._last_push_monotonic = self._monotonic()  # a failed one waits its turn too
        outcome = export(self._exporter, self._buffer.stream_id, [])
        if outcome.result is ExportResult.SUCCESS:
            self.last_success_monotonic = self._last_push_monotonic
            self._reply(outcome)
            return
        if outcome.result is ExportResult.REJECTED:
            # A collector older than empty batches: it has no budgets to send either.
            logger.warning("the collector refuses heartbeats (%s): no more of them", outcome.message)
            self._heartbeat_s = 0.0
            return
        report.failure = outcome.result
        report.message = outcome.message

    def _reply(self, outcome: ExportOutcome) -> None:
        if self._on_reply is None:
            return
        try:
            self._on_reply(outcome, self.acked_seq)
        except Exception:  # the batch is stored all the same: its ack must not be lost
            logger.exception("keeping the collector's budget state failed")

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
            self.last_success_monotonic = self._last_push_monotonic = self._monotonic()
            self.acked_seq = max(self.acked_seq, acked)
            self._reply(outcome)
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
