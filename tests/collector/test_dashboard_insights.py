"""The dashboard's FinOps views in real headless Chromium: chargeback, untagged spend, KPIs, the
models in production with right-sizing, shadow AI, and spend by workload class. Every table
must show what /api/v1 answers, as it answers it. Skipped only when no Chromium is installed."""

from __future__ import annotations

import time

import pytest

from agent.record import MIN_START_UNIX_NS, EnergyShare
from collector import insights_ops, shadow, tag_ops
from collector.kpis import parse_kpi
from collector.store import DeviceInfo
from collector.workload_classes import parse_class
from tests.collector.chromium import Browser
from tests.collector.helpers import ServersThread, make_record
from tests.collector.test_dashboard import (
    BOOK,
    CHROMIUM,
    DAY_NS,
    get_json,
    keep,
    log_in,
    run,
    spend_chart,
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium)")

# (device, model, version, execution provider, tags, CPU ms per record)
WORK = (
    ("edge-a", "resnet50", "1", "CPUExecutionProvider", {"department": "ml", "project": "search"}, 40),
    ("edge-a", "resnet50", "2", "CPUExecutionProvider", {"department": "ml", "project": "search"}, 10),
    ("edge-b", "yolov8n", "1", "CPUExecutionProvider", {"department": "ads", "project": "banner"}, 20),
    ("edge-b", "yolov8n", "1", "CPUExecutionProvider", {"project": "banner"}, 20),  # no department
    ("edge-b", "yolov8n", "1", "CPUExecutionProvider", {"department": "sales", "project": "banner"}, 20),
)


@pytest.fixture
def seeded(store):
    """Two days of records every 30 minutes, a tag policy, a KPI, a workload class, and one
    device's shadow process."""
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    now_ns = time.time_ns()
    info = DeviceInfo(hostname="edge", cpu_cores=4, platform="linux-x86_64", agent_version="0.1.0")
    devices = {name: store.add_device(name) for name in ("edge-a", "edge-b")}
    for index, (name, model, version, provider, tags, cpu_ms) in enumerate(WORK):
        records = [
            make_record(
                seq, model=model, model_version=version, execution_provider=provider, tags=tags,
                start_unix_ns=now_ns - 2 * DAY_NS + seq * 1_800 * 10**9 + index * 10**6,
                cpu_time_ns=cpu_ms * 10**6, duration_ns=cpu_ms * 2 * 10**6,
                energy=(EnergyShare("cpu", cpu_ms * 20_000, "rapl", "cpu-time", 100_000_000, 50),),
            )
            for seq in range(1, 2 * 48)
        ]
        store.ingest(devices[name].device_id, f"{index + 1:032x}", info, records)
    tag_ops.set_policy(store, {"required": {"department": ["ml", "ads"], "project": []}})
    insights_ops.add_kpi(store, parse_kpi({
        "name": "image-search", "unit": "search", "measure": "inferences", "model": "resnet50", "value_per_unit": "0.001",
    }))
    insights_ops.set_class(store, parse_class("resnet50", {"criticality": "customer-facing"}))
    process = shadow.ShadowProcess(
        pid=4242, start_unix_ns=now_ns - 3_600 * 10**9, command="python3", cmdline="python3 hidden.py", uid=1001,
        user="mallory", runtimes=("onnxruntime",), rss_bytes=300 * 2**20, cpu_time_ns=1_800 * 10**9,
        cpu_ns_per_s=500_000_000, gpu_memory_bytes=0, last_record_unix_ns=0,
    )
    shadow.store_report(store, devices["edge-b"].device_id, shadow.ShadowReport(now_ns, 60_000, 1, (process,)),
                        received_unix_ns=now_ns)
    return store


@pytest.fixture
def url(seeded):
    with ServersThread(seeded) as running:
        yield running.http_url


async def table(browser: Browser, table_id: str) -> list[list[str]]:
    return await browser.evaluate(
        f"[...document.querySelectorAll('#{table_id} tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent))"
    )


def trimmed(money: str) -> str:
    """The dashboard's money(): the API's digits, trailing zeros past two places dropped."""
    if "." not in money:
        return money
    whole, fraction = money.split(".")
    kept = fraction.rstrip("0")
    return f"{whole}.{kept.ljust(2, '0')}"


def past_days() -> tuple[str, str]:
    """Since two days ago until today (dates, midnight UTC): whole days, whose idle capacity
    and monthly costs no longer grow, so the page and the test's own calls get the same answers."""
    today = time.time_ns() // DAY_NS * DAY_NS
    return tuple(time.strftime("%Y-%m-%d", time.gmtime(day // 10**9)) for day in (today - 2 * DAY_NS, today))


def test_the_finops_views_show_the_apis_answers(url, viewer_token, tmp_path):
    since, until = past_days()
    window = f"since={since}&until={until}"

    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, viewer_token)
            await browser.wait_for("document.body.dataset.forecast === 'ready'")
            await browser.evaluate(
                f"document.getElementById('since').value = '{since}'; document.getElementById('until').value = '{until}';"
                "document.getElementById('filters').requestSubmit(); true"
            )
            await browser.wait_for("document.body.dataset.forecast === 'ready'")
            tables = {name: await table(browser, name) for name in ("chargeback", "untagged", "kpis", "models", "rightsize", "shadow")}
            saving = await browser.evaluate("document.getElementById('rightsize-note').dataset.saving")
            chosen = await browser.evaluate("document.getElementById('rightsize-model').value")
            shown = await browser.evaluate("document.getElementById('error').textContent")
            keep(await browser.screenshot(tmp_path / "insights.png"))
            return tables, saving, chosen, shown, browser.console_errors

    tables, saving, chosen, shown, errors = run(scenario())

    assert errors == [] and shown == ""
    chargeback = get_json(f"{url}/api/v1/chargeback?{window}", viewer_token)
    assert [row[0] for row in tables["chargeback"]] == [
        " / ".join(line["tags"][key] for key in chargeback["by"]) for line in chargeback["lines"]
    ]
    assert [row[-1] for row in tables["chargeback"]] == [trimmed(line["total_cost"]) for line in chargeback["lines"]]
    # Idle capacity is spread over the lines that used the devices (the book's default policy).
    assert {row[1] for row in tables["chargeback"]} == {"tagged", "untagged"}

    untagged = get_json(f"{url}/api/v1/untagged?{window}", viewer_token)
    assert [row[:2] for row in tables["untagged"]] == [[group["device"], group["model"]] for group in untagged["groups"]]
    assert tables["untagged"] and all("department" in row[4] for row in tables["untagged"])
    assert any("sales" in row[4] for row in tables["untagged"])  # the value the policy does not allow

    kpis = get_json(f"{url}/api/v1/reports/kpis?{window}", viewer_token)["kpis"]
    assert [row[:4] for row in tables["kpis"]] == [
        [kpi["name"], kpi["unit"], f"{kpi['total']['units']:,}", trimmed(kpi["total"]["cost"])] for kpi in kpis
    ]
    by_model = get_json(f"{url}/api/v1/costs?group_by=model&{window}", viewer_token)["groups"]
    resnet_inferences = next(group["inferences"] for group in by_model if group["key"] == ["resnet50"])
    assert tables["kpis"][0][2] == f"{resnet_inferences:,}"  # one search per resnet50 inference, both versions

    models = get_json(f"{url}/api/v1/models", viewer_token)["models"]
    assert [row[0] for row in tables["models"]] == [model["model"] for model in models]
    resnet = next(row for row in tables["models"] if row[0] == "resnet50")
    assert resnet[2] == "1, 2" or set(resnet[2].split(", ")) == {"1", "2"}

    right = get_json(f"{url}/api/v1/reports/right-sizing?model=resnet50&{window}", viewer_token)
    assert chosen == "resnet50" and saving == right["monthly_saving"]
    assert [row[0] for row in tables["rightsize"]] == [variant["version"] for variant in right["variants"]]
    assert [row[2] for row in tables["rightsize"]].count("cheapest") == 1

    processes = get_json(f"{url}/api/v1/shadow-processes", viewer_token)["processes"]
    assert [row[:4] for row in tables["shadow"]] == [["edge-b", "4242", "mallory", "python3"]]
    assert tables["shadow"][0][-1] == trimmed(processes[0]["estimated_cost_per_hour"])


def test_spend_groups_by_workload_class(url, viewer_token, tmp_path):
    async def scenario():
        async with Browser(CHROMIUM) as browser:
            await log_in(browser, url, viewer_token)
            await browser.wait_for("document.body.dataset.state === 'ready'")
            await browser.evaluate(
                "document.getElementById('group').value = 'class:criticality';"
                "document.getElementById('filters').requestSubmit(); true"
            )
            await browser.wait_for(
                "document.body.dataset.state === 'ready' && "
                "window.infermeterCharts.spend.data.datasets.some((d) => d.label === 'customer-facing')"
            )
            keep(await browser.screenshot(tmp_path / "by-class.png"))
            return await spend_chart(browser), browser.console_errors

    chart, errors = run(scenario())

    assert errors == []
    assert {dataset["label"] for dataset in chart["datasets"]} == {"customer-facing", "unclassified"}
    api = get_json(f"{url}/api/v1/costs?group_by=class:criticality&granularity=day&top=8", viewer_token)
    assert sorted({group["key"][0] for group in api["groups"]}) == ["customer-facing", "unclassified"]
