"""Property-based tests of the HTTP API against the OpenAPI document it serves (schemathesis).

Each operation gets its documented examples, schemathesis's coverage cases (edge values,
duplicated parameters, unexpected methods) and up to EXAMPLES generated requests, valid and
invalid, sent to the real servers over a store with records. Every response must have a
documented status, content type and body, never a 5xx; every error is the JSON Error object.
Reads go with a viewer token, writes (POST, PUT, DELETE: add devices, price books, budgets and
webhooks, rotate, revoke, re-price, prune, replace and delete budgets) with an admin token, so
the writes really run, on devices and budgets that exist (the documented examples' among them);
adding a name twice is the documented 409. Schemathesis's
negative cases also send operations without the token, which must get the documented 401.

The pytest plugin builds one test per operation at collection time, before any server runs, so
the schema is read from openapi.json on disk; the `api` fixture loads the live
/api/v1/openapi.json and checks that it is that same document. (schemathesis.pytest.from_fixture
would load it lazily, but as of schemathesis 4.32 it sets Item._nodeid, which pytest 9.2 removed.)
"""

from __future__ import annotations

import grpc
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from infermeter.v1 import ingest_pb2_grpc
from requests.structures import CaseInsensitiveDict
from schemathesis.core.parameters import ParameterLocation

from collector.http_api import OPENAPI_PATH
from tests.collector.helpers import (
    START_UNIX_NS,
    STREAM_ID,
    bearer,
    bearer_metadata,
    make_record,
    push_request,
    resolve,
    schema_errors,
)

# Per operation, as RELIABILITY.md asks; the module runs in about a minute.
EXAMPLES = 1000
CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": EXAMPLES},
    "phases": {"coverage": {"generate-duplicate-query-parameters": True}},
    "checks": {"enabled": True},
    "operations": [{
        # Schema-valid input that must still be refused: since after until, a key given twice,
        # 2026-02-30, a time outside int64 ns, a seq above 2^63-1, a price book that breaks its
        # rules, a prune of the last day. JSON Schema cannot state these, so a valid-looking
        # request may get a 400 here, which must name the parameter or body field
        # (refusals_name_the_parameter); a re-price may name a device that is not there (404).
        "include-operation-id": ["getCosts", "exportFocus", "createPriceBook", "pruneRecords", "explainRecord", "reprice"],
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}},
    }, {
        # Budgets and webhooks: a document or URL that breaks a rule JSON Schema cannot state (an
        # unknown timezone, thresholds out of order, a URL without a host, a forecast's since
        # outside its history), and a budget name that is taken (409) or not there (404). Tag
        # policies and default tags likewise (a value listed twice, one the policy does not
        # allow, a device that is not there), and reports given a month and since or until.
        "include-operation-id": ["getForecast", "createBudget", "updateBudget", "listBudgetEvents", "addWebhook",
                                 "setTagPolicy", "setDeviceTags", "getUntaggedCosts", "getChargeback"],
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409"]}},
    }, {
        # Workload classes, KPIs and their reports: a class request that sets no dimension, a KPI
        # with both or neither of model and tag, a range that is not whole hours or ends before
        # it starts, a registry window out of range, a KPI name that is taken (409) or not there.
        "include-operation-id": ["setWorkloadClass", "createKpi", "getKpiReport", "getModelRegistry", "getRightSizing"],
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409"]}},
    }],
})
schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=CONFIG)
LIVE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The live servers are started once per operation, not per example; requests over a socket
    # are slow next to in-process code.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Api:
    """The base URL of the live API, and the token header each HTTP method is sent with."""

    def __init__(self, url: str, *, viewer_token: str, admin_token: str) -> None:
        self.url = url
        self._headers = {
            "GET": bearer(viewer_token), "POST": bearer(admin_token), "PUT": bearer(admin_token),
            "DELETE": bearer(admin_token),
        }

    def headers(self, method: str) -> dict[str, str]:
        return self._headers.get(method.upper(), {})


@pytest.fixture
def api(store, servers, viewer_token, admin_token):
    """The servers, after two devices pushed records over gRPC (and the device of the
    document's examples was registered); the API to call."""
    store.add_device("edge-01")
    for name, model in (("edge-1", "resnet50"), ("edge-2", "bert")):
        device = store.add_device(name)
        records = [
            make_record(seq, model=model, start_unix_ns=START_UNIX_NS + seq * 60 * 10**9,
                        tags={"project": "ads" if seq % 2 else "search"})
            for seq in range(1, 6)
        ]
        with grpc.insecure_channel(servers.grpc_address) as channel:
            ingest_pb2_grpc.IngestStub(channel).Push(
                push_request(records), metadata=bearer_metadata(device.token), timeout=10
            )
    store.add_budget({"name": "search-monthly", "scope": "tag:project=search", "period": "month", "amount": "250"})
    served = schemathesis.openapi.from_url(f"{servers.http_url}/api/v1/openapi.json")
    assert served.raw_schema == schema.raw_schema
    return Api(servers.http_url, viewer_token=viewer_token, admin_token=admin_token)


def errors_are_json(ctx, response, case) -> None:
    """Every 4xx/5xx, documented for the operation or not (404, 405), is the Error object."""
    if response.status_code < 400:
        return
    content_type = CaseInsensitiveDict(response.headers).get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with content type {content_type!r}"
    errors = schema_errors(response.json(), {"$ref": "#/components/schemas/Error"}, schema.raw_schema)
    assert errors == [], errors


def refusals_name_the_parameter(ctx, response, case) -> None:
    """A schema-valid request refused with 400 was refused for a value the client sent: a query
    or path parameter, or a body field (a price book's by its path: book.hardware.default), or
    for a documented body field that a rule needs and the body left out (a budget's
    throttle_per_second, which the throttle action needs)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    body = response.json()
    sent = {*(case.query or {}), *(case.path_parameters or {}), *(case.body if isinstance(case.body, dict) else {})}
    assert body["code"] == "invalid_parameter", body
    field = body["field"].split(".")[0]
    assert field in sent or (isinstance(case.body, dict) and field in _body_properties(case.operation)), body


def _body_properties(operation) -> set[str]:
    """The properties of an operation's JSON request body, as the document declares them."""
    request_body = resolve(schema.raw_schema, operation.definition.raw.get("requestBody", {}))
    body_schema = request_body.get("content", {}).get("application/json", {}).get("schema", {})
    return set(resolve(schema.raw_schema, body_schema).get("properties", {}))


@schema.parametrize()
@LIVE_SETTINGS
def test_responses_conform_to_the_document(case, api):
    # A case whose headers are the negative part (the Authorization header left out or
    # malformed) is sent as generated: the token would make it a valid request.
    negative_auth = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
    case.call_and_validate(
        base_url=api.url, headers=None if negative_auth else api.headers(case.method),
        additional_checks=[errors_are_json, refusals_name_the_parameter],
    )


_DECLARED = {
    (path, method.upper()): {
        resolve(schema.raw_schema, parameter)["name"]: resolve(schema.raw_schema, parameter)["in"]
        for parameter in operation.get("parameters", ())
    }
    for path, operations in schema.raw_schema["paths"].items()
    for method, operation in operations.items()
}
# Path parameters naming what exists: a device, the first price book, a stored record.
_EXISTING = {"name": "edge-1", "id": "1", "stream_id": STREAM_ID, "seq": "1", "model": "resnet50"}
_UNKNOWN_NAMES = st.text(max_size=16)
_VALUES = st.lists(st.text(max_size=16), min_size=1, max_size=3)  # more than one: repeated


@pytest.mark.parametrize("path, method", sorted(_DECLARED))
def test_unknown_parameters_are_refused(api, store, path, method):
    """Schemathesis adds no parameters to an operation that declares none, so these come from
    here: names the operation does not declare, once or repeated, are a 400 naming one of them
    (on a write, before anything changes: the path names a device that exists)."""
    operation = schema[path][method]
    declared = _DECLARED[path, method]
    path_parameters = {name: _EXISTING[name] for name, where in declared.items() if where == "path"}

    @LIVE_SETTINGS
    @given(st.dictionaries(_UNKNOWN_NAMES.filter(lambda name: name not in declared), _VALUES, min_size=1, max_size=3))
    def refused(query):
        case = operation.Case(query=query, path_parameters=path_parameters)
        response = case.call(base_url=api.url, headers=api.headers(method))
        case.validate_response(response, additional_checks=[errors_are_json])
        body = response.json()
        assert response.status_code == 400, body
        assert body["code"] == "unknown_parameter" and body["field"] in query, body

    refused()
    assert [(d.revoked, d.rotating, d.records) for d in store.list_devices() if d.name == "edge-1"] == [(False, False, 5)]
    assert [book.id for book in store.list_price_books()] == [1]
