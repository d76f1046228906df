"""The tag policy, devices' default tags, untagged costs and chargeback over the HTTP API, the
gRPC Admin service and the command line, on the real servers: the surfaces answer alike, refuse
alike, and the default tags reach the device in its Push replies."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from decimal import Decimal

import grpc
import pytest
from infermeter.v1 import admin_pb2, ingest_pb2_grpc

from collector.http_api import OPENAPI_PATH
from tests.collector.helpers import (
    bearer,
    bearer_metadata,
    make_record,
    push_request,
    run_cli,
    schema_errors,
)
from tests.collector.test_budget_api import http, rpc, rpc_error

DOCUMENT = json.loads(OPENAPI_PATH.read_text())
POLICY = {"required": {"department": ["ml", "ads"], "project": []}}
SINCE = "2026-01-01"  # the records start on 2026-11-18 (tests.collector.helpers)
# A closed range in the past: a report reaching now would accrue capacity to the moment it is made.
UNTIL = "2026-11-19"


@pytest.fixture
def pushed(store, servers):
    """edge-1 pushed four records: two tagged (ml/search, ads/banner), one without a
    department, one with a department the policy does not allow; the Push function for more."""
    device = store.add_device("edge-1")
    tags = [
        {"department": "ml", "project": "search"}, {"department": "ads", "project": "banner"},
        {"project": "search"}, {"department": "marketing", "project": "search"},
    ]
    records = [make_record(seq, tags=tags[seq - 1]) for seq in range(1, 5)]
    with grpc.insecure_channel(servers.grpc_address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)

        def push(batch):
            return stub.Push(push_request(batch), metadata=bearer_metadata(device.token), timeout=10)

        push(records)
        yield push


def http_text(url: str, token: str) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers=bearer(token))
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_the_policy_is_set_by_an_admin_and_read_by_a_viewer_over_http_and_grpc(
    servers, channel, pushed, admin_token, viewer_token
):
    assert http(servers.http_url, "/api/v1/tag-policy", viewer_token) == (
        200, {"version": 0, "created_unix_ns": 0, "required": {}})
    status, body = http(servers.http_url, "/api/v1/tag-policy", viewer_token, "PUT", POLICY)
    assert (status, body["code"]) == (403, "forbidden")

    status, body = http(servers.http_url, "/api/v1/tag-policy", admin_token, "PUT", POLICY)
    assert status == 200 and (body["version"], body["required"]) == (1, {"department": ["ads", "ml"], "project": []})

    over_grpc = rpc(channel, "GetTagPolicy", admin_pb2.GetTagPolicyRequest(), viewer_token)
    assert json.loads(over_grpc.policy_json) == body
    error = rpc_error(channel, "SetTagPolicy", admin_pb2.SetTagPolicyRequest(policy_json=json.dumps(POLICY)),
                      viewer_token)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    version_two = rpc(channel, "SetTagPolicy", admin_pb2.SetTagPolicyRequest(policy_json=json.dumps(POLICY)),
                      admin_token)
    assert json.loads(version_two.policy_json)["version"] == 2


def test_a_bad_policy_is_refused_alike_and_changes_nothing(servers, channel, admin_token):
    bad = {"required": {"department": ["ml", ""]}}
    status, body = http(servers.http_url, "/api/v1/tag-policy", admin_token, "PUT", bad)
    assert (status, body["code"], body["field"]) == (400, "invalid_parameter", "required.department.1")
    status, body = http(servers.http_url, "/api/v1/tag-policy", admin_token, "PUT", {"optional": {}})
    assert status == 400 and body["field"] == "optional"

    error = rpc_error(channel, "SetTagPolicy", admin_pb2.SetTagPolicyRequest(policy_json=json.dumps(bad)), admin_token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("policy_json.required.department.1: ")
    error = rpc_error(channel, "SetTagPolicy", admin_pb2.SetTagPolicyRequest(policy_json="{"), admin_token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert http(servers.http_url, "/api/v1/tag-policy", admin_token)[1]["version"] == 0


def test_default_tags_of_a_device_reach_it_in_every_push_reply(servers, channel, pushed, admin_token, viewer_token):
    assert dict(pushed([]).device_tags) == {}

    status, body = http(servers.http_url, "/api/v1/devices/edge-1/tags", admin_token, "PUT",
                        {"tags": {"department": "ml", "project": "search"}})
    assert (status, body) == (200, {"device": "edge-1", "tags": {"department": "ml", "project": "search"}})

    assert dict(pushed([]).device_tags) == {"department": "ml", "project": "search"}
    assert dict(pushed([make_record(5)]).device_tags) == {"department": "ml", "project": "search"}
    answer = rpc(channel, "GetDeviceTags", admin_pb2.GetDeviceTagsRequest(name="edge-1"), viewer_token)
    assert (answer.device, dict(answer.tags)) == ("edge-1", {"department": "ml", "project": "search"})

    rpc(channel, "SetDeviceTags", admin_pb2.SetDeviceTagsRequest(name="edge-1"), admin_token)
    assert dict(pushed([]).device_tags) == {}
    assert http(servers.http_url, "/api/v1/devices/edge-1/tags", viewer_token) == (200, {"device": "edge-1", "tags": {}})


def test_device_tags_refusals(servers, channel, pushed, admin_token):
    http(servers.http_url, "/api/v1/tag-policy", admin_token, "PUT", POLICY)
    status, body = http(servers.http_url, "/api/v1/devices/edge-1/tags", admin_token, "PUT",
                        {"tags": {"department": "marketing"}})
    assert (status, body["field"]) == (400, "tags.department")
    status, body = http(servers.http_url, "/api/v1/devices/edge-1/tags", admin_token, "PUT", {"tags": {"k": 1}})
    assert (status, body["field"]) == (400, "tags.k")
    status, body = http(servers.http_url, "/api/v1/devices/nobody/tags", admin_token, "PUT", {"tags": {}})
    assert (status, body["code"]) == (404, "not_found")
    error = rpc_error(channel, "GetDeviceTags", admin_pb2.GetDeviceTagsRequest(name="nobody"), admin_token)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(channel, "SetDeviceTags", admin_pb2.SetDeviceTagsRequest(
        name="edge-1", tags={"department": "marketing"}), admin_token)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("tags.department: ")
    assert dict(pushed([]).device_tags) == {}


def test_chargeback_and_untagged_costs_agree_across_surfaces_and_add_up_to_the_cost_report(
    servers, channel, pushed, admin_token, viewer_token
):
    http(servers.http_url, "/api/v1/tag-policy", admin_token, "PUT", POLICY)
    status, answer = http(servers.http_url, f"/api/v1/chargeback?since={SINCE}&until={UNTIL}", viewer_token)
    assert status == 200
    _, report = http(servers.http_url, f"/api/v1/costs?since={SINCE}&until={UNTIL}", viewer_token)

    assert sum(Decimal(line["total_cost"]) for line in answer["lines"]) == Decimal(report["total_cost"])
    assert answer["total_cost"] == report["total_cost"]
    assert schema_errors(answer, {"$ref": "#/components/schemas/Chargeback"}, DOCUMENT) == []
    kinds = [(line["kind"], line["tags"]["department"], line["records"]) for line in answer["lines"]]
    assert sorted(kinds)[:3] == [("tagged", "ads", 1), ("tagged", "ml", 1), ("untagged", "(untagged)", 2)]

    over_grpc = rpc(channel, "GetChargeback", admin_pb2.GetChargebackRequest(
        since_unix_ns=1_767_225_600 * 10**9, until_unix_ns=1_795_046_400 * 10**9), viewer_token)
    assert json.loads(over_grpc.answer_json) == answer
    status, content_type, text = http_text(
        f"{servers.http_url}/api/v1/chargeback?since={SINCE}&until={UNTIL}&format=csv", viewer_token)
    assert content_type.startswith("text/csv") and text == over_grpc.csv
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sum(Decimal(row["total_cost"]) for row in rows) == Decimal(report["total_cost"])

    status, untagged = http(servers.http_url, f"/api/v1/untagged?since={SINCE}", viewer_token)
    assert status == 200 and untagged["untagged_records"] == 2
    assert schema_errors(untagged, {"$ref": "#/components/schemas/UntaggedCosts"}, DOCUMENT) == []
    assert [group["tags"] for group in untagged["groups"]] == [{"department": {
        "missing": 1, "disallowed": 1, "values": ["marketing"]}}]
    over_grpc = rpc(channel, "GetUntaggedCosts", admin_pb2.GetUntaggedCostsRequest(
        since_unix_ns=1_767_225_600 * 10**9), viewer_token)
    assert json.loads(over_grpc.answer_json) == untagged


@pytest.mark.parametrize(("query", "field"), [
    ("month=2026-13", "month"),
    ("month=2026-11&since=2026-11-01", "month"),
    ("since=2026-12-01&until=2026-11-01", "since"),
    ("by=a,a", "by"),
    ("format=xml", "format"),
    ("group_by=model", "group_by"),
])
def test_bad_chargeback_queries_are_refused_naming_the_parameter(servers, channel, viewer_token, query, field):
    status, body = http(servers.http_url, f"/api/v1/chargeback?{query}", viewer_token)
    assert status == 400 and body["field"] == field


def test_bad_chargeback_requests_are_invalid_argument_over_grpc(channel, viewer_token):
    for request in (admin_pb2.GetChargebackRequest(month="2026-13"), admin_pb2.GetChargebackRequest(by=["a", "a"]),
                    admin_pb2.GetChargebackRequest(month="2026-11", since_unix_ns=1)):
        assert rpc_error(channel, "GetChargeback", request, viewer_token).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_command_line(store, pushed, capsys, tmp_path):
    db = str(store.engine.url)
    policy = tmp_path / "tag-policy.toml"
    policy.write_text('[required]\ndepartment = ["ml", "ads"]\nproject = []\n')

    code, out, _ = run_cli(capsys, "admin", "tag-policy", "set", str(policy), "--db", db)
    assert code == 0 and "department: ads, ml" in out and "project: any value" in out
    code, out, _ = run_cli(capsys, "admin", "tag-policy", "show", "--db", db, "--json")
    assert code == 0 and json.loads(out)["version"] == 1

    code, out, _ = run_cli(capsys, "admin", "device-tags", "set", "edge-1", "department=ml", "--db", db, "--json")
    assert code == 0 and json.loads(out) == {"device": "edge-1", "tags": {"department": "ml"}}
    code, _, err = run_cli(capsys, "admin", "device-tags", "set", "edge-1", "department=hr", "--db", db)
    assert code == 2 and "not an allowed value of department" in err
    code, _, err = run_cli(capsys, "admin", "device-tags", "show", "nobody", "--db", db)
    assert code == 2 and "no device" in err
    code, out, _ = run_cli(capsys, "admin", "device-tags", "clear", "edge-1", "--db", db)
    assert code == 0 and out == "edge-1: no default tags\n"

    code, out, _ = run_cli(capsys, "report", "chargeback", "--since", SINCE, "--until", UNTIL, "--db", db, "--json")
    assert code == 0
    answer = json.loads(out)
    code, out, _ = run_cli(capsys, "report", "costs", "--since", SINCE, "--until", UNTIL, "--db", db, "--json")
    assert answer["total_cost"] == json.loads(out)["total_cost"]
    code, out, _ = run_cli(capsys, "report", "chargeback", "--since", SINCE, "--until", UNTIL, "--db", db, "--csv")
    assert code == 0 and sum(Decimal(row["total_cost"]) for row in csv.DictReader(io.StringIO(out))) == Decimal(
        answer["total_cost"])
    code, out, _ = run_cli(capsys, "report", "chargeback", "--since", SINCE, "--db", db)
    assert code == 0 and "(untagged)" in out and out.splitlines()[-2].startswith("total")
    code, _, err = run_cli(capsys, "report", "chargeback", "--month", "2026-13", "--db", db)
    assert code == 2 and "YYYY-MM" in err

    code, out, _ = run_cli(capsys, "report", "untagged", "--since", SINCE, "--db", db)
    assert code == 0 and "department: 1 missing, 1 disallowed (marketing)" in out
    assert "untagged: 2 of 4 records" in out
    code, out, _ = run_cli(capsys, "report", "untagged", "--db", db, "--json")
    assert code == 0 and json.loads(out)["untagged_records"] == 2


def test_help_lists_the_commands(capsys):
    for argv in (("admin", "tag-policy", "set"), ("admin", "device-tags", "set"), ("report", "chargeback"),
                 ("report", "untagged")):
        code, out, _ = run_cli(capsys, *argv, "--help")
        assert code == 0 and "examples:" in out

