"""Budget states and price hints as a collector's reply would carry them, for the agent's tests."""

from __future__ import annotations

import time

from agent.budgets import BudgetState, PriceHint

PICOS = 10**12
HOUR_NS = 3600 * 10**9


def budget(
    name: str, scope: str = "global", *, action: str = "block", state: str = "ok",
    lease_pico: int = 100 * PICOS, throttle_per_second: float = 0.0, unit: str = "money",
    period_end_unix_ns: int | None = None, message: str = "",
) -> BudgetState:
    return BudgetState(
        budget_id=f"bgt_{name}", name=name, scope=scope, action=action, state=state, currency="USD",
        unit=unit, lease_remaining=lease_pico, throttle_per_second=throttle_per_second,
        period_end_unix_ns=time.time_ns() + HOUR_NS if period_end_unix_ns is None else period_end_unix_ns,
        message=message,
    )


def hint(model: str, cost_pico: int, *, runtime: str = "onnxruntime", energy_uj: int = 0) -> PriceHint:
    return PriceHint(model, runtime, "USD", cost_pico, energy_uj)
