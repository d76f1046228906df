"""Forecast and anomaly alerts (collector.budget_alerts) on eight weeks of daily spend with a
weekday pattern, on SQLite and PostgreSQL: a budget heading past its amount gets one "forecast"
event per period, a spike day one "anomaly" event naming its driver, a calm series none. And
`infermeter collector serve` runs the alerts and webhook delivery and stops them cleanly."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import threading
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from agent.record import EnergyShare
from collector import server
from collector.budget_alerts import BudgetAlerts
from collector.spend_series import day_start_ns
from collector.store import DeviceInfo, Store
from tests.collector.databases import store_url  # noqa: F401
from tests.collector.helpers import Clock, make_record

PATTERN = (12, 14, 13, 15, 11, 4, 3)  # USD per weekday, Monday first
NOISE = (0.02, -0.01, 0.0, 0.015, -0.02, 0.01, -0.005, 0.005, -0.015)  # relative to the day's spend
TODAY = date(2026, 11, 24)  # a Tuesday
NOW = day_start_ns(TODAY) + 9 * 3_600 * 10**9
STREAM = "0123456789abcdef0123456789abcdef"
BOOK = {  # 0.001 USD per CPU-second on a 1-core device, energy free
    "currency": "USD",
    "hardware": {"default": {"purchase": "31536", "lifetime_years": 1, "cpu_cores": 1}},
    "energy": {"default": {"kwh": "0"}},
}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def fleet(store_url, clock):  # noqa: F811
    store = Store.open(store_url, clock=clock)
    store.add_price_book(BOOK, effective_from_unix_ns=946_684_800 * 10**9)
    yield store
    store.close()


def cpu_record(seq: int, day: date, usd: Decimal, model: str):
    ns = int(usd * 1000 * 10**9)
    return make_record(seq, model=model, start_unix_ns=day_start_ns(day) + 3_600 * 10**9 + seq,
                       duration_ns=ns, cpu_time_ns=ns, energy=(), tags={})


def fill(store: Store, *, spike: Decimal = Decimal(0)) -> Decimal:
    """Eight weeks up to yesterday on edge-1 (resnet50 with the weekday pattern); `spike` more
    spent yesterday by model bert, half on edge-1 and half on edge-2. What November spent."""
    edge1, edge2 = store.add_device("edge-1"), store.add_device("edge-2")
    records, november = [], Decimal(0)
    for index, back in enumerate(range(56, 0, -1)):
        day = TODAY - timedelta(days=back)
        usd = (PATTERN[day.weekday()] * (1 + Decimal(str(NOISE[index % len(NOISE)])))).quantize(Decimal("0.001"))
        records.append(cpu_record(len(records) + 1, day, usd, "resnet50"))
        november += usd if day.month == TODAY.month else 0
    info = DeviceInfo(hostname="edge", cpu_cores=1)
    yesterday = TODAY - timedelta(days=1)
    if spike:
        records.append(cpu_record(len(records) + 1, yesterday, spike / 2, "bert"))
        store.ingest(edge2.device_id, STREAM, info, [cpu_record(1, yesterday, spike / 2, "bert")])
        november += spike
    store.ingest(edge1.device_id, STREAM, info, records)
    return november


def events(store: Store, kind: str) -> list:
    return [event for event in store.budget_events() if event.kind == kind]


def test_a_budget_heading_past_its_amount_gets_one_forecast_event_per_period(fleet, clock):
    november = fill(fleet)
    # Today is expected to cost about 14: half of it takes the budget past its amount today.
    fleet.add_budget({"name": "fleet-monthly", "scope": "global", "period": "month", "amount": str(november + 7)})
    fleet.add_budget({"name": "roomy", "scope": "model:resnet50", "period": "month", "amount": "10000"})
    alerts = BudgetAlerts(fleet, clock=clock)

    assert alerts.run_once() == 1
    assert alerts.run_once() == 0
    [event] = events(fleet, "forecast")
    assert (event.budget_name, event.key) == ("fleet-monthly", "exceeds")
    assert event.details["exceeds_on"] == TODAY.isoformat()
    assert event.details["message"] == f"budget fleet-monthly is projected to exceed on {TODAY.isoformat()}"
    assert Decimal(event.details["projected_total"]) > november + 7
    assert event.period_start_unix_ns == day_start_ns(TODAY.replace(day=1))

    clock.now += 3_600 * 10**9  # an hour on, the same period: nothing new
    assert alerts.run_once() == 0
    # December 1st: the records stopped a week ago; idle days are no anomaly, and a period
    # with nothing spent and nothing expected is not heading past its amount.
    clock.now = day_start_ns(date(2026, 12, 1)) + 3_600 * 10**9
    assert alerts.run_once() == 0
    assert len(events(fleet, "forecast")) == 1 and events(fleet, "anomaly") == []


def test_a_spike_day_gets_one_anomaly_event_naming_its_driver(fleet, clock):
    fill(fleet, spike=Decimal(60))
    fleet.add_budget({"name": "fleet-monthly", "scope": "global", "period": "month", "amount": "100000"})
    alerts = BudgetAlerts(fleet, clock=clock)

    assert alerts.run_once() == 1
    assert alerts.run_once() == 0
    [event] = fleet.budget_events()
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    assert (event.budget_name, event.kind, event.key) == ("fleet-monthly", "anomaly", yesterday)
    details = event.details
    assert details["driver"] == "model:bert" and details["measure"] == "spend" and details["date"] == yesterday
    assert Decimal(details["driver_excess"]) == 60 and Decimal(details["observed"]) > Decimal(details["expected"]) + 50
    assert details["z_score"] >= 3.5 and "driven by model:bert" in details["message"]


def test_a_spike_of_one_device_names_the_device(fleet, clock):
    fill(fleet)
    edge3 = fleet.add_device("edge-3")
    yesterday = TODAY - timedelta(days=1)
    fleet.ingest(edge3.device_id, STREAM, DeviceInfo(hostname="edge", cpu_cores=1), [
        cpu_record(1, yesterday, Decimal(40), "resnet50"),
    ])
    fleet.add_budget({"name": "fleet-monthly", "scope": "global", "period": "month", "amount": "100000"})

    assert BudgetAlerts(fleet, clock=clock).run_once() == 1
    [event] = fleet.budget_events()
    assert event.kind == "anomaly" and event.details["driver"] == "device:edge-3", event.details


def test_a_calm_series_within_its_budget_makes_no_event(fleet, clock):
    fill(fleet)
    fleet.add_budget({"name": "fleet-monthly", "scope": "global", "period": "month", "amount": "100000"})
    fleet.add_budget({"name": "resnet-weekly", "scope": "model:resnet50", "period": "week", "amount": "5000"})

    assert BudgetAlerts(fleet, clock=clock).run_once() == 0
    assert fleet.budget_events() == []


# `collector serve`


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver on loopback: keeps each POST's headers and body."""

    received: ClassVar[list[tuple[dict, bytes]]] = []
    arrived = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.arrived = [], threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_serve_delivers_a_signed_event_and_stops_its_tasks(tmp_path, receiver):
    """The collector as `collector serve` runs it (server._run, in this process's main thread for
    its signal handlers): a threshold crossed while it runs is POSTed, signed, to a live
    webhook; SIGTERM stops the servers, the alerts and the sender, leaving no task behind."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store.open(url)
    ready = tmp_path / "ready.json"
    secret = store.add_webhook(receiver).secret
    store.add_budget({"name": "tiny", "scope": "global", "period": "month", "amount": "0.00000001"})
    device = store.add_device("edge-1")

    async def scenario() -> set:
        running = asyncio.create_task(server._run(store, url, "127.0.0.1:0", "127.0.0.1:0", ready, None, None))
        while not ready.exists():
            assert not running.done(), running
            await asyncio.sleep(0.05)
        now = store._clock()
        await asyncio.to_thread(store.ingest, device.device_id, STREAM, DeviceInfo(hostname="edge", cpu_cores=1), [
            make_record(1, start_unix_ns=now - 10**9, energy=(EnergyShare("cpu", 5_000, "rapl", "cpu-time", 1, 50),)),
        ])
        assert await asyncio.to_thread(Receiver.arrived.wait, 20), "no delivery"
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, 30)
        return asyncio.all_tasks() - {asyncio.current_task()}

    try:
        left = asyncio.run(scenario())
    finally:
        store.close()

    assert left == set()
    assert not ready.exists()
    headers, body = next(item for item in Receiver.received if json.loads(item[1])["key"] == "50")
    event = json.loads(body)
    assert (event["budget"], event["kind"]) == ("tiny", "threshold")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Infermeter-Event"] == str(event["event_id"])
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Infermeter-Signature"], expected)
    reopened = Store.open(url)
    try:
        stored = [e.event_id for e in reopened.budget_events()]
    finally:
        reopened.close()
    delivered = [json.loads(b)["event_id"] for _, b in Receiver.received]
    assert sorted(delivered) == stored  # every event of the crossing, each once
