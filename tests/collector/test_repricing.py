"""Re-pricing on demand (Store.reprice, collector.repricing) on SQLite and PostgreSQL: a corrected
price book re-prices exactly the records in range as ingest would price them now, the roll-ups
stay equal to the records' sums, reports move by the difference, a second run changes nothing,
and ingest running meanwhile on another replica loses nothing and counts nothing twice."""

from __future__ import annotations

import calendar
import json

import pytest
import sqlalchemy as sa

from agent.record import MIN_START_UNIX_NS, EnergyShare
from collector import repricing
from collector.books import PriceBooks
from collector.repricing import PRICING_COLUMNS
from collector.rollups import HOUR_NS
from collector.schema import records
from collector.store import DeviceInfo, RepriceResult, Store
from tests.collector.databases import run_together, store_url  # noqa: F401
from tests.collector.helpers import (
    STREAM_ID,
    make_record,
    recomputed_rollups,
    stored_rollups,
)
from tests.collector.helpers import run_cli as run

REPORTED = DeviceInfo(hostname="edge", cpu_cores=4)
NOW = calendar.timegm((2027, 1, 1, 0, 0, 0)) * 10**9
FIRST_HOUR = calendar.timegm((2026, 11, 10, 0, 0, 0)) * 10**9
HOURS = 36
BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1199.99", "lifetime_years": 4, "upkeep_per_year": "120.00"}},
    "energy": {"default": {"kwh": "0.1537", "pue": "1.35"}},
    "models": {"resnet50": {"input_per_million": "0.05", "output_per_million": "0.08", "request": "0.000001"}},
}
CORRECTED = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "2399.99", "lifetime_years": 4, "upkeep_per_year": "240.00"}},
    "energy": {"default": {"kwh": "0.3074", "pue": "1.2"}},
    "models": {"resnet50": {"input_per_million": "0.07", "output_per_million": "0.11", "request": "0.000003"}},
}
CORRECTED_FROM = FIRST_HOUR + 12 * HOUR_NS
SINCE = FIRST_HOUR + 10 * HOUR_NS + 30 * 60 * 10**9  # partial hours at both ends
UNTIL = FIRST_HOUR + 30 * HOUR_NS + 15 * 60 * 10**9
END = FIRST_HOUR + HOURS * HOUR_NS


def fleet_records(first_seq: int = 1, per_hour: int = 3) -> list:
    """Records every hour of the range, at its start, inside it and at its last nanosecond."""
    offsets = (0, 20 * 60 * 10**9, HOUR_NS - 1, 7 * 60 * 10**9)[:per_hour]
    made = []
    for hour in range(HOURS):
        for offset in offsets:
            seq = first_seq + len(made)
            made.append(make_record(
                seq, start_unix_ns=FIRST_HOUR + hour * HOUR_NS + offset, cpu_time_ns=1_000_000 + seq * 7_919,
                gpu_time_ns=seq * 104_729, input_tokens=seq % 500, output_tokens=seq % 300, count=1 + seq % 3,
                model="resnet50" if seq % 4 else "bert", tags={"project": "search" if seq % 2 else "ads"},
                energy=(EnergyShare("cpu", 3_000 + seq * 13, "rapl", "cpu-time", 100_000_000, 50),),
            ))
    return made


def ingest(store: Store, device_id: str, batch: list, *, stream: str = STREAM_ID, size: int = 40) -> None:
    for first in range(0, len(batch), size):
        store.ingest(device_id, stream, REPORTED, batch[first:first + size])


def pricing(store: Store, device_id: str) -> dict[int, tuple]:
    """seq -> (start, the pricing columns) of the device's records."""
    query = sa.select(records.c.seq, records.c.start_unix_ns, *(records.c[name] for name in PRICING_COLUMNS)).where(
        records.c.device_id == device_id
    )
    with store.engine.connect() as connection:
        return {row[0]: tuple(row[1:]) for row in connection.execute(query)}


def record_costs(store: Store, **query):
    """The report of the records' own costs (no period costs)."""
    return store.costs(period_costs=False, **query)


def device_cost(store: Store, name: str, **query):
    report = record_costs(store, group_by=("device",), **query)
    return {group.key[0]: group.cost for group in report.groups}[name]


@pytest.fixture
def store(store_url):  # noqa: F811
    with Store.open(store_url, clock=lambda: NOW) as store:
        store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        yield store


def test_a_corrected_book_reprices_exactly_the_records_in_range_as_ingest_now_would(store):
    edge = store.add_device("edge-1")
    ingest(store, edge.device_id, fleet_records())
    before = pricing(store, edge.device_id)
    cost_before = device_cost(store, "edge-1", since_unix_ns=FIRST_HOUR, until_unix_ns=END)
    book_id = store.add_price_book(CORRECTED, effective_from_unix_ns=CORRECTED_FROM)
    # The same records ingested now: what re-pricing must make of edge-1's.
    twin = store.add_device("twin")
    ingest(store, twin.device_id, fleet_records())

    result = store.reprice(since_unix_ns=SINCE, until_unix_ns=UNTIL, device="edge-1")

    after, expected = pricing(store, edge.device_id), pricing(store, twin.device_id)
    in_range = {seq for seq, (start, *_) in before.items() if SINCE <= start < UNTIL}
    corrected = {seq for seq in in_range if before[seq][0] >= CORRECTED_FROM}
    assert {seq for seq in before if after[seq] != before[seq]} == corrected
    assert all(after[seq] == expected[seq] for seq in in_range)
    assert all(after[seq][1] == book_id for seq in corrected)
    cost_at = 1 + PRICING_COLUMNS.index("cost_pico")
    assert result == RepriceResult(
        records=len(in_range), changed=len(corrected),
        old_cost_pico=sum(before[seq][cost_at] for seq in in_range),
        new_cost_pico=sum(after[seq][cost_at] for seq in in_range), currency="USD",
    )
    assert result.new_cost_pico > result.old_cost_pico
    assert stored_rollups(store) == recomputed_rollups(store)
    cost_after = device_cost(store, "edge-1", since_unix_ns=FIRST_HOUR, until_unix_ns=END)
    assert (cost_after - cost_before) * 10**12 == result.new_cost_pico - result.old_cost_pico
    for since, until in ((SINCE, UNTIL), (FIRST_HOUR + 90 * 10**9, END - 1), (None, None)):
        window = {"since_unix_ns": since, "until_unix_ns": until, "group_by": ("device", "model", "tag:project")}
        assert record_costs(store, **window) == record_costs(store, from_records=True, **window)


def test_re_pricing_again_changes_nothing(store):
    edge = store.add_device("edge-1")
    ingest(store, edge.device_id, fleet_records())
    store.add_price_book(CORRECTED, effective_from_unix_ns=CORRECTED_FROM)
    first = store.reprice()
    rows, rollups = pricing(store, edge.device_id), stored_rollups(store)

    second = store.reprice()

    assert first.changed == HOURS * 3 - 12 * 3 and first.records == HOURS * 3
    assert second == RepriceResult(
        records=first.records, changed=0, old_cost_pico=first.new_cost_pico, new_cost_pico=first.new_cost_pico,
        currency="USD",
    )
    assert pricing(store, edge.device_id) == rows
    assert stored_rollups(store) == rollups


def test_re_pricing_in_small_pages_gives_what_one_page_gives(store):
    edge = store.add_device("edge-1")
    ingest(store, edge.device_id, fleet_records(), stream="a")
    ingest(store, edge.device_id, fleet_records(), stream="b")
    store.add_price_book(CORRECTED, effective_from_unix_ns=MIN_START_UNIX_NS + HOUR_NS)

    result = repricing.reprice(store.engine, PriceBooks(), since_unix_ns=SINCE, until_unix_ns=UNTIL, page_records=7)

    twin = store.add_device("twin")
    ingest(store, twin.device_id, fleet_records())
    expected = pricing(store, twin.device_id)
    assert result.records == result.changed == 2 * sum(SINCE <= start < UNTIL for start, *_ in expected.values())
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(records.c.seq, *(records.c[name] for name in PRICING_COLUMNS))
            .where(records.c.device_id == edge.device_id, records.c.start_unix_ns >= SINCE,
                   records.c.start_unix_ns < UNTIL)
        ).all()
    assert len(rows) == result.records
    assert all(tuple(row[1:]) == expected[row[0]][1:] for row in rows)
    assert stored_rollups(store) == recomputed_rollups(store)


@pytest.mark.parametrize(("query", "error", "words"), [
    ({"since_unix_ns": UNTIL, "until_unix_ns": SINCE}, ValueError, "is after"),
    ({"since_unix_ns": True}, ValueError, "must be an integer"),
    ({"until_unix_ns": 1.5}, ValueError, "must be an integer"),
    ({"since_unix_ns": "2026-11-10"}, ValueError, "must be an integer"),
    ({"device": "no-such-device"}, LookupError, "no device named or with id 'no-such-device'"),
    ({"device": "bad name!"}, LookupError, "no device"),
])
def test_bad_input_is_refused_and_changes_nothing(store, query, error, words):
    edge = store.add_device("edge-1")
    ingest(store, edge.device_id, fleet_records(per_hour=1))
    store.add_price_book(CORRECTED, effective_from_unix_ns=MIN_START_UNIX_NS + HOUR_NS)
    rows, rollups = pricing(store, edge.device_id), stored_rollups(store)

    with pytest.raises(error, match=words):
        store.reprice(**query)

    assert pricing(store, edge.device_id) == rows
    assert stored_rollups(store) == rollups


def test_ingest_on_another_replica_during_a_re_price_loses_nothing_and_counts_nothing_twice(store, store_url):  # noqa: F811
    edge = store.add_device("edge-1")
    ingest(store, edge.device_id, fleet_records(), stream="old")
    book_id = store.add_price_book(CORRECTED, effective_from_unix_ns=MIN_START_UNIX_NS + HOUR_NS)
    late = fleet_records(per_hour=4)

    with Store.open(store_url, clock=lambda: NOW) as replica:
        def ingest_meanwhile() -> None:
            ingest(replica, edge.device_id, late, stream="new", size=9)

        results = run_together([
            lambda: repricing.reprice(store.engine, PriceBooks(), page_records=11),
            ingest_meanwhile,
            lambda: replica.reprice(since_unix_ns=FIRST_HOUR + 5 * HOUR_NS),
        ])

    assert results[0].records >= HOURS * 3  # the new stream's records may be in it too, priced already
    assert stored_rollups(store) == recomputed_rollups(store)
    report = record_costs(store)
    assert report.total_records == HOURS * 3 + HOURS * 4 == store.device("edge-1").records
    assert report == record_costs(store, from_records=True)
    assert {row[1] for row in pricing(store, edge.device_id).values()} == {book_id}
    # Everything is priced as now: one more run changes nothing.
    assert store.reprice().changed == 0


# The CLI


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    with Store.open(url) as store:
        edge = store.add_device("edge-1")
        ingest(store, edge.device_id, fleet_records())
        store.add_price_book(CORRECTED, effective_from_unix_ns=CORRECTED_FROM)
    return url


def test_admin_reprice_prints_what_changed(db, capsys):
    code, out, err = run(capsys, "admin", "reprice", "--db", db, "--since", "2026-11-10T10:00:00Z",
                         "--until", "2026-11-11", "--device", "edge-1")

    assert code == 0, err
    assert err == "infermeter: re-pricing with the price books in force now: 42 of 42 records (100%)\n"
    assert out.startswith("re-priced 42 records, 36 of them changed: ")
    assert out.rstrip().endswith(")") and "USD (difference " in out


def test_admin_reprice_json(db, capsys):
    code, out, _ = run(capsys, "admin", "reprice", "--db", db, "--json")
    again_code, again, _ = run(capsys, "admin", "reprice", "--db", db, "--json")

    assert code == again_code == 0
    first, second = json.loads(out), json.loads(again)
    assert (first["records"], first["changed"], first["currency"]) == (HOURS * 3, (HOURS - 12) * 3, "USD")
    assert second == {**first, "changed": 0, "old_cost": first["new_cost"]}


@pytest.mark.parametrize(("argv", "words"), [
    (("--since", "2026-11-12", "--until", "2026-11-11"), "is after"),
    (("--since", "yesterday"), "argument --since"),
    (("--device", "edge-9"), "no device named or with id 'edge-9'"),
])
def test_admin_reprice_bad_input_exits_2_and_changes_nothing(db, capsys, argv, words):
    with Store.open(db) as store:
        rollups = stored_rollups(store)

    code, _, err = run(capsys, "admin", "reprice", "--db", db, *argv)

    assert code == 2
    assert words in err
    with Store.open(db) as store:
        assert stored_rollups(store) == rollups
