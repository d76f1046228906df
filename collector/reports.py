"""The cost report: stored record costs summed by model, version, device, site, runtime or tag.

Sums are exact on both dialects. SQLite's SUM of BIGINTs raises on int64 overflow, so every
integer column is summed as two parts, x / 1e6 and x % 1e6 (exact integer operations on both),
and put back together in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from agent.record import MAX_TAG_KEY_CHARS, InvalidRecord, check_text
from collector.pricing import decimal_text, picos_to_decimal
from collector.schema import devices, records

GROUP_KEYS = ("model", "version", "device", "site", "runtime", "tag:KEY")
_COLUMNS = {
    "model": records.c.model,
    "version": records.c.model_version,
    "device": devices.c.name,
    "site": records.c.site,
    "runtime": records.c.runtime,
}
_TAG_PREFIX = "tag:"
_SPLIT = 1_000_000
_SUMMED = (
    "count", "cost_pico", "compute_cost_pico", "energy_cost_pico", "energy_uj", "duration_ns", "cpu_time_ns",
)


@dataclass(frozen=True, slots=True)
class CostGroup:
    key: tuple[str, ...]
    inferences: int  # the sum of the records' counts (a roll-up record stands for many)
    records: int
    cost: Decimal
    compute_cost: Decimal
    energy_cost: Decimal
    energy_uj: int
    duration_ns: int
    cpu_time_ns: int

    def to_json(self) -> dict:
        return {
            "key": list(self.key),
            "inferences": self.inferences,
            "records": self.records,
            "cost": decimal_text(self.cost),
            "compute_cost": decimal_text(self.compute_cost),
            "energy_cost": decimal_text(self.energy_cost),
            "energy_uj": self.energy_uj,
            "duration_ns": self.duration_ns,
            "cpu_time_ns": self.cpu_time_ns,
        }


@dataclass(frozen=True, slots=True)
class CostReport:
    group_by: tuple[str, ...]
    currency: str
    groups: list[CostGroup]
    total_cost: Decimal
    total_inferences: int
    total_records: int

    def to_json(self) -> dict:
        """Money as exact decimal strings in `currency`."""
        return {
            "group_by": list(self.group_by),
            "currency": self.currency,
            "groups": [group.to_json() for group in self.groups],
            "total_cost": decimal_text(self.total_cost),
            "total_inferences": self.total_inferences,
            "total_records": self.total_records,
        }


def check_range(since_unix_ns: int | None, until_unix_ns: int | None) -> None:
    for name, value in (("since_unix_ns", since_unix_ns), ("until_unix_ns", until_unix_ns)):
        if value is not None and type(value) is not int:
            raise ValueError(f"{name} must be an integer (Unix ns) or None, got {value!r}")
    if since_unix_ns is not None and until_unix_ns is not None and since_unix_ns > until_unix_ns:
        raise ValueError(f"since_unix_ns ({since_unix_ns}) is after until_unix_ns ({until_unix_ns})")


def group_columns(group_by: Sequence[str]) -> list[sa.ColumnElement[str]]:
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
            columns.append(_tag_column(key))
        elif key in _COLUMNS:
            columns.append(_COLUMNS[key])
        else:
            raise ValueError(f"unknown group key {key!r} (expected one of: {', '.join(GROUP_KEYS)})")
    return columns


def _tag_column(key: str) -> sa.ColumnElement[str]:
    tag = key[len(_TAG_PREFIX):]
    try:
        check_text(key, tag, MAX_TAG_KEY_CHARS, required=True)
    except InvalidRecord as err:
        raise ValueError(f"group key {key!r}: the tag name {err.reason}") from None
    # SQLite's JSON paths have no escape for a double quote inside a key.
    if '"' in tag:
        raise ValueError(f"group key {key!r}: tag names with a double quote cannot be grouped by")
    return sa.func.coalesce(records.c.tags[tag].as_string(), "")


def cost_query(
    group_by: Sequence[str], since_unix_ns: int | None, until_unix_ns: int | None
) -> sa.Select:
    columns = group_columns(group_by)
    labelled = [column.label(f"k{i}") for i, column in enumerate(columns)]
    sums = []
    for name in _SUMMED:
        column = records.c[name]
        sums += [sa.func.sum(column // _SPLIT).label(f"{name}_hi"), sa.func.sum(column % _SPLIT).label(f"{name}_lo")]
    query = sa.select(*labelled, sa.func.count().label("records"), *sums)
    if "device" in group_by:
        query = query.select_from(records.join(devices, records.c.device_id == devices.c.device_id))
    else:
        query = query.select_from(records)
    if since_unix_ns is not None:
        query = query.where(records.c.start_unix_ns >= since_unix_ns)
    if until_unix_ns is not None:
        query = query.where(records.c.start_unix_ns < until_unix_ns)
    return query.group_by(*labelled) if labelled else query


def build_report(group_by: Sequence[str], currency: str, rows: Sequence[sa.Row]) -> CostReport:
    totals = []
    for row in rows:
        values = row._mapping
        if not values["records"]:  # no grouping and no records: SQL still returns one row of NULLs
            continue
        sums = {name: int(values[f"{name}_hi"]) * _SPLIT + int(values[f"{name}_lo"]) for name in _SUMMED}
        key = tuple(values[f"k{i}"] for i in range(len(group_by)))
        totals.append((key, values["records"], sums))
    # Sorted on integer picos: exact, where Decimal arithmetic would round to its context.
    totals.sort(key=lambda item: (-item[2]["cost_pico"], item[0]))
    groups = [
        CostGroup(
            key=key,
            inferences=sums["count"],
            records=count,
            cost=picos_to_decimal(sums["cost_pico"]),
            compute_cost=picos_to_decimal(sums["compute_cost_pico"]),
            energy_cost=picos_to_decimal(sums["energy_cost_pico"]),
            energy_uj=sums["energy_uj"],
            duration_ns=sums["duration_ns"],
            cpu_time_ns=sums["cpu_time_ns"],
        )
        for key, count, sums in totals
    ]
    return CostReport(
        group_by=tuple(group_by),
        currency=currency,
        groups=groups,
        total_cost=picos_to_decimal(sum(sums["cost_pico"] for _, _, sums in totals)),
        total_inferences=sum(group.inferences for group in groups),
        total_records=sum(group.records for group in groups),
    )
