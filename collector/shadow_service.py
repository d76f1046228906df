"""infermeter.v1.Ingest/ReportProcesses: a device's discovery scan (collector.shadow).

The device is whoever its bearer token says it is, as for Push; a revoked device is refused. A
report with a bad field is refused whole (INVALID_ARGUMENT naming it) and changes nothing.
"""

from __future__ import annotations

import time

import grpc
from infermeter.v1 import ingest_pb2

from agent.record import InvalidRecord
from collector.auth import bearer_token
from collector.rpc import call_store
from collector.shadow import (
    ShadowProcess,
    ShadowReport,
    report_from_rows,
    store_report,
)
from collector.store import Store


def decode_report(request: ingest_pb2.ReportProcessesRequest) -> ShadowReport:
    processes = [
        ShadowProcess(
            pid=p.pid, start_unix_ns=p.start_unix_ns, command=p.command, cmdline=p.cmdline, uid=p.uid, user=p.user,
            runtimes=tuple(p.runtimes), rss_bytes=p.rss_bytes, cpu_time_ns=p.cpu_time_ns,
            cpu_ns_per_s=p.cpu_ns_per_s, gpu_memory_bytes=p.gpu_memory_bytes,
            last_record_unix_ns=p.last_record_unix_ns,
        )
        for p in request.processes
    ]
    return report_from_rows(
        request.scanned_unix_ns, request.interval_s, request.runtime_processes, processes, request.unreadable_processes
    )


async def report_processes(
    store: Store, request: ingest_pb2.ReportProcessesRequest, context: grpc.aio.ServicerContext
) -> ingest_pb2.ReportProcessesResponse:
    token = bearer_token(context.invocation_metadata())
    if token is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or malformed 'authorization: Bearer <token>' metadata")
    auth = await call_store(context, store.authenticate, token)
    if auth is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown device token")
    if auth.revoked:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"device {auth.name!r} is revoked")
    try:
        report = decode_report(request)
        stored = await call_store(context, store_report, store, auth.device_id, report, received_unix_ns=time.time_ns())
    except InvalidRecord as err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    return ingest_pb2.ReportProcessesResponse(stored=stored)
