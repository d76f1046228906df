"""Forecast and anomaly alerts: the periodic task of `infermeter collector serve` (at start, then
hourly) that looks ahead and back on every budget and records what it finds as budget events,
which webhooks then deliver (collector.webhooks).

- "forecast" (key "exceeds"): the budget's current period is projected to exceed its amount
  (collector.projections); details say on which day. Once per period.
- "anomaly" (key: the UTC date): a recent day (within ANOMALY_LOOKBACK_DAYS before today)
  whose spend, or cost per inference, the scope's model did not expect (collector.anomaly);
  details name the driver, the model or device whose own spend moved most that day. Once per
  anomalous day, filed under the budget period the day began in.

Store.record_budget_event stores an event once whatever replica or run makes it, so every
replica may run this task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date, timedelta

from collector import anomaly, projections
from collector.budgets import BudgetStatus, amount_text, period_bounds
from collector.database import StoreUnavailable
from collector.forecast import forecast
from collector.periodic import periodically
from collector.spend_series import ScopeSeries, daily_series, day_of, day_start_ns
from collector.store import Store

logger = logging.getLogger(__name__)

INTERVAL_S = 3_600.0
ANOMALY_LOOKBACK_DAYS = 7
FORECAST = "forecast"
ANOMALY = "anomaly"
EXCEEDS = "exceeds"
SPEND = "spend"
COST_PER_INFERENCE = "cost_per_inference"


class BudgetAlerts:
    """run_once checks every budget once; run repeats it every interval_s until stopped."""

    def __init__(
        self, store: Store, *, clock: Callable[[], int] = time.time_ns, history_days: int = projections.HISTORY_DAYS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._history_days = history_days

    async def run(self, stop: asyncio.Event, *, interval_s: float = INTERVAL_S) -> None:
        """Check now, then every interval_s, until stop is set."""
        await periodically(lambda: asyncio.to_thread(self.run_once), stop, interval_s=interval_s, what="budget alerts")

    def run_once(self) -> int:
        """Check every budget; the number of new events recorded."""
        today = day_of(self._clock())
        recorded = 0
        for status in self._store.list_budgets():
            try:
                recorded += self.check(status, today)
            except StoreUnavailable:
                raise
            except Exception:  # one budget's failure must not keep the others unchecked
                logger.exception("budget alerts: checking budget %s failed", status.budget.name)
        return recorded

    def check(self, status: BudgetStatus, today: date) -> int:
        """Record the forecast and anomaly events of one budget; how many were new."""
        budget = status.budget
        series = daily_series(
            self._store, projections.scope_of(status), since=today - timedelta(days=self._history_days),
            until=today, unit=budget.unit,
        )
        recorded = 0
        projection = projections.project(status, series, forecast(series.spend, projections.horizon_for(status, today)), today)
        if projection.exceeds_on is not None:
            recorded += self._store.record_budget_event(
                budget.budget_id, period_start_unix_ns=status.period_start_unix_ns, kind=FORECAST, key=EXCEEDS,
                details=projection.to_json(),
            )
        for day, details in anomalies(series, today).items():
            period_start, _ = period_bounds(budget, day_start_ns(day))
            recorded += self._store.record_budget_event(
                budget.budget_id, period_start_unix_ns=period_start, kind=ANOMALY, key=day.isoformat(),
                details={"budget": budget.name, **details},
            )
        return recorded


def anomalies(series: ScopeSeries, today: date) -> dict[date, dict]:
    """The spikes of the last ANOMALY_LOOKBACK_DAYS days, in spend or in cost per inference
    (spend first where both; cost per inference only on days that ran inferences), with their
    drivers: day -> the event's details."""
    first = today - timedelta(days=ANOMALY_LOOKBACK_DAYS)
    found: dict[date, dict] = {}
    measures = (
        (SPEND, series.spend, series.drivers),
        (COST_PER_INFERENCE, anomaly.cost_per_inference(series.spend, series.inferences), {
            name: anomaly.cost_per_inference(spend, series.driver_inferences[name])
            for name, spend in series.drivers.items()
        }),
    )
    for measure, values, drivers in measures:
        for spike in anomaly.detect(values):
            if spike.day < first or spike.day in found or (measure == COST_PER_INFERENCE and not _ran(series, spike.day)):
                continue
            named = anomaly.name_driver(spike, drivers)
            found[spike.day] = _details(series.unit, measure, named)
    return found


def _ran(series: ScopeSeries, day: date) -> bool:
    """Whether the scope ran inferences on `day`: an idle day carries the previous day's cost
    per inference (collector.anomaly.cost_per_inference), which is no spike of its own."""
    return series.inferences[(day - series.spend.start).days] > 0


def _details(unit: str, measure: str, spike: anomaly.Anomaly) -> dict:
    driver = "" if spike.driver is None else f" driven by {spike.driver}"
    what = "spend" if measure == SPEND else "cost per inference"
    return {
        "date": spike.day.isoformat(),
        "measure": measure,
        "unit": unit,
        "observed": amount_text(unit, spike.observed_pico),
        "expected": amount_text(unit, spike.expected_pico),
        "z_score": round(spike.z_score, 3),
        "driver": spike.driver,
        "driver_excess": None if spike.driver_excess_pico is None else amount_text(unit, spike.driver_excess_pico),
        "message": f"{what} on {spike.day.isoformat()} was {amount_text(unit, spike.observed_pico)}, "
        f"expected about {amount_text(unit, spike.expected_pico)}{driver}",
    }
