"""infermeter.v1.Admin, health checking and reflection over a real channel. Admin calls go with
a viewer token (reads); who may call what is tested in test_auth.py, rotation in
test_rotation.py."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2_grpc

from collector import tokens
from collector.store import Store
from tests.collector.helpers import (
    START_UNIX_NS,
    STREAM_ID,
    ServersThread,
    bearer,
    bearer_metadata,
    make_record,
    push_request,
)


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


# The end of the records' hour: reports up to it share the device's idle capacity then, whatever
# the time the test runs at.
UNTIL_UNIX_NS = START_UNIX_NS - START_UNIX_NS % (3_600 * 10**9) + 3_600 * 10**9
UNTIL = "2026-11-18T12:00:00Z"


def test_get_costs_says_what_the_http_api_says(admin, viewer, viewer_token, pushed, servers):
    reply = admin.GetCosts(
        admin_pb2.GetCostsRequest(group_by=["model", "tag:project"], until_unix_ns=UNTIL_UNIX_NS), metadata=viewer,
        timeout=10,
    )
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/costs?group_by=model,tag:project&until={UNTIL}", headers=bearer(viewer_token)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)

    assert list(reply.group_by) == http["group_by"] == ["model", "tag:project"]
    assert (reply.currency, reply.total_cost, reply.total_inferences, reply.total_records, reply.idle_cost) == (
        http["currency"], http["total_cost"], http["total_inferences"], http["total_records"], http["idle_cost"]
    )
    assert [
        [list(g.key), g.inferences, g.records, g.cost, g.compute_cost, g.energy_cost, g.energy_uj, g.duration_ns,
         g.cpu_time_ns, g.idle_cost, g.total_cost]
        for g in reply.groups
    ] == [
        [g["key"], g["inferences"], g["records"], g["cost"], g["compute_cost"], g["energy_cost"], g["energy_uj"],
         g["duration_ns"], g["cpu_time_ns"], g["idle_cost"], g["total_cost"]]
        for g in http["groups"]
    ]
    assert sorted(tuple(g.key) for g in reply.groups) == [("bert", "ads"), ("resnet50", "search")]


def test_get_costs_per_period_and_top_n_says_what_the_http_api_says(admin, viewer, viewer_token, pushed, servers):
    reply = admin.GetCosts(
        admin_pb2.GetCostsRequest(group_by=["model"], granularity="hour", top=1, until_unix_ns=UNTIL_UNIX_NS),
        metadata=viewer, timeout=10,
    )
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/costs?group_by=model&granularity=hour&top=1&until={UNTIL}",
        headers=bearer(viewer_token),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)

    assert (reply.granularity, reply.top) == (http["granularity"], http["top"]) == ("hour", 1)
    assert [(list(g.key), g.period, g.other, g.records, g.cost) for g in reply.groups] == [
        (g["key"], g["period"], g["other"], g["records"], g["cost"]) for g in http["groups"]
    ] == [(["resnet50"], "2026-11-18T11:00:00Z", False, 2, reply.groups[0].cost),
          ([], "2026-11-18T11:00:00Z", True, 1, reply.groups[1].cost)]


def test_get_costs_without_granularity_or_top_leaves_their_fields_empty(admin, viewer, pushed):
    reply = admin.GetCosts(
        admin_pb2.GetCostsRequest(group_by=["model"], until_unix_ns=UNTIL_UNIX_NS), metadata=viewer, timeout=10
    )

    assert (reply.granularity, reply.top) == ("", 0)
    assert [(g.period, g.other) for g in reply.groups] == [("", False), ("", False)]


def test_get_costs_usage_only_leaves_out_the_period_costs(admin, viewer, pushed):
    both = admin.GetCosts(admin_pb2.GetCostsRequest(until_unix_ns=UNTIL_UNIX_NS), metadata=viewer, timeout=10)
    usage = admin.GetCosts(
        admin_pb2.GetCostsRequest(until_unix_ns=UNTIL_UNIX_NS, usage_only=True), metadata=viewer, timeout=10
    )

    assert Decimal(both.idle_cost) > 0 and Decimal(usage.idle_cost) == 0
    assert usage.total_cost == both.usage_cost


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


# The operations beyond reading: each does what the same-named HTTP route does.


@pytest.fixture
def operator(admin_token):
    """The metadata of a call made with an admin token."""
    return bearer_metadata(admin_token)


BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "900.00", "residual": "0", "lifetime_years": 3, "upkeep_per_year": "90.00"}},
    "energy": {"default": {"kwh": "0.20", "pue": "1.1"}},
}


def test_add_device_and_get_it(admin, operator, viewer, store):
    added = admin.AddDevice(admin_pb2.AddDeviceRequest(name="edge-7", profile="jetson-orin"), metadata=operator, timeout=10)

    assert (added.device.name, added.device.profile, added.device.site) == ("edge-7", "jetson-orin", "default")
    assert store.authenticate(added.token).device_id == added.device.device_id
    assert admin.GetDevice(admin_pb2.GetDeviceRequest(name="edge-7"), metadata=viewer, timeout=10) == added.device


@pytest.mark.parametrize("request_, code", [
    (admin_pb2.AddDeviceRequest(name="edge-1"), grpc.StatusCode.ALREADY_EXISTS),
    (admin_pb2.AddDeviceRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.AddDeviceRequest(name="edge 7"), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.AddDeviceRequest(name="edge-7", site="../lab"), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.AddDeviceRequest(name="x" * 65), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["taken", "empty", "space", "bad-site", "too-long"])
def test_add_device_refused_changes_nothing(admin, operator, store, request_, code):
    store.add_device("edge-1")

    with pytest.raises(grpc.RpcError) as caught:
        admin.AddDevice(request_, metadata=operator, timeout=10)

    assert caught.value.code() is code
    assert [d.name for d in store.list_devices()] == ["edge-1"]


@pytest.mark.parametrize("name, code", [("edge-9", grpc.StatusCode.NOT_FOUND), ("../x", grpc.StatusCode.INVALID_ARGUMENT)])
def test_get_device_not_there(admin, viewer, name, code):
    with pytest.raises(grpc.RpcError) as caught:
        admin.GetDevice(admin_pb2.GetDeviceRequest(name=name), metadata=viewer, timeout=10)

    assert caught.value.code() is code


def test_price_books_create_list_and_get(admin, operator, viewer, store):
    created = admin.CreatePriceBook(
        admin_pb2.CreatePriceBookRequest(effective_from_unix_ns=1_767_225_600 * 10**9, document_json=json.dumps(BOOK)),
        metadata=operator, timeout=10,
    )
    listed = admin.ListPriceBooks(admin_pb2.ListPriceBooksRequest(), metadata=viewer, timeout=10)
    shown = admin.GetPriceBook(admin_pb2.GetPriceBookRequest(id=created.id), metadata=viewer, timeout=10)

    assert (created.effective_from_unix_ns, created.currency) == (1_767_225_600 * 10**9, "USD")
    assert [book.id for book in listed.price_books] == [1, created.id]
    assert listed.price_books[-1] == shown.price_book == created
    assert json.loads(shown.document_json) == BOOK
    assert [row.document for row in store.list_price_books()][-1] == BOOK


@pytest.mark.parametrize("effective_from, document, field", [
    (1_767_225_600 * 10**9, json.dumps({**BOOK, "currency": "usd"}), "document_json.currency"),
    (1_767_225_600 * 10**9, json.dumps({**BOOK, "energy": {"default": {"kwh": 0.2}}}), "document_json.energy.default.kwh"),
    (1_767_225_600 * 10**9, "[]", "document_json"),
    (1_767_225_600 * 10**9, "", "document_json"),
    (1_767_225_600 * 10**9, '{"currency": NaN}', "document_json"),
    (1_767_225_600 * 10**9, "[" * 10_000 + "]" * 10_000, "document_json"),
    (0, json.dumps(BOOK), "effective_from_unix_ns"),
    (-1, json.dumps(BOOK), "effective_from_unix_ns"),
    (4_102_444_800 * 10**9, json.dumps(BOOK), "effective_from_unix_ns"),
])
def test_a_bad_price_book_is_invalid_argument_naming_the_field(admin, operator, store, effective_from, document, field):
    with pytest.raises(grpc.RpcError) as caught:
        admin.CreatePriceBook(
            admin_pb2.CreatePriceBookRequest(effective_from_unix_ns=effective_from, document_json=document),
            metadata=operator, timeout=10,
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:"), caught.value.details()
    assert len(store.list_price_books()) == 1


@pytest.mark.parametrize("book_id, code", [(2, grpc.StatusCode.NOT_FOUND), (0, grpc.StatusCode.INVALID_ARGUMENT),
                                           (-5, grpc.StatusCode.INVALID_ARGUMENT)])
def test_get_price_book_not_there(admin, viewer, book_id, code):
    with pytest.raises(grpc.RpcError) as caught:
        admin.GetPriceBook(admin_pb2.GetPriceBookRequest(id=book_id), metadata=viewer, timeout=10)

    assert caught.value.code() is code


def test_explain_record_says_what_the_http_api_says(admin, viewer, viewer_token, pushed, servers, store):
    reply = admin.ExplainRecord(admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=3, device="edge-1"),
                                metadata=viewer, timeout=10)
    request = urllib.request.Request(f"{servers.http_url}/api/v1/records/{STREAM_ID}/3/explain", headers=bearer(viewer_token))
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)

    assert json.loads(reply.explanation_json) == http == store.explain_record(STREAM_ID, 3)


@pytest.mark.parametrize("request_, code", [
    (admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=9), grpc.StatusCode.NOT_FOUND),
    (admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=1, device="edge-2"), grpc.StatusCode.NOT_FOUND),
    (admin_pb2.ExplainRecordRequest(stream_id="", seq=1), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.ExplainRecordRequest(stream_id="a\x00b", seq=1), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=2**63), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=1, device="../x"), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["unknown-seq", "other-device", "empty-stream", "control-char", "seq-too-large", "bad-device"])
def test_explain_record_not_there(admin, viewer, pushed, request_, code):
    with pytest.raises(grpc.RpcError) as caught:
        admin.ExplainRecord(request_, metadata=viewer, timeout=10)

    assert caught.value.code() is code


def test_get_costs_carries_every_field_of_the_http_report(admin, viewer, viewer_token, pushed, servers):
    """Each field of the HTTP API's cost report (and its groups) has its namesake in the reply
    with the same value; money fields the report leaves out are "" in the reply. (A closed
    range: costs of time, such as idle capacity, grow with an open one.)"""
    since, until = 1_795_000_000 * 10**9 - 3600 * 10**9, 1_795_000_000 * 10**9 + 3600 * 10**9
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/costs?group_by=model&since={since}&until={until}", headers=bearer(viewer_token)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        http = json.load(response)
    reply = admin.GetCosts(
        admin_pb2.GetCostsRequest(group_by=["model"], since_unix_ns=since, until_unix_ns=until), metadata=viewer, timeout=10
    )

    report_fields = set(admin_pb2.GetCostsResponse.DESCRIPTOR.fields_by_name)
    group_fields = set(admin_pb2.CostGroup.DESCRIPTOR.fields_by_name)
    assert set(http) <= report_fields
    assert all(set(group) <= group_fields for group in http["groups"])
    assert {"token_cost", "request_cost", "list_cost", "discount", "idle_cost", "fixed_cost", "total_cost"} <= group_fields
    assert {"list_cost", "discount", "idle_cost", "fixed_cost", "usage_cost"} <= report_fields
    assert [g.key for g in reply.groups] == [g["key"] for g in http["groups"]]
    for group, http_group in zip(reply.groups, http["groups"], strict=True):
        assert (group.token_cost, group.request_cost) == (http_group["token_cost"], http_group["request_cost"])
        for name in ("list_cost", "discount", "idle_cost", "fixed_cost", "total_cost"):
            assert getattr(group, name) == http_group.get(name, ""), name
    for name in ("list_cost", "discount", "idle_cost", "fixed_cost", "usage_cost"):
        assert getattr(reply, name) == http.get(name, ""), name


DECEMBER_UNIX_NS = 1_796_083_200 * 10**9  # 2026-12-01T00:00:00Z, a fortnight after the records


@pytest.fixture
def december(tmp_path):
    """(Admin stub, admin metadata, store) of a collector whose clock reads 2026-12-01, after
    edge-1 pushed three records on 2026-11-18."""
    store = Store.open(f"sqlite:///{tmp_path / 'december.db'}", clock=lambda: DECEMBER_UNIX_NS)
    try:
        metadata = bearer_metadata(store.add_admin_token(tokens.ADMIN).token)
        device = store.add_device("edge-1")
        with ServersThread(store) as running, grpc.insecure_channel(running.grpc_address) as channel:
            ingest_pb2_grpc.IngestStub(channel).Push(
                push_request([make_record(seq) for seq in (1, 2, 3)]), metadata=bearer_metadata(device.token), timeout=10
            )
            yield admin_pb2_grpc.AdminStub(channel), metadata, store
    finally:
        store.close()


def usage_cost(store: Store) -> Decimal:
    """What the stored records cost (the groups' costs: idle capacity has groups of its own,
    which cost nothing here)."""
    return sum((group.cost for group in store.costs().groups), Decimal(0))


def test_reprice_after_a_book_for_the_past(december):
    admin, metadata, store = december
    old_total = usage_cost(store)
    costly = {**BOOK, "hardware": {"default": {**BOOK["hardware"]["default"], "purchase": "9000.00"}}}
    admin.CreatePriceBook(
        admin_pb2.CreatePriceBookRequest(effective_from_unix_ns=1_767_225_600 * 10**9, document_json=json.dumps(costly)),
        metadata=metadata, timeout=10,
    )

    reply = admin.Reprice(admin_pb2.RepriceRequest(device="edge-1"), metadata=metadata, timeout=10)

    assert (reply.records, reply.changed, reply.currency) == (3, 3, "USD")
    assert Decimal(reply.old_cost) == old_total < Decimal(reply.new_cost) == usage_cost(store)
    again = admin.Reprice(admin_pb2.RepriceRequest(), metadata=metadata, timeout=10)
    assert (again.records, again.changed, again.old_cost, again.new_cost) == (3, 0, reply.new_cost, reply.new_cost)


@pytest.mark.parametrize("request_, code", [
    (admin_pb2.RepriceRequest(device="edge-9"), grpc.StatusCode.NOT_FOUND),
    (admin_pb2.RepriceRequest(device="../x"), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.RepriceRequest(since_unix_ns=2, until_unix_ns=1), grpc.StatusCode.INVALID_ARGUMENT),
    (admin_pb2.RepriceRequest(since_unix_ns=-1), grpc.StatusCode.INVALID_ARGUMENT),
], ids=["unknown-device", "bad-device", "since-after-until", "negative"])
def test_reprice_refused(december, request_, code):
    admin, metadata, _ = december

    with pytest.raises(grpc.RpcError) as caught:
        admin.Reprice(request_, metadata=metadata, timeout=10)

    assert caught.value.code() is code


def test_prune_records(december):
    admin, metadata, store = december
    window = {"since_unix_ns": 1_794_999_600 * 10**9, "until_unix_ns": 1_795_046_400 * 10**9}  # whole hours
    total = store.costs(**window).total_cost

    reply = admin.PruneRecords(admin_pb2.PruneRecordsRequest(before_unix_ns=1_795_046_400 * 10**9 + 1), metadata=metadata, timeout=10)

    assert (reply.records, reply.before_unix_ns) == (3, 1_795_046_400 * 10**9)  # 2026-11-19T00:00:00Z, whole hour
    assert store.costs(**window).total_cost == total  # the roll-ups stay
    with pytest.raises(grpc.RpcError) as caught:
        admin.ExplainRecord(admin_pb2.ExplainRecordRequest(stream_id=STREAM_ID, seq=1), metadata=metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("before", [0, -1, DECEMBER_UNIX_NS - 3600 * 10**9], ids=["missing", "negative", "within-a-day"])
def test_prune_refused_deletes_nothing(december, before):
    admin, metadata, store = december

    with pytest.raises(grpc.RpcError) as caught:
        admin.PruneRecords(admin_pb2.PruneRecordsRequest(before_unix_ns=before), metadata=metadata, timeout=10)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("before_unix_ns:")
    assert store.list_devices()[0].records == 3
