"""Cost reports per UTC period (granularity) and cut to the top N groups, on SQLite and
PostgreSQL: periods start where UTC hours, days and months do, the groups beyond the top N are
summed into an `other` group per period so totals still add up, and without either option a
report is what it always was."""

from __future__ import annotations

import calendar
from decimal import Decimal

import pytest

from agent.record import MIN_START_UNIX_NS
from collector.reports import CostGroup
from collector.store import DeviceInfo, Store
from tests.collector.databases import DIALECTS, new_database
from tests.collector.helpers import STREAM_ID, make_record

REPORTED = DeviceInfo(hostname="edge-1", cpu_cores=4)
# One pico per ns of CPU time and no energy: a record's cost is its cpu_time_ns in picos.
PICO_PER_NS_BOOK = {"currency": "USD", "cloud": {"default": {"hourly": "3.6", "cpu_cores": 1}},
                    "energy": {"default": {"kwh": "3.6"}}}


def utc_ns(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, second)) * 10**9


# (start, model, cpu_time_ns): around the end of November 2026 (UTC).
RECORDS = [
    (utc_ns(2026, 11, 30, 22, 15), "resnet50", 100),
    (utc_ns(2026, 11, 30, 23, 59, 59) + 999_999_999, "bert", 30),  # the last ns of November
    (utc_ns(2026, 12, 1), "bert", 7),  # the first of December
    (utc_ns(2026, 12, 1, 0, 30), "resnet50", 5),
    (utc_ns(2026, 12, 1, 13), "llama", 1_000),
    (utc_ns(2026, 12, 2, 9), "resnet50", 2),
    (utc_ns(2026, 12, 2, 9, 1), "tiny", 1),
]


@pytest.fixture(scope="module", params=DIALECTS)
def periods(request, tmp_path_factory):
    with new_database(request.param, tmp_path_factory.mktemp("periods")) as url, Store.open(url) as store:
        store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        device = store.add_device("edge-1")
        store.ingest(device.device_id, STREAM_ID, REPORTED, [
            make_record(seq, start_unix_ns=start, model=model, cpu_time_ns=cpu_time_ns, energy=())
            for seq, (start, model, cpu_time_ns) in enumerate(RECORDS, start=1)
        ])
        yield store


def rows(groups: list[CostGroup]) -> list[tuple]:
    """(period start, key, records, cost in picos, other) of each group, in order."""
    return [(g.period_start_unix_ns, g.key, g.records, int(g.cost * 10**12), g.other) for g in groups]


@pytest.mark.parametrize("from_records", [False, True])
@pytest.mark.parametrize(("granularity", "expected"), [
    ("hour", [
        (utc_ns(2026, 11, 30, 22), ("resnet50",), 1, 100, False),
        (utc_ns(2026, 11, 30, 23), ("bert",), 1, 30, False),
        (utc_ns(2026, 12, 1, 0), ("bert",), 1, 7, False),
        (utc_ns(2026, 12, 1, 0), ("resnet50",), 1, 5, False),
        (utc_ns(2026, 12, 1, 13), ("llama",), 1, 1_000, False),
        (utc_ns(2026, 12, 2, 9), ("resnet50",), 1, 2, False),
        (utc_ns(2026, 12, 2, 9), ("tiny",), 1, 1, False),
    ]),
    ("day", [
        (utc_ns(2026, 11, 30), ("resnet50",), 1, 100, False),
        (utc_ns(2026, 11, 30), ("bert",), 1, 30, False),
        (utc_ns(2026, 12, 1), ("llama",), 1, 1_000, False),
        (utc_ns(2026, 12, 1), ("bert",), 1, 7, False),
        (utc_ns(2026, 12, 1), ("resnet50",), 1, 5, False),
        (utc_ns(2026, 12, 2), ("resnet50",), 1, 2, False),
        (utc_ns(2026, 12, 2), ("tiny",), 1, 1, False),
    ]),
    ("month", [
        (utc_ns(2026, 11), ("resnet50",), 1, 100, False),
        (utc_ns(2026, 11), ("bert",), 1, 30, False),
        (utc_ns(2026, 12), ("llama",), 1, 1_000, False),
        (utc_ns(2026, 12), ("bert",), 1, 7, False),
        (utc_ns(2026, 12), ("resnet50",), 2, 7, False),
        (utc_ns(2026, 12), ("tiny",), 1, 1, False),
    ]),
])
def test_groups_come_per_utc_period_oldest_first_costliest_first_within(periods, granularity, expected, from_records):
    report = periods.costs(period_costs=False, group_by=("model",), granularity=granularity, from_records=from_records)

    assert rows(report.groups) == expected
    assert (report.granularity, report.total_records, int(report.total_cost * 10**12)) == (granularity, 7, 1_145)


def test_a_period_without_group_keys_is_one_group_per_period(periods):
    report = periods.costs(period_costs=False, granularity="day")

    assert rows(report.groups) == [
        (utc_ns(2026, 11, 30), (), 2, 130, False), (utc_ns(2026, 12, 1), (), 3, 1_012, False),
        (utc_ns(2026, 12, 2), (), 2, 3, False),
    ]


def test_the_range_cuts_periods_on_the_records_start(periods):
    report = periods.costs(period_costs=False, group_by=("model",), granularity="month", since_unix_ns=utc_ns(2026, 11, 30, 23),
                           until_unix_ns=utc_ns(2026, 12, 1, 0, 30))

    assert rows(report.groups) == [(utc_ns(2026, 11), ("bert",), 1, 30, False), (utc_ns(2026, 12), ("bert",), 1, 7, False)]


@pytest.mark.parametrize("from_records", [False, True])
def test_the_top_n_keys_keep_their_groups_and_the_rest_is_summed_into_other(periods, from_records):
    report = periods.costs(period_costs=False, group_by=("model",), top=2, from_records=from_records)

    assert rows(report.groups) == [
        (None, ("llama",), 1, 1_000, False), (None, ("resnet50",), 3, 107, False), (None, (), 3, 38, True),
    ]
    assert (report.top, report.total_records, int(report.total_cost * 10**12)) == (2, 7, 1_145)


def test_with_a_granularity_the_top_n_is_over_the_whole_range_and_other_is_per_period(periods):
    report = periods.costs(period_costs=False, group_by=("model",), granularity="day", top=2)

    # llama (1000) and resnet50 (107) cost most over the range; bert and tiny go to other.
    assert rows(report.groups) == [
        (utc_ns(2026, 11, 30), ("resnet50",), 1, 100, False), (utc_ns(2026, 11, 30), (), 1, 30, True),
        (utc_ns(2026, 12, 1), ("llama",), 1, 1_000, False), (utc_ns(2026, 12, 1), ("resnet50",), 1, 5, False),
        (utc_ns(2026, 12, 1), (), 1, 7, True),
        (utc_ns(2026, 12, 2), ("resnet50",), 1, 2, False), (utc_ns(2026, 12, 2), (), 1, 1, True),
    ]
    assert sum(g.cost for g in report.groups) == report.total_cost


def test_a_top_n_covering_every_group_leaves_no_other(periods):
    report = periods.costs(period_costs=False, group_by=("model",), top=4)

    assert [g.key for g in report.groups] == [("llama",), ("resnet50",), ("bert",), ("tiny",)]
    assert not any(g.other for g in report.groups)


def test_keys_that_cost_the_same_are_ranked_by_key(store_pair):
    store, device = store_pair
    store.ingest(device.device_id, STREAM_ID, REPORTED, [
        make_record(seq, model=model, cpu_time_ns=10, energy=()) for seq, model in enumerate("cab", start=1)
    ])

    assert [g.key for g in store.costs(period_costs=False, group_by=("model",), top=2).groups] == [("a",), ("b",), ()]


@pytest.fixture
def store_pair(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}") as store:
        store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        yield store, store.add_device("edge-1")


def test_the_json_has_periods_and_other_only_when_asked_for(periods):
    plain = periods.costs(period_costs=False, group_by=("model",)).to_json()
    both = periods.costs(period_costs=False, group_by=("model",), granularity="month", top=1).to_json()

    assert set(plain) == {"group_by", "currency", "groups", "total_cost", "usage_cost", "list_cost", "discount",
                          "idle_cost", "fixed_cost", "total_inferences", "total_records"}
    assert all("period" not in g and "other" not in g for g in plain["groups"])
    assert (both["granularity"], both["top"]) == ("month", 1)
    assert [(g["period"], g["key"], g["other"], g["cost"]) for g in both["groups"]] == [
        ("2026-11-01T00:00:00Z", [], True, "0.000000000130"),
        ("2026-12-01T00:00:00Z", ["llama"], False, "0.000000001000"),
        ("2026-12-01T00:00:00Z", [], True, "0.000000000015"),
    ]
    assert sum(Decimal(g["cost"]) for g in both["groups"]) == Decimal(both["total_cost"])


@pytest.mark.parametrize(("options", "message"), [
    ({"granularity": "week"}, "unknown granularity"),
    ({"granularity": "Day"}, "unknown granularity"),
    ({"granularity": 3600}, "unknown granularity"),
    ({"top": 0}, "top must be"),
    ({"top": -1}, "top must be"),
    ({"top": True}, "top must be"),
    ({"top": 2.0}, "top must be"),
    ({"top": 1_000_001}, "top must be"),
])
def test_a_bad_granularity_or_top_is_a_value_error(periods, options, message):
    with pytest.raises(ValueError, match=message):
        periods.costs(period_costs=False, group_by=("model",), **options)
