"""Budget enforcement before each metered call, from the state the daemon keeps in the buffer.

A BudgetGuard belongs to a Meter. Its flusher thread calls refresh() every round: one read of
the state's version, and a reload only when it moved. What it loads becomes an Enforcer, an
immutable snapshot holding only the budgets that act now: `block` and `throttle` budgets whose
state is exceeded or whose lease is spent (the spend the daemon counted since the collector's
last reply has reached the lease). With none, guard.enforcer is None, and a call pays one
attribute read.

Before the model runs, check(static, call_tags) finds the acting budgets whose scope covers
the call (memoised per model and tags) and, for each:
  - block: raises BudgetExceeded, naming the budget, its scope and why; the call is not run
    and leaves no record (it cost nothing);
  - throttle: takes a token from the budget's bucket, sleeping on the caller's thread for it
    (at throttle_per_second; 0/s blocks).
A budget's state and lease hold until its period_end: past it, a new period has begun at ok,
and the device lets calls through until the next reply says otherwise (the collector starts
every period at ok, and the device has no lease for the new period to run down).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from agent.budget_store import load_snapshot, read_version
from agent.budgets import BudgetSnapshot, BudgetState, PriceHint, Scope
from agent.buffer import Buffer
from agent.device_tags import load_tags
from agent.entry import StaticFields

PICOS = 10**12
MAX_CLEAR = 4096
UJ_PER_WH = 3_600_000_000


class BudgetExceeded(Exception):
    """A budget with action `block` does not allow this call (raised before the model runs).
    budget: its name; scope: as in the budget; reason: "exceeded" or "lease-spent"."""

    def __init__(self, message: str, *, budget: str, scope: str, reason: str) -> None:
        super().__init__(message)
        self.budget = budget
        self.scope = scope
        self.reason = reason


class TokenBucket:
    """Calls at rate_per_s, spaced evenly (a burst of one). Thread-safe: each caller reserves
    its slot under the lock, then sleeps for it without holding the lock."""

    def __init__(
        self, rate_per_s: float, *, monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate_per_s = rate_per_s
        self._interval_s = 1.0 / rate_per_s
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_s = float("-inf")

    def take(self) -> None:
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next_s)
            self._next_s = slot + self._interval_s
        if slot > now:
            self._sleep(slot - now)


class _Rule:
    """A budget that acts now: raise `error` (block), or take a token from `bucket`."""

    __slots__ = ("bucket", "error", "name", "period_end_unix_ns", "scope")

    def __init__(self, budget: BudgetState, error: BudgetExceeded | None, bucket: TokenBucket | None) -> None:
        self.name = budget.name
        self.scope = Scope(budget.scope)
        self.period_end_unix_ns = budget.period_end_unix_ns
        self.error = error
        self.bucket = bucket

    @property
    def action(self) -> str:
        return "throttle" if self.bucket is not None else "block"

    @property
    def lapsed(self) -> bool:
        """A new period has begun: ok until the collector says otherwise."""
        return time.time_ns() >= self.period_end_unix_ns > 0

    def enforce(self) -> None:
        if self.lapsed:
            return
        if self.bucket is not None:
            self.bucket.take()
        else:
            raise BudgetExceeded(
                str(self.error), budget=self.error.budget, scope=self.error.scope, reason=self.error.reason
            ) from None


class Enforcer:
    """The budgets acting now; build() gives None when there are none."""

    def __init__(self, rules: tuple[_Rule, ...], device_tags: Mapping[str, str] | None = None) -> None:
        """device_tags: the device's default tags (agent.device_tags), under every call's own."""
        self._rules = rules
        self._device_tags = dict(device_tags or {})
        self._uses_tags = any(rule.scope.uses_tags for rule in rules)
        self._by_call: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        # Sessions (their StaticFields) that no acting budget covers: the hot path tests
        # membership here before calling check(), which saves a Python call per run.
        self.clear: set[StaticFields] = set()

    @classmethod
    def build(
        cls, snapshot: BudgetSnapshot, *, buckets: dict[str, TokenBucket], now_unix_ns: int | None = None,
        device_tags: Mapping[str, str] | None = None,
    ) -> Enforcer | None:
        """buckets: the guard's, by budget_id: kept across snapshots while the rate holds (a
        new state must not hand out a fresh burst); updated in place."""
        now_unix_ns = time.time_ns() if now_unix_ns is None else now_unix_ns
        rules = []
        for budget in snapshot.budgets:
            why = _why_acting(budget, snapshot, now_unix_ns)
            if why is None or budget.action not in ("block", "throttle"):
                continue
            rate = budget.throttle_per_second
            if budget.action == "throttle" and rate > 0:
                bucket = buckets.get(budget.budget_id)
                if bucket is None or bucket.rate_per_s != rate:
                    bucket = buckets[budget.budget_id] = TokenBucket(rate)
                rules.append(_Rule(budget, None, bucket))
            else:
                reason, text = why
                if budget.action == "throttle":
                    text += " (throttled to 0 calls per second)"
                error = BudgetExceeded(text, budget=budget.name, scope=budget.scope, reason=reason)
                rules.append(_Rule(budget, error, None))
        return cls(tuple(rules), device_tags) if rules else None

    def check(self, static: StaticFields, call_tags: Mapping[str, str] | None) -> None:
        """Act on the call of static's model with static's tags and call_tags over them. A
        caller may skip it when call_tags is None and static is in `clear`."""
        key = (static.model, static.tags_json)
        rules = self._by_call.get(key)
        if rules is None:
            rules = self._by_call[key] = self._matching(static.model, static.tags)
        if not rules and len(self.clear) < MAX_CLEAR:  # bounded: every span has its own
            self.clear.add(static)
        if call_tags and self._uses_tags:
            try:
                rules = self._matching(static.model, {**static.tags, **call_tags})
            except (TypeError, ValueError):  # bad per-call tags: the flusher counts them, the record keeps its session tags
                pass
        for rule in rules:
            rule.enforce()

    def acting_on(self, static: StaticFields) -> tuple[tuple[str, str], ...]:
        """(budget name, "block" or "throttle") of each budget that would act on a call of
        static's model and tags now; nothing is enforced (agent.router asks)."""
        key = (static.model, static.tags_json)
        rules = self._by_call.get(key)
        if rules is None:
            rules = self._by_call[key] = self._matching(static.model, static.tags)
        return tuple((rule.name, rule.action) for rule in rules if not rule.lapsed)

    def _matching(self, model: str, tags: Mapping[str, str]) -> tuple[_Rule, ...]:
        if self._device_tags:  # as the daemon ships the record
            tags = {**self._device_tags, **tags}
        return tuple(rule for rule in self._rules if rule.scope.matches(model, tags))


class BudgetGuard:
    """A Meter's hold on the budget state: `enforcer` is replaced whole (never mutated), so the
    caller's threads read it without a lock."""

    def __init__(self) -> None:
        self.enforcer: Enforcer | None = None
        # The price hints of the last reply, by (model, runtime) (agent.router reads them).
        self.hints: Mapping[tuple[str, str], PriceHint] = {}
        self.loaded = False
        self._version = 0
        self._buckets: dict[str, TokenBucket] = {}

    def refresh(self, buffer: Buffer) -> None:
        """Reload when the state changed (the flusher's thread, every round)."""
        self.loaded = True
        version = read_version(buffer)
        if version == self._version:
            return
        snapshot = load_snapshot(buffer)
        self.hints = {(hint.model, hint.runtime): hint for hint in snapshot.hints}
        self.enforcer = Enforcer.build(snapshot, buckets=self._buckets, device_tags=load_tags(buffer))
        self._version = version


def _why_acting(budget: BudgetState, snapshot: BudgetSnapshot, now_unix_ns: int) -> tuple[str, str] | None:
    """("exceeded" | "lease-spent", the message) when the budget is over now, else None."""
    if 0 < budget.period_end_unix_ns <= now_unix_ns:
        return None
    head = f"budget {budget.name} ({budget.scope})"
    if budget.exceeded:
        detail = budget.message.split(": ", 1)[-1] if budget.message else "the collector reports it spent"
        return "exceeded", f"{head} is exceeded: {detail}"
    if snapshot.spent_on(budget) >= budget.lease_remaining:
        return "lease-spent", (
            f"{head}: this device's lease of {_amount(budget)} is spent and the collector has not "
            f"been reached since {_utc(snapshot.received_unix_ns, now_unix_ns)}"
        )
    return None


def _amount(budget: BudgetState) -> str:
    if budget.unit == "energy":
        return f"{budget.lease_remaining / UJ_PER_WH:.2f} Wh"
    return f"{budget.lease_remaining / PICOS:.2f} {budget.currency}".rstrip()


def _utc(unix_ns: int, now_unix_ns: int) -> str:
    at = datetime.fromtimestamp(unix_ns / 1e9, tz=timezone.utc)
    now = datetime.fromtimestamp(now_unix_ns / 1e9, tz=timezone.utc)
    return at.strftime("%H:%M UTC" if at.date() == now.date() else "%Y-%m-%d %H:%M UTC")
