"""What a Push reply tells the device about budgets: each live budget that can apply to it with
its state and the device's lease, and price hints per model it ran in the last 24 hours.

Lease: what is left of the budget in the current period (0 once exceeded), shared evenly among
the live devices its scope can cover: one for a device scope, the site's devices for a site
scope, every live device otherwise. The device spends it from its own estimates until it hears
again, so enforcement holds while the collector cannot be reached.

Budgets and their spend are read on every push (a budget's creation, change or deletion reaches
the device's next push); the device's name and site, the fleet's size and the currency are
cached for DEVICE_TTL_S, price hints for HINTS_TTL_S (once there are any: a device that ran
nothing yet gets its first hints at the push after its first records). A model the device
starts running within that time has no hint until the cache expires; the device prices it at
its dearest hint meanwhile.

The reply also carries the device's default tags (collector.tag_store), read on every push like
the budgets, so that a change reaches the device's next push.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa

from collector.books import PriceBooks
from collector.budget_ledger import BudgetBook, applies_to_device
from collector.budget_store import statuses
from collector.budgets import UJ_PER_WH, BudgetStatus
from collector.credentials import TtlCache
from collector.pricing import div_round_half_even, picos_to_decimal
from collector.rollups import HOUR_NS
from collector.schema import ROLLUP_SPLIT, cost_rollups, devices
from collector.tag_store import device_tags

DEVICE_TTL_S = 5.0
HINTS_TTL_S = 60.0
HINTS_WINDOW_NS = 24 * HOUR_NS
_CENTS = Decimal("0.01")
_PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}


@dataclass(frozen=True, slots=True)
class DeviceBudget:
    status: BudgetStatus
    lease: int  # picos or µJ, as the budget's unit
    message: str


@dataclass(frozen=True, slots=True)
class PriceHint:
    model: str
    runtime: str
    cost_per_inference_pico: int
    energy_per_inference_uj: int


@dataclass(frozen=True, slots=True)
class PushState:
    currency: str
    budgets: list[DeviceBudget]
    price_hints: list[PriceHint]
    device_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Fleet:
    name: str
    site: str
    live_devices: int
    site_devices: int
    currency: str


class PushStates:
    """Builds the budget part of Push replies, with the caches above."""

    def __init__(self, book: BudgetBook, books: PriceBooks) -> None:
        self._book = book
        self._books = books
        self._fleet: TtlCache[_Fleet] = TtlCache(DEVICE_TTL_S)
        self._hints: TtlCache[list[PriceHint]] = TtlCache(HINTS_TTL_S)

    def state(self, connection: sa.Connection, device_id: str, *, now_unix_ns: int) -> PushState:
        fleet = self._fleet_of(connection, device_id)
        live = [
            budget for budget in self._book.live(connection)
            if applies_to_device(budget, device_name=fleet.name, site=fleet.site)
        ]
        found = []
        for status in statuses(connection, live, now_unix_ns=now_unix_ns):
            kind = status.budget.scope_kind
            sharers = 1 if kind == "device" else fleet.site_devices if kind == "site" else fleet.live_devices
            found.append(DeviceBudget(status, status.remaining // max(1, sharers), message(status, fleet.currency)))
        hit, hints = self._hints.get(device_id)
        if not hit:
            hints = price_hints(connection, device_id, now_unix_ns=now_unix_ns)
            if hints:  # none yet: the device's first records must bring them at its next push
                self._hints.put(device_id, hints)
        return PushState(fleet.currency, found, hints, device_tags(connection, device_id))

    def clear(self) -> None:
        self._fleet.clear()

    def _fleet_of(self, connection: sa.Connection, device_id: str) -> _Fleet:
        hit, fleet = self._fleet.get(device_id)
        if hit:
            return fleet
        name, site = connection.execute(
            sa.select(devices.c.name, devices.c.site).where(devices.c.device_id == device_id)
        ).one()
        counts = dict(connection.execute(
            sa.select(devices.c.site, sa.func.count()).where(devices.c.revoked_unix_ns.is_(None)).group_by(devices.c.site)
        ).all())
        fleet = _Fleet(name, site, sum(counts.values()), counts.get(site, 0), self._books.currency(connection))
        self._fleet.put(device_id, fleet)
        return fleet


def message(status: BudgetStatus, currency: str) -> str:
    """"budget search-monthly: 251.20 of 250.00 USD (100 %) spent this month"."""
    budget = status.budget
    if budget.unit == "money":
        spent, amount, unit = picos_to_decimal(status.spent), picos_to_decimal(budget.amount), currency
    else:
        spent, amount, unit = Decimal(status.spent) / UJ_PER_WH, Decimal(budget.amount) / UJ_PER_WH, "Wh"
    percent = status.percent.quantize(Decimal(1), rounding=ROUND_DOWN)
    return (
        f"budget {budget.name}: {spent.quantize(_CENTS, rounding=ROUND_HALF_EVEN)} of "
        f"{amount.quantize(_CENTS, rounding=ROUND_HALF_EVEN)} {unit} ({percent} %) spent {_PERIOD_WORDS[budget.period]}"
    )


def price_hints(connection: sa.Connection, device_id: str, *, now_unix_ns: int) -> list[PriceHint]:
    """Cost and energy per inference of each model (and runtime) the device ran in the last 24
    hours, from its roll-ups (the current hour included)."""
    since = now_unix_ns // HOUR_NS * HOUR_NS - HINTS_WINDOW_NS
    sums = [
        sa.func.sum(cost_rollups.c[f"{name}_{part}"])
        for name in ("count", "cost_pico", "energy_uj") for part in ("hi", "lo")
    ]
    rows = connection.execute(
        sa.select(cost_rollups.c.model, cost_rollups.c.runtime, *sums)
        .where(cost_rollups.c.device_id == device_id, cost_rollups.c.hour_unix_ns >= since, cost_rollups.c.model != "")
        .group_by(cost_rollups.c.model, cost_rollups.c.runtime)
        .order_by(cost_rollups.c.model, cost_rollups.c.runtime)
    )
    hints = []
    for model, runtime, *parts in rows:
        count, cost, energy = _totals(parts)
        if count > 0:
            hints.append(PriceHint(model, runtime, div_round_half_even(cost, count), div_round_half_even(energy, count)))
    return hints


def _totals(parts: Sequence) -> list[int]:
    values = [int(value or 0) for value in parts]
    return [hi * ROLLUP_SPLIT + lo for hi, lo in zip(values[::2], values[1::2])]
