"""Where records go: an exporter sends one batch and says what became of it.

The shipper decides *when* and *what* to send; an exporter only decides *where*. Its one
method returns an ExportOutcome, never raises for a delivery failure, and carries the retry
policy as data: which gRPC status means "try again later", "the credentials are wrong" or
"these records are invalid".
"""

from __future__ import annotations

import enum
import logging
import os
import platform
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Protocol

import grpc
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

from agent.codec import record_to_proto
from agent.record import UsageRecord

logger = logging.getLogger(__name__)


class ExportResult(enum.Enum):
    SUCCESS = "success"
    # Transient: the collector is down, overloaded or slow. Keep the records, back off, retry.
    RETRY = "retry"
    # The batch is too large for the collector: retry with a smaller one.
    TOO_LARGE = "too-large"
    # The collector refuses our credentials. Keep the records; retrying makes sense once the
    # token is fixed or rotated.
    AUTH_FAILED = "auth-failed"
    # The collector refuses the records themselves. Retrying the same batch cannot help.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    result: ExportResult
    acked_through_seq: int = 0
    inserted: int = 0
    duplicates: int = 0
    message: str = ""


class Exporter(Protocol):
    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome: ...


_RESULT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: ExportResult.REJECTED,
    grpc.StatusCode.UNAUTHENTICATED: ExportResult.AUTH_FAILED,
    grpc.StatusCode.PERMISSION_DENIED: ExportResult.AUTH_FAILED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExportResult.TOO_LARGE,
}
# Every other status (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNIMPLEMENTED, ...)
# keeps the records and retries: dropping them is never the answer to a server problem.


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    hostname: str
    cpu_cores: int
    platform: str
    agent_version: str

    @classmethod
    def of_this_machine(cls) -> DeviceInfo:
        try:
            version = metadata.version("infermeter")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return cls(socket.gethostname(), os.cpu_count() or 1, platform.platform(), version)


class GrpcExporter:
    """Pushes batches to a collector's infermeter.v1.Ingest service."""

    def __init__(
        self,
        channel: grpc.Channel,
        token: Callable[[], str],
        *,
        device: DeviceInfo,
        timeout_s: float = 10.0,
    ) -> None:
        self._stub = ingest_pb2_grpc.IngestStub(channel)
        self._token = token
        self._timeout_s = timeout_s
        self._device = ingest_pb2.DeviceInfo(
            hostname=device.hostname,
            cpu_cores=device.cpu_cores,
            platform=device.platform,
            agent_version=device.agent_version,
        )

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        request = ingest_pb2.PushRequest(
            stream_id=stream_id,
            first_seq=records[0].seq,
            last_seq=records[-1].seq,
            records=[record_to_proto(record) for record in records],
            device=self._device,
        )
        try:
            token = self._token()
        except Exception as err:  # an unreadable token file is an auth problem, not a crash
            return ExportOutcome(ExportResult.AUTH_FAILED, message=str(err))
        try:
            reply = self._stub.Push(
                request,
                timeout=self._timeout_s,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
            details = err.details() if hasattr(err, "details") else str(err)
            return ExportOutcome(
                _RESULT_BY_STATUS.get(code, ExportResult.RETRY),
                message=f"{code.name}: {details}",
            )
        return ExportOutcome(
            ExportResult.SUCCESS,
            acked_through_seq=reply.acked_through_seq,
            inserted=reply.inserted,
            duplicates=reply.duplicates,
        )


@dataclass
class InMemoryExporter:
    """An exporter that keeps what it receives, for tests and examples. `script` lists the
    outcomes of the next calls (SUCCESS acks the whole batch); when it is empty, every call
    succeeds."""

    received: list[UsageRecord] = field(default_factory=list)
    script: list[ExportResult] = field(default_factory=list)
    calls: int = 0

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        self.calls += 1
        result = self.script.pop(0) if self.script else ExportResult.SUCCESS
        if result is not ExportResult.SUCCESS:
            return ExportOutcome(result, message=f"scripted {result.value}")
        self.received.extend(records)
        return ExportOutcome(
            ExportResult.SUCCESS, acked_through_seq=records[-1].seq, inserted=len(records)
        )
