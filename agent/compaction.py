"""Compaction: keeps the device buffer under its cap without losing what records cost.

The daemon runs `Compactor(buffer, ...).run_once()` every round, before shipping. While the
buffer is less than `compact_at` full, that is one cheap look. Past it, the oldest records that
energy attribution is done with are replaced by per-minute roll-ups (agent.rollup), batch by
batch, until the buffer is down to `compact_to` or nothing more can be rolled up. Only if it is
still `drop_at` full are the oldest records dropped, down to `drop_to`: their sums go into gap
records, which ship in their place, so the collector's cost totals still hold and the loss (of
detail) is visible there. "Full" is measured against the cap, or against what the disk has
left when that is less (Buffer.room_bytes: appends leave a reserve of the disk free, for the
checkpoints and the batches of compaction).

Seqs. A roll-up or gap record takes the smallest seq of the records it replaces: it ships where
they would have, in seq order, and AUTOINCREMENT never hands that seq out again. A seq may be
taken over only if the collector cannot have it yet, so the first `keep_head_records` records
are never touched: they are what the shipper may have sent without seeing the ack (it sends
from the oldest record on, at most two batches before it deletes what was acknowledged, and
stops sending when a full buffer cannot delete them), and the collector would take a roll-up
under such a seq for a duplicate. keep_head_records is therefore at least twice the shipper's
batch size. Where no energy attribution runs (energy off), records never stop waiting for it,
and `attributed_only=False` rolls them up all the same.

Records the collector would refuse (agent.record.validate) and gap records are left as they
are. Every batch is one transaction that deletes first and then inserts into the pages it
freed, so compaction works on a full file; counters in the buffer's meta table
(Buffer.counters()) say what was done, and the log says it once per streak.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.buffer import Buffer, disk_free_bytes, is_full
from agent.record import InvalidRecord, Kind, UsageRecord, validate, validate_all
from agent.rollup import (
    GAP_WINDOW_NS,
    ROLLED_UP_KINDS,
    ROLLUP_WINDOW_NS,
    gap_records,
    roll_up,
)

logger = logging.getLogger(__name__)

_MIN_BATCH_RECORDS = 16


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """Fractions are of the room the buffer has: its cap less the WAL's share, or what the disk
    allows if that is less."""

    compact_at: float = 0.80
    compact_to: float = 0.60
    drop_at: float = 0.95
    drop_to: float = 0.85
    batch_records: int = 5_000  # at most, per transaction; fewer when the WAL's share is small
    keep_head_records: int = 4_000  # twice the shipper's default batch size
    rollup_window_ns: int = ROLLUP_WINDOW_NS
    gap_window_ns: int = GAP_WINDOW_NS

    def __post_init__(self) -> None:
        if not 0 < self.compact_to < self.compact_at <= self.drop_at and self.drop_to < self.drop_at:
            raise ValueError(f"inconsistent compaction thresholds: {self}")
        if self.batch_records < 1 or self.keep_head_records < 0:
            raise ValueError("batch_records must be positive and keep_head_records not negative")


@dataclass(slots=True)
class CompactionReport:
    fill_before: float = 0.0
    fill_after: float = 0.0
    rolled_up: int = 0  # records replaced by roll-ups
    rollups: int = 0  # roll-ups written
    dropped: int = 0  # records dropped
    dropped_units: int = 0  # the units (counts) they stood for
    gaps: int = 0  # gap records written


class Compactor:
    def __init__(
        self,
        buffer: Buffer,
        *,
        policy: CompactionPolicy = CompactionPolicy(),
        attributed_only: bool = True,
        free_bytes: Callable[[Path], int | None] = disk_free_bytes,
    ) -> None:
        """attributed_only: roll up only records that energy attribution is done with (the
        daemon attributes energy before compacting); False where no attribution runs, and
        records never stop waiting for it."""
        self._buffer = buffer
        self._attributed_only = attributed_only
        self._policy = policy
        self._free_bytes = free_bytes
        self._cursor = 0  # records up to this seq were looked at for roll-ups already
        self._streak: CompactionReport | None = None  # since the buffer last passed compact_at
        self._dropping = False  # in this streak: records were dropped
        self._stuck = False  # in this streak: nothing more could be dropped
        self._drop_after: int | None = None

    def fill(self) -> float:
        """How full the buffer is, as a fraction of its room (Buffer.room_bytes)."""
        room = self._buffer.room_bytes(self._free_bytes(self._buffer.path))
        return self._buffer.usage().used_bytes / room if room > 0 else 1.0

    def run_once(self) -> CompactionReport:
        policy = self._policy
        report = CompactionReport(fill_before=self.fill())
        fill = report.fill_before
        if fill >= policy.compact_at:
            self._begin_streak(fill)
            rows = self._rows_per_batch()
            while fill > policy.compact_to:
                done, rows = self._shrinking(self._compact_batch, rows, report)
                if done is False:
                    break
                if done is True:
                    fill = self.fill()
            if fill >= policy.drop_at:
                fill = self._drop(fill, rows, report)
        report.fill_after = fill
        self._end_streak(report)
        return report

    @staticmethod
    def _shrinking(step: Callable[[int, CompactionReport], bool], rows: int, report: CompactionReport) -> tuple[bool | None, int]:
        """step(rows, report), and the batch size for the next step: on a full disk (the WAL cannot
        grow) the step is undone, and is tried again with half as many records (None)."""
        try:
            return step(rows, report), rows
        except sqlite3.Error as err:
            if not is_full(err) or rows <= _MIN_BATCH_RECORDS:
                raise
            logger.debug("no room to compact %d records at once (%s): trying %d", rows, err, rows // 2)
            return None, rows // 2

    def _compact_batch(self, rows: int, report: CompactionReport) -> bool:
        """Roll up the next batch of records after the cursor; False when there is none."""
        head_end = self._head_end()
        if head_end is None:
            return False
        batch = self._buffer.read(
            after_seq=max(self._cursor, head_end), limit=rows, attributed_only=self._attributed_only
        )
        if not batch:
            return False
        candidates = _valid([record for record in batch if record.kind in ROLLED_UP_KINDS])
        rollups = [s for s in roll_up(candidates, window_ns=self._policy.rollup_window_ns) if len(s.seqs) > 1]
        if rollups:
            replaced = sum(len(s.seqs) for s in rollups)
            self._buffer.replace(
                [seq for s in rollups for seq in s.seqs], [s.record for s in rollups],
                {"compactions": 1, "rolled_up_records": replaced, "rollups_written": len(rollups)},
            )
            report.rolled_up += replaced
            report.rollups += len(rollups)
        self._cursor = batch[-1].seq
        return True

    def _drop(self, fill: float, rows: int, report: CompactionReport) -> float:
        """Drop the oldest records after the head, batch by batch, until fill is down to drop_to."""
        self._drop_after = self._head_end()
        while self._drop_after is not None and fill > self._policy.drop_to:
            done, rows = self._shrinking(self._drop_next, rows, report)
            if done is False:
                break
            fill = self.fill()
        if fill > self._policy.drop_to and not self._stuck:
            logger.error(
                "buffer %s is %.0f%% full and nothing more can be dropped: what is left are its %d"
                " oldest records (which may be on the collector already, unacknowledged), gap"
                " records and records the collector will refuse", self._buffer.path, fill * 100,
                self._policy.keep_head_records,
            )
            self._stuck = True
        return fill

    def _drop_next(self, rows: int, report: CompactionReport) -> bool:
        batch = self._buffer.read(after_seq=self._drop_after, limit=rows)
        if not batch:
            return False
        dropped = _valid([record for record in batch if record.kind is not Kind.GAP])
        if dropped:
            self._drop_batch(dropped, report)
        self._drop_after = batch[-1].seq
        return True

    def _drop_batch(self, dropped: list[UsageRecord], report: CompactionReport) -> None:
        summed = gap_records(dropped, window_ns=self._policy.gap_window_ns)
        units = sum(record.count for record in dropped)
        gaps = sum(1 for s in summed if s.record.kind is Kind.GAP)
        self._buffer.replace(
            [record.seq for record in dropped], [s.record for s in summed],
            {"dropped_records": len(dropped), "dropped_units": units, "gap_records": gaps},
        )
        if not self._dropping:
            logger.warning(
                "buffer %s is still full after compaction: dropping its oldest records (keeping"
                " their sums in gap records, which the collector counts as lost detail)", self._buffer.path,
            )
            self._dropping = True
        report.dropped += len(dropped)
        report.dropped_units += units
        report.gaps += gaps

    def _head_end(self) -> int | None:
        """The seq of the last record that must stay as it is (0: none); None when every record is one."""
        keep = self._policy.keep_head_records
        if keep == 0:
            return 0
        rows = self._buffer.query("SELECT seq FROM records ORDER BY seq LIMIT 1 OFFSET ?", (keep - 1,))
        return rows[0][0] if rows else None

    def _rows_per_batch(self) -> int:
        """Records per transaction: at most batch_records, and few enough that a batch's pages
        fit in half the WAL's share of the cap."""
        (count,) = self._buffer.query("SELECT count(*) FROM records")[0]
        if not count:
            return self._policy.batch_records
        row_bytes = max(self._buffer.usage().used_bytes // count, 1)
        return max(min(self._policy.batch_records, self._buffer.limits.wal_bytes // 2 // row_bytes), _MIN_BATCH_RECORDS)

    def _begin_streak(self, fill: float) -> None:
        if self._streak is None:
            self._streak = CompactionReport(fill_before=fill)
            logger.warning(
                "buffer %s is %.0f%% full: rolling its oldest records up into per-minute roll-ups",
                self._buffer.path, fill * 100,
            )

    def _end_streak(self, report: CompactionReport) -> None:
        streak = self._streak
        if streak is None:
            return
        for name in ("rolled_up", "rollups", "dropped", "dropped_units", "gaps"):
            setattr(streak, name, getattr(streak, name) + getattr(report, name))
        if report.fill_after < self._policy.compact_at:
            logger.info(
                "buffer %s is %.0f%% full: %d records rolled up into %d, %d dropped (%d units, in %d gap"
                " records) since it was %.0f%% full", self._buffer.path, report.fill_after * 100,
                streak.rolled_up, streak.rollups, streak.dropped, streak.dropped_units, streak.gaps,
                streak.fill_before * 100,
            )
            self._streak = None
            self._dropping = self._stuck = False


def _valid(records: list[UsageRecord]) -> list[UsageRecord]:
    """The records the collector would take; the others are left for it to refuse."""
    try:
        validate_all(records)
        return records
    except InvalidRecord:
        pass
    valid = []
    for record in records:
        try:
            validate(record)
        except InvalidRecord:
            continue
        valid.append(record)
    return valid
