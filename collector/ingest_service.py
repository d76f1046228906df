"""infermeter.v1.Ingest: devices push batches of usage records here.

The device is whoever its bearer token says it is; PushRequest carries no device id, so a
payload cannot claim another device's identity. A batch is checked whole before the store sees
it, so a bad record rejects the batch and stores nothing (the agent bisects to find the record).
The reply is sent only after the store committed; a server-side failure answers UNAVAILABLE
(collector.rpc), which the agent retries. While an operator rotates a device's token, replies
to pushes made with the old token carry the new one (collector.credentials).
"""

from __future__ import annotations

import asyncio
import operator
import re
import time
from itertools import islice

import grpc
from infermeter.v1 import ingest_pb2

from agent.codec import record_from_proto
from agent.failpoints import failpoint
from agent.record import InvalidRecord, UsageRecord, check_text, validate_all
from collector import shadow_service
from collector.auth import bearer_token
from collector.budget_push import DeviceBudget, PriceHint
from collector.metrics import CollectorMetrics
from collector.rpc import call_store
from collector.store import DeviceInfo, Store

MAX_BATCH_RECORDS = 10_000
# Batches of MAX_BATCH_RECORDS fit comfortably; anything larger grpc refuses with
# RESOURCE_EXHAUSTED before it reaches Push.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_STREAM_ID = re.compile(r"[0-9a-f]{32}")


def decode_batch(request: ingest_pb2.PushRequest) -> tuple[DeviceInfo, list[UsageRecord]]:
    """The request's device info and records, or InvalidRecord naming what is wrong."""
    if not _STREAM_ID.fullmatch(request.stream_id):
        raise InvalidRecord("stream_id", "must be 32 lowercase hexadecimal characters")
    if len(request.records) > MAX_BATCH_RECORDS:
        raise InvalidRecord("records", f"a batch holds 0 to {MAX_BATCH_RECORDS} records, got {len(request.records)}")
    if not request.records:
        # A heartbeat: the device asks for the budget state it enforces.
        if request.first_seq or request.last_seq:
            raise InvalidRecord("first_seq", "an empty batch has first_seq and last_seq 0")
        return _decode_device(request.device), []
    records = [record_from_proto(message) for message in request.records]
    validate_all(records)
    seqs = [record.seq for record in records]
    if not all(map(operator.lt, seqs, islice(seqs, 1, None))):
        i = next(i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1])
        raise InvalidRecord("seq", f"seqs must strictly increase; {seqs[i]} follows {seqs[i - 1]}", seq=seqs[i])
    if request.first_seq != records[0].seq:
        raise InvalidRecord("first_seq", f"is {request.first_seq} but the first record has seq {records[0].seq}")
    if request.last_seq != records[-1].seq:
        raise InvalidRecord("last_seq", f"is {request.last_seq} but the last record has seq {records[-1].seq}")
    return _decode_device(request.device), records


def _decode_device(message: ingest_pb2.DeviceInfo) -> DeviceInfo:
    for name in ("hostname", "platform", "agent_version"):
        check_text(f"device.{name}", getattr(message, name))
    return DeviceInfo(
        hostname=message.hostname,
        cpu_cores=message.cpu_cores,
        platform=message.platform,
        agent_version=message.agent_version,
    )


class IngestServicer:
    def __init__(self, store: Store, *, metrics: CollectorMetrics | None = None) -> None:
        self._store = store
        self._metrics = metrics or CollectorMetrics(store)

    async def Push(self, request: ingest_pb2.PushRequest, context: grpc.aio.ServicerContext) -> ingest_pb2.PushResponse:
        try:
            return await self._push(request, context)
        except BaseException as err:
            code = context.code()
            cancelled = isinstance(err, asyncio.CancelledError)
            self._metrics.refused_push(code.name if code is not None else "CANCELLED" if cancelled else "UNKNOWN")
            raise

    async def _push(self, request: ingest_pb2.PushRequest, context: grpc.aio.ServicerContext) -> ingest_pb2.PushResponse:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or malformed 'authorization: Bearer <token>' metadata")
        auth = await call_store(context, self._store.authenticate, token)
        if auth is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown device token")
        if auth.revoked:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"device {auth.name!r} is revoked")
        started_s = time.perf_counter()
        try:
            # Off the loop: checking 10,000 records takes long enough to stall other calls.
            device, records = await asyncio.to_thread(decode_batch, request)
        except InvalidRecord as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        result = await call_store(context, self._store.ingest, auth.device_id, request.stream_id, device, records)
        self._metrics.pushed(
            auth.name, inserted=result.inserted, duplicates=result.duplicates, new_rows=result.new_rows,
            seconds=time.perf_counter() - started_s,
        )
        failpoint("ingest.after_commit")
        # Only while the device's token is being rotated: hand over the new one, or retire the old.
        new_token = await call_store(context, self._store.advance_rotation, auth, token) if auth.rotation else ""
        state = await call_store(context, self._store.push_state, auth.device_id)
        return ingest_pb2.PushResponse(
            acked_through_seq=result.acked_through_seq,
            inserted=result.inserted,
            duplicates=result.duplicates,
            new_token=new_token,
            budgets=[_budget_state(budget, state.currency) for budget in state.budgets],
            price_hints=[_price_hint(hint, state.currency) for hint in state.price_hints],
            device_tags=state.device_tags,
        )


    async def ReportProcesses(
        self, request: ingest_pb2.ReportProcessesRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.ReportProcessesResponse:
        """A device's shadow AI discovery scan (collector.shadow_service)."""
        return await shadow_service.report_processes(self._store, request, context)


def _budget_state(device_budget: DeviceBudget, currency: str) -> ingest_pb2.BudgetState:
    status = device_budget.status
    budget = status.budget
    money = budget.unit == "money"
    return ingest_pb2.BudgetState(
        budget_id=budget.budget_id, scope=budget.scope, action=budget.action, state=status.state,
        currency=currency, name=budget.name, unit=budget.unit,
        lease_remaining_pico=device_budget.lease if money else 0,
        lease_remaining_uj=0 if money else device_budget.lease,
        throttle_per_second=float(budget.throttle_per_second or 0),
        period_end_unix_ns=status.period_end_unix_ns, message=device_budget.message,
    )


def _price_hint(hint: PriceHint, currency: str) -> ingest_pb2.PriceHint:
    return ingest_pb2.PriceHint(
        model=hint.model, runtime=hint.runtime, currency=currency,
        cost_per_inference_pico=hint.cost_per_inference_pico, energy_per_inference_uj=hint.energy_per_inference_uj,
    )
