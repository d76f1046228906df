"""Scale-out: collector replicas on one PostgreSQL database receiving the same batches at the
same moment (a device that retried through the load balancer) store each record exactly once
and count it once, in the device's counter and in the hourly cost roll-ups."""

from __future__ import annotations

import functools

import pytest
import sqlalchemy as sa

from collector.schema import records
from collector.store import DeviceInfo, Store
from tests.collector.databases import postgres_url, run_together  # noqa: F401
from tests.collector.helpers import (
    START_UNIX_NS,
    STREAM_ID,
    make_record,
    recomputed_rollups,
    stored_rollups,
)

REPORTED = DeviceInfo(hostname="edge-1", cpu_cores=4)
# Over two hours and two models, so that concurrent batches add to the same roll-up rows.
BATCHES = [[make_record(seq, cpu_time_ns=1_000 + seq * 7_919, start_unix_ns=START_UNIX_NS + seq * 3 * 10**9,
                        model="resnet50" if seq % 3 else "bert") for seq in range(first, first + 200)]
           for first in range(1, 2_001, 200)]
RECORDS = sum(len(batch) for batch in BATCHES)


@pytest.fixture
def replicas(postgres_url):  # noqa: F811
    first = Store.open(postgres_url)
    second = Store.open(postgres_url)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def single_ingest_report(tmp_path):
    """The report of the same records ingested once, by one collector."""
    with Store.open(f"sqlite:///{tmp_path / 'single.db'}") as store:
        device = store.add_device("edge-1")
        for batch in BATCHES:
            store.ingest(device.device_id, STREAM_ID, REPORTED, batch)
        return store.costs(period_costs=False, group_by=("device", "model"))


def counted_once(replica: Store, single_ingest_report) -> None:
    """The roll-ups are the sums of the records, each stored once: the report from them is the
    single collector's, and so is the one summing every record."""
    assert stored_rollups(replica) == recomputed_rollups(replica)
    assert replica.costs(period_costs=False, group_by=("device", "model")) == single_ingest_report
    assert replica.costs(period_costs=False, group_by=("device", "model"), from_records=True) == single_ingest_report
    assert replica.costs(period_costs=False, group_by=("model",), granularity="hour").total_records == RECORDS


def stored_keys(store: Store) -> list[tuple]:
    with store.engine.connect() as connection:
        return connection.execute(
            sa.select(records.c.device_id, records.c.stream_id, records.c.seq, sa.func.count())
            .group_by(records.c.device_id, records.c.stream_id, records.c.seq)
            .order_by(records.c.seq)
        ).all()


def test_replicas_ingesting_the_same_batches_at_once_store_and_count_each_record_once(
    replicas, single_ingest_report
):
    first, second = replicas
    device = first.add_device("edge-1")

    inserted = []
    for batch in BATCHES:  # both replicas receive each batch at the same moment
        results = run_together([
            functools.partial(replica.ingest, device.device_id, STREAM_ID, REPORTED, batch) for replica in replicas
        ])
        assert [result.duplicates for result in results] == [len(batch) - result.inserted for result in results]
        inserted.append(sum(result.inserted for result in results))

    assert inserted == [len(batch) for batch in BATCHES]
    assert stored_keys(first) == [(device.device_id, STREAM_ID, seq, 1) for seq in range(1, RECORDS + 1)]
    assert [row.records for row in second.list_devices()] == [RECORDS]
    counted_once(first, single_ingest_report)


def test_replicas_receiving_differently_split_overlapping_batches_at_once_count_each_record_once(
    replicas, single_ingest_report
):
    first, second = replicas
    device = first.add_device("edge-1")
    everything = [record for batch in BATCHES for record in batch]
    # The first replica receives batches of 200, the second of 300 shifted by 100: every batch
    # overlaps one or two of the other replica's.
    first_batches = BATCHES
    second_batches = [everything[:100]] + [everything[start:start + 300] for start in range(100, RECORDS, 300)]

    def ingest_all(replica: Store, batches: list) -> int:
        return sum(replica.ingest(device.device_id, STREAM_ID, REPORTED, batch).inserted for batch in batches)

    inserted = run_together([
        functools.partial(ingest_all, first, first_batches), functools.partial(ingest_all, second, second_batches),
    ])

    assert sum(inserted) == RECORDS
    assert stored_keys(second) == [(device.device_id, STREAM_ID, seq, 1) for seq in range(1, RECORDS + 1)]
    assert [row.records for row in first.list_devices()] == [RECORDS]
    counted_once(second, single_ingest_report)
