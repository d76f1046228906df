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
    STREAM_ID,
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
    # Until the end of the records' hour: the device's idle capacity then is shared by the groups.
    status, _, body = get("/api/v1/costs?group_by=model,device,tag:project&until=2026-11-18T12:00:00Z")

    assert status == 200
    assert documented_errors("/api/v1/costs", 200, body) == []
    assert body["group_by"] == ["model", "device", "tag:project"]
    assert sorted(tuple(g["key"]) for g in body["groups"]) == [
        ("bert", "edge-1", "ads"), ("bert", "edge-1", "search"), ("resnet50", "edge-1", "ads"), ("resnet50", "edge-1", "search"),
    ]
    assert (body["total_records"], body["total_inferences"]) == (4, 4)
    assert Decimal(body["total_cost"]) == sum(Decimal(g["total_cost"]) for g in body["groups"])
    assert Decimal(body["usage_cost"]) == sum(Decimal(g["cost"]) for g in body["groups"])
    assert all(Decimal(g["idle_cost"]) > 0 for g in body["groups"])
    status, _, usage = get("/api/v1/costs?group_by=model,device,tag:project&usage_only=true")
    assert status == 200 and documented_errors("/api/v1/costs", 200, usage) == []
    assert Decimal(usage["total_cost"]) == Decimal(body["usage_cost"]) and usage["idle_cost"] == "0.000000000000"


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
    status, _, body = get("/api/v1/costs?group_by=model&granularity=day&top=1&until=2026-11-18T12:00:00Z")

    assert status == 200, body
    assert documented_errors("/api/v1/costs", 200, body) == []
    assert (body["granularity"], body["top"]) == ("day", 1)
    # bert (seqs 1 and 3) and resnet50 (2 and 4) cost alike; the tie goes to the first key.
    assert [(g["period"], g["key"], g["other"], g["records"]) for g in body["groups"]] == [
        ("2026-11-18T00:00:00Z", ["bert"], False, 2), ("2026-11-18T00:00:00Z", [], True, 2),
    ]
    assert Decimal(body["total_cost"]) == sum(Decimal(g["total_cost"]) for g in body["groups"])


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
def test_costs_periods_are_documented(get, pushed, granularity):
    status, _, body = get(f"/api/v1/costs?granularity={granularity}&since=2026-11-18T11:00:00Z&until=2026-11-18T12:00:00Z")

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


@pytest.mark.parametrize("path", ["/index.html", "/dashboard/", "/dashboard/../openapi.json", "/api/v1/cost", "/api/v2/costs", "/api/v1/devices/../../etc/passwd", "/%00"])
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
        for operation in operations.values():
            for status, response in operation["responses"].items():
                content = resolve(DOCUMENT, response).get("content", {}).get("application/json", {})  # 204: none
                if "example" in content:
                    assert schema_errors(content["example"], content["schema"], DOCUMENT) == [], (path, status)
                    checked += 1
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" in body:
                assert schema_errors(body["example"], body["schema"], DOCUMENT) == [], (path, "request")
                checked += 1
    assert checked >= 20


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


# Writes and the other operators' routes (the same operations as the gRPC Admin service and
# the `infermeter admin` / `report` / `export` commands).


def send(url: str, method: str = "POST", *, token: str, body: object = None, data: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict, object]:
    """A request with a JSON body (`body`) or raw bytes (`data`); (status, headers, JSON body)."""
    if body is not None:
        data = json.dumps(body).encode()
    headers = {**bearer(token), **({"Content-Type": content_type} if data is not None else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.load(err)


@pytest.fixture
def post(servers, admin_token):
    """POST a JSON body (or raw bytes) to a path with an admin token."""
    return lambda path, body=None, **kwargs: send(f"{servers.http_url}{path}", token=admin_token, body=body, **kwargs)


BOOK = DOCUMENT["paths"]["/api/v1/pricebooks"]["post"]["requestBody"]["content"]["application/json"]["example"]["book"]


def test_add_device_shows_its_token_once(post, get, store):
    status, _, body = post("/api/v1/devices", {"name": "edge-7", "profile": "jetson-orin", "site": "lab"})

    assert status == 201, body
    assert documented_errors("/api/v1/devices", 201, body, "post") == []
    device = body["device"]
    assert (device["name"], device["profile"], device["site"], device["records"], device["last_seen_unix_ns"]) == (
        "edge-7", "jetson-orin", "lab", 0, 0)
    assert store.authenticate(body["token"]).device_id == device["device_id"]
    assert get("/api/v1/devices/edge-7")[2] == device
    assert body["token"] not in json.dumps(get("/api/v1/devices")[2])


def test_add_device_defaults_profile_and_site(post):
    status, _, body = post("/api/v1/devices", {"name": "edge-7"})

    assert (status, body["device"]["profile"], body["device"]["site"]) == (201, "default", "default")


def test_add_device_with_a_taken_name_is_409(post, store):
    store.add_device("edge-7")

    status, _, body = post("/api/v1/devices", {"name": "edge-7"})

    assert (status, body["code"], body["field"]) == (409, "conflict", "name")
    assert documented_errors("/api/v1/devices", 409, body, "post") == []
    assert [d.name for d in store.list_devices()] == ["edge-7"]


@pytest.mark.parametrize("kwargs, status, code, field", [
    ({"body": {"name": "edge 7"}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": "../etc"}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": "x" * 65}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": ""}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": 7}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": True}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": ["edge-7"]}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": "edge-7", "profile": "a/b"}}, 400, "invalid_parameter", "profile"),
    ({"body": {"name": "edge-7", "site": "\u0000"}}, 400, "invalid_parameter", "site"),
    ({"body": {"name": "edge-7", "colour": "red"}}, 400, "unknown_field", "colour"),
    ({"body": {}}, 400, "missing_field", "name"),
    ({"body": {"name": None}}, 400, "invalid_parameter", "name"),
    ({"body": {"name": "edge-7", "site": None}}, 400, "invalid_parameter", "site"),
    ({"body": ["edge-7"]}, 400, "invalid_body", None),
    ({"body": "edge-7"}, 400, "invalid_body", None),
    ({"data": b""}, 400, "invalid_body", None),
    ({"data": b"{name: edge-7}"}, 400, "invalid_body", None),
    ({"data": b'{"name": NaN}'}, 400, "invalid_body", None),
    ({"data": b'{"name": Infinity}'}, 400, "invalid_body", None),
    ({"data": b'{"name": "edge-7"} trailing'}, 400, "invalid_body", None),
    ({"data": b'{"name": "\xff"}'}, 400, "invalid_body", None),
    ({"data": b'{"name": ' + b"9" * 5000 + b"}"}, 400, "invalid_body", None),
    ({"data": b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"}, 400, "invalid_body", None),
    ({"data": b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}"}, 400, "invalid_body", None),
    ({"data": b'{"name": "edge-7"}', "content_type": "text/plain"}, 415, "unsupported_media_type", "Content-Type"),
    ({"data": b'name=edge-7', "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", "Content-Type"),
    ({"data": b'{"name": "' + b"x" * (2 << 20) + b'"}'}, 413, "too_large", None),
])
def test_add_device_bad_body_is_4xx_and_changes_nothing(post, store, kwargs, status, code, field):
    answer, _, body = post("/api/v1/devices", **kwargs)

    assert (answer, body["code"], body["field"]) == (status, code, field), body
    assert body["message"]
    assert documented_errors("/api/v1/devices", status, body, "post") == []
    assert store.list_devices() == []


def test_get_device(get, pushed):
    status, _, body = get("/api/v1/devices/edge-1")

    assert status == 200
    assert documented_errors("/api/v1/devices/{name}", 200, body) == []
    assert (body["name"], body["records"]) == ("edge-1", 4)
    assert body["last_seen_unix_ns"] >= body["created_unix_ns"] > 0
    assert get(f"/api/v1/devices/{body['device_id']}")[2] == body


@pytest.mark.parametrize("name, status", [("edge-9", 404), ("edge%201", 400), ("x" * 65, 400)])
def test_get_device_not_there(get, pushed, name, status):
    answer, _, body = get(f"/api/v1/devices/{name}")

    assert (answer, body["field"]) == (status, "name")
    assert documented_errors("/api/v1/devices/{name}", status, body) == []


def test_price_books_create_list_and_show(post, get):
    status, _, created = post("/api/v1/pricebooks", {"effective_from": "2026-01-01T00:00:00Z", "book": BOOK})

    assert status == 201, created
    assert documented_errors("/api/v1/pricebooks", 201, created, "post") == []
    assert (created["effective_from_unix_ns"], created["currency"]) == (1_767_225_600 * 10**9, "USD")
    status, _, listed = get("/api/v1/pricebooks")
    assert status == 200 and documented_errors("/api/v1/pricebooks", 200, listed) == []
    assert [book["id"] for book in listed["price_books"]] == [1, created["id"]]
    assert listed["price_books"][-1] == created
    status, _, shown = get(f"/api/v1/pricebooks/{created['id']}")
    assert status == 200 and documented_errors("/api/v1/pricebooks/{id}", 200, shown) == []
    assert shown == {**created, "document": BOOK}


def test_price_book_effective_from_may_be_unix_ns(post):
    status, _, created = post("/api/v1/pricebooks", {"effective_from": 1_767_225_600 * 10**9, "book": BOOK})

    assert (status, created["effective_from_unix_ns"]) == (201, 1_767_225_600 * 10**9)


@pytest.mark.parametrize("body, code, field", [
    ({"effective_from": "2026-01-01", "book": {**BOOK, "currency": "usd"}}, "invalid_parameter", "book.currency"),
    ({"effective_from": "2026-01-01", "book": {**BOOK, "hardware": {"default": {**BOOK["hardware"]["default"], "purchase": 1200.0}}}},
     "invalid_parameter", "book.hardware.default.purchase"),
    ({"effective_from": "2026-01-01", "book": {**BOOK, "colour": "red"}}, "invalid_parameter", "book.colour"),
    ({"effective_from": "2026-01-01", "book": {}}, "invalid_parameter", "book.currency"),
    ({"effective_from": "2026-01-01", "book": []}, "invalid_parameter", "book"),
    ({"effective_from": "2026-01-01", "book": "{}"}, "invalid_parameter", "book"),
    ({"effective_from": "1999-12-31", "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": "2100-01-01", "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": "yesterday", "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": -1, "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": 2**63, "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": 1.7e18, "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"effective_from": True, "book": BOOK}, "invalid_parameter", "effective_from"),
    ({"book": BOOK}, "missing_field", "effective_from"),
    ({"effective_from": "2026-01-01"}, "missing_field", "book"),
    ({"effective_from": "2026-01-01", "book": BOOK, "id": 9}, "unknown_field", "id"),
])
def test_a_bad_price_book_is_400_naming_the_field_and_adds_nothing(post, store, body, code, field):
    status, _, answer = post("/api/v1/pricebooks", body)

    assert (status, answer["code"], answer["field"]) == (400, code, field), answer
    assert documented_errors("/api/v1/pricebooks", 400, answer, "post") == []
    assert len(store.list_price_books()) == 1


@pytest.mark.parametrize("book_id, status", [("2", 404), ("9223372036854775807", 404), ("0", 400), ("-1", 400),
                                            ("abc", 400), ("1.0", 400), ("99999999999999999999", 400)])
def test_a_price_book_not_there(get, book_id, status):
    answer, _, body = get(f"/api/v1/pricebooks/{book_id}")

    assert (answer, body["field"]) == (status, "id")
    assert documented_errors("/api/v1/pricebooks/{id}", status, body) == []


def test_explain_says_what_the_cli_says(get, pushed, store):
    status, _, body = get(f"/api/v1/records/{STREAM_ID}/2/explain")

    assert status == 200, body
    assert documented_errors("/api/v1/records/{stream_id}/{seq}/explain", 200, body) == []
    assert body == store.explain_record(STREAM_ID, 2)
    assert body["matches_stored"] and body["record"]["seq"] == 2
    assert get(f"/api/v1/records/{STREAM_ID}/2/explain?device=edge-1")[2] == body


@pytest.mark.parametrize("path, status, field", [
    (f"{STREAM_ID}/9/explain", 404, "seq"),
    (f"{STREAM_ID}/2/explain?device=edge-2", 404, "seq"),
    (f"{STREAM_ID[:-1]}/2/explain", 404, "seq"),
    (f"{STREAM_ID}/9223372036854775808/explain", 400, "seq"),
    (f"{STREAM_ID}/-1/explain", 400, "seq"),
    (f"{STREAM_ID}/2/explain?device=../x", 400, "device"),
    ("%01/2/explain", 400, "stream_id"),
    (f"{'x' * 129}/2/explain", 400, "stream_id"),
])
def test_explain_of_a_record_not_there(get, pushed, path, status, field):
    answer, _, body = get(f"/api/v1/records/{path}")

    assert (answer, body["field"]) == (status, field), body
    assert documented_errors("/api/v1/records/{stream_id}/{seq}/explain", status, body) == []


def export(servers, token: str, query: str = "") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"{servers.http_url}/api/v1/exports/focus{query}", headers=bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_export_focus_csv_is_the_cli_file(servers, viewer_token, pushed, store, tmp_path):
    from collector.focus_files import export_focus

    status, headers, data = export(servers, viewer_token, "?since=2026-11-18&until=2026-11-19")
    export_focus(store.engine, tmp_path / "cli.csv", file_format="csv", since_unix_ns=parse_time_ns("2026-11-18", field="since"),
                 until_unix_ns=parse_time_ns("2026-11-19", field="until"))

    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == 'attachment; filename="focus.csv"'
    assert data == (tmp_path / "cli.csv").read_bytes()
    assert data.count(b"\n") > 1


def test_export_focus_parquet(servers, viewer_token, pushed):
    pytest.importorskip("pyarrow")

    status, headers, data = export(servers, viewer_token, "?format=parquet")

    assert (status, headers["Content-Type"]) == (200, "application/vnd.apache.parquet")
    assert data[:4] == data[-4:] == b"PAR1"


def test_export_focus_parquet_without_pyarrow_says_so(servers, viewer_token, monkeypatch):
    from collector import admin_ops

    monkeypatch.setattr(admin_ops, "parquet_installed", lambda: False)

    status, _, data = export(servers, viewer_token, "?format=parquet")

    body = json.loads(data)
    assert (status, body["code"], body["field"]) == (400, "invalid_parameter", "format")
    assert "pyarrow" in body["message"]


@pytest.mark.parametrize("query, field", [
    ("?format=xml", "format"), ("?format=CSV", "format"), ("?since=2026-12-01&until=2026-11-01", "since"),
    ("?until=yesterday", "until"), ("?org=acme", "org"),
])
def test_export_focus_bad_query_is_400(servers, viewer_token, query, field):
    status, _, data = export(servers, viewer_token, query)

    body = json.loads(data)
    assert (status, body["field"]) == (400, field)
    assert documented_errors("/api/v1/exports/focus", 400, body) == []


# Re-pricing and retention, on a collector whose clock reads 2026-12-01 (pruning keeps the last
# day's raw records, so the records of 2026-11-18 may be pruned).

DECEMBER_UNIX_NS = 1_796_083_200 * 10**9  # 2026-12-01T00:00:00Z


@pytest.fixture
def december(tmp_path):
    """(servers, store, admin token) over a store whose clock reads 2026-12-01, after edge-1
    pushed four records on 2026-11-18."""
    store = Store.open(f"sqlite:///{tmp_path / 'december.db'}", clock=lambda: DECEMBER_UNIX_NS)
    try:
        token = store.add_admin_token(tokens.ADMIN).token
        device = store.add_device("edge-1")
        with ServersThread(store) as running:
            with grpc.insecure_channel(running.grpc_address) as channel:
                ingest_pb2_grpc.IngestStub(channel).Push(
                    push_request([make_record(seq) for seq in range(1, 5)]), metadata=bearer_metadata(device.token),
                    timeout=10,
                )
            yield running, store, token
    finally:
        store.close()


def usage_cost(store: Store) -> Decimal:
    """What the stored records cost (the groups' costs: idle capacity has groups of its own,
    which cost nothing here)."""
    return sum((group.cost for group in store.costs().groups), Decimal(0))


def test_reprice_after_a_book_for_the_past(december):
    servers, store, token = december
    before = usage_cost(store)
    costly = {**BOOK, "hardware": {"default": {**BOOK["hardware"]["default"], "purchase": "12000.00"}}}
    assert send(f"{servers.http_url}/api/v1/pricebooks", token=token,
                body={"effective_from": "2026-01-01", "book": costly})[0] == 201

    status, _, body = send(f"{servers.http_url}/api/v1/reprice", token=token, body={"device": "edge-1"})

    assert status == 200, body
    assert documented_errors("/api/v1/reprice", 200, body, "post") == []
    assert (body["records"], body["changed"], body["currency"]) == (4, 4, "USD")
    assert Decimal(body["old_cost"]) == before < Decimal(body["new_cost"]) == usage_cost(store)
    # Idempotent, and with no body at all.
    status, _, again = send(f"{servers.http_url}/api/v1/reprice", token=token)
    assert (status, again["records"], again["changed"], again["old_cost"]) == (200, 4, 0, body["new_cost"])


@pytest.mark.parametrize("kwargs, status, code, field", [
    ({"body": {"since": "2026-12-01", "until": "2026-11-01"}}, 400, "invalid_parameter", "since"),
    ({"body": {"since": 1.5}}, 400, "invalid_parameter", "since"),
    ({"body": {"until": False}}, 400, "invalid_parameter", "until"),
    ({"body": {"device": "edge-9"}}, 404, "not_found", "device"),
    ({"body": {"device": None}}, 400, "invalid_parameter", "device"),
    ({"body": {"device": "a b"}}, 400, "invalid_parameter", "device"),
    ({"body": {"devices": ["edge-1"]}}, 400, "unknown_field", "devices"),
    ({"body": []}, 400, "invalid_body", None),
    ({"data": b"{}", "content_type": "text/plain"}, 415, "unsupported_media_type", "Content-Type"),
])
def test_reprice_refused(december, kwargs, status, code, field):
    servers, _, token = december

    answer, _, body = send(f"{servers.http_url}/api/v1/reprice", token=token, **kwargs)

    assert (answer, body["code"], body["field"]) == (status, code, field), body
    assert documented_errors("/api/v1/reprice", status, body, "post") == []


def test_prune_keeps_the_roll_ups_and_ends_what_needs_raw_records(december):
    servers, store, token = december
    hour = START_UNIX_NS - START_UNIX_NS % (3600 * 10**9)
    window = {"since_unix_ns": hour, "until_unix_ns": hour + 7200 * 10**9}  # whole hours: the roll-ups
    before = store.costs(**window)

    status, _, body = send(f"{servers.http_url}/api/v1/prune", token=token, body={"before": "2026-11-19T00:30:00Z"})

    assert status == 200, body
    assert documented_errors("/api/v1/prune", 200, body, "post") == []
    assert body == {"records": 4, "before_unix_ns": parse_time_ns("2026-11-19", field="before")}
    assert store.costs(**window).total_cost == before.total_cost
    assert send(f"{servers.http_url}/api/v1/records/{STREAM_ID}/1/explain", "GET", token=token)[0] == 404
    assert send(f"{servers.http_url}/api/v1/reprice", token=token, body={"since": 0})[2]["field"] == "since"
    status, _, data = export(servers, token)
    assert (status, json.loads(data)["field"]) == (400, "since")
    assert export(servers, token, "?since=2026-11-19")[0] == 200


@pytest.mark.parametrize("body, code, field", [
    ({"before": "2026-11-30T12:00:00Z"}, "invalid_parameter", "before"),  # within the last day
    ({"before": "soon"}, "invalid_parameter", "before"),
    ({"before": -1}, "invalid_parameter", "before"),
    ({"before": None}, "invalid_parameter", "before"),
    ({}, "missing_field", "before"),
    ({"before": 0, "after": 0}, "unknown_field", "after"),
])
def test_prune_refused_deletes_nothing(december, body, code, field):
    servers, store, token = december

    status, _, answer = send(f"{servers.http_url}/api/v1/prune", token=token, body=body)

    assert (status, answer["code"], answer["field"]) == (400, code, field), answer
    assert store.list_devices()[0].records == 4
    assert store.explain_record(STREAM_ID, 1)["record"]["seq"] == 1
