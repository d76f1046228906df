"""Costs of a period rather than of a record: volume discounts, a device's idle capacity, and
monthly fixed costs, worked out for a report from its sums (collector.reports).

A report's sums arrive as `Usage` rows: one device's use of one model in one slice (a UTC day,
or an hour in an hourly report), for one cell of the report (a period and a group key). Each
row knows its list cost (the records' stored costs) and the part that was compute.

- **Discounts** (pricebook.Discount): a calendar month's list spend in a discount's scope goes
  through its graduated tiers; every row of the month in that scope then costs the month's
  effective share, list x effective / list spend. The share follows the whole month's spend, so
  the current month's discount grows as the month goes on, as an invoice's would.
- **Idle**: a device's capacity cost over a slice (the amortized or hourly rate of its profile,
  over the time it was in service, per the book in force) minus the compute its records used,
  plus the cost of its idle-energy records, is the slice's idle cost. Policy "spread" (the
  default) shares it over the cells that used the device in the slice by list cost; policy
  "bucket", or a slice nobody used, keeps it in an "(idle)" cell of the device.
- **Monthly costs** (pricebook.MonthlyCost): an amount per calendar month, prorated to the time
  of the month that a report period and the book cover, shared over the period's cells that used
  the device or model it belongs to (all cells for a fleet-wide cost) by list cost, or kept in a
  "(fixed)" cell when none did.

Money stays exact: each amount is an exact rational until it is split, and a split gives
integer picos that add up to the rounded whole (largest remainders), so a report's cells add up
to its totals and a device's compute and idle add up to its whole capacity cost, to the pico.
Capacity is rounded as a running total from the start of the device's service, so adjacent
slices never gain or lose a pico between them.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from math import lcm

from collector.pricebook import Discount, PriceBook
from collector.pricing import NS_PER_S, PICOS_PER_UNIT, div_round_half_even

HOUR_NS = 3_600 * NS_PER_S
DAY_NS = 24 * HOUR_NS
IDLE_LABEL = "(idle)"
FIXED_LABEL = "(fixed)"


@dataclass(frozen=True, slots=True)
class Usage:
    cell: tuple  # (period start or None, group key)
    slice_start_unix_ns: int
    device_id: str
    model: str
    idle: bool  # records of idle energy: no inference used it
    list_pico: int
    compute_pico: int


@dataclass
class FleetDevice:
    device_id: str
    name: str
    site: str
    service_start_unix_ns: int  # when it was added, or its first record's start if earlier
    service_end_unix_ns: int | None  # when it was revoked
    # (from, currency per device-second) of its profile under each book in force, oldest first.
    rates: tuple[tuple[int, Fraction], ...]

    def __post_init__(self) -> None:
        # picos per ns of each rate over one common denominator: the running cost is then a sum
        # of integer products, divided once.
        per_ns = [rate * PICOS_PER_UNIT / NS_PER_S for _, rate in self.rates]
        self._den = lcm(*(rate.denominator for rate in per_ns)) if per_ns else 1
        self._nums = [rate.numerator * (self._den // rate.denominator) for rate in per_ns]
        self._running: dict[int, int] = {}

    def capacity_pico(self, start: int, end: int) -> int:
        """The device's whole cost over [start, end) ∩ its service, in picos."""
        if end <= start:
            return 0
        return self._running_pico(end) - self._running_pico(start)

    def _running_pico(self, at: int) -> int:
        """Capacity cost from the start of service to `at`, rounded half-even (slices share
        their ends, so each is worked out once)."""
        found = self._running.get(at)
        if found is not None:
            return found
        end = at if self.service_end_unix_ns is None else min(at, self.service_end_unix_ns)
        total = 0
        for index, (start, _) in enumerate(self.rates):
            until = self.rates[index + 1][0] if index + 1 < len(self.rates) else end
            first, last = max(start, self.service_start_unix_ns), min(until, end)
            if last > first:
                total += self._nums[index] * (last - first)
        self._running[at] = picos = div_round_half_even(total, self._den)
        return picos


@dataclass(frozen=True, slots=True)
class ChargeContext:
    """What the period costs of a report depend on, besides its rows."""

    group_by: tuple[str, ...]
    since_unix_ns: int  # the report's range, with open ends closed (fleet start, now)
    until_unix_ns: int
    granularity: str | None
    books: Sequence[tuple[int, PriceBook]]  # (effective from, book), oldest first
    devices: Mapping[str, FleetDevice]  # by id
    # List spend (picos) of each month (its start) under each discount (its name), outside the
    # report's range: the rows add the spend inside it.
    month_spend: Mapping[tuple[int, str], int] = field(default_factory=dict)
    # The part of the range that capacity and monthly costs accrue over: from the fleet's start
    # to now at the latest (a range reaching into the future costs nothing there yet).
    accrual_since_unix_ns: int = 0
    accrual_until_unix_ns: int = 0

    def book_at(self, unix_ns: int) -> PriceBook:
        index = bisect_right(self.books, unix_ns, key=_effective_from) - 1
        return self.books[max(index, 0)][1]

    def slice_ns(self) -> int:
        return HOUR_NS if self.granularity == "hour" else DAY_NS


def _effective_from(book: tuple[int, PriceBook]) -> int:
    return book[0]


@dataclass(slots=True)
class CellCharges:
    discount: int = 0
    idle: int = 0
    fixed: int = 0


def month_start(unix_ns: int) -> int:
    day = datetime.fromtimestamp(unix_ns // NS_PER_S, timezone.utc)
    return calendar.timegm((day.year, day.month, 1, 0, 0, 0)) * NS_PER_S


def next_month(month_start_unix_ns: int) -> int:
    return month_start(month_start_unix_ns + 32 * DAY_NS)


def period_count(since: int, until: int, granularity: str | None) -> int:
    """About how many report periods [since, until) spans (months taken as 28 days: at most)."""
    if granularity is None:
        return 1
    size = {"hour": HOUR_NS, "day": DAY_NS, "month": 28 * DAY_NS}[granularity]
    return -(-(until - since) // size)


def period_start(unix_ns: int, granularity: str | None) -> int | None:
    if granularity is None:
        return None
    if granularity == "month":
        return month_start(unix_ns)
    size = HOUR_NS if granularity == "hour" else DAY_NS
    return unix_ns - unix_ns % size


def periods(since: int, until: int, granularity: str | None) -> list[tuple[int | None, int, int]]:
    """(period, start, end) of each report period over [since, until), cut to the range."""
    if granularity is None:
        return [(None, since, until)] if since < until else []
    found = []
    start = period_start(since, granularity)
    while start < until:
        end = next_month(start) if granularity == "month" else start + (HOUR_NS if granularity == "hour" else DAY_NS)
        found.append((start, max(start, since), min(end, until)))
        start = end
    return found


def graduated_share(discount: Discount, spend_pico: int) -> Fraction:
    """What a month's list spend costs after the discount, as a share of it (1 for no spend)."""
    if spend_pico <= 0:
        return Fraction(1)
    starts = [Fraction(tier.start) * PICOS_PER_UNIT for tier in discount.tiers]
    effective = Fraction(0)
    for index, tier in enumerate(discount.tiers):
        upper = starts[index + 1] if index + 1 < len(starts) else None
        if spend_pico <= starts[index]:
            break
        portion = (spend_pico if upper is None else min(spend_pico, upper)) - starts[index]
        effective += portion * (1 - Fraction(tier.percent_off) / 100)
    return effective / spend_pico


def apportion(total: int, weights: Mapping[Hashable, Fraction | int]) -> dict[Hashable, int]:
    """`total` split in proportion to `weights` (not all zero) into integers that add up to it:
    each gets the floor of its exact share, and the largest remainders one more."""
    scale = 1 if all(type(weight) is int for weight in weights.values()) else lcm(
        *(Fraction(weight).denominator for weight in weights.values())
    )
    scaled = {key: int(weight * scale) for key, weight in weights.items()}
    whole = sum(scaled.values())
    shares = {key: divmod(total * weight, whole) for key, weight in scaled.items()}
    left = total - sum(floor for floor, _ in shares.values())
    result = {key: floor for key, (floor, _) in shares.items()}
    if left:
        for key in sorted(shares, key=lambda key: (-shares[key][1], repr(key)))[:left]:
            result[key] += 1
    return result


def period_charges(rows: Sequence[Usage], context: ChargeContext) -> dict[tuple, CellCharges]:
    """Each cell's discount, idle and fixed cost (cells that only hold idle or fixed costs
    included, keyed as bucket cells)."""
    cells: dict[tuple, CellCharges] = {}

    def cell(key: tuple) -> CellCharges:
        found = cells.get(key)
        if found is None:
            found = cells[key] = CellCharges()
        return found

    idle_discounts = _discounts(rows, context, cell)
    _idle(rows, context, idle_discounts, cell)
    _fixed(rows, context, cell)
    return cells


def _discounts(
    rows: Sequence[Usage], context: ChargeContext, cell: Callable[[tuple], CellCharges]
) -> dict[tuple[str, int], int]:
    """Add each cell's discount; return the discount of each (device, slice)'s idle records."""
    spend = dict(context.month_spend)
    listed: dict[tuple, int] = {}  # (target, month, discount name) -> list picos
    discounts: dict[tuple[int, str], Discount] = {}
    # Many rows share a slice, and a month, device and model: each worked out once.
    months: dict[int, int] = {}
    covering: dict[tuple[int, str, str], Discount | None] = {}
    for row in rows:
        if not row.list_pico:
            continue
        month = months.get(row.slice_start_unix_ns)
        if month is None:
            month = months[row.slice_start_unix_ns] = month_start(row.slice_start_unix_ns)
        scope = (month, row.device_id, row.model)
        if scope in covering:
            discount = covering[scope]
        else:
            device = context.devices.get(row.device_id)
            discount = covering[scope] = context.book_at(month).discount_for(device.name if device else "", row.model)
        if discount is None:
            continue
        discounts[month, discount.name] = discount
        spend[month, discount.name] = spend.get((month, discount.name), 0) + row.list_pico
        target = ("idle", row.device_id, row.slice_start_unix_ns) if row.idle else ("cell", row.cell)
        key = (target, month, discount.name)
        listed[key] = listed.get(key, 0) + row.list_pico
    off = {key: 1 - graduated_share(discount, spend[key]) for key, discount in discounts.items()}
    exact: dict[tuple, Fraction] = {}
    for (target, month, name), list_pico in listed.items():
        if off[month, name]:
            exact[target] = exact.get(target, Fraction(0)) + list_pico * off[month, name]
    idle_discounts: dict[tuple[str, int], int] = {}
    if exact:
        whole = sum(exact.values())
        for target, picos in apportion(div_round_half_even(whole.numerator, whole.denominator), exact).items():
            if target[0] == "cell":
                cell(target[1]).discount += picos
            else:
                idle_discounts[target[1], target[2]] = picos
    return idle_discounts


def _idle(
    rows: Sequence[Usage], context: ChargeContext, idle_discounts: Mapping[tuple[str, int], int],
    cell: Callable[[tuple], CellCharges],
) -> None:
    slices: dict[tuple[str, int], list[Usage]] = {}
    for row in rows:
        slices.setdefault((row.device_id, row.slice_start_unix_ns), []).append(row)
    size = context.slice_ns()
    used_capacity: dict[tuple[str, int | None], int] = {}
    for (device_id, start), used in sorted(slices.items(), key=lambda item: item[0]):
        device = context.devices.get(device_id)
        if device is None:
            continue
        first, last = max(start, context.accrual_since_unix_ns), min(start + size, context.accrual_until_unix_ns)
        capacity = device.capacity_pico(first, last)
        period = period_start(start, context.granularity)
        used_capacity[device_id, period] = used_capacity.get((device_id, period), 0) + capacity
        compute = sum(row.compute_pico for row in used if not row.idle)
        idle_records = sum(row.list_pico for row in used if row.idle) - idle_discounts.get((device_id, start), 0)
        pool = max(0, capacity - compute) + idle_records
        weights: dict[tuple, int] = {}
        for row in used:
            if not row.idle and row.list_pico:
                weights[row.cell] = weights.get(row.cell, 0) + row.list_pico
        if pool and weights and context.book_at(start).idle_policy == "spread":
            for key, picos in apportion(pool, weights).items():
                cell(key).idle += picos
        elif pool:
            cell(_bucket_cell(context, period, IDLE_LABEL, device=device)).idle += pool
    # The time of each period that no record used: all idle, in the device's bucket.
    for period, start, end in periods(context.accrual_since_unix_ns, context.accrual_until_unix_ns,
                                      context.granularity):
        for device in context.devices.values():
            unused = device.capacity_pico(start, end) - used_capacity.get((device.device_id, period), 0)
            if unused > 0:
                cell(_bucket_cell(context, period, IDLE_LABEL, device=device)).idle += unused


def _fixed(rows: Sequence[Usage], context: ChargeContext, cell: Callable[[tuple], CellCharges]) -> None:
    by_period: dict[object, list[Usage]] = {}
    for row in rows:
        if not row.idle and row.list_pico:
            by_period.setdefault(row.cell[0], []).append(row)
    for (_, device_name, model), period, picos in _monthly_pieces(context):
        weights: dict[tuple, int] = {}
        for row in by_period.get(period, ()):
            if model is not None and row.model != model:
                continue
            device = context.devices.get(row.device_id)
            if device_name is None or (device is not None and device.name == device_name):
                weights[row.cell] = weights.get(row.cell, 0) + row.list_pico
        if weights:
            for key, share in apportion(picos, weights).items():
                cell(key).fixed += share
        else:
            named = next((device for device in context.devices.values() if device.name == device_name), None)
            bucket = _bucket_cell(context, period, FIXED_LABEL, device=named, device_name=device_name, model=model)
            cell(bucket).fixed += picos


def _monthly_pieces(context: ChargeContext) -> Iterable[tuple[tuple[str, str | None, str | None], int | None, int]]:
    """(monthly cost, report period, picos) of the monthly costs over the report's range. Each
    cost's share of a month (the time of the month that the range and its books cover, over the
    month's length) is rounded once, then split over the report periods by time, so that the
    totals do not depend on the granularity."""
    since, until = context.accrual_since_unix_ns, context.accrual_until_unix_ns
    report_periods = periods(since, until, context.granularity)
    month = month_start(since)
    while month < until:
        month_end = next_month(month)
        first, last = max(month, since), min(month_end, until)
        exact: dict[tuple[str, str | None, str | None], Fraction] = {}
        for start, book, end in _book_spans(context, first, last):
            for cost in book.monthly:
                key = (cost.name, cost.device, cost.model)
                share = Fraction(cost.amount) * PICOS_PER_UNIT * (end - start) / (month_end - month)
                exact[key] = exact.get(key, Fraction(0)) + share
        overlaps = {
            period: min(last, period_to) - max(first, period_from)
            for period, period_from, period_to in report_periods
            if min(last, period_to) > max(first, period_from)
        }
        for key, amount in exact.items():
            picos = div_round_half_even(amount.numerator, amount.denominator)
            if picos:
                for period, share in apportion(picos, overlaps).items():
                    if share:
                        yield key, period, share
        month = month_end


def _book_spans(context: ChargeContext, start: int, end: int) -> Iterable[tuple[int, PriceBook, int]]:
    """(from, book, to) of the books in force over [start, end)."""
    starts = [effective for effective, _ in context.books]
    index = max(bisect_right(starts, start) - 1, 0)
    while start < end:
        until = min(starts[index + 1], end) if index + 1 < len(starts) else end
        yield start, context.books[index][1], until
        start = until
        index += 1


def _bucket_cell(
    context: ChargeContext, period: int | None, label: str, *, device: FleetDevice | None = None,
    device_name: str | None = None, model: str | None = None,
) -> tuple:
    """The cell that keeps a cost no usage took: the group keys it is known by (device, its
    site, the model) and `label` for the others."""
    known = {"model": model}
    if device is not None:
        known |= {"device": device.name, "site": device.site}
    elif device_name is not None:
        known["device"] = device_name
    return period, tuple(known.get(key) or label for key in context.group_by)
