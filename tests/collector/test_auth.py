"""Who may call the operators' APIs, over the real HTTP and gRPC servers: a request without a
usable admin token is 401 / UNAUTHENTICATED, one whose token's role does not allow it is 403 /
PERMISSION_DENIED, and neither changes anything. Device tokens are for Ingest only, admin
tokens for the operators' APIs only."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import grpc
import pytest
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2_grpc

from collector import insights_ops, tag_ops, tokens
from collector.auth import GRPC_ROLES, HTTP_ROLES, parse_bearer
from collector.http_api import OPENAPI_PATH
from collector.store import Store, StoreUnavailable
from tests.collector.helpers import (
    ServersThread,
    bearer_metadata,
    make_record,
    push_request,
    schema_errors,
)

DOCUMENT = json.loads(OPENAPI_PATH.read_text())
BOOK_EXAMPLE = DOCUMENT["paths"]["/api/v1/pricebooks"]["post"]["requestBody"]["content"]["application/json"]["example"]
# Reads -> the status a token allowed to read gets (the explained record is not there: a 404,
# not a 401 or 403, shows the token was accepted).
READS = {
    "/api/v1/costs": 200,
    "/api/v1/devices": 200,
    "/api/v1/devices/edge-1": 200,
    "/api/v1/pricebooks": 200,
    "/api/v1/pricebooks/1": 200,
    "/api/v1/records/0123456789abcdef0123456789abcdef/1/explain": 404,
    "/api/v1/exports/focus": 200,
    "/api/v1/forecasts": 200,
    "/api/v1/budgets": 200,
    "/api/v1/budgets/search-monthly": 404,
    "/api/v1/budget-events": 200,
    "/api/v1/webhooks": 200,
    "/api/v1/tag-policy": 200,
    "/api/v1/devices/edge-1/tags": 200,
    "/api/v1/untagged": 200,
    "/api/v1/chargeback": 200,
    "/api/v1/shadow-processes": 200,
    "/api/v1/workload-classes": 200,
    "/api/v1/kpis": 200,
    "/api/v1/reports/kpis": 200,
    "/api/v1/models": 200,
    "/api/v1/reports/right-sizing?model=resnet50": 200,
}
# Writes -> the body they are sent with (valid: only the token stands in the way).
WRITES = {
    "/api/v1/devices/edge-1/rotate": None,
    "/api/v1/devices/edge-1/revoke": None,
    "/api/v1/devices": {"name": "edge-2"},
    "/api/v1/pricebooks": BOOK_EXAMPLE,
    "/api/v1/reprice": {},
    "/api/v1/prune": {"before": "2001-01-01"},
    "/api/v1/budgets": {"name": "search-monthly", "scope": "global", "period": "month", "amount": "250"},
    "/api/v1/webhooks": {"url": "https://hooks.example.com/infermeter"},
    "/api/v1/webhooks/whk_5d2c0e8f9a1b3c4d5e6f7a8b/revoke": None,
    "/api/v1/kpis": {"name": "fraud-checks", "unit": "fraud check", "model": "resnet50"},
}
# Writes by other methods than POST (on a budget that is not there: only the token stands in
# the way of the 404).
OTHER_WRITES = {
    ("PUT", "/api/v1/budgets/search-monthly"): {"name": "search-monthly", "scope": "global", "period": "day", "amount": "1"},
    ("DELETE", "/api/v1/budgets/search-monthly"): None,
    ("PUT", "/api/v1/tag-policy"): {"required": {"project": []}},
    ("PUT", "/api/v1/devices/edge-1/tags"): {"tags": {"project": "search"}},
    ("PUT", "/api/v1/workload-classes/resnet50"): {"criticality": "internal"},
    ("DELETE", "/api/v1/workload-classes/resnet50"): None,
    ("DELETE", "/api/v1/kpis/fraud-checks"): None,
}
GRPC_READS = {
    "ListDevices": admin_pb2.ListDevicesRequest(),
    "GetDevice": admin_pb2.GetDeviceRequest(name="edge-1"),
    "GetCosts": admin_pb2.GetCostsRequest(),
    "ListPriceBooks": admin_pb2.ListPriceBooksRequest(),
    "GetPriceBook": admin_pb2.GetPriceBookRequest(id=1),
    "ExplainRecord": admin_pb2.ExplainRecordRequest(stream_id="0123456789abcdef0123456789abcdef", seq=1),
    "GetForecast": admin_pb2.GetForecastRequest(),
    "ListBudgets": admin_pb2.ListBudgetsRequest(),
    "GetBudget": admin_pb2.GetBudgetRequest(name="search-monthly"),
    "ListBudgetEvents": admin_pb2.ListBudgetEventsRequest(),
    "ListWebhooks": admin_pb2.ListWebhooksRequest(),
    "GetTagPolicy": admin_pb2.GetTagPolicyRequest(),
    "GetDeviceTags": admin_pb2.GetDeviceTagsRequest(name="edge-1"),
    "GetUntaggedCosts": admin_pb2.GetUntaggedCostsRequest(),
    "GetChargeback": admin_pb2.GetChargebackRequest(),
    "ListShadowProcesses": admin_pb2.ListShadowProcessesRequest(),
    "ListWorkloadClasses": admin_pb2.ListWorkloadClassesRequest(),
    "ListKpis": admin_pb2.ListKpisRequest(),
    "GetKpiReport": admin_pb2.GetKpiReportRequest(),
    "GetModelRegistry": admin_pb2.GetModelRegistryRequest(),
    "GetRightSizing": admin_pb2.GetRightSizingRequest(model="resnet50"),
}
# What a read allowed answers, where that is not OK.
GRPC_READ_STATUS = {"ExplainRecord": grpc.StatusCode.NOT_FOUND, "GetBudget": grpc.StatusCode.NOT_FOUND}
GRPC_WRITES = {
    "RotateDevice": admin_pb2.RotateDeviceRequest(name="edge-1"),
    "RevokeDevice": admin_pb2.RevokeDeviceRequest(name="edge-1"),
    "AddDevice": admin_pb2.AddDeviceRequest(name="edge-2"),
    "CreatePriceBook": admin_pb2.CreatePriceBookRequest(
        effective_from_unix_ns=1_767_225_600 * 10**9, document_json=json.dumps(BOOK_EXAMPLE["book"])
    ),
    "Reprice": admin_pb2.RepriceRequest(),
    "PruneRecords": admin_pb2.PruneRecordsRequest(before_unix_ns=978_307_200 * 10**9),
    "CreateBudget": admin_pb2.CreateBudgetRequest(document_json=json.dumps(WRITES["/api/v1/budgets"])),
    "UpdateBudget": admin_pb2.UpdateBudgetRequest(name="search-monthly", document_json=json.dumps(WRITES["/api/v1/budgets"])),
    "DeleteBudget": admin_pb2.DeleteBudgetRequest(name="search-monthly"),
    "AddWebhook": admin_pb2.AddWebhookRequest(url="https://hooks.example.com/infermeter"),
    "RevokeWebhook": admin_pb2.RevokeWebhookRequest(webhook_id="whk_5d2c0e8f9a1b3c4d5e6f7a8b"),
    "SetTagPolicy": admin_pb2.SetTagPolicyRequest(policy_json='{"required": {"project": []}}'),
    "SetDeviceTags": admin_pb2.SetDeviceTagsRequest(name="edge-1", tags={"project": "search"}),
    "SetWorkloadClass": admin_pb2.SetWorkloadClassRequest(model="resnet50", criticality="internal"),
    "DeleteWorkloadClass": admin_pb2.DeleteWorkloadClassRequest(model="resnet50"),
    "CreateKpi": admin_pb2.CreateKpiRequest(document_json=json.dumps(WRITES["/api/v1/kpis"])),
    "DeleteKpi": admin_pb2.DeleteKpiRequest(name="fraud-checks"),
}
UNKNOWN_ADMIN_TOKEN = tokens.ADMIN_TOKEN_PREFIX + "A" * 43


def http_call(
    base_url: str, path: str, authorizations: list[str], method: str = "GET"
) -> tuple[int, dict, dict | bytes]:
    """Send each of `authorizations` as its own Authorization header (none, one or several),
    a POST with the write's body from WRITES; (status, headers, body: JSON decoded, or bytes
    for a file)."""
    url = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    sent = WRITES.get(path) if method == "POST" else OTHER_WRITES.get((method, path))
    body = json.dumps(sent).encode() if sent is not None else None
    try:
        connection.putrequest(method, path)
        for value in authorizations:
            connection.putheader("Authorization", value)
        if body is not None:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        json_body = response.headers.get("Content-Type", "").startswith("application/json")
        return response.status, dict(response.headers), json.loads(data) if json_body else data
    finally:
        connection.close()


def grpc_call(channel: grpc.Channel, method: str, authorizations: list[str]) -> grpc.StatusCode:
    """Call an Admin method with each of `authorizations` as an `authorization` entry; its status."""
    request = {**GRPC_READS, **GRPC_WRITES}[method]
    metadata = [("authorization", value) for value in authorizations]
    try:
        getattr(admin_pb2_grpc.AdminStub(channel), method)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.fixture
def revoked_token(store) -> str:
    new = store.add_admin_token(tokens.ADMIN, name="former")
    store.revoke_admin_token(new.token_id)
    return new.token


# What an Authorization header may hold that is no usable admin token, by kind; values that
# depend on the store are filled in by the `refused` fixture.
REFUSED = {
    "missing": lambda t: [],
    "empty": lambda t: [""],
    "basic-scheme": lambda t: ["Basic dXNlcjpwYXNz"],
    "other-scheme": lambda t: [f"Token {t['admin']}"],
    "scheme-only": lambda t: ["Bearer"],
    "trailing-words": lambda t: [f"Bearer {t['admin']} please"],
    "too-long": lambda t: ["Bearer " + tokens.ADMIN_TOKEN_PREFIX + "A" * 600],
    "non-ascii": lambda t: ["Bearer ima_\u00e9t\u00e9"],
    "given-twice": lambda t: [f"Bearer {t['admin']}", f"Bearer {t['admin']}"],
    "unknown": lambda t: [f"Bearer {UNKNOWN_ADMIN_TOKEN}"],
    "revoked": lambda t: [f"Bearer {t['revoked']}"],
    "device-token": lambda t: [f"Bearer {t['device']}"],
}


# A gRPC client will not send non-ASCII metadata at all.
GRPC_REFUSED = sorted(set(REFUSED) - {"non-ascii"})


@pytest.fixture
def known_tokens(device, admin_token, revoked_token) -> dict[str, str]:
    return {"admin": admin_token, "revoked": revoked_token, "device": device.token}


@pytest.fixture(params=sorted(REFUSED))
def refused(request, known_tokens) -> list[str]:
    """Authorization headers that must be refused with 401."""
    return REFUSED[request.param](known_tokens)


@pytest.fixture(params=GRPC_REFUSED)
def refused_over_grpc(request, known_tokens) -> list[str]:
    """`authorization` metadata that must be refused with UNAUTHENTICATED."""
    return REFUSED[request.param](known_tokens)


def assert_unchanged(store: Store) -> None:
    assert [(d.name, d.revoked, d.rotating) for d in store.list_devices()] == [("edge-1", False, False)]
    assert [book.id for book in store.list_price_books()] == [1]
    assert store.list_budgets() == [] and store.list_webhooks() == []
    assert insights_ops.list_classes(store)["classes"] == [] and insights_ops.list_kpis(store) == {"kpis": []}
    assert tag_ops.get_policy(store)["version"] == 0 and tag_ops.get_device_tags(store, "edge-1")["tags"] == {}


def assert_unauthenticated(status: int, headers: dict, body: dict) -> None:
    assert status == 401, body
    assert (body["code"], body["field"]) == ("unauthenticated", "Authorization")
    assert headers["WWW-Authenticate"] == 'Bearer realm="infermeter"'
    assert schema_errors(body, {"$ref": "#/components/schemas/Error"}, DOCUMENT) == []


# HTTP


@pytest.mark.parametrize(
    "method, path", [("GET", path) for path in sorted(READS)] + [("POST", path) for path in sorted(WRITES)] + sorted(OTHER_WRITES)
)
def test_http_without_a_usable_admin_token_is_401(servers, store, refused, method, path):
    status, headers, body = http_call(servers.http_url, path, refused, method)

    assert_unauthenticated(status, headers, body)
    assert_unchanged(store)


def test_http_401_does_not_echo_the_token(servers, device):
    _, _, body = http_call(servers.http_url, "/api/v1/devices", [f"Bearer {UNKNOWN_ADMIN_TOKEN}"])
    _, _, device_body = http_call(servers.http_url, "/api/v1/devices", [f"Bearer {device.token}"])

    assert UNKNOWN_ADMIN_TOKEN not in body["message"]
    assert device.token not in device_body["message"] and "device token" in device_body["message"]


@pytest.mark.parametrize("path", sorted(READS))
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_http_reads_are_open_to_viewers_and_admins(servers, device, viewer_token, admin_token, path, scheme):
    for token in (viewer_token, admin_token):
        status, _, body = http_call(servers.http_url, path, [f"{scheme} {token}"])
        assert status == READS[path], body


@pytest.mark.parametrize("method, path", [("POST", path) for path in sorted(WRITES)] + sorted(OTHER_WRITES))
def test_http_a_viewer_cannot_write(servers, store, device, viewer_token, method, path):
    status, headers, body = http_call(servers.http_url, path, [f"Bearer {viewer_token}"], method)

    assert status == 403, body
    assert body["code"] == "forbidden" and "admin role" in body["message"]
    assert "WWW-Authenticate" not in headers
    assert schema_errors(body, {"$ref": "#/components/schemas/Error"}, DOCUMENT) == []
    assert_unchanged(store)


def test_http_an_admin_rotates_and_revokes(servers, store, device, admin_token):
    status, _, rotated = http_call(servers.http_url, "/api/v1/devices/edge-1/rotate", [f"Bearer {admin_token}"], "POST")
    assert (status, rotated["name"], rotated["rotating"], rotated["revoked"]) == (200, "edge-1", True, False)

    status, _, revoked = http_call(servers.http_url, "/api/v1/devices/edge-1/revoke", [f"Bearer {admin_token}"], "POST")
    assert (status, revoked["revoked"], revoked["rotating"]) == (200, True, False)
    assert store.authenticate(device.token).revoked


def test_http_a_token_revoked_while_in_use_is_refused_at_once(servers, store, device):
    new = store.add_admin_token(tokens.VIEWER)
    assert http_call(servers.http_url, "/api/v1/devices", [f"Bearer {new.token}"])[0] == 200

    store.revoke_admin_token(new.token_id)

    assert_unauthenticated(*http_call(servers.http_url, "/api/v1/devices", [f"Bearer {new.token}"]))


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/openapi.json"])
def test_http_public_routes_need_no_token(servers, path):
    assert http_call(servers.http_url, path, [])[0] == 200


# gRPC


@pytest.mark.parametrize("method", sorted({**GRPC_READS, **GRPC_WRITES}))
def test_grpc_without_a_usable_admin_token_is_unauthenticated(channel, store, refused_over_grpc, method):
    assert grpc_call(channel, method, refused_over_grpc) is grpc.StatusCode.UNAUTHENTICATED
    assert_unchanged(store)


@pytest.mark.parametrize("method", sorted(GRPC_READS))
def test_grpc_reads_are_open_to_viewers_and_admins(channel, device, viewer_token, admin_token, method):
    for token in (viewer_token, admin_token):
        assert grpc_call(channel, method, [f"Bearer {token}"]) is GRPC_READ_STATUS.get(method, grpc.StatusCode.OK)


@pytest.mark.parametrize("method", sorted(GRPC_WRITES))
def test_grpc_a_viewer_cannot_write(channel, store, device, viewer_token, method):
    assert grpc_call(channel, method, [f"Bearer {viewer_token}"]) is grpc.StatusCode.PERMISSION_DENIED
    assert_unchanged(store)


def test_grpc_an_admin_rotates_and_revokes(channel, store, device, admin_token):
    admin = admin_pb2_grpc.AdminStub(channel)
    metadata = bearer_metadata(admin_token)

    rotated = admin.RotateDevice(GRPC_WRITES["RotateDevice"], metadata=metadata, timeout=10)
    assert (rotated.name, rotated.rotating, rotated.revoked) == ("edge-1", True, False)
    with pytest.raises(grpc.RpcError) as caught:  # one rotation at a time
        admin.RotateDevice(GRPC_WRITES["RotateDevice"], metadata=metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    revoked = admin.RevokeDevice(GRPC_WRITES["RevokeDevice"], metadata=metadata, timeout=10)
    assert (revoked.revoked, revoked.rotating) == (True, False)
    assert store.authenticate(device.token).revoked


def test_an_admin_token_cannot_push(channel, device, admin_token):
    with pytest.raises(grpc.RpcError) as caught:
        ingest_pb2_grpc.IngestStub(channel).Push(
            push_request([make_record(1)]), metadata=bearer_metadata(admin_token), timeout=10
        )

    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/pricebooks"])
def test_http_an_admin_creates(servers, store, device, admin_token, path):
    status, _, body = http_call(servers.http_url, path, [f"Bearer {admin_token}"], "POST")

    assert status == 201, body
    assert len(store.list_devices()) + len(store.list_price_books()) == 3


@pytest.mark.parametrize("method", ["AddDevice", "CreatePriceBook"])
def test_grpc_an_admin_creates(channel, store, device, admin_token, method):
    assert grpc_call(channel, method, [f"Bearer {admin_token}"]) is grpc.StatusCode.OK
    assert len(store.list_devices()) + len(store.list_price_books()) == 3


def test_every_route_and_method_has_a_role_decided(store):
    """A route or method missing from the tables would need the admin role by default; each is
    named instead, the tables name nothing that is not served, and every write is tested above."""
    from collector.http_api import make_app
    from collector.server import ADMIN

    routes = {route.name: route for route in make_app(store).router.routes()}
    assert set(HTTP_ROLES) == set(routes)
    assert set(GRPC_ROLES) == {method.name for method in ADMIN.methods}
    http_writes = {name for name, role in HTTP_ROLES.items() if role == tokens.ADMIN}
    assert {routes[name].method for name in http_writes} == {"POST", "PUT", "DELETE"}
    assert len(http_writes) == len(WRITES) + len(OTHER_WRITES)
    assert set(GRPC_READS) | set(GRPC_WRITES) == set(GRPC_ROLES)
    assert {name for name, role in GRPC_ROLES.items() if role == tokens.ADMIN} == set(GRPC_WRITES)


# A store that fails while the token is checked


class UnreachableTokens(Store):
    def authenticate_admin(self, token):
        raise StoreUnavailable("database is locked")


def test_a_store_failing_during_the_check_is_unavailable_not_unauthenticated(tmp_path):
    """A client told 401 would think its token bad; the store's failure is a retry later."""
    store = UnreachableTokens.open(f"sqlite:///{tmp_path / 'collector.db'}")
    try:
        with ServersThread(store) as running, grpc.insecure_channel(running.grpc_address) as channel:
            status, _, body = http_call(running.http_url, "/api/v1/devices", [f"Bearer {UNKNOWN_ADMIN_TOKEN}"])
            code = grpc_call(channel, "ListDevices", [f"Bearer {UNKNOWN_ADMIN_TOKEN}"])
    finally:
        store.close()

    assert (status, body["code"]) == (503, "unavailable")
    assert code is grpc.StatusCode.UNAVAILABLE


# Parsing


@pytest.mark.parametrize("value, token", [
    ("Bearer ima_x", "ima_x"),
    ("bearer   ima_x", "ima_x"),
    ("Bearer", None),
    ("Bearer ", None),
    (" Bearer ima_x", None),
    ("Bearer ima_x ", None),
    ("Bearer ima x", None),
    ("Bearer ima_\x00", None),
    ("Bearer " + "x" * 513, None),
    ("Basic ima_x", None),
    (None, None),
    (b"Bearer ima_x", None),
])
def test_parse_bearer(value, token):
    assert parse_bearer(value) == token
