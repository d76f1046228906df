"""Budget documents, periods per timezone (DST included) and states."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from collector.budgets import (
    Budget,
    BudgetError,
    budget_state,
    crossed_thresholds,
    parse_budget,
    period_bounds,
)

BASE = {"name": "search-monthly", "scope": "tag:project=search", "period": "month", "amount": "250.00"}
BERLIN = ZoneInfo("Europe/Berlin")
HOUR_NS = 3_600 * 10**9


def budget(**fields) -> Budget:
    return Budget.from_spec(parse_budget({**BASE, **fields}), "bgt_test", created_unix_ns=0, updated_unix_ns=0)


def ns(*args, tz=timezone.utc) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp()) * 10**9


def test_a_document_with_every_field():
    spec = parse_budget({**BASE, "timezone": "Europe/Berlin", "unit": "money", "thresholds": [25, 100, 150],
                         "action": "throttle", "throttle_per_second": "2.5"})
    assert (spec.scope_kind, spec.scope_value, spec.scope) == ("tag", "project=search", "tag:project=search")
    assert spec.amount == 250 * 10**12
    assert spec.thresholds == (25, 100, 150)
    assert spec.throttle_per_second == Decimal("2.5")


def test_defaults_and_json_form():
    b = budget()
    assert (b.timezone, b.unit, b.thresholds, b.action, b.throttle_per_second) == (
        "UTC", "money", (50, 80, 100), "alert", None)
    assert b.to_json() == {
        "budget_id": "bgt_test", "name": "search-monthly", "scope": "tag:project=search", "period": "month",
        "timezone": "UTC", "amount": "250.00", "unit": "money", "thresholds": [50, 80, 100], "action": "alert",
        "throttle_per_second": None, "created_unix_ns": 0, "updated_unix_ns": 0,
    }
    document = {key: value for key, value in b.to_json().items()
                if key not in ("budget_id", "created_unix_ns", "updated_unix_ns", "throttle_per_second")}
    assert parse_budget(document) == parse_budget(BASE)  # the JSON form reads back as the same budget


@pytest.mark.parametrize("scope, parsed", [
    ("global", ("global", "")), ("device:edge-1", ("device", "edge-1")), ("model:resnet50", ("model", "resnet50")),
    ("site:lab", ("site", "lab")), ("tag:team=a=b", ("tag", "team=a=b")), ("tag:empty=", ("tag", "empty=")),
])
def test_scopes(scope, parsed):
    spec = parse_budget({**BASE, "scope": scope})
    assert (spec.scope_kind, spec.scope_value) == parsed


def test_energy_amounts_are_watt_hours_in_microjoules():
    assert budget(unit="energy", amount="1.5").amount == 5_400_000_000
    assert budget(unit="energy", amount="1.5").to_json()["amount"] == "1.5"


BAD = {
    "not-an-object": ([1], ""),
    "unknown-field": ({**BASE, "colour": "red"}, "colour"),
    "no-name": ({k: v for k, v in BASE.items() if k != "name"}, "name"),
    "bad-name": ({**BASE, "name": "a b"}, "name"),
    "long-name": ({**BASE, "name": "a" * 65}, "name"),
    "no-scope": ({k: v for k, v in BASE.items() if k != "scope"}, "scope"),
    "unknown-scope": ({**BASE, "scope": "user:bob"}, "scope"),
    "scope-not-text": ({**BASE, "scope": 3}, "scope"),
    "empty-device": ({**BASE, "scope": "device:"}, "scope"),
    "bad-site": ({**BASE, "scope": "site:../x"}, "scope"),
    "tag-without-value": ({**BASE, "scope": "tag:project"}, "scope"),
    "tag-empty-key": ({**BASE, "scope": "tag:=x"}, "scope"),
    "model-control-chars": ({**BASE, "scope": "model:a\x00b"}, "scope"),
    "no-period": ({k: v for k, v in BASE.items() if k != "period"}, "period"),
    "bad-period": ({**BASE, "period": "year"}, "period"),
    "bad-timezone": ({**BASE, "timezone": "Mars/Olympus"}, "timezone"),
    "path-timezone": ({**BASE, "timezone": "../../etc/passwd"}, "timezone"),
    "timezone-not-text": ({**BASE, "timezone": 1}, "timezone"),
    "float-amount": ({**BASE, "amount": 250.0}, "amount"),
    "bool-amount": ({**BASE, "amount": True}, "amount"),
    "no-amount": ({k: v for k, v in BASE.items() if k != "amount"}, "amount"),
    "negative-amount": ({**BASE, "amount": "-1"}, "amount"),
    "zero-amount": ({**BASE, "amount": "0"}, "amount"),
    "nan-amount": ({**BASE, "amount": "NaN"}, "amount"),
    "inf-amount": ({**BASE, "amount": "Infinity"}, "amount"),
    "text-amount": ({**BASE, "amount": "lots"}, "amount"),
    "too-fine-amount": ({**BASE, "amount": "0.0000000000001"}, "amount"),
    "huge-amount": ({**BASE, "amount": "1e30"}, "amount"),
    "too-fine-energy": ({**BASE, "unit": "energy", "amount": "1e-12"}, "amount"),
    "bad-unit": ({**BASE, "unit": "tokens"}, "unit"),
    "thresholds-not-list": ({**BASE, "thresholds": "50,80"}, "thresholds"),
    "thresholds-empty": ({**BASE, "thresholds": []}, "thresholds"),
    "threshold-zero": ({**BASE, "thresholds": [0, 100]}, "thresholds.0"),
    "threshold-too-big": ({**BASE, "thresholds": [50, 1001]}, "thresholds.1"),
    "threshold-float": ({**BASE, "thresholds": [50.5]}, "thresholds.0"),
    "threshold-bool": ({**BASE, "thresholds": [True]}, "thresholds.0"),
    "thresholds-not-increasing": ({**BASE, "thresholds": [80, 50]}, "thresholds.1"),
    "thresholds-repeated": ({**BASE, "thresholds": [50, 50]}, "thresholds.1"),
    "bad-action": ({**BASE, "action": "panic"}, "action"),
    "throttle-without-rate": ({**BASE, "action": "throttle"}, "throttle_per_second"),
    "rate-without-throttle": ({**BASE, "action": "block", "throttle_per_second": "2"}, "throttle_per_second"),
    "rate-zero": ({**BASE, "action": "throttle", "throttle_per_second": "0"}, "throttle_per_second"),
    "rate-float": ({**BASE, "action": "throttle", "throttle_per_second": 2.0}, "throttle_per_second"),
    "rate-huge": ({**BASE, "action": "throttle", "throttle_per_second": "1e7"}, "throttle_per_second"),
}


@pytest.mark.parametrize("document, field", BAD.values(), ids=BAD.keys())
def test_bad_documents_name_the_field(document, field):
    with pytest.raises(BudgetError) as caught:
        parse_budget(document)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_a_float_amount_says_why():
    with pytest.raises(BudgetError, match="floats cannot hold amounts exactly"):
        parse_budget({**BASE, "amount": 0.1})


# Periods


def test_utc_periods():
    at = ns(2026, 11, 18, 11, 6, 40)  # a Wednesday
    assert period_bounds(budget(period="day"), at) == (ns(2026, 11, 18), ns(2026, 11, 19))
    assert period_bounds(budget(period="week"), at) == (ns(2026, 11, 16), ns(2026, 11, 23))
    assert period_bounds(budget(period="month"), at) == (ns(2026, 11, 1), ns(2026, 12, 1))
    assert period_bounds(budget(period="month"), ns(2026, 12, 31, 23)) == (ns(2026, 12, 1), ns(2027, 1, 1))


def test_the_period_starts_at_local_midnight():
    b = budget(period="day", timezone="Europe/Berlin")
    # 23:30 UTC on the 17th is already the 18th in Berlin (UTC+1 in November).
    assert period_bounds(b, ns(2026, 11, 17, 23, 30)) == (ns(2026, 11, 17, 23), ns(2026, 11, 18, 23))
    start, end = period_bounds(budget(period="day", timezone="Asia/Kolkata"), ns(2026, 11, 18, 12))
    assert (start, end) == (ns(2026, 11, 17, 18, 30), ns(2026, 11, 18, 18, 30))


def test_days_of_23_and_25_hours_in_berlin():
    spring = period_bounds(budget(period="day", timezone="Europe/Berlin"), ns(2026, 3, 29, 12))
    autumn = period_bounds(budget(period="day", timezone="Europe/Berlin"), ns(2026, 10, 25, 12))
    assert spring == (ns(2026, 3, 29, tz=BERLIN), ns(2026, 3, 30, tz=BERLIN))
    assert spring[1] - spring[0] == 23 * HOUR_NS
    assert autumn[1] - autumn[0] == 25 * HOUR_NS


def test_berlin_week_and_month_across_dst():
    week = period_bounds(budget(period="week", timezone="Europe/Berlin"), ns(2026, 3, 29, 12))  # a Sunday
    assert week == (ns(2026, 3, 22, 23), ns(2026, 3, 29, 22))  # Monday 00:00 CET to Monday 00:00 CEST
    assert week[1] - week[0] == (7 * 24 - 1) * HOUR_NS
    month = period_bounds(budget(period="month", timezone="Europe/Berlin"), ns(2026, 10, 31, 23, 30))
    assert month == (ns(2026, 10, 31, 23), ns(2026, 11, 30, 23))  # already November in Berlin
    october = period_bounds(budget(period="month", timezone="Europe/Berlin"), ns(2026, 10, 31, 22, 59))
    assert october == (ns(2026, 9, 30, 22), ns(2026, 10, 31, 23))
    assert october[1] - october[0] == (31 * 24 + 1) * HOUR_NS


def test_a_midnight_skipped_by_dst_starts_the_day_at_the_jump():
    # Santiago springs forward at 00:00 local time on 2026-09-06: the day starts at 01:00 -03.
    start, end = period_bounds(budget(period="day", timezone="America/Santiago"), ns(2026, 9, 6, 12))
    assert start == ns(2026, 9, 6, 4)
    assert end - start == 23 * HOUR_NS


def test_the_bounds_hold_at_their_edges():
    b = budget(period="day", timezone="Europe/Berlin")
    start, end = period_bounds(b, ns(2026, 11, 18, 12))
    assert period_bounds(b, start) == (start, end)
    assert period_bounds(b, end - 1)[0] == start
    assert period_bounds(b, end)[0] == end


# States


def test_states_and_crossings_at_exact_percents():
    b = budget(amount="100", thresholds=[50, 80, 100])  # 100 units = 1e14 picos
    unit = 10**12
    assert budget_state(b, 49 * unit + 999) == (Decimal("49.00"), "ok")
    assert budget_state(b, 50 * unit) == (Decimal("50.00"), "warning")
    assert budget_state(b, 100 * unit - 1) == (Decimal("99.99"), "warning")
    assert budget_state(b, 100 * unit) == (Decimal("100.00"), "exceeded")
    assert crossed_thresholds(b, 79 * unit, 80 * unit) == [80]
    assert crossed_thresholds(b, 80 * unit, 81 * unit) == []
    assert crossed_thresholds(b, 0, 200 * unit) == [50, 80, 100]
    only_over = budget(amount="100", thresholds=[100, 150])
    assert budget_state(only_over, 99 * unit)[1] == "ok"
    assert budget_state(only_over, 120 * unit)[1] == "exceeded"
