"""Cost-aware routing (agent.router) over real ONNX Runtime sessions of clearly different cost:
a small model (one 256x4 MatMul) and a large one (five 1024x1024 layers), with the same input
and output, so either can answer a call."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
import pytest

from agent import BudgetExceeded, Meter, Route, RoutePolicy
from agent.budget_store import BudgetStore
from agent.buffer import Buffer
from agent.enforcer import BudgetGuard
from agent.router import CPU_NS, PICO, Router
from tests.agent.budget_helpers import budget, hint
from tests.agent.conftest import read_records, single_thread_session

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
WIDTH = 256


def _model(name: str, hidden: list[int]) -> bytes:
    """x float32 [n, WIDTH] -> y float32 [n, 4] through MatMul layers of these hidden widths,
    with a Relu after each but the last."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(len(hidden))
    widths = [WIDTH, *hidden, 4]
    nodes, inits, source = [], [], "x"
    for i, (rows, cols) in enumerate(itertools.pairwise(widths)):
        inits.append(numpy_helper.from_array((rng.random((rows, cols), dtype=np.float32) - 0.5) / rows, f"w{i}"))
        last = i == len(widths) - 2
        nodes.append(helper.make_node("MatMul", [source, f"w{i}"], ["y" if last else f"m{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"m{i}"], [f"h{i}"]))
            source = f"h{i}"
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {"small": _model("small", []), "large": _model("large", [1024] * 5)}


@pytest.fixture
def feed() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(3).random((16, WIDTH), dtype=np.float32)}


@pytest.fixture
def meter(buffer_path) -> Iterator[Meter]:
    meter = Meter(buffer_path, start_thread=False)  # real clocks: the router measures them
    yield meter
    meter.close()


def _sessions(meter: Meter, models: dict[str, bytes]):
    return {name: meter.wrap_onnx(single_thread_session(data), model=name) for name, data in models.items()}


def _keep(path, budgets=(), hints=()) -> None:
    with Buffer.open(path) as buffer:
        BudgetStore(buffer).keep_reply(list(budgets), list(hints), received_unix_ns=time.time_ns(), acked_through_seq=0)


def _calls(router: Router, feed, n: int) -> None:
    for _ in range(n):
        router.run(None, feed)


def test_without_hints_the_cheapest_by_measured_cpu_time_that_meets_the_quality(meter, models, feed, buffer_path):
    s = _sessions(meter, models)
    router = meter.router([Route(s["small"], quality=0.7), Route(s["large"], quality=0.9)], policy=RoutePolicy(min_quality=0.6))
    _calls(router, feed, 30)

    choice = router.last_choice
    assert choice.cost_unit == CPU_NS and choice.route == "small"
    small, large = choice.candidates
    assert small.cost * 10 < large.cost  # measured: the large model uses far more CPU per call
    # A first call each that does not count and three that do, to measure; then small.
    assert router.stats().by_route == {"small": 26, "large": 4}

    strict = meter.router([Route(s["small"], quality=0.7), Route(s["large"], quality=0.9)], policy=RoutePolicy(min_quality=0.8))
    _calls(strict, feed, 10)
    assert strict.last_choice.route == "large"
    assert strict.last_choice.candidates[0].note == "quality 0.7 < 0.8"
    meter.flush()
    by_model = {}
    for record in read_records(buffer_path):
        by_model[record.model] = by_model.get(record.model, 0) + 1
    assert by_model == {"small": 26 + 4, "large": 4 + 6}  # every routed call is a metered record


def test_price_hints_decide_without_measuring_when_no_latency_is_asked(meter, models, feed, buffer_path):
    _keep(buffer_path, hints=[hint("small", 40), hint("large", 9_000)])
    s = _sessions(meter, models)
    router = meter.router([s["large"], s["small"]])
    _calls(router, feed, 5)
    assert router.stats().by_route == {"large": 0, "small": 5}
    assert router.last_choice.cost_unit == PICO
    assert [c.cost for c in router.last_choice.candidates] == [9_000, 40]
    assert router.last_choice.reason == "the cheapest of the routes meeting the policy (2 of 2)"


def test_a_latency_bound_between_the_two_picks_the_fast_one_even_when_it_costs_more(meter, models, feed, buffer_path):
    # The hints say the large model is cheaper (as a GPU box might): only latency rules it out.
    _keep(buffer_path, hints=[hint("small", 9_000), hint("large", 40)])
    s = _sessions(meter, models)
    probe = meter.router([s["small"], s["large"]], policy=RoutePolicy(max_latency_ms=1e6))
    _calls(probe, feed, 6)
    small, large = probe.last_choice.candidates
    assert small.latency_ms * 4 < large.latency_ms
    bound = (small.latency_ms * large.latency_ms) ** 0.5

    router = meter.router([s["small"], s["large"]], policy=RoutePolicy(max_latency_ms=bound, latency_percentile=50))
    _calls(router, feed, 12)
    choice = router.last_choice
    assert choice.route == "small" and choice.cost_unit == PICO
    assert choice.candidates[1].note.startswith("p50 ") and not choice.candidates[0].note
    assert probe.last_choice.route == "large"  # with no bound in the way, the cheaper one


def test_a_throttled_route_falls_back_to_the_cheaper_free_one(meter, models, feed, buffer_path):
    _keep(
        buffer_path,
        budgets=[budget("large-daily", "model:large", action="throttle", state="exceeded", lease_pico=0, throttle_per_second=1000.0)],
        hints=[hint("small", 40), hint("large", 9_000)],
    )
    s = _sessions(meter, models)
    router = meter.router([Route(s["small"], quality=0.7), Route(s["large"], quality=0.9)], policy=RoutePolicy(min_quality=0.8))
    _calls(router, feed, 4)
    choice = router.last_choice
    assert choice.route == "small"
    assert "limited by budget throttle:large-daily: fell back to small" in choice.reason
    assert choice.candidates[1].budgets == ("throttle:large-daily",)
    assert router.stats().fallbacks == 4 and router.stats().by_route == {"small": 4, "large": 0}


def test_a_throttle_on_the_cheapest_route_does_not_send_calls_to_a_dearer_one(meter, models, feed, buffer_path):
    _keep(
        buffer_path,
        budgets=[budget("small-daily", "model:small", action="throttle", state="exceeded", lease_pico=0, throttle_per_second=1000.0)],
        hints=[hint("small", 40), hint("large", 9_000)],
    )
    s = _sessions(meter, models)
    router = meter.router([s["small"], s["large"]])
    _calls(router, feed, 3)
    assert router.last_choice.route == "small" and router.stats().fallbacks == 0
    assert "throttles it and no cheaper route is free of budgets" in router.last_choice.reason


def test_a_new_budget_state_moves_calls_and_a_block_on_every_route_raises(meter, models, feed, buffer_path):
    _keep(buffer_path, hints=[hint("small", 40), hint("large", 9_000)])
    s = _sessions(meter, models)
    router = meter.router([s["small"], s["large"]])
    _calls(router, feed, 2)
    assert router.last_choice.route == "small"

    _keep(buffer_path, budgets=[budget("no-small", "model:small", state="exceeded", lease_pico=0)],
          hints=[hint("small", 40), hint("large", 9_000)])
    meter.flusher.run_once()  # the flusher's round re-reads the state
    _calls(router, feed, 1)
    assert router.last_choice.route == "large"  # blocked: the cheapest route no budget limits

    _keep(buffer_path, budgets=[budget("fleet", "global", state="exceeded", lease_pico=0)], hints=[hint("small", 40)])
    meter.flusher.run_once()
    with pytest.raises(BudgetExceeded) as raised:
        router.run(None, feed)
    assert raised.value.budget == "fleet"
    assert "the call raises BudgetExceeded" in router.last_choice.reason


def test_model_errors_propagate_and_the_router_s_own_faults_do_not(meter, models, feed):
    s = _sessions(meter, models)
    router = meter.router([s["small"], s["large"]])
    with pytest.raises(Exception) as bare:  # whatever ONNX Runtime raises
        s["small"].session.run(None, {"nope": feed["x"]})
    with pytest.raises(type(bare.value), match="missing from input feed"):
        router.run(None, {"nope": feed["x"]})
    assert router.last_choice.candidates[0].samples == 0  # a failed call is no latency figure

    class BrokenHints(BudgetGuard):
        @property
        def hints(self):
            raise RuntimeError("the hints cannot be read")

        @hints.setter
        def hints(self, value):
            pass

    broken = Router([s["large"], s["small"]], RoutePolicy(), BrokenHints(), clock=meter._clock)
    outputs = broken.run(None, feed)
    assert outputs[0].shape == (16, 4)
    assert broken.stats().errors == 1 and broken.stats().by_route == {"large": 0, "small": 0}


def test_probes_refresh_a_route_that_is_not_chosen(meter, models, feed, buffer_path):
    _keep(buffer_path, hints=[hint("small", 40), hint("large", 9_000)])
    s = _sessions(meter, models)
    router = meter.router([s["small"], s["large"]], policy=RoutePolicy(max_latency_ms=1e6, probe_every=10, warmup_calls=1))
    _calls(router, feed, 30)
    stats = router.stats()
    assert stats.probes == 3 and stats.by_route == {"small": 25, "large": 5}


@pytest.mark.parametrize(("routes", "policy", "error"), [
    ("none", RoutePolicy(), "at least one route"),
    ("plain", RoutePolicy(), "a route is a metered session"),
    ("twice", RoutePolicy(), "two routes are named 'small'"),
    ("bare", RoutePolicy(min_quality=0.5), "give every Route a quality"),
    ("bare", {"min_quality": 0.5}, "policy must be a RoutePolicy"),
])
def test_setup_mistakes_are_refused_at_once(meter, models, routes, policy, error):
    s = _sessions(meter, models)
    given = {
        "plain": [single_thread_session(models["small"])], "twice": [s["small"], s["small"]],
        "bare": [s["small"], s["large"]], "none": [],
    }[routes]
    with pytest.raises((TypeError, ValueError), match=error):
        meter.router(given, policy=policy)


@pytest.mark.parametrize("fields", [
    {"max_latency_ms": -1}, {"min_quality": float("nan")}, {"latency_percentile": 0}, {"window": 0},
    {"probe_every": -1}, {"warmup_calls": 1.5},
])
def test_bad_policies_are_refused(fields):
    with pytest.raises(ValueError, match="RoutePolicy"):
        RoutePolicy(**fields)
