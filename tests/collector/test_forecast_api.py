"""Forecasts over the HTTP API (GET /api/v1/forecasts), gRPC GetForecast and `infermeter report
forecast --json`, on a store holding eight weeks of daily spend with a weekday pattern: the
three give the same answer, the weekly model is chosen, every point has its interval, and a
budget is projected to exceed its amount on the day the test set it up to.

The store's clock is frozen at the test's start and the records end yesterday (UTC), so the
forecast's first day is today, as the servers see it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from decimal import Decimal

import grpc
import pytest
from infermeter.v1 import admin_pb2, admin_pb2_grpc

from collector import admin_ops
from collector.spend_series import day_start_ns
from collector.store import DeviceInfo, Store
from tests.collector.helpers import (
    ServersThread,
    bearer,
    bearer_metadata,
    make_record,
    run_cli,
)

# Spend of tag:project=search per weekday (Monday first), in USD; ads spend 5 every day.
PATTERN = (12, 14, 13, 15, 11, 4, 3)
ADS = 5
WEEKS = 8
# A little noise, deterministic: the intervals have a width, the weekly model still wins.
NOISE = (0.2, -0.1, 0.0, 0.15, -0.2, 0.1, -0.05, 0.05, -0.15)
BOOK = {  # 0.001 USD per CPU-second on a 1-core device, energy free
    "currency": "USD",
    "hardware": {"default": {"purchase": "31536", "lifetime_years": 1, "cpu_cores": 1}},
    "energy": {"default": {"kwh": "0"}},
}


def search_spend(day: date, index: int) -> Decimal:
    return Decimal(str(PATTERN[day.weekday()] + NOISE[index % len(NOISE)])).quantize(Decimal("0.001"))


def history_days(today: date) -> list[date]:
    return [today - timedelta(days=back) for back in range(WEEKS * 7, 0, -1)]


def fill(store: Store, today: date) -> dict[date, Decimal]:
    """Ingest a record per project and day (its cost: its CPU seconds x 0.001); the search spend by day."""
    device = store.add_device("edge-1")
    records, spend = [], {}
    for index, day in enumerate(history_days(today)):
        spend[day] = search_spend(day, index)
        for project, usd in (("search", spend[day]), ("ads", Decimal(ADS))):
            cpu_ns = int(usd * 1000 * 10**9)
            seq = len(records) + 1
            records.append(make_record(
                seq, start_unix_ns=day_start_ns(day) + 3_600 * 10**9 + seq, duration_ns=cpu_ns, cpu_time_ns=cpu_ns,
                energy=(), tags={"project": project},
            ))
    store.ingest(device.device_id, "0123456789abcdef0123456789abcdef", DeviceInfo(hostname="edge", cpu_cores=1), records)
    return spend


@pytest.fixture
def today() -> date:
    return admin_ops.today()


@pytest.fixture
def store(tmp_path, today):
    """A store whose clock stands still at now, with the price book (effective from 2000)."""
    now = time.time_ns()
    store = Store.open(f"sqlite:///{tmp_path / 'collector.db'}", clock=lambda: now)
    store.add_price_book(BOOK, effective_from_unix_ns=946_684_800 * 10**9)
    yield store
    store.close()


@pytest.fixture
def filled(store, today) -> dict[date, Decimal]:
    return fill(store, today)


def http_get(servers: ServersThread, path: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(servers.http_url + path, headers=bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get_forecast(servers: ServersThread, token: str, **fields):
    with grpc.insecure_channel(servers.grpc_address) as channel:
        return admin_pb2_grpc.AdminStub(channel).GetForecast(
            admin_pb2.GetForecastRequest(**fields), metadata=bearer_metadata(token), timeout=30
        )


def exceeding_amount(spend: dict[date, Decimal], today: date) -> tuple[Decimal, date]:
    """An amount for a monthly budget on the search spend that the expected spend passes in the
    middle of a known day (two days from today, or the month's last day): the amount and that day."""
    month_start = today.replace(day=1)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    target = min(today + timedelta(days=2), month_end - timedelta(days=1))
    spent = sum((amount for day, amount in spend.items() if day >= month_start), Decimal(0))
    ahead = sum((PATTERN[(today + timedelta(days=i)).weekday()] for i in range((target - today).days)), 0)
    return spent + ahead + Decimal(PATTERN[target.weekday()]) / 2, target


def test_http_grpc_and_the_cli_forecast_the_weekly_pattern_and_project_the_budget(
    store, filled, today, servers, viewer_token, capsys, tmp_path,
):
    amount, exceeds_on = exceeding_amount(filled, today)
    store.add_budget({"name": "search-monthly", "scope": "tag:project=search", "period": "month", "amount": str(amount)})
    store.add_budget({"name": "ads-monthly", "scope": "tag:project=ads", "period": "month", "amount": "100000"})

    status, answer = http_get(servers, "/api/v1/forecasts?scope=tag:project%3Dsearch&horizon_days=10", viewer_token)
    assert status == 200, answer
    assert (answer["scope"], answer["horizon_days"], answer["currency"], answer["unit"]) == (
        "tag:project=search", 10, "USD", "money")

    predicted = answer["forecast"]
    assert predicted["status"] == "ok" and predicted["model"] == "holt_winters" and predicted["error_metric"] == "mape"
    errors = {row["model"]: row["error"] for row in predicted["backtests"]}
    assert set(errors) == {"naive_mean", "linear_trend", "holt_winters"}
    assert errors["holt_winters"] == predicted["backtest_error"] < 0.9 * min(errors["naive_mean"], errors["linear_trend"])
    points = predicted["points"]
    assert [point["date"] for point in points] == [(today + timedelta(days=i)).isoformat() for i in range(10)]
    for point in points:
        low, expected, high = (Decimal(point[name]) for name in ("low", "expected", "high"))
        assert 0 <= low < expected < high, point
        assert abs(expected - PATTERN[date.fromisoformat(point["date"]).weekday()]) < Decimal("0.6"), point

    history = {row["date"]: Decimal(row["amount"]) for row in answer["history"]}
    assert len(history) == 90 and history[(today - timedelta(days=1)).isoformat()] == filled[today - timedelta(days=1)]
    assert sum(history.values()) == sum(filled.values())

    [budget] = answer["budgets"]  # only the budgets on the scope asked for
    assert budget["budget"] == "search-monthly" and budget["state"] in ("ok", "warning")
    assert budget["exceeds_on"] == exceeds_on.isoformat()
    assert budget["message"] == f"budget search-monthly is projected to exceed on {exceeds_on.isoformat()}"
    month_end = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    spent = sum((amount for day, amount in filled.items() if day >= today.replace(day=1)), Decimal(0))
    rest = sum(PATTERN[(today + timedelta(days=i)).weekday()] for i in range((month_end - today).days))
    assert abs(Decimal(budget["projected_total"]) - (spent + rest)) < Decimal(2)

    reply = get_forecast(servers, viewer_token, scope="tag:project=search", horizon_days=10)
    assert json.loads(reply.forecast_json) == answer

    code, out, err = run_cli(
        capsys, "report", "forecast", "--db", str(store.engine.url), "--scope", "tag:project=search",
        "--horizon-days", "10", "--json",
    )
    assert code == 0, err
    assert json.loads(out) == answer


def test_the_global_forecast_is_the_default_and_since_shortens_the_history(store, filled, today, servers, viewer_token):
    status, answer = http_get(servers, "/api/v1/forecasts", viewer_token)
    assert status == 200 and answer["scope"] == "global" and answer["horizon_days"] == 30
    assert len(answer["forecast"]["points"]) == 30 and answer["budgets"] == []
    first = answer["forecast"]["points"][0]
    assert abs(Decimal(first["expected"]) - PATTERN[today.weekday()] - ADS) < Decimal("0.6")

    since = today - timedelta(days=21)
    status, shorter = http_get(servers, f"/api/v1/forecasts?since={since.isoformat()}&horizon_days=3", viewer_token)
    assert status == 200 and shorter["history"][0]["date"] == since.isoformat()
    assert len(shorter["history"]) == 21 and len(shorter["forecast"]["points"]) == 3
    reply = get_forecast(servers, viewer_token, horizon_days=3, since_unix_ns=day_start_ns(since))
    assert json.loads(reply.forecast_json) == shorter


@pytest.mark.parametrize("query, field", [
    ("horizon_days=0", "horizon_days"),
    ("horizon_days=367", "horizon_days"),
    ("horizon_days=ten", "horizon_days"),
    ("horizon_days=-1", "horizon_days"),
    ("scope=planet:mars", "scope"),
    ("scope=tag:project", "scope"),
    ("since=yesterday", "since"),
    ("since=2999-01-01", "since"),
    ("since=1990-01-01", "since"),
    ("colour=red", "colour"),
])
def test_bad_parameters_are_400_naming_the_field(servers, viewer_token, query, field):
    status, body = http_get(servers, f"/api/v1/forecasts?{query}", viewer_token)
    assert status == 400 and body["field"] == field, body


@pytest.mark.parametrize("fields, field", [
    ({"horizon_days": 367}, "horizon_days"),
    ({"scope": "planet:mars"}, "scope"),
    ({"since_unix_ns": 4_000_000_000 * 10**9}, "since"),
])
def test_bad_grpc_requests_are_invalid_argument_naming_the_field(servers, viewer_token, fields, field):
    with pytest.raises(grpc.RpcError) as caught:
        get_forecast(servers, viewer_token, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: "), caught.value.details()


def test_a_new_store_has_not_enough_history_and_says_so(store, servers, viewer_token, capsys):
    store.add_budget({"name": "fleet", "scope": "global", "period": "month", "amount": "100"})

    status, answer = http_get(servers, "/api/v1/forecasts?horizon_days=5", viewer_token)
    assert status == 200
    assert answer["forecast"]["status"] == "not_enough_history" and answer["forecast"]["points"] == []
    assert answer["forecast"]["model"] == "" and answer["forecast"]["backtest_error"] is None
    [budget] = answer["budgets"]
    assert budget["projected_total"] is None and budget["exceeds_on"] is None
    assert budget["message"] == "budget fleet: not enough history to project the period"
    assert json.loads(get_forecast(servers, viewer_token, horizon_days=5).forecast_json) == answer

    code, out, _ = run_cli(capsys, "report", "forecast", "--db", str(store.engine.url), "--horizon-days", "5")
    assert code == 0
    assert "not_enough_history" in out and "not enough history to project the period" in out
