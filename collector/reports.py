"""The cost report: stored record costs summed by model, version, device, site, runtime or tag,
optionally per UTC hour, day or month, optionally cut to the N costliest groups and the rest.

Where it can, a report sums the hourly roll-ups (collector.rollups) instead of the records: the
whole hours of its range come from the roll-ups, and only the partial hours at either end (a
range that does not start or end on the hour) from the records. Both hold the same integers, so
the figures are the same to the pico either way; Store.costs(from_records=True) checks that.

Sums are exact on both dialects. SQLite's SUM of BIGINTs raises on int64 overflow, so every
integer column is summed as two parts, x / 1e6 and x % 1e6 (exact integer operations on both;
the roll-ups store their sums in such parts), and put back together in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import sqlalchemy as sa

from agent.record import MAX_TAG_KEY_CHARS, InvalidRecord, Kind, check_text
from collector import workload_classes
from collector.charges import ChargeContext, Usage, month_start, period_charges
from collector.pricing import decimal_text, picos_to_decimal
from collector.rollups import HOUR_NS
from collector.schema import (
    ROLLUP_SPLIT,
    ROLLUP_SUMS,
    cost_rollups,
    cost_rollups_daily,
    devices,
    records,
)

GROUP_KEYS = ("model", "version", "device", "site", "runtime", "tag:KEY", "class:DIMENSION")
GRANULARITIES = ("hour", "day", "month")
MAX_TOP = 1_000_000
DAY_NS = 24 * HOUR_NS
_TAG_PREFIX = "tag:"
_SPLIT = ROLLUP_SPLIT
_SUMMED = ROLLUP_SUMS
# The slices SQL groups by, per granularity (None: the whole range): the days (hours in an
# hourly report) over which idle capacity is worked out (collector.charges); months are made of
# days in Python (they differ in length).
_SLICE_NS = {None: DAY_NS, "hour": HOUR_NS, "day": DAY_NS, "month": DAY_NS}


@dataclass(frozen=True, slots=True)
class CostGroup:
    """A group's costs: `list_cost` is what its records cost at the book's prices, `cost` that
    less its share of volume discounts, and `total_cost` adds its share of idle capacity and of
    monthly fixed costs (collector.charges). compute, energy, token and request costs split the
    list cost."""

    key: tuple[str, ...]  # () for the group of the rest (other=True)
    inferences: int  # the sum of the records' counts (a roll-up record stands for many)
    records: int
    cost: Decimal
    compute_cost: Decimal
    energy_cost: Decimal
    energy_uj: int
    duration_ns: int
    cpu_time_ns: int
    token_cost: Decimal = Decimal(0)
    request_cost: Decimal = Decimal(0)
    period_start_unix_ns: int | None = None  # the UTC hour, day or month, with a granularity
    other: bool = False  # the groups beyond the report's top N, summed
    list_cost: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    idle_cost: Decimal = Decimal(0)
    fixed_cost: Decimal = Decimal(0)
    total_cost: Decimal = Decimal(0)

    def to_json(self, *, period: bool = False, other: bool = False) -> dict:
        """`period` and `other` add those fields (the report's granularity and top ask for them)."""
        value = {
            "key": list(self.key),
            "inferences": self.inferences,
            "records": self.records,
            "cost": decimal_text(self.cost),
            "list_cost": decimal_text(self.list_cost),
            "discount": decimal_text(self.discount),
            "idle_cost": decimal_text(self.idle_cost),
            "fixed_cost": decimal_text(self.fixed_cost),
            "total_cost": decimal_text(self.total_cost),
            "compute_cost": decimal_text(self.compute_cost),
            "energy_cost": decimal_text(self.energy_cost),
            "token_cost": decimal_text(self.token_cost),
            "request_cost": decimal_text(self.request_cost),
            "energy_uj": self.energy_uj,
            "duration_ns": self.duration_ns,
            "cpu_time_ns": self.cpu_time_ns,
        }
        if period:
            value["period"] = rfc3339(self.period_start_unix_ns)
        if other:
            value["other"] = self.other
        return value


@dataclass(frozen=True, slots=True)
class CostReport:
    """`total_cost` is everything: usage at effective prices (`usage_cost`: `list_cost` less
    `discount`), idle capacity and monthly fixed costs."""

    group_by: tuple[str, ...]
    currency: str
    groups: list[CostGroup]
    total_cost: Decimal
    total_inferences: int
    total_records: int
    granularity: str | None = None
    top: int | None = None
    usage_cost: Decimal = Decimal(0)
    list_cost: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    idle_cost: Decimal = Decimal(0)
    fixed_cost: Decimal = Decimal(0)

    def to_json(self) -> dict:
        """Money as exact decimal strings in `currency`. Without a granularity or a top N, the
        object (and its groups) has no fields for them."""
        value = {
            "group_by": list(self.group_by),
            "currency": self.currency,
            "groups": [
                group.to_json(period=self.granularity is not None, other=self.top is not None) for group in self.groups
            ],
            "total_cost": decimal_text(self.total_cost),
            "usage_cost": decimal_text(self.usage_cost),
            "list_cost": decimal_text(self.list_cost),
            "discount": decimal_text(self.discount),
            "idle_cost": decimal_text(self.idle_cost),
            "fixed_cost": decimal_text(self.fixed_cost),
            "total_inferences": self.total_inferences,
            "total_records": self.total_records,
        }
        if self.granularity is not None:
            value["granularity"] = self.granularity
        if self.top is not None:
            value["top"] = self.top
        return value


@dataclass(frozen=True, slots=True)
class CostQuery:
    """What a report sums: records whose start is in [since, until) (None: open), by group_by,
    per granularity period (None: the whole range), keeping the `top` costliest groups (None: all)."""

    group_by: tuple[str, ...] = ()
    since_unix_ns: int | None = None
    until_unix_ns: int | None = None
    granularity: str | None = None
    top: int | None = None

    def __post_init__(self) -> None:
        # The range first: building a query from a bound that is not an int (True) fails in
        # SQLAlchemy with an error that is not a ValueError.
        check_range(self.since_unix_ns, self.until_unix_ns)
        group_columns(self.group_by, _RECORDS)
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {self.granularity!r} (expected one of: {', '.join(GRANULARITIES)})")
        if self.top is not None and (type(self.top) is not int or not 1 <= self.top <= MAX_TOP):
            raise ValueError(f"top must be an integer from 1 to {MAX_TOP} or None, got {self.top!r}")


def check_range(since_unix_ns: int | None, until_unix_ns: int | None) -> None:
    for name, value in (("since_unix_ns", since_unix_ns), ("until_unix_ns", until_unix_ns)):
        if value is not None and type(value) is not int:
            raise ValueError(f"{name} must be an integer (Unix ns) or None, got {value!r}")
    if since_unix_ns is not None and until_unix_ns is not None and since_unix_ns > until_unix_ns:
        raise ValueError(f"since_unix_ns ({since_unix_ns}) is after until_unix_ns ({until_unix_ns})")


def rfc3339(unix_ns: int) -> str:
    """A UTC time, to the second, as in a report's periods: 2026-11-18T11:00:00Z."""
    return datetime.fromtimestamp(unix_ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Where the sums come from


@dataclass(frozen=True)
class _Source:
    table: sa.Table
    time: sa.ColumnElement[int]  # what the range and the periods apply to
    columns: Mapping[str, sa.ColumnElement[str]]
    records: Callable[[], sa.ColumnElement[int]]
    device_id: sa.ColumnElement[str]
    model: sa.ColumnElement[str]
    kind: sa.ColumnElement[int]
    sum_parts: Callable[[str], tuple[sa.ColumnElement[int], sa.ColumnElement[int]]]


_RECORDS = _Source(
    table=records,
    time=records.c.start_unix_ns,
    columns={"model": records.c.model, "version": records.c.model_version, "device": devices.c.name,
             "site": records.c.site, "runtime": records.c.runtime},
    records=sa.func.count,
    device_id=records.c.device_id,
    model=records.c.model,
    kind=records.c.kind,
    sum_parts=lambda name: (sa.func.sum(records.c[name] // _SPLIT), sa.func.sum(records.c[name] % _SPLIT)),
)
_ROLLUPS = _Source(
    table=cost_rollups,
    time=cost_rollups.c.hour_unix_ns,
    columns={"model": cost_rollups.c.model, "version": cost_rollups.c.model_version, "device": devices.c.name,
             "site": cost_rollups.c.site, "runtime": cost_rollups.c.runtime},
    records=lambda: sa.func.sum(cost_rollups.c.records),
    device_id=cost_rollups.c.device_id,
    model=cost_rollups.c.model,
    kind=cost_rollups.c.kind,
    sum_parts=lambda name: (sa.func.sum(cost_rollups.c[f"{name}_hi"]), sa.func.sum(cost_rollups.c[f"{name}_lo"])),
)
_DAILY = _Source(
    table=cost_rollups_daily,
    time=cost_rollups_daily.c.day_unix_ns,
    columns={"model": cost_rollups_daily.c.model, "version": cost_rollups_daily.c.model_version,
             "device": devices.c.name, "site": cost_rollups_daily.c.site, "runtime": cost_rollups_daily.c.runtime},
    records=lambda: sa.func.sum(cost_rollups_daily.c.records),
    device_id=cost_rollups_daily.c.device_id,
    model=cost_rollups_daily.c.model,
    kind=cost_rollups_daily.c.kind,
    sum_parts=lambda name: (
        sa.func.sum(cost_rollups_daily.c[f"{name}_hi"]), sa.func.sum(cost_rollups_daily.c[f"{name}_lo"])
    ),
)


def group_columns(group_by: Sequence[str], source: _Source = _RECORDS) -> list[sa.ColumnElement[str]]:
    """The SQL expression of each group key; ValueError naming a key that is not one."""
    if isinstance(group_by, str):
        raise ValueError(f"group_by must be a sequence of keys, not the string {group_by!r}")
    columns = []
    for key in group_by:
        if type(key) is not str:
            raise ValueError(f"group key {key!r} is not a string")
        if group_by.count(key) > 1:
            raise ValueError(f"group key {key!r} is given more than once")
        if key.startswith(_TAG_PREFIX):
            columns.append(_tag_column(key, source.table))
        elif key.startswith(workload_classes.KEY_PREFIX):
            columns.append(workload_classes.class_column(key, source.table))
        elif key in source.columns:
            columns.append(source.columns[key])
        else:
            raise ValueError(f"unknown group key {key!r} (expected one of: {', '.join(GROUP_KEYS)})")
    return columns


def _tag_column(key: str, table: sa.Table) -> sa.ColumnElement[str]:
    tag = key[len(_TAG_PREFIX):]
    try:
        check_text(key, tag, MAX_TAG_KEY_CHARS, required=True)
    except InvalidRecord as err:
        raise ValueError(f"group key {key!r}: the tag name {err.reason}") from None
    # SQLite's JSON paths have no escape for a double quote inside a key.
    if '"' in tag:
        raise ValueError(f"group key {key!r}: tag names with a double quote cannot be grouped by")
    return sa.func.coalesce(table.c.tags[tag].as_string(), "")


def cost_select(
    query: CostQuery, *, from_records: bool = False, detail: bool = False
) -> sa.Select | sa.CompoundSelect:
    """The SELECT whose rows build_report adds up: the whole days of the range from the daily
    roll-ups (but in hourly reports), the other whole hours from the hourly ones, UNION ALL any
    partial hour at either end from the records (from_records: all of it from the records). One statement, so one snapshot on PostgreSQL too. Each row has the
    slice (`bucket`: a UTC day, an hour in hourly reports), k0..kN, the number of records and
    the two parts of each sum; `detail` adds the device_id, model and kind that period costs
    are shared by. Rows of one group may come from each part."""
    if from_records:
        parts = [(_RECORDS, query.since_unix_ns, query.until_unix_ns)]
    else:
        parts = _split_range(query.since_unix_ns, query.until_unix_ns, query.granularity)
    selects = [_select(query, source, since, until, detail) for source, since, until in parts]
    return selects[0] if len(selects) == 1 else sa.union_all(*selects)


def _split_range(
    since: int | None, until: int | None, granularity: str | None
) -> list[tuple[_Source, int | None, int | None]]:
    first_hour = None if since is None else -(-since // HOUR_NS) * HOUR_NS
    last_hour = None if until is None else until // HOUR_NS * HOUR_NS
    if first_hour is not None and last_hour is not None and first_hour >= last_hour:
        return [(_RECORDS, since, until)]  # no whole hour inside
    parts = [(_ROLLUPS, first_hour, last_hour)] if granularity == "hour" else _split_on_days(first_hour, last_hour)
    if since != first_hour:
        parts.append((_RECORDS, since, first_hour))
    if until != last_hour:
        parts.append((_RECORDS, last_hour, until))
    return parts


def _split_on_days(first_hour: int | None, last_hour: int | None) -> list[tuple[_Source, int | None, int | None]]:
    """Whole hours [first_hour, last_hour): the whole days from the daily roll-ups, the hours
    before and after them from the hourly ones."""
    first_day = None if first_hour is None else -(-first_hour // DAY_NS) * DAY_NS
    last_day = None if last_hour is None else last_hour // DAY_NS * DAY_NS
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [(_ROLLUPS, first_hour, last_hour)]  # no whole day inside
    parts = [(_DAILY, first_day, last_day)]
    if first_hour != first_day:
        parts.append((_ROLLUPS, first_hour, first_day))
    if last_hour != last_day:
        parts.append((_ROLLUPS, last_day, last_hour))
    return parts


def _select(query: CostQuery, source: _Source, since: int | None, until: int | None, detail: bool) -> sa.Select:
    size = _SLICE_NS[query.granularity]
    labelled = [(source.time - source.time % size).label("bucket")]
    if detail:
        labelled += [source.device_id.label("device_id"), source.model.label("model"), source.kind.label("kind")]
    labelled += [column.label(f"k{i}") for i, column in enumerate(group_columns(query.group_by, source))]
    sums = []
    for name in _SUMMED:
        high, low = source.sum_parts(name)
        sums += [high.label(f"{name}_hi"), low.label(f"{name}_lo")]
    select = sa.select(*labelled, source.records().label("records"), *sums)
    if "device" in query.group_by:
        select = select.select_from(source.table.join(devices, source.table.c.device_id == devices.c.device_id))
    else:
        select = select.select_from(source.table)
    if since is not None:
        select = select.where(source.time >= since)
    if until is not None:
        select = select.where(source.time < until)
    return select.group_by(*labelled)


# Adding up


_IDLE_KIND = int(Kind.IDLE)
_COST = 2  # the index of cost_pico in a group's totals: records, then the _SUMMED sums
_COMPUTE = 3
# After the _SUMMED sums: the period costs (collector.charges).
_DISCOUNT, _IDLE, _FIXED = (1 + len(_SUMMED) + i for i in range(3))


def build_report(
    query: CostQuery, currency: str, rows: Iterable[sa.Row], context: ChargeContext | None = None
) -> CostReport:
    """The report from the rows of cost_select (with `detail` when a context is given), with
    the period costs that `context` allows (None: the stored record costs alone). With period costs, the records of idle energy form no
    group of their own: their cost is idle cost (collector.charges)."""
    period_of = _period_function(query.granularity)
    sums: dict[tuple, list[int]] = {}
    usage = []
    at = None
    for row in rows:
        if at is None:  # the columns' places, by name (cost_select's labels), once
            at = _Places(row._fields, len(query.group_by))
        if not row[at.records]:
            continue
        bucket = int(row[at.bucket])
        cell = (period_of(bucket), tuple(row[i] for i in at.keys))
        totals = [int(row[at.records])] + [int(row[high]) * _SPLIT + int(row[low]) for high, low in at.sums] + [0, 0, 0]
        if context is not None:
            idle = int(row[at.kind]) == _IDLE_KIND
            usage.append(Usage(cell, bucket, row[at.device_id], row[at.model], idle, totals[_COST], totals[_COMPUTE]))
            if idle:
                continue  # the energy no inference used: its cost is idle cost, shared as such
        found = sums.get(cell)
        sums[cell] = totals if found is None else [a + b for a, b in zip(found, totals)]
    if context is not None:
        for cell, charges in period_charges(usage, context).items():
            totals = sums.get(cell) or sums.setdefault(cell, [0] * (_FIXED + 1))
            totals[_DISCOUNT] += charges.discount
            totals[_IDLE] += charges.idle
            totals[_FIXED] += charges.fixed
    groups = _ranked(sums, query.top)
    whole = [sum(column) for column in zip(*sums.values())] or [0] * (_FIXED + 1)
    return CostReport(
        group_by=tuple(query.group_by),
        currency=currency,
        groups=groups,
        total_cost=picos_to_decimal(_total(whole)),
        total_inferences=whole[1],
        total_records=whole[0],
        granularity=query.granularity,
        top=query.top,
        usage_cost=picos_to_decimal(whole[_COST] - whole[_DISCOUNT]),
        list_cost=picos_to_decimal(whole[_COST]),
        discount=picos_to_decimal(whole[_DISCOUNT]),
        idle_cost=picos_to_decimal(whole[_IDLE]),
        fixed_cost=picos_to_decimal(whole[_FIXED]),
    )


class _Places:
    """Where build_report finds each value in a row of cost_select."""

    def __init__(self, fields: Sequence[str], keys: int) -> None:
        place = {name: i for i, name in enumerate(fields)}
        self.bucket, self.records = place["bucket"], place["records"]
        self.device_id, self.model, self.kind = (place.get(name) for name in ("device_id", "model", "kind"))
        self.keys = [place[f"k{i}"] for i in range(keys)]
        self.sums = [(place[f"{name}_hi"], place[f"{name}_lo"]) for name in _SUMMED]


def _total(totals: Sequence[int]) -> int:
    return totals[_COST] - totals[_DISCOUNT] + totals[_IDLE] + totals[_FIXED]


def _ranked(sums: dict[tuple, list[int]], top: int | None) -> list[CostGroup]:
    """Groups by period, each period's costliest first; with `top`, only the `top` keys that
    cost most over the whole range keep their groups, and a period's other groups are summed
    into its last group, other=True. Sorted on integer picos: exact, where Decimal arithmetic
    would round to its context."""
    kept = None
    if top is not None:
        cost_by_key: dict[tuple, int] = {}
        for (_, key), totals in sums.items():
            cost_by_key[key] = cost_by_key.get(key, 0) + _total(totals)
        kept = set(sorted(cost_by_key, key=lambda key: (-cost_by_key[key], key))[:top])
    shown: dict[tuple, list[int]] = {}
    rest: dict[object, list[int]] = {}
    for (period, key), totals in sums.items():
        if kept is None or key in kept:
            shown[period, key] = totals
        else:
            found = rest.get(period)
            rest[period] = totals if found is None else [a + b for a, b in zip(found, totals)]
    ordered = sorted(
        [((period or 0, False, -_total(totals), key), _group(key, totals, period, False))
         for (period, key), totals in shown.items()]
        + [((period or 0, True, 0, ()), _group((), totals, period, True)) for period, totals in rest.items()],
        key=lambda item: item[0],
    )
    return [group for _, group in ordered]


def _group(key: tuple, totals: list[int], period: int | None, other: bool) -> CostGroup:
    (records_, count, cost, compute, energy_cost, energy_uj, duration_ns, cpu_time_ns, token, request,
     discount, idle, fixed) = totals
    return CostGroup(
        key=key,
        inferences=count,
        records=records_,
        cost=picos_to_decimal(cost - discount),
        compute_cost=picos_to_decimal(compute),
        energy_cost=picos_to_decimal(energy_cost),
        token_cost=picos_to_decimal(token),
        request_cost=picos_to_decimal(request),
        energy_uj=energy_uj,
        duration_ns=duration_ns,
        cpu_time_ns=cpu_time_ns,
        period_start_unix_ns=period,
        other=other,
        list_cost=picos_to_decimal(cost),
        discount=picos_to_decimal(discount),
        idle_cost=picos_to_decimal(idle),
        fixed_cost=picos_to_decimal(fixed),
        total_cost=picos_to_decimal(_total(totals)),
    )


def _period_function(granularity: str | None) -> Callable[[int], int | None]:
    """The start of a slice's period (None without a granularity)."""
    if granularity is None:
        return lambda slice_unix_ns: None
    if granularity != "month":
        return lambda slice_unix_ns: slice_unix_ns
    months: dict[int, int] = {}

    def month_of(day_unix_ns: int) -> int:
        start = months.get(day_unix_ns)
        if start is None:
            start = months[day_unix_ns] = month_start(day_unix_ns)
        return start

    return month_of
