"""Budgets from the collector to the call: the real collector (`infermeter collector serve` on
SQLite) and the real agent daemon (`infermeter agent run`) as processes on loopback, and a Meter
wrapping a real ONNX Runtime session in this process. The price book charges 1.00 USD a request,
so a budget of 3.00 USD is spent by the third inference.

The oracles: the collector's own word on the budget (Store.budget), the state the daemon kept in
the device buffer, and what the metered calls do (raise BudgetExceeded before the model runs,
wait, or run)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime
import pytest

from agent import BudgetExceeded, Meter
from collector.demo import processes
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH, OUTPUT_NAME
from collector.store import Store
from tests.integration.deployment import free_port

pytestmark = pytest.mark.timeout(120)

PRICE_BOOK = {
    "currency": "USD",
    # Hardware all but free: each inference costs its request price and a few picos more.
    "hardware": {"default": {"purchase": "0.000001", "lifetime_years": 1, "cpu_cores": 1}},
    "energy": {"default": {"kwh": "0"}},
    "models": {"tiny-mlp": {"request": "1.00"}},
}
WAIT_S = 20.0
FEED = {INPUT_NAME: np.ones((1, INPUT_WIDTH), np.float32)}
T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll condition until it returns something true; fail naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)
    return value


@dataclass
class World:
    workdir: Path
    db_url: str
    buffer_path: Path
    config_path: Path
    grpc_address: str
    http_address: str
    meter: Meter
    collector: processes.Collector | None = None
    agent: object = None

    def start_collector(self) -> None:
        self.collector = processes.start_collector(
            self.db_url, self.workdir, grpc_address=self.grpc_address, http_address=self.http_address
        )

    def stop_collector(self) -> None:
        processes.stop(self.collector.process)

    def start_agent(self) -> None:
        self.agent = processes.start_agent(self.config_path, self.workdir)

    def add_budget(self, **document) -> None:
        with _store(self.db_url) as store:
            store.add_budget({"period": "day", **document})

    def collector_state(self, name: str) -> str:
        """The collector's word on the budget: ok, warning or exceeded."""
        with _store(self.db_url) as store:
            return store.budget(name).state

    def device_budget(self, name: str) -> dict | None:
        """The budget as the daemon keeps it in the device buffer (None: it has none by that name)."""
        conn = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(
                "SELECT state, lease_remaining, spent, (SELECT count(*) FROM price_hints) AS hints"
                " FROM budget_state WHERE name = ?", (name,),
            ).fetchone()
            return None if row is None else dict(row)
        except sqlite3.OperationalError:  # the daemon has not made its tables yet
            return None
        finally:
            conn.close()

    def buffered_records(self) -> int:
        conn = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT count(*) FROM records").fetchone()[0]
        finally:
            conn.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.workdir / name).read_text(errors='replace')[-3000:]}"
            for name in ("collector.log", "agent.log") if (self.workdir / name).exists()
        )


class _store:
    def __init__(self, db_url: str) -> None:
        self._store = Store.open(db_url)

    def __enter__(self) -> Store:
        return self._store

    def __exit__(self, *exc_info) -> None:
        self._store.close()


@pytest.fixture(scope="module")
def session():
    return onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    db_url = f"sqlite:///{tmp_path / 'collector.db'}"
    with _store(db_url) as store:
        store.add_price_book(PRICE_BOOK, effective_from_unix_ns=946_684_800 * 10**9)
        token = store.add_device("edge-1").token
    (tmp_path / "device.token").write_text(token)
    grpc_address, buffer_path = f"127.0.0.1:{free_port()}", tmp_path / "buffer.db"
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        f'buffer = "{buffer_path}"\n'
        f'[collector]\naddress = "{grpc_address}"\ntoken_file = "{tmp_path / "device.token"}"\ntimeout_s = 5\n'
        "[shipper]\ninterval_s = 0.05\nheartbeat_s = 0.1\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.2\n"
        "[energy]\nenabled = false\n"
    )
    meter = Meter(buffer=buffer_path)
    world = World(tmp_path, db_url, buffer_path, config_path, grpc_address, f"127.0.0.1:{free_port()}", meter)
    world.start_collector()
    try:
        yield world
    finally:
        meter.close()
        for process in (world.agent, world.collector and world.collector.process):
            if process is not None:
                processes.stop(process)


def _sessions(world: World, session):
    search = world.meter.wrap_onnx(session, model="tiny-mlp", tags={"project": "search"})
    ads = world.meter.wrap_onnx(session, model="tiny-mlp", tags={"project": "ads"})
    return search, ads


def _run(metered) -> None:
    (scores,) = metered.run([OUTPUT_NAME], FEED)
    assert scores.shape == (1, 4)


def _blocked(world: World, metered) -> BudgetExceeded:
    """The call raises BudgetExceeded before the model runs: it leaves no record."""
    recorded = world.meter.stats().recorded
    with pytest.raises(BudgetExceeded) as caught:
        metered.run([OUTPUT_NAME], FEED)
    assert world.meter.stats().recorded == recorded
    return caught.value


def test_a_block_budget_stops_the_calls_it_covers_once_the_collector_says_exceeded(world, session):
    world.add_budget(name="search-cap", scope="tag:project=search", amount="3.00", action="block")
    search, ads = _sessions(world, session)
    world.start_agent()

    runs = 0
    while world.collector_state("search-cap") != "exceeded":
        assert runs < 3, world.logs()
        _run(search)
        runs += 1
        world.meter.flush()
        with _store(world.db_url) as store:
            wait_until(lambda runs=runs: store.budget("search-cap").spent >= runs * 10**12,
                       f"the collector holds {runs} runs")
    assert runs == 3

    wait_until(lambda: (world.device_budget("search-cap") or {}).get("state") == "exceeded",
               "the device hears that search-cap is exceeded")
    world.meter.flush()  # the Meter re-reads the state
    error = _blocked(world, search)
    assert (error.budget, error.scope, error.reason) == ("search-cap", "tag:project=search", "exceeded")
    assert str(error).startswith("budget search-cap (tag:project=search) is exceeded: 3.00 of 3.00 USD (100 %)")
    _run(ads)  # another project's calls still run


def test_offline_the_lease_runs_down_then_a_raise_and_a_delete_reach_the_device(world, session):
    world.add_budget(name="search-cap", scope="tag:project=search", amount="3.00", action="block")
    search, ads = _sessions(world, session)
    _run(search)
    world.meter.flush()
    world.start_agent()  # its first push carries the record: the reply has the model's price
    state = wait_until(lambda: (b := world.device_budget("search-cap")) and b["lease_remaining"] < 3 * 10**12 and b,
                       "the device holds the lease after one run")
    assert state["state"] == "ok" and state["hints"] == 1
    assert 2 * 10**12 - 10**9 < state["lease_remaining"] <= 2 * 10**12

    # (b) The collector goes away: the device counts its own records against the lease.
    world.stop_collector()
    _run(search)
    wait_until(lambda: world.device_budget("search-cap")["spent"] > 0, "the daemon counts the run offline")
    world.meter.flush()
    _run(search)  # 1 USD of the 2 USD lease spent: still allowed
    wait_until(lambda: (b := world.device_budget("search-cap"))["spent"] >= b["lease_remaining"],
               "the daemon counts the lease spent")
    world.meter.flush()
    error = _blocked(world, search)
    assert (error.budget, error.reason) == ("search-cap", "lease-spent")
    assert "lease of 2.00 USD is spent and the collector has not been reached" in str(error)
    _run(ads)
    world.meter.flush()
    assert world.buffered_records() == 3  # kept for the collector, which never heard of them
    assert world.collector_state("search-cap") == "ok"

    # (c) Raised while the collector is down; its first reply after the restart unblocks.
    with _store(world.db_url) as store:
        store.update_budget("search-cap", {"name": "search-cap", "scope": "tag:project=search", "period": "day",
                                           "amount": "50.00", "action": "block"})
    world.start_collector()
    wait_until(lambda: world.device_budget("search-cap")["lease_remaining"] > 40 * 10**12,
               "the device hears of the raise")
    world.meter.flush()
    _run(search)

    # Deleted while the device has nothing to ship: a heartbeat brings the news.
    world.meter.flush()
    wait_until(lambda: world.buffered_records() == 0, "everything is shipped")
    with _store(world.db_url) as store:
        store.delete_budget("search-cap")
    wait_until(lambda: world.device_budget("search-cap") is None, "the device drops the deleted budget")
    world.meter.flush()
    assert world.meter.budgets.enforcer is None
    _run(search)


def test_a_throttle_budget_limits_the_call_rate_of_the_calls_it_covers(world, session):
    world.add_budget(name="search-slow", scope="tag:project=search", amount="1.00", action="throttle",
                     throttle_per_second="5")
    search, ads = _sessions(world, session)
    _run(search)  # 1.00 USD: the budget is spent
    world.meter.flush()
    world.start_agent()
    wait_until(lambda: (world.device_budget("search-slow") or {}).get("state") == "exceeded",
               "the device hears that search-slow is exceeded")
    world.meter.flush()

    started = time.monotonic()
    for _ in range(4):
        _run(search)
    assert time.monotonic() - started >= 0.55  # 4 calls at 5 a second: 3 waits of 0.2 s

    started = time.monotonic()
    for _ in range(10):
        _run(ads)
    assert time.monotonic() - started < 1.0  # throttled, these would take 1.8 s


def test_a_device_that_heartbeat_before_its_first_record_gets_the_price_in_the_next_reply(world, session):
    world.add_budget(name="search-cap", scope="tag:project=search", amount="3.00", action="block")
    search, _ = _sessions(world, session)
    world.start_agent()
    wait_until(lambda: world.device_budget("search-cap"), "a heartbeat brings the budget")
    _run(search)
    world.meter.flush()
    wait_until(lambda: (world.device_budget("search-cap") or {}).get("lease_remaining", 0) < 3 * 10**12,
               "the reply to the run comes", timeout_s=5)
    # Without the price, the device counts its runs at 0 against the lease while offline.
    assert world.device_budget("search-cap")["hints"] == 1
