"""A cost report, made in one transaction: the sums (collector.reports), and what its period
costs (collector.charges) need from the database: the books in force, the fleet's devices with
their service time and capacity rates, and the month spend that volume discounts are graduated
on."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from collector.books import PriceBooks
from collector.charges import (
    HOUR_NS,
    ChargeContext,
    FleetDevice,
    graduated_share,
    month_start,
    next_month,
    period_count,
)
from collector.params import QueryError
from collector.pricing import decimal_text, exact_text, picos_to_decimal
from collector.reports import CostQuery, CostReport, build_report, cost_select, rfc3339
from collector.schema import ROLLUP_SPLIT, devices

# Report periods (hours, days or months) that period costs are worked out for, at most: each
# period costs every device a little work, even where nobody used it.
MAX_PERIODS = 10_000


def run_report(
    connection: sa.Connection, books: PriceBooks, query: CostQuery, *, now_unix_ns: int,
    from_records: bool = False, period_costs: bool = True,
) -> CostReport:
    """The report of `query` in the caller's transaction (see Store.costs)."""
    rows = connection.execute(cost_select(query, from_records=from_records, detail=period_costs)).all()
    context = charge_context(
        connection, books, group_by=query.group_by, since_unix_ns=query.since_unix_ns,
        until_unix_ns=query.until_unix_ns, granularity=query.granularity, now_unix_ns=now_unix_ns,
    ) if period_costs else None
    return build_report(query, books.currency(connection), rows, context)


def charge_context(
    connection: sa.Connection, books: PriceBooks, *, group_by: tuple[str, ...], since_unix_ns: int | None,
    until_unix_ns: int | None, granularity: str | None, now_unix_ns: int,
) -> ChargeContext | None:
    """The context of a report over [since, until) (None: from the fleet's start, until the
    start of the current hour); None when there is no device."""
    index = books.index(connection)
    in_force = books.in_force(connection, index)
    fleet = _fleet(connection, books, index)
    if not fleet:
        return None
    fleet_start = min(device.service_start_unix_ns for device in fleet.values())
    since = fleet_start if since_unix_ns is None else since_unix_ns
    # Open-ended: to the last whole hour, whose costs are settled (and the same for every
    # report made within the hour).
    until = now_unix_ns - now_unix_ns % HOUR_NS if until_unix_ns is None else until_unix_ns
    until = max(until, since)  # an empty range: the rows' idle records are still idle cost
    accrual_since = max(since, fleet_start)
    accrual_until = max(accrual_since, min(until, now_unix_ns))
    if period_count(accrual_since, accrual_until, granularity) > MAX_PERIODS:
        raise QueryError(
            "granularity", f"a report per {granularity} with idle and fixed costs covers at most {MAX_PERIODS:,} "
            f"{granularity}s of the fleet's service: narrow the range, use a coarser granularity, or ask "
            "for usage only",
        )
    context = ChargeContext(group_by, since, until, granularity, in_force, fleet, {}, accrual_since, accrual_until)
    return dataclasses.replace(context, month_spend=_month_spend(connection, context))


def _fleet(connection: sa.Connection, books: PriceBooks, index: list[tuple[int, int, str]]) -> dict[str, FleetDevice]:
    fleet = {}
    rows = connection.execute(sa.select(
        devices.c.device_id, devices.c.name, devices.c.site, devices.c.profile, devices.c.cpu_cores,
        devices.c.created_unix_ns, devices.c.revoked_unix_ns, devices.c.first_start_unix_ns,
    ))
    for row in rows:
        schedule = books.schedule(
            connection, profile=row.profile, site=row.site, reported_cpu_cores=row.cpu_cores, index=index
        )
        fleet[row.device_id] = FleetDevice(
            device_id=row.device_id, name=row.name, site=row.site,
            service_start_unix_ns=min(row.created_unix_ns, row.first_start_unix_ns or row.created_unix_ns),
            service_end_unix_ns=row.revoked_unix_ns,
            rates=tuple((start, rate.compute_per_device_s) for start, rate in schedule.effective),
        )
    return fleet


def _month_spend(connection: sa.Connection, context: ChargeContext) -> dict[tuple[int, str], int]:
    """List spend (picos) per calendar month and discount in the months of the report's range
    but outside it (the report's rows hold the rest), under the discounts of the book in force
    at each month's start."""
    first, last = month_start(context.since_unix_ns), next_month(month_start(context.until_unix_ns - 1))
    if not any(context.book_at(month).discounts for month in _months(first, last)):
        return {}
    spend: dict[tuple[int, str], int] = {}
    for since, until in ((first, context.since_unix_ns), (context.until_unix_ns, last)):
        if since >= until:
            continue
        for row in connection.execute(cost_select(CostQuery((), since, until), detail=True)):
            values = row._mapping
            month = month_start(int(values["bucket"]))
            device = context.devices.get(values["device_id"])
            discount = context.book_at(month).discount_for(device.name if device else "", values["model"])
            if discount is not None:
                key = (month, discount.name)
                spend[key] = spend.get(key, 0) + int(values["cost_pico_hi"]) * ROLLUP_SPLIT + int(values["cost_pico_lo"])
    return spend


def record_discount(
    connection: sa.Connection, books: PriceBooks, *, device_name: str, model: str, start_unix_ns: int, list_pico: int
) -> dict | None:
    """The volume discount of a record's month as it applies to the record (for `report
    explain`; JSON-ready), or None when no discount covers it."""
    month = month_start(start_unix_ns)
    in_force = books.in_force(connection)
    book = next((book for start, book in reversed(in_force) if start <= month), in_force[0][1])
    discount = book.discount_for(device_name, model)
    if discount is None:
        return None
    names = dict(connection.execute(sa.select(devices.c.device_id, devices.c.name)).all())
    spend = 0
    for row in connection.execute(cost_select(CostQuery((), month, next_month(month)), detail=True)):
        values = row._mapping
        if book.discount_for(names.get(values["device_id"], ""), values["model"]) == discount:
            spend += int(values["cost_pico_hi"]) * ROLLUP_SPLIT + int(values["cost_pico_lo"])
    share = graduated_share(discount, spend)
    return {
        "discount": discount.name, "month": rfc3339(month), "month_list_spend": decimal_text(picos_to_decimal(spend)),
        "tiers": [{"from": str(tier.start), "percent_off": str(tier.percent_off)} for tier in discount.tiers],
        "effective_share": exact_text(share), "effective_exact_picos": exact_text(list_pico * share),
    }


def _months(first: int, last: int) -> list[int]:
    months = []
    while first < last:
        months.append(first)
        first = next_month(first)
    return months
