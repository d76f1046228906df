"""A model test of the device buffer: appends (some on a full buffer, some with a record the
collector refuses), attribution, shipping through the real Shipper to a collector that stores
each seq once (with lost acks and outages), compaction and reopening, in any order Hypothesis
finds. After every step: seqs strictly increasing and never handed out twice, what the
collector acknowledged never in the buffer again, the database under its cap, and exactly-once
sums: what the collector holds, plus what the buffer holds that the collector does not, plus
what it refused, add up to everything appended."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent.buffer import Buffer, is_full
from agent.compaction import CompactionPolicy, Compactor
from agent.exporter import ExportOutcome, ExportResult, InMemoryExporter
from agent.record import InvalidRecord, UsageRecord, validate_all
from agent.shipper import Shipper
from tests.agent.buffer_helpers import (
    MINUTE_NS,
    START_UNIX_NS,
    all_records,
    append,
    make_record,
    totals,
)

CAP = 256 * 1024
BATCH = 4
# Thresholds a few appends reach, so that roll-ups and drops come often; the head is what the
# daemon keeps (agent.daemon.build_daemon): the shipper sends at most two batches before it
# deletes what was acknowledged.
POLICY = CompactionPolicy(compact_at=0.25, compact_to=0.15, drop_at=0.5, drop_to=0.4, keep_head_records=2 * BATCH)


def sums(records: Sequence[UsageRecord]) -> Counter:
    """What the collector adds up; failed calls aside (a gap record keeps their units, not
    which of them failed)."""
    counted = totals(records)
    counted.pop("failed", None)
    return counted


class ModelCollector(InMemoryExporter):
    """Stores a batch's records under their seqs once (ON CONFLICT DO NOTHING). fates: what
    happens to the next sends: "ok", "lost" (stored, the reply lost) or "down" (not stored)."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[int, UsageRecord] = {}
        self.fates: list[str] = []
        self.acked_through = 0

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        fate = self.fates.pop(0) if self.fates else "ok"
        if fate == "down":
            return ExportOutcome(ExportResult.RETRY, message="UNAVAILABLE")
        try:
            validate_all(records)
        except InvalidRecord as err:  # the whole batch is refused, nothing stored
            return ExportOutcome(ExportResult.REJECTED, message=f"INVALID_ARGUMENT: {err}")
        for record in records:
            self.stored.setdefault(record.seq, record)
        if fate == "lost":
            return ExportOutcome(ExportResult.RETRY, message="DEADLINE_EXCEEDED")
        self.acked_through = max(self.acked_through, records[-1].seq)
        return ExportOutcome(ExportResult.SUCCESS, acked_through_seq=records[-1].seq, inserted=len(records))


class BufferModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="buffer-model-"))
        self.path = self.folder / "buffer.db"
        self.buffer = Buffer.open(self.path, max_bytes=CAP)
        self.compactor = Compactor(self.buffer, policy=POLICY)
        self.collector = ModelCollector()
        self.appended: Counter = Counter()
        self.next_record = 0
        self.last_seq = 0  # the highest seq handed out
        self.undeleted = 0  # acknowledged records the buffer could not delete, in the last round

    def teardown(self) -> None:
        self.buffer.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _records(self, count: int, spread: bool, tag_sets: int, invalid: bool = False) -> list[UsageRecord]:
        """count records; spread: each in a minute of its own (roll-ups cannot shrink them);
        invalid: the last one is from 1970, which the collector refuses."""
        records = []
        for _ in range(count):
            i = self.next_record
            self.next_record += 1
            start = START_UNIX_NS + (i * MINUTE_NS if spread else i * 100_000_000)
            records.append(make_record(i, start_unix_ns=start, tags={"project": f"p{i % tag_sets}"}))
        if invalid:
            records[-1] = replace(records[-1], start_unix_ns=10**9)
        return records

    def _append(self, records: list[UsageRecord], attributed: bool) -> bool:
        before = self.buffer.stats()
        try:
            last = append(self.buffer, records, attributed=attributed)
        except sqlite3.Error as err:
            assert is_full(err), err
            assert self.buffer.stats() == before  # a failed append changes nothing
            return False
        assert last - len(records) + 1 > self.last_seq  # after every seq handed out before
        self.last_seq = last
        self.appended += sums(records)
        return True

    @initialize(full=st.booleans(), spread=st.booleans())
    def start(self, full, spread):
        """Half the runs start from a buffer at its cap."""
        if full:
            self.fill_up(spread)

    @rule(count=st.integers(1, 60), spread=st.booleans(), tag_sets=st.integers(1, 4), attributed=st.booleans(),
          invalid=st.sampled_from([False, False, False, True]))
    def append_records(self, count, spread, tag_sets, attributed, invalid):
        self._append(self._records(count, spread, tag_sets, invalid), attributed)

    @rule(spread=st.booleans())
    def fill_up(self, spread):
        """Append until the buffer refuses: its cap is reached."""
        for _ in range(200):
            if not self._append(self._records(25, spread, 2), True):
                return

    @rule()
    def attribute(self):
        """What energy attribution does to the records waiting for it."""
        try:
            with self.buffer.transaction() as conn:
                conn.execute("UPDATE records SET attributed = 1 WHERE attributed = 0")
        except sqlite3.Error as err:
            assert is_full(err), err

    @rule(fates=st.lists(st.sampled_from(["ok", "lost", "down"]), max_size=3), max_batches=st.integers(1, 6))
    def ship(self, fates, max_batches):
        self.collector.fates = list(fates)
        shipper = Shipper(self.buffer, self.collector, batch_size=BATCH, max_batches=max_batches, attributed_only=True)
        self.undeleted = shipper.run_once().undeleted

    @rule()
    def compact(self):
        self.compactor.run_once()

    @rule()
    def reopen(self):
        """The daemon restarts: a new connection (the cap kept in the file), a new compactor."""
        self.buffer.close()
        self.buffer = Buffer.open(self.path)
        assert self.buffer.limits.max_bytes == CAP
        self.compactor = Compactor(self.buffer, policy=POLICY)

    @rule()
    def drain(self):
        """The collector is reachable long enough: everything ships and the buffer empties."""
        self.attribute()
        self.collector.fates = []
        shipper = Shipper(self.buffer, self.collector, batch_size=BATCH, max_batches=10**6)
        shipper.run_once()
        assert self.buffer.stats().records == 0
        assert sums(list(self.collector.stored.values())) + sums(self._rejected()) == self.appended

    def _rejected(self) -> list[UsageRecord]:
        """The records the collector refused, set aside in the buffer."""
        return [record for record, _ in self.buffer.rejected(limit=10**9)]

    @invariant()
    def seqs_increase_and_are_never_reused(self):
        seqs = [record.seq for record in all_records(self.buffer)]
        assert seqs == sorted(set(seqs))
        assert not seqs or seqs[-1] <= self.last_seq

    @invariant()
    def acknowledged_records_are_gone(self):
        if self.undeleted:
            return
        first = self.buffer.stats().first_seq
        assert first is None or first > self.collector.acked_through

    @invariant()
    def each_record_counts_once(self):
        stored = self.collector.stored
        waiting = []
        for record in all_records(self.buffer):
            if record.seq in stored:  # sent, its ack lost: what it stands for never changed
                assert record == stored[record.seq]
            else:
                waiting.append(record)
        assert all(record.start_unix_ns == 10**9 for record in self._rejected())  # only what is invalid
        assert sums(list(stored.values())) + sums(waiting) + sums(self._rejected()) == self.appended

    @invariant()
    def the_database_keeps_under_its_cap(self):
        usage = self.buffer.usage()
        assert usage.db_bytes <= usage.db_max_bytes <= CAP


BufferModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
test_buffer_model = BufferModel.TestCase
