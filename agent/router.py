"""Cost-aware routing: send each call to the cheapest metered session that meets the caller's
latency or quality constraint, from figures measured live on this device, within the budgets.

    router = meter.router(
        [Route(small, quality=0.71), Route(large, quality=0.83)],
        policy=RoutePolicy(max_latency_ms=20, min_quality=0.75),
    )
    outputs = router.run(None, {"input": batch})   # the chosen session's outputs
    router.last_choice                              # which route, why, every candidate's figures

The figures:
  - cost per call: the collector's price hint for the route's model (what one inference of it
    cost on this device lately: compute share, energy, token and request prices; kept in the
    buffer from Push replies), when every route has one; otherwise the calling thread's CPU
    time per call, averaged over the route's last `window` calls here (what the collector's
    compute price is proportional to on one device). Costs are compared in one unit only,
    never hints against CPU time.
  - latency: the `latency_percentile` of the wall time of the route's last `window` calls.
  - quality: the caller's own figure for the route (accuracy, score), higher is better.
Figures the policy needs are measured first: each route gets `warmup_calls` calls before the
router trusts its figures (after a first call that does not count: a session's first run pays
for ONNX Runtime's start), and every `probe_every` calls one call goes to the route measured
least recently, so that a route that was slow is noticed when it is fast again.

Budgets (agent.enforcer): a route that a `block` budget covers gives way to the cheapest route
no budget limits, whatever its price (else the call would fail); one that a `throttle` budget
covers gives way to the cheapest route no budget limits if that one is cheaper (spending more
to escape a throttle is not what a budget wants); otherwise the throttled route runs at the
budget's rate. Where every route is blocked, the cheapest is called and raises
BudgetExceeded, as a session would.

Per call: a lock, a counter, two clock pairs and a deque append; the decision is made again
every `recheck_every` calls, when the budget state or price hints change, and while routes warm
up. The router's own failures are counted in stats() and logged once; the call then goes to
the first route. Model errors and BudgetExceeded propagate unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.clock import Clock
from agent.enforcer import BudgetGuard
from agent.onnx_session import MeteredSession

logger = logging.getLogger(__name__)

PICO = "pico"
CPU_NS = "cpu-ns"


@dataclass(frozen=True, slots=True)
class Route:
    """A session to route to. quality: the caller's figure for it (higher is better), needed
    when the policy sets min_quality; name: how choices call it (default: its model)."""

    session: MeteredSession
    quality: float | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a call needs. Neither constraint: the cheapest route."""

    max_latency_ms: float | None = None
    min_quality: float | None = None
    latency_percentile: float = 90.0
    window: int = 50
    warmup_calls: int = 3
    probe_every: int = 200  # 0: never
    recheck_every: int = 32

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "min_quality"):
            value = getattr(self, name)
            if value is not None and (type(value) not in (int, float) or not math.isfinite(value) or value < 0):
                raise ValueError(f"RoutePolicy.{name} must be a non-negative number or None, got {value!r}")
        if type(self.latency_percentile) not in (int, float) or not 0 < self.latency_percentile <= 100:
            raise ValueError(f"RoutePolicy.latency_percentile must be in (0, 100], got {self.latency_percentile!r}")
        for name, least in (("window", 1), ("warmup_calls", 1), ("probe_every", 0), ("recheck_every", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < least:
                raise ValueError(f"RoutePolicy.{name} must be an int of at least {least}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A route's figures at a decision. cost: per call, in the choice's cost_unit (None: not
    measured yet); latency_ms: the policy's percentile; budgets: "block:NAME" / "throttle:NAME"
    of the budgets acting on it; note: why it does not meet the policy ("" when it does)."""

    route: str
    cost: int | None
    latency_ms: float | None
    quality: float | None
    samples: int
    budgets: tuple[str, ...]
    meets: bool
    note: str


@dataclass(frozen=True, slots=True)
class Choice:
    """Where calls go, and why. cost_unit: "pico" (price hints, picos of the currency) or
    "cpu-ns" (CPU time per call measured here)."""

    route: str
    reason: str
    cost_unit: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class RouterStats:
    """calls: routed; by_route: calls per route; fallbacks: calls sent elsewhere than the
    policy's pick because of a budget; probes: calls sent to refresh a route's figures;
    errors: failures of the router itself (the call went to the first route)."""

    calls: int
    by_route: Mapping[str, int]
    fallbacks: int
    probes: int
    errors: int


class _Figures:
    """A route's last `window` calls: wall and CPU time, and when (in calls) it last ran. A
    session's first call is left out: it pays for ONNX Runtime's own start (allocations, kernel
    choice), many times what the calls after it cost."""

    __slots__ = ("cold", "cpu_ns", "last_call", "samples", "wall_ns")

    def __init__(self, window: int) -> None:
        self.wall_ns: deque[int] = deque(maxlen=window)
        self.cpu_ns: deque[int] = deque(maxlen=window)
        self.samples = 0
        self.last_call = 0
        self.cold = True

    def add(self, wall_ns: int, cpu_ns: int, call: int) -> None:
        self.last_call = call
        if self.cold:
            self.cold = False
            return
        self.wall_ns.append(wall_ns)
        self.cpu_ns.append(cpu_ns)
        self.samples += 1

    def latency_ms(self, percentile: float) -> float | None:
        if not self.wall_ns:
            return None
        ordered = sorted(self.wall_ns)
        return ordered[max(math.ceil(percentile / 100 * len(ordered)) - 1, 0)] / 1e6

    def mean_cpu_ns(self) -> int | None:
        return sum(self.cpu_ns) // len(self.cpu_ns) if self.cpu_ns else None


class Router:
    def __init__(self, routes: Sequence[Route | MeteredSession], policy: RoutePolicy, guard: BudgetGuard, *, clock: Clock) -> None:
        """routes: metered sessions (agent.meter's wrap_onnx), bare or as Route; TypeError or
        ValueError for anything else, as a setup mistake."""
        if not isinstance(policy, RoutePolicy):
            raise TypeError(f"policy must be a RoutePolicy, got {type(policy).__name__}")
        self._routes = tuple(_route(item) for item in routes)
        if not self._routes:
            raise ValueError("a router needs at least one route")
        names = [route.name for route in self._routes]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two routes are named {name!r}: give each Route a name")
        if policy.min_quality is not None and any(route.quality is None for route in self._routes):
            raise ValueError("the policy sets min_quality: give every Route a quality")
        self.policy = policy
        self._guard = guard
        self._perf_ns = clock.perf_counter_ns
        self._cpu_ns = clock.thread_time_ns
        self._figures = [_Figures(policy.window) for _ in self._routes]
        self._lock = threading.Lock()
        self._calls = self._fallbacks = self._probes = self._errors = 0
        self._by_route = [0] * len(self._routes)
        self._index = 0
        self._choice: Choice | None = None  # the last decision
        self._fallback = False  # it sends calls elsewhere than the policy's pick (a budget)
        self._since_decision = policy.recheck_every  # decide at the first call
        self._warming = True
        self._seen: tuple[object, object] = (None, None)
        self.last_choice: Choice | None = None  # the last call's: the decision, or a probe

    def run(self, output_names, input_feed, run_options=None, *, tags: Mapping[str, str] | None = None):
        """The chosen session's run(): its outputs, its exceptions (BudgetExceeded included)."""
        index = self._pick()
        cpu_start_ns = self._cpu_ns()
        start_ns = self._perf_ns()
        outputs = self._routes[index].session.run(output_names, input_feed, run_options, tags=tags)
        wall_ns = self._perf_ns() - start_ns
        cpu_ns = self._cpu_ns() - cpu_start_ns
        try:
            with self._lock:
                self._figures[index].add(wall_ns, cpu_ns, self._calls)
        except Exception as err:  # noqa: BLE001 - the caller's outputs come first
            self._failed(err)
        return outputs

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def stats(self) -> RouterStats:
        with self._lock:
            return RouterStats(
                self._calls, {route.name: n for route, n in zip(self._routes, self._by_route)},
                self._fallbacks, self._probes, self._errors,
            )

    def _pick(self) -> int:
        try:
            with self._lock:
                self._calls += 1
                self._since_decision += 1
                seen = (self._guard.enforcer, self._guard.hints)
                if self._warming or self._since_decision >= self.policy.recheck_every or seen != self._seen:
                    self._seen = seen
                    self._since_decision = 0
                    self._decide()
                index = self._index
                self.last_choice = self._choice
                every = self.policy.probe_every
                if every and self._calls % every == 0 and not self._warming:
                    index = self._probe(index)
                if index != self._index:
                    self._probes += 1
                elif self._fallback:
                    self._fallbacks += 1
                self._by_route[index] += 1
                return index
        except Exception as err:  # noqa: BLE001 - routing must not stand between the caller and a session
            self._failed(err)
            return 0

    def _failed(self, err: Exception) -> None:
        self._errors += 1
        if self._errors == 1:
            logger.exception("the router failed (%s); calls go to the first route meanwhile", err)

    def _decide(self) -> None:
        hints = self._guard.hints
        enforcer = self._guard.enforcer
        unit = PICO if all(_hint_key(route) in hints for route in self._routes) else CPU_NS
        policy = self.policy
        candidates = []
        for route, figures in zip(self._routes, self._figures):
            cost = hints[_hint_key(route)].cost_per_inference_pico if unit == PICO else figures.mean_cpu_ns()
            latency = figures.latency_ms(policy.latency_percentile)
            acting = enforcer.acting_on(route.session.static_fields) if enforcer is not None else ()
            note = _shortfall(policy, route.quality, latency)
            candidates.append(Candidate(
                route.name, cost, latency, route.quality, figures.samples,
                tuple(f"{action}:{name}" for name, action in acting), not note, note,
            ))
        warm_up = self._warm_up(candidates, unit)
        self._warming = warm_up is not None
        if warm_up is not None:
            index, reason = warm_up
            self._fallback = False
        else:
            index, reason = _by_policy(candidates, policy)
            index, reason, self._fallback = _within_budgets(candidates, index, reason)
        self._index = index
        self._choice = Choice(candidates[index].route, reason, unit, tuple(candidates))

    def _warm_up(self, candidates: list[Candidate], unit: str) -> tuple[int, str] | None:
        """The route to measure next while the policy's figures are missing, and why; None once
        every route the budgets let run has warmup_calls calls."""
        if self.policy.max_latency_ms is None and unit == PICO:
            return None  # hints and quality decide: nothing to measure
        cold = [
            i for i, c in enumerate(candidates)
            if c.samples < self.policy.warmup_calls and not any(b.startswith("block:") for b in c.budgets)
        ]
        if not cold:
            return None
        index = min(cold, key=lambda i: candidates[i].samples)
        return index, (
            f"measuring {candidates[index].route}: {candidates[index].samples} of "
            f"{self.policy.warmup_calls} calls before its figures count"
        )

    def _probe(self, index: int) -> int:
        """The route measured least recently, for this call (not one a budget limits); the
        decision's route when there is none."""
        choice = self._choice
        free = [i for i, candidate in enumerate(choice.candidates) if i != index and not candidate.budgets]
        if not free:
            return index
        probe = min(free, key=lambda i: self._figures[i].last_call)
        self.last_choice = Choice(
            self._routes[probe].name,
            f"probe: one call in {self.policy.probe_every} refreshes the figures of the route measured least recently",
            choice.cost_unit, choice.candidates,
        )
        return probe

def _route(item: Route | MeteredSession) -> Route:
    route = item if isinstance(item, Route) else Route(item)
    if type(route.session) is not MeteredSession:
        raise TypeError(
            f"a route is a metered session (meter.wrap_onnx(...)) or a Route of one, got {type(route.session).__name__}"
        )
    if route.quality is not None and (type(route.quality) not in (int, float) or not math.isfinite(route.quality)):
        raise ValueError(f"Route.quality must be a finite number or None, got {route.quality!r}")
    if not isinstance(route.name, str):
        raise TypeError(f"Route.name must be a string, got {type(route.name).__name__}")
    return route if route.name else Route(route.session, route.quality, route.session.static_fields.model)


def _hint_key(route: Route) -> tuple[str, str]:
    static = route.session.static_fields
    return static.model, static.runtime


def _shortfall(policy: RoutePolicy, quality: float | None, latency_ms: float | None) -> str:
    if policy.min_quality is not None and (quality is None or quality < policy.min_quality):
        return f"quality {quality} < {policy.min_quality}"
    if policy.max_latency_ms is not None:
        if latency_ms is None:
            return "no latency figures yet"
        if latency_ms > policy.max_latency_ms:
            return f"p{policy.latency_percentile:g} {latency_ms:.3f} ms > {policy.max_latency_ms:g} ms"
    return ""


def _cheapest(candidates: list[Candidate], among: Sequence[int]) -> int:
    return min(among, key=lambda i: (candidates[i].cost is None, candidates[i].cost or 0, i))


def _by_policy(candidates: list[Candidate], policy: RoutePolicy) -> tuple[int, str]:
    everyone = range(len(candidates))
    meeting = [i for i in everyone if candidates[i].meets]
    if meeting:
        return _cheapest(candidates, meeting), (
            f"the cheapest of the routes meeting the policy ({len(meeting)} of {len(candidates)})"
        )
    good = [
        i for i in everyone
        if policy.min_quality is None or (candidates[i].quality or 0) >= policy.min_quality
    ]
    if good:
        index = min(good, key=lambda i: (candidates[i].latency_ms is None, candidates[i].latency_ms or 0.0, i))
        return index, f"no route meets max_latency_ms {policy.max_latency_ms:g}: the fastest of those meeting min_quality"
    index = max(everyone, key=lambda i: (candidates[i].quality or 0, -i))
    return index, f"no route meets min_quality {policy.min_quality:g}: the best quality"


def _within_budgets(candidates: list[Candidate], index: int, reason: str) -> tuple[int, str, bool]:
    """The policy's pick, or where a budget acting on it sends the call: (route, reason, fell back)."""
    pick = candidates[index]
    if not pick.budgets:
        return index, reason, False
    free = [i for i, c in enumerate(candidates) if not c.budgets]
    blocked = any(b.startswith("block:") for b in pick.budgets)
    acting = ", ".join(pick.budgets)
    if free:
        alternative = _cheapest(candidates, free)
        cheaper = _cheapest(candidates, [index, alternative]) == alternative and alternative != index
        if blocked or cheaper:
            return alternative, (
                f"{reason}, {pick.route}, is limited by budget {acting}: fell back to "
                f"{candidates[alternative].route}, the cheapest route no budget limits"
            ), True
        return index, f"{reason}; budget {acting} throttles it and no cheaper route is free of budgets", False
    unblocked = [i for i, c in enumerate(candidates) if not any(b.startswith("block:") for b in c.budgets)]
    alternative = _cheapest(candidates, unblocked or range(len(candidates)))
    return alternative, (
        f"{reason}, but budgets limit every route ({acting} on {pick.route}): the cheapest "
        + ("that is not blocked" if unblocked else "(blocked: the call raises BudgetExceeded)")
    ), alternative != index

