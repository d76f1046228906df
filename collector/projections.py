"""Forecasts of a scope's spend, and where they take the budgets on that scope: the answer of
GET /api/v1/forecasts, gRPC GetForecast and `infermeter report forecast`, and the projection
the alert task (collector.budget_alerts) records as a "forecast" event.

The history is the scope's spend per UTC day up to the start of today (collector.spend_series);
the forecast's first day is today. A budget's period is in its own timezone; its projection
works on the UTC days that period touches: what those days spent before today, plus the
forecast of today and of the days after it, up to the period's last day.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta

from collector.budgets import BudgetStatus, amount_text
from collector.forecast import Forecast, forecast
from collector.params import Scope
from collector.spend_series import MONEY, ScopeSeries, daily_series, day_of
from collector.store import Store

HISTORY_DAYS = 90
MAX_HISTORY_DAYS = 3 * 366
DEFAULT_HORIZON_DAYS = 30
MAX_HORIZON_DAYS = 366


@dataclass(frozen=True, slots=True)
class Projection:
    """Where a budget's period is heading: `projected_total` (None when the forecast cannot
    say) and the day cumulative spend is expected to pass the amount (None: within it, or
    already past it)."""

    status: BudgetStatus
    spent_before_today: int
    projected_total: int | None
    exceeds_on: date | None

    def to_json(self) -> dict:
        budget = self.status.budget
        unit = budget.unit
        return {
            "budget": budget.name,
            "budget_id": budget.budget_id,
            "unit": unit,
            "period": budget.period,
            "amount": amount_text(unit, budget.amount),
            "spent": amount_text(unit, self.status.spent),
            "state": self.status.state,
            "period_start_unix_ns": self.status.period_start_unix_ns,
            "period_end_unix_ns": self.status.period_end_unix_ns,
            "projected_total": None if self.projected_total is None else amount_text(unit, self.projected_total),
            "exceeds_on": None if self.exceeds_on is None else self.exceeds_on.isoformat(),
            "message": self.message(),
        }

    def message(self) -> str:
        name = self.status.budget.name
        if self.status.state == "exceeded":
            return f"budget {name} is already exceeded this period"
        if self.exceeds_on is not None:
            return f"budget {name} is projected to exceed on {self.exceeds_on.isoformat()}"
        if self.projected_total is None:
            return f"budget {name}: not enough history to project the period"
        return f"budget {name} is projected to stay within its amount this period"


def scope_of(status: BudgetStatus) -> Scope:
    budget = status.budget
    return Scope(budget.scope_kind, budget.scope_value or "")


def period_days(status: BudgetStatus) -> tuple[date, date]:
    """The UTC days [first, end) that a budget's current period touches."""
    return day_of(status.period_start_unix_ns), day_of(status.period_end_unix_ns - 1) + timedelta(days=1)


def project(status: BudgetStatus, series: ScopeSeries, predicted: Forecast, today: date) -> Projection:
    """A budget's projection from its scope's series (ending at today) and forecast (from today)."""
    first, end = period_days(status)
    offset = (first - series.spend.start).days
    spent = sum(series.spend.amounts_pico[max(0, offset):])
    amount = status.budget.amount
    total = predicted.projected_total(first, end, spent)
    exceeds = None if status.state == "exceeded" else predicted.exceeds_on(amount, spent)
    return Projection(status, spent, total, exceeds if exceeds is not None and exceeds < end else None)


def horizon_for(status: BudgetStatus, today: date) -> int:
    """The forecast days a budget's projection needs: today to the period's last day."""
    return max(0, (period_days(status)[1] - today).days)


def scope_forecast(
    store: Store, scope: Scope, *, today: date, horizon_days: int = DEFAULT_HORIZON_DAYS, since: date | None = None,
) -> dict:
    """The forecast of `scope` as the APIs answer it (JSON-ready). A store that holds no records
    yet has no history (not enough to forecast), where a scope without spend in a store that
    has records is idle (forecast at zero)."""
    since = today - timedelta(days=HISTORY_DAYS) if since is None else since
    if not any(device.records for device in store.list_devices()):
        since = today
    statuses = [status for status in store.list_budgets() if scope_of(status) == scope]
    answer = {"scope": scope.text, "horizon_days": horizon_days}
    budgets = []
    for unit in sorted({status.budget.unit for status in statuses} | {MONEY}):
        series = daily_series(store, scope, since=since, until=today, unit=unit)
        mine = [status for status in statuses if status.budget.unit == unit]
        horizon = max([horizon_days, *(horizon_for(status, today) for status in mine)])
        predicted = forecast(series.spend, horizon)
        budgets += [project(status, series, predicted, today).to_json() for status in mine]
        if unit == MONEY:
            shown = dataclasses.replace(predicted, points=predicted.points[:horizon_days])
            answer.update(
                currency=series.currency, unit=MONEY,
                history=[
                    {"date": series.spend.day(i).isoformat(), "amount": amount_text(MONEY, amount)}
                    for i, amount in enumerate(series.spend.amounts_pico)
                ],
                forecast=shown.to_json(),
            )
    answer["budgets"] = budgets
    return answer
