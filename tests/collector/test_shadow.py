"""Shadow AI on the collector (collector.shadow): an agent's discovery scan of a real child
process that runs ONNX Runtime unmetered, reported over gRPC to the real servers, and listed
over HTTP, gRPC Admin and the CLI with its estimated cost; reports that replace each other,
bad reports refused whole, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import grpc
import pytest
import requests
from infermeter.v1 import admin_pb2, admin_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from agent.buffer import Buffer
from agent.config import AgentConfig
from agent.daemon import build_daemon
from agent.discovery import Discovery, ProcScanner, Scan, ShadowProcess, WriterLog
from agent.discovery_report import GrpcScanReporter, scan_to_proto
from collector import shadow
from collector.demo.model import MODEL_PATH
from collector.pricing import decimal_text, div_round_half_even, picos_to_decimal
from collector.store import Store
from tests.collector.databases import DIALECTS, new_database
from tests.collector.helpers import (
    ServersThread,
    bearer,
    bearer_metadata,
    make_record,
    push_request,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_795_000_000 * 10**9
# The default price book's hardware: (1200 - 0) / 4 years + 120 a year, per second.
PER_DEVICE_S = Fraction(1200, 4 * 365 * 86_400) + Fraction(120, 365 * 86_400)
# Loads ONNX Runtime and the model; with a buffer named, runs it once through a Meter.
_CHILD = (
    "import sys, numpy, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
    "if sys.argv[2:]:\n"
    "    from agent import Meter\n"
    "    with Meter(sys.argv[2]) as meter:\n"
    "        meter.wrap_onnx(s).run(None, {'features': numpy.ones((1, 16), dtype=numpy.float32)})\n"
    "print('ready', flush=True); sys.stdin.read()"
)


@pytest.fixture(params=DIALECTS)
def any_store(request, tmp_path):
    with new_database(request.param, tmp_path) as url:
        store = Store.open(url)
        yield store
        store.close()


def _process(pid: int = 10, **fields) -> ShadowProcess:
    values = {
        "pid": pid, "start_unix_ns": NOW - 3_600 * 10**9, "command": "python3", "cmdline": f"python3 serve{pid}.py",
        "uid": 1001, "user": "alice", "runtimes": ("onnxruntime",), "rss_bytes": 500 * 2**20,
        "cpu_time_ns": 7_200 * 10**9, "cpu_ns_per_s": 1_500_000_000, "gpu_memory_bytes": 0, "last_record_unix_ns": 0,
    }
    return ShadowProcess(**{**values, **fields})


def _report(channel, token: str, scan: Scan) -> ingest_pb2.ReportProcessesResponse:
    stub = ingest_pb2_grpc.IngestStub(channel)
    return stub.ReportProcesses(scan_to_proto(scan), metadata=bearer_metadata(token), timeout=10)


def _pushed_device(store: Store, channel, name: str = "edge-1", cores: int = 4):
    """A device that pushed once, reporting its cores (the default book's profile has none)."""
    device = store.add_device(name)
    request = push_request([make_record(1)])
    request.device.cpu_cores = cores
    ingest_pb2_grpc.IngestStub(channel).Push(request, metadata=bearer_metadata(device.token), timeout=10)
    return device


def test_an_unmetered_child_is_reported_and_listed_with_its_cost(tmp_path, store, servers, channel, viewer_token, capsys):
    device = _pushed_device(store, channel)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(MODEL_PATH)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        reporter = GrpcScanReporter(channel, lambda: device.token)
        with Buffer.open(tmp_path / "buffer.db") as buffer:
            discovery = Discovery(buffer, ProcScanner(), WriterLog(keep_s=60), interval_s=60, recent_s=60)
            scan = discovery.scan_now()
        reporter(scan).result(timeout=10)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    deadline = time.monotonic() + 5  # the reporter hears of the outcome on gRPC's thread
    while reporter.sent != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reporter.sent == 1

    response = requests.get(f"{servers.http_url}/api/v1/shadow-processes", headers=bearer(viewer_token), timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()
    mine = [p for p in answer["processes"] if p["pid"] == child.pid]
    assert len(mine) == 1 and mine[0]["runtimes"] == ["onnxruntime"] and mine[0]["device"] == "edge-1"
    assert answer["devices"][0]["device"] == "edge-1"
    assert answer["devices"][0]["shadow_processes"] == len(answer["processes"]) >= 1
    expected = div_round_half_even(
        mine[0]["cpu_time_ns"] * PER_DEVICE_S.numerator * 10**12, 10**9 * 4 * PER_DEVICE_S.denominator
    )
    assert mine[0]["estimated_cost_to_date"] == decimal_text(picos_to_decimal(expected))

    admin = admin_pb2_grpc.AdminStub(channel)
    reply = admin.ListShadowProcesses(
        admin_pb2.ListShadowProcessesRequest(device="edge-1"), metadata=bearer_metadata(viewer_token), timeout=10
    )
    assert json.loads(reply.answer_json)["processes"] == answer["processes"]
    code, out, _ = run_cli(capsys, "admin", "shadow", "list", "--db", str(store.engine.url), "--json")
    assert code == 0 and json.loads(out)["processes"] == answer["processes"]
    code, out, _ = run_cli(capsys, "admin", "shadow", "list", "--db", str(store.engine.url))
    assert code == 0 and "edge-1: scanned" in out
    assert [line for line in out.splitlines() if f" {child.pid} " in line and "onnxruntime" in line]


def test_the_daemon_scans_and_reports_only_the_process_that_meters_nothing(tmp_path, store, servers, channel):
    device = _pushed_device(store, channel)
    token_file = tmp_path / "device.token"
    token_file.write_text(device.token)
    config = AgentConfig(
        buffer_path=tmp_path / "buffer.db", collector_address=servers.grpc_address, token_file=token_file,
        energy_enabled=False, interval_s=0.05,
    )
    Buffer.open(config.buffer_path).close()
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(MODEL_PATH), *extra], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for extra in ((), (str(config.buffer_path),))
    ]
    try:
        assert [child.stdout.readline().strip() for child in children] == ["ready", "ready"]
        with Buffer.open(config.buffer_path) as buffer, grpc.insecure_channel(config.collector_address) as agent_channel:
            build_daemon(config, buffer, agent_channel, None).run_once()
            deadline = time.monotonic() + 10
            while not (answer := shadow.list_shadow(store, "edge-1"))["devices"] and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for child in children:
            child.stdin.close()
            child.wait(timeout=10)
    reported = {p["pid"] for p in answer["processes"]}
    assert children[0].pid in reported and children[1].pid not in reported
    assert answer["devices"][0]["runtime_processes"] >= 2 and answer["devices"][0]["interval_s"] == "60"


def test_the_estimate_is_the_cpu_share_of_the_device_cost_exactly(any_store):
    with ServersThread(any_store) as servers, grpc.insecure_channel(servers.grpc_address) as channel:
        device = _pushed_device(any_store, channel, cores=4)
        _report(channel, device.token, Scan(NOW, 60.0, 3, (_process(10), _process(11, cpu_ns_per_s=0)), 0))
    answer = shadow.list_shadow(any_store, "edge-1", now_unix_ns=NOW)

    one_and_a_half_cores_hour = Fraction(3, 2) * 3_600 / 4 * PER_DEVICE_S * 10**12
    per_hour = div_round_half_even(one_and_a_half_cores_hour.numerator, one_and_a_half_cores_hour.denominator)
    busy, idle = answer["processes"]
    assert busy["pid"] == 10 and busy["cpu_cores_busy"] == "1.5"
    assert busy["estimated_cost_per_hour"] == decimal_text(picos_to_decimal(per_hour))
    assert idle["estimated_cost_per_hour"] == "0.000000000000"
    assert answer["estimated_cost_per_hour"] == busy["estimated_cost_per_hour"]
    assert "over 4 cores" in busy["estimate"] and "energy and GPU time not included" in busy["estimate"]
    assert answer["currency"] == "USD"
    assert answer["devices"] == [{
        "device": "edge-1", "scanned_unix_ns": NOW, "received_unix_ns": answer["devices"][0]["received_unix_ns"],
        "interval_s": "60", "runtime_processes": 3, "unreadable_processes": 0, "shadow_processes": 2,
    }]


def test_a_report_replaces_the_last_and_keeps_when_each_process_was_first_seen(any_store):
    with ServersThread(any_store) as servers, grpc.insecure_channel(servers.grpc_address) as channel:
        device = _pushed_device(any_store, channel)
        other = _pushed_device(any_store, channel, "edge-2")
        _report(channel, device.token, Scan(NOW, 60.0, 2, (_process(10), _process(11))))
        _report(channel, other.token, Scan(NOW, 60.0, 1, (_process(10),), unreadable_processes=7))
        first = {p["pid"]: p["first_seen_unix_ns"] for p in shadow.list_shadow(any_store, "edge-1")["processes"]}
        reply = _report(channel, device.token, Scan(NOW + 60 * 10**9, 60.0, 2, (_process(11, rss_bytes=1), _process(12))))
    assert reply.stored == 2
    answer = shadow.list_shadow(any_store, "edge-1")
    by_pid = {p["pid"]: p for p in answer["processes"]}
    assert sorted(by_pid) == [11, 12]
    assert by_pid[11]["first_seen_unix_ns"] == first[11] and by_pid[11]["rss_bytes"] == 1
    assert by_pid[12]["first_seen_unix_ns"] > first[11]
    everyone = shadow.list_shadow(any_store, None)
    assert [(d["device"], d["unreadable_processes"]) for d in everyone["devices"]] == [("edge-1", 0), ("edge-2", 7)]
    assert sorted((p["device"], p["pid"]) for p in everyone["processes"]) == [("edge-1", 11), ("edge-1", 12), ("edge-2", 10)]


@pytest.mark.parametrize(("change", "field"), [
    ({"runtimes": ("tensorflow",)}, "processes[0].runtimes"),
    ({"runtimes": ()}, "processes[0].runtimes"),
    ({"cmdline": "python\x07 bell.py"}, "processes[0].cmdline"),
    ({"pid": 0}, "processes[0].pid"),
    ({"rss_bytes": 2**63}, "processes[0].rss_bytes"),
])
def test_a_bad_report_is_refused_whole_and_changes_nothing(store, servers, channel, change, field):
    device = _pushed_device(store, channel)
    _report(channel, device.token, Scan(NOW, 60.0, 1, (_process(10),)))
    with pytest.raises(grpc.RpcError) as refused:
        _report(channel, device.token, Scan(NOW, 60.0, 2, (_process(**{"pid": 11, **change}), _process(12))))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.value.details()
    assert [p["pid"] for p in shadow.list_shadow(store, None)["processes"]] == [10]


def test_reports_need_a_live_device_token(store, servers, channel, admin_token):
    device = _pushed_device(store, channel)
    scan = Scan(NOW, 60.0, 1, (_process(10),))
    for token, code in (("imd_" + "0" * 43, grpc.StatusCode.UNAUTHENTICATED), (admin_token, grpc.StatusCode.UNAUTHENTICATED)):
        with pytest.raises(grpc.RpcError) as refused:
            _report(channel, token, scan)
        assert refused.value.code() is code
    store.revoke_device(device.device_id)
    with pytest.raises(grpc.RpcError) as refused:
        _report(channel, device.token, scan)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert shadow.list_shadow(store, None)["processes"] == []


def test_http_refusals(store, servers, viewer_token):
    url = f"{servers.http_url}/api/v1/shadow-processes"
    assert requests.get(url, timeout=10).status_code == 401
    missing = requests.get(url, params={"device": "edge-09"}, headers=bearer(viewer_token), timeout=10)
    assert missing.status_code == 404 and missing.json()["field"] == "device"
    bad = requests.get(url, params={"device": "no/such"}, headers=bearer(viewer_token), timeout=10)
    assert bad.status_code == 400 and bad.json()["field"] == "device"
    empty = requests.get(url, headers=bearer(viewer_token), timeout=10).json()
    assert empty == {"currency": "USD", "devices": [], "processes": [], "estimated_cost_per_hour": "0.000000000000"}


def test_a_report_that_fails_is_logged_once_and_dropped(store, servers, channel, caplog):
    device = _pushed_device(store, channel)
    scan = Scan(NOW, 60.0, 1, (_process(10),))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    with grpc.insecure_channel(address) as nowhere:
        reporter = GrpcScanReporter(nowhere, lambda: device.token, timeout_s=2)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                reporter(scan).result(timeout=10)
    time.sleep(0.1)  # the outcome reaches the reporter on gRPC's thread
    warnings = [r for r in caplog.records if r.name == "agent.discovery_report"]
    assert len(warnings) == 1 and "cannot report shadow processes" in warnings[0].getMessage()
    assert reporter.sent == 0 and shadow.list_shadow(store, None)["devices"] == []
