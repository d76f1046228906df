"""Shipper semantics: order, delete-only-acked, bisection of rejects, backoff, batch shrinking."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent.buffer import Buffer, row_from_record
from agent.exporter import ExportOutcome, ExportResult, InMemoryExporter
from agent.record import UsageRecord
from agent.shipper import Backoff, Shipper
from tests.agent.test_device_buffer import make_record


@pytest.fixture
def buffer(tmp_path):
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        yield buffer


def fill(buffer: Buffer, n: int) -> None:
    buffer.append([row_from_record(make_record(i)) for i in range(n)])


def test_ships_everything_in_order_and_empties_the_buffer(buffer):
    fill(buffer, 25)
    exporter = InMemoryExporter()
    report = Shipper(buffer, exporter, batch_size=10).run_once()
    assert [r.seq for r in exporter.received] == list(range(1, 26))
    assert (report.batches, report.shipped, report.failure) == (3, 25, None)
    assert buffer.stats().records == 0


@pytest.mark.parametrize("failure", [ExportResult.RETRY, ExportResult.AUTH_FAILED])
def test_failures_keep_every_record(buffer, failure):
    fill(buffer, 5)
    exporter = InMemoryExporter(script=[failure])
    report = Shipper(buffer, exporter).run_once()
    assert report.failure is failure and report.shipped == 0
    assert buffer.stats().records == 5
    assert Shipper(buffer, exporter).run_once().shipped == 5
    assert [r.seq for r in exporter.received] == [1, 2, 3, 4, 5]


def test_stops_at_the_batch_limit_and_says_more_is_pending(buffer):
    fill(buffer, 30)
    report = Shipper(buffer, InMemoryExporter(), batch_size=10, max_batches=2).run_once()
    assert (report.shipped, report.more_pending) == (20, True)
    assert buffer.stats().records == 10


class RefusingExporter(InMemoryExporter):
    """Refuses any batch that contains one of the `bad` seqs, like the collector does."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.bad = bad

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        if self.bad & {r.seq for r in records}:
            self.calls += 1
            return ExportOutcome(ExportResult.REJECTED, message="seq: invalid")
        return super().export(stream_id, records)


def test_rejected_batch_is_bisected_so_good_records_still_go(buffer):
    fill(buffer, 16)
    exporter = RefusingExporter(bad={5, 11})
    report = Shipper(buffer, exporter, batch_size=16).run_once()
    assert sorted(r.seq for r in exporter.received) == [s for s in range(1, 17) if s not in (5, 11)]
    assert report.rejected == 2 and report.failure is None
    assert [record.seq for record, _ in buffer.rejected()] == [5, 11]
    assert buffer.stats().records == 0
    assert exporter.calls < 16  # log2 splits, not one call per record


def test_the_batch_after_a_refused_one_is_sent_and_judged_on_its_own(buffer):
    fill(buffer, 3)
    exporter = RefusingExporter(bad={2})
    report = Shipper(buffer, exporter, batch_size=2).run_once()
    assert sorted(r.seq for r in exporter.received) == [1, 3]
    assert [record.seq for record, _ in buffer.rejected()] == [2] and report.rejected == 1
    assert buffer.stats().records == 0


def test_a_full_buffer_that_cannot_delete_what_was_acknowledged_ends_the_round(tmp_path):
    class FullBuffer(Buffer):
        """Deletes nothing, as Buffer.delete_through does on a full disk."""

        def delete_through(self, seq: int) -> int:
            return 0

    with FullBuffer.open(tmp_path / "buffer.db") as full:
        fill(full, 30)
        exporter = InMemoryExporter()
        report = Shipper(full, exporter, batch_size=10).run_once()
    # The first batch was acknowledged; the second went out before that was known; no more.
    assert (report.batches, report.undeleted, report.failure) == (1, 10, None)
    assert [r.seq for r in exporter.received] == list(range(1, 21))


def test_never_deletes_past_what_it_sent(buffer):
    fill(buffer, 10)

    class OverAcking(InMemoryExporter):
        def export(self, stream_id, records):
            super().export(stream_id, records)
            return ExportOutcome(ExportResult.SUCCESS, acked_through_seq=10**9)

    Shipper(buffer, OverAcking(), batch_size=4, max_batches=1).run_once()
    assert [r.seq for r in buffer.read()] == [5, 6, 7, 8, 9, 10]


class SizeRecordingExporter(InMemoryExporter):
    def __init__(self, script):
        super().__init__(script=script)
        self.sizes: list[int] = []

    def export(self, stream_id, records):
        self.sizes.append(len(records))
        return super().export(stream_id, records)


def test_too_large_halves_the_batch_then_grows_back(buffer):
    fill(buffer, 40)
    exporter = SizeRecordingExporter(script=[ExportResult.TOO_LARGE])
    shipper = Shipper(buffer, exporter, batch_size=16)
    assert shipper.run_once().failure is ExportResult.TOO_LARGE
    shipper.run_once()
    assert exporter.sizes == [16, 8, 16, 16]
    assert [r.seq for r in exporter.received] == list(range(1, 41))


class EventLog(InMemoryExporter):
    """Logs prepare / send / result, and answers each batch only when result() is called."""

    def __init__(self, script=()):
        super().__init__(script=list(script))
        self.log: list[tuple[str, int]] = []

    def prepare(self, stream_id, records):
        self.log.append(("prepare", records[0].seq))
        return super().prepare(stream_id, records)

    def send(self, prepared):
        first_seq = prepared[1][0].seq
        self.log.append(("send", first_seq))
        exporter = self

        class Pending:
            def result(self):
                exporter.log.append(("result", first_seq))
                return exporter.export(*prepared)

        return Pending()


def test_the_next_batch_is_prepared_while_one_is_in_flight_and_acks_stay_in_order(buffer):
    fill(buffer, 30)
    exporter = EventLog()
    Shipper(buffer, exporter, batch_size=10).run_once()
    assert exporter.log == [
        ("prepare", 1), ("send", 1), ("prepare", 11), ("result", 1),
        ("send", 11), ("prepare", 21), ("result", 11),
        ("send", 21), ("result", 21),
    ]
    assert [r.seq for r in exporter.received] == list(range(1, 31))


def test_a_failed_batch_drops_the_prepared_one_and_keeps_everything(buffer):
    fill(buffer, 30)
    exporter = EventLog(script=[ExportResult.SUCCESS, ExportResult.RETRY])
    report = Shipper(buffer, exporter, batch_size=10).run_once()
    assert report.failure is ExportResult.RETRY
    assert [event for event in exporter.log if event[0] == "send"] == [("send", 1), ("send", 11)]
    assert [r.seq for r in buffer.read(limit=100)] == list(range(11, 31))


def test_backoff_grows_exponentially_capped_with_full_jitter():
    backoff = Backoff(initial_s=0.5, max_s=4.0, rand=lambda: 1.0)
    assert [backoff.next_delay_s() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay_s() == 0.5
    assert Backoff(initial_s=0.5, rand=lambda: 0.25).next_delay_s() == 0.125


def test_backoff_survives_very_long_outages():
    backoff = Backoff(initial_s=0.5, max_s=60, rand=lambda: 1.0)
    for _ in range(10_000):
        delay = backoff.next_delay_s()
    assert delay == 60
