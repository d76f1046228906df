"""Budgets as the device knows them: the state the collector last sent, the price hints, and
the spend the device estimates it has made since.

The collector's Push reply lists every budget that can apply to the device (BudgetState) and
what one inference of each model it ran costs (PriceHint). Until the next reply, the device
counts its own records against each budget's lease: inferences x the price hint of the
record's model (agent.budget_store keeps all of it in the buffer, agent.enforcer acts on it).
Pure values and arithmetic here; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ACTIONS = ("alert", "throttle", "block")
# Scopes that every record made on this device matches.
_DEVICE_WIDE = ("global", "device", "site")


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget as the collector last described it. lease_remaining is in picos of the
    currency for money budgets and in µJ for energy budgets (unit)."""

    budget_id: str
    name: str
    scope: str
    action: str
    state: str
    currency: str
    unit: str
    lease_remaining: int
    throttle_per_second: float
    period_end_unix_ns: int
    message: str = ""

    @property
    def exceeded(self) -> bool:
        return self.state == "exceeded"


@dataclass(frozen=True, slots=True)
class PriceHint:
    model: str
    runtime: str
    currency: str
    cost_per_inference_pico: int
    energy_per_inference_uj: int


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """What the buffer holds: the last reply's budgets and hints, when it came, and the spend
    per budget_id counted since (in the budget's unit)."""

    received_unix_ns: int
    budgets: tuple[BudgetState, ...]
    hints: tuple[PriceHint, ...]
    spent: Mapping[str, int]

    def spent_on(self, budget: BudgetState) -> int:
        return self.spent.get(budget.budget_id, 0)


class Scope:
    """A budget's scope, parsed once: matches(model, tags) says whether a call counts."""

    __slots__ = ("key", "kind", "value")

    def __init__(self, scope: str) -> None:
        kind, _, rest = scope.partition(":")
        self.kind = kind
        self.key, self.value = "", rest
        if kind == "tag":
            self.key, _, self.value = rest.partition("=")

    @property
    def device_wide(self) -> bool:
        return self.kind in _DEVICE_WIDE

    @property
    def uses_tags(self) -> bool:
        return self.kind == "tag"

    def matches(self, model: str, tags: Mapping[str, str]) -> bool:
        if self.kind in _DEVICE_WIDE:
            return True
        if self.kind == "model":
            return model == self.value
        if self.kind == "tag":
            return tags.get(self.key) == self.value
        return False  # a scope this agent does not know: it cannot tell, so it does not enforce


class PriceList:
    """Price per inference by model (and runtime): a record whose model has no hint is priced
    at the dearest hint, so that a model the collector has not priced yet still runs the
    lease down rather than running for free."""

    def __init__(self, hints: Iterable[PriceHint]) -> None:
        self._by_model_runtime: dict[tuple[str, str], tuple[int, int]] = {}
        self._by_model: dict[str, tuple[int, int]] = {}
        for hint in hints:
            price = (hint.cost_per_inference_pico, hint.energy_per_inference_uj)
            self._by_model_runtime[(hint.model, hint.runtime)] = price
            self._by_model.setdefault(hint.model, price)
        prices = list(self._by_model_runtime.values())
        self._dearest = (max((p[0] for p in prices), default=0), max((p[1] for p in prices), default=0))

    def per_inference(self, model: str, runtime: str, unit: str) -> int:
        """Picos (money) or µJ (energy) of one inference of model on runtime."""
        price = self._by_model_runtime.get((model, runtime)) or self._by_model.get(model) or self._dearest
        return price[1] if unit == "energy" else price[0]


def add_spend(
    spent: dict[str, int], budgets: Iterable[BudgetState], prices: PriceList,
    groups: Iterable[tuple[str, str, Mapping[str, str], int]],
) -> None:
    """Add to spent (by budget_id) what groups of records cost: each group is (model, runtime,
    tags, inferences)."""
    scoped = [(budget, Scope(budget.scope)) for budget in budgets]
    for model, runtime, tags, inferences in groups:
        for budget, scope in scoped:
            if scope.matches(model, tags):
                cost = inferences * prices.per_inference(model, runtime, budget.unit)
                spent[budget.budget_id] = spent.get(budget.budget_id, 0) + cost
