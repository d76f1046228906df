"""What budgets spent, kept on ingest, and the events their thresholds make.

Ingest adds the rows it actually inserted (collector.store) to each matching budget's spend in
the period of each record's start, in the same transaction, so a replayed batch adds nothing
and two replicas storing the same batch add it once. The adding upsert locks the spend row
until COMMIT on PostgreSQL, so the spend before and after each addition is exact, and each
threshold is crossed by exactly one addition: that transaction stores the event (ON CONFLICT
DO NOTHING on its unique key as a backstop) with a delivery per live webhook.

A budget added or changed mid-period starts from the spend of its current period so far, summed
from the stored records and roll-ups by `recompute`. Records ingested while that happens are
counted once: on PostgreSQL ingest reads the budgets FOR SHARE and `lock_budgets` takes the
table in EXCLUSIVE mode, so a creation waits for the ingests under way (whose records it then
sums) and the ingests that follow wait for it (and see the budget); SQLite runs write
transactions one at a time. Records that arrive later for a period before the budget's creation
or last change are not counted: that period was not summed.

Budgets are few and change rarely: parsed budgets are cached by (id, update time), and ingest
reads only the small live list per batch (nothing more when it is empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.budgets import Budget, amount_text, crossed_thresholds, period_bounds
from collector.bulk import add_rows
from collector.rollups import HOUR_NS
from collector.rows import RECORD_COLUMNS
from collector.schema import (
    ROLLUP_SPLIT,
    budget_events,
    budget_spend,
    budgets,
    cost_rollups,
    devices,
    records,
    webhook_deliveries,
    webhooks,
)

_SPEND_COLUMNS = ("budget_id", "period_start_unix_ns", "spent_hi", "spent_lo", "records")
_SPEND_KEY = ("budget_id", "period_start_unix_ns")
_AT = {name: RECORD_COLUMNS.index(name) for name in ("start_unix_ns", "model", "tags", "cost_pico", "energy_uj")}
_MAX_CACHED = 1024


class BudgetBook:
    """The live budgets, parsed once per version."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, int], Budget] = {}
        self._counted_from: dict[tuple[str, int], int] = {}

    def live(self, connection: sa.Connection, *, for_ingest: bool = False) -> list[Budget]:
        """The budgets not deleted, by name. for_ingest: read FOR SHARE on PostgreSQL, which holds
        off a budget's creation or change until this transaction ends (see the module's text)."""
        query = sa.select(budgets).where(budgets.c.deleted_unix_ns.is_(None)).order_by(budgets.c.name)
        if for_ingest:
            query = query.with_for_update(read=True)
        found = []
        for row in connection.execute(query):
            key = (row.budget_id, row.updated_unix_ns)
            budget = self._parsed.get(key)
            if budget is None:
                if len(self._parsed) >= _MAX_CACHED:
                    self._parsed.clear()
                    self._counted_from.clear()
                budget = self._parsed[key] = budget_from_row(row)
            found.append(budget)
        return found

    def counted_from(self, budget: Budget) -> int:
        """Records that start before this were summed by no one: the period of the budget's
        creation or last change starts then."""
        key = (budget.budget_id, budget.updated_unix_ns)
        start = self._counted_from.get(key)
        if start is None:
            start = self._counted_from[key] = period_bounds(budget, budget.updated_unix_ns)[0]
        return start


def budget_from_row(row: sa.Row) -> Budget:
    throttle = row.throttle_per_second
    return Budget(
        budget_id=row.budget_id, name=row.name, scope_kind=row.scope_kind, scope_value=row.scope_value,
        period=row.period, timezone=row.timezone, unit=row.unit, amount=row.amount,
        thresholds=tuple(row.thresholds), action=row.action,
        throttle_per_second=None if throttle is None else Decimal(throttle),
        created_unix_ns=row.created_unix_ns, updated_unix_ns=row.updated_unix_ns,
    )


def lock_budgets(connection: sa.Connection) -> None:
    """Before a budget's creation or change: wait for the ingests under way, hold off the next."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE budgets IN EXCLUSIVE MODE")


def applies_to_device(budget: Budget, *, device_name: str, site: str) -> bool:
    """Whether some of the device's records can count against the budget."""
    kind = budget.scope_kind
    if kind == "device":
        return budget.scope_value == device_name
    if kind == "site":
        return budget.scope_value == site
    return True


def tags_match(budget: Budget, tags_json: str) -> bool:
    key, value = budget.tag
    return json.loads(tags_json).get(key) == value


# On ingest


def add_spend(
    connection: sa.Connection, book: BudgetBook, live: Sequence[Budget], rows: Sequence[tuple], *,
    device_name: str, site: str, now_unix_ns: int,
) -> None:
    """Add the newly inserted priced rows (of one device) to the spend of the budgets that count
    them, and store the events of the thresholds this crosses."""
    applying = [budget for budget in live if applies_to_device(budget, device_name=device_name, site=site)]
    if not applying or not rows:
        return
    sums: dict[tuple[str, int], list[int]] = {}
    for budget in applying:
        _sum_budget(budget, book.counted_from(budget), rows, sums)
    if not sums:
        return
    keys = sorted(sums)  # one order for every writer: no deadlock between replicas
    add_rows(
        connection, budget_spend, _SPEND_COLUMNS, _SPEND_KEY,
        [(*key, *divmod(sums[key][0], ROLLUP_SPLIT), sums[key][1]) for key in keys],
        counters=("records",), split_counters=("spent",), split=ROLLUP_SPLIT,
    )
    after = _spent(connection, keys)
    by_id = {budget.budget_id: budget for budget in applying}
    for budget_id, period_start in keys:
        budget = by_id[budget_id]
        total = after[(budget_id, period_start)]
        for threshold in crossed_thresholds(budget, total - sums[(budget_id, period_start)][0], total):
            record_event(
                connection, budget_id, period_start_unix_ns=period_start, kind="threshold", key=str(threshold),
                details=threshold_details(budget, threshold, total, period_start), now_unix_ns=now_unix_ns,
            )


def _sum_budget(budget: Budget, counted_from: int, rows: Sequence[tuple], sums: dict) -> None:
    start_at, model_at, tags_at = _AT["start_unix_ns"], _AT["model"], _AT["tags"]
    value_at = _AT["cost_pico"] if budget.unit == "money" else _AT["energy_uj"]
    kind, scope_value = budget.scope_kind, budget.scope_value
    tag_cache: dict[str, bool] = {}
    low = high = 0
    acc: list[int] = []
    for row in rows:
        if kind == "model" and row[model_at] != scope_value:
            continue
        if kind == "tag":
            tags = row[tags_at]
            matched = tag_cache.get(tags)
            if matched is None:
                matched = tag_cache[tags] = tags_match(budget, tags)
            if not matched:
                continue
        start = row[start_at]
        if not low <= start < high:
            if start < counted_from:
                continue
            low, high = period_bounds(budget, start)
            acc = sums.setdefault((budget.budget_id, low), [0, 0])
        acc[0] += row[value_at]
        acc[1] += 1


def _spent(connection: sa.Connection, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    rows = connection.execute(
        sa.select(budget_spend.c.budget_id, budget_spend.c.period_start_unix_ns, budget_spend.c.spent_hi,
                  budget_spend.c.spent_lo)
        .where(budget_spend.c.budget_id.in_({key[0] for key in keys}),
               budget_spend.c.period_start_unix_ns.in_({key[1] for key in keys}))
    )
    return {(row[0], row[1]): row[2] * ROLLUP_SPLIT + row[3] for row in rows}


def threshold_details(budget: Budget, threshold: int, spent: int, period_start_unix_ns: int) -> dict:
    return {
        "budget": budget.name, "scope": budget.scope, "action": budget.action, "unit": budget.unit,
        "threshold": threshold, "spent": amount_text(budget.unit, spent),
        "amount": amount_text(budget.unit, budget.amount),
        "period_start_unix_ns": period_start_unix_ns,
        "period_end_unix_ns": period_bounds(budget, period_start_unix_ns)[1],
    }


# Events


def record_event(
    connection: sa.Connection, budget_id: str, *, period_start_unix_ns: int, kind: str, key: str, details: dict,
    now_unix_ns: int,
) -> bool:
    """Store the event unless it is stored already, with a delivery per live webhook; True when new."""
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(budget_events)
    event_id = connection.execute(
        insert.values(
            budget_id=budget_id, period_start_unix_ns=period_start_unix_ns, kind=kind, key=key,
            created_unix_ns=now_unix_ns, details=details,
        ).on_conflict_do_nothing().returning(budget_events.c.event_id)
    ).scalar()
    if event_id is None:
        return False
    hooks = connection.execute(sa.select(webhooks.c.webhook_id).where(webhooks.c.revoked_unix_ns.is_(None))).scalars()
    deliveries = [
        {"event_id": event_id, "webhook_id": webhook_id, "attempts": 0, "next_attempt_unix_ns": now_unix_ns,
         "claimed_until_unix_ns": 0, "delivered_unix_ns": None, "last_error": ""}
        for webhook_id in hooks
    ]
    if deliveries:
        connection.execute(sa.insert(webhook_deliveries), deliveries)
    return True


# At a budget's creation or change


def recompute(connection: sa.Connection, budget: Budget, *, now_unix_ns: int) -> None:
    """Set the spend of the budget's current period to what the stored records matching its scope
    spent in it, and store the events of the thresholds already reached (after lock_budgets)."""
    start, end = period_bounds(budget, now_unix_ns)
    spent, count = scope_spend(connection, budget, start, end)
    connection.execute(
        sa.delete(budget_spend).where(
            budget_spend.c.budget_id == budget.budget_id, budget_spend.c.period_start_unix_ns == start
        )
    )
    hi, lo = divmod(spent, ROLLUP_SPLIT)
    connection.execute(sa.insert(budget_spend), {
        "budget_id": budget.budget_id, "period_start_unix_ns": start, "spent_hi": hi, "spent_lo": lo, "records": count,
    })
    for threshold in budget.thresholds:
        if spent * 100 >= threshold * budget.amount:
            record_event(
                connection, budget.budget_id, period_start_unix_ns=start, kind="threshold", key=str(threshold),
                details=threshold_details(budget, threshold, spent, start), now_unix_ns=now_unix_ns,
            )


def scope_spend(connection: sa.Connection, budget: Budget, since_unix_ns: int, until_unix_ns: int) -> tuple[int, int]:
    """(spent, records) of the stored records matching the budget's scope that start in
    [since, until): whole UTC hours from the roll-ups (which outlive pruned records), partial
    hours from the records."""
    first_hour = -(-since_unix_ns // HOUR_NS) * HOUR_NS
    last_hour = until_unix_ns // HOUR_NS * HOUR_NS
    if first_hour >= last_hour:
        parts = [(records, since_unix_ns, until_unix_ns)]
    else:
        parts = [(records, since_unix_ns, first_hour), (cost_rollups, first_hour, last_hour),
                 (records, last_hour, until_unix_ns)]
    spent = count = 0
    for table, since, until in parts:
        if since < until:
            part_spent, part_count = _table_spend(connection, budget, table, since, until)
            spent += part_spent
            count += part_count
    return spent, count


def _table_spend(
    connection: sa.Connection, budget: Budget, table: sa.Table, since: int, until: int
) -> tuple[int, int]:
    name = "cost_pico" if budget.unit == "money" else "energy_uj"
    if table is records:
        time = table.c.start_unix_ns
        sums = [sa.func.sum(table.c[name] // ROLLUP_SPLIT), sa.func.sum(table.c[name] % ROLLUP_SPLIT), sa.func.count()]
    else:
        time = table.c.hour_unix_ns
        sums = [sa.func.sum(table.c[f"{name}_hi"]), sa.func.sum(table.c[f"{name}_lo"]), sa.func.sum(table.c.records)]
    query = sa.select(*sums).where(time >= since, time < until)
    kind, value = budget.scope_kind, budget.scope_value
    if kind == "device":
        query = query.where(table.c.device_id.in_(sa.select(devices.c.device_id).where(devices.c.name == value)))
    elif kind in ("model", "site"):
        query = query.where(table.c[kind] == value)
    elif kind == "tag":
        # As stored: PostgreSQL's json type has no equality. Each tag set is checked in Python.
        tags = sa.cast(table.c.tags, sa.Text)
        query = query.add_columns(tags).group_by(tags)
    spent = count = 0
    for row in connection.execute(query):
        if kind == "tag" and not tags_match(budget, row[3]):
            continue
        spent += int(row[0] or 0) * ROLLUP_SPLIT + int(row[1] or 0)
        count += int(row[2] or 0)
    return spent, count


def current_spend(connection: sa.Connection, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The spend stored for each (budget_id, period start); absent keys spent nothing."""
    keys = list(keys)
    if not keys:
        return {}
    spent = _spent(connection, keys)
    return {key: spent.get(key, 0) for key in keys}
