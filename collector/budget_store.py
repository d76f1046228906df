"""Budgets in the database: adding, changing and deleting them (each recomputes the current
period's spend, collector.budget_ledger), where they stand, and their events."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from collector import budget_ledger
from collector.budget_ledger import budget_from_row, lock_budgets
from collector.budgets import (
    Budget,
    BudgetEvent,
    BudgetSpec,
    BudgetStatus,
    budget_state,
    parse_budget,
    period_bounds,
)
from collector.pricebook import NAME_PATTERN
from collector.pricing import decimal_text
from collector.schema import budget_events, budgets

MAX_EVENTS = 1000


def insert_budget(connection: sa.Connection, document: Mapping, *, now_unix_ns: int) -> Budget:
    """BudgetError for a bad document, ValueError for a taken name."""
    spec = parse_budget(document)
    lock_budgets(connection)
    if connection.execute(sa.select(budgets.c.budget_id).where(budgets.c.name == spec.name)).first() is not None:
        raise ValueError(f"a budget named {spec.name!r} already exists")
    budget = Budget.from_spec(
        spec, "bgt_" + secrets.token_hex(12), created_unix_ns=now_unix_ns, updated_unix_ns=now_unix_ns
    )
    connection.execute(sa.insert(budgets), {**_columns(spec), "budget_id": budget.budget_id,
                                            "created_unix_ns": now_unix_ns, "updated_unix_ns": now_unix_ns,
                                            "deleted_unix_ns": None})
    budget_ledger.recompute(connection, budget, now_unix_ns=now_unix_ns)
    return budget


def replace_budget(connection: sa.Connection, name_or_id: str, document: Mapping, *, now_unix_ns: int) -> Budget:
    """The whole document replaced (a new name too); KeyError unknown, ValueError name taken."""
    spec = parse_budget(document)
    lock_budgets(connection)
    old = find_live(connection, name_or_id)
    if old is None:
        raise KeyError(f"no budget {name_or_id!r}")
    if spec.name != old.name and connection.execute(
        sa.select(budgets.c.budget_id).where(budgets.c.name == spec.name)
    ).first() is not None:
        raise ValueError(f"a budget named {spec.name!r} already exists")
    # Strictly later than the last version, so that caches keyed by it see the change.
    updated = max(now_unix_ns, old.updated_unix_ns + 1)
    connection.execute(
        sa.update(budgets).where(budgets.c.budget_id == old.budget_id)
        .values(**_columns(spec), updated_unix_ns=updated)
    )
    budget = Budget.from_spec(spec, old.budget_id, created_unix_ns=old.created_unix_ns, updated_unix_ns=updated)
    budget_ledger.recompute(connection, budget, now_unix_ns=now_unix_ns)
    return budget


def soft_delete(connection: sa.Connection, name_or_id: str, *, now_unix_ns: int) -> None:
    """The budget stops counting and leaves the Push replies; its spend and events stay. KeyError unknown."""
    old = find_live(connection, name_or_id)
    if old is None:
        raise KeyError(f"no budget {name_or_id!r}")
    # A deleted budget's name may be taken again: the row keeps its id, and frees the name.
    connection.execute(
        sa.update(budgets).where(budgets.c.budget_id == old.budget_id)
        .values(deleted_unix_ns=now_unix_ns, name=_deleted_name(old))
    )


def _deleted_name(budget: Budget) -> str:
    # Unique, and no valid budget name (those have no "~").
    return f"~{budget.budget_id}"


def find_live(connection: sa.Connection, name_or_id: str) -> Budget | None:
    if type(name_or_id) is not str or not NAME_PATTERN.fullmatch(name_or_id):
        return None
    for column in (budgets.c.name, budgets.c.budget_id):
        row = connection.execute(
            sa.select(budgets).where(column == name_or_id, budgets.c.deleted_unix_ns.is_(None))
        ).first()
        if row is not None:
            return budget_from_row(row)
    return None


def statuses(connection: sa.Connection, live: Sequence[Budget], *, now_unix_ns: int) -> list[BudgetStatus]:
    """Where each budget's current period stands."""
    bounds = {budget.budget_id: period_bounds(budget, now_unix_ns) for budget in live}
    spent = budget_ledger.current_spend(connection, ((b.budget_id, bounds[b.budget_id][0]) for b in live))
    found = []
    for budget in live:
        start, end = bounds[budget.budget_id]
        total = spent[(budget.budget_id, start)]
        percent, state = budget_state(budget, total)
        found.append(BudgetStatus(budget, start, end, total, percent, state))
    return found


def status_of(connection: sa.Connection, name_or_id: str, *, now_unix_ns: int) -> BudgetStatus | None:
    budget = find_live(connection, name_or_id)
    return None if budget is None else statuses(connection, [budget], now_unix_ns=now_unix_ns)[0]


def events(
    connection: sa.Connection, *, budget: str | None, since_unix_ns: int | None, limit: int
) -> list[BudgetEvent]:
    """Events, oldest first, of one budget (a name or id; deleted ones by id) or all.
    ValueError for a limit outside 1..MAX_EVENTS; KeyError for an unknown budget."""
    if type(limit) is not int or not 1 <= limit <= MAX_EVENTS:
        raise ValueError(f"limit must be an integer from 1 to {MAX_EVENTS}, got {limit!r}")
    name = sa.case((budgets.c.deleted_unix_ns.is_(None), budgets.c.name), else_=sa.null())
    query = (
        sa.select(budget_events, name.label("budget_name"), budgets.c.budget_id.label("owner"))
        .join(budgets, budgets.c.budget_id == budget_events.c.budget_id)
        .order_by(budget_events.c.event_id).limit(limit)
    )
    if budget is not None:
        query = query.where(sa.or_(budget_events.c.budget_id == budget, budgets.c.name == budget))
        if connection.execute(
            sa.select(budgets.c.budget_id).where(sa.or_(budgets.c.budget_id == budget, budgets.c.name == budget))
        ).first() is None:
            raise KeyError(f"no budget {budget!r}")
    if since_unix_ns is not None:
        query = query.where(budget_events.c.created_unix_ns >= since_unix_ns)
    return [
        BudgetEvent(
            event_id=row.event_id, budget_id=row.budget_id,
            budget_name=row.budget_name or row.details.get("budget") or row.budget_id,
            period_start_unix_ns=row.period_start_unix_ns, kind=row.kind, key=row.key,
            created_unix_ns=row.created_unix_ns, details=row.details,
        )
        for row in connection.execute(query)
    ]


def _columns(spec: BudgetSpec) -> dict:
    return {
        "name": spec.name, "scope_kind": spec.scope_kind, "scope_value": spec.scope_value, "period": spec.period,
        "timezone": spec.timezone, "unit": spec.unit, "amount": spec.amount, "thresholds": list(spec.thresholds),
        "action": spec.action,
        "throttle_per_second": None if spec.throttle_per_second is None else decimal_text(spec.throttle_per_second),
    }
