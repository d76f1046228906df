"""Property-based tests of the HTTP API against the OpenAPI document it serves (schemathesis).

Each operation gets its documented examples, schemathesis's coverage cases (edge values,
duplicated parameters, unexpected methods) and up to EXAMPLES generated requests, valid and
invalid, sent to the real servers over a store with records. Every response must have a
documented status, content type and body, never a 5xx; every error is the JSON Error object.

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

from collector.http_api import OPENAPI_PATH
from tests.collector.helpers import START_UNIX_NS, make_record, push_request, schema_errors

EXAMPLES = 1000
CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": EXAMPLES},
    "phases": {"coverage": {"generate-duplicate-query-parameters": True}},
    "checks": {"enabled": True},
    "operations": [{
        # Schema-valid queries that must still be refused: since after until, a key given twice,
        # 2026-02-30, a time outside int64 ns. JSON Schema cannot state these, so a valid-looking
        # query may get a 400 here, which must name the parameter (refusals_name_the_parameter).
        "include-path": "/api/v1/costs",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
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


@pytest.fixture
def api(store, servers):
    """The servers, after two devices pushed records over gRPC; the base URL of the API."""
    for name, model in (("edge-1", "resnet50"), ("edge-2", "bert")):
        device = store.add_device(name)
        records = [
            make_record(seq, model=model, start_unix_ns=START_UNIX_NS + seq * 60 * 10**9,
                        tags={"project": "ads" if seq % 2 else "search"})
            for seq in range(1, 6)
        ]
        with grpc.insecure_channel(servers.grpc_address) as channel:
            ingest_pb2_grpc.IngestStub(channel).Push(
                push_request(records), metadata=[("authorization", f"Bearer {device.token}")], timeout=10
            )
    served = schemathesis.openapi.from_url(f"{servers.http_url}/api/v1/openapi.json")
    assert served.raw_schema == schema.raw_schema
    return servers.http_url


def errors_are_json(ctx, response, case) -> None:
    """Every 4xx/5xx, documented for the operation or not (404, 405), is the Error object."""
    if response.status_code < 400:
        return
    content_type = CaseInsensitiveDict(response.headers).get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with content type {content_type!r}"
    errors = schema_errors(response.json(), {"$ref": "#/components/schemas/Error"}, schema.raw_schema)
    assert errors == [], errors


def refusals_name_the_parameter(ctx, response, case) -> None:
    """A schema-valid query refused with 400 was refused for a value the client sent."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    body = response.json()
    assert body["code"] == "invalid_parameter" and body["field"] in case.query, body


@schema.parametrize()
@LIVE_SETTINGS
def test_responses_conform_to_the_document(case, api):
    case.call_and_validate(base_url=api, additional_checks=[errors_are_json, refusals_name_the_parameter])


_DECLARED = {
    (path, method.upper()): {parameter["name"] for parameter in operation.get("parameters", ())}
    for path, operations in schema.raw_schema["paths"].items()
    for method, operation in operations.items()
}
_UNKNOWN_NAMES = st.text(max_size=16)
_VALUES = st.lists(st.text(max_size=16), min_size=1, max_size=3)  # more than one: repeated


@pytest.mark.parametrize("path, method", sorted(_DECLARED))
def test_unknown_parameters_are_refused(api, path, method):
    """Schemathesis adds no parameters to an operation that declares none, so these come from
    here: names the operation does not declare, once or repeated, are a 400 naming one of them."""
    operation = schema[path][method]
    declared = _DECLARED[path, method]

    @LIVE_SETTINGS
    @given(st.dictionaries(_UNKNOWN_NAMES.filter(lambda name: name not in declared), _VALUES, min_size=1, max_size=3))
    def refused(query):
        case = operation.Case(query=query)
        response = case.call(base_url=api)
        case.validate_response(response, additional_checks=[errors_are_json])
        body = response.json()
        assert response.status_code == 400, body
        assert body["code"] == "unknown_parameter" and body["field"] in query, body

    refused()
