"""Period costs in reports (collector.charges): idle capacity spread or kept in a bucket, monthly
fixed costs, graduated volume discounts, and price-book changes mid-period, as worked examples
checked to the pico, on SQLite and PostgreSQL.

The book makes the figures easy to follow: a device costs 0.001 a second (31,536.00 over one
year, no upkeep), 3.6 an hour, 86.4 a day, and a record's compute is its CPU seconds x 0.001 on
one core; energy is free.
"""

from __future__ import annotations

import calendar
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.record import EnergyShare, Kind
from collector.charges import apportion, graduated_share
from collector.database import alembic_config, migrate, transaction
from collector.params import QueryError
from collector.pricebook import Discount, PriceBookError, Tier, parse_price_book
from collector.schema import devices
from collector.store import DeviceInfo, Store
from tests.collector.databases import store_url  # noqa: F401
from tests.collector.helpers import Clock, make_record, run_cli

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS
NOV = calendar.timegm((2026, 11, 1, 0, 0, 0)) * 10**9
DEC = calendar.timegm((2026, 12, 1, 0, 0, 0)) * 10**9
DAY = NOV + DAY_NS  # 2026-11-02, a Monday
REPORTED = DeviceInfo(hostname="edge", cpu_cores=1)
STREAM = "0123456789abcdef0123456789abcdef"


def book(**sections) -> dict:
    return {
        "currency": "USD",
        "hardware": {"default": {"purchase": "31536", "lifetime_years": 1, "cpu_cores": 1}},
        "energy": {"default": {"kwh": "0"}},
        **sections,
    }


@pytest.fixture
def clock():
    return Clock(DAY)


@pytest.fixture
def fleet(store_url, clock):  # noqa: F811
    store = Store.open(store_url, clock=clock)
    yield store
    store.close()


def open_fleet(store: Store, clock: Clock, *, sections: dict | None = None, devices=("edge-1",)) -> dict[str, str]:
    """A book effective from 2000 (priced before the devices join) and the devices added at DAY."""
    store.add_price_book(book(**(sections or {})), effective_from_unix_ns=946_684_800 * 10**9)
    clock.now = DAY
    ids = {name: store.add_device(name).device_id for name in devices}
    clock.now = DEC + 5 * DAY_NS
    return ids


def cpu_hours(seq: int, model: str, hours: float, start: int, kind: Kind = Kind.INFERENCE):
    """A record of `hours` CPU hours (compute cost hours x 3.6)."""
    ns = int(hours * HOUR_NS)
    return record(seq, model=model, start_unix_ns=start, duration_ns=ns, cpu_time_ns=ns, kind=kind)


def record(seq: int, **fields):
    return make_record(seq, **{"energy": (), "tags": {}, **fields})


def money(text: str) -> Decimal:
    return Decimal(text)


def by_key(report) -> dict[tuple, object]:
    return {(group.period_start_unix_ns, group.key): group for group in report.groups}


# Idle capacity


def test_idle_is_spread_over_the_days_users_by_list_cost_and_adds_up_to_the_whole_device(fleet, clock):
    ids = open_fleet(fleet, clock)
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 1, DAY + HOUR_NS), cpu_hours(2, "b", 2, DAY + 3 * HOUR_NS),
    ])

    report = fleet.costs(group_by=("model",), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    groups = by_key(report)
    # Capacity 86.4, compute used 3.6 + 7.2, idle 75.6 shared 1 : 2.
    assert groups[None, ("a",)].list_cost == money("3.6") and groups[None, ("a",)].idle_cost == money("25.2")
    assert groups[None, ("b",)].list_cost == money("7.2") and groups[None, ("b",)].idle_cost == money("50.4")
    assert groups[None, ("a",)].total_cost == money("28.8") and groups[None, ("b",)].total_cost == money("57.6")
    assert report.total_cost == report.usage_cost + report.idle_cost == money("86.4")
    assert len(report.groups) == 2


def test_the_bucket_policy_keeps_idle_in_its_own_group(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"idle": {"policy": "bucket"}})
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 1, DAY + HOUR_NS)])

    report = fleet.costs(group_by=("model", "device"), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    groups = by_key(report)
    assert groups[None, ("a", "edge-1")].total_cost == money("3.6")
    assert groups[None, ("(idle)", "edge-1")].idle_cost == money("82.8")
    assert report.total_cost == money("86.4")


def test_a_day_nobody_used_is_idle_in_the_devices_bucket_and_devices_without_records_count_too(fleet, clock):
    ids = open_fleet(fleet, clock, devices=("edge-1", "edge-2"))
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 1, DAY + HOUR_NS)])

    report = fleet.costs(group_by=("device",), granularity="day", since_unix_ns=DAY, until_unix_ns=DAY + 2 * DAY_NS)

    groups = by_key(report)
    assert groups[DAY, ("edge-1",)].total_cost == money("86.4")
    assert groups[DAY + DAY_NS, ("edge-1",)].idle_cost == money("86.4")
    assert groups[DAY, ("edge-2",)].idle_cost == groups[DAY + DAY_NS, ("edge-2",)].idle_cost == money("86.4")
    assert report.total_cost == 4 * money("86.4")


def test_a_device_costs_from_when_it_joined_until_it_was_revoked(fleet, clock):
    ids = open_fleet(fleet, clock)
    clock.now = DAY + 6 * HOUR_NS
    fleet.revoke_device(ids["edge-1"])
    clock.now = DEC

    report = fleet.costs(since_unix_ns=NOV, until_unix_ns=DEC)

    assert report.idle_cost == report.total_cost == 6 * money("3.6")


def test_a_range_reaching_into_the_future_accrues_nothing_there(fleet, clock):
    open_fleet(fleet, clock, sections={"monthly": {"support": {"amount": "30"}}})
    clock.now = DAY + DAY_NS

    report = fleet.costs(granularity="month", since_unix_ns=0, until_unix_ns=4_000_000_000 * 10**9)

    (november,) = report.groups
    assert (november.idle_cost, november.fixed_cost) == (money("86.4"), money("1"))


def test_period_costs_over_more_periods_than_the_limit_are_refused_naming_the_granularity(fleet, clock):
    open_fleet(fleet, clock)
    clock.now = DAY + 500 * DAY_NS

    with pytest.raises(QueryError) as caught:
        fleet.costs(granularity="hour", since_unix_ns=0)

    assert caught.value.field == "granularity" and "at most 10,000 hours" in str(caught.value)
    assert fleet.costs(granularity="hour", since_unix_ns=0, period_costs=False).groups == []
    assert len(fleet.costs(granularity="day").groups) == 500


def test_records_before_the_device_joined_start_its_service_at_the_first_records_start(fleet, clock):
    ids = open_fleet(fleet, clock)
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 0.5, DAY - 2 * HOUR_NS + 60 * 10**9)])

    report = fleet.costs(since_unix_ns=NOV, until_unix_ns=DAY + DAY_NS)

    assert report.total_cost == money("86.4") + (2 * 3_600 - 60) * money("0.001")


def test_ingest_and_the_migration_keep_each_devices_first_start(fleet, clock):
    ids = open_fleet(fleet, clock, devices=("edge-1", "edge-2"))
    first = DAY - 5 * HOUR_NS + 123
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(2, "a", 0.1, first + HOUR_NS)])
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 0.1, first), cpu_hours(3, "a", 0.1, DAY)])

    def first_starts() -> dict[str, int | None]:
        with fleet.engine.connect() as connection:
            return dict(connection.execute(sa.select(devices.c.name, devices.c.first_start_unix_ns)).all())

    assert first_starts() == {"edge-1": first, "edge-2": None}
    with transaction(fleet.engine, write=True) as connection:
        command.downgrade(alembic_config(connection), "0005")
    migrate(fleet.engine)
    assert first_starts() == {"edge-1": first, "edge-2": None}


def test_a_price_book_change_mid_day_prices_each_part_of_the_capacity_with_its_book(fleet, clock):
    ids = open_fleet(fleet, clock)
    dearer = book(hardware={"default": {"purchase": "63072", "lifetime_years": 1, "cpu_cores": 1}})
    fleet.add_price_book(dearer, effective_from_unix_ns=DAY + 12 * HOUR_NS)
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 1, DAY + HOUR_NS), cpu_hours(2, "a", 1, DAY + 13 * HOUR_NS),
    ])

    report = fleet.costs(group_by=("model",), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    # Capacity 12 h x 3.6 + 12 h x 7.2; the records cost 3.6 and 7.2: the rest is idle.
    assert report.list_cost == money("10.8")
    assert report.total_cost == money("129.6")
    assert report.idle_cost == money("118.8")


def test_idle_energy_records_are_idle_cost(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"energy": {"default": {"kwh": "1"}}})
    idle_energy = record(2, kind=Kind.IDLE, model="", start_unix_ns=DAY + 5 * HOUR_NS, duration_ns=HOUR_NS,
                         cpu_time_ns=0, count=0, energy=(EnergyShare("cpu", 3_600_000_000, "rapl", "idle"),))  # 1 Wh
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 1, DAY + HOUR_NS), idle_energy])

    report = fleet.costs(group_by=("model",), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    (group,) = report.groups
    assert group.key == ("a",)
    assert group.list_cost == money("3.6")
    assert group.idle_cost == money("82.8") + money("0.001")


def test_whole_device_cost_over_many_days_adds_up_whatever_the_granularity(fleet, clock):
    ids = open_fleet(fleet, clock, devices=("edge-1", "edge-2"))
    for index, device in enumerate(ids.values()):
        fleet.ingest(device, STREAM, REPORTED, [
            cpu_hours(seq, "ab"[seq % 2], 0.25 + seq / 7, DAY + seq * 7 * HOUR_NS + index * 10**9)
            for seq in range(1, 20)
        ])
    totals = {
        granularity: fleet.costs(group_by=("model",), granularity=granularity, since_unix_ns=NOV,
                                 until_unix_ns=DEC + 3 * DAY_NS)
        for granularity in (None, "day", "month")
    }

    expected = 2 * (DEC + 3 * DAY_NS - DAY) // 10**9 * Decimal("0.001")
    assert {report.total_cost for report in totals.values()} == {expected}
    assert {report.idle_cost + report.list_cost for report in totals.values()} == {expected}


def test_roll_ups_and_records_give_the_same_period_costs(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"monthly": {"lic": {"amount": "10", "model": "a"}}})
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(seq, "ab"[seq % 2], 0.1 * seq, DAY + seq * 5 * HOUR_NS + 17 * 10**9) for seq in range(1, 12)
    ])
    query = {"group_by": ("model",), "granularity": "day", "since_unix_ns": DAY + 1_234, "until_unix_ns": DAY + 9 * DAY_NS - 77}

    assert fleet.costs(**query) == fleet.costs(**query, from_records=True)


# Monthly fixed costs


def test_monthly_costs_of_a_device_a_model_and_the_fleet_are_shared_by_their_users(fleet, clock):
    ids = open_fleet(fleet, clock, sections={
        "idle": {"policy": "bucket"},
        "monthly": {"storage": {"amount": "30", "device": "edge-1"}, "licence": {"amount": "60", "model": "b"},
                    "support": {"amount": "3"}},
    })
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 1, DAY + HOUR_NS), cpu_hours(2, "b", 2, DAY + 3 * HOUR_NS),
    ])

    report = fleet.costs(group_by=("model",), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    groups = by_key(report)
    # A day of November's 30: storage 1.00 and support 0.10 each shared 1 : 2 (b gets the
    # remainder's pico of each), the licence 2.00 to b.
    assert groups[None, ("a",)].fixed_cost == money("0.333333333333") + money("0.033333333333")
    assert groups[None, ("b",)].fixed_cost == money("0.666666666667") + money("0.066666666667") + money("2")
    assert report.fixed_cost == money("3.1")


def test_a_monthly_cost_nobody_used_stays_in_a_fixed_bucket_named_by_what_it_is_known_by(fleet, clock):
    open_fleet(fleet, clock, sections={
        "idle": {"policy": "bucket"}, "monthly": {"licence": {"amount": "60", "model": "b"}},
    })

    report = fleet.costs(group_by=("model", "device"), since_unix_ns=NOV, until_unix_ns=DEC)

    groups = by_key(report)
    assert groups[None, ("b", "(fixed)")].fixed_cost == money("58")  # from Nov 2, when the fleet began


def test_monthly_costs_are_prorated_by_time_and_follow_the_book_in_force(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"monthly": {"storage": {"amount": "30", "device": "edge-1"}}})
    fleet.add_price_book(
        book(monthly={"storage": {"amount": "60", "device": "edge-1"}}), effective_from_unix_ns=NOV + 15 * DAY_NS
    )
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [cpu_hours(1, "a", 1, DAY + HOUR_NS)])

    whole = fleet.costs(since_unix_ns=NOV, until_unix_ns=DEC)
    daily = fleet.costs(granularity="day", since_unix_ns=NOV, until_unix_ns=DEC)

    # From Nov 2, when the fleet began: 14 days at 1.00 a day, then 15 at 2.00.
    assert whole.fixed_cost == daily.fixed_cost == money("14") + money("30")


# Volume discounts


TIERS = {"tiers": [{"from": "0", "percent_off": "0"}, {"from": "36", "percent_off": "10"},
                   {"from": "72", "percent_off": "50"}]}


@pytest.mark.parametrize(("spend", "expected"), [
    (Fraction(0), Fraction(1)),
    (Fraction(36), Fraction(1)),
    (Fraction(72), (36 + Fraction(36 * 9, 10)) / 72),
    (Fraction(108), (36 + Fraction(36 * 9, 10) + 18) / 108),
])
def test_graduated_tiers_reduce_each_bracket_of_the_spend(spend, expected):
    discount = Discount("volume", tuple(Tier(Decimal(tier["from"]), Decimal(tier["percent_off"]))
                                        for tier in TIERS["tiers"]))

    assert graduated_share(discount, int(spend * 10**12)) == expected


def test_a_months_discount_is_shared_by_its_usage_in_proportion(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"idle": {"policy": "bucket"}, "discounts": {"volume": TIERS}})
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 10, DAY + HOUR_NS), cpu_hours(2, "b", 20, DAY + 2 * DAY_NS),
    ])

    report = fleet.costs(group_by=("model",), since_unix_ns=NOV, until_unix_ns=DEC)
    first_day = fleet.costs(group_by=("model",), since_unix_ns=DAY, until_unix_ns=DAY + DAY_NS)

    groups = by_key(report)
    # List 36 + 72 = 108, effective 86.4: 21.6 off, 36 : 72.
    assert report.list_cost == money("108") and report.discount == money("21.6")
    assert groups[None, ("a",)].discount == money("7.2") and groups[None, ("b",)].cost == money("57.6")
    assert by_key(first_day)[None, ("a",)].cost == money("28.8")  # a slice of the month, at the month's rate


def test_a_model_discount_comes_before_the_general_one_and_below_a_tier_nothing_is_off(fleet, clock):
    ids = open_fleet(fleet, clock, sections={
        "idle": {"policy": "bucket"},
        "discounts": {"volume": TIERS, "a-deal": {"model": "a", "tiers": [{"from": "0", "percent_off": "25"}]}},
    })
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 30, DAY + HOUR_NS), cpu_hours(2, "b", 10, DAY + 2 * DAY_NS),
    ])

    groups = by_key(fleet.costs(group_by=("model",), since_unix_ns=NOV, until_unix_ns=DEC))

    assert groups[None, ("a",)].discount == money("27")  # 25 % of 108, a's spend alone
    assert groups[None, ("b",)].discount == 0  # 36 of general spend: the first tier, 0 % off


def test_explain_shows_a_records_share_of_its_months_discount(fleet, clock, capsys):
    ids = open_fleet(fleet, clock, sections={"discounts": {"volume": TIERS}})
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 10, DAY + HOUR_NS), cpu_hours(2, "b", 20, DAY + 2 * DAY_NS),
    ])

    explained = fleet.explain_record(STREAM, 1)

    assert explained["total"]["cost"] == "36.000000000000"
    assert explained["discount"] == {
        "discount": "volume", "month": "2026-11-01T00:00:00Z", "month_list_spend": "108.000000000000",
        "tiers": [{"from": "0", "percent_off": "0"}, {"from": "36", "percent_off": "10"},
                  {"from": "72", "percent_off": "50"}],
        "effective_share": "0.8", "effective_exact_picos": "28800000000000",
    }
    code, out, err = run_cli(capsys, "report", "explain", f"{STREAM}:1", "--db",
                             fleet.engine.url.render_as_string(hide_password=False))
    assert code == 0, err
    assert "discount volume (0 % from 0, 10 % from 36, 50 % from 72): 2026-11 list spend 108.000000000000" in out
    assert "effective share 0.8: exact 28800000000000 picos" in out


def test_the_book_in_force_at_the_months_start_sets_its_discount(fleet, clock):
    ids = open_fleet(fleet, clock, sections={"idle": {"policy": "bucket"}})
    flat = {"tiers": [{"from": "0", "percent_off": "50"}]}
    fleet.add_price_book(book(idle={"policy": "bucket"}, discounts={"half": flat}),
                         effective_from_unix_ns=NOV + 10 * DAY_NS)
    fleet.ingest(ids["edge-1"], STREAM, REPORTED, [
        cpu_hours(1, "a", 10, NOV + 20 * DAY_NS), cpu_hours(2, "a", 10, DEC + DAY_NS),
    ])

    report = fleet.costs(granularity="month", since_unix_ns=NOV, until_unix_ns=DEC + 2 * DAY_NS)

    november, december = report.groups
    assert november.discount == 0 and november.list_cost == money("36")
    assert december.discount == money("18")


# Books, and the arithmetic of sharing


@pytest.mark.parametrize(("sections", "field"), [
    ({"idle": {"policy": "even"}}, "idle.policy"),
    ({"idle": {"policy": "spread", "period": "day"}}, "idle.period"),
    ({"monthly": {"x": {"amount": 3}}}, "monthly.x.amount"),
    ({"monthly": {"x": {"amount": "3", "device": "a", "model": "b"}}}, "monthly.x.model"),
    ({"monthly": {"x": {"amount": "3", "device": "no spaces"}}}, "monthly.x.device"),
    ({"discounts": {"v": {"tiers": []}}}, "discounts.v.tiers"),
    ({"discounts": {"v": {"tiers": [{"from": "1", "percent_off": "5"}]}}}, "discounts.v.tiers[0].from"),
    ({"discounts": {"v": {"tiers": [{"from": "0", "percent_off": "101"}]}}}, "discounts.v.tiers[0].percent_off"),
    ({"discounts": {"v": {"tiers": [{"from": "0", "percent_off": "1"}, {"from": "0", "percent_off": "2"}]}}},
     "discounts.v.tiers[1].from"),
    ({"discounts": {"v": TIERS, "w": TIERS}}, "discounts.w"),
])
def test_a_bad_period_cost_section_is_refused_naming_its_field(sections, field):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(book(**sections))

    assert caught.value.field == field


@settings(max_examples=300, deadline=None)
@given(total=st.integers(0, 10**15), weights=st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_apportioned_shares_add_up_and_each_is_within_one_pico_of_its_exact_share(total, weights):
    if not any(weights):
        weights[0] = 1
    keyed = dict(enumerate(weights))

    shares = apportion(total, keyed)

    assert sum(shares.values()) == total
    whole = sum(weights)
    assert all(abs(shares[key] - Fraction(total * weight, whole)) < 1 for key, weight in keyed.items())
