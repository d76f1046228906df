"""Where records go: an exporter sends a batch and says what became of it.

The shipper decides *when* and *what* to send; an exporter only decides *where*. It works in
two steps, so that the shipper can encode the next batch while the collector stores this one:
prepare() encodes a batch (no I/O), send() starts delivering a prepared batch and returns at
once; the pending export's result() waits for the ExportOutcome. Delivery failures are
outcomes, never exceptions, and the retry policy is data: which gRPC status means "try again
later", "the credentials are wrong" or "these records are invalid".

While an operator rotates the device's token, the collector's replies carry the new token;
the GrpcExporter hands it to on_new_token (agent.rotation.TokenKeeper), which writes it to the
token file that every push reads, so the next push already uses it. A successful outcome also
carries the reply's budget state and price hints (agent.budget_store keeps them).
"""

from __future__ import annotations

import enum
import logging
import os
import platform
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from infermeter.v1 import ingest_pb2

from agent.budgets import BudgetState, PriceHint
from agent.codec import budget_state_from_proto, price_hint_from_proto, record_to_proto
from agent.config import AgentConfig, ConfigError
from agent.record import UsageRecord
from agent.version import VERSION

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
    # A successful reply's word on the budgets that can apply to the device (all of them:
    # a budget left out no longer applies) and its price hints.
    budgets: tuple[BudgetState, ...] = ()
    price_hints: tuple[PriceHint, ...] = ()
    # The device's default tags (agent.device_tags): a reply's whole set; None: not a reply
    # of the collector's.
    device_tags: Mapping[str, str] | None = None


class PendingExport(Protocol):
    def result(self) -> ExportOutcome:
        """Wait for the collector's answer."""


class Exporter(Protocol):
    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> object:
        """Encode a batch for send(); no I/O. An empty one is a heartbeat (agent.shipper)."""

    def send(self, prepared: object) -> PendingExport:
        """Start delivering a prepared batch; do not wait for the answer."""


@dataclass(frozen=True, slots=True)
class DoneExport:
    """A pending export whose outcome is already known."""

    outcome: ExportOutcome

    def result(self) -> ExportOutcome:
        return self.outcome


def export(exporter: Exporter, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
    """Deliver one batch and wait for the outcome."""
    return exporter.send(exporter.prepare(stream_id, records)).result()


PUSH_METHOD = "/infermeter.v1.Ingest/Push"
# Above the collector's limit for one batch (16 MB), so that its answer, not ours, says "too large".
MAX_SEND_BYTES = 64 * 1024 * 1024
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
        return cls(socket.gethostname(), os.cpu_count() or 1, platform.platform(), VERSION)


def open_channel(config: AgentConfig) -> grpc.Channel:
    """The channel to the collector that config names: TLS when it names a CA file (mutual
    TLS when a certificate and key too), plaintext otherwise."""
    options = [("grpc.max_send_message_length", MAX_SEND_BYTES)]
    if config.tls_ca_file is None and config.tls_cert_file is None:
        return grpc.insecure_channel(config.collector_address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_pem(config.tls_ca_file),
        private_key=_read_pem(config.tls_key_file),
        certificate_chain=_read_pem(config.tls_cert_file),
    )
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.secure_channel(config.collector_address, credentials, options=options)


def _read_pem(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err


class GrpcExporter:
    """Pushes batches to a collector's infermeter.v1.Ingest service. A prepared batch is the
    serialized PushRequest, so encoding happens in prepare(), off the round trip. A new token
    in a reply (a rotation) goes to on_new_token, before the result is returned, so the next
    send() reads it."""

    def __init__(
        self,
        channel: grpc.Channel,
        token: Callable[[], str],
        *,
        device: DeviceInfo,
        timeout_s: float = 10.0,
        on_new_token: Callable[[str], None] | None = None,
    ) -> None:
        # No request serializer: send() hands over the bytes prepare() made.
        self._push = channel.unary_unary(
            PUSH_METHOD, request_serializer=None,
            response_deserializer=ingest_pb2.PushResponse.FromString,
        )
        self._token = token
        self._timeout_s = timeout_s
        self._on_new_token = on_new_token
        self._device = ingest_pb2.DeviceInfo(
            hostname=device.hostname,
            cpu_cores=device.cpu_cores,
            platform=device.platform,
            agent_version=device.agent_version,
        )

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> bytes:
        # An empty batch (a heartbeat) has first_seq and last_seq 0, as the collector requires.
        return ingest_pb2.PushRequest(
            stream_id=stream_id,
            first_seq=records[0].seq if records else 0,
            last_seq=records[-1].seq if records else 0,
            records=[record_to_proto(record) for record in records],
            device=self._device,
        ).SerializeToString()

    def send(self, prepared: bytes) -> PendingExport:
        try:
            token = self._token()
        except Exception as err:  # an unreadable token file is an auth problem, not a crash
            return DoneExport(ExportOutcome(ExportResult.AUTH_FAILED, message=str(err)))
        future = self._push.future(
            prepared, timeout=self._timeout_s, metadata=(("authorization", f"Bearer {token}"),)
        )
        return _PendingPush(future, self._on_new_token)

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        return export(self, stream_id, records)


@dataclass(frozen=True, slots=True)
class _PendingPush:
    future: grpc.Future
    on_new_token: Callable[[str], None] | None

    def result(self) -> ExportOutcome:
        try:
            reply = self.future.result()
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
            details = err.details() if hasattr(err, "details") else str(err)
            return ExportOutcome(
                _RESULT_BY_STATUS.get(code, ExportResult.RETRY), message=f"{code.name}: {details}"
            )
        if reply.new_token:
            self._take_token(reply.new_token)
        return ExportOutcome(
            ExportResult.SUCCESS,
            acked_through_seq=reply.acked_through_seq,
            inserted=reply.inserted,
            duplicates=reply.duplicates,
            budgets=tuple(budget_state_from_proto(budget) for budget in reply.budgets),
            price_hints=tuple(price_hint_from_proto(hint) for hint in reply.price_hints),
            device_tags=dict(reply.device_tags),
        )

    def _take_token(self, token: str) -> None:
        if self.on_new_token is None:
            logger.debug("the collector hands over a rotated device token; this exporter keeps none")
            return
        try:
            self.on_new_token(token)
        except Exception:  # the batch is stored all the same: its ack must not be lost
            logger.exception("keeping the rotated device token failed")


@dataclass
class InMemoryExporter:
    """An exporter that keeps what it receives, for tests and examples. `script` lists the
    outcomes of the next calls (SUCCESS acks the whole batch; an empty one acks nothing, as the
    collector does); when it is empty, every call succeeds. Subclasses change what it answers by overriding export()."""

    received: list[UsageRecord] = field(default_factory=list)
    script: list[ExportResult] = field(default_factory=list)
    calls: int = 0

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> tuple[str, list[UsageRecord]]:
        return stream_id, list(records)

    def send(self, prepared: tuple[str, list[UsageRecord]]) -> PendingExport:
        return DoneExport(self.export(*prepared))

    def export(self, stream_id: str, records: Sequence[UsageRecord]) -> ExportOutcome:
        self.calls += 1
        result = self.script.pop(0) if self.script else ExportResult.SUCCESS
        if result is not ExportResult.SUCCESS:
            return ExportOutcome(result, message=f"scripted {result.value}")
        self.received.extend(records)
        return ExportOutcome(
            ExportResult.SUCCESS, acked_through_seq=records[-1].seq if records else 0, inserted=len(records)
        )
