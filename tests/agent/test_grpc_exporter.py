"""GrpcExporter against a real gRPC server on loopback, answering with chosen statuses."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

from agent.codec import record_from_proto
from agent.exporter import DeviceInfo, ExportResult, GrpcExporter
from tests.agent.test_device_buffer import make_record


class ScriptedIngest(ingest_pb2_grpc.IngestServicer):
    def __init__(self) -> None:
        self.status: grpc.StatusCode | None = None
        self.requests: list[tuple[ingest_pb2.PushRequest, dict]] = []

    def Push(self, request, context):
        self.requests.append((request, dict(context.invocation_metadata())))
        if self.status is not None:
            context.abort(self.status, f"scripted {self.status.name}")
        return ingest_pb2.PushResponse(
            acked_through_seq=request.last_seq, inserted=len(request.records)
        )


@pytest.fixture
def server():
    servicer = ScriptedIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield servicer, channel
    server.stop(None)


DEVICE = DeviceInfo("edge-1", 4, "Linux-test", "0.1.0")


def test_push_carries_records_token_and_device(server):
    servicer, channel = server
    records = [make_record(i, seq=i + 1) for i in range(3)]
    outcome = GrpcExporter(channel, lambda: "imd_secret", device=DEVICE).export("ab" * 16, records)
    assert (outcome.result, outcome.acked_through_seq, outcome.inserted) == (ExportResult.SUCCESS, 3, 3)
    ((request, metadata),) = servicer.requests
    assert metadata["authorization"] == "Bearer imd_secret"
    assert (request.stream_id, request.first_seq, request.last_seq) == ("ab" * 16, 1, 3)
    assert [record_from_proto(m) for m in request.records] == records
    assert request.device.hostname == "edge-1" and request.device.cpu_cores == 4


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, ExportResult.REJECTED),
        (grpc.StatusCode.UNAUTHENTICATED, ExportResult.AUTH_FAILED),
        (grpc.StatusCode.PERMISSION_DENIED, ExportResult.AUTH_FAILED),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ExportResult.TOO_LARGE),
        (grpc.StatusCode.UNAVAILABLE, ExportResult.RETRY),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ExportResult.RETRY),
        (grpc.StatusCode.INTERNAL, ExportResult.RETRY),
        (grpc.StatusCode.UNIMPLEMENTED, ExportResult.RETRY),
    ],
)
def test_status_codes_map_to_the_retry_policy(server, status, result):
    servicer, channel = server
    servicer.status = status
    outcome = GrpcExporter(channel, lambda: "t", device=DEVICE).export("ab" * 16, [make_record()])
    assert outcome.result is result
    assert status.name in outcome.message


def test_unreachable_collector_is_retryable():
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        outcome = GrpcExporter(channel, lambda: "t", device=DEVICE, timeout_s=2).export(
            "ab" * 16, [make_record()]
        )
    assert outcome.result is ExportResult.RETRY


def test_unreadable_token_is_an_auth_failure_not_a_crash(server):
    _, channel = server

    def token() -> str:
        raise OSError("permission denied: /etc/infermeter/device.token")

    outcome = GrpcExporter(channel, token, device=DEVICE).export("ab" * 16, [make_record()])
    assert outcome.result is ExportResult.AUTH_FAILED
    assert "permission denied" in outcome.message
