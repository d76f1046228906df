"""The HTTP API on a real port: each route, the error shape, bad parameters, and the OpenAPI
document kept true (the routes served are those documented, and responses match its schemas).
Reads go with a viewer token; who may call what is tested in test_auth.py."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

import grpc
import pytest
from infermeter.v1 import ingest_pb2_grpc

from collector import tokens
from collector.auth import HTTP_ROLES, PUBLIC
from collector.http_api import OPENAPI_PATH, make_app
from collector.params import QueryError, parse_time_ns
from collector.store import Store, StoreUnavailable
from tests.collector.helpers import (
    START_UNIX_NS,
    ServersThread,
    bearer,
    bearer_metadata,
    make_record,
    push_request,
    resolve,
    schema_errors,
)

DOCUMENT = json.loads(OPENAPI_PATH.read_text())


def call(url: str, method: str = "GET", *, token: str | None = None) -> tuple[int, dict, object]:
    request = urllib.request.Request(url, method=method, headers=bearer(token) if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.load(err)


def documented_errors(path: str, status: int, body: object, method: str = "get") -> list[str]:
    """Schema errors of `body` against what the document says `path` answers with `status`."""
    response = resolve(DOCUMENT, DOCUMENT["paths"][path][method]["responses"][str(status)])
    return schema_errors(body, response["content"]["application/json"]["schema"], DOCUMENT)


def error_errors(body: object) -> list[str]:
    return schema_errors(body, {"$ref": "#/components/schemas/Error"}, DOCUMENT)


@pytest.fixture
def get(servers, viewer_token):
    """GET a path of the API with a viewer token: (status, headers, JSON body)."""
    return lambda path: call(f"{servers.http_url}{path}", token=viewer_token)


@pytest.fixture
def pushed(store, servers):
    """edge-1 pushed records of two models and two projects, one minute apart."""
    device = store.add_device("edge-1")
    store.add_device("edge-2")
    records = [
        make_record(seq, start_unix_ns=START_UNIX_NS + seq * 60 * 10**9,
                    model="bert" if seq % 2 else "resnet50", tags={"project": "ads" if seq > 2 else "search"})
        for seq in range(1, 5)
    ]
    with grpc.insecure_channel(servers.grpc_address) as channel:
        ingest_pb2_grpc.IngestStub(channel).Push(
            push_request(records), metadata=bearer_metadata(device.token), timeout=10
        )
    return records


def test_healthz_needs_no_token(servers):
    status, _, body = call(f"{servers.http_url}/healthz")

    assert (status, body) == (200, {"status": "ok"})


class BrokenStore(Store):
    def list_devices(self):
        raise StoreUnavailable("database is locked")

    def costs(self, **kwargs):
        raise StoreUnavailable("database is locked")


def test_an_unusable_store_is_503_json(tmp_path):
    broken = BrokenStore.open(f"sqlite:///{tmp_path / 'broken.db'}")
    try:
        token = broken.add_admin_token(tokens.VIEWER).token
        with ServersThread(broken) as running:
            answers = {
                path: call(f"{running.http_url}{path}", token=token)
                for path in ("/healthz", "/api/v1/costs", "/api/v1/devices")
            }
    finally:
        broken.close()

    for path, (status, _, body) in answers.items():
        assert status == 503, path
        assert body["code"] == "unavailable"
        assert documented_errors(path, 503, body) == []


def test_costs_grouped_with_exact_money(get, pushed):
    status, _, body = get("/api/v1/costs?group_by=model,device,tag:project")

    assert status == 200
    assert documented_errors("/api/v1/costs", 200, body) == []
    assert body["group_by"] == ["model", "device", "tag:project"]
    assert sorted(tuple(g["key"]) for g in body["groups"]) == [
        ("bert", "edge-1", "ads"), ("bert", "edge-1", "search"), ("resnet50", "edge-1", "ads"), ("resnet50", "edge-1", "search"),
    ]
    assert (body["total_records"], body["total_inferences"]) == (4, 4)
    assert Decimal(body["total_cost"]) == sum(Decimal(g["cost"]) for g in body["groups"])


@pytest.mark.parametrize(
    "query, records",
    [
        ("", 4),
        # Records start at START + seq minutes; the range is half-open on the start time.
        (f"since={START_UNIX_NS + 2 * 60 * 10**9}", 3),
        (f"until={START_UNIX_NS + 2 * 60 * 10**9}", 1),
        ("since=2026-11-18T11:00:00Z&until=2026-11-18T12:00:00Z", 4),
        ("since=2026-11-19", 0),
        ("until=2026-11-18T13:07:00%2B02:00", 0),
        ("until=2026-11-18T13:08:00.000000001%2B02:00", 1),
        ("since=1970-01-01T00:00:00Z", 4),
        ("group_by=", 4),
    ],
)
def test_costs_time_range(get, pushed, query, records):
    status, _, body = get(f"/api/v1/costs?{query}")

    assert status == 200, body
    assert body["total_records"] == records


@pytest.mark.parametrize(
    "query, code, field",
    [
        ("colour=red", "unknown_parameter", "colour"),
        ("group_by=model&group_by=device", "repeated_parameter", "group_by"),
        ("group_by=colour", "invalid_parameter", "group_by"),
        ("group_by=model,,device", "invalid_parameter", "group_by"),
        ("group_by=tag:", "invalid_parameter", "group_by"),
        ("since=yesterday", "invalid_parameter", "since"),
        ("since=2026-13-01", "invalid_parameter", "since"),
        ("since=2026-11-22T00:00:00", "invalid_parameter", "since"),  # no offset: ambiguous
        ("until=-1", "invalid_parameter", "until"),
        ("until=99999999999999999999", "invalid_parameter", "until"),
        ("until=9223372036854775808", "invalid_parameter", "until"),
        ("since=NaN", "invalid_parameter", "since"),
        ("since=%00", "invalid_parameter", "since"),
        ("until=2026-11-18T13:07:00%2B00:60", "invalid_parameter", "until"),  # fromisoformat reads +01:00
        ("group_by=model%09", "invalid_parameter", "group_by"),  # only spaces around keys are ignored
        ("since=2026-12-01&until=2026-11-01", "invalid_parameter", "since"),
    ],
)
def test_costs_bad_parameters_are_400_json(get, query, code, field):
    status, _, body = get(f"/api/v1/costs?{query}")

    assert status == 400
    assert (body["code"], body["field"]) == (code, field)
    assert body["message"]
    assert documented_errors("/api/v1/costs", 400, body) == []


def test_costs_per_day_with_the_top_model_and_the_rest(get, pushed):
    status, _, body = get("/api/v1/costs?group_by=model&granularity=day&top=1")

    assert status == 200, body
    assert documented_errors("/api/v1/costs", 200, body) == []
    assert (body["granularity"], body["top"]) == ("day", 1)
    # bert (seqs 1 and 3) and resnet50 (2 and 4) cost alike; the tie goes to the first key.
    assert [(g["period"], g["key"], g["other"], g["records"]) for g in body["groups"]] == [
        ("2026-11-18T00:00:00Z", ["bert"], False, 2), ("2026-11-18T00:00:00Z", [], True, 2),
    ]
    assert Decimal(body["total_cost"]) == sum(Decimal(g["cost"]) for g in body["groups"])


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_costs_periods_are_documented(get, pushed, granularity):
    status, _, body = get(f"/api/v1/costs?granularity={granularity}&since=2026-11-18T11:00:00Z")

    assert status == 200, body
    assert documented_errors("/api/v1/costs", 200, body) == []
    assert [g["period"] for g in body["groups"]] == [
        {"hour": "2026-11-18T11:00:00Z", "day": "2026-11-18T00:00:00Z", "month": "2026-11-01T00:00:00Z"}[granularity]
    ]
    assert "top" not in body and all("other" not in g for g in body["groups"])


@pytest.mark.parametrize("query, field", [
    ("granularity=week", "granularity"),
    ("granularity=", "granularity"),
    ("granularity=DAY", "granularity"),
    ("top=0", "top"),
    ("top=-1", "top"),
    ("top=1.5", "top"),
    ("top=%2B1", "top"),
    ("top=%201", "top"),
    ("top=", "top"),
    ("top=1000001", "top"),
    ("top=99999999999999999999", "top"),
    ("top=%EF%BC%95", "top"),  # a full-width 5
    ("top=1&top=2", "top"),
])
def test_costs_bad_granularity_or_top_is_400_naming_it(get, query, field):
    status, _, body = get(f"/api/v1/costs?{query}")

    assert status == 400
    assert body["field"] == field and body["code"] in ("invalid_parameter", "repeated_parameter")
    assert documented_errors("/api/v1/costs", 400, body) == []


def test_costs_group_keys_may_have_spaces_around_them(get, pushed):
    status, _, body = get("/api/v1/costs?group_by=%20model%20,%20tag:project%20")

    assert (status, body["group_by"]) == (200, ["model", "tag:project"])


TIME_PATTERN = re.compile(DOCUMENT["components"]["schemas"]["Time"]["pattern"])
GROUP_BY_PATTERN = re.compile(DOCUMENT["components"]["schemas"]["GroupBy"]["pattern"])


@pytest.mark.parametrize("text", [
    "0", "9223372036854775807", "2026-11-22", "2026-11-22T00:00:00Z", "2026-11-22t10:00:00.123456789-05:30",
    "2026-11-22 10:00:00z", "1969-12-31T23:00:00-01:00", "2262-04-11T23:47:16.854775807Z",
])
def test_the_documented_time_pattern_admits_every_time_accepted(text):
    parse_time_ns(text, field="since")

    assert TIME_PATTERN.search(text)


@pytest.mark.parametrize("text", [
    "", "-1", "1e9", "yesterday", "2026-13-01", "2026-11-32", "2026-11-22T00:00:00", "2026-11-22T24:00:00Z",
    "2026-11-22T00:00:60Z", "2026-11-22T00:00:00+00:60", "2026-11-22T00:00:00+24:00", "2026-11-22T00:00:00.1234567890Z",
    "2026-11-22T00:00Z", "+2026-11-22", "２０２６-11-22", "99999999999999999999",
])
def test_times_refused_for_their_form_are_outside_the_documented_pattern(text):
    with pytest.raises(QueryError):
        parse_time_ns(text, field="since")

    assert not TIME_PATTERN.search(text)


@pytest.mark.parametrize("text, accepted", [
    ("", True), ("   ", True), ("model", True), (" model , tag:a b ,device", True), ("tag: x", True),
    ("tag:" + "x" * 128, True), ("version,site,runtime", True),
    ("model,,device", False), ("tag:", False), ("tag: ", False), ('tag:"', False), ("tag:a\x00", False),
    ("model\t", False), ("\u3000model", False), ("colour", False), ("Model", False), ("tag:" + "x" * 129, False),
])
def test_the_documented_group_by_pattern_agrees_with_the_server(get, text, accepted):
    status, _, body = get(f"/api/v1/costs?group_by={urllib.parse.quote(text)}")

    assert status == (200 if accepted else 400), body
    assert bool(GROUP_BY_PATTERN.search(text)) == accepted


def test_devices(get, pushed):
    status, _, body = get("/api/v1/devices")

    assert status == 200
    assert documented_errors("/api/v1/devices", 200, body) == []
    devices = {d["name"]: d for d in body["devices"]}
    assert (devices["edge-1"]["records"], devices["edge-1"]["hostname"], devices["edge-1"]["cpu_cores"]) == (4, "edge-1", 4)
    assert (devices["edge-2"]["last_seen_unix_ns"], devices["edge-2"]["hostname"]) == (0, "")  # never pushed


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/devices", "/api/v1/openapi.json"])
def test_routes_without_parameters_refuse_parameters(get, path):
    status, _, body = get(f"{path}?verbose=1")

    assert (status, body["code"], body["field"]) == (400, "unknown_parameter", "verbose")


@pytest.mark.parametrize("path", ["/", "/api/v1/cost", "/api/v2/costs", "/api/v1/devices/../../etc/passwd", "/%00"])
def test_unknown_route_is_404_json(servers, path):
    status, _, body = call(f"{servers.http_url}{path}")

    assert status == 404
    assert body["code"] == "not_found"
    assert error_errors(body) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD"])
def test_wrong_method_is_405_json(servers, method):
    request = urllib.request.Request(f"{servers.http_url}/api/v1/costs", method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)

    assert caught.value.code == 405
    assert caught.value.headers["Allow"] == "GET"
    if method != "HEAD":  # a HEAD reply has no body
        body = json.load(caught.value)
        assert body["code"] == "method_not_allowed"
        assert error_errors(body) == []


def test_the_openapi_document_is_served_as_is_without_a_token(servers):
    status, headers, body = call(f"{servers.http_url}/api/v1/openapi.json")

    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == DOCUMENT


def test_the_document_lists_exactly_the_routes_served(store):
    served = {
        (route.resource.canonical, route.method.lower())
        for route in make_app(store).router.routes()
    }
    documented = {(path, method) for path, operations in DOCUMENT["paths"].items() for method in operations}

    assert served == documented


def test_the_documents_examples_match_its_schemas():
    checked = 0
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                response = resolve(DOCUMENT, response)
                content = response["content"]["application/json"]
                if "example" in content:
                    assert schema_errors(content["example"], content["schema"], DOCUMENT) == [], (path, status)
                    checked += 1
    assert checked >= 5


def test_the_document_is_openapi_3():
    assert DOCUMENT["openapi"].startswith("3.")
    assert {"title", "version"} <= set(DOCUMENT["info"])
    for operations in DOCUMENT["paths"].values():
        for operation in operations.values():
            assert operation["operationId"] and operation["responses"]
            for parameter in operation.get("parameters", ()):
                parameter = resolve(DOCUMENT, parameter)
                assert parameter["in"] in ("query", "path") and "schema" in parameter


def test_the_document_says_which_token_each_route_needs(store):
    """A public route declares `security: []`; every other inherits the bearer token and
    documents the 401, and those that need the admin role the 403 a viewer gets."""
    assert DOCUMENT["security"] == [{"adminToken": []}]
    for route in make_app(store).router.routes():
        operation = DOCUMENT["paths"][route.resource.canonical][route.method.lower()]
        needed = HTTP_ROLES[route.name]
        assert (operation.get("security") == []) == (needed is PUBLIC), route.name
        assert ("401" in operation["responses"]) == (needed is not PUBLIC), route.name
        assert ("403" in operation["responses"]) == (needed == tokens.ADMIN), route.name
