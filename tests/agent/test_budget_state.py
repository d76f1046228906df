"""The daemon's budget state in the buffer: kept from replies, spend counted from the records
as they are written, reset by each reply; heartbeats (empty pushes); an older buffer file upgraded."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from agent.budget_store import BudgetStore, load_snapshot, read_version
from agent.buffer import MIGRATIONS, SCHEMA_VERSION, Buffer
from agent.exporter import ExportOutcome, ExportResult, InMemoryExporter
from agent.record import Kind
from agent.shipper import Shipper
from tests.agent.budget_helpers import PICOS, budget, hint
from tests.agent.buffer_helpers import append, make_record


def _records(buffer: Buffer, how_many: int, **fields) -> None:
    append(buffer, [make_record(i, **fields) for i in range(how_many)])


def test_a_schema_2_buffer_opens_with_empty_budget_tables(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("INSERT INTO meta (key, value) VALUES ('stream_id', ?), ('created_unix_ns', '1')", ("ab" * 16,))
    conn.execute("PRAGMA user_version = 2")
    conn.close()

    with Buffer.open(path) as buffer:
        assert buffer.stream_id == "ab" * 16
        assert read_version(buffer) == 0
        assert load_snapshot(buffer).budgets == ()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_reply_is_kept_and_each_scope_counts_its_records(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        store = BudgetStore(buffer)
        budgets = [
            budget("all"), budget("dev", "device:edge-1"), budget("site", "site:lab"),
            budget("resnet", "model:resnet50"), budget("search", "tag:project=search"),
            budget("ads", "tag:project=ads"), budget("joules", "global", unit="energy"),
        ]
        store.keep_reply(budgets, [hint("resnet50", 3 * PICOS, energy_uj=7), hint("bert", 5 * PICOS, energy_uj=11)],
                         received_unix_ns=123, acked_through_seq=0)
        _records(buffer, 4)  # resnet50, bert, resnet50, bert; project=search
        append(buffer, [make_record(0, kind=Kind.IDLE, model="idle")])  # not an inference

        assert store.count_new_records() == 4
        snapshot = load_snapshot(buffer)
        spent = {b.name: snapshot.spent_on(b) for b in snapshot.budgets}
        assert spent == {
            "all": 16 * PICOS, "dev": 16 * PICOS, "site": 16 * PICOS, "resnet": 6 * PICOS,
            "search": 16 * PICOS, "ads": 0, "joules": 36,
        }
        assert snapshot.received_unix_ns == 123
        assert store.count_new_records() == 0  # counted once

        _records(buffer, 1, kind=Kind.ROLLUP, count=10)  # 10 resnet50 inferences
        assert store.count_new_records() == 1
        assert load_snapshot(buffer).spent["bgt_resnet"] == 36 * PICOS


def test_a_model_without_a_hint_is_priced_at_the_dearest_hint(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        store = BudgetStore(buffer)
        store.keep_reply([budget("all")], [hint("resnet50", 3), hint("bert", 5)], received_unix_ns=1,
                         acked_through_seq=0)
        _records(buffer, 2, model="new-model")
        store.count_new_records()
        assert load_snapshot(buffer).spent["bgt_all"] == 10


def test_a_reply_resets_the_counts_to_what_it_did_not_acknowledge(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        store = BudgetStore(buffer)
        store.keep_reply([budget("all")], [hint("resnet50", 1), hint("bert", 1)], received_unix_ns=1,
                         acked_through_seq=0)
        _records(buffer, 5)  # seqs 1..5
        store.count_new_records()
        assert load_snapshot(buffer).spent["bgt_all"] == 5

        version = read_version(buffer)
        store.keep_reply([budget("all", lease_pico=50)], [hint("resnet50", 1), hint("bert", 1)],
                         received_unix_ns=2, acked_through_seq=3)
        assert read_version(buffer) > version
        assert load_snapshot(buffer).spent == {"bgt_all": 0}
        store.count_new_records()
        assert load_snapshot(buffer).spent["bgt_all"] == 2  # seqs 4 and 5


def test_a_reply_without_budgets_writes_nothing_unless_it_removes_some_or_brings_new_hints(tmp_path):
    with Buffer.open(tmp_path / "b.db") as buffer:
        store = BudgetStore(buffer)
        store.keep_reply([], [], received_unix_ns=1, acked_through_seq=9)
        assert read_version(buffer) == 0
        store.keep_reply([], [hint("resnet50", 1)], received_unix_ns=1, acked_through_seq=9)
        assert read_version(buffer) == 1  # kept for agent.router, which prices routes with them
        store.keep_reply([], [hint("resnet50", 1)], received_unix_ns=2, acked_through_seq=9)
        assert read_version(buffer) == 1
        store.keep_reply([budget("all")], [], received_unix_ns=1, acked_through_seq=9)
        store.keep_reply([], [], received_unix_ns=2, acked_through_seq=9)
        assert read_version(buffer) == 3
        assert load_snapshot(buffer).budgets == ()
        _records(buffer, 3)
        assert store.count_new_records() == 0  # nothing to count against


@dataclass
class BudgetingExporter(InMemoryExporter):
    """Answers every push with the budgets it is given, and records each batch's size."""

    budgets: tuple = ()
    batch_sizes: list[int] = field(default_factory=list)

    def export(self, stream_id, records):
        self.batch_sizes.append(len(records))
        outcome = super().export(stream_id, records)
        if outcome.result is not ExportResult.SUCCESS:
            return outcome
        return ExportOutcome(ExportResult.SUCCESS, acked_through_seq=outcome.acked_through_seq, budgets=self.budgets)


def test_an_idle_shipper_sends_an_empty_heartbeat_that_brings_the_reply(tmp_path):
    now = [0.0]
    replies: list = []
    exporter = BudgetingExporter()
    with Buffer.open(tmp_path / "b.db") as buffer:
        shipper = Shipper(buffer, exporter, heartbeat_s=30, monotonic=lambda: now[0],
                          on_reply=lambda outcome, acked_seq: replies.append((outcome.budgets, acked_seq)))
        _records(buffer, 3)
        shipper.run_once()
        assert replies == [((), 3)]

        now[0] = 29.0
        shipper.run_once()
        assert exporter.calls == 1  # not yet due

        all_budget = budget("all")
        exporter.budgets = (all_budget,)
        now[0] = 30.0
        report = shipper.run_once()
        assert report.failure is None and report.shipped == 0
        assert exporter.batch_sizes == [3, 0]  # an empty batch
        # It acknowledges nothing: the records the collector holds are still those through 3.
        assert replies[-1] == ((all_budget,), 3)
        assert shipper.acked_seq == 3

        _records(buffer, 2)  # seqs 4 and 5 wait until the next round: no heartbeat in between
        now[0] = 45.0
        shipper.run_once()
        assert exporter.batch_sizes == [3, 0, 2] and replies[-1] == ((all_budget,), 5)

        exporter.script = [ExportResult.RETRY]
        now[0] = 75.0
        assert shipper.run_once().failure is ExportResult.RETRY
        now[0] = 80.0
        shipper.run_once()
        assert exporter.calls == 4  # a failed heartbeat waits its turn too


def test_a_device_that_never_shipped_heartbeats_and_keeps_its_records(tmp_path):
    now = [0.0]
    replies: list = []
    all_budget = budget("all")
    exporter = BudgetingExporter(budgets=(all_budget,))
    with Buffer.open(tmp_path / "b.db") as buffer:
        shipper = Shipper(buffer, exporter, heartbeat_s=1, monotonic=lambda: now[0], attributed_only=True,
                          on_reply=lambda outcome, acked_seq: replies.append((outcome.budgets, acked_seq)))
        append(buffer, [make_record(0)], attributed=False)  # not ready to ship: energy attribution waits
        shipper.run_once()
        assert exporter.calls == 0  # not yet due
        now[0] = 1.0
        report = shipper.run_once()
        assert report.failure is None and report.shipped == 0
        assert exporter.batch_sizes == [0]
        assert replies == [((all_budget,), 0)]
        assert buffer.stats().records == 1


def test_a_collector_that_refuses_empty_batches_gets_no_more_heartbeats(tmp_path):
    now = [0.0]
    exporter = BudgetingExporter(script=[ExportResult.REJECTED])
    with Buffer.open(tmp_path / "b.db") as buffer:
        shipper = Shipper(buffer, exporter, heartbeat_s=1, monotonic=lambda: now[0])
        now[0] = 1.0
        assert shipper.run_once().failure is None  # not a delivery failure: nothing backs off
        now[0] = 10.0
        shipper.run_once()
        assert exporter.batch_sizes == [0]
        _records(buffer, 1)
        assert shipper.run_once().shipped == 1
