"""Sending discovery scans (agent.discovery) to the collector: infermeter.v1.Ingest/ReportProcesses.

A scan is a snapshot that the next one replaces, not records, so it does not ride on Push: Push
is acknowledged by seq and retried until stored, and its batches are bisected when refused,
none of which fits a list that is stale a minute later. A report that fails is logged (once per
streak) and dropped; the next scan sends a fresh one. A collector without the method
(UNIMPLEMENTED) is told of once, at info: the scans go on locally (`infermeter agent shadow`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from infermeter.v1 import ingest_pb2

from agent.config import ConfigError
from agent.discovery import Scan

logger = logging.getLogger(__name__)

REPORT_METHOD = "/infermeter.v1.Ingest/ReportProcesses"
# The most a report may list (the collector's limit): the busiest first, as a scan sorts them.
MAX_REPORTED = 1000


def scan_to_proto(scan: Scan) -> ingest_pb2.ReportProcessesRequest:
    return ingest_pb2.ReportProcessesRequest(
        scanned_unix_ns=scan.scanned_unix_ns, interval_s=scan.interval_s,
        runtime_processes=scan.runtime_processes, unreadable_processes=scan.unreadable_processes,
        processes=[
            ingest_pb2.ShadowProcess(
                pid=p.pid, start_unix_ns=p.start_unix_ns, command=p.command, cmdline=p.cmdline, uid=p.uid,
                user=p.user, runtimes=list(p.runtimes), rss_bytes=p.rss_bytes, cpu_time_ns=p.cpu_time_ns,
                cpu_ns_per_s=p.cpu_ns_per_s, gpu_memory_bytes=p.gpu_memory_bytes,
                last_record_unix_ns=p.last_record_unix_ns,
            )
            for p in scan.shadow[:MAX_REPORTED]
        ],
    )


class GrpcScanReporter:
    """Calls ReportProcesses with the device token; used as Discovery's `report`. The call is
    not waited for (the daemon's main loop must not stall on a collector that is slow to
    answer): its outcome is logged from gRPC's thread as it comes."""

    def __init__(self, channel: grpc.Channel, token: Callable[[], str], *, timeout_s: float = 10.0) -> None:
        self._call = channel.unary_unary(
            REPORT_METHOD, request_serializer=ingest_pb2.ReportProcessesRequest.SerializeToString,
            response_deserializer=ingest_pb2.ReportProcessesResponse.FromString,
        )
        self._token = token
        self._timeout_s = timeout_s
        self._failing = False
        self.sent = 0

    def __call__(self, scan: Scan) -> grpc.Future | None:
        """Start sending the scan; its future, or None when the token cannot be read."""
        try:
            token = self._token()
        except ConfigError as err:  # an unreadable token file: the records' shipping says so too
            self._failed(None, str(err))
            return None
        future = self._call.future(
            scan_to_proto(scan), timeout=self._timeout_s, metadata=(("authorization", f"Bearer {token}"),),
        )
        future.add_done_callback(self._done)
        return future

    def _done(self, future: grpc.Future) -> None:
        error = future.exception()
        if error is not None:
            self._failed(error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN, str(error))
            return
        if self._failing:
            logger.info("shadow process reports reach the collector again")
        self._failing = False
        self.sent += 1

    def _failed(self, code: grpc.StatusCode | None, message: str) -> None:
        if self._failing:
            return
        self._failing = True
        if code is grpc.StatusCode.UNIMPLEMENTED:
            logger.info("the collector does not take shadow process reports (an older version); scans stay local")
        else:
            logger.warning("cannot report shadow processes to the collector: %s; the next scan tries again", message)
