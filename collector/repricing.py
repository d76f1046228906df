"""Re-pricing stored records with the price books in force now, e.g. after a corrected book was
added effective from last month: records keep the prices they were ingested with until then.

Each record is priced by the code that prices it at ingest (collector.rows.priced_rows, with
the schedule of collector.books.PriceBooks for the record's profile and site and the device's
current cpu_cores), so a re-priced record costs exactly what it would if ingested now.

Pages of records, in (start, device, stream, seq) order, each in one transaction: the page's
records are locked (FOR UPDATE on PostgreSQL; SQLite's write transactions take turns), the
changed ones updated, and the difference between their new and old sums added to their roll-up
rows, hours and days (collector.rollups). Adding a difference commutes with ingest adding new records to the
same roll-up rows, so neither is lost or counted twice, whatever replica ingests meanwhile;
a record ingested meanwhile was priced with the same books. A second re-price of a record locked
by a first one waits, then sees its new costs and changes nothing: re-pricing is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from agent.record import EnergyShare, UsageRecord
from collector import model_usage
from collector.books import PriceBooks
from collector.database import transaction
from collector.rollups import (
    ROLLUP_COLUMNS,
    ROLLUP_KEY,
    SPLIT_SUMS,
    add_rollups,
    rollup_rows,
)
from collector.rows import RECORD_COLUMNS, priced_rows
from collector.schema import ROLLUP_SPLIT, devices, records

PAGE_RECORDS = 10_000
# What pricing writes, in RECORD_COLUMNS order.
PRICING_COLUMNS = (
    "price_book_id", "price_cpu_cores", "compute_cost_pico", "energy_cost_pico", "token_cost_pico",
    "request_cost_pico", "cost_pico", "list_cost_pico", "pricing_note",
)
_PRICING_AT = [RECORD_COLUMNS.index(name) for name in PRICING_COLUMNS]
_COMPONENTS_AT = [PRICING_COLUMNS.index(name) for name in (
    "compute_cost_pico", "energy_cost_pico", "token_cost_pico", "request_cost_pico",
)]
_COST_AT = RECORD_COLUMNS.index("cost_pico")
_AT = {name: RECORD_COLUMNS.index(name) for name in RECORD_COLUMNS}
_ORDER = (records.c.start_unix_ns, records.c.device_id, records.c.stream_id, records.c.seq)
_ROLLUP_RECORDS_AT = ROLLUP_COLUMNS.index("records")
_ROLLUP_SUMS_AT = ROLLUP_COLUMNS.index(SPLIT_SUMS[0])
_KEY_WIDTH = len(ROLLUP_KEY)
_UPDATE = (
    sa.update(records)
    .where(
        records.c.device_id == sa.bindparam("key_device_id"),
        records.c.stream_id == sa.bindparam("key_stream_id"),
        records.c.seq == sa.bindparam("key_seq"),
    )
    .values({name: sa.bindparam(f"new_{name}") for name in PRICING_COLUMNS})
)


@dataclass(frozen=True, slots=True)
class RepriceResult:
    records: int  # records re-priced
    changed: int  # records whose cost (any component) changed
    old_cost_pico: int  # the re-priced records' cost before
    new_cost_pico: int  # and after
    currency: str


def reprice(
    engine: sa.Engine,
    books: PriceBooks,
    *,
    since_unix_ns: int | None = None,
    until_unix_ns: int | None = None,
    device_id: str | None = None,
    page_records: int = PAGE_RECORDS,
    progress: Callable[[int, int], None] | None = None,
) -> RepriceResult:
    """Re-price the records whose start is in [since, until) (None: open), of one device if
    device_id is given, in pages of page_records, one transaction each; progress(records,
    total) is called after each page with the page's count and the records in the range when
    it began. The range is taken as given: Store.reprice checks it."""
    whole = None if progress is None else count(
        engine, since_unix_ns=since_unix_ns, until_unix_ns=until_unix_ns, device_id=device_id
    )
    totals = [0, 0, 0, 0]  # records, changed, old cost, new cost
    after = None
    while True:
        with transaction(engine, write=True) as connection:
            page = connection.execute(_page_select(since_unix_ns, until_unix_ns, device_id, after, page_records)).all()
            if page:
                counts = _reprice_page(connection, books, page)
                totals = [a + b for a, b in zip(totals, counts)]
            currency = books.currency(connection)
        if progress is not None and page:
            progress(len(page), whole)
        if len(page) < page_records:
            return RepriceResult(*totals, currency=currency)
        after = tuple(page[-1][_AT[column.name]] for column in _ORDER)


def count(engine: sa.Engine, *, since_unix_ns: int | None, until_unix_ns: int | None, device_id: str | None) -> int:
    """The records reprice() would go through now (its progress's total)."""
    select = sa.select(sa.func.count()).select_from(records)
    for condition in _conditions(since_unix_ns, until_unix_ns, device_id):
        select = select.where(condition)
    with transaction(engine) as connection:
        return connection.execute(select).scalar_one()


def _conditions(since: int | None, until: int | None, device_id: str | None) -> list:
    conditions = []
    if since is not None:
        conditions.append(records.c.start_unix_ns >= since)
    if until is not None:
        conditions.append(records.c.start_unix_ns < until)
    if device_id is not None:
        conditions.append(records.c.device_id == device_id)
    return conditions


def _page_select(
    since: int | None, until: int | None, device_id: str | None, after: tuple | None, page_records: int
) -> sa.Select:
    """The next page's records (RECORD_COLUMNS, JSON as stored text) and their device's cores."""
    columns = [
        sa.cast(records.c[name], sa.Text).label(name) if name in ("tags", "energy") else records.c[name]
        for name in RECORD_COLUMNS
    ]
    select = sa.select(*columns, devices.c.cpu_cores).join(devices, devices.c.device_id == records.c.device_id)
    for condition in _conditions(since, until, device_id):
        select = select.where(condition)
    if after is not None:
        select = select.where(sa.tuple_(*_ORDER) > sa.tuple_(*after))
    return select.order_by(*_ORDER).limit(page_records).with_for_update(of=records)


def _reprice_page(connection: sa.Connection, books: PriceBooks, page: Sequence[sa.Row]) -> tuple[int, int, int, int]:
    """Re-price a page of locked records; (records, changed, old cost, new cost)."""
    by_rate: dict[tuple[str, str, int], list[tuple]] = defaultdict(list)
    for row in page:
        by_rate[row.profile, row.site, row.cpu_cores].append(tuple(row)[:len(RECORD_COLUMNS)])
    old_rows, new_rows, changed = [], [], 0
    for (profile, site, cpu_cores), stored in by_rate.items():
        schedule = books.schedule(connection, profile=profile, site=site, reported_cpu_cores=cpu_cores)
        priced = priced_rows(
            [_pricing_input(row) for row in stored], device_id="", stream_id="", profile=profile, site=site,
            received_unix_ns=0, schedule=schedule,
        )
        for row, fresh in zip(stored, priced):
            old = tuple(row[i] for i in _PRICING_AT)
            new = tuple(fresh[i] for i in _PRICING_AT)
            if new != old:
                changed += any(old[i] != new[i] for i in _COMPONENTS_AT)
                old_rows.append(row)
                new_rows.append(_with_pricing(row, new))
    if new_rows:
        connection.execute(_UPDATE, [_update_parameters(row) for row in new_rows])
        add_rollups(connection, _rollup_differences(old_rows, new_rows))
        model_usage.add_cost_differences(connection, old_rows, new_rows)
    old_cost = sum(row[_COST_AT] for row in old_rows)
    new_cost = sum(row[_COST_AT] for row in new_rows)
    unchanged_cost = sum(row.cost_pico for row in page) - old_cost
    return len(page), changed, unchanged_cost + old_cost, unchanged_cost + new_cost


def _pricing_input(row: tuple) -> UsageRecord:
    """The record as far as pricing reads it: its energy as one share of the stored total (its
    cost depends only on the total)."""
    energy_uj = row[_AT["energy_uj"]]
    return UsageRecord(
        seq=row[_AT["seq"]], kind=row[_AT["kind"]], model=row[_AT["model"]],
        start_unix_ns=row[_AT["start_unix_ns"]], duration_ns=row[_AT["duration_ns"]],
        input_tokens=row[_AT["input_tokens"]], output_tokens=row[_AT["output_tokens"]],
        cpu_time_ns=row[_AT["cpu_time_ns"]], gpu_time_ns=row[_AT["gpu_time_ns"]], count=row[_AT["count"]],
        energy=(EnergyShare("", energy_uj, "", ""),) if energy_uj else (),
    )


def _with_pricing(row: tuple, pricing: tuple) -> tuple:
    values = list(row)
    for at, value in zip(_PRICING_AT, pricing):
        values[at] = value
    return tuple(values)


def _update_parameters(row: tuple) -> dict:
    parameters = {f"key_{name}": row[_AT[name]] for name in ("device_id", "stream_id", "seq")}
    parameters.update({f"new_{name}": row[at] for name, at in zip(PRICING_COLUMNS, _PRICING_AT)})
    return parameters


def _rollup_differences(old_rows: list[tuple], new_rows: list[tuple]) -> list[tuple]:
    """Roll-up rows that, added, turn the old rows' sums into the new rows' (same groups: only
    prices differ). A negative difference is written as hi < 0 and 0 <= lo < ROLLUP_SPLIT, which
    collector.bulk.add_rows adds with the carry like any other."""
    old = {row[:_KEY_WIDTH]: row for row in rollup_rows(old_rows)}
    differences = []
    for row in rollup_rows(new_rows):  # in key order, as ingest locks roll-up rows
        before = old[row[:_KEY_WIDTH]]
        parts = []
        for at in range(_ROLLUP_SUMS_AT, len(ROLLUP_COLUMNS), 2):
            difference = (row[at] - before[at]) * ROLLUP_SPLIT + row[at + 1] - before[at + 1]
            parts += divmod(difference, ROLLUP_SPLIT)
        if any(parts):  # a new book with the same prices changes no sum
            differences.append((*row[:_ROLLUP_RECORDS_AT], 0, *parts))
    return differences
