"""The Meter enforces the budget state the daemon keeps in the buffer: block, lease, throttle,
scopes, a new period, and the state re-read when it changes."""

from __future__ import annotations

import threading
import time

import pytest

from agent import BudgetExceeded, Meter
from agent.budget_store import BudgetStore
from agent.buffer import Buffer
from agent.enforcer import TokenBucket
from collector.demo.model import OUTPUT_NAME
from tests.agent.budget_helpers import PICOS, budget, hint
from tests.agent.conftest import read_records

pytest.importorskip("onnxruntime")

EXCEEDED = "budget search-monthly: 251.20 of 250.00 USD (100 %) spent this month"


def keep(path, budgets, hints=(), *, received_unix_ns: int | None = None) -> BudgetStore:
    buffer = Buffer.open(path)
    store = BudgetStore(buffer)
    store.keep_reply(budgets, list(hints), received_unix_ns=received_unix_ns or time.time_ns(),
                     acked_through_seq=0)
    return store


class CountingSession:
    """A real session whose runs are counted, to tell a blocked call from one that ran."""

    def __init__(self, session) -> None:
        self._session = session
        self.runs = 0

    def run(self, names, feed, options=None):
        self.runs += 1
        return self._session.run(names, feed, options)

    def run_with_ort_values(self, names, feed, options=None):
        self.runs += 1
        return self._session.run_with_ort_values(names, feed, options)

    def run_with_iobinding(self, binding, options=None):
        self.runs += 1
        return self._session.run_with_iobinding(binding, options)

    def get_providers(self):
        return self._session.get_providers()


def test_no_budget_means_no_enforcer(meter, tiny_session, feed):
    sess = meter.wrap_onnx(tiny_session)
    sess.run([OUTPUT_NAME], feed)
    assert meter.budgets.enforcer is None


def test_an_exceeded_block_budget_raises_before_the_model_runs(meter, buffer_path, tiny_session, feed):
    keep(buffer_path, [budget("search-monthly", "tag:project=search", state="exceeded", lease_pico=0, message=EXCEEDED)])
    counted = CountingSession(tiny_session)
    sess = meter.wrap_onnx(counted, model="tiny")

    with pytest.raises(BudgetExceeded) as raised:
        sess.run([OUTPUT_NAME], feed)

    assert str(raised.value) == (
        "budget search-monthly (tag:project=search) is exceeded: 251.20 of 250.00 USD (100 %) spent this month"
    )
    assert (raised.value.budget, raised.value.scope, raised.value.reason) == (
        "search-monthly", "tag:project=search", "exceeded")
    assert counted.runs == 0
    meter.flush()
    assert read_records(buffer_path) == []  # a blocked call leaves no record
    assert meter.stats().errors == 0


def test_a_spent_lease_blocks_and_says_since_when(meter, buffer_path, tiny_session, feed):
    received = 1_790_000_000 * 10**9  # a past day: the date is shown
    keep(buffer_path, [budget("edge", "device:edge-1", lease_pico=0)], received_unix_ns=received)
    sess = meter.wrap_onnx(tiny_session)
    with pytest.raises(BudgetExceeded, match=r"^budget edge \(device:edge-1\): this device's lease of 0.00 USD is "
                       r"spent and the collector has not been reached since 2026-09-21 \d\d:\d\d UTC$") as raised:
        sess.run([OUTPUT_NAME], feed)
    assert raised.value.reason == "lease-spent"


def test_the_lease_runs_down_with_the_spend_the_daemon_counts(meter, buffer_path, tiny_session, feed):
    store = keep(buffer_path, [budget("all", lease_pico=3 * PICOS)], [hint("tiny", PICOS)])
    sess = meter.wrap_onnx(tiny_session, model="tiny")
    for _ in range(3):
        sess.run([OUTPUT_NAME], feed)
    meter.flush()
    assert store.count_new_records() == 3  # the daemon's round
    meter.flush()  # the flusher's round re-reads the state
    with pytest.raises(BudgetExceeded, match="lease of 3.00 USD is spent"):
        sess.run([OUTPUT_NAME], feed)


def test_scopes_match_only_their_calls(meter, buffer_path, tiny_session, feed):
    keep(buffer_path, [
        budget("resnet", "model:resnet50", state="exceeded"),
        budget("alice", "tag:user=alice", state="exceeded"),
        budget("alerting", "global", action="alert", state="exceeded"),
    ])
    resnet = meter.wrap_onnx(tiny_session, model="resnet50")
    other = meter.wrap_onnx(tiny_session, model="bert")
    alice = meter.wrap_onnx(tiny_session, model="bert", tags={"user": "alice"})

    with pytest.raises(BudgetExceeded, match="budget resnet"):
        resnet.run([OUTPUT_NAME], feed)
    other.run([OUTPUT_NAME], feed)
    other.run([OUTPUT_NAME], feed, tags={"user": "bob"})
    with pytest.raises(BudgetExceeded, match="budget alice"):
        alice.run([OUTPUT_NAME], feed)
    with pytest.raises(BudgetExceeded, match="budget alice"):
        other.run([OUTPUT_NAME], feed, tags={"user": "alice"})  # per-call tags count
    with pytest.raises(BudgetExceeded, match="budget alice"), meter.span("llm", tags={"user": "alice"}):
        pytest.fail("the block must not run")
    with meter.span("llm", tags={"user": "carol"}):
        pass
    meter.flush()
    assert len(read_records(buffer_path)) == 3


def test_run_with_ort_values_is_enforced(meter, buffer_path, tiny_session, features):
    import onnxruntime as ort

    keep(buffer_path, [budget("all", state="exceeded")])
    sess = meter.wrap_onnx(tiny_session)
    with pytest.raises(BudgetExceeded):
        sess.run_with_ort_values([OUTPUT_NAME], {"input": ort.OrtValue.ortvalue_from_numpy(features)})


def test_a_passed_period_end_lets_calls_through(meter, buffer_path, tiny_session, feed):
    keep(buffer_path, [budget("all", state="exceeded", period_end_unix_ns=time.time_ns() - 1)])
    sess = meter.wrap_onnx(tiny_session)
    sess.run([OUTPUT_NAME], feed)  # a new period: ok until the next reply says otherwise


def test_a_new_state_is_picked_up_by_the_next_flusher_round(meter, buffer_path, tiny_session, feed):
    store = keep(buffer_path, [budget("all", state="exceeded")])
    sess = meter.wrap_onnx(tiny_session)
    with pytest.raises(BudgetExceeded):
        sess.run([OUTPUT_NAME], feed)
    store.keep_reply([budget("all", lease_pico=PICOS)], [], received_unix_ns=time.time_ns(), acked_through_seq=0)
    meter.flusher.run_once()
    sess.run([OUTPUT_NAME], feed)
    store.keep_reply([], [], received_unix_ns=time.time_ns(), acked_through_seq=0)
    meter.flusher.run_once()
    assert meter.budgets.enforcer is None


def test_throttle_spaces_calls_at_its_rate(buffer_path, tiny_session, feed):
    keep(buffer_path, [budget("slow", "global", action="throttle", state="exceeded", throttle_per_second=10)])
    with Meter(buffer_path) as meter:
        sess = meter.wrap_onnx(tiny_session)
        started = time.monotonic()
        for _ in range(20):
            sess.run([OUTPUT_NAME], feed)
        elapsed = time.monotonic() - started
    assert 1.85 <= elapsed < 2.4


def test_a_throttle_of_zero_per_second_blocks(meter, buffer_path, tiny_session, feed):
    keep(buffer_path, [budget("none", action="throttle", state="exceeded", throttle_per_second=0)])
    with pytest.raises(BudgetExceeded, match="throttled to 0 calls per second"):
        meter.wrap_onnx(tiny_session).run([OUTPUT_NAME], feed)


def test_the_token_bucket_is_shared_fairly_by_threads():
    bucket = TokenBucket(50)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.take() for _ in range(10)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0.76 <= time.monotonic() - started < 1.2  # 40 calls at 50/s: the first at once
