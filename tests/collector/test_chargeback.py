"""The tag policy, untagged costs and chargeback (collector.tag_policy, collector.chargeback,
collector.tag_ops) on seeded data, checked against totals worked out by hand, on SQLite and
PostgreSQL.

The book makes the figures easy to follow (as in test_charges): a device costs 0.001 a second,
86.4 a day, and a record's compute is its CPU seconds x 0.001; energy is free. edge-1 joins on
2026-11-02, so November has 29 days of its service: 2,505.60 of capacity.

On 2026-11-02 four records use 16.2 of it (a 3.6, b 7.2, c 3.6, d 1.8); the other 70.2 of the
day is idle, spread by list cost (a 15.6, b 31.2, c 15.6, d 7.8); the other 28 days are idle
(2,419.20, the (idle) line). A licence of 30.00 a month for model b costs 29.00 over those 29
days (on b's line); support of 3.00 a month for a model nobody ran, 2.90 (the (fixed) line).
"""

from __future__ import annotations

import calendar
import csv
import io
from decimal import Decimal

import pytest

from collector import tag_ops
from collector.params import QueryError
from collector.store import DeviceInfo, Store
from collector.tag_policy import TagPolicyError, parse_policy
from tests.collector.databases import run_together, store_url  # noqa: F401
from tests.collector.helpers import Clock, make_record

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS
NOV = calendar.timegm((2026, 11, 1, 0, 0, 0)) * 10**9
DEC = calendar.timegm((2026, 12, 1, 0, 0, 0)) * 10**9
DAY = NOV + DAY_NS
STREAM = "0123456789abcdef0123456789abcdef"
POLICY = {"required": {"department": ["ml", "ads"], "project": [], "user": []}}
BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "31536", "lifetime_years": 1, "cpu_cores": 1}},
    "energy": {"default": {"kwh": "0"}},
    "monthly": {"licence": {"amount": "30", "model": "b"}, "support": {"amount": "3", "model": "nobody-runs-it"}},
}
TAGS = {
    "a": {"department": "ml", "project": "search", "user": "alice"},
    "b": {"department": "ads", "project": "banner", "user": "bob"},
    "c": {"department": "ml", "project": "search"},  # no user
    "d": {"department": "marketing", "project": "search", "user": "carol"},  # not an allowed department
}
HOURS = {"a": 1, "b": 2, "c": 1, "d": 0.5}


@pytest.fixture
def fleet(store_url):  # noqa: F811
    clock = Clock(DAY)
    store = Store.open(store_url, clock=clock)
    store.add_price_book(BOOK, effective_from_unix_ns=946_684_800 * 10**9)
    device = store.add_device("edge-1")
    records = []
    for seq, model in enumerate("abcd", start=1):
        ns = int(HOURS[model] * HOUR_NS)
        records.append(make_record(
            seq, model=model, start_unix_ns=DAY + seq * HOUR_NS, duration_ns=ns, cpu_time_ns=ns, energy=(),
            tags=TAGS[model],
        ))
    store.ingest(device.device_id, STREAM, DeviceInfo(hostname="edge", cpu_cores=1), records)
    clock.now = DEC + 5 * DAY_NS
    yield store
    store.close()


NOVEMBER = tag_ops.Period(NOV, DEC)


def lines_of(answer: dict) -> dict[tuple, dict]:
    return {(line["kind"], *line["tags"].values()): line for line in answer["lines"]}


def test_the_chargeback_lines_are_the_hand_computed_ones_and_add_up_to_the_period_total(fleet):
    tag_ops.set_policy(fleet, POLICY)

    answer = tag_ops.chargeback_report(fleet, NOVEMBER)

    lines = lines_of(answer)
    expected = {
        ("tagged", "ads", "banner"): ("7.2", "31.2", "29", "67.4"),
        ("tagged", "ml", "search"): ("3.6", "15.6", "0", "19.2"),
        ("untagged", "(untagged)", "(untagged)"): ("5.4", "23.4", "0", "28.8"),
        ("idle", "(idle)", "(idle)"): ("0", "2419.2", "0", "2419.2"),
        ("fixed", "(fixed)", "(fixed)"): ("0", "0", "2.9", "2.9"),
    }
    assert {key: tuple(Decimal(line[name]) for name in ("usage_cost", "idle_cost", "fixed_cost", "total_cost"))
            for key, line in lines.items()} == {key: tuple(map(Decimal, values)) for key, values in expected.items()}
    assert list(lines) == list(expected)  # costliest tagged line first, then untagged, idle, fixed
    assert lines["untagged", "(untagged)", "(untagged)"]["records"] == 2
    total = sum(Decimal(line["total_cost"]) for line in answer["lines"])
    assert total == Decimal(answer["total_cost"]) == Decimal("2537.5")
    assert total == fleet.costs(since_unix_ns=NOV, until_unix_ns=DEC).total_cost
    assert (answer["since"], answer["until"], answer["by"], answer["policy_version"]) == (
        "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", ["department", "project"], 1)


def test_the_lines_add_up_to_the_report_total_to_the_pico_for_any_tags_and_period(fleet):
    tag_ops.set_policy(fleet, POLICY)
    # A third of a day: the idle pool and the licence are split into shares that do not divide evenly.
    since, until = DAY + HOUR_NS + 7, DAY + 9 * HOUR_NS + 13
    for by in (("department",), ("project", "user"), ("team",)):
        answer = tag_ops.chargeback_report(fleet, tag_ops.Period(since, until), by)
        report = fleet.costs(since_unix_ns=since, until_unix_ns=until)
        assert sum(Decimal(line["total_cost"]) for line in answer["lines"]) == report.total_cost
        assert Decimal(answer["total_cost"]) == report.total_cost
    # Nobody carries a team tag: all usage (with the day's idle spread over it) is untagged.
    assert {line["kind"] for line in answer["lines"]} == {"untagged", "fixed"}


def test_without_a_policy_only_a_missing_chargeback_tag_makes_a_record_untagged(fleet):
    answer = tag_ops.chargeback_report(fleet, NOVEMBER, ("department",))

    lines = lines_of(answer)
    assert Decimal(lines["tagged", "ml"]["total_cost"]) == Decimal("19.2") * 2
    assert Decimal(lines["tagged", "marketing"]["total_cost"]) == Decimal("9.6")
    assert ("untagged", "(untagged)") not in lines
    assert answer["policy_version"] == 0


def test_the_untagged_report_says_per_device_and_model_which_tags_fail(fleet):
    tag_ops.set_policy(fleet, POLICY)

    answer = tag_ops.untagged_costs(fleet, NOVEMBER)

    assert [(group["device"], group["model"], group["records"], group["total_cost"], group["tags"])
            for group in answer["groups"]] == [
        ("edge-1", "c", 1, "19.200000000000", {"user": {"missing": 1, "disallowed": 0, "values": []}}),
        ("edge-1", "d", 1, "9.600000000000",
         {"department": {"missing": 0, "disallowed": 1, "values": ["marketing"]}}),
    ]
    assert (answer["records"], answer["untagged_records"]) == (4, 2)
    assert Decimal(answer["untagged_usage_cost"]) == Decimal("5.4")
    # The same allocation as the chargeback's: its (untagged) line, to the pico.
    untagged_line = lines_of(tag_ops.chargeback_report(fleet, NOVEMBER))["untagged", "(untagged)", "(untagged)"]
    assert answer["untagged_cost"] == untagged_line["total_cost"]
    assert answer["total_cost"] == "2537.500000000000"


def test_a_policy_change_applies_to_reports_made_after_it(fleet):
    tag_ops.set_policy(fleet, POLICY)
    assert tag_ops.untagged_costs(fleet, NOVEMBER)["untagged_records"] == 2

    relaxed = tag_ops.set_policy(fleet, {"required": {"department": ["ml", "ads", "marketing"]}})

    assert relaxed["version"] == 2
    assert tag_ops.get_policy(fleet) == relaxed
    assert tag_ops.untagged_costs(fleet, NOVEMBER)["untagged_records"] == 0


def test_chargeback_csv_lines_add_up_to_the_total(fleet):
    from collector.chargeback import chargeback_csv

    tag_ops.set_policy(fleet, POLICY)
    answer = tag_ops.chargeback_report(fleet, NOVEMBER)

    rows = list(csv.DictReader(io.StringIO(chargeback_csv(answer))))

    assert list(rows[0]) == [
        "period_start", "period_end", "department", "project", "kind", "records", "inferences", "list_cost",
        "discount", "usage_cost", "idle_cost", "fixed_cost", "total_cost", "currency",
    ]
    assert [(row["department"], row["project"], row["kind"]) for row in rows] == [
        ("ads", "banner", "tagged"), ("ml", "search", "tagged"), ("(untagged)", "(untagged)", "untagged"),
        ("(idle)", "(idle)", "idle"), ("(fixed)", "(fixed)", "fixed"),
    ]
    assert sum(Decimal(row["total_cost"]) for row in rows) == Decimal(answer["total_cost"])
    assert {row["period_start"] for row in rows} == {"2026-11-01T00:00:00Z"}


def test_a_tag_value_that_looks_like_a_formula_is_text_in_the_csv():
    from collector.chargeback import chargeback_csv

    answer = {"since": "s", "until": "u", "by": ["project"], "currency": "USD", "lines": [
        {"kind": "tagged", "tags": {"project": "=HYPERLINK(1)"}, **dict.fromkeys(
            ("records", "inferences", "list_cost", "discount", "usage_cost", "idle_cost", "fixed_cost", "total_cost"), 0)},
    ]}
    assert "'=HYPERLINK(1)" in chargeback_csv(answer)


@pytest.mark.parametrize(("document", "field"), [
    ([], None),
    ({"required": {"department": "ml"}}, "required.department"),
    ({"required": {"department": ["ml", 3]}}, "required.department.1"),
    ({"required": {"department": ["ml", "ml"]}}, "required.department"),
    ({"required": {"department": [""]}}, "required.department.0"),
    ({"required": {"": []}}, "required."),
    ({"required": {'a"b': []}}, 'required.a"b'),
    ({"required": {f"t{i}": [] for i in range(17)}}, "required"),
    ({"required": {}, "optional": {}}, "optional"),
])
def test_a_bad_policy_names_its_fault(document, field):
    with pytest.raises(TagPolicyError) as caught:
        parse_policy(document)
    assert caught.value.field == field


def test_a_bad_policy_changes_nothing(fleet):
    tag_ops.set_policy(fleet, POLICY)
    with pytest.raises(QueryError) as caught:
        tag_ops.set_policy(fleet, {"required": {"user": [1]}})
    assert caught.value.field == "required.user.0"
    assert tag_ops.get_policy(fleet)["version"] == 1


def test_device_tags_are_set_cleared_and_checked_against_the_policy(fleet):
    tag_ops.set_policy(fleet, POLICY)

    assert tag_ops.set_device_tags(fleet, "edge-1", {"project": "search", "department": "ml"}) == {
        "device": "edge-1", "tags": {"department": "ml", "project": "search"}}
    with pytest.raises(QueryError) as caught:
        tag_ops.set_device_tags(fleet, "edge-1", {"department": "marketing"})
    assert caught.value.field == "tags.department"
    assert tag_ops.get_device_tags(fleet, "edge-1")["tags"] == {"department": "ml", "project": "search"}
    assert tag_ops.set_device_tags(fleet, "edge-1", {})["tags"] == {}
    assert tag_ops.get_device_tags(fleet, "edge-1")["tags"] == {}


@pytest.mark.parametrize(("month", "since", "until", "field"), [
    ("2026-13", None, None, "month"),
    ("26-11", None, None, "month"),
    ("2026-11", "2026-11-01", None, "month"),
    (None, "2026-12-01", "2026-11-01", "since"),
    (None, "yesterday", None, "since"),
])
def test_a_bad_period_names_its_fault(month, since, until, field):
    with pytest.raises(QueryError) as caught:
        tag_ops.period(month, since, until)
    assert caught.value.field == field


def test_a_month_is_its_utc_calendar_month():
    assert tag_ops.period("2026-11") == tag_ops.Period(NOV, DEC)
    assert tag_ops.period("2026-12").until_unix_ns == calendar.timegm((2027, 1, 1, 0, 0, 0)) * 10**9


def test_an_open_chargeback_adds_up_to_the_open_report(fleet):
    answer = tag_ops.chargeback_report(fleet, tag_ops.period(since="2026-11-02"))

    assert (answer["since"], answer["until"]) == ("2026-11-02T00:00:00Z", None)
    assert Decimal(answer["total_cost"]) == fleet.costs(since_unix_ns=DAY).total_cost


@pytest.mark.parametrize("by", ["a,a", "a,b,c,d,e", 'x"y', "ok,"])
def test_bad_chargeback_tags_are_refused(by):
    with pytest.raises(QueryError) as caught:
        tag_ops.chargeback_by(by)
    assert caught.value.field == "by"


def test_policies_set_at_the_same_moment_get_distinct_versions(store_url):  # noqa: F811
    stores = [Store.open(store_url) for _ in range(4)]
    try:
        versions = run_together([
            lambda store=store, index=index: tag_ops.set_policy(store, {"required": {f"tag{index}": []}})["version"]
            for index, store in enumerate(stores)
        ])
        assert sorted(versions) == [1, 2, 3, 4]
        assert tag_ops.get_policy(stores[0])["version"] == 4
    finally:
        for store in stores:
            store.close()
