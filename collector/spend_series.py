"""A budget scope's spend per UTC day, for forecasts (collector.forecast) and anomaly detection
(collector.anomaly): the series the forecast API, `infermeter report forecast` and the alert
task (collector.budget_alerts) all work on.

Spend is what a budget counts: the list cost of the records (picos), or their energy (µJ) for
energy budgets, by the records' start; period costs (idle capacity, fixed costs, discounts)
are report-level and not part of it. The sums come from Store.costs with granularity="day",
grouped by the scope's own key (device, model, site, tag:KEY or class:DIMENSION) so that a
scope is the groups whose key is its value, and by model and device, which name the drivers of
an anomaly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from collector.forecast import DailySpend
from collector.params import Scope
from collector.store import Store

DAY_NS = 86_400 * 10**9
MONEY = "money"
ENERGY = "energy"
UNITS = (MONEY, ENERGY)
DRIVER_KEYS = ("model", "device")
_PICOS_PER_UNIT = 10**12


@dataclass(frozen=True, slots=True)
class ScopeSeries:
    """A scope's daily spend, its inferences per day (aligned with it), and each driver's own
    daily spend and inferences ("model:resnet50", "device:edge-1")."""

    scope: Scope
    unit: str
    currency: str
    spend: DailySpend
    inferences: tuple[int, ...]
    drivers: dict[str, DailySpend]
    driver_inferences: dict[str, tuple[int, ...]]


def day_of(unix_ns: int) -> date:
    """The UTC day a time falls in."""
    return datetime.fromtimestamp(unix_ns // 10**9, timezone.utc).date()


def day_start_ns(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_NS


def daily_series(store: Store, scope: Scope, *, since: date, until: date, unit: str = MONEY) -> ScopeSeries:
    """The spend of `scope` on each UTC day in [since, until), days without records at 0."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
    days = max(0, (until - since).days)
    scope_key = _group_key(scope)
    group_by = tuple(dict.fromkeys((*((scope_key,) if scope_key else ()), *DRIVER_KEYS)))
    report = store.costs(
        group_by=group_by,
        since_unix_ns=day_start_ns(since), until_unix_ns=day_start_ns(since + timedelta(days=days)),
        granularity="day", period_costs=False,
    )
    matches = _matcher(scope)
    total, counts = [0] * days, [0] * days
    drivers: dict[str, list[int]] = {}
    driver_counts: dict[str, list[int]] = {}
    for group in report.groups:
        if not matches(group.key[0]):
            continue
        index = (day_of(group.period_start_unix_ns) - since).days
        amount = _picos(group.list_cost) if unit == MONEY else group.energy_uj
        total[index] += amount
        counts[index] += group.inferences
        for key in DRIVER_KEYS:
            driver = f"{key}:{group.key[group_by.index(key)]}"
            drivers.setdefault(driver, [0] * days)[index] += amount
            driver_counts.setdefault(driver, [0] * days)[index] += group.inferences
    return ScopeSeries(
        scope, unit, report.currency, DailySpend(since, tuple(total)), tuple(counts),
        {name: DailySpend(since, tuple(values)) for name, values in drivers.items()},
        {name: tuple(values) for name, values in driver_counts.items()},
    )


def _group_key(scope: Scope) -> str | None:
    if scope.kind == "global":
        return None
    if scope.kind in ("tag", "class"):
        return f"{scope.kind}:" + scope.value.partition("=")[0]
    return scope.kind


def _matcher(scope: Scope) -> Callable[[str], bool]:
    wanted = scope.value.partition("=")[2] if scope.kind in ("tag", "class") else scope.value
    return lambda value: scope.kind == "global" or value == wanted


def _picos(amount: Decimal) -> int:
    # Report amounts are exact decimals of whole picos.
    return int(amount * _PICOS_PER_UNIT)
