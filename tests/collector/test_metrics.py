"""The collector's /metrics: records pushed through the real Ingest service, scraped over HTTP
from the real servers and parsed as Prometheus text."""

from __future__ import annotations

import json
import re
import urllib.request
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from infermeter.v1 import ingest_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import MAX_SPEND_SERIES, OTHER
from tests.collector.helpers import (
    START_UNIX_NS,
    ServersThread,
    bearer_metadata,
    make_record,
    push_request,
)

BOOK = {"currency": "USD", "cloud": {"default": {"hourly": "3.6", "cpu_cores": 1}}, "energy": {"default": {"kwh": "3.6"}}}
DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "infermeter.json"


def scrape(servers) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape of /metrics."""
    with urllib.request.urlopen(f"{servers.http_url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def push(channel, token: str, records, **fields):
    return ingest_pb2_grpc.IngestStub(channel).Push(push_request(records, **fields), metadata=bearer_metadata(token))


def test_records_are_counted_once_and_spend_matches_the_report(store, servers, channel, device):
    store.add_price_book(BOOK, effective_from_unix_ns=START_UNIX_NS)
    records = [make_record(seq, model="bert" if seq % 3 else "resnet50") for seq in range(1, 31)]
    push(channel, device.token, records[:20])
    push(channel, device.token, records[:20])  # a replay: all duplicates
    push(channel, device.token, records[10:])  # half old, half new
    push(channel, device.token, [])  # a heartbeat
    samples = scrape(servers)
    assert value(samples, "infermeter_ingest_records_total", result="inserted") == 30
    assert value(samples, "infermeter_ingest_records_total", result="duplicate") == 30
    assert value(samples, "infermeter_ingest_pushes_total") == 4
    assert value(samples, "infermeter_ingest_batches_total") == 3
    assert value(samples, "infermeter_ingest_seconds_count") == 3
    # Two pushes inserted rows; their newest record started at START + 30 ms, ages ago.
    assert value(samples, "infermeter_pricing_lag_seconds_count") == 2
    assert value(samples, "infermeter_pricing_lag_seconds_bucket", le="1.0") == 0
    report = store.costs(group_by=("model",), period_costs=False)
    assert report.total_cost > 0
    spend = {model: value(samples, "infermeter_spend_total", model=model, device="edge-1") for model in ("bert", "resnet50")}
    assert sum(spend.values()) == pytest.approx(float(report.total_cost), rel=1e-9)
    for group in report.groups:
        assert spend[group.key[0]] == pytest.approx(float(group.cost), rel=1e-9)
    energy_j = sum(value(samples, "infermeter_energy_joules_total", model=m, device="edge-1") for m in ("bert", "resnet50"))
    assert energy_j == pytest.approx(30 * 5_000 / 1e6)
    assert value(samples, "infermeter_devices", state="live") == 1
    assert 0 <= value(samples, "infermeter_device_last_seen_age_seconds", device="edge-1") < 60


def test_spend_series_are_capped(store, servers, channel, device):
    models = MAX_SPEND_SERIES + 25
    push(channel, device.token, [make_record(seq, model=f"m{seq:04d}") for seq in range(1, models + 1)])
    samples = scrape(servers)
    series = {labels for name, labels in samples if name == "infermeter_spend_total"}
    assert len(series) == MAX_SPEND_SERIES + 1
    assert (("device", OTHER), ("model", OTHER)) in series
    other_j = value(samples, "infermeter_energy_joules_total", model=OTHER, device=OTHER)
    assert other_j == pytest.approx(25 * 5_000 / 1e6)


def test_refused_pushes_are_counted_by_code(store, servers, channel, device):
    with pytest.raises(grpc.RpcError):
        push(channel, "not-a-token", [make_record(1)])
    with pytest.raises(grpc.RpcError):
        push(channel, device.token, [make_record(2), make_record(1)])  # seqs out of order
    samples = scrape(servers)
    assert value(samples, "infermeter_ingest_refused_total", code="UNAUTHENTICATED") == 1
    assert value(samples, "infermeter_ingest_refused_total", code="INVALID_ARGUMENT") == 1
    assert value(samples, "infermeter_ingest_records_total", result="inserted") == 0


def test_budgets_and_devices_are_read_at_scrape_time(store, servers, channel, device):
    store.add_price_book(BOOK, effective_from_unix_ns=START_UNIX_NS)
    store.add_budget({"name": "fleet-day", "scope": "global", "period": "day", "amount": "0.000001"})
    store.revoke_device(store.add_device("old-box").device_id)
    samples = scrape(servers)
    assert value(samples, "infermeter_budget_spent_ratio", budget="fleet-day") == 0
    assert value(samples, "infermeter_budget_state", budget="fleet-day", state="ok") == 1
    assert value(samples, "infermeter_devices", state="revoked") == 1
    assert value(samples, "infermeter_devices", state="live") == 1


def test_each_server_has_its_own_registry(store, servers, channel, device):
    push(channel, device.token, [make_record(1)])
    with ServersThread(store) as other:
        assert value(scrape(other), "infermeter_ingest_records_total", result="inserted") == 0
    assert value(scrape(servers), "infermeter_ingest_records_total", result="inserted") == 1


def test_the_dashboard_queries_only_exported_metrics(store, servers, channel, device):
    """Every PromQL expression of the Grafana dashboard names metrics that the collector (from
    a live scrape, with a push and a budget so that every family has samples) or the agent
    (its documented names: tests/agent/test_daemon_metrics.py checks those against a live
    scrape) exports."""
    from agent.metrics import METRIC_NAMES as AGENT_NAMES

    store.add_budget({"name": "fleet-day", "scope": "global", "period": "day", "amount": "1"})
    push(channel, device.token, [make_record(1)])
    with pytest.raises(grpc.RpcError):
        push(channel, "not-a-token", [make_record(2)])

    with urllib.request.urlopen(f"{servers.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    exported = set(AGENT_NAMES)
    for family in text_string_to_metric_families(text):
        exported.update(sample.name for sample in family.samples)
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["templating"]["list"][0]["type"] == "datasource"
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(expressions) >= 8
    for expr in expressions:
        names = set(re.findall(r"\binfermeter_[a-z_]+\b", expr))
        assert names, expr
        assert names <= exported, f"{expr}: {names - exported} not exported"


def test_money_is_in_currency_units(store, servers, channel, device):
    store.add_price_book(BOOK, effective_from_unix_ns=START_UNIX_NS)
    push(channel, device.token, [make_record(1, cpu_time_ns=1_000_000_000)])
    spend = value(scrape(servers), "infermeter_spend_total", model="resnet50", device="edge-1")
    cost = store.costs(period_costs=False).total_cost
    assert Decimal(repr(spend)).quantize(Decimal("0.000001")) == cost.quantize(Decimal("0.000001"))
