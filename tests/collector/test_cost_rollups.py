"""The hourly cost roll-ups (collector.rollups) on SQLite and PostgreSQL: ingest keeps them equal
to the sums of the stored records (replays and overlaps add nothing), migration 0003 fills them
from the records stored before, and a report read from them gives the figures that summing every
record gives, for any range, grouping, granularity and top N."""

from __future__ import annotations

import calendar
import json
import random
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.record import MIN_START_UNIX_NS, EnergyShare, Kind, UsageRecord
from collector.database import alembic_config, migrate, transaction
from collector.reports import CostReport
from collector.rollups import HOUR_NS, ROLLUP_COLUMNS
from collector.schema import ROLLUP_SPLIT
from collector.store import DeviceInfo, Store
from tests.collector.databases import DIALECTS, new_database, store_url  # noqa: F401
from tests.collector.helpers import (
    STREAM_ID,
    make_record,
    recomputed_rollups,
    stored_rollups,
)

REPORTED = DeviceInfo(hostname="edge", cpu_cores=4)
# Real-looking rates: a record's cost is rounded to the pico, so sums are sums of odd integers.
FLEET_BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1199.99", "lifetime_years": 4, "upkeep_per_year": "120.00"}},
    "energy": {"default": {"kwh": "0.1537", "pue": "1.35"}, "lab": {"kwh": "0.31"}},
}
DAY_NS = 24 * HOUR_NS
# Two days either side of a month's end, so that days and months have something to cut.
FIRST_HOUR = calendar.timegm((2026, 11, 29, 0, 0, 0)) * 10**9
LAST_NS = FIRST_HOUR + 4 * DAY_NS
DEVICES = (("edge-1", "default"), ("edge-2", "lab"), ("edge-3", "lab"))
TAG_SETS = (
    {"project": "search", "team": "vision"}, {"team": "vision", "project": "search"},  # one set, two orders
    {"project": "ads"}, {}, {"project": "search", "team": ""}, {"team": "数据 ✓"},
)
GROUP_KEYS = ("model", "version", "device", "site", "runtime", "tag:project", "tag:team")


def fleet_records(rng: random.Random, count: int) -> list[UsageRecord]:
    """Records of a few models and tag sets over four days, seqs 1..count; some start on an
    hour exactly, some stand for 2^62 inferences (sums past int64)."""
    records = []
    for seq in range(1, count + 1):
        start = FIRST_HOUR + rng.randrange(4 * 24) * HOUR_NS + rng.choice([0, 1, rng.randrange(HOUR_NS), HOUR_NS - 1])
        records.append(make_record(
            seq, kind=rng.choice([Kind.INFERENCE, Kind.SPAN, Kind.ROLLUP]), model=rng.choice(["resnet50", "bert", ""]),
            model_version=rng.choice(["1", "2"]), runtime=rng.choice(["onnxruntime", "triton"]), start_unix_ns=start,
            duration_ns=rng.randrange(10**9), cpu_time_ns=rng.randrange(10**10), gpu_time_ns=rng.randrange(10**9),
            count=2**62 if rng.random() < 0.02 else rng.randrange(1, 100), tags=dict(rng.choice(TAG_SETS)),
            energy=tuple(EnergyShare("cpu", rng.randrange(10**7), "rapl", "cpu-time") for _ in range(rng.randrange(2))),
        ))
    return records


def batches(records: list[UsageRecord], rng: random.Random) -> Iterator[list[UsageRecord]]:
    """The records in batches of varying size, some sent again (a retry) or overlapping."""
    first = 0
    while first < len(records):
        size = rng.randrange(1, 80)
        yield records[first:first + size]
        if rng.random() < 0.2:
            yield records[max(0, first - rng.randrange(40)):first + size]
        first += size


def fill(store: Store, seed: int, count: int) -> None:
    rng = random.Random(seed)
    store.add_price_book(FLEET_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    for name, site in DEVICES:
        device = store.add_device(name, site=site)
        for stream in (STREAM_ID, STREAM_ID[::-1]):
            for batch in batches(fleet_records(rng, count), rng):
                store.ingest(device.device_id, stream, REPORTED, batch)


@pytest.fixture(scope="module", params=DIALECTS)
def fleet(request, tmp_path_factory):
    """Three devices' records over four days, ingested in batches with retries and overlaps;
    shared by the tests that only read."""
    with new_database(request.param, tmp_path_factory.mktemp("fleet")) as url, Store.open(url) as store:
        fill(store, seed=11, count=150)
        yield store


@pytest.fixture
def store(store_url):  # noqa: F811
    with Store.open(store_url) as store:
        yield store


# Kept by ingest


def test_ingest_keeps_the_roll_ups_equal_to_the_sums_of_the_stored_records(fleet):
    rollups = stored_rollups(fleet)

    assert rollups == recomputed_rollups(fleet)
    assert sum(row[ROLLUP_COLUMNS.index("records")] for row in rollups) == fleet.costs(period_costs=False, ).total_records == 900
    # Each roll-up row is an hour of a device's group; the group's tag set in one key order.
    assert len(rollups) < 900
    assert all(row[0] % HOUR_NS == 0 for row in rollups)
    assert all(0 <= row[i] < ROLLUP_SPLIT for row in rollups for i in range(ROLLUP_COLUMNS.index("records") + 2, len(row), 2))


def test_a_replayed_batch_adds_nothing_to_the_roll_ups(store):
    device = store.add_device("edge-1")
    batch = [make_record(seq, count=seq) for seq in range(1, 40)]
    store.ingest(device.device_id, STREAM_ID, REPORTED, batch)
    before = stored_rollups(store)

    result = store.ingest(device.device_id, STREAM_ID, REPORTED, batch[10:] + [make_record(40, count=40)])

    assert (result.inserted, result.duplicates) == (1, 29)
    [row] = stored_rollups(store)
    assert (row[ROLLUP_COLUMNS.index("records")], row[ROLLUP_COLUMNS.index("count_lo")]) == (40, 40 * 41 // 2)
    assert [r[:ROLLUP_COLUMNS.index("records")] for r in before] == [row[:ROLLUP_COLUMNS.index("records")]]


def test_sums_carry_from_the_low_part_to_the_high_part_exactly(store):
    device = store.add_device("edge-1")
    for seq in range(1, 6):  # one roll-up row; each batch adds 999_999 + 2^62 inferences
        store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(seq, count=ROLLUP_SPLIT - 1 + 2**62)])

    [row] = stored_rollups(store)
    assert (row[ROLLUP_COLUMNS.index("count_hi")], row[ROLLUP_COLUMNS.index("count_lo")]) == divmod(
        5 * (ROLLUP_SPLIT - 1 + 2**62), ROLLUP_SPLIT
    )
    assert store.costs(period_costs=False, ).total_inferences == 5 * (ROLLUP_SPLIT - 1 + 2**62)


def test_one_tag_set_in_two_key_orders_is_one_roll_up_group(store):
    device = store.add_device("edge-1")
    store.ingest(device.device_id, STREAM_ID, REPORTED, [
        make_record(1, tags={"a": "1", "b": "2"}), make_record(2, tags={"b": "2", "a": "1"}),
    ])

    [row] = stored_rollups(store)
    assert (row[ROLLUP_COLUMNS.index("tags")], row[ROLLUP_COLUMNS.index("records")]) == ({"a": "1", "b": "2"}, 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32))
def test_any_sequence_of_batches_keeps_the_roll_ups_exact(tmp_path_factory, seed):
    with Store.open(f"sqlite:///{tmp_path_factory.mktemp('batches') / 'c.db'}") as store:
        rng = random.Random(seed)
        store.add_price_book(FLEET_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        device = store.add_device("edge-1")
        records = fleet_records(rng, 120)
        shuffled = list(batches(records, rng))
        rng.shuffle(shuffled)
        for batch in shuffled:
            store.ingest(device.device_id, STREAM_ID, REPORTED, batch)

        assert stored_rollups(store) == recomputed_rollups(store)
        assert store.costs(period_costs=False, ).total_records == 120


# Filled by the migration


def test_the_migration_fills_the_roll_ups_from_the_records_stored_before(store_url):  # noqa: F811
    with Store.open(store_url) as store:
        fill(store, seed=5, count=60)
        made_by_ingest = stored_rollups(store)  # and the days, as ingest made them
        report = store.costs(period_costs=False, group_by=("model", "device", "tag:project"), granularity="day")
        with transaction(store.engine, write=True) as connection:
            command.downgrade(alembic_config(connection), "0002")
        with store.engine.connect() as connection:
            assert not sa.inspect(connection).has_table("cost_rollups")
            assert not sa.inspect(connection).has_table("cost_rollups_daily")

        migrate(store.engine)

        assert stored_rollups(store) == made_by_ingest  # the days too: filled from the hours
        assert store.costs(period_costs=False, group_by=("model", "device", "tag:project"), granularity="day") == report


# Read by reports

BOUNDS = (
    st.none()
    | st.sampled_from([FIRST_HOUR, FIRST_HOUR + DAY_NS, calendar.timegm((2026, 12, 1, 0, 0, 0)) * 10**9, LAST_NS])
    | st.integers(FIRST_HOUR // HOUR_NS - 2, LAST_NS // HOUR_NS + 2).map(lambda hour: hour * HOUR_NS)
    | st.integers(FIRST_HOUR - HOUR_NS, LAST_NS + HOUR_NS)
    | st.integers(FIRST_HOUR // HOUR_NS, LAST_NS // HOUR_NS).map(lambda hour: hour * HOUR_NS + 1)
)
QUERIES = st.fixed_dictionaries({
    "group_by": st.lists(st.sampled_from(GROUP_KEYS), unique=True, max_size=3).map(tuple),
    "since_unix_ns": BOUNDS,
    "until_unix_ns": BOUNDS,
    "granularity": st.sampled_from([None, "hour", "day", "month"]),
    "top": st.none() | st.integers(1, 6),
}).filter(lambda q: q["since_unix_ns"] is None or q["until_unix_ns"] is None or q["since_unix_ns"] <= q["until_unix_ns"])


@pytest.fixture(scope="module")
def stored(fleet):
    """Every stored record as the report sees it: (start, key values, sums)."""
    with fleet.engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT r.start_unix_ns, r.model, r.model_version, d.name, r.site, r.runtime, r.tags,"
            " r.count, r.cost_pico, r.compute_cost_pico, r.energy_cost_pico, r.energy_uj, r.duration_ns,"
            " r.cpu_time_ns FROM records r JOIN devices d ON d.device_id = r.device_id"
        )).all()
    result = []
    for start, model, version, device, site, runtime, tags, *sums in rows:
        tags = tags if isinstance(tags, dict) else json.loads(tags)
        keys = {"model": model, "version": version, "device": device, "site": site, "runtime": runtime,
                "tag:project": tags.get("project", ""), "tag:team": tags.get("team", "")}
        result.append((start, keys, [1, *sums]))
    return result


def expected_sums(stored, query: dict) -> dict[tuple, list[int]]:
    """(period start or None, key) -> [records, count, cost, compute, energy cost, µJ, ns, cpu ns]."""
    since, until = query["since_unix_ns"], query["until_unix_ns"]
    sums: dict[tuple, list[int]] = {}
    for start, keys, values in stored:
        if (since is not None and start < since) or (until is not None and start >= until):
            continue
        group = (period_start(start, query["granularity"]), tuple(keys[name] for name in query["group_by"]))
        found = sums.setdefault(group, [0] * len(values))
        sums[group] = [a + b for a, b in zip(found, values)]
    return sums


def period_start(unix_ns: int, granularity: str | None) -> int | None:
    if granularity is None:
        return None
    moment = datetime.fromtimestamp(unix_ns // 10**9, timezone.utc)
    fields = {"hour": (moment.year, moment.month, moment.day, moment.hour), "day": (moment.year, moment.month, moment.day, 0),
              "month": (moment.year, moment.month, 1, 0)}[granularity]
    return calendar.timegm((*fields, 0, 0)) * 10**9


def group_sums(report: CostReport) -> dict[tuple, list[int]]:
    def picos(amount) -> int:
        return int(amount * 10**12)

    return {
        (group.period_start_unix_ns, group.key): [
            group.records, group.inferences, picos(group.cost), picos(group.compute_cost), picos(group.energy_cost),
            group.energy_uj, group.duration_ns, group.cpu_time_ns,
        ]
        for group in report.groups if not group.other
    }


@settings(max_examples=150, deadline=None)
@given(query=QUERIES)
def test_a_report_from_the_roll_ups_is_the_report_from_every_record(fleet, stored, query):
    from_rollups = fleet.costs(period_costs=False, **query)
    from_records = fleet.costs(period_costs=False, **query, from_records=True)

    assert from_rollups == from_records
    expected = expected_sums(stored, query)
    assert sum(values[2] for values in expected.values()) == int(from_rollups.total_cost * 10**12)
    assert from_rollups.total_records == sum(values[0] for values in expected.values())
    if query["top"] is None:
        assert group_sums(from_rollups) == expected
    else:
        shown = group_sums(from_rollups)
        assert all(expected[group] == values for group, values in shown.items())
        assert len({key for _, key in shown}) <= query["top"]


def test_a_range_on_whole_hours_is_read_from_the_roll_ups_alone(store):
    """Without its records, a report on whole hours still has every figure: it never read them."""
    device = store.add_device("edge-1")
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(seq) for seq in range(1, 11)])
    hour = make_record(1).start_unix_ns // HOUR_NS * HOUR_NS
    before = store.costs(period_costs=False, group_by=("model", "device", "tag:project"), since_unix_ns=hour, until_unix_ns=hour + HOUR_NS)
    with transaction(store.engine, write=True) as connection:
        connection.exec_driver_sql("DELETE FROM records")

    assert store.costs(period_costs=False, group_by=("model", "device", "tag:project"), since_unix_ns=hour,
                       until_unix_ns=hour + HOUR_NS) == before
    assert before.total_records == 10
    assert store.costs(period_costs=False, from_records=True).total_records == 0
    # A range that ends inside the hour reads that part from the records.
    assert store.costs(period_costs=False, since_unix_ns=hour, until_unix_ns=hour + 1).total_records == 0
