"""infermeter.v1.Admin, health checking and reflection over a real channel. Admin calls go with
a viewer token (reads); who may call what is tested in test_auth.py, rotation in
test_rotation.py."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2_grpc

from tests.collector.helpers import bearer, bearer_metadata, make_record, push_request


@pytest.fixture
def admin(channel):
    return admin_pb2_grpc.AdminStub(channel)


@pytest.fixture
def viewer(viewer_token):
    """The metadata of a call made with a viewer token."""
    return bearer_metadata(viewer_token)


@pytest.fixture
def pushed(store, channel):
    """Two devices; edge-1 pushed three records of two models."""
    device = store.add_device("edge-1", profile="jetson-orin", site="lab")
    store.add_device("edge-2")
    records = [make_record(1), make_record(2), make_record(3, model="bert", tags={"project": "ads"})]
    ingest_pb2_grpc.IngestStub(channel).Push(
        push_request(records), metadata=bearer_metadata(device.token), timeout=10
    )
    return device


def test_list_devices(admin, viewer, pushed):
    reply = admin.ListDevices(admin_pb2.ListDevicesRequest(), metadata=viewer, timeout=10)
    devices = {d.name: d for d in reply.devices}

    assert set(devices) == {"edge-1", "edge-2"}
    edge1 = devices["edge-1"]
    assert (edge1.device_id, edge1.profile, edge1.site, edge1.revoked) == (pushed.device_id, "jetson-orin", "lab", False)
    assert edge1.created_unix_ns > 0 and edge1.last_seen_unix_ns >= edge1.created_unix_ns
    assert (edge1.records, edge1.hostname, edge1.cpu_cores) == (3, "edge-1", 4)
    assert edge1.platform and edge1.agent_version
    assert not edge1.rotating
    assert (devices["edge-2"].last_seen_unix_ns, devices["edge-2"].records) == (0, 0)  # never pushed


def test_get_costs_says_what_the_http_api_says(admin, viewer, viewer_token, pushed, servers):
    reply = admin.GetCosts(admin_pb2.GetCostsRequest(group_by=["model", "tag:project"]), metadata=viewer, timeout=10)
    request = urllib.request.Request(f"{servers.http_url}/api/v1/costs?group_by=model,tag:project", headers=bearer(viewer_token))
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)

    assert list(reply.group_by) == http["group_by"] == ["model", "tag:project"]
    assert (reply.currency, reply.total_cost, reply.total_inferences, reply.total_records) == (
        http["currency"], http["total_cost"], http["total_inferences"], http["total_records"]
    )
    assert [
        [list(g.key), g.inferences, g.records, g.cost, g.compute_cost, g.energy_cost, g.energy_uj, g.duration_ns, g.cpu_time_ns]
        for g in reply.groups
    ] == [
        [g["key"], g["inferences"], g["records"], g["cost"], g["compute_cost"], g["energy_cost"], g["energy_uj"],
         g["duration_ns"], g["cpu_time_ns"]]
        for g in http["groups"]
    ]
    assert sorted(tuple(g.key) for g in reply.groups) == [("bert", "ads"), ("resnet50", "search")]


def test_get_costs_per_period_and_top_n_says_what_the_http_api_says(admin, viewer, viewer_token, pushed, servers):
    reply = admin.GetCosts(
        admin_pb2.GetCostsRequest(group_by=["model"], granularity="hour", top=1), metadata=viewer, timeout=10
    )
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/costs?group_by=model&granularity=hour&top=1", headers=bearer(viewer_token)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)

    assert (reply.granularity, reply.top) == (http["granularity"], http["top"]) == ("hour", 1)
    assert [(list(g.key), g.period, g.other, g.records, g.cost) for g in reply.groups] == [
        (g["key"], g["period"], g["other"], g["records"], g["cost"]) for g in http["groups"]
    ] == [(["resnet50"], "2026-11-18T11:00:00Z", False, 2, reply.groups[0].cost),
          ([], "2026-11-18T11:00:00Z", True, 1, reply.groups[1].cost)]


def test_get_costs_without_granularity_or_top_leaves_their_fields_empty(admin, viewer, pushed):
    reply = admin.GetCosts(admin_pb2.GetCostsRequest(group_by=["model"]), metadata=viewer, timeout=10)

    assert (reply.granularity, reply.top) == ("", 0)
    assert [(g.period, g.other) for g in reply.groups] == [("", False), ("", False)]


def test_get_costs_time_range_zero_is_unbounded(admin, viewer, pushed):
    unbounded = admin.GetCosts(admin_pb2.GetCostsRequest(), metadata=viewer, timeout=10)
    after_all = admin.GetCosts(
        admin_pb2.GetCostsRequest(since_unix_ns=make_record(3).start_unix_ns + 1), metadata=viewer, timeout=10
    )

    assert unbounded.total_inferences == 3
    assert after_all.total_inferences == 0


@pytest.mark.parametrize(
    "request_",
    [
        admin_pb2.GetCostsRequest(group_by=["colour"]),
        admin_pb2.GetCostsRequest(group_by=["tag:"]),
        admin_pb2.GetCostsRequest(since_unix_ns=2_000_000_000 * 10**9, until_unix_ns=1_000_000_000 * 10**9),
        admin_pb2.GetCostsRequest(granularity="week"),
        admin_pb2.GetCostsRequest(top=1_000_001),
    ],
    ids=["unknown-key", "empty-tag", "since-after-until", "unknown-granularity", "top-too-large"],
)
def test_get_costs_bad_query_is_invalid_argument(admin, viewer, request_):
    with pytest.raises(grpc.RpcError) as caught:
        admin.GetCosts(request_, metadata=viewer, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_garbage_bytes_to_admin_are_invalid_argument(channel, viewer):
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/infermeter.v1.Admin/GetCosts")(b"\xff\xff\xff", metadata=viewer, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_garbage_bytes_without_a_token_are_refused_before_they_are_read(channel):
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/infermeter.v1.Admin/GetCosts")(b"\xff\xff\xff", timeout=10)

    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("method", ["RotateDevice", "RevokeDevice"])
@pytest.mark.parametrize("name, code", [
    ("edge-9", grpc.StatusCode.NOT_FOUND),
    ("../etc", grpc.StatusCode.INVALID_ARGUMENT),
    ("", grpc.StatusCode.INVALID_ARGUMENT),
    ("x" * 65, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_a_device_that_is_not_there_changes_nothing(admin, admin_token, store, method, name, code):
    store.add_device("edge-1")
    request = getattr(admin_pb2, f"{method}Request")(name=name)

    with pytest.raises(grpc.RpcError) as caught:
        getattr(admin, method)(request, metadata=bearer_metadata(admin_token), timeout=10)

    assert caught.value.code() is code
    assert [(d.revoked, d.rotating) for d in store.list_devices()] == [(False, False)]


@pytest.mark.parametrize("service", ["", "infermeter.v1.Ingest", "infermeter.v1.Admin"])
def test_health_says_serving(channel, service):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))

    names = {service.name for service in replies[0].list_services_response.service}
    assert {"infermeter.v1.Ingest", "infermeter.v1.Admin", "grpc.health.v1.Health"} <= names


def test_reflection_describes_push(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="infermeter.v1.Ingest")

    replies = list(stub.ServerReflectionInfo(iter([request]), timeout=10))

    assert replies[0].file_descriptor_response.file_descriptor_proto
