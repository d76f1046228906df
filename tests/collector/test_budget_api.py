"""Budgets, budget events and webhooks over the HTTP API and the gRPC Admin service, on the real
servers: the two surfaces take the same documents, refuse the same faults naming the same field,
and answer with the same bodies. Events come from a real threshold crossing: records pushed by a
device over gRPC Ingest."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2_grpc

from tests.collector.helpers import bearer, bearer_metadata, make_record, push_request

DOCUMENT = {"name": "search-monthly", "scope": "tag:project=search", "period": "month", "amount": "250.00"}
# A default record pushed from a 4-core device costs 0.000000005...: the first crosses 50 %,
# the second 80 and 100 %.
TINY = {"name": "tiny", "scope": "global", "period": "month", "amount": "0.000000008"}


def http(url: str, path: str, token: str | None, method: str = "GET", body: object = None) -> tuple[int, object]:
    """The status and the JSON body (None when there is none) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**(bearer(token) if token else {}), **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    return status, json.loads(raw) if raw else None


def rpc(channel, method: str, request, token: str):
    return getattr(admin_pb2_grpc.AdminStub(channel), method)(request, metadata=bearer_metadata(token), timeout=10)


def rpc_error(channel, method: str, request, token: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        rpc(channel, method, request, token)
    return caught.value


@pytest.fixture
def api(servers, channel, admin_token):
    """Calls to both surfaces with the admin token."""

    class Api:
        def http(self, path, method="GET", body=None, token=admin_token):
            return http(servers.http_url, path, token, method, body)

        def rpc(self, method, request, token=admin_token):
            return rpc(channel, method, request, token)

        def error(self, method, request, token=admin_token):
            return rpc_error(channel, method, request, token)

    return Api()


# Budgets


def test_a_budget_is_created_listed_shown_updated_and_deleted_alike_over_http_and_grpc(api, store):
    status, created = api.http("/api/v1/budgets", "POST", DOCUMENT)
    assert status == 201
    assert created["budget"]["name"] == "search-monthly" and created["budget"]["amount"] == "250.00"
    assert created["budget"]["budget_id"].startswith("bgt_") and created["state"] == "ok" and created["spent"] == "0.00"

    status, listed = api.http("/api/v1/budgets")
    assert status == 200 and listed == {"budgets": [created]}
    assert json.loads(api.rpc("ListBudgets", admin_pb2.ListBudgetsRequest()).budgets_json) == [created]
    for name in ("search-monthly", created["budget"]["budget_id"]):
        assert api.http(f"/api/v1/budgets/{name}") == (200, created)
        assert json.loads(api.rpc("GetBudget", admin_pb2.GetBudgetRequest(name=name)).budget_json) == created

    raised = {**DOCUMENT, "amount": "300", "thresholds": [80, 100], "action": "block"}
    status, updated = api.http("/api/v1/budgets/search-monthly", "PUT", raised)
    assert status == 200
    assert updated["budget"]["amount"] == "300.00" and updated["budget"]["thresholds"] == [80, 100]
    assert updated["budget"]["budget_id"] == created["budget"]["budget_id"]
    assert store.budget("search-monthly").budget.action == "block"
    over_grpc = api.rpc("UpdateBudget", admin_pb2.UpdateBudgetRequest(
        name="search-monthly", document_json=json.dumps({**raised, "amount": "310"})))
    assert json.loads(over_grpc.budget_json)["budget"]["amount"] == "310.00"
    assert json.loads(api.rpc("GetBudget", admin_pb2.GetBudgetRequest(name="search-monthly")).budget_json) == \
        api.http("/api/v1/budgets/search-monthly")[1]

    assert api.http("/api/v1/budgets/search-monthly", "DELETE") == (204, None)
    assert store.budget("search-monthly") is None and api.http("/api/v1/budgets") == (200, {"budgets": []})
    over_grpc = json.loads(api.rpc("CreateBudget", admin_pb2.CreateBudgetRequest(document_json=json.dumps(DOCUMENT))).budget_json)
    assert over_grpc["budget"]["name"] == "search-monthly"
    assert api.rpc("DeleteBudget", admin_pb2.DeleteBudgetRequest(name="search-monthly")) == admin_pb2.DeleteBudgetResponse()
    assert store.list_budgets() == []


def test_a_taken_name_is_409_and_already_exists(api, store):
    api.http("/api/v1/budgets", "POST", DOCUMENT)
    api.http("/api/v1/budgets", "POST", {**DOCUMENT, "name": "other"})
    before = store.list_budgets()

    status, body = api.http("/api/v1/budgets", "POST", DOCUMENT)
    assert status == 409 and body["code"] == "conflict" and body["field"] == "name"
    err = api.error("CreateBudget", admin_pb2.CreateBudgetRequest(document_json=json.dumps(DOCUMENT)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and err.details() == body["message"]

    renamed = {**DOCUMENT, "name": "other"}  # renaming onto another budget's name
    status, body = api.http("/api/v1/budgets/search-monthly", "PUT", renamed)
    assert status == 409 and body["field"] == "name"
    err = api.error("UpdateBudget", admin_pb2.UpdateBudgetRequest(name="search-monthly", document_json=json.dumps(renamed)))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and err.details() == body["message"]
    assert store.list_budgets() == before


@pytest.mark.parametrize("method, path, rpc_method, request_", [
    ("GET", "/api/v1/budgets/nope", "GetBudget", admin_pb2.GetBudgetRequest(name="nope")),
    ("PUT", "/api/v1/budgets/nope", "UpdateBudget", admin_pb2.UpdateBudgetRequest(name="nope", document_json=json.dumps(DOCUMENT))),
    ("DELETE", "/api/v1/budgets/nope", "DeleteBudget", admin_pb2.DeleteBudgetRequest(name="nope")),
    ("GET", "/api/v1/budget-events?budget=nope", "ListBudgetEvents", admin_pb2.ListBudgetEventsRequest(budget="nope")),
    ("POST", "/api/v1/webhooks/whk_000000000000000000000000/revoke", "RevokeWebhook",
     admin_pb2.RevokeWebhookRequest(webhook_id="whk_000000000000000000000000")),
])
def test_an_unknown_budget_or_webhook_is_404_and_not_found(api, store, method, path, rpc_method, request_):
    body_sent = DOCUMENT if method == "PUT" else None
    status, body = api.http(path, method, body_sent)
    assert status == 404 and body["code"] == "not_found", body
    err = api.error(rpc_method, request_)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == body["message"]
    assert store.list_budgets() == [] and store.list_webhooks() == []


@pytest.mark.parametrize("document, field", [
    ({**DOCUMENT, "amount": "-5"}, "amount"),
    ({**DOCUMENT, "amount": "lots"}, "amount"),
    ({**DOCUMENT, "scope": "planet:mars"}, "scope"),
    ({**DOCUMENT, "thresholds": [50, 40]}, "thresholds.1"),
    ({**DOCUMENT, "thresholds": [50, 2000]}, "thresholds.1"),
    ({**DOCUMENT, "period": "fortnight"}, "period"),
    ({**DOCUMENT, "timezone": "Mars/Olympus"}, "timezone"),
    ({**DOCUMENT, "name": "has space"}, "name"),
    ({**DOCUMENT, "action": "throttle"}, "throttle_per_second"),
    ({**DOCUMENT, "colour": "red"}, "colour"),
    ({key: value for key, value in DOCUMENT.items() if key != "amount"}, "amount"),
])
def test_a_bad_document_is_400_and_invalid_argument_naming_the_field(api, store, document, field):
    api.http("/api/v1/budgets", "POST", {**DOCUMENT, "name": "kept"})
    before = store.list_budgets()

    status, body = api.http("/api/v1/budgets", "POST", document)
    assert status == 400 and body["code"] == "invalid_parameter" and body["field"] == field, body
    err = api.error("CreateBudget", admin_pb2.CreateBudgetRequest(document_json=json.dumps(document)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"document_json.{field}: {body['message']}"

    status, body = api.http("/api/v1/budgets/kept", "PUT", document)
    assert status == 400 and body["field"] == field, body
    err = api.error("UpdateBudget", admin_pb2.UpdateBudgetRequest(name="kept", document_json=json.dumps(document)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(f"document_json.{field}: ")
    assert store.list_budgets() == before


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b'"a string"'])
def test_a_body_that_is_not_a_json_object_is_400(api, servers, admin_token, store, raw):
    request = urllib.request.Request(
        f"{servers.http_url}/api/v1/budgets", data=raw, method="POST",
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and json.loads(caught.value.read())["code"] in ("invalid_body", "invalid_json")
    err = api.error("CreateBudget", admin_pb2.CreateBudgetRequest(document_json=raw.decode()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("document_json")
    assert store.list_budgets() == []


# Budget events


def push(servers, token: str, records) -> None:
    with grpc.insecure_channel(servers.grpc_address) as channel:
        ingest_pb2_grpc.IngestStub(channel).Push(push_request(records), metadata=bearer_metadata(token), timeout=10)


def test_a_threshold_crossing_by_pushed_records_is_listed_alike_over_http_and_grpc(api, servers, store, device):
    api.http("/api/v1/budgets", "POST", TINY)
    api.http("/api/v1/budgets", "POST", DOCUMENT)  # tag:project=search, far from its amount
    now = time.time_ns()

    push(servers, device.token, [make_record(1, start_unix_ns=now - 2 * 10**9)])
    status, body = api.http("/api/v1/budget-events")
    assert status == 200
    [first] = body["events"]
    assert (first["budget"], first["kind"], first["key"]) == ("tiny", "threshold", "50")
    push(servers, device.token, [make_record(2, start_unix_ns=now - 10**9)])
    push(servers, device.token, [make_record(2, start_unix_ns=now - 10**9)])  # a retry: nothing new

    status, body = api.http("/api/v1/budget-events")
    events = body["events"]
    assert [(e["budget"], e["kind"], e["key"]) for e in events] == [
        ("tiny", "threshold", "50"), ("tiny", "threshold", "80"), ("tiny", "threshold", "100"),
    ]
    assert len({e["event_id"] for e in events}) == 3
    assert api.http("/api/v1/budgets/tiny")[1]["state"] == "exceeded"
    assert json.loads(api.rpc("ListBudgetEvents", admin_pb2.ListBudgetEventsRequest()).events_json) == events

    later = events[1]["created_unix_ns"]
    queries = {
        "?budget=tiny": events,
        f"?budget={events[0]['budget_id']}": events,
        "?budget=search-monthly": [],
        "?limit=1": events[:1],
        f"?since={later}": [e for e in events if e["created_unix_ns"] >= later],
        f"?budget=tiny&since={later}&limit=1": [events[1]],
    }
    for query, expected in queries.items():
        assert api.http(f"/api/v1/budget-events{query}") == (200, {"events": expected}), query
    grpc_requests = {
        "?budget=tiny": admin_pb2.ListBudgetEventsRequest(budget="tiny"),
        "?limit=1": admin_pb2.ListBudgetEventsRequest(limit=1),
        f"?budget=tiny&since={later}&limit=1": admin_pb2.ListBudgetEventsRequest(budget="tiny", since_unix_ns=later, limit=1),
    }
    for query, request in grpc_requests.items():
        assert json.loads(api.rpc("ListBudgetEvents", request).events_json) == queries[query], query

    # A deleted budget's events stay, listed by its id.
    api.http("/api/v1/budgets/tiny", "DELETE")
    status, body = api.http(f"/api/v1/budget-events?budget={events[0]['budget_id']}")
    assert status == 200 and [e["key"] for e in body["events"]] == ["50", "80", "100"]


@pytest.mark.parametrize("query, field", [
    ("?limit=0", "limit"), ("?limit=1001", "limit"), ("?limit=ten", "limit"),
    ("?since=yesterday", "since"), ("?budget=has%20space", "budget"), ("?colour=red", "colour"),
])
def test_bad_event_queries_are_400_naming_the_parameter(api, query, field):
    status, body = api.http(f"/api/v1/budget-events{query}")
    assert status == 400 and body["field"] == field, body


def test_bad_grpc_event_requests_are_invalid_argument_naming_the_field(api):
    for request, field in (
        (admin_pb2.ListBudgetEventsRequest(limit=1001), "limit"),
        (admin_pb2.ListBudgetEventsRequest(since_unix_ns=-5), "since"),
        (admin_pb2.ListBudgetEventsRequest(budget="has space"), "budget"),
    ):
        err = api.error("ListBudgetEvents", request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(f"{field}: "), err.details()


# Webhooks


def test_a_webhook_is_added_with_its_secret_once_listed_without_it_and_revoked(api, store):
    status, added = api.http("/api/v1/webhooks", "POST", {"url": "https://hooks.example.com/a"})
    assert status == 201 and set(added) == {"webhook_id", "url", "secret"}
    assert added["webhook_id"].startswith("whk_") and len(added["secret"]) >= 32
    over_grpc = api.rpc("AddWebhook", admin_pb2.AddWebhookRequest(url="http://127.0.0.1:9/b"))
    assert over_grpc.secret and over_grpc.secret != added["secret"] and over_grpc.webhook.url == "http://127.0.0.1:9/b"

    status, listed = api.http("/api/v1/webhooks")
    assert status == 200 and [row["webhook_id"] for row in listed["webhooks"]] == [added["webhook_id"], over_grpc.webhook.webhook_id]
    assert added["secret"] not in json.dumps(listed) and over_grpc.secret not in json.dumps(listed)
    assert all(set(row) == {"webhook_id", "url", "created_unix_ns", "revoked"} for row in listed["webhooks"])
    rows = api.rpc("ListWebhooks", admin_pb2.ListWebhooksRequest()).webhooks
    assert [
        {"webhook_id": r.webhook_id, "url": r.url, "created_unix_ns": r.created_unix_ns, "revoked": r.revoked} for r in rows
    ] == listed["webhooks"]

    status, revoked = api.http(f"/api/v1/webhooks/{added['webhook_id']}/revoke", "POST")
    assert status == 200 and revoked == {**listed["webhooks"][0], "revoked": True}
    row = api.rpc("RevokeWebhook", admin_pb2.RevokeWebhookRequest(webhook_id=over_grpc.webhook.webhook_id))
    assert row.revoked and row.webhook_id == over_grpc.webhook.webhook_id
    assert [row.revoked for row in store.list_webhooks()] == [True, True]


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://", "not a url", "http://exa mple.com/", ""])
def test_a_bad_webhook_url_is_400_and_invalid_argument_naming_url(api, store, url):
    status, body = api.http("/api/v1/webhooks", "POST", {"url": url})
    assert status == 400 and body["field"] == "url", body
    err = api.error("AddWebhook", admin_pb2.AddWebhookRequest(url=url))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == f"url: {body['message']}"
    assert store.list_webhooks() == []


def test_a_bad_webhook_id_is_400_naming_it(api):
    status, body = api.http("/api/v1/webhooks/whk_xyz/revoke", "POST")
    assert status == 400 and body["field"] == "id", body
    err = api.error("RevokeWebhook", admin_pb2.RevokeWebhookRequest(webhook_id="whk_xyz"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("webhook_id: ")


# Roles

HTTP_WRITES = [
    ("POST", "/api/v1/budgets", DOCUMENT),
    ("PUT", "/api/v1/budgets/kept", {**DOCUMENT, "name": "kept", "amount": "1"}),
    ("DELETE", "/api/v1/budgets/kept", None),
    ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/x"}),
    ("POST", "/api/v1/webhooks/{webhook_id}/revoke", None),
]
HTTP_READS = [
    "/api/v1/budgets", "/api/v1/budgets/kept", "/api/v1/budget-events", "/api/v1/webhooks", "/api/v1/forecasts",
]


def grpc_writes(webhook_id: str):
    return [
        ("CreateBudget", admin_pb2.CreateBudgetRequest(document_json=json.dumps(DOCUMENT))),
        ("UpdateBudget", admin_pb2.UpdateBudgetRequest(name="kept", document_json=json.dumps({**DOCUMENT, "name": "kept"}))),
        ("DeleteBudget", admin_pb2.DeleteBudgetRequest(name="kept")),
        ("AddWebhook", admin_pb2.AddWebhookRequest(url="https://hooks.example.com/x")),
        ("RevokeWebhook", admin_pb2.RevokeWebhookRequest(webhook_id=webhook_id)),
    ]


GRPC_READS = [
    ("ListBudgets", admin_pb2.ListBudgetsRequest()), ("GetBudget", admin_pb2.GetBudgetRequest(name="kept")),
    ("ListBudgetEvents", admin_pb2.ListBudgetEventsRequest()), ("ListWebhooks", admin_pb2.ListWebhooksRequest()),
    ("GetForecast", admin_pb2.GetForecastRequest()),
]


@pytest.fixture
def existing(store):
    """A budget and a webhook to write to; what the store holds, to compare after."""
    store.add_budget({**DOCUMENT, "name": "kept"})
    webhook = store.add_webhook("https://hooks.example.com/kept")

    def snapshot():
        return [s.budget for s in store.list_budgets()], store.list_webhooks()

    return webhook.webhook_id, snapshot


def test_a_viewer_reads_but_cannot_write_on_any_budget_or_webhook_route(api, viewer_token, existing):
    webhook_id, snapshot = existing
    before = snapshot()
    for method, path, body in HTTP_WRITES:
        status, answer = api.http(path.format(webhook_id=webhook_id), method, body, token=viewer_token)
        assert status == 403 and answer["code"] == "forbidden", (method, path, answer)
    for method, request in grpc_writes(webhook_id):
        assert api.error(method, request, token=viewer_token).code() == grpc.StatusCode.PERMISSION_DENIED, method
    for path in HTTP_READS:
        assert api.http(path, token=viewer_token)[0] == 200, path
    for method, request in GRPC_READS:
        api.rpc(method, request, token=viewer_token)
    assert snapshot() == before


def test_a_device_token_is_refused_everywhere(api, device, existing):
    webhook_id, snapshot = existing
    before = snapshot()
    for method, path, body in [*HTTP_WRITES, *(("GET", path, None) for path in HTTP_READS)]:
        status, answer = api.http(path.format(webhook_id=webhook_id), method, body, token=device.token)
        assert status == 401 and answer["code"] == "unauthenticated", (method, path, answer)
        assert device.token not in answer["message"]
    for method, request in [*grpc_writes(webhook_id), *GRPC_READS]:
        err = api.error(method, request, token=device.token)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, method
        assert device.token not in err.details()
    assert snapshot() == before
