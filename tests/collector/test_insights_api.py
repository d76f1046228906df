"""The FinOps insights over every surface, on the seeded fleet of test_insights: the HTTP API,
gRPC Admin and the CLI (--json and its tables) give the same answers; reads take a viewer
token, writes an admin token; bad input is a 400 / INVALID_ARGUMENT naming the field and
changes nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from infermeter.v1 import admin_pb2, admin_pb2_grpc

from collector import tokens
from collector.store import Store
from tests.collector.helpers import (
    Clock,
    ServersThread,
    bearer,
    bearer_metadata,
    run_cli,
)
from tests.collector.test_insights import NOVEMBER, NOW, seed

NOVEMBER_QUERY = "since=2026-11-01&until=2026-12-01"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    path = tmp_path_factory.mktemp("insights-api") / "collector.db"
    with Store.open(f"sqlite:///{path}", clock=Clock(NOW)) as store:
        seed(store)
        admin = store.add_admin_token(tokens.ADMIN, name="operator").token
        viewer = store.add_admin_token(tokens.VIEWER, name="dashboard").token
        with ServersThread(store) as servers:
            yield store, servers, admin, viewer


def http(servers, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict | None]:
    headers = bearer(token) | ({"Content-Type": "application/json"} if body is not None else {})
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(servers.http_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def admin_stub(servers):
    channel = grpc.insecure_channel(servers.grpc_address)
    return channel, admin_pb2_grpc.AdminStub(channel)


def cli(capsys, store, *argv):
    return run_cli(capsys, *argv, "--db", str(store.engine.url))


def test_workload_classes_over_http_grpc_and_cli(fleet, capsys):
    store, servers, admin, viewer = fleet
    status, body = http(servers, "PUT", "/api/v1/workload-classes/fraud", viewer, {"criticality": "internal"})
    assert (status, body["code"]) == (403, "forbidden")
    status, body = http(servers, "PUT", "/api/v1/workload-classes/fraud", admin, {"criticality": "vip"})
    assert (status, body["field"]) == (400, "criticality")
    for method, request_body in (("PUT", {"criticality": "internal"}), ("DELETE", None)):
        status, body = http(servers, method, "/api/v1/workload-classes/.fraud", admin, request_body)
        assert (status, body["field"]) == (400, "model"), method
    status, body = http(servers, "PUT", "/api/v1/workload-classes/fraud", admin,
                        {"criticality": "customer-facing", "latency": "real-time"})
    assert status == 200
    assert body == {"model": "fraud", "criticality": "customer-facing", "latency": "real-time", "scaling": None,
                    "updated_unix_ns": NOW}
    channel, stub = admin_stub(servers)
    with channel:
        reply = stub.SetWorkloadClass(admin_pb2.SetWorkloadClassRequest(model="recsys", scaling="elastic"),
                                      metadata=bearer_metadata(admin), timeout=30)
        assert json.loads(reply.class_json)["scaling"] == "elastic"
        with pytest.raises(grpc.RpcError) as raised:
            stub.SetWorkloadClass(admin_pb2.SetWorkloadClassRequest(model="recsys"), metadata=bearer_metadata(admin),
                                  timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        listed = json.loads(stub.ListWorkloadClasses(admin_pb2.ListWorkloadClassesRequest(),
                                                     metadata=bearer_metadata(viewer), timeout=30).answer_json)
    status, body = http(servers, "GET", "/api/v1/workload-classes", viewer)
    assert status == 200 and body == listed
    assert [row["model"] for row in body["classes"]] == ["fraud", "recsys"]
    code, out, err = cli(capsys, store, "admin", "class", "list", "--json")
    assert code == 0 and json.loads(out) == listed
    code, out, err = cli(capsys, store, "admin", "class", "set", "recsys", "--latency", "batch")
    assert code == 0 and "latency batch" in out
    status, body = http(servers, "GET", "/api/v1/costs?group_by=class:latency&" + NOVEMBER_QUERY, viewer)
    assert status == 200
    assert {tuple(group["key"]): group["list_cost"] for group in body["groups"]} == {
        ("real-time",): "0.000000032000", ("batch",): "0.000000014000"}
    code, out, err = cli(capsys, store, "admin", "class", "delete", "recsys")
    assert code == 0
    code, out, err = cli(capsys, store, "admin", "class", "delete", "recsys")
    assert code == 1 and "no workload classes" in err
    status, body = http(servers, "DELETE", "/api/v1/workload-classes/fraud", admin)
    assert status == 204
    status, body = http(servers, "DELETE", "/api/v1/workload-classes/fraud", admin)
    assert (status, body["code"]) == (404, "not_found")


def test_kpis_over_http_grpc_and_cli(fleet, capsys):
    store, servers, admin, viewer = fleet
    fraud = {"name": "fraud-checks", "unit": "fraud check", "model": "fraud", "value_per_unit": "0.5"}
    status, body = http(servers, "POST", "/api/v1/kpis", admin, {**fraud, "measure": "watts"})
    assert (status, body["field"]) == (400, "measure")
    status, body = http(servers, "POST", "/api/v1/kpis", admin, fraud)
    assert status == 201 and body["value_per_unit"] == "0.500000000000"
    status, body = http(servers, "POST", "/api/v1/kpis", admin, fraud)
    assert (status, body["code"]) == (409, "conflict")
    code, out, err = cli(capsys, store, "admin", "kpi", "add", "recos", "--unit", "recommendation", "--tag",
                         "feature=reco", "--measure", "tokens", "--value-per-unit", "0.000000001")
    assert code == 0, err
    status, report = http(servers, "GET", "/api/v1/reports/kpis?granularity=month&" + NOVEMBER_QUERY, viewer)
    assert status == 200
    totals = {kpi["name"]: kpi["total"] for kpi in report["kpis"]}
    assert totals["fraud-checks"]["cost_per_unit"] == "2.500000002667"
    assert totals["recos"]["roi"] == "0.000000166000"
    channel, stub = admin_stub(servers)
    with channel:
        reply = stub.GetKpiReport(admin_pb2.GetKpiReportRequest(
            since_unix_ns=NOVEMBER[0], until_unix_ns=NOVEMBER[1], granularity="month"),
            metadata=bearer_metadata(viewer), timeout=30)
        assert json.loads(reply.answer_json) == report
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetKpiReport(admin_pb2.GetKpiReportRequest(since_unix_ns=NOVEMBER[0] + 1),
                              metadata=bearer_metadata(viewer), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "since" in raised.value.details()
        with pytest.raises(grpc.RpcError) as raised:
            stub.DeleteKpi(admin_pb2.DeleteKpiRequest(name="recos"), metadata=bearer_metadata(viewer), timeout=30)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        kpi_list = json.loads(stub.ListKpis(admin_pb2.ListKpisRequest(), metadata=bearer_metadata(viewer)).answer_json)
        assert [kpi["name"] for kpi in kpi_list["kpis"]] == ["fraud-checks", "recos"]
    # The CLI's clock is the machine's, and monthly fixed costs accrue up to now: compare the
    # units and the values, which do not depend on it.
    code, out, err = cli(capsys, store, "report", "kpis", "--since", "2026-11-01", "--until", "2026-12-01", "--json")
    assert code == 0
    assert [(kpi["name"], kpi["total"]["units"], kpi["total"]["value"]) for kpi in json.loads(out)["kpis"]] == [
        (kpi["name"], kpi["total"]["units"], kpi["total"]["value"]) for kpi in report["kpis"]]
    code, out, err = cli(capsys, store, "report", "kpis", "--since", "2026-11-01", "--until", "2026-12-01")
    assert code == 0
    assert out.splitlines()[0].split() == ["kpi", "unit", "period", "units", "cost", "per", "unit", "value", "roi"]
    assert ["recos", "recommendation", "total", "180", "0.000000014000", "0.000000000078", "0.000000180000",
            "0.000000166000"] in [line.split() for line in out.splitlines()]
    code, out, err = cli(capsys, store, "report", "kpis", "--since", "2026-11-01T00:30:00Z")
    assert code == 2 and "whole UTC hour" in err
    status, body = http(servers, "GET", "/api/v1/reports/kpis?granularity=week", viewer)
    assert (status, body["field"]) == (400, "granularity")
    for name in ("fraud-checks", "recos"):
        assert http(servers, "DELETE", f"/api/v1/kpis/{name}", admin)[0] == 204
    assert http(servers, "GET", "/api/v1/kpis", viewer) == (200, {"kpis": []})


def test_registry_and_right_sizing_over_http_grpc_and_cli(fleet, capsys):
    store, servers, _, viewer = fleet
    status, registry = http(servers, "GET", "/api/v1/models", viewer)
    assert status == 200
    fraud = registry["models"][0]
    assert (fraud["model"], fraud["sprawl"], fraud["outdated_in_production"]) == ("fraud", True, ["1"])
    channel, stub = admin_stub(servers)
    with channel:
        reply = stub.GetModelRegistry(admin_pb2.GetModelRegistryRequest(), metadata=bearer_metadata(viewer), timeout=30)
        assert json.loads(reply.answer_json) == registry
        sizing = json.loads(stub.GetRightSizing(admin_pb2.GetRightSizingRequest(
            model="fraud", since_unix_ns=NOVEMBER[0], until_unix_ns=NOVEMBER[1]),
            metadata=bearer_metadata(viewer), timeout=30).answer_json)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetRightSizing(admin_pb2.GetRightSizingRequest(), metadata=bearer_metadata(viewer), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model" in raised.value.details()
    assert sizing["monthly_saving"] == "0.000000020000"
    status, body = http(servers, "GET", "/api/v1/reports/right-sizing?model=fraud&" + NOVEMBER_QUERY, viewer)
    assert (status, body) == (200, sizing)
    status, body = http(servers, "GET", "/api/v1/models?active_days=0", viewer)
    assert (status, body["field"]) == (400, "active_days")
    # The CLI's clock is the machine's: compare what does not depend on it.
    code, out, _ = cli(capsys, store, "report", "models", "--json")
    assert code == 0
    assert [(m["model"], m["cost"], m["devices"]) for m in json.loads(out)["models"]] == [
        (m["model"], m["cost"], m["devices"]) for m in registry["models"]]
    code, out, _ = cli(capsys, store, "report", "models")
    assert code == 0 and "fraud   2-int8   onnxruntime  CPUExecutionProvider" in out
    code, out, _ = cli(capsys, store, "report", "right-size", "fraud", "--since", "2026-11-01", "--until",
                         "2026-12-01", "--json")
    assert code == 0 and json.loads(out) == sizing
    code, out, _ = cli(capsys, store, "report", "right-size", "fraud", "--since", "2026-11-01", "--until", "2026-12-01")
    assert code == 0
    assert "0.000000001000" in out.splitlines()[1] and "(cheapest)" in out.splitlines()[1]
    assert "saves 0.000000020000 USD a month" in out
