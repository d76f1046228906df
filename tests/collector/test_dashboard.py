"""The dashboard at / in real headless Chromium (over the DevTools Protocol), against real
servers over a store with four days of records, a budget and an alert. Screenshots are kept in
the test's tmp folder (their paths are printed). Skipped only when no Chromium is installed."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from decimal import Decimal

import pytest

from agent.record import MIN_START_UNIX_NS, EnergyShare
from collector.store import DeviceInfo
from tests.collector.chromium import Browser, find_chromium
from tests.collector.helpers import ServersThread, bearer, make_record

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")

DAY_NS = 86_400 * 10**9
BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1199.99", "lifetime_years": 4}},
    "energy": {"default": {"kwh": "0.1537"}},
}
# Two devices on two sites, each running its model for its project.
FLEET = (("edge-a", "lab", "resnet50", "search"), ("edge-b", "edge", "yolov8n", "ads"))


@pytest.fixture
def seeded(store):
    """Records every 30 minutes over the four days up to now, a budget and one of its alerts."""
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    now_ns = time.time_ns()
    info = DeviceInfo(hostname="edge", cpu_cores=4, platform="linux-x86_64", agent_version="0.1.0")
    for index, (name, site, model, project) in enumerate(FLEET):
        device = store.add_device(name, site=site)
        first_ns = now_ns - 4 * DAY_NS
        records = [
            make_record(
                seq, model=model, tags={"project": project}, start_unix_ns=first_ns + seq * 1_800 * 10**9,
                cpu_time_ns=(index + 1) * 40_000_000, duration_ns=(index + 1) * 50_000_000,
                energy=(EnergyShare("cpu", (index + 1) * 900_000, "rapl", "cpu-time", 100_000_000, 50),),
            )
            for seq in range(1, 4 * 48)
        ]
        store.ingest(device.device_id, f"{index + 1:032x}", info, records)
    store.add_budget({"name": "search-monthly", "scope": "tag:project=search", "period": "month", "amount": "0.05",
                      "thresholds": [50, 80, 100]})
    status = store.list_budgets()[0]
    store.record_budget_event(
        status.budget.budget_id, period_start_unix_ns=status.period_start_unix_ns, kind="threshold", key="80",
        details={"message": "budget search-monthly passed 80%"},
    )
    return store


@pytest.fixture
def url(seeded):
    with ServersThread(seeded) as running:
        yield running.http_url


def get_json(url: str, token: str):
    with urllib.request.urlopen(urllib.request.Request(url, headers=bearer(token)), timeout=30) as response:
        return json.load(response)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


async def log_in(browser: Browser, url: str, token: str) -> None:
    await browser.navigate(f"{url}/")
    await browser.wait_for("document.body.dataset.state === 'login'")
    await browser.evaluate(
        f"document.getElementById('token').value = {json.dumps(token)};"
        "document.getElementById('login-form').requestSubmit(); true"
    )


async def spend_chart(browser: Browser) -> dict:
    """The spend chart as Chart.js holds it: labels, and per dataset its label and the API's totals."""
    return await browser.evaluate(
        "(() => { const chart = window.infermeterCharts.spend; return {labels: chart.data.labels,"
        " datasets: chart.data.datasets.map((d) => ({label: d.label, totals: d.totals}))}; })()"
    )


async def drawn_pixels(browser: Browser, canvas_id: str) -> int:
    """How many of the canvas's pixels are not transparent."""
    return await browser.evaluate(
        f"(() => {{ const c = document.getElementById('{canvas_id}');"
        " const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < data.length; i += 4) { if (data[i]) n++; } return n; })()"
    )


def keep(path) -> None:
    print(f"screenshot: {path}")


def test_the_page_is_served_with_its_security_headers(url):
    with urllib.request.urlopen(f"{url}/", timeout=10) as response:
        headers = response.headers
        page = response.read().decode()

    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page and "<style>" not in page  # everything from files: the policy allows no inline code
    with urllib.request.urlopen(f"{url}/dashboard/chart.umd.min.js", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert b"Chart.js v4" in response.read(300)


def test_login_page_loads_without_console_errors(url, tmp_path):
    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await browser.navigate(f"{url}/")
            await browser.wait_for("document.body.dataset.state === 'login'")
            visible = await browser.evaluate(
                "[document.getElementById('login').hidden, document.getElementById('main').hidden]"
            )
            keep(await browser.screenshot(tmp_path / "login.png"))
            return visible, browser.console_errors

    (login_hidden, main_hidden), errors = run(scenario())

    assert (login_hidden, main_hidden) == (False, True)
    assert errors == []


def test_a_viewer_sees_the_charts_with_the_apis_numbers(url, viewer_token, tmp_path):
    costs = get_json(f"{url}/api/v1/costs?group_by=model&granularity=day&top=8", viewer_token)
    devices = get_json(f"{url}/api/v1/devices", viewer_token)["devices"]
    budgets = get_json(f"{url}/api/v1/budgets", viewer_token)["budgets"]

    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, viewer_token)
            await browser.wait_for("document.body.dataset.state === 'ready'")
            await browser.wait_for("document.body.dataset.forecast === 'ready'")
            keep(await browser.screenshot(tmp_path / "dashboard.png"))
            return {
                "chart": await spend_chart(browser),
                "pixels": await drawn_pixels(browser, "spend-chart"),
                "forecast_pixels": await drawn_pixels(browser, "forecast-chart"),
                "total": await browser.evaluate("document.getElementById('spend-total').dataset.totalCost"),
                "total_text": await browser.evaluate("document.getElementById('spend-total').textContent"),
                "tables": await browser.evaluate(
                    "Object.fromEntries(['per-model', 'top-models', 'budgets', 'events', 'devices'].map((id) =>"
                    " [id, [...document.querySelectorAll(`#${id} tbody tr`)].map((r) => [...r.cells].map((c) => c.textContent))]))"
                ),
                "buttons": await browser.evaluate(
                    "[...document.querySelectorAll('button')].filter((b) => b.offsetParent !== null).map((b) => b.textContent)"
                ),
                "errors": browser.console_errors,
                "shown_error": await browser.evaluate("document.getElementById('error').textContent"),
            }

    seen = run(scenario())

    assert seen["errors"] == [] and seen["shown_error"] == ""
    assert seen["pixels"] > 1_000 and seen["forecast_pixels"] > 1_000
    # The chart's series are the API's groups, per day, with the API's amounts.
    by_model: dict[str, list] = {}
    for group in costs["groups"]:
        by_model.setdefault(group["key"][0], []).append(group["total_cost"])
    assert {d["label"]: [t for t in d["totals"] if t is not None] for d in seen["chart"]["datasets"]} == by_model
    assert len(seen["chart"]["labels"]) == len({group["period"] for group in costs["groups"]}) >= 4
    assert seen["total"] == costs["total_cost"]
    currency, shown_total = seen["total_text"].split()[:2]
    assert (currency, Decimal(shown_total)) == (costs["currency"], Decimal(costs["total_cost"]))
    # Tables: per model, the top models, the budget with its spend, the alert, the fleet.
    top_models = get_json(f"{url}/api/v1/costs?group_by=model&top=5", viewer_token)["groups"]
    assert [(row[0], Decimal(row[2])) for row in seen["tables"]["top-models"]] == [
        (group["key"][0], Decimal(group["total_cost"])) for group in top_models
    ]
    assert sorted(row[0] for row in seen["tables"]["per-model"]) == ["resnet50", "yolov8n"]
    [budget_row] = seen["tables"]["budgets"]
    assert budget_row[0] == "search-monthly" and f"{budgets[0]['percent']}%" in budget_row[4]
    assert Decimal(budget_row[3].split(" / ")[0]) == Decimal(budgets[0]["spent"])
    assert [row[1:4] for row in seen["tables"]["events"]] == [["search-monthly", "threshold", "80"]]
    assert [(row[0], row[1], int(row[4].replace(",", ""))) for row in seen["tables"]["devices"]] == [
        (device["name"], device["site"], device["records"]) for device in devices
    ]
    # Read-only: the only actions are filtering (the chargeback's tags too), the record
    # drill-down and logging out.
    assert sorted(seen["buttons"]) == ["Apply", "Explain", "Log out", "Show"]


def test_grouping_and_time_range_change_what_is_shown(url, viewer_token, tmp_path):
    today = time.strftime("%Y-%m-%d", time.gmtime())
    by_site = get_json(f"{url}/api/v1/costs?group_by=site&granularity=day&top=8", viewer_token)
    by_project = get_json(f"{url}/api/v1/costs?group_by=tag:project&granularity=hour&since={today}&top=8", viewer_token)

    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, viewer_token)
            await browser.wait_for("document.body.dataset.state === 'ready'")
            before = await spend_chart(browser)
            await browser.evaluate(
                "document.getElementById('group').value = 'site';"
                "document.getElementById('filters').requestSubmit(); true"
            )
            await browser.wait_for("document.body.dataset.state === 'ready'")
            sites = await spend_chart(browser)
            await browser.evaluate(
                f"document.getElementById('group').value = 'tag'; document.getElementById('tag-key').value = 'project';"
                f"document.getElementById('granularity').value = 'hour'; document.getElementById('since').value = '{today}';"
                "document.getElementById('filters').requestSubmit(); true"
            )
            await browser.wait_for("document.body.dataset.state === 'ready'")
            projects = await spend_chart(browser)
            total = await browser.evaluate("document.getElementById('spend-total').dataset.totalCost")
            keep(await browser.screenshot(tmp_path / "by-project-today.png"))
            return before, sites, projects, total, browser.console_errors

    before, sites, projects, total, errors = run(scenario())

    assert errors == []
    assert sorted(d["label"] for d in before["datasets"]) == ["resnet50", "yolov8n"]
    assert sorted(d["label"] for d in sites["datasets"]) == sorted({g["key"][0] for g in by_site["groups"]}) == ["edge", "lab"]
    assert sorted(d["label"] for d in projects["datasets"]) == ["ads", "search"]
    assert len(projects["labels"]) == len({group["period"] for group in by_project["groups"]})
    assert len(projects["labels"]) < len(before["labels"]) * 24
    assert total == by_project["total_cost"]


def test_a_bad_token_shows_the_apis_error(url, viewer_token, tmp_path):
    request = urllib.request.Request(f"{url}/api/v1/devices", headers=bearer("not-a-token"))
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    expected = json.load(caught.value)["message"]

    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, "not-a-token")
            shown = await browser.wait_for("document.getElementById('login-error').textContent")
            state = await browser.evaluate(
                "[document.getElementById('main').hidden, sessionStorage.getItem('infermeter.token')]"
            )
            keep(await browser.screenshot(tmp_path / "bad-token.png"))
            return shown, state

    shown, (main_hidden, stored) = run(scenario())

    assert shown == expected == "unknown admin token"
    assert main_hidden is True and stored is None


def test_the_record_drill_down_shows_the_explanation(url, viewer_token, tmp_path):
    stream = f"{1:032x}"
    expected = get_json(f"{url}/api/v1/records/{stream}/3/explain", viewer_token)

    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, viewer_token)
            await browser.wait_for("document.body.dataset.state === 'ready'")
            await browser.evaluate(
                f"document.getElementById('explain-stream').value = '{stream}';"
                "document.getElementById('explain-seq').value = '3';"
                "document.getElementById('explain-form').requestSubmit(); true"
            )
            shown = await browser.wait_for("document.getElementById('explain').textContent")
            await browser.evaluate(
                "document.getElementById('explain-seq').value = '99999';"
                "document.getElementById('explain-form').requestSubmit(); true"
            )
            missing = await browser.wait_for("document.getElementById('explain-error').textContent")
            keep(await browser.screenshot(tmp_path / "explain.png"))
            return shown, missing

    shown, missing = run(scenario())

    assert json.loads(shown) == expected
    assert "99999" in missing or "no record" in missing.lower()
